// Log-mel frontend kernels (mirror MelFrontend::log_mel / spectral_frames / normalize_per_feature in
// frontend/mel.cc). The CPU side is built with -ffp-contract=off, so products are rounded before sums here too:
// __fmul_rn / __fadd_rn / __fsub_rn are never fused into FMAs by nvcc.
#include "backends/cuda/kernel_utils.cuh"
#include "backends/cuda/mel_kernels.h"

namespace parakeet::cuda::kernels {

namespace {

constexpr int kMelThreads = 128;

// Pre-emphasised sample j of x (0 <= j < n).
__device__ __forceinline__ float preemphasised(const float* x, int64_t j, float preemph) {
    return j == 0 ? x[0] : __fsub_rn(x[j], __fmul_rn(preemph, x[j - 1]));
}

// The item whose frames include global frame g: the last b with frame_offset[b] <= g (items without frames
// share an offset with the next one; the search lands past them).
__device__ __forceinline__ int item_of_frame(const MelBatch& m, int64_t g) {
    int lo = 0, hi = m.batch - 1;
    while (lo < hi) {
        const int mid = (lo + hi + 1) / 2;
        if (m.frame_offset[mid] <= g) lo = mid;
        else hi = mid - 1;
    }
    return lo;
}

__global__ void mel_frames_kernel(const float* x, MelBatch m, int64_t g0, int64_t count, int64_t pass, int n_fft,
                                  int hop, float preemph, bool reflect, const float* window, float* frames) {
    const int64_t total = pass * n_fft, pad = n_fft / 2;
    for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < total;
         i += int64_t{gridDim.x} * blockDim.x) {
        const int64_t r = i / n_fft;
        const int k = static_cast<int>(i - r * n_fft);
        float v = 0.f;
        if (r < count) {
            const int64_t g = g0 + r;
            const int b = item_of_frame(m, g);
            const float* xb = x + m.sample_offset[b];
            const int64_t n = m.n[b];
            // Index into the item's unpadded signal; reflect padding mirrors around samples 0 and n-1 (n > pad).
            int64_t j = (g - m.frame_offset[b]) * hop + k - pad;
            if (reflect) j = j < 0 ? -j : (j >= n ? 2 * (n - 1) - j : j);
            if (j >= 0 && j < n) v = __fmul_rn(preemphasised(xb, j, preemph), window[k]);
        }
        frames[i] = v;
    }
}

// One block per frame: the power spectrum into shared memory, then one thread per mel filter.
__global__ void mel_power_log_kernel(const float2* spec, int64_t count, int n_bins, int n_mels, const float* fb,
                                     const int* fb_span, float guard, float* out) {
    extern __shared__ float power[];
    for (int64_t r = blockIdx.x; r < count; r += gridDim.x) {
        const float2* s = spec + r * n_bins;
        for (int k = threadIdx.x; k < n_bins; k += blockDim.x) {
            const float2 z = s[k];
            const float mag = __fsqrt_rn(__fadd_rn(__fmul_rn(z.x, z.x), __fmul_rn(z.y, z.y)));
            power[k] = __fmul_rn(mag, mag);
        }
        __syncthreads();
        for (int m = threadIdx.x; m < n_mels; m += blockDim.x) {
            const float* row = fb + static_cast<int64_t>(m) * n_bins;
            float acc = 0.f;
            for (int k = fb_span[2 * m]; k < fb_span[2 * m + 1]; ++k) acc = __fadd_rn(acc, __fmul_rn(row[k], power[k]));
            out[r * n_mels + m] = logf(__fadd_rn(acc, guard));
        }
        __syncthreads();  // power is rewritten for the next frame
    }
}

// A block per (item, 32 mel columns): lane = column, so every warp reads 128 contiguous bytes of a frame; the 16 warps
// take every 16th frame and their double sums meet in shared memory. (A block per column read one float per
// 512-byte frame: 406 us for a batch of 64 x 10 s.)
constexpr int kNormCols = 32;
constexpr int kNormWarps = 16;

__global__ void __launch_bounds__(kNormCols * kNormWarps) mel_normalize_kernel(float* x, MelBatch m, int n_mels) {
    __shared__ double part[kNormWarps][kNormCols];
    __shared__ float s_mean[kNormCols], s_std[kNormCols];
    const int b = blockIdx.y, lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int col = blockIdx.x * kNormCols + lane;
    const int64_t first = m.frame_offset[b], n_frames = m.frame_offset[b + 1] - first;
    if (n_frames <= 0) return;  // uniform over the block
    const bool ok = col < n_mels;
    float* c = x + first * n_mels + col;
    double sum = 0.0;
    if (ok)
        for (int64_t t = warp; t < n_frames; t += kNormWarps) sum = __dadd_rn(sum, static_cast<double>(c[t * n_mels]));
    part[warp][lane] = sum;
    __syncthreads();
    if (warp == 0) {
        double total = 0.0;
        for (int w = 0; w < kNormWarps; ++w) total = __dadd_rn(total, part[w][lane]);
        s_mean[lane] = static_cast<float>(total / static_cast<double>(n_frames));
    }
    __syncthreads();
    const float mean = s_mean[lane];
    double sq = 0.0;
    if (ok) {
        for (int64_t t = warp; t < n_frames; t += kNormWarps) {
            const double d = __fsub_rn(c[t * n_mels], mean);
            sq = __dadd_rn(sq, __dmul_rn(d, d));
        }
    }
    part[warp][lane] = sq;
    __syncthreads();
    if (warp == 0) {
        double total = 0.0;
        for (int w = 0; w < kNormWarps; ++w) total = __dadd_rn(total, part[w][lane]);
        // Unbiased std; 0 for a single frame (NeMo >= 2.5); epsilon added to the std.
        const float std_dev = n_frames > 1 ? static_cast<float>(sqrt(total / static_cast<double>(n_frames - 1))) : 0.f;
        s_std[lane] = __fadd_rn(std_dev, 1e-5f);
    }
    __syncthreads();
    const float std_dev = s_std[lane];
    if (ok)
        for (int64_t t = warp; t < n_frames; t += kNormWarps) c[t * n_mels] = __fdiv_rn(__fsub_rn(c[t * n_mels], mean), std_dev);
}

}  // namespace

void mel_frames(Launch l, const float* x, const MelBatch& items, int64_t g0, int64_t count, int64_t pass, int n_fft,
                int hop, float preemph, bool reflect, const float* window, float* frames) {
    if (pass <= 0) return;
    mel_frames_kernel<<<grid_for(l, pass * n_fft), kThreads, 0, l.stream>>>(x, items, g0, count, pass, n_fft, hop,
                                                                           preemph, reflect, window, frames);
    PK_CUDA_CHECK_LAUNCH();
}

void mel_power_log(Launch l, const void* spec, int64_t count, int n_bins, int n_mels, const float* fb,
                   const int* fb_span, float guard, float* out) {
    if (count <= 0) return;
    const unsigned int blocks = static_cast<unsigned int>(std::min<int64_t>(count, int64_t{l.n_sms} * 32));
    mel_power_log_kernel<<<blocks, kMelThreads, n_bins * sizeof(float), l.stream>>>(
        static_cast<const float2*>(spec), count, n_bins, n_mels, fb, fb_span, guard, out);
    PK_CUDA_CHECK_LAUNCH();
}

void mel_normalize(Launch l, float* x, const MelBatch& items, int n_mels) {
    if (items.batch <= 0 || n_mels <= 0) return;
    const dim3 grid(static_cast<unsigned int>((n_mels + kNormCols - 1) / kNormCols), static_cast<unsigned int>(items.batch));
    mel_normalize_kernel<<<grid, kNormCols * kNormWarps, 0, l.stream>>>(x, items, n_mels);
    PK_CUDA_CHECK_LAUNCH();
}

}  // namespace parakeet::cuda::kernels
