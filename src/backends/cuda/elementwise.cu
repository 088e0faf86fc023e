// Element-wise and layout kernels (mirror the loops of backends/cpu/cpu_ops.cc).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "backends/cuda/kernel_utils.cuh"

namespace parakeet::cuda::kernels {

namespace {

__global__ void spin_kernel(int64_t ns) {
    uint64_t start, now;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(start));
    do {
        asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(now));
    } while (now - start < static_cast<uint64_t>(ns));
}

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

// Block rows (grid.y) stride over the (item, time) rows: a whole row is kept or zeroed, no per-element division.
__global__ void zero_after_lengths_kernel(float* x, const int* lengths, int64_t rows, int64_t t, int64_t d) {
    for (int64_t row = blockIdx.y; row < rows; row += gridDim.y) {
        const int64_t b = row / t;
        if (row - b * t < lengths[b]) continue;
        for (int64_t c = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; c < d; c += int64_t{gridDim.x} * blockDim.x)
            x[row * d + c] = 0.f;
    }
}

// Four elements per thread and step (16-byte loads); n4 = n / 4, the tail by the scalar kernel.
template <typename Out, typename Convert>
__global__ void convert_vec4_kernel(const float4* src, Out* dst, int n4, Convert convert) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n4; i += gridDim.x * blockDim.x) {
        const float4 v = src[i];
        Out* o = dst + 4 * static_cast<int64_t>(i);
        o[0] = convert(v.x);
        o[1] = convert(v.y);
        o[2] = convert(v.z);
        o[3] = convert(v.w);
    }
}

}  // namespace

void spin(Launch l, int64_t ns) {
    spin_kernel<<<1, 1, 0, l.stream>>>(ns);
    PK_CUDA_CHECK_LAUNCH();
}

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

namespace {
struct ToHalf {
    __device__ __half operator()(float v) const { return __float2half_rn(v); }
};
struct ToBf16 {
    __device__ __nv_bfloat16 operator()(float v) const { return __float2bfloat16_rn(v); }
};

// Vectorised when src is 16-byte aligned and n fits 32-bit indices; the last n % 4 elements (or all) scalar.
template <typename Out, typename Convert, typename Scalar>
void convert(Launch l, const float* src, Out* dst, int64_t n, Convert cv, Scalar scalar) {
    int64_t done = 0;
    if (reinterpret_cast<uintptr_t>(src) % 16 == 0 && n / 4 < (int64_t{1} << 30)) {
        const int64_t n4 = n / 4;
        if (n4 > 0) {
            const unsigned blocks = static_cast<unsigned>(std::min<int64_t>((n4 + kThreads - 1) / kThreads, int64_t{l.n_sms} * 32));
            convert_vec4_kernel<<<blocks, kThreads, 0, l.stream>>>(reinterpret_cast<const float4*>(src), dst,
                                                                   static_cast<int>(n4), cv);
            PK_CUDA_CHECK_LAUNCH();
        }
        done = n4 * 4;
    }
    if (n > done) {
        scalar<<<grid_for(l, n - done), kThreads, 0, l.stream>>>(src + done, dst + done, n - done);
        PK_CUDA_CHECK_LAUNCH();
    }
}
}  // namespace

void convert_f16(Launch l, const float* src, void* dst, int64_t n) {
    if (n <= 0) return;
    convert(l, src, static_cast<__half*>(dst), n, ToHalf{}, convert_f16_kernel);
}

void convert_bf16(Launch l, const float* src, void* dst, int64_t n) {
    if (n <= 0) return;
    convert(l, src, static_cast<__nv_bfloat16*>(dst), n, ToBf16{}, convert_bf16_kernel);
}

void flatten_channels(Launch l, const float* x, int64_t c, int64_t t, int64_t f, float* y) {
    if (c * t * f <= 0) return;
    flatten_channels_kernel<<<grid_for(l, c * t * f), kThreads, 0, l.stream>>>(x, c, t, f, y);
    PK_CUDA_CHECK_LAUNCH();
}

void zero_after_lengths(Launch l, float* x, const int* lengths, int64_t batch, int64_t t, int64_t d) {
    if (batch * t * d <= 0) return;
    const dim3 grid(static_cast<unsigned>(std::min<int64_t>((d + kThreads - 1) / kThreads, 64)),
                    static_cast<unsigned>(std::min<int64_t>(batch * t, 65535)));
    zero_after_lengths_kernel<<<grid, kThreads, 0, l.stream>>>(x, lengths, batch * t, t, d);
    PK_CUDA_CHECK_LAUNCH();
}

}  // namespace parakeet::cuda::kernels
