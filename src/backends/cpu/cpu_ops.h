// CPU backend: raw pointers, sizes and strides only; shape logic lives in src/ops.
#pragma once

#include <cstdint>

namespace parakeet::cpu {

// Row-major sgemm: C[M,N] = alpha · op(A) · op(B) + beta · C (OpenBLAS, multi-threaded).
void sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
           const float* b, int64_t ldb, float beta, float* c, int64_t ldc);

void add_bias_rows(float* y, const float* bias, int64_t rows, int64_t cols);
void layer_norm(const float* x, const float* gamma, const float* beta, float eps, int64_t rows, int64_t cols,
                float* y);
void silu(float* x, int64_t n);
void relu(float* x, int64_t n);
void add_scaled(float* y, const float* x, float alpha, int64_t n);
void glu(const float* x, int64_t rows, int64_t cols, float* y);
void depthwise_conv1d(const float* x, const float* w, const float* bias, int64_t batch, int64_t t, int64_t c,
                      int64_t k, int64_t pad_left, float* y);

struct AttentionArgs {
    int64_t batch, n_query, n_key, n_heads, d_head;
    int64_t n_cache;
    int64_t att_left, att_right;  // -1 = unlimited
    int64_t att_chunk;            // chunked_limited: chunk size in keys (0 = regular style)
    int64_t att_left_chunks;      // chunked_limited: chunks of left context
    int64_t pos_first;            // distance of p's row 0 (row r holds distance pos_first - r)
    const int* key_begin;         // may be null
    const int* key_end;           // may be null
    const int* q_valid;           // may be null
};
void rel_pos_attention(const AttentionArgs& a, const float* q, const float* k, const float* v, const float* p,
                       const float* pos_bias_u, const float* pos_bias_v, float* out);

}  // namespace parakeet::cpu

namespace parakeet::cpu {
// 3x3 convolution, stride 2, padding 1 on [C_in, T, F] -> [C_out, T2, F2] (one batch item).
// depthwise: C_in == C_out and groups == C (w [C, 1, 3, 3]); else dense with C_in == 1 (w [C_out, 1, 3, 3]).
void conv2d_3x3_s2(const float* x, int64_t c_in, int64_t t, int64_t f, const float* w, const float* bias,
                   int64_t c_out, bool depthwise, int64_t pad_lo, float* y);
// The batched subsampling, channels last (ops::subsample_front, ops::relu_depthwise_conv2d_s2); lengths [batch]
// in the input's rows.
void subsample_front(const float* x, const int* lengths, int64_t batch, int64_t t_max, int64_t f, const float* w0,
                     const float* b0, const float* w1, const float* b1, int64_t c, int64_t pad_lo, int64_t t2_max,
                     int64_t f1, int64_t f2, float* y);
void relu_depthwise_conv2d_s2(const float* x, const float* in_bias, const int* lengths, int64_t batch,
                              int64_t t_in_max, int64_t f_in, int64_t c, const float* w, const float* bias,
                              int64_t pad_lo, int64_t t_out_max, int64_t f_out, float* y);
}  // namespace parakeet::cpu

namespace parakeet::cpu {
void add_row_bias(float* y, const float* bias, int64_t rows, int64_t cols);
void scale(float* x, float alpha, int64_t n);
void flatten_channels(const float* x, int64_t c, int64_t t, int64_t f, float* y);
void zero_after_lengths(float* x, const int* lengths, int64_t batch, int64_t t, int64_t d);
}  // namespace parakeet::cpu
