#include "io/audio.h"

#include <gtest/gtest.h>
#include <sndfile.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <numbers>
#include <sstream>

#include "core/error.h"

namespace parakeet {
namespace {

namespace fs = std::filesystem;

const std::string kData = PARAKEET_TEST_DATA_DIR;

class AudioTest : public ::testing::Test {
protected:
    void SetUp() override {
        const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
        dir_ = fs::temp_directory_path() / fmt::format("pk_audio_{}_{}", ::getpid(), info->name());
        fs::remove_all(dir_);
        fs::create_directories(dir_);
    }
    void TearDown() override { fs::remove_all(dir_); }

    std::string path(const std::string& name) const { return (dir_ / name).string(); }

    // Writes interleaved samples with libsndfile; returns false when the format cannot be written.
    template <typename T>
    bool write(const std::string& file, int format, int rate, int channels,
               const std::vector<T>& interleaved) const {
        SF_INFO info{};
        info.samplerate = rate;
        info.channels = channels;
        info.format = format;
        SNDFILE* sf = sf_open(file.c_str(), SFM_WRITE, &info);
        if (sf == nullptr) return false;
        const sf_count_t frames = static_cast<sf_count_t>(interleaved.size() / channels);
        sf_count_t written = 0;
        if constexpr (std::is_same_v<T, int16_t>)
            written = sf_writef_short(sf, interleaved.data(), frames);
        if constexpr (std::is_same_v<T, int32_t>)
            written = sf_writef_int(sf, interleaved.data(), frames);
        if constexpr (std::is_same_v<T, float>)
            written = sf_writef_float(sf, interleaved.data(), frames);
        if constexpr (std::is_same_v<T, double>)
            written = sf_writef_double(sf, interleaved.data(), frames);
        sf_close(sf);
        return written == frames;
    }

    fs::path dir_;
};

std::vector<float> sine(double freq, int rate, size_t n, double amp = 0.5) {
    std::vector<float> out(n);
    for (size_t i = 0; i < n; ++i) {
        out[i] = static_cast<float>(amp * std::sin(2.0 * std::numbers::pi * freq * i / rate));
    }
    return out;
}

// Frequency from upward zero crossings over samples [begin, end).
double zero_crossing_freq(const std::vector<float>& x, int rate, size_t begin, size_t end) {
    std::vector<double> crossings;
    for (size_t i = begin + 1; i < end; ++i) {
        if (x[i - 1] < 0.0f && x[i] >= 0.0f) {
            crossings.push_back(i - 1 + x[i - 1] / (x[i - 1] - x[i]));  // linear interpolation
        }
    }
    if (crossings.size() < 2) return 0.0;
    return (crossings.size() - 1) * rate / (crossings.back() - crossings.front());
}

double rms(const std::vector<float>& x, size_t begin, size_t end) {
    double s = 0;
    for (size_t i = begin; i < end; ++i) s += double{x[i]} * x[i];
    return std::sqrt(s / (end - begin));
}

void expect_error(ErrorCode code, const std::string& needle, const std::function<void()>& fn) {
    try {
        fn();
        ADD_FAILURE() << "expected an error containing '" << needle << "'";
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), code) << e.what();
        EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
        EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos)
            << "multi-line: " << e.what();
    }
}

TEST_F(AudioTest, Pcm16MonoIsScaledByOneOver32768Exactly) {
    std::vector<int16_t> pcm = {0, 1, -1, 32767, -32768, 16384, -16384, 12345};
    for (float v : sine(440, 16000, 1600))
        pcm.push_back(static_cast<int16_t>(std::lrint(v * 32767)));
    const std::string file = path("pcm16.wav");
    ASSERT_TRUE(write(file, SF_FORMAT_WAV | SF_FORMAT_PCM_16, 16000, 1, pcm));

    AudioInfo info;
    std::vector<float> x = load_audio(file, 16000, &info);
    ASSERT_EQ(x.size(), pcm.size());
    for (size_t i = 0; i < pcm.size(); ++i) ASSERT_EQ(x[i], pcm[i] / 32768.0f) << "sample " << i;
    EXPECT_EQ(x[3], 32767.0f / 32768.0f);
    EXPECT_EQ(x[4], -1.0f);
    EXPECT_EQ(info.sample_rate, 16000);
    EXPECT_EQ(info.channels, 1);
    EXPECT_EQ(info.frames, static_cast<int64_t>(pcm.size()));
    EXPECT_EQ(info.format, "WAV (Microsoft), Signed 16 bit PCM");
    EXPECT_DOUBLE_EQ(info.duration_s, pcm.size() / 16000.0);
}

TEST_F(AudioTest, EightBitUnsignedAndSignedScaleBy128) {
    std::vector<int32_t> pcm;
    for (int v = -128; v <= 127; ++v) pcm.push_back(v * (1 << 24));
    const std::string wav = path("u8.wav");  // WAV 8-bit is unsigned
    ASSERT_TRUE(write(wav, SF_FORMAT_WAV | SF_FORMAT_PCM_U8, 16000, 1, pcm));
    const std::string aiff = path("s8.aiff");
    ASSERT_TRUE(write(aiff, SF_FORMAT_AIFF | SF_FORMAT_PCM_S8, 16000, 1, pcm));
    for (const std::string& file : {wav, aiff}) {
        std::vector<float> x = load_audio(file, 16000);
        ASSERT_EQ(x.size(), pcm.size());
        for (size_t i = 0; i < x.size(); ++i) {
            ASSERT_EQ(x[i], (static_cast<int>(i) - 128) / 128.0f) << file << " sample " << i;
        }
    }
}

TEST_F(AudioTest, TwentyFourBitScalesByTwoToMinus23) {
    std::vector<int32_t> pcm = {0, 1, -1, (1 << 23) - 1, -(1 << 23), 1234567, -7654321};
    std::vector<int32_t> shifted;
    for (int32_t v : pcm) shifted.push_back(v * 256);  // sf_writef_int takes 32-bit full scale
    for (int format : {SF_FORMAT_WAV | SF_FORMAT_PCM_24, SF_FORMAT_FLAC | SF_FORMAT_PCM_24}) {
        const std::string file = path(format & SF_FORMAT_FLAC ? "s24.flac" : "s24.wav");
        ASSERT_TRUE(write(file, format, 16000, 1, shifted));
        std::vector<float> x = load_audio(file, 16000);
        ASSERT_EQ(x.size(), pcm.size());
        for (size_t i = 0; i < x.size(); ++i) {
            ASSERT_EQ(x[i], static_cast<float>(pcm[i]) / 8388608.0f) << file << " sample " << i;
        }
    }
}

TEST_F(AudioTest, ThirtyTwoBitScalesByTwoToMinus31) {
    std::vector<int32_t> pcm = {0, 1, -1, 2147483647, -2147483647 - 1, 123456789, -987654321};
    const std::string file = path("s32.wav");
    ASSERT_TRUE(write(file, SF_FORMAT_WAV | SF_FORMAT_PCM_32, 16000, 1, pcm));
    std::vector<float> x = load_audio(file, 16000);
    ASSERT_EQ(x.size(), pcm.size());
    for (size_t i = 0; i < x.size(); ++i) {
        ASSERT_EQ(x[i], static_cast<float>(pcm[i]) * (1.0f / 2147483648.0f)) << "sample " << i;
    }
}

TEST_F(AudioTest, FloatAndDoubleFilesPassThrough) {
    std::vector<float> f = {0.0f, 0.25f, -0.5f, 1.5f, -1.25f, 1e-7f};
    const std::string f32 = path("f32.wav");
    ASSERT_TRUE(write(f32, SF_FORMAT_WAV | SF_FORMAT_FLOAT, 16000, 1, f));
    EXPECT_EQ(load_audio(f32, 16000), f);

    std::vector<double> d = {0.1, -0.3, 0.7};
    const std::string f64 = path("f64.wav");
    ASSERT_TRUE(write(f64, SF_FORMAT_WAV | SF_FORMAT_DOUBLE, 16000, 1, d));
    std::vector<float> x = load_audio(f64, 16000);
    ASSERT_EQ(x.size(), d.size());
    for (size_t i = 0; i < d.size(); ++i) EXPECT_EQ(x[i], static_cast<float>(d[i]));
}

TEST_F(AudioTest, ChannelsAreAveraged) {
    std::vector<float> stereo = {0.5f, 0.25f, -1.0f, 1.0f, 0.1f, 0.3f};
    const std::string file2 = path("stereo.wav");
    ASSERT_TRUE(write(file2, SF_FORMAT_WAV | SF_FORMAT_FLOAT, 16000, 2, stereo));
    AudioInfo info;
    std::vector<float> x = load_audio(file2, 16000, &info);
    EXPECT_EQ(info.channels, 2);
    EXPECT_EQ(info.frames, 3);
    ASSERT_EQ(x.size(), 3u);
    EXPECT_EQ(x[0], (0.5f + 0.25f) / 2.0f);
    EXPECT_EQ(x[1], 0.0f);
    EXPECT_EQ(x[2], (0.1f + 0.3f) / 2.0f);

    std::vector<int16_t> three = {3000, 6000, 9000, -300, 0, 300};
    const std::string file3 = path("three.wav");
    ASSERT_TRUE(write(file3, SF_FORMAT_WAV | SF_FORMAT_PCM_16, 16000, 3, three));
    std::vector<float> y = load_audio(file3, 16000);
    ASSERT_EQ(y.size(), 2u);
    EXPECT_EQ(y[0], (3000 / 32768.0f + 6000 / 32768.0f + 9000 / 32768.0f) / 3.0f);
    EXPECT_EQ(y[1], (-300 / 32768.0f + 0.0f + 300 / 32768.0f) / 3.0f);
}

TEST_F(AudioTest, Stereo44kFloatResamplesTo16kMono) {
    const int rate = 44100;
    const size_t n = 44100 + 1234;
    std::vector<float> left = sine(440, rate, n, 0.5), right = sine(440, rate, n, 0.25);
    std::vector<float> stereo;
    for (size_t i = 0; i < n; ++i) {
        stereo.push_back(left[i]);
        stereo.push_back(right[i]);
    }
    const std::string file = path("stereo44k.wav");
    ASSERT_TRUE(write(file, SF_FORMAT_WAV | SF_FORMAT_FLOAT, rate, 2, stereo));
    AudioInfo info;
    std::vector<float> x = load_audio(file, 16000, &info);
    EXPECT_EQ(info.sample_rate, 44100);
    EXPECT_EQ(info.frames, static_cast<int64_t>(n));
    // librosa's length: ceil(n * 16000 / 44100), within 1 of round().
    const double exact = n * 16000.0 / 44100.0;
    EXPECT_EQ(x.size(), static_cast<size_t>(std::ceil(exact)));
    EXPECT_LE(std::abs(static_cast<double>(x.size()) - std::round(exact)), 1.0);
    // Away from the filter's edges: same frequency, amplitude of the average (0.375).
    const size_t begin = 800, end = x.size() - 800;
    EXPECT_NEAR(zero_crossing_freq(x, 16000, begin, end), 440.0, 0.5);
    EXPECT_NEAR(rms(x, begin, end), 0.375 / std::sqrt(2.0), 0.002);
}

TEST_F(AudioTest, UpsamplingPreservesFrequency) {
    const std::vector<float> x = sine(1000, 8000, 8000);
    const std::string file = path("8k.wav");
    ASSERT_TRUE(write(file, SF_FORMAT_WAV | SF_FORMAT_FLOAT, 8000, 1, x));
    std::vector<float> y = load_audio(file, 16000);
    ASSERT_EQ(y.size(), 16000u);
    EXPECT_NEAR(zero_crossing_freq(y, 16000, 500, 15500), 1000.0, 0.5);
    EXPECT_NEAR(rms(y, 500, 15500), 0.5 / std::sqrt(2.0), 0.002);
}

TEST_F(AudioTest, FlacIsLossless) {
    std::vector<int16_t> pcm;
    for (float v : sine(300, 16000, 4000, 0.9))
        pcm.push_back(static_cast<int16_t>(std::lrint(v * 32767)));
    pcm.push_back(-32768);
    const std::string file = path("pcm16.flac");
    ASSERT_TRUE(write(file, SF_FORMAT_FLAC | SF_FORMAT_PCM_16, 16000, 1, pcm));
    AudioInfo info;
    std::vector<float> x = load_audio(file, 16000, &info);
    EXPECT_EQ(info.format, "FLAC (Free Lossless Audio Codec), Signed 16 bit PCM");
    ASSERT_EQ(x.size(), pcm.size());
    for (size_t i = 0; i < x.size(); ++i) ASSERT_EQ(x[i], pcm[i] / 32768.0f) << "sample " << i;
}

TEST_F(AudioTest, OggVorbisDecodes) {
    const std::vector<float> src = sine(440, 16000, 16000, 0.5);
    const std::string file = path("sine.ogg");
    ASSERT_TRUE(write(file, SF_FORMAT_OGG | SF_FORMAT_VORBIS, 16000, 1, src));
    AudioInfo info;
    std::vector<float> x = load_audio(file, 16000, &info);
    EXPECT_EQ(info.format, "OGG (OGG Container format), Vorbis");
    ASSERT_EQ(x.size(), src.size());
    EXPECT_NEAR(zero_crossing_freq(x, 16000, 1000, 15000), 440.0, 0.5);
    EXPECT_NEAR(rms(x, 1000, 15000), rms(src, 1000, 15000), 0.01);
}

TEST_F(AudioTest, Mp3DecodesThroughLibsndfile) {
    // Debian's libsndfile 1.2 decodes MPEG layer I/II/III with mpg123 and encodes layer III with
    // LAME.
    const std::vector<float> src = sine(440, 16000, 32000, 0.5);
    const std::string file = path("sine.mp3");
    if (!write(file, SF_FORMAT_MPEG | SF_FORMAT_MPEG_LAYER_III, 16000, 1, src)) {
        GTEST_SKIP() << "this libsndfile cannot write MP3";
    }
    AudioInfo info;
    std::vector<float> x = load_audio(file, 16000, &info);
    EXPECT_EQ(info.format, "MPEG-1/2 Audio, MPEG Layer III");
    // Encoder delay and frame padding may change the length slightly.
    EXPECT_NEAR(static_cast<double>(x.size()), 32000.0, 1200.0);
    EXPECT_NEAR(zero_crossing_freq(x, 16000, 3000, x.size() - 3000), 440.0, 1.0);
    EXPECT_NEAR(rms(x, 3000, x.size() - 3000), 0.5 / std::sqrt(2.0), 0.03);
}

TEST_F(AudioTest, EmptyAndOneSampleFiles) {
    const std::string empty = path("no_samples.wav");
    ASSERT_TRUE(write(empty, SF_FORMAT_WAV | SF_FORMAT_PCM_16, 16000, 1, std::vector<int16_t>{}));
    AudioInfo info;
    EXPECT_TRUE(load_audio(empty, 16000, &info).empty());
    EXPECT_EQ(info.frames, 0);
    EXPECT_TRUE(load_audio(empty, 8000).empty());

    const std::string one = path("one.wav");
    ASSERT_TRUE(
        write(one, SF_FORMAT_WAV | SF_FORMAT_PCM_16, 16000, 1, std::vector<int16_t>{-16384}));
    EXPECT_EQ(load_audio(one, 16000), std::vector<float>{-0.5f});
    EXPECT_EQ(load_audio(one, 48000).size(), 3u);  // ceil(1 * 3)
}

TEST_F(AudioTest, TruncatedWavReadsWhatIsThere) {
    std::vector<int16_t> pcm(1000);
    for (size_t i = 0; i < pcm.size(); ++i) pcm[i] = static_cast<int16_t>(i * 7 - 3000);
    const std::string file = path("truncated.wav");
    ASSERT_TRUE(write(file, SF_FORMAT_WAV | SF_FORMAT_PCM_16, 16000, 1, pcm));
    const auto full = fs::file_size(file);
    fs::resize_file(file, full - 2 * 400 - 1);  // 400 whole frames and one byte of another
    AudioInfo info;
    std::vector<float> x = load_audio(file, 16000, &info);
    ASSERT_EQ(x.size(), 599u);
    EXPECT_EQ(info.frames, 599);
    for (size_t i = 0; i < x.size(); ++i) ASSERT_EQ(x[i], pcm[i] / 32768.0f);
}

TEST_F(AudioTest, NanOrInfSamplesThrow) {
    const std::string nan_file = path("nan.wav");
    ASSERT_TRUE(write(nan_file, SF_FORMAT_WAV | SF_FORMAT_FLOAT, 16000, 1,
                      std::vector<float>{0.0f, 0.5f, std::nanf(""), 0.1f}));
    expect_error(ErrorCode::kFormat, "audio contains NaN or Inf samples",
                 [&] { load_audio(nan_file, 16000); });
    const std::string inf_file = path("inf.wav");
    ASSERT_TRUE(write(inf_file, SF_FORMAT_WAV | SF_FORMAT_FLOAT, 16000, 1,
                      std::vector<float>{0.0f, -INFINITY}));
    expect_error(ErrorCode::kFormat, "inf.wav", [&] { load_audio(inf_file, 16000); });
}

TEST_F(AudioTest, BadFilesThrowOneLineErrorsNamingTheFile) {
    expect_error(ErrorCode::kIo, "missing.wav", [&] { load_audio(path("missing.wav"), 16000); });
    expect_error(ErrorCode::kIo, "is a directory", [&] { load_audio(dir_.string(), 16000); });

    const std::string empty = path("zero_bytes.wav");
    std::ofstream(empty).close();
    expect_error(ErrorCode::kFormat, "zero_bytes.wav", [&] { load_audio(empty, 16000); });

    const std::string garbage = path("garbage.wav");
    {
        std::ofstream out(garbage, std::ios::binary);
        for (int i = 0; i < 4096; ++i) out.put(static_cast<char>((i * 7919 + 13) & 0xFF));
    }
    expect_error(ErrorCode::kFormat, "garbage.wav", [&] { load_audio(garbage, 16000); });

    // A RIFF header cut inside the fmt chunk.
    std::vector<int16_t> pcm(100, 1000);
    const std::string cut = path("cut_header.wav");
    ASSERT_TRUE(write(cut, SF_FORMAT_WAV | SF_FORMAT_PCM_16, 16000, 1, pcm));
    fs::resize_file(cut, 20);
    expect_error(ErrorCode::kFormat, "cut_header.wav", [&] { load_audio(cut, 16000); });

    std::vector<float> ok = {0.0f};
    const std::string good = path("good.wav");
    ASSERT_TRUE(write(good, SF_FORMAT_WAV | SF_FORMAT_FLOAT, 16000, 1, ok));
    expect_error(ErrorCode::kInvalidArgument, "rate", [&] { load_audio(good, 0); });
    expect_error(ErrorCode::kInvalidArgument, "rate", [&] { load_audio(good, -16000); });
}

TEST_F(AudioTest, TinyAClip0Loads) {
    AudioInfo info;
    std::vector<float> x = load_audio(kData + "/tiny-a/inputs/clip0.wav", 16000, &info);
    ASSERT_EQ(x.size(), 49600u);  // 3.1 s
    EXPECT_EQ(info.sample_rate, 16000);
    EXPECT_EQ(info.channels, 1);
    EXPECT_DOUBLE_EQ(info.duration_s, 3.1);
    float peak = 0.0f;
    for (float v : x) {
        ASSERT_GE(v, -1.0f);
        ASSERT_LT(v, 1.0f);
        ASSERT_EQ(v * 32768.0f, std::nearbyint(v * 32768.0f));
        peak = std::max(peak, std::abs(v));
    }
    EXPECT_GT(peak, 0.01f);
}

TEST_F(AudioTest, RealClipsLoad) {
    struct Clip {
        std::string file;
        size_t frames;
        std::string format;
    };
    const std::vector<Clip> clips = {
        {"clips/jfk.wav", 176000, "WAV (Microsoft), Signed 16 bit PCM"},
        {"clips/librispeech_dev-clean_1272-141231-0000.flac", 74400,
         "FLAC (Free Lossless Audio Codec), Signed 16 bit PCM"},
        {"clips/librispeech_dev-clean_1272-128104-0001.flac", 77040,
         "FLAC (Free Lossless Audio Codec), Signed 16 bit PCM"},
        {"tiny-a/inputs/clip3.wav", 66432, "WAV (Microsoft), Signed 16 bit PCM"},
    };
    for (const Clip& clip : clips) {
        AudioInfo info;
        std::vector<float> x = load_audio(kData + "/" + clip.file, 16000, &info);
        ASSERT_EQ(x.size(), clip.frames) << clip.file;
        EXPECT_EQ(info.format, clip.format) << clip.file;
        for (float v : x) ASSERT_EQ(v * 32768.0f, std::nearbyint(v * 32768.0f)) << clip.file;
        EXPECT_GT(rms(x, 0, x.size()), 0.005) << clip.file;

        // The same clip at 8 kHz: half as long, still speech-loud.
        std::vector<float> y = load_audio(kData + "/" + clip.file, 8000);
        EXPECT_EQ(y.size(), (clip.frames + 1) / 2) << clip.file;
    }
}

TEST(RawPcm, ParsesFormatNames) {
    EXPECT_EQ(parse_raw_format("s16le"), RawFormat::kS16LE);
    EXPECT_EQ(parse_raw_format("s32le"), RawFormat::kS32LE);
    EXPECT_EQ(parse_raw_format("f32le"), RawFormat::kF32LE);
    EXPECT_STREQ(raw_format_name(RawFormat::kS32LE), "s32le");
    expect_error(ErrorCode::kInvalidArgument, "expected s16le, s32le or f32le",
                 [] { parse_raw_format("s16be"); });
    expect_error(ErrorCode::kInvalidArgument, "''", [] { parse_raw_format(""); });
}

std::string le_bytes(const std::vector<int16_t>& v) {
    std::string out;
    for (int16_t s : v) {
        out.push_back(static_cast<char>(static_cast<uint16_t>(s) & 0xFF));
        out.push_back(static_cast<char>(static_cast<uint16_t>(s) >> 8));
    }
    return out;
}

TEST(RawPcm, S16leFromStream) {
    const std::vector<int16_t> pcm = {0, 1, -1, 32767, -32768, 1000};
    std::istringstream in(le_bytes(pcm));
    std::vector<float> x = read_raw_pcm(in, 16000, RawFormat::kS16LE, 1, 16000);
    ASSERT_EQ(x.size(), pcm.size());
    for (size_t i = 0; i < x.size(); ++i) EXPECT_EQ(x[i], pcm[i] / 32768.0f);

    std::istringstream stereo(le_bytes({1000, 3000, -32768, 32767}));
    EXPECT_EQ(read_raw_pcm(stereo, 16000, RawFormat::kS16LE, 2, 16000),
              (std::vector<float>{(1000 / 32768.0f + 3000 / 32768.0f) / 2.0f,
                                  (-1.0f + 32767 / 32768.0f) / 2.0f}));

    std::istringstream resampled(le_bytes(std::vector<int16_t>(48000, 100)));
    EXPECT_EQ(read_raw_pcm(resampled, 48000, RawFormat::kS16LE, 1, 16000).size(), 16000u);

    std::istringstream empty("");
    EXPECT_TRUE(read_raw_pcm(empty, 16000, RawFormat::kS16LE, 1, 16000).empty());
}

TEST(RawPcm, S32leAndF32le) {
    const std::vector<int32_t> ints = {0, -2147483647 - 1, 2147483647, 65536};
    std::string bytes;
    for (int32_t v : ints) {
        for (int b = 0; b < 4; ++b)
            bytes.push_back(static_cast<char>(static_cast<uint32_t>(v) >> (8 * b)));
    }
    std::istringstream in(bytes);
    std::vector<float> x = read_raw_pcm(in, 16000, RawFormat::kS32LE, 1, 16000);
    ASSERT_EQ(x.size(), 4u);
    EXPECT_EQ(x[0], 0.0f);
    EXPECT_EQ(x[1], -1.0f);
    EXPECT_EQ(x[2], 1.0f);  // 2147483647 rounds to 2^31 in float32, as libsndfile's read does
    EXPECT_EQ(x[3], 1.0f / 32768.0f);

    const std::vector<float> floats = {0.5f, -0.25f, 3.0f};
    std::istringstream fin(std::string(reinterpret_cast<const char*>(floats.data()), 12));
    EXPECT_EQ(read_raw_pcm(fin, 16000, RawFormat::kF32LE, 1, 16000), floats);

    const float bad[] = {0.0f, NAN};
    std::istringstream nan_in(std::string(reinterpret_cast<const char*>(bad), sizeof(bad)));
    expect_error(ErrorCode::kFormat, "NaN or Inf",
                 [&] { read_raw_pcm(nan_in, 16000, RawFormat::kF32LE, 1, 16000); });
}

TEST(RawPcm, Errors) {
    std::istringstream odd(std::string("\x01\x02\x03", 3));
    expect_error(ErrorCode::kFormat, "ends mid-frame",
                 [&] { read_raw_pcm(odd, 16000, RawFormat::kS16LE, 1, 16000); });
    std::istringstream in(le_bytes({1, 2}));
    expect_error(ErrorCode::kInvalidArgument, "rate",
                 [&] { read_raw_pcm(in, 0, RawFormat::kS16LE, 1, 16000); });
    expect_error(ErrorCode::kInvalidArgument, "rate",
                 [&] { read_raw_pcm(in, 16000, RawFormat::kS16LE, 1, -1); });
    expect_error(ErrorCode::kInvalidArgument, "channel",
                 [&] { read_raw_pcm(in, 16000, RawFormat::kS16LE, 0, 16000); });
}

TEST(RawPcm, IncrementalReaderMatchesWholeRead) {
    std::vector<int16_t> pcm(2000);
    for (size_t i = 0; i < pcm.size(); ++i) pcm[i] = static_cast<int16_t>(i * 37 - 15000);
    const std::string bytes = le_bytes(pcm);
    std::istringstream whole(bytes);
    const std::vector<float> expected = read_raw_pcm(whole, 16000, RawFormat::kS16LE, 2, 16000);
    ASSERT_EQ(expected.size(), 1000u);

    std::istringstream in(bytes);
    RawPcmReader reader(RawFormat::kS16LE, 2);
    std::vector<float> got;
    size_t calls = 0;
    while (size_t n = reader.read(in, got, 7)) {
        EXPECT_EQ(n, calls < 1000 / 7 ? 7u : 1000u % 7);
        ++calls;
    }
    EXPECT_EQ(got, expected);
    EXPECT_EQ(calls, 1000u / 7 + 1);
    EXPECT_EQ(reader.read(in, got, 7), 0u);

    // 2 whole stereo frames and half of a third: the frames come back, then the error.
    std::istringstream ragged(bytes.substr(0, 10));
    RawPcmReader ragged_reader(RawFormat::kS16LE, 2);
    std::vector<float> partial;
    EXPECT_EQ(ragged_reader.read(ragged, partial, 100), 2u);
    expect_error(ErrorCode::kFormat, "ends mid-frame",
                 [&] { ragged_reader.read(ragged, partial, 100); });
}

TEST(Resample, StreamingMatchesOneShot) {
    const std::vector<float> x = sine(523.25, 44100, 20000, 0.7);
    const std::vector<float> whole = resample(x, 44100, 16000);
    ASSERT_EQ(whole.size(), static_cast<size_t>(std::ceil(20000 * 16000.0 / 44100)));

    for (size_t chunk : {1u, 100u, 441u, 5000u}) {
        Resampler r(44100, 16000);
        std::vector<float> out;
        for (size_t i = 0; i < x.size(); i += chunk) {
            const size_t n = std::min(chunk, x.size() - i);
            std::vector<float> part = r.process(x.data() + i, n);
            out.insert(out.end(), part.begin(), part.end());
        }
        std::vector<float> tail = r.flush();
        out.insert(out.end(), tail.begin(), tail.end());
        EXPECT_EQ(out.size(), static_cast<size_t>(std::lround(20000 * 16000.0 / 44100))) << chunk;
        ASSERT_LE(out.size(), whole.size());
        for (size_t i = 0; i < out.size(); ++i)
            ASSERT_EQ(out[i], whole[i]) << "chunk " << chunk << " i " << i;
    }
}

TEST(Resample, ReuseAfterFlushAndEdgeCases) {
    const std::vector<float> x = sine(200, 16000, 3000);
    Resampler r(16000, 8000);
    std::vector<float> a = r.process(x), a_tail = r.flush();
    std::vector<float> b = r.process(x), b_tail = r.flush();
    a.insert(a.end(), a_tail.begin(), a_tail.end());
    b.insert(b.end(), b_tail.begin(), b_tail.end());
    EXPECT_EQ(a, b);
    EXPECT_EQ(a.size(), 1500u);

    Resampler same(16000, 16000);
    EXPECT_EQ(same.process(x), x);
    EXPECT_TRUE(same.flush().empty());
    EXPECT_EQ(resample(x, 16000, 16000), x);
    EXPECT_TRUE(resample({}, 44100, 16000).empty());

    r.process(x.data(), 100);
    EXPECT_GT(r.delay(), 0.0);
    r.reset();
    Resampler moved = std::move(r);
    EXPECT_EQ(moved.in_rate(), 16000);
    EXPECT_EQ(moved.process(x).size() + moved.flush().size(), 1500u);

    expect_error(ErrorCode::kInvalidArgument, "rate", [] { Resampler bad(0, 16000); });
    expect_error(ErrorCode::kInvalidArgument, "rate", [] { resample({1.0f}, 16000, -1); });
}

}  // namespace
}  // namespace parakeet
