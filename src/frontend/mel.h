// Log-mel frontend, NeMo FilterbankFeatures in eval mode (nemo/collections/asr/parts/preprocessing/features.py).
#pragma once

#include <cstdint>
#include <vector>

#include "core/tensor.h"
#include "models/config.h"

namespace parakeet {

enum class FrontendVersion {
    kNemo25,  // NeMo >= 2.5 (the goldens): zero centre padding, F = N // hop valid frames
    kNemo24,  // NeMo <= 2.4: reflect centre padding, F = N // hop + 1
};

class MelFrontend {
public:
    // window: [win_length] (checkpoint's featurizer.window) or undefined to compute a symmetric Hann;
    // fb: [1, n_mels, n_fft/2+1] (featurizer.fb) or undefined to compute the Slaney filterbank.
    MelFrontend(const PreprocessorConfig& config, const Tensor& window, const Tensor& fb,
                FrontendVersion version = FrontendVersion::kNemo25);

    // Number of valid feature frames F for n samples.
    int64_t num_frames(int64_t n_samples) const;

    // Features [F, n_mels] (time-major), per_feature-normalised over the F frames. F may be 0.
    // Throws kInvalidArgument for NaN/Inf samples.
    Tensor compute(const float* samples, int64_t n_samples) const;
    // Raw log-mels before normalisation, [F, n_mels].
    Tensor log_mel(const float* samples, int64_t n_samples) const;

    int n_mels() const { return n_mels_; }
    int hop() const { return hop_; }
    FrontendVersion version() const { return version_; }

private:
    PreprocessorConfig config_;
    FrontendVersion version_;
    int n_fft_, win_, hop_, n_mels_, n_bins_;
    std::vector<float> window_;  // [n_fft], the window zero-extended and centred
    std::vector<float> fb_;      // [n_mels, n_bins]
};

// per_feature normalisation in place over rows [0, n_frames) of x[n_frames, n_mels] (NeMo normalize_batch).
void normalize_per_feature(float* x, int64_t n_frames, int n_mels);

// librosa.filters.mel(sr, n_fft, n_mels, fmin, fmax, htk=False, norm='slaney') as float32 [n_mels, n_fft/2+1].
std::vector<float> slaney_mel_filterbank(int sample_rate, int n_fft, int n_mels, double fmin, double fmax);

}  // namespace parakeet
