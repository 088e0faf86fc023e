// LayerNorm over the last dimension, one block per row; two passes (mean, then squared deviations) like
// cpu::layer_norm, which accumulates in double: fp32 block sums keep the difference near 1e-7 relative.
#include "backends/cuda/kernel_utils.cuh"
#include "backends/cuda/stream_kernels.h"

namespace parakeet::cuda::kernels {

namespace {

constexpr int kNormThreads = 256;

// When r is non-null: x[row] += alpha · r[row] first (written back), then normalised into y (stored as
// act_dtype: float32, or the 16-bit input of the GEMM that follows). kPer > 0: the row (at most kPer · blockDim.x
// values) stays in registers between the passes, so global memory is read once; kPer == 0: any width, re-read.
// Each thread sums the same elements in the same order either way.
template <int kPer>
__global__ void layer_norm_kernel(float* x, const float* r, float alpha, const float* gamma, const float* beta,
                                  float eps, int64_t cols, void* y, int act_dtype) {
    __shared__ float shared[32];
    const int64_t row = blockIdx.x;
    float* xr = x + row * cols;
    const float* rr = r ? r + row * cols : nullptr;
    float sum = 0.f;
    if constexpr (kPer > 0) {
        float v[kPer];
#pragma unroll
        for (int e = 0; e < kPer; ++e) {
            const int64_t c = threadIdx.x + int64_t{e} * blockDim.x;
            v[e] = 0.f;
            if (c < cols) {
                v[e] = rr ? xr[c] + alpha * rr[c] : xr[c];
                if (rr) xr[c] = v[e];
                sum += v[e];
            }
        }
        const float mean = block_sum(sum, shared) / static_cast<float>(cols);
        float var = 0.f;
#pragma unroll
        for (int e = 0; e < kPer; ++e) {
            const int64_t c = threadIdx.x + int64_t{e} * blockDim.x;
            if (c < cols) {
                const float d = v[e] - mean;
                var += d * d;
            }
        }
        var = block_sum(var, shared) / static_cast<float>(cols);
        const float rstd = 1.f / sqrtf(var + eps);
#pragma unroll
        for (int e = 0; e < kPer; ++e) {
            const int64_t c = threadIdx.x + int64_t{e} * blockDim.x;
            if (c < cols) store_act(y, row * cols + c, (v[e] - mean) * rstd * gamma[c] + beta[c], act_dtype);
        }
    } else {
        if (rr) {
            for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
                const float v = xr[c] + alpha * rr[c];
                xr[c] = v;
                sum += v;
            }
        } else {
            for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) sum += xr[c];
        }
        const float mean = block_sum(sum, shared) / static_cast<float>(cols);
        float var = 0.f;
        for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
            const float d = xr[c] - mean;
            var += d * d;
        }
        var = block_sum(var, shared) / static_cast<float>(cols);
        const float rstd = 1.f / sqrtf(var + eps);
        for (int64_t c = threadIdx.x; c < cols; c += blockDim.x)
            store_act(y, row * cols + c, (xr[c] - mean) * rstd * gamma[c] + beta[c], act_dtype);
    }
}

void launch_layer_norm(Launch l, float* x, const float* r, float alpha, const float* gamma, const float* beta,
                       float eps, int64_t rows, int64_t cols, void* y, int act_dtype) {
    if (rows <= 0 || cols <= 0) return;
    const unsigned int grid = static_cast<unsigned int>(rows);
    if (cols <= 4 * kNormThreads) {
        layer_norm_kernel<4><<<grid, kNormThreads, 0, l.stream>>>(x, r, alpha, gamma, beta, eps, cols, y, act_dtype);
    } else if (cols <= 8 * kNormThreads) {
        layer_norm_kernel<8><<<grid, kNormThreads, 0, l.stream>>>(x, r, alpha, gamma, beta, eps, cols, y, act_dtype);
    } else {
        layer_norm_kernel<0><<<grid, kNormThreads, 0, l.stream>>>(x, r, alpha, gamma, beta, eps, cols, y, act_dtype);
    }
    PK_CUDA_CHECK_LAUNCH();
}

}  // namespace

void layer_norm(Launch l, const float* x, const float* gamma, const float* beta, float eps, int64_t rows,
                int64_t cols, float* y) {
    // x is only read when r is null.
    launch_layer_norm(l, const_cast<float*>(x), nullptr, 0.f, gamma, beta, eps, rows, cols, y, 0);
}

void add_layer_norm(Launch l, float* x, const float* r, float alpha, const float* gamma, const float* beta, float eps,
                    int64_t rows, int64_t cols, float* y) {
    launch_layer_norm(l, x, r, alpha, gamma, beta, eps, rows, cols, y, 0);
}

void layer_norm_act(Launch l, float* x, const float* r, float alpha, const float* gamma, const float* beta, float eps,
                    int64_t rows, int64_t cols, void* y, int act_dtype) {
    launch_layer_norm(l, x, r, alpha, gamma, beta, eps, rows, cols, y, act_dtype);
}

}  // namespace parakeet::cuda::kernels
