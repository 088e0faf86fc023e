// CUDA backend ops: raw device pointers, sizes and the context; shape logic lives in src/ops. Plain C++
// declarations (no CUDA types), so src/ops/ops.cc can name them in every build. All work is queued on the
// context's stream; nothing here synchronises unless it says so. Activations are float32.
#pragma once

#include <cstdint>

#include "core/context.h"
#include "core/tensor.h"

namespace parakeet::cuda {

// Row-major, strided-batched GEMM: C[m, n] = alpha · op(A) · op(B) + beta · C for `batch` matrices, float32
// C. A and B are float32, float16 or bfloat16 (both the same). float32 inputs compute in fp32, or with
// tensor cores for kTF32 / kF16 / kBF16 (cuBLAS's FAST_* compute types); 16-bit inputs accumulate in fp32.
// Strides are in elements. The single place that talks to cuBLAS's column-major GEMM.
struct GemmOperand {
    const void* data;
    DType dtype;
    int64_t ld;
    int64_t stride = 0;
};
void gemm(CudaContext& ctx, Precision precision, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
          float alpha, const GemmOperand& a, const GemmOperand& b, float beta, float* c, int64_t ldc,
          int64_t stride_c = 0, int64_t batch = 1);
// gemm with C of c_dtype (float32, or float16/bfloat16 where the result feeds 16-bit work; accumulation in float32).
void gemm_to(CudaContext& ctx, Precision precision, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
             float alpha, const GemmOperand& a, const GemmOperand& b, float beta, void* c, DType c_dtype, int64_t ldc,
             int64_t stride_c = 0, int64_t batch = 1);
// The same for float32 matrices that lie no fixed stride apart: a, b and c are device arrays of `batch`
// pointers (cuBLAS's pointer-array batched GEMM).
void gemm_batched(CudaContext& ctx, Precision precision, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                  float alpha, const float* const* a, int64_t lda, const float* const* b, int64_t ldb, float beta,
                  float* const* c, int64_t ldc, int64_t batch);

// y[m, n] = x[m, k] · w[n, k]ᵀ (+ bias[n]) (+ beta · y). w is a device weight (float32 or, for the 16-bit
// precisions, float16/bfloat16: x is then converted into the workspace first). bias is float32 or null.
void linear(CudaContext& ctx, Precision precision, const float* x, const Tensor& w, const float* bias, float* y,
            int64_t m, int64_t n, int64_t k, float beta);
// linear followed by SiLU in a cuBLASLt epilogue (bias + SiLU fused; beta = 0): the FFN's first layer.
void linear_bias_silu(CudaContext& ctx, Precision precision, const float* x, const Tensor& w, const float* bias,
                      float* y, int64_t m, int64_t n, int64_t k);

// 16-bit GEMM inputs (fp16/bf16 precisions): the kernels that feed a GEMM write its input in the GEMM's dtype, so
// no conversion pass runs before it. x16 is float16/bfloat16 (`dtype`, the same as w's).
// y[m, n] = x16 · wᵀ (+ bias) in float32.
void linear_x16(CudaContext& ctx, Precision precision, const void* x16, DType dtype, const Tensor& w,
                const float* bias, float* y, int64_t m, int64_t n, int64_t k);
// y16[m, n] = SiLU(x16 · wᵀ + bias) written as `dtype` (the GEMM's float32 output goes through the workspace).
void linear_x16_bias_silu(CudaContext& ctx, Precision precision, const void* x16, DType dtype, const Tensor& w,
                          const float* bias, void* y16, int64_t m, int64_t n, int64_t k);
// x += alpha · r (r may be null), then y = LayerNorm(x) written as `dtype` (float32, float16 or bfloat16).
void add_layer_norm_to(CudaContext& ctx, float* x, const float* r, float alpha, const float* gamma, const float* beta,
                       float eps, int64_t rows, int64_t cols, void* y, DType dtype);

// The kernels' activation dtype code of dtype: 0 float32, 1 float16, 2 bfloat16 (kInternal for other dtypes).
int act_code(DType dtype);

// add_layer_norm_to into float32 y, then y2 = LayerNorm(y; gamma2, beta2) written as `dtype`.
void add_layer_norm2_to(CudaContext& ctx, float* x, const float* r, float alpha, const float* gamma,
                        const float* beta, float eps, int64_t rows, int64_t cols, float* y, const float* gamma2,
                        const float* beta2, void* y2, DType dtype);

// Converts n float32 values to `dtype` (float16 or bfloat16, round to nearest even).
void convert_f32(CudaContext& ctx, const float* src, void* dst, DType dtype, int64_t n);

void add_bias_rows(CudaContext& ctx, float* y, const float* bias, int64_t rows, int64_t cols);
void layer_norm(CudaContext& ctx, const float* x, const float* gamma, const float* beta, float eps, int64_t rows,
                int64_t cols, float* y);
// Fused residual + norm: x += alpha · r, then y = LayerNorm(x) (x is updated in place).
void add_layer_norm(CudaContext& ctx, float* x, const float* r, float alpha, const float* gamma, const float* beta,
                    float eps, int64_t rows, int64_t cols, float* y);
void silu(CudaContext& ctx, float* x, int64_t n);
void relu(CudaContext& ctx, float* x, int64_t n);
void add_scaled(CudaContext& ctx, float* y, const float* x, float alpha, int64_t n);
void scale(CudaContext& ctx, float* x, float alpha, int64_t n);
void glu(CudaContext& ctx, const float* x, int64_t rows, int64_t cols, float* y);
void depthwise_conv1d(CudaContext& ctx, const float* x, const float* w, const float* bias, int64_t batch, int64_t t,
                      int64_t c, int64_t k, int64_t pad_left, float* y);
// Fused conv module middle: y = SiLU(dwconv(GLU(x) with rows t >= lengths[b] zeroed) + bias) — NeMo
// ConformerConvolution between pointwise_conv1 and pointwise_conv2 (BatchNorm folded into w/bias).
// x[B, T, 2C], w[C, K], lengths: host array [B] (null = all valid), y[B, T, C] of y_dtype (float32, or float16/
// bfloat16 when it feeds a 16-bit GEMM).
void glu_depthwise_conv1d_silu(CudaContext& ctx, const float* x, const int* lengths, const float* w,
                               const float* bias, int64_t batch, int64_t t, int64_t c, int64_t k, int64_t pad_left,
                               void* y, DType y_dtype);
void conv2d_3x3_s2(CudaContext& ctx, const float* x, int64_t c_in, int64_t t, int64_t f, const float* w,
                   const float* bias, int64_t c_out, bool depthwise, int64_t pad_lo, float* y);
// ops::subsample_front / relu_depthwise_conv2d_s2 / relu_to (lengths: host arrays [batch]).
void subsample_front(CudaContext& ctx, const float* x, const int* lengths, int64_t batch, int64_t t_max, int64_t f,
                     const float* w0, const float* b0, const float* w1, const float* b1, int64_t c, int64_t pad_lo,
                     int64_t t2_max, int64_t f1, int64_t f2, void* y, DType y_dtype);
void relu_depthwise_conv2d_s2(CudaContext& ctx, const float* x, const float* in_bias, const int* lengths,
                              int64_t batch, int64_t t_in_max,
                              int64_t f_in, int64_t c, const float* w, const float* bias, int64_t pad_lo,
                              int64_t t_out_max, int64_t f_out, void* y, DType y_dtype);
void relu_to(CudaContext& ctx, const float* x, const float* bias, int64_t c, int64_t n, void* y, DType y_dtype);
void add_row_bias(CudaContext& ctx, float* y, const float* bias, int64_t rows, int64_t cols);
void flatten_channels(CudaContext& ctx, const float* x, int64_t c, int64_t t, int64_t f, float* y);
// lengths: host array [batch].
void zero_after_lengths(CudaContext& ctx, float* x, const int* lengths, int64_t batch, int64_t t, int64_t d);

struct AttentionArgs {
    int64_t batch, n_query, n_key, n_heads, d_head;
    int64_t n_cache;
    int64_t att_left, att_right;  // -1 = unlimited
    int64_t att_chunk;            // chunked_limited chunk (0 = regular style)
    int64_t att_left_chunks;
    int64_t pos_first;            // distance of p's row 0 (row r holds distance pos_first - r)
    const int* key_begin;         // host [batch] or null
    const int* key_end;           // host [batch] or null
    const int* q_valid;           // host [batch] or null
    int64_t n_pos;                // rows of p
};
// Same semantics as cpu::rel_pos_attention (NeMo RelPositionMultiHeadAttention): pointers are device float32, out
// of out_dtype (float32, or the 16-bit input of the GEMM that follows).
void rel_pos_attention(CudaContext& ctx, Precision precision, const AttentionArgs& a, const float* q, const float* k,
                       const float* v, const float* p, const float* pos_bias_u, const float* pos_bias_v, void* out,
                       DType out_dtype);

// Throws kInternal naming `op` when a tensor is not on the context's device.
void check_on_device(const CudaContext& ctx, const char* op, std::initializer_list<const Tensor*> tensors);
// Device float32 pointer of a weight (uploaded once, see device_weight).
const float* weight_f32(CudaContext& ctx, const Tensor& w);

}  // namespace parakeet::cuda

namespace parakeet::cuda {
// y[m, n] = alpha · a[m, k] · b[k, n] (row-major, float32).
void matmul(CudaContext& ctx, Precision precision, const float* a, const float* b, float* y, int64_t m, int64_t n,
            int64_t k, float alpha);
}  // namespace parakeet::cuda
