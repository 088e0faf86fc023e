// LayerNorm over the last dimension, one block per row; two passes (mean, then squared deviations) like
// cpu::layer_norm, which accumulates in double: fp32 block sums keep the difference near 1e-7 relative.
#include "backends/cuda/kernel_utils.cuh"
#include "backends/cuda/stream_kernels.h"

namespace parakeet::cuda::kernels {

namespace {

constexpr int kNormThreads = 256;

// When r is non-null: x[row] += alpha · r[row] first (written back), then normalised into y (stored as
// act_dtype: float32, or the 16-bit input of the GEMM that follows).
__global__ void layer_norm_kernel(float* x, const float* r, float alpha, const float* gamma, const float* beta,
                                  float eps, int64_t cols, void* y, int act_dtype) {
    __shared__ float shared[32];
    const int64_t row = blockIdx.x;
    float* xr = x + row * cols;
    float sum = 0.f;
    if (r) {
        const float* rr = r + row * cols;
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

}  // namespace

void layer_norm(Launch l, const float* x, const float* gamma, const float* beta, float eps, int64_t rows,
                int64_t cols, float* y) {
    if (rows <= 0 || cols <= 0) return;
    // x is only read when r is null.
    layer_norm_kernel<<<static_cast<unsigned int>(rows), kNormThreads, 0, l.stream>>>(
        const_cast<float*>(x), nullptr, 0.f, gamma, beta, eps, cols, y, 0);
    PK_CUDA_CHECK_LAUNCH();
}

void add_layer_norm(Launch l, float* x, const float* r, float alpha, const float* gamma, const float* beta, float eps,
                    int64_t rows, int64_t cols, float* y) {
    if (rows <= 0 || cols <= 0) return;
    layer_norm_kernel<<<static_cast<unsigned int>(rows), kNormThreads, 0, l.stream>>>(x, r, alpha, gamma, beta, eps,
                                                                                     cols, y, 0);
    PK_CUDA_CHECK_LAUNCH();
}

void layer_norm_act(Launch l, float* x, const float* r, float alpha, const float* gamma, const float* beta, float eps,
                    int64_t rows, int64_t cols, void* y, int act_dtype) {
    if (rows <= 0 || cols <= 0) return;
    layer_norm_kernel<<<static_cast<unsigned int>(rows), kNormThreads, 0, l.stream>>>(x, r, alpha, gamma, beta, eps,
                                                                                     cols, y, act_dtype);
    PK_CUDA_CHECK_LAUNCH();
}

}  // namespace parakeet::cuda::kernels
