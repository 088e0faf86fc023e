// Log-mel frontend on the GPU: the steps of MelFrontend::compute (src/frontend/mel.cc, NeMo FilterbankFeatures
// in eval mode) with cuFFT for the STFT. Plain C++ declarations (no CUDA types), so src/frontend can name them
// in every build; the definitions exist only in CUDA builds (call through PK_CUDA_OP).
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
    bool normalize = false;    // per_feature normalisation over the frames (NeMo normalize_batch)
    const float* window = nullptr;  // device [n_fft]: the window zero-extended and centred
    const float* fb = nullptr;      // device [n_mels, n_bins]
    const int* fb_span = nullptr;   // device [n_mels, 2]: each filter's non-zero bins [begin, end)
};

// Features [n_frames, n_mels] (time-major) of n host samples into device memory `out`, queued on the context's
// stream. `samples` is read before the call returns (one host-to-device copy); n_frames is
// MelFrontend::num_frames(n) (> 0) and the samples are finite (the caller checks both). Products are rounded
// before sums as on the CPU (no FMA contraction); the STFT differs from the CPU's kissfft by fp32 rounding.
void mel_features(CudaContext& ctx, const MelArgs& args, const float* samples, int64_t n, int64_t n_frames,
                  float* out);

}  // namespace parakeet::cuda
