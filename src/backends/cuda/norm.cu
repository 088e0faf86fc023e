// LayerNorm over the last dimension; two passes (mean, then squared deviations) like cpu::layer_norm, which
// accumulates in double: fp32 sums keep the difference near 1e-7 relative. With many rows, rows of 128 · kF4 values
// (kF4 = 1, 2, 4, 8: d_model 128 to 1024) take one warp each, read as float4 and reduced with shuffles (no block
// barrier); otherwise one block per row.
#include <cstdint>
#include <type_traits>

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

// One warp per row of 128 · kF4 floats: lane l holds float4 chunks l, l + 32, ... in registers.
template <int kF4, typename Y>
__global__ void layer_norm_warp_kernel(float* x, const float* r, float alpha, const float* gamma, const float* beta,
                                       float eps, int64_t rows, Y* y) {
    constexpr int cols = 128 * kF4;
    const int64_t row = blockIdx.x * int64_t{blockDim.x / 32} + threadIdx.x / 32;
    if (row >= rows) return;
    const int lane = threadIdx.x & 31;
    float4* xr = reinterpret_cast<float4*>(x + row * cols);
    const float4* rr = r ? reinterpret_cast<const float4*>(r + row * cols) : nullptr;
    float4 v[kF4];
    float sum = 0.f;
#pragma unroll
    for (int e = 0; e < kF4; ++e) {
        v[e] = xr[lane + 32 * e];
        if (rr) {
            const float4 d = rr[lane + 32 * e];
            v[e].x += alpha * d.x, v[e].y += alpha * d.y, v[e].z += alpha * d.z, v[e].w += alpha * d.w;
        }
    }
#pragma unroll
    for (int e = 0; e < kF4; ++e) {
        if (rr) xr[lane + 32 * e] = v[e];
        sum += (v[e].x + v[e].y) + (v[e].z + v[e].w);
    }
    const float mean = warp_sum(sum) / static_cast<float>(cols);
    float var = 0.f;
#pragma unroll
    for (int e = 0; e < kF4; ++e) {
        const float a = v[e].x - mean, b = v[e].y - mean, c = v[e].z - mean, d = v[e].w - mean;
        var += (a * a + b * b) + (c * c + d * d);
    }
    const float rstd = 1.f / sqrtf(warp_sum(var) / static_cast<float>(cols) + eps);
#pragma unroll
    for (int e = 0; e < kF4; ++e) {
        const int c0 = 4 * (lane + 32 * e);
        const float4 g = *reinterpret_cast<const float4*>(gamma + c0), b = *reinterpret_cast<const float4*>(beta + c0);
        const float o0 = (v[e].x - mean) * rstd * g.x + b.x, o1 = (v[e].y - mean) * rstd * g.y + b.y;
        const float o2 = (v[e].z - mean) * rstd * g.z + b.z, o3 = (v[e].w - mean) * rstd * g.w + b.w;
        Y* out = y + row * cols + c0;
        if constexpr (std::is_same_v<Y, float>) {
            *reinterpret_cast<float4*>(out) = make_float4(o0, o1, o2, o3);
        } else {
            Y q[4] = {from_float<Y>(o0), from_float<Y>(o1), from_float<Y>(o2), from_float<Y>(o3)};
            *reinterpret_cast<uint2*>(out) = *reinterpret_cast<const uint2*>(q);
        }
    }
}

template <int kF4>
void launch_warp_rows(Launch l, float* x, const float* r, float alpha, const float* gamma, const float* beta,
                      float eps, int64_t rows, void* y, int act_dtype) {
    // Rows per block: up to 8, fewer while that leaves under two blocks per SM (a 175-row window spreads over the
    // GPU instead of 22 SMs).
    int per_block = 8;
    while (per_block > 1 && rows < int64_t{2} * l.n_sms * per_block) per_block /= 2;
    const unsigned int grid = static_cast<unsigned int>((rows + per_block - 1) / per_block);
    const unsigned int threads = static_cast<unsigned int>(32 * per_block);
    by_act_dtype(act_dtype, [&](auto tag) {
        using Y = decltype(tag);
        layer_norm_warp_kernel<kF4><<<grid, threads, 0, l.stream>>>(x, r, alpha, gamma, beta, eps, rows,
                                                                   static_cast<Y*>(y));
    });
}

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

void launch_layer_norm(Launch l, float* x, const float* r, float alpha, const float* gamma, const float* beta,
                       float eps, int64_t rows, int64_t cols, void* y, int act_dtype) {
    if (rows <= 0 || cols <= 0) return;
    // PARAKEET_BLOCK_LAYER_NORM=1: one block per row at every width (A/B measurements).
    static const bool block_rows = env_switch("PARAKEET_BLOCK_LAYER_NORM");
    // Warps per row pay off with many rows (64 x 10 s: 48 -> 35 us; 1024 streams: 14 -> 12 us); a 175-row window is
    // faster with a block per row (5.2 against 6.2 us).
    if (!block_rows && rows >= int64_t{4} * l.n_sms && aligned16(x) && (!r || aligned16(r)) && aligned16(gamma) &&
        aligned16(beta) && aligned16(y) && (cols == 128 || cols == 256 || cols == 512 || cols == 1024)) {
        switch (cols) {
            case 128: launch_warp_rows<1>(l, x, r, alpha, gamma, beta, eps, rows, y, act_dtype); break;
            case 256: launch_warp_rows<2>(l, x, r, alpha, gamma, beta, eps, rows, y, act_dtype); break;
            case 512: launch_warp_rows<4>(l, x, r, alpha, gamma, beta, eps, rows, y, act_dtype); break;
            default: launch_warp_rows<8>(l, x, r, alpha, gamma, beta, eps, rows, y, act_dtype); break;
        }
        PK_CUDA_CHECK_LAUNCH();
        return;
    }
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
