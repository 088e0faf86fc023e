// Convolutions: the conformer's depthwise time conv (channels last) and the subsampling's 3x3/s2 convs.
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
        glu_depthwise_conv1d_silu_kernel<16><<<grid, block, shared, l.stream>>>(x, lengths, w, bias, t, c, k, pad_left,
                                                                                y, y_dtype);
    } else {
        glu_depthwise_conv1d_silu_kernel<64><<<grid, block, shared, l.stream>>>(x, lengths, w, bias, t, c, k, pad_left,
                                                                                y, y_dtype);
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
