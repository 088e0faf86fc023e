// Kernel launchers of the CUDA backend: raw device pointers and a stream, nothing else, so the .cu files
// include no engine headers (fmt does not compile under nvcc). cuda_ops.cc wraps them for src/ops.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "backends/cuda/cuda_check.h"

namespace parakeet::cuda {

struct Launch {
    cudaStream_t stream;
    int n_sms;
};

namespace kernels {

void silu(Launch l, float* x, int64_t n);
// Holds the stream for `ns` nanoseconds (one thread): work queued behind it then starts back to back, so events
// around it time the GPU rather than the host's launches (the GEMM tuning of gemm.cc).
void spin(Launch l, int64_t ns);
void relu(Launch l, float* x, int64_t n);
void add_scaled(Launch l, float* y, const float* x, float alpha, int64_t n);
void scale(Launch l, float* x, float alpha, int64_t n);
void glu(Launch l, const float* x, int64_t rows, int64_t cols, float* y);
void add_bias_rows(Launch l, float* y, const float* bias, int64_t rows, int64_t cols);
void add_row_bias(Launch l, float* y, const float* bias, int64_t rows, int64_t cols);
// y = SiLU(y + bias[col]) (bias may be null).
void bias_silu(Launch l, float* y, const float* bias, int64_t rows, int64_t cols);
void convert_f16(Launch l, const float* src, void* dst, int64_t n);
void convert_bf16(Launch l, const float* src, void* dst, int64_t n);
void flatten_channels(Launch l, const float* x, int64_t c, int64_t t, int64_t f, float* y);
// lengths: device-readable [batch].
void zero_after_lengths(Launch l, float* x, const int* lengths, int64_t batch, int64_t t, int64_t d);

void layer_norm(Launch l, const float* x, const float* gamma, const float* beta, float eps, int64_t rows,
                int64_t cols, float* y);
void add_layer_norm(Launch l, float* x, const float* r, float alpha, const float* gamma, const float* beta, float eps,
                    int64_t rows, int64_t cols, float* y);

void depthwise_conv1d(Launch l, const float* x, const float* w, const float* bias, int64_t batch, int64_t t,
                      int64_t c, int64_t k, int64_t pad_left, float* y);
// lengths: device-readable [batch] or null.
void glu_depthwise_conv1d_silu(Launch l, const float* x, const int* lengths, const float* w, const float* bias,
                               int64_t batch, int64_t t, int64_t c, int64_t k, int64_t pad_left, void* y,
                               int y_dtype);
// pad_lo zeros before, 1 after on both axes: n' = (n + pad_lo - 2) / 2 + 1.
void conv2d_3x3_s2(Launch l, const float* x, int64_t c_in, int64_t t, int64_t f, const float* w, const float* bias,
                   int64_t c_out, bool depthwise, int64_t pad_lo, float* y);
// The batched subsampling's kernels (channels last; y of y_dtype 0/1/2 = float32/float16/bfloat16): see
// ops::subsample_front, ops::relu_depthwise_conv2d_s2, ops::relu_to (in_bias / bias: per channel, added to x
// before the ReLU, may be null; c: channels of relu_to's rows). Per-item row counts, device-readable, item b's
// at b · stride: `in` the input's rows (subsample_front: null when x is zero past each item's rows), `out` the
// output's (subsample_front: the first stage's at out[b · stride], the second's at out[b · stride + 1]).
struct SubsampleLengths {
    const int* in;
    const int* out;
    int stride;
};
void subsample_front(Launch l, const float* x, const SubsampleLengths& lengths, int64_t batch, int64_t t_max, int64_t f,
                     const float* w0, const float* b0, const float* w1, const float* b1, int64_t c, int64_t pad_lo,
                     int64_t t2_max, int64_t f1, int64_t f2, void* y, int y_dtype);
void relu_depthwise_conv2d_s2(Launch l, const float* x, const float* in_bias, const SubsampleLengths& lengths,
                              int64_t batch, int64_t t_in_max,
                              int64_t f_in, int64_t c, const float* w, const float* bias, int64_t pad_lo,
                              int64_t t_out_max, int64_t f_out, void* y, int y_dtype);
void relu_to(Launch l, const float* x, const float* bias, int64_t c, int64_t n, void* y, int y_dtype);

// The whole rel-pos attention in one kernel for 16-bit precisions (attention_fused.cu): q/k/v/p float32 rows of
// n_heads · d_head, read as fp16 (`half`) or bf16; items: device [batch][3] = key_begin, key_end, valid queries.
struct FusedAttentionArgs {
    const float *q, *k, *v, *p, *pos_bias_u, *pos_bias_v;
    void* out;     // out_dtype: 0 float32, 1 float16, 2 bfloat16 (the input of the output linear's GEMM)
    int out_dtype;
    const int* items;
    int batch, n_query, n_key, n_heads, d_head, n_cache, n_pos, pos_first;
    int att_left, att_right, att_chunk, att_left_chunks;
    float scale;  // 1 / sqrt(d_head)
    // n_splits > 1: each block takes one of n_splits parts of its rows' keys and writes its unnormalised rows to
    // part_o [n_splits][batch][n_heads][n_query][d_head] and (running maximum, sum) to part_ml [..][2]; a second
    // kernel merges the parts into out.
    int n_splits;
    float* part_o;
    float* part_ml;
};
bool fused_attention_supported(int64_t d_head);
// Parts to split each block's keys into (1: no split) so that small batches still fill the GPU.
int fused_attention_splits(int64_t batch, int64_t n_query, int64_t n_heads, int64_t n_key, int n_sms);
void fused_attention(Launch l, const FusedAttentionArgs& a, bool half);

// Attention helpers for a query block [i0, i0 + nb) of one batch item, or for blocks of n_items items at once
// (rows [0, nb) of each; see attention.cc).
// qu/qv[H, nb, dk] = q[i0 + i, h·dk + c] + u/v[h, c] (nb may span consecutive items: their rows are contiguous).
void attention_bias_queries(Launch l, const float* q, int64_t d_model, int64_t n_heads, int64_t d_head, int64_t nb,
                            const float* pos_bias_u, const float* pos_bias_v, float* qu, float* qv);
struct AttentionSoftmaxArgs {
    int64_t n_heads, n_items, nb, nk, ld, nr;  // ld: row stride of ac (>= nk)
    int64_t j0;           // first key of the block
    int64_t qpos0;        // n_cache + i0: position of query row 0
    int64_t att_left, att_right, att_chunk, att_left_chunks;
    int64_t key_begin, key_end;  // valid keys of the batch item (absolute); n_items == 1 only
    int64_t pos_first, r0;
    int64_t valid_rows;   // rows >= this are zeroed; n_items == 1 only
    const int* items;     // device [n_items][3]: key_begin, key_end, valid_rows per item; null when n_items == 1
    float denom;          // sqrt(d_head): scores are divided after the sum, as NeMo does
};
// ac[H, n_items, nb, ld] (in) -> probabilities (out, zeros outside each row's allowed keys, columns >= nk
// untouched); bd[H, n_items, nb, nr].
void attention_softmax(Launch l, const AttentionSoftmaxArgs& a, float* ac, const float* bd);
// Pointer arrays of the batched path's GEMMs over items x heads (z = h · n_items + b), which no single stride
// can express (K, V and the output of item b, head h start at b·n_key·d_model + h·d_head); also copies the
// items' key ranges from the pinned staging buffer to device memory (items_host -> items).
struct AttentionBatchSetup {
    int64_t n_heads, n_items, nq, n_key, d_head, ld, j0;
    const float* qu;  // [H, n_items, nq, d_head]
    const float* k;   // item 0's keys and values [n_items, n_key, H·d_head]
    const float* v;
    float* ac;        // [H, n_items, nq, ld]
    float* out;       // [n_items, nq, H·d_head]
    const float** qu_ptrs;
    const float** k_ptrs;   // row j0 of item b, head h
    const float** v_ptrs;
    float** ac_ptrs;
    float** out_ptrs;
    const int* items_host;  // [n_items][3]
    int* items;
};
void attention_batch_setup(Launch l, const AttentionBatchSetup& a);

}  // namespace kernels
}  // namespace parakeet::cuda

namespace parakeet::cuda::kernels {

// Greedy TDT/RNNT label-looping decode of up to kGreedyMaxBatch items in one persistent cooperative kernel
// (see greedy.cu; the rules are those of src/decoding/greedy.cc). All pointers are device memory.
constexpr int kGreedyMaxLayers = 4;
constexpr int kGreedyMaxDurations = 16;
constexpr int kGreedyMaxBatch = 1024;
// Batches up to this size take the small-batch kernel: every block keeps the items' loop state and decides
// every item itself, so an iteration without a new token costs one grid barrier.
constexpr int kGreedySmallBatch = 8;
// Upper bound on the decode kernel's blocks (per-block argmax partials are stored for each).
constexpr int kGreedyMaxBlocks = 512;
// Bytes of one per-block argmax/softmax partial (max, index, sum of exponentials).
constexpr int kGreedyPartialBytes = 16;

enum GreedyWeights : int { kGreedyF32 = 0, kGreedyF16 = 1, kGreedyBF16 = 2 };

struct GreedyParams {
    // Weights: embed [V+1, H] (float32); per layer w_ih/w_hh [4H, H] and bias = b_ih + b_hh [4H]; pred [J, H] +
    // [J]; out [n_out, J] + [n_out]. Gate order i, f, g, o (PyTorch LSTM). The matrices are weight_type (float32,
    // float16 or bfloat16; accumulation is float32), embeddings and biases float32.
    const float* embed;
    const void* w_ih[kGreedyMaxLayers];
    const void* w_hh[kGreedyMaxLayers];
    const float* bias[kGreedyMaxLayers];
    const void* pred_w;
    const float* pred_b;
    const void* out_w;
    const float* out_b;
    int weight_type;  // GreedyWeights: the matrices' element type
    int hidden, n_layers, joint_hidden, n_out, blank, n_dur, max_symbols;
    int activation;  // 0 relu, 1 tanh, 2 sigmoid
    int durations[kGreedyMaxDurations];
    int batch;
    // Projected encoder output: item b, frame t at fproj[b * item_stride + t * joint_hidden].
    const float* fproj;
    int64_t item_stride;
    const int* lengths;  // [B] frames per item
    // State, in and out: h/c [B, L, H], p [B, J]; t [B] (in: carried time jump, out: final t);
    // started [B] (in: 0 runs the SOS step first).
    float* h;
    float* c;
    float* p;
    int* t;
    const int* started;
    // Scratch: hn [B, L, H]; logits [B or 2B (small batches), n_out]; partials [B or 2B, kGreedyMaxBlocks]
    // (16-byte aligned); label/need_lstm/run/last_ts [B].
    float* hn;
    float* logits;
    void* partials;
    // [B, joint_hidden] 16-bit joint inputs for the tensor-core joint of large batches, or null (float32 weights,
    // joint_hidden not a multiple of 16): then out_w must have its rows padded with zeros to a multiple of 16.
    void* z16;
    int* label;
    int* need_lstm;
    int* run;
    int* last_ts;
    // Output tokens per item (capacity max_tokens each): id, frame (local), duration, confidence.
    int* tok_id;
    int* tok_frame;
    int* tok_dur;
    float* tok_conf;
    int max_tokens;
    int* n_tokens;  // [B]
    int* error;     // set non-zero on token overflow or runaway loop
    // 1: the LSTM of up to a few hundred emitting items in split units (a gate and an input per warp); 0: wide units
    // only (PARAKEET_WIDE_LSTM_UNITS=1, the A/B switch).
    int split_lstm;
};

// Dynamic shared memory the decode kernel needs.
size_t greedy_shared_bytes(const GreedyParams& p);
// Launches the cooperative kernel on l.stream (no synchronisation).
void greedy_decode(Launch l, const GreedyParams& p);

}  // namespace parakeet::cuda::kernels
