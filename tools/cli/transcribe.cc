#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "io/audio.h"
#include "io/npy.h"
#include "runtime/transcriber.h"

namespace parakeet::cli {

namespace {

struct TranscribeArgs {
    std::string model;
    std::vector<std::string> audio;
    std::string format = "text";
    int threads = 0;
    std::string device = "cpu";
    std::string precision = "fp32";
    std::string dump_dir;
    std::string frontend = "nemo25";
    int raw_rate = 16000;
    std::string raw_format = "s16le";
    int raw_channels = 1;
    int full_context_max_frames = 18000;
    int local_window = 128;
};

std::string timestamp(double s, char sep) {
    const int64_t ms = static_cast<int64_t>(std::llround(s * 1000));
    return fmt::format("{:02}:{:02}:{:02}{}{:03}", ms / 3600000, ms / 60000 % 60, ms / 1000 % 60, sep, ms % 1000);
}

// Subtitle cues: words grouped until a sentence end (. ? !), 7 s, or 42 characters.
struct Cue {
    double start, end;
    std::string text;
};
std::vector<Cue> make_cues(const std::vector<Word>& words) {
    std::vector<Cue> cues;
    for (const Word& w : words) {
        if (cues.empty() || w.end - cues.back().start > 7.0 || cues.back().text.size() + w.word.size() > 42 ||
            std::string(".?!").find(cues.back().text.back()) != std::string::npos) {
            cues.push_back({w.start, w.end, w.word});
        } else {
            cues.back().text += " " + w.word;
            cues.back().end = w.end;
        }
    }
    for (Cue& c : cues)
        if (c.end <= c.start) c.end = c.start + 0.08;
    return cues;
}

nlohmann::ordered_json to_json(const std::string& path, const Transcript& t) {
    nlohmann::ordered_json j;
    j["audio"] = path;
    j["text"] = t.text;
    j["duration"] = t.duration;
    auto& tokens = j["tokens"] = nlohmann::ordered_json::array();
    for (const TimedToken& tk : t.tokens)
        tokens.push_back({{"id", tk.id},
                          {"piece", tk.piece},
                          {"frame", tk.frame},
                          {"duration", tk.duration},
                          {"start", tk.start},
                          {"end", tk.end},
                          {"confidence", tk.confidence}});
    auto& words = j["words"] = nlohmann::ordered_json::array();
    for (const Word& w : t.words) words.push_back({{"word", w.word}, {"start", w.start}, {"end", w.end}});
    return j;
}

void run_transcribe(const TranscribeArgs& a) {
    PK_CHECK(a.format == "text" || a.format == "json" || a.format == "srt" || a.format == "vtt", kInvalidArgument,
             "bad --format '{}' (expected text, json, srt or vtt)", a.format);
    PK_CHECK(a.frontend == "nemo25" || a.frontend == "nemo24", kInvalidArgument,
             "bad --frontend '{}' (expected nemo25 or nemo24)", a.frontend);
    const RawFormat raw_format = parse_raw_format(a.raw_format);
    PK_CHECK(a.raw_rate > 0 && a.raw_rate <= 768000, kInvalidArgument, "bad --raw-rate {}", a.raw_rate);
    PK_CHECK(a.raw_channels > 0 && a.raw_channels <= 64, kInvalidArgument, "bad --raw-channels {}", a.raw_channels);
    const Device device = Device::parse(a.device);
    const Precision precision = parse_precision(a.precision);
    const int threads = a.threads > 0 ? a.threads : static_cast<int>(std::max(1L, sysconf(_SC_NPROCESSORS_ONLN)));
    ModelOptions mopt;
    mopt.frontend = a.frontend == "nemo24" ? FrontendVersion::kNemo24 : FrontendVersion::kNemo25;
    auto model = Model::load(a.model, mopt);
    PK_CHECK(model->tokenizer() != nullptr, kUnsupported, "{}: the model has no tokenizer", a.model);
    DeviceRunner runner(model, device, precision, threads);
    const int rate = model->config().preprocessor.sample_rate;
    const bool many = a.audio.size() > 1;
    for (const std::string& path : a.audio) {
        std::vector<float> samples = path == "-" ? read_raw_pcm(std::cin, a.raw_rate, raw_format, a.raw_channels, rate)
                                                 : load_audio(path, rate);
        TranscribeOptions topt;
        topt.full_context_max_frames = a.full_context_max_frames;
        topt.local_window = a.local_window;
        std::string dump_dir = a.dump_dir;
        if (!dump_dir.empty()) {
            if (many) dump_dir += "/" + std::filesystem::path(path).stem().string();
            std::filesystem::create_directories(dump_dir);
            topt.sink = [dump_dir](const std::string& name, const Tensor& t) {
                write_npy(dump_dir + "/" + name + ".npy", t);
            };
        }
        std::vector<std::vector<float>> batch{std::move(samples)};
        const bool progress = isatty(STDERR_FILENO) && batch[0].size() > static_cast<size_t>(rate) * 60;
        if (progress) std::fprintf(stderr, "\r%s: transcribing %.1f s of audio...", path.c_str(),
                                   static_cast<double>(batch[0].size()) / rate);
        Transcript t = transcribe(*model, runner, batch, topt)[0];
        if (progress) std::fprintf(stderr, "\r%s: done in %.1f s%30s\n", path.c_str(),
                                   t.frontend_seconds + t.encoder_seconds + t.decoder_seconds, "");
        if (a.format == "text") {
            std::cout << (many ? path + ": " : "") << t.text << "\n";
        } else if (a.format == "json") {
            std::cout << to_json(path, t).dump() << "\n";
        } else {
            const bool vtt = a.format == "vtt";
            if (vtt) std::cout << "WEBVTT\n\n";
            int n = 0;
            for (const Cue& c : make_cues(t.words)) {
                if (!vtt) std::cout << ++n << "\n";
                std::cout << timestamp(c.start, vtt ? '.' : ',') << " --> " << timestamp(c.end, vtt ? '.' : ',') << "\n"
                          << c.text << "\n\n";
            }
        }
        std::cout.flush();
    }
}

}  // namespace

void add_transcribe(CLI::App& app) {
    auto a = std::make_shared<TranscribeArgs>();
    CLI::App* sub = app.add_subcommand("transcribe", "Transcribe audio files offline");
    sub->add_option("-m,--model", a->model, "NeMo checkpoint (.nemo)")->required();
    sub->add_option("audio", a->audio, "Audio files (WAV, FLAC, OGG, MP3, ...); - reads raw PCM from stdin")
        ->required();
    sub->add_option("--format", a->format, "Output: text, json, srt or vtt");
    sub->add_option("--threads", a->threads, "CPU threads (default: all cores)");
    sub->add_option("--device", a->device, "cpu or cuda[:N]");
    sub->add_option("--precision", a->precision, "fp32, tf32, fp16 or bf16 (GPU; the CPU computes in fp32)");
    sub->add_option("--dump-dir", a->dump_dir, "Write intermediate tensors as .npy (NeMo golden names)");
    sub->add_option("--frontend", a->frontend, "nemo25 (NeMo >= 2.5, default) or nemo24 (older edge padding)");
    sub->add_option("--raw-rate", a->raw_rate, "Sample rate of raw PCM on stdin");
    sub->add_option("--raw-format", a->raw_format, "Raw PCM format: s16le, s32le or f32le");
    sub->add_option("--raw-channels", a->raw_channels, "Channels of raw PCM on stdin");
    sub->add_option("--full-context-max-frames", a->full_context_max_frames,
                    "Longest input (encoder frames) with full attention; longer uses local attention (-1: never)");
    sub->add_option("--local-window", a->local_window, "Local attention frames each side for long audio");
    sub->callback([a] { run_transcribe(*a); });
}

}  // namespace parakeet::cli
