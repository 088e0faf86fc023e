#include "io/audio.h"

#include <sndfile.h>
#include <soxr.h>
#include <sys/stat.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "core/error.h"

namespace parakeet {

namespace {

constexpr size_t kReadBlockFrames = 16384;

std::string sndfile_format_name(int format) {
    SF_FORMAT_INFO major{};
    major.format = format & SF_FORMAT_TYPEMASK;
    SF_FORMAT_INFO sub{};
    sub.format = format & SF_FORMAT_SUBMASK;
    bool have_major = sf_command(nullptr, SFC_GET_FORMAT_INFO, &major, sizeof(major)) == 0;
    bool have_sub = sf_command(nullptr, SFC_GET_FORMAT_INFO, &sub, sizeof(sub)) == 0;
    std::string out = have_major ? major.name : fmt::format("format 0x{:x}", major.format);
    out += ", ";
    out += have_sub ? sub.name : fmt::format("subtype 0x{:x}", sub.format);
    return out;
}

// Opens `path` with libsndfile after the checks that give clearer messages than sf_strerror.
SNDFILE* open_sndfile(const std::string& path, SF_INFO* sfinfo) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) {
        PK_THROW(kIo, "cannot open audio file '{}': {}", path, std::strerror(errno));
    }
    PK_CHECK(!S_ISDIR(st.st_mode), kIo, "cannot open audio file '{}': is a directory", path);
    PK_CHECK(S_ISREG(st.st_mode) || S_ISFIFO(st.st_mode) || S_ISCHR(st.st_mode), kIo,
             "cannot open audio file '{}': not a regular file", path);
    if (S_ISREG(st.st_mode)) {
        PK_CHECK(st.st_size > 0, kFormat, "audio file '{}' is empty (0 bytes)", path);
    }
    std::FILE* probe = std::fopen(path.c_str(), "rb");
    if (probe == nullptr) {
        PK_THROW(kIo, "cannot open audio file '{}': {}", path, std::strerror(errno));
    }
    std::fclose(probe);

    *sfinfo = SF_INFO{};
    SNDFILE* file = sf_open(path.c_str(), SFM_READ, sfinfo);
    if (file == nullptr) {
        PK_THROW(kFormat, "cannot decode audio file '{}': {}", path, sf_strerror(nullptr));
    }
    return file;
}

void check_rate(int rate, const char* what) {
    PK_CHECK(rate > 0, kInvalidArgument, "{} must be > 0 Hz, got {}", what, rate);
}

float s32_to_float(int32_t v) {
    // libsndfile's normalised int -> float read: the int is converted first, then scaled.
    return static_cast<float>(v) * (1.0f / 2147483648.0f);
}

}  // namespace

void check_finite(const float* samples, size_t n, const std::string& what) {
    for (size_t i = 0; i < n; ++i) {
        if (!std::isfinite(samples[i])) {
            PK_THROW(kFormat, "{}: audio contains NaN or Inf samples (first at sample {})", what,
                     i);
        }
    }
}

std::vector<float> downmix(const float* interleaved, size_t frames, int channels) {
    PK_CHECK(channels > 0, kInvalidArgument, "channel count must be > 0, got {}", channels);
    if (channels == 1) return std::vector<float>(interleaved, interleaved + frames);
    std::vector<float> out(frames);
    const float n = static_cast<float>(channels);
    for (size_t f = 0; f < frames; ++f) {
        const float* frame = interleaved + f * channels;
        float sum = frame[0];
        for (int c = 1; c < channels; ++c) sum += frame[c];
        out[f] = sum / n;
    }
    return out;
}

std::vector<float> load_audio(const std::string& path, int target_rate, AudioInfo* info) {
    check_rate(target_rate, "target sample rate");
    SF_INFO sfinfo{};
    SNDFILE* file = open_sndfile(path, &sfinfo);
    std::unique_ptr<SNDFILE, int (*)(SNDFILE*)> guard(file, sf_close);

    PK_CHECK(sfinfo.samplerate > 0, kFormat, "audio file '{}' declares sample rate {}", path,
             sfinfo.samplerate);
    PK_CHECK(sfinfo.channels > 0, kFormat, "audio file '{}' declares {} channels", path,
             sfinfo.channels);
    sf_command(file, SFC_SET_NORM_FLOAT, nullptr, SF_TRUE);

    // Read until libsndfile stops: sfinfo.frames is only an estimate for some formats (MP3) and
    // too large for truncated files.
    const int channels = sfinfo.channels;
    std::vector<float> interleaved;
    if (sfinfo.frames > 0 && sfinfo.frames < (int64_t{1} << 32)) {
        interleaved.reserve(static_cast<size_t>(sfinfo.frames) * channels);
    }
    std::vector<float> block(kReadBlockFrames * channels);
    for (;;) {
        sf_count_t got = sf_readf_float(file, block.data(), kReadBlockFrames);
        if (got <= 0) break;
        interleaved.insert(interleaved.end(), block.begin(), block.begin() + got * channels);
    }
    int err = sf_error(file);
    PK_CHECK(err == SF_ERR_NO_ERROR, kFormat, "cannot decode audio file '{}': {}", path,
             sf_error_number(err));

    const size_t frames = interleaved.size() / channels;
    check_finite(interleaved.data(), interleaved.size(), fmt::format("audio file '{}'", path));
    if (info != nullptr) {
        info->sample_rate = sfinfo.samplerate;
        info->channels = channels;
        info->frames = static_cast<int64_t>(frames);
        info->format = sndfile_format_name(sfinfo.format);
        info->duration_s = static_cast<double>(frames) / sfinfo.samplerate;
    }

    std::vector<float> mono = downmix(interleaved.data(), frames, channels);
    interleaved = {};
    if (sfinfo.samplerate == target_rate) return mono;
    return resample(mono, sfinfo.samplerate, target_rate);
}

RawFormat parse_raw_format(const std::string& name) {
    if (name == "s16le") return RawFormat::kS16LE;
    if (name == "s32le") return RawFormat::kS32LE;
    if (name == "f32le") return RawFormat::kF32LE;
    PK_THROW(kInvalidArgument, "unknown raw audio format '{}' (expected s16le, s32le or f32le)",
             name);
}

const char* raw_format_name(RawFormat fmt) {
    switch (fmt) {
        case RawFormat::kS16LE: return "s16le";
        case RawFormat::kS32LE: return "s32le";
        case RawFormat::kF32LE: return "f32le";
    }
    return "?";
}

size_t raw_format_bytes(RawFormat fmt) {
    switch (fmt) {
        case RawFormat::kS16LE: return 2;
        case RawFormat::kS32LE: return 4;
        case RawFormat::kF32LE: return 4;
    }
    return 0;
}

RawPcmReader::RawPcmReader(RawFormat fmt, int channels) : fmt_(fmt), channels_(channels) {
    PK_CHECK(channels > 0, kInvalidArgument, "raw audio channel count must be > 0, got {}",
             channels);
}

size_t RawPcmReader::read(std::istream& in, std::vector<float>& out, size_t max_frames) {
    if (max_frames == 0) return 0;
    const size_t frame_bytes = raw_format_bytes(fmt_) * channels_;
    buffer_.resize(max_frames * frame_bytes);
    if (!pending_.empty()) std::memcpy(buffer_.data(), pending_.data(), pending_.size());
    // std::istream::read blocks until the request is met or the stream ends.
    in.read(buffer_.data() + pending_.size(),
            static_cast<std::streamsize>(buffer_.size() - pending_.size()));
    if (in.bad()) PK_THROW(kIo, "error reading raw audio input");
    const size_t have = pending_.size() + static_cast<size_t>(in.gcount());
    const size_t frames = have / frame_bytes;
    const size_t used = frames * frame_bytes;
    pending_.assign(buffer_.begin() + used, buffer_.begin() + have);
    if (frames == 0) {
        PK_CHECK(pending_.empty(), kFormat,
                 "raw audio input ends mid-frame ({} trailing bytes; frame is {} bytes: {} x {})",
                 pending_.size(), frame_bytes, channels_, raw_format_name(fmt_));
        return 0;
    }

    const size_t n = frames * channels_;
    frame_buffer_.resize(n);
    const auto* bytes = reinterpret_cast<const unsigned char*>(buffer_.data());
    for (size_t i = 0; i < n; ++i) {
        const unsigned char* p = bytes + i * raw_format_bytes(fmt_);
        switch (fmt_) {
            case RawFormat::kS16LE: {
                auto v = static_cast<int16_t>(static_cast<uint16_t>(p[0] | (p[1] << 8)));
                frame_buffer_[i] = static_cast<float>(v) * (1.0f / 32768.0f);
                break;
            }
            case RawFormat::kS32LE: {
                uint32_t u = uint32_t{p[0]} | (uint32_t{p[1]} << 8) | (uint32_t{p[2]} << 16) |
                             (uint32_t{p[3]} << 24);
                frame_buffer_[i] = s32_to_float(static_cast<int32_t>(u));
                break;
            }
            case RawFormat::kF32LE: {
                uint32_t u = uint32_t{p[0]} | (uint32_t{p[1]} << 8) | (uint32_t{p[2]} << 16) |
                             (uint32_t{p[3]} << 24);
                std::memcpy(&frame_buffer_[i], &u, 4);
                break;
            }
        }
    }
    check_finite(frame_buffer_.data(), n, "raw audio input");
    std::vector<float> mono = downmix(frame_buffer_.data(), frames, channels_);
    out.insert(out.end(), mono.begin(), mono.end());
    return frames;
}

std::vector<float> read_raw_pcm(std::istream& in, int rate, RawFormat fmt, int channels,
                                int target_rate) {
    check_rate(rate, "raw audio sample rate");
    check_rate(target_rate, "target sample rate");
    RawPcmReader reader(fmt, channels);
    std::vector<float> mono;
    while (reader.read(in, mono, 1 << 16) > 0) {
    }
    if (rate == target_rate) return mono;
    return resample(mono, rate, target_rate);
}

struct Resampler::Impl {
    soxr_t soxr = nullptr;
    ~Impl() {
        if (soxr != nullptr) soxr_delete(soxr);
    }
};

Resampler::Resampler(int in_rate, int out_rate) : in_rate_(in_rate), out_rate_(out_rate) {
    check_rate(in_rate, "resampler input rate");
    check_rate(out_rate, "resampler output rate");
    impl_ = std::make_unique<Impl>();
    if (in_rate == out_rate) return;
    // python-soxr's settings: float32 interleaved in and out, quality recipe HQ, no flags.
    soxr_error_t err = nullptr;
    soxr_io_spec_t io = soxr_io_spec(SOXR_FLOAT32_I, SOXR_FLOAT32_I);
    soxr_quality_spec_t quality = soxr_quality_spec(SOXR_HQ, 0);
    impl_->soxr = soxr_create(in_rate, out_rate, 1, &err, &io, &quality, nullptr);
    PK_CHECK(err == nullptr && impl_->soxr != nullptr, kInternal,
             "cannot create resampler {} -> {} Hz: {}", in_rate, out_rate, err ? err : "?");
}

Resampler::~Resampler() = default;
Resampler::Resampler(Resampler&&) noexcept = default;
Resampler& Resampler::operator=(Resampler&&) noexcept = default;

std::vector<float> Resampler::process(const float* in, size_t n) {
    PK_CHECK(impl_ != nullptr, kInternal, "use of a moved-from Resampler");
    if (impl_->soxr == nullptr) return std::vector<float>(in, in + n);
    std::vector<float> out;
    if (n == 0) return out;
    const double ratio = static_cast<double>(out_rate_) / in_rate_;
    std::vector<float> buf(static_cast<size_t>(std::ceil(n * ratio + soxr_delay(impl_->soxr))) +
                           64);
    while (n > 0) {
        size_t idone = 0, odone = 0;
        soxr_error_t err = soxr_process(impl_->soxr, in, n, &idone, buf.data(), buf.size(), &odone);
        PK_CHECK(err == nullptr, kInternal, "resampler failed: {}", err);
        out.insert(out.end(), buf.begin(), buf.begin() + odone);
        in += idone;
        n -= idone;
        PK_CHECK(idone > 0 || odone > 0, kInternal, "resampler made no progress");
    }
    return out;
}

std::vector<float> Resampler::flush() {
    PK_CHECK(impl_ != nullptr, kInternal, "use of a moved-from Resampler");
    std::vector<float> out;
    if (impl_->soxr == nullptr) return out;
    std::vector<float> buf(4096);
    for (;;) {
        size_t odone = 0;
        soxr_error_t err =
            soxr_process(impl_->soxr, nullptr, 0, nullptr, buf.data(), buf.size(), &odone);
        PK_CHECK(err == nullptr, kInternal, "resampler failed: {}", err);
        if (odone == 0) break;
        out.insert(out.end(), buf.begin(), buf.begin() + odone);
    }
    reset();
    return out;
}

void Resampler::reset() {
    PK_CHECK(impl_ != nullptr, kInternal, "use of a moved-from Resampler");
    if (impl_->soxr == nullptr) return;
    soxr_error_t err = soxr_clear(impl_->soxr);
    PK_CHECK(err == nullptr, kInternal, "resampler reset failed: {}", err);
}

double Resampler::delay() const { return impl_ && impl_->soxr ? soxr_delay(impl_->soxr) : 0.0; }

std::vector<float> resample(const std::vector<float>& in, int in_rate, int out_rate) {
    check_rate(in_rate, "resample input rate");
    check_rate(out_rate, "resample output rate");
    if (in_rate == out_rate) return in;
    Resampler resampler(in_rate, out_rate);
    std::vector<float> out = resampler.process(in);
    std::vector<float> tail = resampler.flush();
    out.insert(out.end(), tail.begin(), tail.end());
    // librosa.resample(fix=True) trims or zero-pads to int(np.ceil(n * (out / in))), in float64.
    const double ratio = static_cast<double>(out_rate) / static_cast<double>(in_rate);
    out.resize(static_cast<size_t>(std::ceil(static_cast<double>(in.size()) * ratio)), 0.0f);
    return out;
}

}  // namespace parakeet
