// Launch sizes and reductions shared by the CUDA kernels (backend-internal).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "backends/cuda/kernels.h"

namespace parakeet::cuda {

constexpr int kThreads = 256;

// Blocks for a grid-stride loop over n elements.
inline unsigned int grid_for(const Launch& l, int64_t n) {
    const int64_t blocks = (n + kThreads - 1) / kThreads;
    return static_cast<unsigned int>(std::max<int64_t>(1, std::min<int64_t>(blocks, int64_t{l.n_sms} * 16)));
}

// Sums of float or double (the frontend accumulates in double).
template <typename T>
__device__ __forceinline__ T warp_sum(T v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the result.
template <typename T>
__device__ __forceinline__ T block_sum(T v, T* shared32) {
    v = warp_sum(v);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    __syncthreads();  // shared32 may still be read by a previous reduction
    if (lane == 0) shared32[warp] = v;
    __syncthreads();
    const int n_warps = blockDim.x >> 5;
    v = lane < n_warps ? shared32[lane] : T(0);
    return warp_sum(v);
}

__device__ __forceinline__ float block_max(float v, float* shared32) {
    v = warp_max(v);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    __syncthreads();
    if (lane == 0) shared32[warp] = v;
    __syncthreads();
    const int n_warps = blockDim.x >> 5;
    v = lane < n_warps ? shared32[lane] : -INFINITY;
    return warp_max(v);
}

__device__ __forceinline__ float sigmoid(float x) { return 1.f / (1.f + expf(-x)); }

// Stores v at element i of an activation buffer of act_dtype (0 float32, 1 float16, 2 bfloat16): kernels that feed
// a 16-bit GEMM write its input directly.
__device__ __forceinline__ void store_act(void* out, int64_t i, float v, int act_dtype) {
    if (act_dtype == 2) {
        static_cast<__nv_bfloat16*>(out)[i] = __float2bfloat16_rn(v);
    } else if (act_dtype == 1) {
        static_cast<__half*>(out)[i] = __float2half_rn(v);
    } else {
        static_cast<float*>(out)[i] = v;
    }
}

// Σ w[a][b] · x[2i + a - pad_lo][2j + b - pad_lo] over the 3x3 taps inside [0, t) x [0, f): one output of a stride-2
// 3x3 convolution of one channel x[t, f] (zeros outside).
template <typename I>
__device__ __forceinline__ float conv3x3_s2_at(const float* x, const float* w, I i, I j, I t, I f, I pad_lo) {
    float acc = 0.f;
    for (I a = 0; a < 3; ++a) {
        const I ts = 2 * i + a - pad_lo;
        if (ts < 0 || ts >= t) continue;
        for (I b = 0; b < 3; ++b) {
            const I fs = 2 * j + b - pad_lo;
            if (fs < 0 || fs >= f) continue;
            acc += w[a * 3 + b] * x[ts * f + fs];
        }
    }
    return acc;
}

}  // namespace parakeet::cuda
