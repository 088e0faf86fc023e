// The `parakeet` program end to end: outputs, and one clear line plus a non-zero exit for bad input.
#include <gtest/gtest.h>
#include <sndfile.h>
#include <sys/wait.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

namespace {

namespace fs = std::filesystem;
const std::string kCli = PARAKEET_CLI_PATH;
const std::string kData = PARAKEET_TEST_DATA_DIR;
const std::string kModel = kData + "/tiny-a/model/tiny-a.nemo";

struct Result {
    int code;
    std::string out, err;
};

Result run(const std::string& args, const std::string& stdin_file = "") {
    static int n = 0;
    const fs::path dir = fs::temp_directory_path() / ("pk_cli_" + std::to_string(getpid()));
    fs::create_directories(dir);
    const std::string out = (dir / ("out" + std::to_string(n))).string();
    const std::string err = (dir / ("err" + std::to_string(n++))).string();
    std::string cmd = kCli + " " + args + " >" + out + " 2>" + err;
    if (!stdin_file.empty()) cmd += " <" + stdin_file;
    const int status = std::system(cmd.c_str());
    auto slurp = [](const std::string& p) {
        std::ifstream in(p);
        return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    };
    return {WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), slurp(out), slurp(err)};
}

std::string temp_path(const std::string& name) {
    const fs::path dir = fs::temp_directory_path() / ("pk_cli_" + std::to_string(getpid()));
    fs::create_directories(dir);
    return (dir / name).string();
}

void write_wav(const std::string& path, const std::vector<float>& x, int rate) {
    SF_INFO info{};
    info.samplerate = rate;
    info.channels = 1;
    info.format = SF_FORMAT_WAV | SF_FORMAT_FLOAT;
    SNDFILE* f = sf_open(path.c_str(), SFM_WRITE, &info);
    ASSERT_NE(f, nullptr);
    sf_write_float(f, x.data(), static_cast<sf_count_t>(x.size()));
    sf_close(f);
}

// A failure is one line on stderr, starting with "parakeet: ", and a non-zero exit, never a signal.
void expect_clean_failure(const Result& r, const std::string& needle) {
    EXPECT_NE(r.code, 0);
    EXPECT_LT(r.code, 128) << "killed by a signal";
    EXPECT_EQ(r.err.rfind("parakeet: ", 0), 0u) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_NE(r.err.find(needle), std::string::npos) << r.err;
}

TEST(Cli, TranscribeTextMatchesNemo) {
    Result r = run("transcribe -m " + kModel + " " + kData + "/tiny-a/inputs/clip0.wav");
    EXPECT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(r.out, "uain justionr justionionainain justreis just d just qu rau\n");
}

TEST(Cli, TranscribeJsonHasTokensWordsAndTimes) {
    Result r = run("transcribe -m " + kModel + " --format json " + kData + "/tiny-a/inputs/clip0.wav");
    ASSERT_EQ(r.code, 0) << r.err;
    auto j = nlohmann::json::parse(r.out);
    EXPECT_EQ(j["text"], "uain justionr justionionainain justreis just d just qu rau");
    EXPECT_NEAR(j["duration"].get<double>(), 3.1, 1e-9);
    ASSERT_EQ(j["tokens"].size(), 19u);
    EXPECT_EQ(j["tokens"][1]["piece"], "ain");
    EXPECT_EQ(j["tokens"][1]["frame"], 4);
    EXPECT_EQ(j["tokens"][1]["duration"], 2);
    EXPECT_NEAR(j["tokens"][1]["start"].get<double>(), 0.32, 1e-9);
    EXPECT_NEAR(j["tokens"][1]["end"].get<double>(), 0.48, 1e-9);
    EXPECT_GT(j["tokens"][1]["confidence"].get<double>(), 0.0);
    EXPECT_LE(j["tokens"][1]["confidence"].get<double>(), 1.0);
    // Words: "uain" = ▁u + ain, starting at frame 0 and ending where "ain" ends (4 + 2 frames).
    ASSERT_GE(j["words"].size(), 1u);
    EXPECT_EQ(j["words"][0]["word"], "uain");
    EXPECT_NEAR(j["words"][0]["start"].get<double>(), 0.0, 1e-9);
    EXPECT_NEAR(j["words"][0]["end"].get<double>(), 0.48, 1e-9);
    for (size_t i = 1; i < j["words"].size(); ++i)
        EXPECT_GE(j["words"][i]["start"].get<double>(), j["words"][i - 1]["start"].get<double>());
}

TEST(Cli, SubtitlesAreWellFormed) {
    Result srt = run("transcribe -m " + kModel + " --format srt " + kData + "/tiny-a/inputs/clip0.wav");
    ASSERT_EQ(srt.code, 0) << srt.err;
    EXPECT_EQ(srt.out.rfind("1\n00:00:00,000 --> 00:00:0", 0), 0u) << srt.out;
    Result vtt = run("transcribe -m " + kModel + " --format vtt " + kData + "/tiny-a/inputs/clip0.wav");
    ASSERT_EQ(vtt.code, 0) << vtt.err;
    EXPECT_EQ(vtt.out.rfind("WEBVTT\n\n00:00:00.000 --> ", 0), 0u) << vtt.out;
}

TEST(Cli, SeveralFilesLoadTheModelOnce) {
    Result r = run("transcribe -m " + kModel + " " + kData + "/tiny-a/inputs/clip0.wav " + kData +
                   "/tiny-a/inputs/clip2.wav");
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_NE(r.out.find("clip0.wav: uain justionr"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("clip2.wav: to\n"), std::string::npos) << r.out;
}

TEST(Cli, RawPcmFromStdinEqualsTheWav) {
    // clip0.wav is 16 kHz PCM16 with a 44-byte header: the rest is s16le.
    std::ifstream in(kData + "/tiny-a/inputs/clip0.wav", std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const std::string raw = temp_path("clip0.raw");
    std::ofstream(raw, std::ios::binary) << bytes.substr(44);
    Result r = run("transcribe -m " + kModel + " --raw-rate 16000 --raw-format s16le -", raw);
    EXPECT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(r.out, "uain justionr justionionainain justreis just d just qu rau\n");
}

TEST(Cli, OtherRatesAndRealSpeechRunWithSaneTimestamps) {
    for (const char* clip : {"clips/jfk.wav", "clips/librispeech_dev-clean_1272-128104-0001.flac"}) {
        Result r = run("transcribe -m " + kModel + " --format json " + kData + "/" + clip);
        ASSERT_EQ(r.code, 0) << r.err;
        auto j = nlohmann::json::parse(r.out);
        const double dur = j["duration"].get<double>();
        EXPECT_GT(dur, 1.0);
        double prev = 0;
        for (const auto& t : j["tokens"]) {
            EXPECT_GE(t["start"].get<double>(), prev);
            EXPECT_LE(t["start"].get<double>(), dur + 0.08);
            EXPECT_FALSE(std::isnan(t["confidence"].get<double>()));
            prev = t["start"].get<double>();
        }
    }
    // 44.1 kHz stereo-free float file: resampled to 16 kHz.
    std::vector<float> x(44100 * 2);
    for (size_t i = 0; i < x.size(); ++i) x[i] = 0.3f * std::sin(2 * M_PI * 300 * i / 44100.0);
    const std::string wav = temp_path("tone44k.wav");
    write_wav(wav, x, 44100);
    Result r = run("transcribe -m " + kModel + " --format json " + wav);
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_NEAR(nlohmann::json::parse(r.out)["duration"].get<double>(), 2.0, 1e-3);
}

TEST(Cli, EmptyAndOneSampleAudioGiveEmptyText) {
    for (size_t n : {0, 1}) {
        const std::string wav = temp_path("tiny" + std::to_string(n) + ".wav");
        write_wav(wav, std::vector<float>(n, 0.1f), 16000);
        Result r = run("transcribe -m " + kModel + " " + wav);
        EXPECT_EQ(r.code, 0) << r.err;
        EXPECT_EQ(r.out, "\n");
    }
}

TEST(Cli, BadInputFailsWithOneLine) {
    expect_clean_failure(run("transcribe -m /nonexistent.nemo " + kData + "/tiny-a/inputs/clip0.wav"),
                         "/nonexistent.nemo");
    expect_clean_failure(run("transcribe -m " + kModel + " /nonexistent.wav"), "/nonexistent.wav");
    expect_clean_failure(run("transcribe -m " + kModel + " " + kData), kData);
    expect_clean_failure(run("transcribe -m " + kData + " " + kData + "/tiny-a/inputs/clip0.wav"), kData);
    expect_clean_failure(run("transcribe -m " + kModel + " --format xml " + kData + "/tiny-a/inputs/clip0.wav"),
                         "--format");
    expect_clean_failure(run("transcribe -m " + kModel + " --threads x " + kData + "/tiny-a/inputs/clip0.wav"),
                         "threads");
    expect_clean_failure(run("transcribe -m " + kModel + " --device tpu " + kData + "/tiny-a/inputs/clip0.wav"),
                         "device");
    expect_clean_failure(run("transcribe -m " + kModel + " --raw-format s8 -", "/dev/null"), "s8");
    expect_clean_failure(run("frobnicate"), "frobnicate");
    expect_clean_failure(run(""), "subcommand");

    std::mt19937 rng(42);
    std::string noise(4096, '\0');
    for (char& c : noise) c = static_cast<char>(rng());
    const std::string junk = temp_path("junk.wav");
    std::ofstream(junk, std::ios::binary) << noise;
    expect_clean_failure(run("transcribe -m " + kModel + " " + junk), "junk.wav");
    expect_clean_failure(run("transcribe -m " + junk + " " + kData + "/tiny-a/inputs/clip0.wav"), "junk.wav");
    expect_clean_failure(run("inspect -m " + junk), "junk.wav");

    std::ifstream in(kModel, std::ios::binary);
    std::string model((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const std::string cut = temp_path("cut.nemo");
    std::ofstream(cut, std::ios::binary) << model.substr(0, model.size() / 2);
    expect_clean_failure(run("transcribe -m " + cut + " " + kData + "/tiny-a/inputs/clip0.wav"), "cut.nemo");

    std::vector<float> nan_audio(16000, 0.f);
    nan_audio[100] = NAN;
    const std::string nan_wav = temp_path("nan.wav");
    write_wav(nan_wav, nan_audio, 16000);
    expect_clean_failure(run("transcribe -m " + kModel + " " + nan_wav), "NaN");
}

TEST(Cli, InspectJson) {
    Result r = run("inspect -m " + kModel + " --json");
    ASSERT_EQ(r.code, 0) << r.err;
    auto j = nlohmann::json::parse(r.out);
    EXPECT_TRUE(j["supported"].get<bool>());
    EXPECT_EQ(j["parameters"], 260214);
    EXPECT_EQ(j["vocab_size"], 128);
    EXPECT_EQ(j["blank_id"], 128);
    EXPECT_EQ(j["decoding"]["durations"], nlohmann::json::array({0, 1, 2, 3, 4}));
    EXPECT_EQ(j["encoder"]["n_layers"], 2);
    EXPECT_EQ(j["tensor_count"], 83);
    EXPECT_EQ(j["tensors"][0]["name"], "preprocessor.featurizer.window");
    EXPECT_EQ(j["tensors"][0]["dtype"], "float32");
    EXPECT_EQ(j["tensors"][0]["shape"], nlohmann::json::array({400}));
    EXPECT_TRUE(j["weights_mapped"].get<bool>());
}

TEST(Cli, InspectVariantsReportTorchParameterCounts) {
    for (const char* v : {"v-bias", "v-lstm2", "v-rnnt", "v-sub", "v-causal"}) {
        const std::string dir = kData + "/variants/" + v;
        Result r = run("inspect -m " + dir + "/model.nemo --json");
        ASSERT_EQ(r.code, 0) << r.err;
        auto j = nlohmann::json::parse(r.out);
        std::ifstream in(dir + "/tensors.json");
        auto ref = nlohmann::json::parse(in);
        EXPECT_TRUE(j["supported"].get<bool>()) << v << ": " << j["unsupported_reason"];
        EXPECT_EQ(j["parameters"], ref["parameters"]) << v;
        EXPECT_EQ(j["tensor_count"], ref["num_tensors"]) << v;
    }
}

}  // namespace
