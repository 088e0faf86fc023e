// Log-mel frontend on the GPU: the steps of MelFrontend::compute (src/frontend/mel.cc, NeMo FilterbankFeatures
// in eval mode) with cuFFT for the STFT, for a batch of inputs at once. Plain C++ declarations (no CUDA types),
// so src/frontend can name them in every build; the definitions exist only in CUDA builds (call through
// PK_CUDA_OP).
#pragma once

#include <cstdint>

#include "core/context.h"

namespace parakeet::cuda {

struct MelArgs {
    int n_fft = 0;  // even; n_bins = n_fft / 2 + 1
    int hop = 0;
    int n_mels = 0;
    float preemph = 0.f;
    float log_guard = 0.f;     // log(mel + log_guard)
    bool reflect_pad = false;  // NeMo <= 2.4: reflect centre padding (needs n > n_fft / 2); else zeros
    bool normalize = false;    // per_feature normalisation over each item's frames (NeMo normalize_batch)
    const float* window = nullptr;  // device [n_fft]: the window zero-extended and centred
    const float* fb = nullptr;      // device [n_mels, n_bins]
    const int* fb_span = nullptr;   // device [n_mels, 2]: each filter's non-zero bins [begin, end)
};

// One input of a batch: samples [sample_offset, +n) of the staged audio, features at rows
// [frame_offset, +n_frames) of the output (n_frames = MelFrontend::num_frames(n), may be 0).
struct MelItem {
    int64_t sample_offset = 0;
    int64_t n = 0;
    int64_t frame_offset = 0;
    int64_t n_frames = 0;
};

// A pinned host buffer of at least n_samples floats into which the caller copies a batch's audio before
// mel_features_batch. Waits until the previous batch's upload from it is done (the buffer is reused).
float* mel_staging(CudaContext& ctx, int64_t n_samples);

// Features of `batch` items into device memory out [Σ n_frames, n_mels] (time-major, item after item), queued on
// the context's stream: one upload of the staged audio (total_samples floats from mel_staging's buffer), then
// the frames of all items in passes of one cuFFT plan. The samples are finite (the caller checks). Products are
// rounded before sums as on the CPU (no FMA contraction); the STFT differs from the CPU's kissfft by fp32 rounding.
void mel_features_batch(CudaContext& ctx, const MelArgs& args, const MelItem* items, int batch,
                        int64_t total_samples, float* out);

}  // namespace parakeet::cuda
