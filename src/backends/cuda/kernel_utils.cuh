// Launch sizes and reductions shared by the CUDA kernels (backend-internal).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <utility>

#include "backends/cuda/kernels.h"
#include "core/env.h"

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

// Programmatic dependent launch (sm_90 and later): a kernel launched by launch_after_previous may start while the
// kernel before it still runs, once that kernel has called launch_dependents (or finished); it must call
// wait_for_previous_kernel before touching anything the earlier kernels write (reading constant weights before it
// is how it overlaps them). Both are no-ops without such a launch and below sm_90.
__device__ __forceinline__ void launch_dependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;");
#endif
}
__device__ __forceinline__ void wait_for_previous_kernel() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

// Whether the current device takes programmatic dependent launches (compute capability 9.0 or later).
inline bool programmatic_launch_supported() {
    static const bool supported = [] {
        if (env_switch("PARAKEET_NO_PDL")) return false;  // A/B measurements
        int dev = 0, major = 0;
        if (cudaGetDevice(&dev) != cudaSuccess) return false;
        if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess) return false;
        return major >= 9;
    }();
    return supported;
}

// Launches kernel<<<grid, block, shared, l.stream>>>(args...) as a programmatic dependent launch where supported
// (see launch_dependents), a plain launch elsewhere. The kernel must call wait_for_previous_kernel.
template <typename... KArgs, typename... Args>
void launch_after_previous(Launch l, void (*kernel)(KArgs...), dim3 grid, dim3 block, size_t shared,
                           Args&&... args) {
    cudaLaunchConfig_t config{};
    config.gridDim = grid;
    config.blockDim = block;
    config.dynamicSmemBytes = shared;
    config.stream = l.stream;
    cudaLaunchAttribute attribute{};
    attribute.id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attribute.val.programmaticStreamSerializationAllowed = 1;
    config.attrs = &attribute;
    config.numAttrs = programmatic_launch_supported() ? 1 : 0;
    PK_CUDA_CHECK(cudaLaunchKernelEx(&config, kernel, std::forward<Args>(args)...));
}

__device__ __forceinline__ float sigmoid(float x) { return 1.f / (1.f + expf(-x)); }

// float <-> the element types of weights, activations and caches.
__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
template <typename T>
__device__ __forceinline__ T from_float(float v) {
    if constexpr (std::is_same_v<T, __half>) {
        return __float2half_rn(v);
    } else if constexpr (std::is_same_v<T, __nv_bfloat16>) {
        return __float2bfloat16_rn(v);
    } else {
        return v;
    }
}

// Calls f with a value of the element type of act_dtype (0 float32, 1 float16, 2 bfloat16), so that a launcher
// instantiates its kernel for the buffer's type.
template <typename F>
void by_act_dtype(int act_dtype, F&& f) {
    if (act_dtype == 2) f(__nv_bfloat16{});
    else if (act_dtype == 1) f(__half{});
    else f(float{});
}

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
