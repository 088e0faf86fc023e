// Wrappers from the backend API (cuda_ops.h) to the kernel launchers, and the small host-side glue.
#include "backends/cuda/cuda_ops.h"

#include <vector>

#include "backends/cuda/stream_kernels.h"

#include "backends/cuda/context_impl.h"
#include "backends/cuda/kernels.h"
#include "core/env.h"
#include "core/error.h"
#include "ops/conv_geometry.h"

namespace parakeet::cuda {

namespace {
Launch launch(const CudaContext& ctx) { return Launch{ctx.stream, ctx.n_sms}; }
}  // namespace

int act_code(DType dtype) {
    PK_CHECK(dtype == DType::kF32 || dtype == DType::kF16 || dtype == DType::kBF16, kInternal,
             "16-bit activations: unsupported dtype {}", dtype_name(dtype));
    return dtype == DType::kF16 ? 1 : dtype == DType::kBF16 ? 2 : 0;
}

void convert_f32(CudaContext& ctx, const float* src, void* dst, DType dtype, int64_t n) {
    switch (dtype) {
        case DType::kF16: kernels::convert_f16(launch(ctx), src, dst, n); return;
        case DType::kBF16: kernels::convert_bf16(launch(ctx), src, dst, n); return;
        case DType::kF32:
        case DType::kF64:
        case DType::kI64:
        case DType::kI32:
        case DType::kI16:
        case DType::kI8:
        case DType::kU8:
        case DType::kBool: break;
    }
    PK_THROW(kInternal, "convert_f32: unsupported target dtype {}", dtype_name(dtype));
}

void add_bias_rows(CudaContext& ctx, float* y, const float* bias, int64_t rows, int64_t cols) {
    kernels::add_bias_rows(launch(ctx), y, bias, rows, cols);
}

void layer_norm(CudaContext& ctx, const float* x, const float* gamma, const float* beta, float eps, int64_t rows,
                int64_t cols, float* y) {
    kernels::layer_norm(launch(ctx), x, gamma, beta, eps, rows, cols, y);
}

void add_layer_norm(CudaContext& ctx, float* x, const float* r, float alpha, const float* gamma, const float* beta,
                    float eps, int64_t rows, int64_t cols, float* y) {
    kernels::add_layer_norm(launch(ctx), x, r, alpha, gamma, beta, eps, rows, cols, y);
}

void silu(CudaContext& ctx, float* x, int64_t n) { kernels::silu(launch(ctx), x, n); }
void relu(CudaContext& ctx, float* x, int64_t n) { kernels::relu(launch(ctx), x, n); }

void add_scaled(CudaContext& ctx, float* y, const float* x, float alpha, int64_t n) {
    kernels::add_scaled(launch(ctx), y, x, alpha, n);
}

void scale(CudaContext& ctx, float* x, float alpha, int64_t n) { kernels::scale(launch(ctx), x, alpha, n); }

void glu(CudaContext& ctx, const float* x, int64_t rows, int64_t cols, float* y) {
    kernels::glu(launch(ctx), x, rows, cols, y);
}

void depthwise_conv1d(CudaContext& ctx, const float* x, const float* w, const float* bias, int64_t batch, int64_t t,
                      int64_t c, int64_t k, int64_t pad_left, float* y) {
    kernels::depthwise_conv1d(launch(ctx), x, w, bias, batch, t, c, k, pad_left, y);
}

void glu_depthwise_conv1d_silu(CudaContext& ctx, const float* x, const int* lengths, const float* w,
                               const float* bias, int64_t batch, int64_t t, int64_t c, int64_t k, int64_t pad_left,
                               void* y, DType y_dtype) {
    const int* dev_lengths =
        lengths ? static_cast<const int*>(ctx.upload(lengths, static_cast<size_t>(batch) * sizeof(int))) : nullptr;
    kernels::glu_depthwise_conv1d_silu(launch(ctx), x, dev_lengths, w, bias, batch, t, c, k, pad_left, y,
                                       act_code(y_dtype));
}

void conv2d_3x3_s2(CudaContext& ctx, const float* x, int64_t c_in, int64_t t, int64_t f, const float* w,
                   const float* bias, int64_t c_out, bool depthwise, int64_t pad_lo, float* y) {
    kernels::conv2d_3x3_s2(launch(ctx), x, c_in, t, f, w, bias, c_out, depthwise, pad_lo, y);
}

void add_row_bias(CudaContext& ctx, float* y, const float* bias, int64_t rows, int64_t cols) {
    kernels::add_row_bias(launch(ctx), y, bias, rows, cols);
}

void flatten_channels(CudaContext& ctx, const float* x, int64_t c, int64_t t, int64_t f, float* y) {
    kernels::flatten_channels(launch(ctx), x, c, t, f, y);
}

void subsample_front(CudaContext& ctx, const float* x, const int* lengths, int64_t batch, int64_t t_max, int64_t f,
                     const float* w0, const float* b0, const float* w1, const float* b1, int64_t c, int64_t pad_lo,
                     int64_t t2_max, int64_t f1, int64_t f2, void* y, DType y_dtype) {
    if (batch <= 0) return;
    // [b][3]: input rows, then after each of the two stages.
    std::vector<int> lens(static_cast<size_t>(3 * batch));
    for (int64_t b = 0; b < batch; ++b) {
        lens[3 * b] = lengths[b];
        lens[3 * b + 1] = static_cast<int>(conv3x3_s2_size(lengths[b], pad_lo));
        lens[3 * b + 2] = static_cast<int>(conv3x3_s2_size(lens[3 * b + 1], pad_lo));
    }
    const int* dev = static_cast<const int*>(ctx.upload(lens.data(), lens.size() * sizeof(int)));
    kernels::subsample_front(launch(ctx), x, kernels::SubsampleLengths{dev, dev + 1, 3}, batch, t_max, f, w0, b0, w1, b1,
                             c, pad_lo, t2_max, f1, f2, y, act_code(y_dtype));
}

void relu_depthwise_conv2d_s2(CudaContext& ctx, const float* x, const float* in_bias, const int* lengths,
                              int64_t batch, int64_t t_in_max,
                              int64_t f_in, int64_t c, const float* w, const float* bias, int64_t pad_lo,
                              int64_t t_out_max, int64_t f_out, void* y, DType y_dtype) {
    if (batch <= 0) return;
    std::vector<int> lens(static_cast<size_t>(2 * batch));
    for (int64_t b = 0; b < batch; ++b) {
        lens[2 * b] = lengths[b];
        lens[2 * b + 1] = static_cast<int>(conv3x3_s2_size(lengths[b], pad_lo));
    }
    const int* dev = static_cast<const int*>(ctx.upload(lens.data(), lens.size() * sizeof(int)));
    kernels::relu_depthwise_conv2d_s2(launch(ctx), x, in_bias, kernels::SubsampleLengths{dev, dev + 1, 2}, batch,
                                      t_in_max, f_in,
                                      c, w, bias, pad_lo, t_out_max, f_out, y, act_code(y_dtype));
}

void relu_to(CudaContext& ctx, const float* x, const float* bias, int64_t c, int64_t n, void* y, DType y_dtype) {
    kernels::relu_to(launch(ctx), x, bias, c, n, y, act_code(y_dtype));
}

void zero_after_lengths(CudaContext& ctx, float* x, const int* lengths, int64_t batch, int64_t t, int64_t d) {
    if (batch * t * d <= 0) return;
    const int* dev_lengths = static_cast<const int*>(ctx.upload(lengths, static_cast<size_t>(batch) * sizeof(int)));
    kernels::zero_after_lengths(launch(ctx), x, dev_lengths, batch, t, d);
}

void linear_x16(CudaContext& ctx, Precision precision, const void* x16, DType dtype, const Tensor& w,
                const float* bias, float* y, int64_t m, int64_t n, int64_t k) {
    if (m == 0 || n == 0) return;
    PK_CHECK(w.dtype() == dtype, kInternal, "linear_x16: input {} but weight {}", dtype_name(dtype),
             dtype_name(w.dtype()));
    gemm(ctx, precision, false, true, m, n, k, 1.f, GemmOperand{x16, dtype, k}, GemmOperand{w.raw(), w.dtype(), k}, 0.f,
         y, n);
    if (bias) add_bias_rows(ctx, y, bias, m, n);
}

void linear_x16_bias_silu(CudaContext& ctx, Precision precision, const void* x16, DType dtype, const Tensor& w,
                          const float* bias, void* y16, int64_t m, int64_t n, int64_t k) {
    if (m == 0 || n == 0) return;
    // The GEMM writes 16 bits and bias + SiLU run in place: half the bytes of a float32 product and a converting
    // pass (PARAKEET_F32_FF_PRODUCT=1 keeps that path, for A/B measurements).
    static const bool f32_product = env_switch("PARAKEET_F32_FF_PRODUCT");
    if (!f32_product && dtype != DType::kF32 && n % 2 == 0) {
        PK_CHECK(w.dtype() == dtype, kInternal, "linear_x16_bias_silu: input {} but weight {}", dtype_name(dtype),
                 dtype_name(w.dtype()));
        gemm_to(ctx, precision, false, true, m, n, k, 1.f, GemmOperand{x16, dtype, k},
                GemmOperand{w.raw(), w.dtype(), k}, 0.f, y16, dtype, n);
        kernels::bias_silu_16(launch(ctx), y16, bias, m, n, act_code(dtype));
        return;
    }
    float* y = static_cast<float*>(ctx.scratch(static_cast<size_t>(m * n) * sizeof(float)));
    linear_x16(ctx, precision, x16, dtype, w, nullptr, y, m, n, k);
    kernels::bias_silu_act(launch(ctx), y, bias, m, n, y16, act_code(dtype));
}

void add_layer_norm_to(CudaContext& ctx, float* x, const float* r, float alpha, const float* gamma, const float* beta,
                       float eps, int64_t rows, int64_t cols, void* y, DType dtype) {
    kernels::layer_norm_act(launch(ctx), x, r, alpha, gamma, beta, eps, rows, cols, y, act_code(dtype));
}

void add_layer_norm2_to(CudaContext& ctx, float* x, const float* r, float alpha, const float* gamma,
                        const float* beta, float eps, int64_t rows, int64_t cols, float* y, const float* gamma2,
                        const float* beta2, void* y2, DType dtype) {
    kernels::layer_norm2_act(launch(ctx), x, r, alpha, gamma, beta, eps, rows, cols, y, gamma2, beta2, y2,
                             act_code(dtype));
}

void linear_bias_silu(CudaContext& ctx, Precision precision, const float* x, const Tensor& w, const float* bias,
                      float* y, int64_t m, int64_t n, int64_t k) {
    if (m == 0 || n == 0) return;
    // cuBLASLt has no SiLU epilogue: the GEMM writes x·wᵀ and one pass adds the bias and applies SiLU.
    linear(ctx, precision, x, w, nullptr, y, m, n, k, 0.f);
    kernels::bias_silu(launch(ctx), y, bias, m, n);
}

}  // namespace parakeet::cuda
