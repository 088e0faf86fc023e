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
// With gamma2 set (kPer > 0 only), y is float32 and the row is normalised a second time into y2 (act_dtype): a
// layer's output norm and the next layer's first norm in one pass.
template <int kPer>
__global__ void layer_norm_kernel(float* x, const float* r, float alpha, const float* gamma, const float* beta,
                                  float eps, int64_t cols, void* y, int act_dtype, const float* gamma2,
                                  const float* beta2, void* y2) {
    __shared__ float shared[32];
    launch_dependents();
    wait_for_previous_kernel();
    const int64_t row = blockIdx.x;
    float* xr = x + row * cols;
    const float* rr = r ? r + row * cols : nullptr;
    if constexpr (kPer > 0) {
        float v[kPer];
#pragma unroll
        for (int e = 0; e < kPer; ++e) {
            const int64_t c = threadIdx.x + int64_t{e} * blockDim.x;
            v[e] = 0.f;
            if (c < cols) {
                v[e] = rr ? xr[c] + alpha * rr[c] : xr[c];
                if (rr) xr[c] = v[e];
            }
        }
        // normalise(g, b, out, dtype): the row's moments, then out = (v - mean) · rstd · g + b, also kept in v.
        auto normalise = [&](const float* g, const float* bt, void* out, int dtype) {
            float s = 0.f;
#pragma unroll
            for (int e = 0; e < kPer; ++e)
                if (threadIdx.x + int64_t{e} * blockDim.x < cols) s += v[e];
            const float mean = block_sum(s, shared) / static_cast<float>(cols);
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
                if (c < cols) {
                    v[e] = (v[e] - mean) * rstd * g[c] + bt[c];
                    store_act(out, row * cols + c, v[e], dtype);
                }
            }
        };
        normalise(gamma, beta, y, gamma2 ? 0 : act_dtype);
        if (gamma2) normalise(gamma2, beta2, y2, act_dtype);
    } else {
        float sum = 0.f;
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
// With gamma2 set, y is float32 (Y = float) and the row is normalised a second time into y2 (Y2).
template <int kF4, typename Y, typename Y2>
__global__ void layer_norm_warp_kernel(float* x, const float* r, float alpha, const float* gamma, const float* beta,
                                       float eps, int64_t rows, Y* y, const float* gamma2, const float* beta2, Y2* y2) {
    constexpr int cols = 128 * kF4;
    launch_dependents();
    wait_for_previous_kernel();
    const int64_t row = blockIdx.x * int64_t{blockDim.x / 32} + threadIdx.x / 32;
    if (row >= rows) return;
    const int lane = threadIdx.x & 31;
    float4* xr = reinterpret_cast<float4*>(x + row * cols);
    const float4* rr = r ? reinterpret_cast<const float4*>(r + row * cols) : nullptr;
    float4 v[kF4];
#pragma unroll
    for (int e = 0; e < kF4; ++e) {
        v[e] = xr[lane + 32 * e];
        if (rr) {
            const float4 d = rr[lane + 32 * e];
            v[e].x += alpha * d.x, v[e].y += alpha * d.y, v[e].z += alpha * d.z, v[e].w += alpha * d.w;
        }
    }
#pragma unroll
    for (int e = 0; e < kF4; ++e)
        if (rr) xr[lane + 32 * e] = v[e];
    // normalise(g, b, out): the row's moments, then out = (v - mean) · rstd · g + b, also kept in v.
    auto normalise = [&](const float* g_, const float* b_, auto* out) {
        using O = std::remove_pointer_t<decltype(out)>;
        float s = 0.f;
#pragma unroll
        for (int e = 0; e < kF4; ++e) s += (v[e].x + v[e].y) + (v[e].z + v[e].w);
        const float mean = warp_sum(s) / static_cast<float>(cols);
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
            const float4 g = *reinterpret_cast<const float4*>(g_ + c0), b = *reinterpret_cast<const float4*>(b_ + c0);
            v[e] = make_float4((v[e].x - mean) * rstd * g.x + b.x, (v[e].y - mean) * rstd * g.y + b.y,
                               (v[e].z - mean) * rstd * g.z + b.z, (v[e].w - mean) * rstd * g.w + b.w);
            O* o = out + row * cols + c0;
            if constexpr (std::is_same_v<O, float>) {
                *reinterpret_cast<float4*>(o) = v[e];
            } else {
                O q[4] = {from_float<O>(v[e].x), from_float<O>(v[e].y), from_float<O>(v[e].z), from_float<O>(v[e].w)};
                *reinterpret_cast<uint2*>(o) = *reinterpret_cast<const uint2*>(q);
            }
        }
    };
    normalise(gamma, beta, y);
    if (gamma2) normalise(gamma2, beta2, y2);
}

template <int kF4>
void launch_warp_rows(Launch l, float* x, const float* r, float alpha, const float* gamma, const float* beta,
                      float eps, int64_t rows, void* y, int act_dtype, const float* gamma2, const float* beta2,
                      void* y2) {
    // Rows per block: up to 8, fewer while that leaves under two blocks per SM (a 175-row window spreads over the
    // GPU instead of 22 SMs).
    int per_block = 8;
    while (per_block > 1 && rows < int64_t{2} * l.n_sms * per_block) per_block /= 2;
    const unsigned int grid = static_cast<unsigned int>((rows + per_block - 1) / per_block);
    const unsigned int threads = static_cast<unsigned int>(32 * per_block);
    by_act_dtype(act_dtype, [&](auto tag) {
        using Y = decltype(tag);
        if (gamma2) {
            launch_after_previous(l, layer_norm_warp_kernel<kF4, float, Y>, grid, threads, 0, x, r, alpha, gamma,
                                  beta, eps, rows, static_cast<float*>(y), gamma2, beta2, static_cast<Y*>(y2));
        } else {
            launch_after_previous(l, layer_norm_warp_kernel<kF4, Y, Y>, grid, threads, 0, x, r, alpha, gamma, beta,
                                  eps, rows, static_cast<Y*>(y), static_cast<const float*>(nullptr),
                                  static_cast<const float*>(nullptr), static_cast<Y*>(nullptr));
        }
    });
}

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

// gamma2 set: y is float32 and y2 = LN(y; gamma2, beta2) in act_dtype (two launches for rows over 2048 values).
void launch_layer_norm(Launch l, float* x, const float* r, float alpha, const float* gamma, const float* beta,
                       float eps, int64_t rows, int64_t cols, void* y, int act_dtype, const float* gamma2 = nullptr,
                       const float* beta2 = nullptr, void* y2 = nullptr) {
    if (rows <= 0 || cols <= 0) return;
    if (gamma2 && cols > 8 * kNormThreads) {
        launch_layer_norm(l, x, r, alpha, gamma, beta, eps, rows, cols, y, 0);
        launch_layer_norm(l, static_cast<float*>(y), nullptr, 0.f, gamma2, beta2, eps, rows, cols, y2, act_dtype);
        return;
    }
    // PARAKEET_BLOCK_LAYER_NORM=1: one block per row at every width (A/B measurements).
    static const bool block_rows = env_switch("PARAKEET_BLOCK_LAYER_NORM");
    // Warps per row pay off with many rows (64 x 10 s: 48 -> 35 us; 1024 streams: 14 -> 12 us); a 175-row window is
    // faster with a block per row (5.2 against 6.2 us).
    if (!block_rows && rows >= int64_t{4} * l.n_sms && aligned16(x) && (!r || aligned16(r)) && aligned16(gamma) &&
        aligned16(beta) && aligned16(y) && (!gamma2 || (aligned16(gamma2) && aligned16(beta2) && aligned16(y2))) &&
        (cols == 128 || cols == 256 || cols == 512 || cols == 1024)) {
        switch (cols) {
            case 128: launch_warp_rows<1>(l, x, r, alpha, gamma, beta, eps, rows, y, act_dtype, gamma2, beta2, y2); break;
            case 256: launch_warp_rows<2>(l, x, r, alpha, gamma, beta, eps, rows, y, act_dtype, gamma2, beta2, y2); break;
            case 512: launch_warp_rows<4>(l, x, r, alpha, gamma, beta, eps, rows, y, act_dtype, gamma2, beta2, y2); break;
            default: launch_warp_rows<8>(l, x, r, alpha, gamma, beta, eps, rows, y, act_dtype, gamma2, beta2, y2); break;
        }
        PK_CUDA_CHECK_LAUNCH();
        return;
    }
    const unsigned int grid = static_cast<unsigned int>(rows);
    // Programmatic launches: the block is scheduled while the kernel before it drains (it waits before reading).
    if (cols <= 4 * kNormThreads) {
        launch_after_previous(l, layer_norm_kernel<4>, grid, kNormThreads, 0, x, r, alpha, gamma, beta, eps, cols, y,
                              act_dtype, gamma2, beta2, y2);
    } else if (cols <= 8 * kNormThreads) {
        launch_after_previous(l, layer_norm_kernel<8>, grid, kNormThreads, 0, x, r, alpha, gamma, beta, eps, cols, y,
                              act_dtype, gamma2, beta2, y2);
    } else {
        launch_after_previous(l, layer_norm_kernel<0>, grid, kNormThreads, 0, x, r, alpha, gamma, beta, eps, cols, y,
                              act_dtype, static_cast<const float*>(nullptr), static_cast<const float*>(nullptr),
                              static_cast<void*>(nullptr));
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

void layer_norm2_act(Launch l, float* x, const float* r, float alpha, const float* gamma, const float* beta, float eps,
                     int64_t rows, int64_t cols, float* y, const float* gamma2, const float* beta2, void* y2,
                     int act_dtype) {
    launch_layer_norm(l, x, r, alpha, gamma, beta, eps, rows, cols, y, act_dtype, gamma2, beta2, y2);
}

}  // namespace parakeet::cuda::kernels
