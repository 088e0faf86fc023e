// Kernel launchers of the GPU log-mel frontend (mel.cu); mel_gpu.cc drives them around cuFFT.
// Backend-internal (CUDA types); raw device pointers only.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "backends/cuda/kernels.h"

namespace parakeet::cuda::kernels {

// A batch of inputs in one sample buffer x: item b's samples are x[sample_offset[b], +n[b]), its frames the global
// frames [frame_offset[b], frame_offset[b + 1]) (frame_offset has batch + 1 entries). Device arrays.
struct MelBatch {
    const int64_t* sample_offset;
    const int64_t* n;
    const int64_t* frame_offset;
    int batch;
};

// frames[r, i] (r < pass, i < n_fft) for global frame g = g0 + r of item b (local frame t = g - frame_offset[b]):
// padded[hop·t + i] · window[i] for r < count, 0 for the rest, where padded is the item's samples pre-emphasised
// (y[0] = x[0], y[j] = x[j] - preemph·x[j-1], product rounded first) and centre-padded by n_fft/2 on each side:
// zeros, or (reflect) y[-j] = y[j], y[n-1+j] = y[n-1-j].
void mel_frames(Launch l, const float* x, const MelBatch& items, int64_t g0, int64_t count, int64_t pass, int n_fft,
                int hop, float preemph, bool reflect, const float* window, float* frames);

// out[r, m] = log(sum_{k in span m} fb[m, k] · |spec[r, k]|² + guard) for r < count, summed in k order with
// |z|² = sqrt(re² + im²)² as the CPU computes it. spec: [count, n_bins] complex (float2).
void mel_power_log(Launch l, const void* spec, int64_t count, int n_bins, int n_mels, const float* fb,
                   const int* fb_span, float guard, float* out);

// per_feature normalisation in place of each item's rows of x[Σ frames, n_mels] (frontend/mel.cc
// normalize_per_feature): mean and unbiased std per column accumulated in double, std 0 for one frame, +1e-5 on
// the std.
void mel_normalize(Launch l, float* x, const MelBatch& items, int n_mels);

}  // namespace parakeet::cuda::kernels
