// parakeet stream: streaming recognition of a file or of raw PCM on stdin, one JSON line per event.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <thread>

#include "commands.h"
#include "core/error.h"
#include "io/audio.h"
#include "parakeet/parakeet.hpp"

namespace parakeet::cli {

namespace {

struct StreamArgs {
    RecognizerConfig cfg;
    std::string audio;
    bool realtime = false;
    double feed_ms = 20;
    int raw_rate = 16000;
    std::string raw_format = "s16le";
    int raw_channels = 1;
    std::string preset;
};

double now_s() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

void run_stream(StreamArgs& a) {
    if (!a.preset.empty()) {
        PK_CHECK(a.preset == "10-2-2" || a.preset == "low-latency", kInvalidArgument,
                 "bad --preset '{}' (expected 10-2-2 or low-latency)", a.preset);
        a.cfg.mode = "windowed";
        if (a.preset == "10-2-2") {
            a.cfg.left_secs = 10, a.cfg.chunk_secs = 2, a.cfg.right_secs = 2;
        } else {
            a.cfg.left_secs = 5, a.cfg.chunk_secs = 0.32, a.cfg.right_secs = 0.32;
        }
    }
    const RawFormat raw_format = parse_raw_format(a.raw_format);
    auto rec = Recognizer::create(a.cfg);
    auto stream = rec->create_stream();
    // Input: the whole file, or stdin read incrementally.
    std::vector<float> file_audio;
    int in_rate = rec->sample_rate();
    std::unique_ptr<RawPcmReader> raw;
    if (a.audio == "-") {
        raw = std::make_unique<RawPcmReader>(raw_format, a.raw_channels);
        in_rate = a.raw_rate;
    } else {
        AudioInfo info;
        file_audio = load_audio(a.audio, rec->sample_rate(), &info);
    }
    const size_t feed = std::max<size_t>(1, static_cast<size_t>(a.feed_ms / 1000.0 * in_rate));
    const double t_start = now_s();
    size_t pos = 0;
    int64_t fed = 0;
    // Partial flicker: how often a word shown in a partial is later shown differently.
    std::vector<std::string> shown;
    int64_t words_shown = 0, words_revised = 0;
    double latency_sum = 0, latency_max = 0;
    int64_t latency_n = 0;
    auto emit = [&](const Event& e) {
        nlohmann::ordered_json j;
        j["type"] = e.type == Event::Type::kFinal ? "final" : "partial";
        j["segment"] = e.segment;
        j["text"] = e.text;
        if (e.type == Event::Type::kPartial) j["stable_text"] = e.stable_text;
        j["start"] = e.start;
        j["end"] = e.end;
        j["audio_seconds"] = e.audio_seconds;
        j["compute_ms"] = e.compute_ms;
        auto& words = j["words"] = nlohmann::ordered_json::array();
        for (const WordInfo& w : e.words) words.push_back({{"word", w.word}, {"start", w.start}, {"end", w.end}});
        auto& toks = j["tokens"] = nlohmann::ordered_json::array();
        for (const TokenInfo& t : e.tokens)
            toks.push_back({{"id", t.id}, {"piece", t.piece}, {"start", t.start}, {"end", t.end}});
        if (a.realtime && !e.tokens.empty()) {
            // End-to-end latency of the newest word: shown now vs when the audio of the frame that emitted its
            // last token was fed (a TDT token's end adds its predicted duration, which may lie in the future).
            const TokenInfo& last = e.tokens.back();
            const double frame_s = last.frame > 0 ? last.start / last.frame : 0.08;
            const double lat = (now_s() - t_start) - (last.start + frame_s);
            j["latency_ms"] = lat * 1000;
            latency_sum += lat;
            latency_max = std::max(latency_max, lat);
            ++latency_n;
        }
        std::vector<std::string> cur;
        for (const WordInfo& w : e.words) cur.push_back(w.word);
        for (size_t i = 0; i < std::min(cur.size(), shown.size()); ++i) words_revised += cur[i] != shown[i];
        words_shown += static_cast<int64_t>(cur.size());
        shown = e.type == Event::Type::kFinal ? std::vector<std::string>{} : cur;
        std::cout << j.dump() << "\n" << std::flush;
    };
    while (true) {
        std::vector<float> chunk;
        bool end = false;
        if (raw) {
            if (raw->read(std::cin, chunk, feed) == 0) end = true;
        } else {
            const size_t n = std::min(feed, file_audio.size() - pos);
            chunk.assign(file_audio.begin() + pos, file_audio.begin() + pos + n);
            pos += n;
            end = pos >= file_audio.size();
        }
        if (!chunk.empty()) {
            stream->accept_waveform(in_rate, chunk.data(), chunk.size());
            fed += static_cast<int64_t>(chunk.size());
        }
        if (end) stream->input_finished();
        if (a.realtime) {
            const double due = static_cast<double>(fed) / in_rate - (now_s() - t_start);
            if (due > 0) std::this_thread::sleep_for(std::chrono::duration<double>(due));
        }
        rec->decode(*stream);
        for (const Event& e : stream->pop_events()) emit(e);
        if (end) break;
    }
    nlohmann::ordered_json summary = {{"type", "summary"},
                                      {"audio_seconds", stream->audio_seconds()},
                                      {"wall_seconds", now_s() - t_start},
                                      {"partial_words_shown", words_shown},
                                      {"partial_words_revised", words_revised},
                                      {"flicker_rate", words_shown ? static_cast<double>(words_revised) / words_shown : 0.0}};
    if (latency_n) {
        summary["mean_word_latency_ms"] = latency_sum / latency_n * 1000;
        summary["max_word_latency_ms"] = latency_max * 1000;
    }
    std::cerr << summary.dump() << "\n";
}

}  // namespace

void add_stream(CLI::App& app) {
    auto a = std::make_shared<StreamArgs>();
    CLI::App* sub = app.add_subcommand("stream", "Streaming recognition: one JSON line per partial/final event");
    sub->add_option("-m,--model", a->cfg.model_path, "NeMo checkpoint (.nemo)")->required();
    sub->add_option("audio", a->audio, "Audio file, or - for raw PCM on stdin")->required();
    sub->add_option("--mode", a->cfg.mode, "windowed (default) or cache-aware");
    sub->add_option("--preset", a->preset, "Windowed presets: 10-2-2 or low-latency (5-0.32-0.32)");
    sub->add_option("--left-secs", a->cfg.left_secs, "Windowed: left context seconds");
    sub->add_option("--chunk-secs", a->cfg.chunk_secs, "Windowed: chunk seconds");
    sub->add_option("--right-secs", a->cfg.right_secs, "Windowed: right context seconds");
    sub->add_option("--chunk-size", a->cfg.chunk_size, "Cache-aware: chunk size in encoder frames");
    sub->add_option("--shift-size", a->cfg.shift_size, "Cache-aware: shift size in encoder frames");
    sub->add_option("--left-chunks", a->cfg.left_chunks, "Cache-aware: left chunks of attention cache");
    sub->add_option("--att-context", a->cfg.att_context, "Cache-aware: index of the model's att_context_size");
    sub->add_flag("--nemo-compat", a->cfg.nemo_compat, "Reproduce NeMo exactly, flaws included (parity)");
    sub->add_option("--revision-tokens", a->cfg.revision_tokens, "Partials: newest tokens kept revisable");
    sub->add_option("--revision-ms", a->cfg.revision_ms, "Partials: newest milliseconds kept revisable");
    sub->add_option("--endpoint-ms", a->cfg.endpoint_silence_ms, "Silence closing a segment (0: never)");
    sub->add_flag("--realtime", a->realtime, "Pace input at real time and report word latency");
    sub->add_option("--feed-ms", a->feed_ms, "Audio per accept_waveform call (ms)");
    sub->add_option("--device", a->cfg.device, "cpu or cuda[:N]");
    sub->add_option("--precision", a->cfg.precision, "fp32, tf32, fp16 or bf16 (GPU)");
    sub->add_option("--threads", a->cfg.threads, "CPU threads (default: all cores)");
    sub->add_option("--raw-rate", a->raw_rate, "Sample rate of raw PCM on stdin");
    sub->add_option("--raw-format", a->raw_format, "Raw PCM format: s16le, s32le or f32le");
    sub->add_option("--raw-channels", a->raw_channels, "Channels of raw PCM on stdin");
    sub->callback([a] { run_stream(*a); });
}

}  // namespace parakeet::cli
