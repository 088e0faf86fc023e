// Element-wise and layout kernels (mirror the loops of backends/cpu/cpu_ops.cc).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "backends/cuda/kernel_utils.cuh"

namespace parakeet::cuda::kernels {

namespace {

__global__ void silu_kernel(float* x, int64_t n) {
    for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x)
        x[i] = x[i] / (1.f + expf(-x[i]));
}

__global__ void relu_kernel(float* x, int64_t n) {
    for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x)
        x[i] = x[i] > 0.f ? x[i] : 0.f;
}

__global__ void add_scaled_kernel(float* y, const float* x, float alpha, int64_t n) {
    for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x)
        y[i] += alpha * x[i];
}

__global__ void scale_kernel(float* x, float alpha, int64_t n) {
    for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x)
        x[i] *= alpha;
}

__global__ void glu_kernel(const float* x, int64_t rows, int64_t cols, float* y) {
    const int64_t n = rows * cols;
    for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
        const int64_t r = i / cols, c = i - r * cols;
        const float* xr = x + r * 2 * cols;
        y[i] = xr[c] * (1.f / (1.f + expf(-xr[cols + c])));
    }
}

__global__ void add_bias_rows_kernel(float* y, const float* bias, int64_t rows, int64_t cols) {
    const int64_t n = rows * cols;
    for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x)
        y[i] += bias[i % cols];
}

__global__ void add_row_bias_kernel(float* y, const float* bias, int64_t rows, int64_t cols) {
    const int64_t n = rows * cols;
    for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x)
        y[i] += bias[i / cols];
}

__global__ void bias_silu_kernel(float* y, const float* bias, int64_t rows, int64_t cols) {
    const int64_t n = rows * cols;
    for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
        const float v = bias ? y[i] + bias[i % cols] : y[i];
        y[i] = v / (1.f + expf(-v));
    }
}

__global__ void convert_f16_kernel(const float* src, __half* dst, int64_t n) {
    for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x)
        dst[i] = __float2half_rn(src[i]);
}

__global__ void convert_bf16_kernel(const float* src, __nv_bfloat16* dst, int64_t n) {
    for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x)
        dst[i] = __float2bfloat16_rn(src[i]);
}

// [C, T, F] -> [T, C·F].
__global__ void flatten_channels_kernel(const float* x, int64_t c, int64_t t, int64_t f, float* y) {
    const int64_t n = c * t * f;
    for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
        const int64_t fi = i % f, ci = (i / f) % c, ti = i / (f * c);
        y[i] = x[(ci * t + ti) * f + fi];
    }
}

__global__ void zero_after_lengths_kernel(float* x, const int* lengths, int64_t batch, int64_t t, int64_t d) {
    const int64_t n = batch * t * d;
    for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
        const int64_t row = i / d, b = row / t, ti = row - b * t;
        if (ti >= lengths[b]) x[i] = 0.f;
    }
}

}  // namespace

void silu(Launch l, float* x, int64_t n) {
    if (n <= 0) return;
    silu_kernel<<<grid_for(l, n), kThreads, 0, l.stream>>>(x, n);
    PK_CUDA_CHECK_LAUNCH();
}

void relu(Launch l, float* x, int64_t n) {
    if (n <= 0) return;
    relu_kernel<<<grid_for(l, n), kThreads, 0, l.stream>>>(x, n);
    PK_CUDA_CHECK_LAUNCH();
}

void add_scaled(Launch l, float* y, const float* x, float alpha, int64_t n) {
    if (n <= 0) return;
    add_scaled_kernel<<<grid_for(l, n), kThreads, 0, l.stream>>>(y, x, alpha, n);
    PK_CUDA_CHECK_LAUNCH();
}

void scale(Launch l, float* x, float alpha, int64_t n) {
    if (n <= 0) return;
    scale_kernel<<<grid_for(l, n), kThreads, 0, l.stream>>>(x, alpha, n);
    PK_CUDA_CHECK_LAUNCH();
}

void glu(Launch l, const float* x, int64_t rows, int64_t cols, float* y) {
    if (rows * cols <= 0) return;
    glu_kernel<<<grid_for(l, rows * cols), kThreads, 0, l.stream>>>(x, rows, cols, y);
    PK_CUDA_CHECK_LAUNCH();
}

void add_bias_rows(Launch l, float* y, const float* bias, int64_t rows, int64_t cols) {
    if (rows * cols <= 0) return;
    add_bias_rows_kernel<<<grid_for(l, rows * cols), kThreads, 0, l.stream>>>(y, bias, rows, cols);
    PK_CUDA_CHECK_LAUNCH();
}

void add_row_bias(Launch l, float* y, const float* bias, int64_t rows, int64_t cols) {
    if (rows * cols <= 0) return;
    add_row_bias_kernel<<<grid_for(l, rows * cols), kThreads, 0, l.stream>>>(y, bias, rows, cols);
    PK_CUDA_CHECK_LAUNCH();
}

void bias_silu(Launch l, float* y, const float* bias, int64_t rows, int64_t cols) {
    if (rows * cols <= 0) return;
    bias_silu_kernel<<<grid_for(l, rows * cols), kThreads, 0, l.stream>>>(y, bias, rows, cols);
    PK_CUDA_CHECK_LAUNCH();
}

void convert_f16(Launch l, const float* src, void* dst, int64_t n) {
    if (n <= 0) return;
    convert_f16_kernel<<<grid_for(l, n), kThreads, 0, l.stream>>>(src, static_cast<__half*>(dst), n);
    PK_CUDA_CHECK_LAUNCH();
}

void convert_bf16(Launch l, const float* src, void* dst, int64_t n) {
    if (n <= 0) return;
    convert_bf16_kernel<<<grid_for(l, n), kThreads, 0, l.stream>>>(src, static_cast<__nv_bfloat16*>(dst), n);
    PK_CUDA_CHECK_LAUNCH();
}

void flatten_channels(Launch l, const float* x, int64_t c, int64_t t, int64_t f, float* y) {
    if (c * t * f <= 0) return;
    flatten_channels_kernel<<<grid_for(l, c * t * f), kThreads, 0, l.stream>>>(x, c, t, f, y);
    PK_CUDA_CHECK_LAUNCH();
}

void zero_after_lengths(Launch l, float* x, const int* lengths, int64_t batch, int64_t t, int64_t d) {
    if (batch * t * d <= 0) return;
    zero_after_lengths_kernel<<<grid_for(l, batch * t * d), kThreads, 0, l.stream>>>(x, lengths, batch, t, d);
    PK_CUDA_CHECK_LAUNCH();
}

}  // namespace parakeet::cuda::kernels
