// Convolutions: the conformer's depthwise time conv (channels last) and the subsampling's 3x3/s2 convs.
#include <algorithm>
#include <climits>

#include "backends/cuda/kernel_utils.cuh"

namespace parakeet::cuda::kernels {

namespace {

// One thread per output element (b, t, c); consecutive threads take consecutive channels (coalesced).
__global__ void depthwise_conv1d_kernel(const float* x, const float* w, const float* bias, int64_t batch, int64_t t,
                                        int64_t c, int64_t k, int64_t pad_left, float* y) {
    const int64_t n = batch * t * c;
    for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
        const int64_t ch = i % c, row = i / c, b = row / t, ti = row - b * t;
        float acc = bias ? bias[ch] : 0.f;
        for (int64_t j = 0; j < k; ++j) {
            const int64_t src = ti + j - pad_left;
            if (src < 0 || src >= t) continue;
            acc += w[ch * k + j] * x[(b * t + src) * c + ch];
        }
        y[i] = acc;
    }
}

// GLU of x[B, T, 2C] (rows past lengths[b] read as zero), then the folded depthwise conv + bias and SiLU, written
// as y_dtype (0 float32; 1/2 float16/bfloat16: the next pointwise GEMM's input). A block
// covers kTileT rows x kConvTileC channels of one item: it computes the GLU of the rows its taps reach once,
// into shared memory, and every output reads its k taps from there (channels on lanes: coalesced rows). kTileT is
// 64 for big batches and 16 when 64-row tiles would leave the GPU short of blocks (one item of a few hundred rows:
// 96 blocks of 8 sequential passes took 24.5 us on the H100 for 175 rows of 1024 channels).
constexpr int kConvTileC = 32, kConvRowsPerPass = 8;

template <int kTileT>
__global__ void glu_depthwise_conv1d_silu_kernel(const float* x, const int* lengths, const float* w,
                                                 const float* bias, int64_t t, int64_t c, int64_t k,
                                                 int64_t pad_left, void* y, int y_dtype) {
    extern __shared__ float g[];  // [kTileT + k - 1][kConvTileC]
    launch_dependents();
    wait_for_previous_kernel();
    const int64_t b = blockIdx.z, t0 = int64_t{blockIdx.y} * kTileT, ch = int64_t{blockIdx.x} * kConvTileC + threadIdx.x;
    const int64_t valid = lengths ? lengths[b] : t;
    const int64_t rows = kTileT + k - 1;
    for (int64_t r = threadIdx.y; r < rows; r += kConvRowsPerPass) {
        const int64_t src = t0 + r - pad_left;
        float v = 0.f;
        if (ch < c && src >= 0 && src < t && src < valid) {
            const float* xr = x + (b * t + src) * 2 * c;
            v = xr[ch] * (1.f / (1.f + expf(-xr[c + ch])));
        }
        g[r * kConvTileC + threadIdx.x] = v;
    }
    __syncthreads();
    if (ch >= c) return;
    for (int64_t r = threadIdx.y; r < kTileT; r += kConvRowsPerPass) {
        const int64_t ti = t0 + r;
        if (ti >= t) break;
        float acc = bias ? bias[ch] : 0.f;
        for (int64_t j = 0; j < k; ++j) acc += w[ch * k + j] * g[(r + j) * kConvTileC + threadIdx.x];
        store_act(y, (b * t + ti) * c + ch, acc / (1.f + expf(-acc)), y_dtype);
    }
}

__global__ void conv2d_3x3_s2_kernel(const float* x, int64_t t, int64_t f, const float* w, const float* bias,
                                     int64_t c_out, bool depthwise, int64_t pad_lo, float* y) {
    const int64_t t2 = (t + pad_lo - 2) / 2 + 1, f2 = (f + pad_lo - 2) / 2 + 1;
    const int64_t n = c_out * t2 * f2;
    for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
        const int64_t fi = i % f2, ti = (i / f2) % t2, co = i / (f2 * t2);
        y[i] = conv3x3_s2_at(x + (depthwise ? co : 0) * t * f, w + co * 9, ti, fi, t, f, pad_lo) + bias[co];
    }
}

}  // namespace

void depthwise_conv1d(Launch l, const float* x, const float* w, const float* bias, int64_t batch, int64_t t,
                      int64_t c, int64_t k, int64_t pad_left, float* y) {
    const int64_t n = batch * t * c;
    if (n <= 0) return;
    depthwise_conv1d_kernel<<<grid_for(l, n), kThreads, 0, l.stream>>>(x, w, bias, batch, t, c, k, pad_left, y);
    PK_CUDA_CHECK_LAUNCH();
}

void glu_depthwise_conv1d_silu(Launch l, const float* x, const int* lengths, const float* w, const float* bias,
                               int64_t batch, int64_t t, int64_t c, int64_t k, int64_t pad_left, void* y,
                               int y_dtype) {
    const int64_t n = batch * t * c;
    if (n <= 0) return;
    const int64_t c_tiles = (c + kConvTileC - 1) / kConvTileC;
    const bool short_tiles = c_tiles * ((t + 63) / 64) * batch < 2 * int64_t{l.n_sms};
    const int tile_t = short_tiles ? 16 : 64;
    const dim3 grid(static_cast<unsigned int>(c_tiles), static_cast<unsigned int>((t + tile_t - 1) / tile_t),
                    static_cast<unsigned int>(batch));
    const size_t shared = static_cast<size_t>((tile_t + k - 1) * kConvTileC) * sizeof(float);
    if (batch > 65535 || shared > 48 * 1024)
        throw_cuda_error(cudaErrorInvalidValue, "glu_depthwise_conv1d_silu size", __FILE__, __LINE__);
    const dim3 block(kConvTileC, kConvRowsPerPass);
    if (short_tiles) {
        launch_after_previous(l, glu_depthwise_conv1d_silu_kernel<16>, grid, block, shared, x, lengths, w, bias, t, c,
                              k, pad_left, y, y_dtype);
    } else {
        launch_after_previous(l, glu_depthwise_conv1d_silu_kernel<64>, grid, block, shared, x, lengths, w, bias, t, c,
                              k, pad_left, y, y_dtype);
    }
    PK_CUDA_CHECK_LAUNCH();
}

void conv2d_3x3_s2(Launch l, const float* x, int64_t c_in, int64_t t, int64_t f, const float* w, const float* bias,
                   int64_t c_out, bool depthwise, int64_t pad_lo, float* y) {
    (void)c_in;
    const int64_t n = c_out * ((t + pad_lo - 2) / 2 + 1) * ((f + pad_lo - 2) / 2 + 1);
    if (n <= 0) return;
    conv2d_3x3_s2_kernel<<<grid_for(l, n), kThreads, 0, l.stream>>>(x, t, f, w, bias, c_out, depthwise, pad_lo, y);
    PK_CUDA_CHECK_LAUNCH();
}

}  // namespace parakeet::cuda::kernels

// ---- Batched dw_striding subsampling, channels last (FastConformerEncoder::subsample_batch) ----

namespace parakeet::cuda::kernels {

namespace {

// One block per (output row t2, item b), one thread per channel: stage 0 (3x3/2 conv of the single input channel,
// + bias, ReLU) evaluated where stage 1's depthwise 3x3/2 conv reads it (zero outside the item's own stage-0 rows
// and columns), then that conv (+ bias). The 7 input rows the block needs sit in shared memory, zero outside the
// item's frames; along the frequency axis each output reuses the stage-0 column its left neighbour computed.
template <typename Y>
__global__ void subsample_front_kernel(const float* x, SubsampleLengths lens, int t_max, int f, const float* w0,
                                       const float* b0, const float* w1, const float* b1, int c, int pad_lo, int t2_max,
                                       int f1, int f2, Y* y) {
    extern __shared__ float xs[];  // [7][f + 4], column fs at fs + 2
    const int t2 = blockIdx.x, b = blockIdx.y, width = f + 4;
    const int len = lens.in ? lens.in[b * lens.stride] : t_max;
    const int len1 = lens.out[b * lens.stride], len2 = lens.out[b * lens.stride + 1];
    Y* out = y + (int64_t{b} * t2_max + t2) * f2 * c;
    if (t2 >= len2) {
        for (int i = threadIdx.x; i < f2 * c; i += blockDim.x) out[i] = from_float<Y>(0.f);
        return;
    }
    const int ts0 = 4 * t2 - 3 * pad_lo;
    for (int i = threadIdx.x; i < 7 * width; i += blockDim.x) {
        const int ts = ts0 + i / width, fs = i % width - 2;
        xs[i] = ts >= 0 && ts < len && fs >= 0 && fs < f ? x[(int64_t{b} * t_max + ts) * f + fs] : 0.f;
    }
    __syncthreads();
    for (int ch = threadIdx.x; ch < c; ch += blockDim.x) {
        float k0[9], k1[9];
#pragma unroll
        for (int i = 0; i < 9; ++i) {
            k0[i] = w0[ch * 9 + i];
            k1[i] = w1[ch * 9 + i];
        }
        const float bias0 = b0[ch], bias1 = b1[ch];
        // Stage-0 output at stage-1 input row 2·t2 - pad_lo + r (input rows 2r .. 2r + 2 of xs) and column c1.
        const auto s0 = [&](int r, int c1) {
            const int t1 = 2 * t2 - pad_lo + r;
            if (t1 < 0 || t1 >= len1 || c1 < 0 || c1 >= f1) return 0.f;
            const float* row = xs + 2 * r * width + 2 * c1 - pad_lo + 2;
            float acc = bias0;
#pragma unroll
            for (int a = 0; a < 3; ++a)
#pragma unroll
                for (int bb = 0; bb < 3; ++bb) acc += k0[a * 3 + bb] * row[a * width + bb];
            return fmaxf(acc, 0.f);
        };
        float col0[3];
#pragma unroll
        for (int r = 0; r < 3; ++r) col0[r] = s0(r, -pad_lo);
        for (int j = 0; j < f2; ++j) {
            const int c1 = 2 * j - pad_lo;
            float acc = bias1;
#pragma unroll
            for (int r = 0; r < 3; ++r) {
                const float v1 = s0(r, c1 + 1), v2 = s0(r, c1 + 2);
                acc += k1[r * 3] * col0[r] + k1[r * 3 + 1] * v1 + k1[r * 3 + 2] * v2;
                col0[r] = v2;
            }
            out[j * c + ch] = from_float<Y>(acc);
        }
    }
}

// One block per (output row, item): y[b, to, fo, ch] = bias[ch] + Σ w[ch][a][bb] · max(x[b, 2to + a - pad_lo,
// 2fo + bb - pad_lo, ch], 0) over the taps inside the item's rows and the columns; rows past the item's output
// length are zero.
template <typename Y>
__global__ void relu_depthwise_conv2d_s2_kernel(const float* x, const float* in_bias, SubsampleLengths lens,
                                                int t_in_max, int f_in, int c, const float* w, const float* bias,
                                                int pad_lo, int t_out_max, int f_out, Y* y) {
    const int to = blockIdx.x, b = blockIdx.y;
    const int len = lens.in[b * lens.stride], len_out = lens.out[b * lens.stride];
    Y* out = y + (int64_t{b} * t_out_max + to) * f_out * c;
    const float* xb = x + int64_t{b} * t_in_max * f_in * c;
    for (int i = threadIdx.x; i < f_out * c; i += blockDim.x) {
        const int ch = i % c, fo = i / c;
        float acc = 0.f;
        if (to < len_out) {
            acc = bias[ch];
            const float xb_ch = in_bias ? in_bias[ch] : 0.f;
#pragma unroll
            for (int a = 0; a < 3; ++a) {
                const int ts = 2 * to + a - pad_lo;
                if (ts < 0 || ts >= len) continue;
#pragma unroll
                for (int bb = 0; bb < 3; ++bb) {
                    const int fs = 2 * fo + bb - pad_lo;
                    if (fs < 0 || fs >= f_in) continue;
                    acc += w[ch * 9 + a * 3 + bb] * fmaxf(xb[(int64_t{ts} * f_in + fs) * c + ch] + xb_ch, 0.f);
                }
            }
        }
        out[i] = from_float<Y>(acc);
    }
}

template <typename Y>
__global__ void relu_to_kernel(const float* x, const float* bias, int64_t c, int64_t n, Y* y) {
    for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x)
        y[i] = from_float<Y>(fmaxf(x[i] + (bias ? bias[i % c] : 0.f), 0.f));
}

unsigned int channel_threads(int64_t c) { return static_cast<unsigned int>(std::min<int64_t>(256, (c + 31) / 32 * 32)); }

}  // namespace

void subsample_front(Launch l, const float* x, const SubsampleLengths& lengths, int64_t batch, int64_t t_max, int64_t f,
                     const float* w0, const float* b0, const float* w1, const float* b1, int64_t c, int64_t pad_lo,
                     int64_t t2_max, int64_t f1, int64_t f2, void* y, int y_dtype) {
    if (batch <= 0 || t2_max <= 0) return;
    if (batch > 65535 || t2_max > INT_MAX || t_max * f > INT_MAX)
        throw_cuda_error(cudaErrorInvalidValue, "subsample_front size", __FILE__, __LINE__);
    const dim3 grid(static_cast<unsigned int>(t2_max), static_cast<unsigned int>(batch));
    const size_t shared = static_cast<size_t>(7 * (f + 4)) * sizeof(float);
    by_act_dtype(y_dtype, [&](auto tag) {
        using Y = decltype(tag);
        subsample_front_kernel<Y><<<grid, channel_threads(c), shared, l.stream>>>(
            x, lengths, static_cast<int>(t_max), static_cast<int>(f), w0, b0, w1, b1, static_cast<int>(c),
            static_cast<int>(pad_lo), static_cast<int>(t2_max), static_cast<int>(f1), static_cast<int>(f2),
            static_cast<Y*>(y));
    });
    PK_CUDA_CHECK_LAUNCH();
}

void relu_depthwise_conv2d_s2(Launch l, const float* x, const float* in_bias, const SubsampleLengths& lengths,
                              int64_t batch, int64_t t_in_max,
                              int64_t f_in, int64_t c, const float* w, const float* bias, int64_t pad_lo,
                              int64_t t_out_max, int64_t f_out, void* y, int y_dtype) {
    if (batch <= 0 || t_out_max <= 0) return;
    if (batch > 65535 || t_out_max > INT_MAX || t_in_max * f_in * c > INT_MAX)
        throw_cuda_error(cudaErrorInvalidValue, "relu_depthwise_conv2d_s2 size", __FILE__, __LINE__);
    const dim3 grid(static_cast<unsigned int>(t_out_max), static_cast<unsigned int>(batch));
    by_act_dtype(y_dtype, [&](auto tag) {
        using Y = decltype(tag);
        relu_depthwise_conv2d_s2_kernel<Y><<<grid, kThreads, 0, l.stream>>>(
            x, in_bias, lengths, static_cast<int>(t_in_max), static_cast<int>(f_in), static_cast<int>(c), w, bias,
            static_cast<int>(pad_lo), static_cast<int>(t_out_max), static_cast<int>(f_out), static_cast<Y*>(y));
    });
    PK_CUDA_CHECK_LAUNCH();
}

void relu_to(Launch l, const float* x, const float* bias, int64_t c, int64_t n, void* y, int y_dtype) {
    if (n <= 0) return;
    by_act_dtype(y_dtype, [&](auto tag) {
        using Y = decltype(tag);
        relu_to_kernel<Y><<<grid_for(l, n), kThreads, 0, l.stream>>>(x, bias, c, n, static_cast<Y*>(y));
    });
    PK_CUDA_CHECK_LAUNCH();
}

}  // namespace parakeet::cuda::kernels
