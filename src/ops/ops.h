// Device-agnostic op entry points. Each checks shapes and dtypes, sizes nothing implicitly (outputs are
// passed in, so hot loops allocate nothing), and dispatches to the backend of ctx.device.
// Layout conventions: activations are row-major [rows, features] where rows = batch x time.
#pragma once

#include "core/context.h"
#include "core/tensor.h"

namespace parakeet::ops {

// y[M, N] = x[M, K] · w[N, K]ᵀ (+ bias[N]) (+ beta · y). PyTorch Linear layout for w. x is float32, or
// gemm_input_dtype(ctx) (beta must then be 0).
void linear(const ExecContext& ctx, const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y,
            float beta = 0.f);
// y[M, N] = a[M, K] · b[K, N] (row-major, no transposes), alpha scaled.
void matmul(const ExecContext& ctx, const Tensor& a, const Tensor& b, Tensor& y, float alpha = 1.f);

// The dtype in which `linear`, `linear_silu` take their input on ctx: the 16-bit type of the fp16/bf16 precisions
// on CUDA (the producing op writes it, so no conversion pass runs before the GEMM), else float32.
DType gemm_input_dtype(const ExecContext& ctx);
// x (float32, on ctx's device) in gemm_input_dtype(ctx): x itself where that is float32, else a converted copy (an
// input shared by many linears, such as the position table of every layer, is converted once).
Tensor to_gemm_input(const ExecContext& ctx, const Tensor& x);
// The three linears of one input: y[i] = x · w_iᵀ (+ b_i) for (w_0, w_1, w_2), y [3, M, N] (M = rows of x). On CUDA
// one strided-batched GEMM over the three weights joined on the device (cuda::device_weight_rows); on the CPU
// three GEMMs. x as for `linear`; biases may be null.
void linear3(const ExecContext& ctx, const Tensor& x, const Tensor* const (&w)[3], const Tensor* const (&b)[3],
             Tensor& y);
// x += alpha · r (r undefined: x unchanged), then y = LayerNorm(x). y is float32 or gemm_input_dtype(ctx).
void add_layer_norm_(const ExecContext& ctx, Tensor& x, const Tensor& r, float alpha, const Tensor& gamma,
                     const Tensor& beta, float eps, Tensor& y);
// add_layer_norm_ into float32 y, then y2 = LayerNorm(y; gamma2, beta2) (float32 or gemm_input_dtype(ctx)): one
// layer's output norm and the next layer's first norm, one pass on CUDA. The same values as the two ops.
void add_layer_norm2_(const ExecContext& ctx, Tensor& x, const Tensor& r, float alpha, const Tensor& gamma,
                      const Tensor& beta, float eps, Tensor& y, const Tensor& gamma2, const Tensor& beta2, Tensor& y2);
// y = SiLU(x · wᵀ + bias); x and y float32 or both gemm_input_dtype(ctx) (y is then only read by `linear`).
void linear_silu(const ExecContext& ctx, const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y);
// The conformer conv module's middle: y = SiLU(dwconv(GLU(x) with rows t >= lengths[b] zeroed) + bias),
// x[B, T, 2C] -> y[B, T, C]; w[C, K] with the BatchNorm folded in, `pad_left` as depthwise_conv1d.
void glu_conv_silu(const ExecContext& ctx, const Tensor& x, const int* lengths, const Tensor& w, const Tensor& bias,
                   int pad_left, Tensor& y);

// y = LayerNorm(x) over the last dimension with gamma/beta; eps inside the square root.
void layer_norm(const ExecContext& ctx, const Tensor& x, const Tensor& gamma, const Tensor& beta, float eps,
                Tensor& y);
// In place: x = x · σ(x).
void silu_(const ExecContext& ctx, Tensor& x);
void relu_(const ExecContext& ctx, Tensor& x);
// y += alpha · x (same shape).
void add_scaled_(const ExecContext& ctx, Tensor& y, const Tensor& x, float alpha);
// GLU over the last dimension: x[R, 2C] -> y[R, C] = x[:, :C] · σ(x[:, C:]).
void glu(const ExecContext& ctx, const Tensor& x, Tensor& y);

// Depthwise 1-D convolution over time, channels last: x[B, T, C], w[C, K] (+ bias[C]) -> y[B, T, C].
// Reads x[t + k - pad_left] and zero outside [0, T). The BatchNorm of the conv module is folded in.
void depthwise_conv1d(const ExecContext& ctx, const Tensor& x, const Tensor& w, const Tensor* bias,
                      int pad_left, Tensor& y);

// Rel-pos multi-head attention core (Transformer-XL, NeMo RelPositionMultiHeadAttention) for one batch.
// q[B, T, H·dk], k/v[B, N, H·dk] with N = C + T keys (C cached rows first), p[P, H·dk] the projected
// positional rows for distances (N-1) ... -(N-1) (P = 2N - 1), pos_bias_u/v[H, dk].
// key_begin[b]/key_end[b]: valid keys of item b; q_valid[b]: valid queries (rows beyond are zeroed).
// window: -1 = full context, else |(C+i) - j| <= window (local attention, symmetric) — and for
// regular limited context models left/right limits (att_left/att_right, -1 = unlimited).
struct AttentionParams {
    int n_heads = 1;
    int n_cache = 0;     // C
    int att_left = -1;   // keys allowed from query_pos - att_left
    int att_right = -1;  // to query_pos + att_right
    // chunked_limited style (NeMo _create_masks): query position a sees whole chunks of att_chunk keys,
    // from chunk a / att_chunk - att_left_chunks to its own. 0 = regular style (att_left/att_right).
    int att_chunk = 0;
    int att_left_chunks = 0;
    const int* key_begin = nullptr;  // [B] first valid key (cache offset), nullptr = 0
    const int* key_end = nullptr;    // [B] one past the last valid key, nullptr = N
    const int* q_valid = nullptr;    // [B] valid query rows, nullptr = T
    // Distance held by row 0 of p (row r: pos_first - r). -1 = N - 1, the full table of 2N - 1 rows.
    // Local attention passes a table covering only the distances its window reaches.
    int64_t pos_first = -1;
};
// out is float32, or on CUDA gemm_input_dtype(ctx) (written for the output linear's 16-bit GEMM).
void rel_pos_attention(const ExecContext& ctx, const Tensor& q, const Tensor& k, const Tensor& v,
                       const Tensor& p, const Tensor& pos_bias_u, const Tensor& pos_bias_v,
                       const AttentionParams& params, Tensor& out);

// Sinusoidal rows pe(p) for p = first, first-1, ..., first-n+1 (NeMo PositionalEncoding.create_pe).
void rel_positions(int64_t first, int64_t n, int d_model, Tensor& out);

}  // namespace parakeet::ops

namespace parakeet::ops {
// 3x3 / stride 2 convolution of one item with `pad_lo` zeros before and 1 after on both axes
// (1/1: symmetric padding; 2/1: NeMo CausalConv2D): x[C_in, T, F] -> y[C_out, T', F'], n' = (n + pad_lo + 1 - 3)/2 + 1.
// Dense from one input channel (C_in = 1) or depthwise (C_in = C_out). w[C_out, 1, 3, 3], bias[C_out].
void conv2d_3x3_s2(const ExecContext& ctx, const Tensor& x, const Tensor& w, const Tensor& bias, bool depthwise,
                   int pad_lo, Tensor& y);

// The dw_striding subsampling of a batch, channels last (FastConformerEncoder::subsample_batch); each item gets what
// the per-item conv2d_3x3_s2 path gives it alone: every stage reads zeros outside the item's own rows.
// subsample_front: stage 0 (3x3/2 conv of the one input channel, + b0, ReLU) fused with stage 1's depthwise 3x3/2
// conv (+ b1): x[B, T, F] float32 (item b has lengths[b] rows) -> y[B, T2, F2, C], float32 or gemm_input_dtype(ctx);
// rows past an item's own T2 are zero. w0/w1 [C, 1, 3, 3].
void subsample_front(const ExecContext& ctx, const Tensor& x, const int* lengths, const Tensor& w0, const Tensor& b0,
                     const Tensor& w1, const Tensor& b1, int pad_lo, Tensor& y);
// y[B, T', F', C] = depthwise 3x3/2 conv (+ bias) of ReLU(x[B, T, F, C] + in_bias[C]) (x float32, item b has
// lengths[b] rows; in_bias may be null: the bias of the GEMM that made x); y float32 or gemm_input_dtype(ctx), rows
// past an item's own T' zero.
void relu_depthwise_conv2d_s2(const ExecContext& ctx, const Tensor& x, const Tensor* in_bias, const int* lengths,
                              const Tensor& w, const Tensor& bias, int pad_lo, Tensor& y);
// y = max(x + bias[c], 0) over rows of C = bias size (bias may be null): x float32, y float32 or
// gemm_input_dtype(ctx) (same element count).
void relu_to(const ExecContext& ctx, const Tensor& x, const Tensor* bias, Tensor& y);
}  // namespace parakeet::ops

namespace parakeet::ops {
// y[r, :] += bias[r] for y[R, N] (channel-first bias, e.g. the subsampling's pointwise convs).
void add_row_bias_(const ExecContext& ctx, Tensor& y, const Tensor& bias);
// x *= alpha.
void scale_(const ExecContext& ctx, Tensor& x, float alpha);
// [C, T, F] -> [T, C·F] with feature index c·F + f (NeMo's subsampling flatten, channel-major).
void flatten_channels(const ExecContext& ctx, const Tensor& x, Tensor& y);
// Zeroes x[b, t, :] for t >= lengths[b] (host array of B lengths), x[B, T, D].
void zero_after_lengths_(const ExecContext& ctx, Tensor& x, const int* lengths);
// dst = src (same element count and dtype; devices may differ).
void copy_(const ExecContext& ctx, Tensor& dst, const Tensor& src);
}  // namespace parakeet::ops
