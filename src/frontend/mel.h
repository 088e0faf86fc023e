// Log-mel frontend, NeMo FilterbankFeatures in eval mode (nemo/collections/asr/parts/preprocessing/features.py).
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "core/context.h"
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
    // The same features [F, n_mels] float32 on ctx.device: the CPU path above, or on CUDA the same steps on the
    // GPU (cuFFT; src/backends/cuda/mel_gpu.h), queued on ctx's stream without synchronising. `samples` are
    // host memory, read before the call returns. Thread-safe (the device copies of the window and filterbank
    // are made once per device). Throws kUnsupported for CUDA in a build without it.
    Tensor compute(const ExecContext& ctx, const float* samples, int64_t n_samples) const;
    // compute(ctx, ...) of several inputs. On CUDA the batch's audio goes up in one copy from a pinned buffer and
    // one set of kernels computes every item's features; the tensors are views of one device buffer. Throws
    // kInvalidArgument for NaN/Inf samples (naming the input).
    std::vector<Tensor> compute_batch(const ExecContext& ctx, const std::vector<const float*>& samples,
                                      const std::vector<int64_t>& n_samples) const;
    // Raw log-mels before normalisation, [F, n_mels].
    Tensor log_mel(const float* samples, int64_t n_samples) const;

    // Log-mels of n_frames frames from centre-padded, pre-emphasised samples: frame t starts at padded[hop·t].
    void spectral_frames(const float* padded, int64_t n_frames, float* out) const;

    int n_mels() const { return n_mels_; }
    int n_fft() const { return n_fft_; }
    float preemph() const { return static_cast<float>(config_.preemph); }
    int hop() const { return hop_; }
    FrontendVersion version() const { return version_; }

private:
    struct DeviceConstants;  // window, filterbank and spans on each CUDA device that computed features
    // Throws kInvalidArgument for NaN/Inf samples or (NeMo 2.4) input too short for the reflect padding.
    void check_input(const float* samples, int64_t n_samples) const;
    // The length check alone (NeMo 2.4's reflect padding needs more than n_fft / 2 samples).
    void check_length(int64_t n_samples) const;
    std::vector<Tensor> compute_cuda(const ExecContext& ctx, const std::vector<const float*>& samples,
                                     const std::vector<int64_t>& n_samples) const;

    PreprocessorConfig config_;
    FrontendVersion version_;
    int n_fft_, win_, hop_, n_mels_, n_bins_;
    std::vector<float> window_;  // [n_fft], the window zero-extended and centred
    std::vector<float> fb_;      // [n_mels, n_bins]
    std::vector<int> fb_span_;   // [n_mels, 2]: each filter's non-zero bins [begin, end)
    std::shared_ptr<DeviceConstants> device_;  // created with the frontend, filled on first CUDA use
};

// Raw log-mel frames of a live stream, identical to MelFrontend::log_mel over the whole input (NeMo >= 2.5
// frontend): a frame is produced once the n_fft/2 samples after its centre have arrived, or at finish().
class StreamingLogMel {
public:
    explicit StreamingLogMel(const MelFrontend& frontend);
    void accept(const float* samples, size_t n);
    void finish();
    // Appends the frames that became computable ([count, n_mels] row-major) and returns count.
    int64_t pull(std::vector<float>& out);
    int64_t frames_done() const { return frames_done_; }
    void reset();

private:
    const MelFrontend& fe_;
    std::vector<float> padded_;  // pre-emphasised samples with the left centre padding, from padded_offset_
    int64_t padded_offset_ = 0, received_ = 0, frames_done_ = 0;
    float last_sample_ = 0.f;
    bool finished_ = false;
};

// per_feature normalisation in place over rows [0, n_frames) of x[n_frames, n_mels] (NeMo normalize_batch).
void normalize_per_feature(float* x, int64_t n_frames, int n_mels);

// librosa.filters.mel(sr, n_fft, n_mels, fmin, fmax, htk=False, norm='slaney') as float32 [n_mels, n_fft/2+1].
std::vector<float> slaney_mel_filterbank(int sample_rate, int n_fft, int n_mels, double fmin, double fmax);

}  // namespace parakeet
