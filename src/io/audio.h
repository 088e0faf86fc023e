// Audio input: decode files with libsndfile, read raw PCM, down-mix, resample with libsoxr.
//
// Every function returns mono float32 samples in [-1, 1] (float files may exceed that range and are
// passed through unchanged). The pipeline mirrors what NeMo does for a file path:
//   decode (soundfile == libsndfile, float read) -> average channels -> resample (librosa, soxr_hq)
// Integer PCM is scaled by 2^-(bits-1): int16 x / 32768, int24 x / 2^23, int32 x / 2^31, signed
// 8-bit x / 128, unsigned 8-bit (x - 128) / 128. This is libsndfile's normalised float read, the
// one soundfile (and so NeMo) uses; float32/float64 files are passed through.
//
// Errors are parakeet::Error with a one-line message naming the file:
//   kIo              missing file, a directory, unreadable file, stream read failure
//   kFormat          empty (0-byte) file, unrecognised or corrupt file, NaN/Inf samples, raw input
//                    that ends mid-frame
//   kInvalidArgument rate <= 0, channels <= 0, unknown raw format name
// NaN and Inf samples are never repaired: they throw kFormat "audio contains NaN or Inf samples".
// A file whose header declares more data than it holds (a truncated WAV) is read up to where its
// data ends, as libsndfile and soundfile do; a file with a valid header and no samples returns an
// empty vector (the caller decides whether that is an error).
//
// Thread safety: the free functions are reentrant. Resampler and RawPcmReader objects hold
// per-stream state; use one object per thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <istream>
#include <memory>
#include <string>
#include <vector>

namespace parakeet {

// What the decoder found in the file, before down-mixing and resampling.
struct AudioInfo {
    int sample_rate = 0;      // original rate, Hz
    int channels = 0;         // original channel count
    int64_t frames = 0;       // frames actually decoded (per channel), at the original rate
    std::string format;       // libsndfile's names, e.g. "WAV (Microsoft), Signed 16 bit PCM"
    double duration_s = 0.0;  // frames / sample_rate
};

// Decodes any file libsndfile reads (WAV/WAVEX/RF64/W64, FLAC, OGG Vorbis/Opus, MP3, AIFF, CAF,
// AU, ...), averages its channels and resamples it to `target_rate` Hz (no-op when equal).
// Returns mono float32 samples; `info`, when given, receives what the file held.
std::vector<float> load_audio(const std::string& path, int target_rate, AudioInfo* info = nullptr);

// Interleaved [frames, channels] -> mono by averaging: (c0 + c1 + ... ) / channels, summed in
// float32 left to right, as numpy's mean over the channel axis does for fewer than 8 channels.
std::vector<float> downmix(const float* interleaved, size_t frames, int channels);

// Throws kFormat "audio contains NaN or Inf samples" (naming `what`) when any sample is not finite.
void check_finite(const float* samples, size_t n, const std::string& what);

// Headerless little-endian PCM.
enum class RawFormat { kS16LE, kS32LE, kF32LE };

// "s16le", "s32le", "f32le" -> RawFormat; anything else throws kInvalidArgument naming the choices.
RawFormat parse_raw_format(const std::string& name);
const char* raw_format_name(RawFormat fmt);
size_t raw_format_bytes(RawFormat fmt);  // bytes per sample of one channel

// Reads `in` to its end as raw interleaved PCM at `rate` Hz with `channels` channels; returns mono
// float32 at `target_rate`. s16le is scaled by 1/32768, s32le by 1/2^31, f32le is passed through.
// A trailing partial frame throws kFormat.
std::vector<float> read_raw_pcm(std::istream& in, int rate, RawFormat fmt, int channels,
                                int target_rate);

// Incremental raw PCM reader for streaming input (stdin, sockets): decodes and down-mixes, does not
// resample (chain a Resampler). Bytes of an incomplete frame are kept for the next call.
class RawPcmReader {
public:
    RawPcmReader(RawFormat fmt, int channels);

    // Reads up to `max_frames` frames from `in` (std::istream::read: blocks until that many bytes
    // arrive or the stream ends), appends their mono samples to `out` and returns how many frames
    // were appended. Returns 0 only at end of stream; if the stream ended inside a frame, throws
    // kFormat.
    size_t read(std::istream& in, std::vector<float>& out, size_t max_frames);

    RawFormat format() const { return fmt_; }
    int channels() const { return channels_; }

private:
    RawFormat fmt_;
    int channels_;
    std::vector<char> pending_;  // bytes of a frame not yet complete
    std::vector<char> buffer_;
    std::vector<float> frame_buffer_;
};

// Streaming mono float32 resampler: libsoxr, SOXR_HQ quality (librosa's default "soxr_hq"), the
// same settings as python-soxr. Output depends only on the concatenated input, not on how it was
// chunked. When in_rate == out_rate it copies its input through.
// Move-only. Not thread-safe: one instance per stream.
class Resampler {
public:
    Resampler(int in_rate, int out_rate);  // throws kInvalidArgument when a rate is <= 0
    ~Resampler();
    Resampler(Resampler&&) noexcept;
    Resampler& operator=(Resampler&&) noexcept;
    Resampler(const Resampler&) = delete;
    Resampler& operator=(const Resampler&) = delete;

    // Feeds `n` input samples; returns the output samples that became available (possibly none:
    // the filter holds back about delay() output samples until more input or flush()).
    std::vector<float> process(const float* in, size_t n);
    std::vector<float> process(const std::vector<float>& in) {
        return process(in.data(), in.size());
    }

    // Ends the input and returns the remaining output. The total output after flush() is
    // round(n_in * out_rate / in_rate) samples. Afterwards the resampler is reset and may be
    // reused.
    std::vector<float> flush();

    // Drops all state, as if newly constructed.
    void reset();

    int in_rate() const { return in_rate_; }
    int out_rate() const { return out_rate_; }
    double delay() const;  // output samples held back inside the filter

private:
    struct Impl;
    int in_rate_ = 0;
    int out_rate_ = 0;
    std::unique_ptr<Impl> impl_;
};

// One-shot resample, matching librosa.resample(y, orig_sr, target_sr) with res_type "soxr_hq":
// soxr output, then trimmed or zero-padded to ceil(n * out_rate / in_rate) samples.
// Returns a copy when the rates are equal.
std::vector<float> resample(const std::vector<float>& in, int in_rate, int out_rate);

}  // namespace parakeet
