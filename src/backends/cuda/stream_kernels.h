// Kernels of the batched cache-aware streaming step (src/runtime/stream_batch.cc): many streams, each with its
// own slot of device-resident caches, stepped as one batch. Raw pointers and plain structs only (no engine
// headers: the .cu side is compiled by nvcc).
//
// Slots live in pages of kSlotsPerPage; a device table holds each page's base pointer, so pages can be added
// while captured graphs (which read the table at run time) stay valid. Slot s is item s % kSlotsPerPage of
// page s / kSlotsPerPage. A page holds, for each of its slots:
//   keys/values   [L][2][C][D] float32, or the 16-bit type of fp16/bf16 steps (kv_dtype): NeMo's
//                 cache_last_channel rows after linear_k / linear_v (a ring:
//                 logical row j of C is physical row (head + j) % C; the last `len` logical rows are valid)
//   time cache    [L][Kc][D]   float32: cache_last_time, time-major
//   decoder state h, c [Ld·H], p [J] float32; ints head, len (cache_last_channel_len), t (TDT time jump),
//                 started.
#pragma once

#include <cstddef>
#include <cstdint>

#include "backends/cuda/kernels.h"

namespace parakeet::cuda::kernels {

constexpr int kSlotsPerPage = 16;
constexpr int kMaxPages = 4096;

struct SlotLayout {
    int64_t n_layers, cache_rows /* C */, d_model, time_rows /* Kc */;
    int kv_dtype;  // keys/values: 0 float32, 1 float16, 2 bfloat16
    int64_t dec_hidden /* Ld·H */, joint_hidden /* J */;
    // Float offsets of each region from the page base (the int region is reinterpreted from floats).
    int64_t kv_offset, time_offset, h_offset, c_offset, p_offset, int_offset;
    int64_t page_floats;
};
SlotLayout make_slot_layout(int64_t n_layers, int64_t cache_rows, int64_t d_model, int64_t time_rows,
                            int64_t dec_hidden, int64_t joint_hidden, int kv_dtype);

// Per-item arrays of one batched step (device): slot, valid feature rows and the valid rows after each
// subsampling stage, valid encoder frames (after the dropped pre-encode frames), decoded frames.
struct StepItems {
    const int* slot;
    const int* stage_len;   // [B, n_stages]
    const int* enc_len;     // [B]
    const int* out_len;     // [B]
};

// Subsampling, batched over items of equal padded length. x[B, T, F] -> y[B, C, T2, F2] = ReLU(conv(x) + b)
// from one input channel, rows t2 >= stage_len[b] zeroed (they are the next stage's padding).
void sub_conv_first(Launch l, const float* x, int64_t batch, int64_t t, int64_t f, const float* w, const float* bias,
                    int64_t c_out, int64_t pad_lo, const int* stage_len, int64_t stage_stride, float* y);
// Depthwise stride-2 3x3 conv of x[B, C, T, F] -> y[B, C, T2, F2] (+ bias; no activation).
void sub_conv_depthwise(Launch l, const float* x, int64_t batch, int64_t c, int64_t t, int64_t f, const float* w,
                        const float* bias, int64_t pad_lo, float* y);
// y[B, C, T, F] = ReLU(y + bias[c]), rows t >= stage_len[b] zeroed.
void bias_relu_rows(Launch l, float* y, int64_t batch, int64_t c, int64_t t, int64_t f, const float* bias,
                    const int* stage_len, int64_t stage_stride);
// x[B, C, T, F] -> y[B, T, C·F] (NeMo's channel-major flatten).
void flatten_channels_batched(Launch l, const float* x, int64_t batch, int64_t c, int64_t t, int64_t f, float* y);
// y[b, t] = alpha · x[b, t + drop] for t < enc_len[b], else 0; x[B, T_in, D], y[B, T, D].
void drop_scale_rows(Launch l, const float* x, int64_t batch, int64_t t_in, int64_t drop, int64_t t, int64_t d,
                     float alpha, const int* enc_len, float* y);

// NeMo's online per-feature normalisation of each item's chunk, in place: x[B, rows, n_mels]; item b's first
// norm_rows[b] rows (none when 0) become (x - mean) / (std + 1e-5) per column, with the mean and the unbiased std
// (0 for one row) over those rows, summed in double in row order: bit for bit the host's normalize_per_feature.
void normalize_chunks_per_feature(Launch l, float* x, int64_t batch, int64_t rows, int64_t n_mels,
                                  const int* norm_rows);

// Rel-pos attention of T new queries per item over [cached keys (slot ring) | T new keys].
// qkv[B, T, 3D] (q | k | v, heads of d_head contiguous), p[2N - 1, D] the projected positional rows of this
// layer for N = C + T keys (row r: distance N - 1 - r), u/v[H, d_head]. out[B, T, D]; rows t >= enc_len[b] zero.
// Then appends each item's first keep_b = enc_len[b] - cache_drop new rows' keys/values (qkv's k and v) to its
// slot's ring for `layer` (only the last C of them when keep_b > C; none when keep_b <= 0). keep_b is NeMo's
// per-stream `keep` (the item's own chunk length, not the batch's padded one). The ring head moves in
// stream_advance, after every layer.
struct StreamAttentionArgs {
    int64_t batch, t, n_heads, d_head, layer;
    int64_t att_left, att_right, att_chunk, att_left_chunks;
    int64_t cache_drop;
    SlotLayout layout;
    float* const* pages;
    StepItems items;
    int by_channel = 0;  // many items: the per-channel kernel instead of the one by rows (A/B, tests)
    // Optional, for the kernel by rows: the positional scores computed beforehand, bd[h][b * t + i][r] = q_i · P_r
    // over head h's columns (r < 2N - 1, N = C + t), and vp[h][r] = pos_bias_v_h · P_r; the score of query i and key j
    // then reads bd + vp at r = N - 1 - (C + i - j) instead of reading P.
    const float* bd = nullptr;
    const float* vp = nullptr;
};
// Whether stream_attention runs these arguments' kernel by rows (the one that takes bd/vp).
bool stream_attention_by_rows(Launch l, const StreamAttentionArgs& a);
void stream_attention(Launch l, const StreamAttentionArgs& a, const float* qkv, const float* p, const float* u,
                      const float* v, void* out, int act_dtype = 0);
// Shared memory of one stream_attention block for t queries per item (small_batch: fewer (item, head) blocks than
// SMs, which take wider blocks) with key/value caches of kv_dtype (SlotLayout::kv_dtype).
size_t stream_attention_shared_bytes(int64_t t, int64_t d_head, int64_t cache_rows, bool small_batch, int kv_dtype);
// Per item: head += keep_b (mod C) when keep_b > 0, len = min(len + keep_b, C) (NeMo's cache_last_channel_len).
void stream_advance(Launch l, const SlotLayout& layout, float* const* pages, const StepItems& items, int64_t batch,
                    int64_t cache_drop);

// Conv module middle with the time cache: G = GLU(x[b, t]) for t < enc_len[b] else 0 (x[B, T, 2D]),
// Gpad = [cache | G | zeros(right)], y[b, t] = SiLU(bias + Σ_k w[k] · Gpad[t + k]) for t < T, and the
// slot's cache becomes Gpad rows [g_len - Kc, g_len), g_len = Kc + enc_len[b] + right - drop (NeMo
// CausalConv1D.update_cache on the item's own length). Requires Kc + T + right <= kMaxConvWindow.
constexpr int kMaxConvWindow = 128;
void stream_conv(Launch l, const SlotLayout& layout, float* const* pages, const StepItems& items, int64_t layer,
                 const float* x, int64_t batch, int64_t t, int64_t kernel, int64_t right, int64_t drop,
                 const float* w, const float* bias, void* y, int act_dtype = 0);

// 16-bit activations for the 16-bit precisions: kernels that feed a GEMM write its input in the GEMM's dtype.
// act_dtype: 0 float32 (out is float*), 1 float16, 2 bfloat16.
// y = LayerNorm(x (+= alpha · r when r is non-null)) written as act_dtype.
void layer_norm_act(Launch l, float* x, const float* r, float alpha, const float* gamma, const float* beta, float eps,
                    int64_t rows, int64_t cols, void* y, int act_dtype);
// layer_norm_act into float32 y, then y2 = LayerNorm(y; gamma2, beta2) as act_dtype, in one pass where the row fits
// a block's registers (a layer's output norm and the next layer's first norm).
void layer_norm2_act(Launch l, float* x, const float* r, float alpha, const float* gamma, const float* beta, float eps,
                     int64_t rows, int64_t cols, float* y, const float* gamma2, const float* beta2, void* y2,
                     int act_dtype);
// y16 = SiLU(y + bias[col]) written as act_dtype (bias may be null).
void bias_silu_act(Launch l, const float* y, const float* bias, int64_t rows, int64_t cols, void* out, int act_dtype);
// In place on 16-bit y (act_dtype 1 or 2, cols even): y = SiLU(y + bias[col]) (bias may be null).
void bias_silu_16(Launch l, void* y, const float* bias, int64_t rows, int64_t cols, int act_dtype);

// y[m] = act(x[m] · wᵀ + bias) for a few rows (see skinny.cu). w [n, k] row-major: float32 (w_dtype 0), float16
// (1) or bfloat16 (2); x [rows, k] of the weight's type (float32 for float32 weights); y [rows, ldy] of y_dtype.
// With res set, the input is built by the norm prologue instead of read from x (k = d_model):
//   r = res + delta_scale · delta (delta optional); r = LN(r; pre_g, pre_b) when pre_g is set; res_out = r (when
//   set; it must not alias res); input = LN(r; norm_g, norm_b) when norm_g is set, else r.
constexpr int kSkinnyMaxRows = 8;
struct SkinnyLinearArgs {
    int64_t rows, n, k;
    const void* w;
    int w_dtype;
    const float* bias;
    int silu;
    void* y;
    int y_dtype;
    int64_t ldy;
    const void* x;
    const float* res;
    const float* delta;
    float delta_scale;
    const float *pre_g, *pre_b;
    float* res_out;
    const float *norm_g, *norm_b;
    float eps;
};
// Whether skinny_linear takes these shapes: rows <= kSkinnyMaxRows, k a multiple of 8; with the prologue also
// k <= 2048 and the rows within 48 KiB of shared memory. The pointers must be 16-byte aligned.
bool skinny_linear_fits(int64_t rows, int64_t k, bool norm);
void skinny_linear(Launch l, const SkinnyLinearArgs& a);

// Decoder state between the slots and the batch arrays of the greedy kernel: h, c [B, Ld·H], p [B, J],
// t [B], started [B]. scatter also turns the kernel's final t into the carried time jump (t - out_len) and
// marks the slot started.
void decoder_gather(Launch l, const SlotLayout& layout, float* const* pages, const int* slot, int64_t batch,
                    float* h, float* c, float* p, int* t, int* started);
void decoder_scatter(Launch l, const SlotLayout& layout, float* const* pages, const int* slot, const int* out_len,
                     int64_t batch, const float* h, const float* c, const float* p, const int* t);
// Zeroes a slot's time cache, decoder state and ints (a new stream).
void slot_reset(Launch l, const SlotLayout& layout, float* const* pages, int slot);

}  // namespace parakeet::cuda::kernels
