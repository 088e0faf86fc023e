// GEMM through cuBLAS, and the linear layer built on it.
#include <limits>

#include "backends/cuda/context_impl.h"
#include "backends/cuda/cuda_ops.h"
#include "core/error.h"

namespace parakeet::cuda {

namespace {

cudaDataType cuda_type(DType dtype) {
    switch (dtype) {
        case DType::kF32: return CUDA_R_32F;
        case DType::kF16: return CUDA_R_16F;
        case DType::kBF16: return CUDA_R_16BF;
        case DType::kF64:
        case DType::kI64:
        case DType::kI32:
        case DType::kI16:
        case DType::kI8:
        case DType::kU8:
        case DType::kBool: break;
    }
    PK_THROW(kInternal, "gemm: unsupported dtype {}", dtype_name(dtype));
}

cublasComputeType_t compute_type(Precision precision, DType inputs) {
    if (inputs != DType::kF32) return CUBLAS_COMPUTE_32F;  // 16-bit inputs, fp32 accumulation
    switch (precision) {
        case Precision::kF32: return CUBLAS_COMPUTE_32F;
        case Precision::kTF32: return CUBLAS_COMPUTE_32F_FAST_TF32;
        case Precision::kF16: return CUBLAS_COMPUTE_32F_FAST_16F;
        case Precision::kBF16: return CUBLAS_COMPUTE_32F_FAST_16BF;
    }
    return CUBLAS_COMPUTE_32F;
}

int to_int(int64_t v, const char* what) {
    PK_CHECK(v >= 0 && v <= std::numeric_limits<int>::max(), kInternal, "gemm: {} = {} out of range", what, v);
    return static_cast<int>(v);
}

}  // namespace

void gemm(CudaContext& ctx, Precision precision, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
          float alpha, const GemmOperand& a, const GemmOperand& b, float beta, float* c, int64_t ldc,
          int64_t stride_c, int64_t batch) {
    gemm_to(ctx, precision, trans_a, trans_b, m, n, k, alpha, a, b, beta, c, DType::kF32, ldc, stride_c, batch);
}

void gemm_to(CudaContext& ctx, Precision precision, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
             float alpha, const GemmOperand& a, const GemmOperand& b, float beta, void* c, DType c_dtype, int64_t ldc,
             int64_t stride_c, int64_t batch) {
    if (m == 0 || n == 0 || batch == 0) return;
    PK_CHECK(a.dtype == b.dtype, kInternal, "gemm: A is {} but B is {}", dtype_name(a.dtype), dtype_name(b.dtype));
    // cuBLAS is column-major. A row-major matrix with leading dimension ld is, read column-major, its
    // transpose; so row-major C = op(A)·op(B) is computed as column-major Cᵀ = op(B)ᵀ·op(A)ᵀ: swap the
    // operands and m/n, keep the transpose flags and leading dimensions.
    const cublasOperation_t op_a = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
    const cublasOperation_t op_b = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
    PK_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
        ctx.cublas, op_b, op_a, to_int(n, "n"), to_int(m, "m"), to_int(k, "k"), &alpha, b.data, cuda_type(b.dtype),
        to_int(b.ld, "ldb"), b.stride, a.data, cuda_type(a.dtype), to_int(a.ld, "lda"), a.stride, &beta, c,
        cuda_type(c_dtype), to_int(ldc, "ldc"), stride_c, to_int(batch, "batch"), compute_type(precision, a.dtype),
        CUBLAS_GEMM_DEFAULT));
}

void gemm_batched(CudaContext& ctx, Precision precision, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                  float alpha, const float* const* a, int64_t lda, const float* const* b, int64_t ldb, float beta,
                  float* const* c, int64_t ldc, int64_t batch) {
    if (m == 0 || n == 0 || batch == 0) return;
    // Column-major swap as in gemm().
    const cublasOperation_t op_a = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
    const cublasOperation_t op_b = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
    PK_CUBLAS_CHECK(cublasGemmBatchedEx(
        ctx.cublas, op_b, op_a, to_int(n, "n"), to_int(m, "m"), to_int(k, "k"), &alpha,
        reinterpret_cast<const void* const*>(b), CUDA_R_32F, to_int(ldb, "ldb"),
        reinterpret_cast<const void* const*>(a), CUDA_R_32F, to_int(lda, "lda"), &beta,
        reinterpret_cast<void* const*>(c), CUDA_R_32F, to_int(ldc, "ldc"), to_int(batch, "batch"),
        compute_type(precision, DType::kF32), CUBLAS_GEMM_DEFAULT));
}

void linear(CudaContext& ctx, Precision precision, const float* x, const Tensor& w, const float* bias, float* y,
            int64_t m, int64_t n, int64_t k, float beta) {
    if (m == 0 || n == 0) return;
    GemmOperand a{x, DType::kF32, k};
    if (w.dtype() != DType::kF32) {
        // Tensor cores need both inputs in 16 bits: convert the activations once per call.
        void* x16 = ctx.scratch(static_cast<size_t>(m * k) * 2);
        convert_f32(ctx, x, x16, w.dtype(), m * k);
        a = GemmOperand{x16, w.dtype(), k};
    }
    gemm(ctx, precision, false, true, m, n, k, 1.f, a, GemmOperand{w.raw(), w.dtype(), k}, beta, y, n);
    if (bias) add_bias_rows(ctx, y, bias, m, n);
}

void check_on_device(const CudaContext& ctx, const char* op, std::initializer_list<const Tensor*> tensors) {
    const Device dev{DeviceType::kCUDA, ctx.device};
    for (const Tensor* t : tensors)
        PK_CHECK(!t || !t->defined() || t->device() == dev, kInternal, "op '{}': a {} tensor is on {}, not on {}",
                 op, shape_str(t->shape()), t->device().str(), dev.str());
}

const float* weight_f32(CudaContext& ctx, const Tensor& w) {
    return device_weight(ctx, w, Precision::kF32).data<float>();
}

}  // namespace parakeet::cuda

namespace parakeet::cuda {

void matmul(CudaContext& ctx, Precision precision, const float* a, const float* b, float* y, int64_t m, int64_t n,
            int64_t k, float alpha) {
    gemm(ctx, precision, false, false, m, n, k, alpha, GemmOperand{a, DType::kF32, k}, GemmOperand{b, DType::kF32, n},
         0.f, y, n);
}

}  // namespace parakeet::cuda
