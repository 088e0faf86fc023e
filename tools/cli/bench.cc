// parakeet bench: speed of the offline path, with the GEMM floor measured in the same run as the baseline.
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <cmath>
#include <iostream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "backends/cpu/cpu_ops.h"
#include "commands.h"
#include "parakeet/parakeet.hpp"
#include "runtime/device.h"
#include "runtime/stream_batch.h"
#include "runtime/transcriber.h"

namespace parakeet::cli {

namespace {

struct BenchArgs {
    std::string model;
    std::string arch;
    bool random_weights = false;
    std::string seconds = "10,60";
    std::string threads = "1,2";
    int repeat = 1;
    std::string device = "cpu";
    std::string precision = "fp32";
    int batch = 1;
    bool json = false;
    // Streaming benchmark (instead of offline) when `stream` is set.
    std::string stream;
    int chunk_size = 2, shift_size = -1, left_chunks = 35;
    double left_secs = 10, chunk_secs = 2, right_secs = 2;
    double stream_seconds = 30;
    int streams = 1;
    bool no_batch = false;     // cache-aware on CUDA: per-stream steps instead of batched ones
    int find_streams = 0;      // > 0: search the real-time capacity up to this many streams
    double p99_bound_ms = 40;  // step latency bound of the capacity search
    std::string step_trace;    // streaming: one JSON line per tick (features, step and its parts, in ms) to this file
    // Encoder-only timing of one [frames, n_mels] feature chunk when > 0.
    int encoder_frames = 0;
    // Compare the device's encoder output and tokens with the CPU backend's on the same audio.
    bool compare_cpu = false;
};

std::vector<int> parse_list(const std::string& s, const char* what) {
    std::vector<int> out;
    std::stringstream ss(s);
    std::string item;
    while (std::getline(ss, item, ',')) {
        try {
            size_t used = 0;
            out.push_back(std::stoi(item, &used));
            PK_CHECK(used == item.size() && out.back() > 0, kInvalidArgument, "bad {} '{}'", what, s);
        } catch (const std::logic_error&) {
            PK_THROW(kInvalidArgument, "bad {} '{}' (expected comma-separated positive integers)", what, s);
        }
    }
    PK_CHECK(!out.empty(), kInvalidArgument, "empty {}", what);
    return out;
}

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

double peak_rss_mb() {
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss / 1024.0;
}

// Speech-like test signal: noise shaped by a syllabic envelope (deterministic).
std::vector<float> test_audio(int seconds, int rate) {
    std::mt19937 rng(7);
    std::normal_distribution<float> n(0.f, 0.1f);
    std::vector<float> x(static_cast<size_t>(seconds) * rate);
    for (size_t i = 0; i < x.size(); ++i) {
        const double t = static_cast<double>(i) / rate;
        x[i] = n(rng) * static_cast<float>(0.5 + 0.5 * std::sin(2 * M_PI * 4 * t)) +
               0.2f * static_cast<float>(std::sin(2 * M_PI * 220 * t));
    }
    return x;
}

// Seconds the encoder's and joint projection's GEMMs alone take for t encoder frames, same threads.
double gemm_floor(const ModelConfig& c, int64_t n_features, int64_t t) {
    struct Shape3 {
        int64_t m, n, k, count;
    };
    const int64_t d = c.encoder.d_model, ff = d * c.encoder.ff_expansion_factor, h = c.encoder.n_heads, dk = d / h;
    const int64_t ch = c.encoder.subsampling_conv_channels;
    int64_t tf = n_features, f = c.encoder.feat_in;
    std::vector<Shape3> shapes;
    for (int s = 1, factor = c.encoder.subsampling_factor / 2; factor > 1; factor /= 2, ++s) {
        tf = (tf - 1) / 2 + 1;
        f = (f - 1) / 2 + 1;
        const int64_t t2 = (tf - 1) / 2 + 1, f2 = (f - 1) / 2 + 1;
        shapes.push_back({ch, t2 * f2, ch, 1});  // pointwise conv
        tf = t2;
        f = f2;
    }
    shapes.push_back({t, d, ch * f, 1});  // pre_encode.out
    const int L = c.encoder.n_layers;
    shapes.push_back({t, ff, d, 2 * L});       // FF linear1 (x2 per layer)
    shapes.push_back({t, d, ff, 2 * L});       // FF linear2
    shapes.push_back({t, d, d, 5 * L});        // q, k, v, out, pointwise_conv2
    shapes.push_back({2 * t - 1, d, d, L});    // linear_pos
    shapes.push_back({t, 2 * d, d, L});        // pointwise_conv1
    shapes.push_back({t, t, dk, 2 * L * h});   // attention scores AC (+ BD, ~2t columns: counted as two t x t)
    shapes.push_back({t, t, dk, L * h});       // BD second half
    shapes.push_back({t, dk, t, L * h});       // probabilities x V
    shapes.push_back({t, c.joint.joint_hidden, d, 1});  // joint encoder projection
    double total = 0;
    for (const Shape3& s : shapes) {
        std::vector<float> a(static_cast<size_t>(s.m * s.k), 0.01f), b(static_cast<size_t>(s.n * s.k), 0.02f),
            out(static_cast<size_t>(s.m * s.n));
        cpu::sgemm(false, true, s.m, s.n, s.k, 1.f, a.data(), s.k, b.data(), s.k, 0.f, out.data(), s.n);  // warm
        const int reps = static_cast<int>(std::clamp<int64_t>(s.count, 1, 4));
        const double t0 = now();
        for (int r = 0; r < reps; ++r)
            cpu::sgemm(false, true, s.m, s.n, s.k, 1.f, a.data(), s.k, b.data(), s.k, 0.f, out.data(), s.n);
        total += (now() - t0) / reps * s.count;
    }
    return total;
}

double percentile(std::vector<double> v, double q) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    return v[static_cast<size_t>(q * (v.size() - 1))];
}

struct StreamBenchResult {
    nlohmann::ordered_json row;
    double tick_s = 0, step_p99 = 0, tick_p99 = 0;
    bool real_time = false;
};

// Steps `n_streams` streams in lockstep over the same audio, one chunk of audio per tick: every stream takes
// the tick's audio (features on the CPU, streams in parallel), then one Recognizer::decode over all streams
// (cache-aware on CUDA: batched steps; otherwise one stream after another). A stream's step latency is the
// time from the end of its feature extraction to its tokens: in batched mode the whole decode call.
StreamBenchResult measure_streams(const BenchArgs& a, std::shared_ptr<const Model> model, int threads, int n_streams,
                                  double stream_seconds) {
    RecognizerConfig cfg;
    cfg.mode = a.stream;
    cfg.chunk_size = a.chunk_size;
    cfg.shift_size = a.shift_size > 0 ? a.shift_size : a.chunk_size;
    cfg.left_chunks = a.left_chunks;
    cfg.left_secs = a.left_secs;
    cfg.chunk_secs = a.chunk_secs;
    cfg.right_secs = a.right_secs;
    cfg.device = a.device;
    cfg.precision = a.precision;
    cfg.threads = threads;
    cfg.endpoint_silence_ms = 0;
    cfg.batch_streams = !a.no_batch;
    auto rec = create_recognizer(cfg, model);
    const int rate = model->config().preprocessor.sample_rate;
    const auto audio = test_audio(static_cast<int>(std::ceil(stream_seconds)), rate);
    // Audio per tick: the chunk's duration (cache-aware: shift_size encoder frames).
    const double tick_s = a.stream == "windowed" ? a.chunk_secs : cfg.shift_size * model->frame_seconds();
    const size_t tick = std::max<size_t>(1, static_cast<size_t>(tick_s * rate));
    std::vector<std::unique_ptr<Stream>> streams;
    std::vector<Stream*> ptrs;
    for (int i = 0; i < n_streams; ++i) {
        streams.push_back(rec->create_stream());
        ptrs.push_back(streams.back().get());
    }
    // Recognizer::decode(streams): cache-aware on CUDA steps all streams in one graph; windowed encodes all windows
    // as one batch; cache-aware on the CPU steps them one after another.
    const bool batched = !a.no_batch && (a.stream == "windowed" || a.device != "cpu");
    std::vector<double> step_ms, tick_ms, feature_ms, gpu_ms, engine_ms, decode_ms, cut_ms, commit_ms;
    StreamBatchEngine* engine = stream_batch_engine(*rec);
    if (engine) engine->take_timing();
    const double rss0 = peak_rss_mb();
    std::ofstream trace;
    if (!a.step_trace.empty()) {
        trace.open(a.step_trace, std::ios::app);
        PK_CHECK(trace.is_open(), kIo, "cannot write --step-trace file '{}'", a.step_trace);
    }
    for (size_t pos = 0; pos < audio.size(); pos += tick) {
        const size_t n = std::min(tick, audio.size() - pos);
        const double t_tick = now();
        const bool end = pos + n >= audio.size();
        bool stepped = false;  // a batched step ran this tick (its parts are in the vectors' last elements)
#pragma omp parallel for schedule(dynamic, 16) if (n_streams > 16)
        for (int i = 0; i < n_streams; ++i) {
            streams[i]->accept_waveform(rate, audio.data() + pos, n);
            if (end) streams[i]->input_finished();
        }
        const double t_feat = now();
        feature_ms.push_back((t_feat - t_tick) * 1000);
        if (batched) {
            bool any = false;
            for (Stream* s : ptrs) any = any || s->is_ready();
            rec->decode(ptrs);
            if (any) step_ms.push_back((now() - t_feat) * 1000);
            stepped = any && engine;
            if (engine) {
                const StreamBatchEngine::Timing t = engine->take_timing();
                if (any) gpu_ms.push_back(t.gpu_ms);
                if (any) engine_ms.push_back(t.total_ms);
                if (any) decode_ms.push_back(t.decode_ms);
                if (any) cut_ms.push_back(t.cut_ms);
                if (any) commit_ms.push_back(t.commit_ms);
            }
        } else {
            for (Stream* s : ptrs) {
                const bool ready = s->is_ready();
                const double t0 = now();
                rec->decode(*s);
                if (ready) step_ms.push_back((now() - t0) * 1000);
            }
        }
        for (Stream* s : ptrs) s->pop_events();
        tick_ms.push_back((now() - t_tick) * 1000);
        if (trace.is_open()) {
            nlohmann::ordered_json row = {{"streams", n_streams}, {"tick", tick_ms.size() - 1},
                                          {"features_ms", feature_ms.back()}, {"tick_ms", tick_ms.back()}};
            if (stepped) {
                row["step_ms"] = step_ms.back();
                row["gpu_ms"] = gpu_ms.back();
                row["engine_ms"] = engine_ms.back();
                row["cut_ms"] = cut_ms.back();
                row["commit_ms"] = commit_ms.back();
            }
            trace << row.dump() << "\n";
        }
    }
    // Warm-up: drop the first tenth of the steps and ticks. Flatness: p50 of the next tenth vs the last tenth.
    step_ms.erase(step_ms.begin(), step_ms.begin() + step_ms.size() / 10);
    const size_t tenth = std::max<size_t>(step_ms.size() / 10, 1);
    const double early_p50 = percentile({step_ms.begin(), step_ms.begin() + std::min(tenth, step_ms.size())}, 0.5);
    const double late_p50 = percentile({step_ms.end() - std::min(tenth, step_ms.size()), step_ms.end()}, 0.5);
    tick_ms.erase(tick_ms.begin(), tick_ms.begin() + tick_ms.size() / 10);
    feature_ms.erase(feature_ms.begin(), feature_ms.begin() + feature_ms.size() / 10);
    gpu_ms.erase(gpu_ms.begin(), gpu_ms.begin() + gpu_ms.size() / 10);
    engine_ms.erase(engine_ms.begin(), engine_ms.begin() + engine_ms.size() / 10);
    decode_ms.erase(decode_ms.begin(), decode_ms.begin() + decode_ms.size() / 10);
    cut_ms.erase(cut_ms.begin(), cut_ms.begin() + cut_ms.size() / 10);
    commit_ms.erase(commit_ms.begin(), commit_ms.begin() + commit_ms.size() / 10);
    StreamBenchResult r;
    const double p50 = percentile(step_ms, 0.5);
    r.step_p99 = percentile(step_ms, 0.99);
    r.tick_p99 = percentile(tick_ms, 0.99);
    r.tick_s = tick_s;
    r.real_time = r.tick_p99 < tick_s * 1000;
    r.row = {{"mode", a.stream},
             {"device", a.device},
             {"precision", a.precision},
             {"threads", threads},
             {"streams", n_streams},
             {"batched", batched},
             {"audio_per_step_s", tick_s},
             {"steps", step_ms.size()},
             {"step_ms_p50", p50},
             {"step_ms_p99", r.step_p99},
             {"features_ms_p99", percentile(feature_ms, 0.99)},
             {"gpu_ms_p50", percentile(gpu_ms, 0.5)},
             {"gpu_ms_p99", percentile(gpu_ms, 0.99)},
             {"engine_ms_p50", percentile(engine_ms, 0.5)},
             {"decode_ms_p50", percentile(decode_ms, 0.5)},
             {"cut_ms_p50", percentile(cut_ms, 0.5)},
             {"cut_ms_p99", percentile(cut_ms, 0.99)},
             {"commit_ms_p50", percentile(commit_ms, 0.5)},
             {"commit_ms_p99", percentile(commit_ms, 0.99)},
             {"slot_mb", engine ? static_cast<double>(engine->slot_bytes()) / (1 << 20) : 0.0},
             {"tick_ms_p99", r.tick_p99},
             {"early_step_ms_p50", early_p50},
             {"late_step_ms_p50", late_p50},
             {"real_time", r.real_time},
             {"peak_rss_mb", peak_rss_mb()},
             {"rss_growth_mb", peak_rss_mb() - rss0}};
    return r;
}

void print_stream_row(const BenchArgs& a, const StreamBenchResult& r) {
    const auto& row = r.row;
    if (a.json) {
        std::cout << row.dump() << std::endl;
        return;
    }
    std::cout << fmt::format("{} {} {} threads {}: {} stream(s){} x {:.0f} s, {:.2f} s audio per step: step p50 {:.2f} ms, "
                             "p99 {:.2f} ms (first/last tenth p50 {:.2f}/{:.2f}; GPU p50 {:.2f}, p99 {:.2f}, decode {:.2f}; engine p50 {:.2f}; chunks cut p50 {:.2f}, p99 {:.2f}; commit p50 {:.2f}, p99 {:.2f}); features p99 {:.2f} ms; all-stream tick "
                             "p99 {:.2f} ms ({}real time); peak RSS {:.0f} MB (+{:.0f})",
                             a.stream, a.device, a.precision, row["threads"].get<int>(), row["streams"].get<int>(),
                             row["batched"].get<bool>() ? " batched" : "", a.stream_seconds, r.tick_s,
                             row["step_ms_p50"].get<double>(), r.step_p99, row["early_step_ms_p50"].get<double>(),
                             row["late_step_ms_p50"].get<double>(), row["gpu_ms_p50"].get<double>(),
                             row["gpu_ms_p99"].get<double>(), row["decode_ms_p50"].get<double>(),
                             row["engine_ms_p50"].get<double>(), row["cut_ms_p50"].get<double>(),
                             row["cut_ms_p99"].get<double>(), row["commit_ms_p50"].get<double>(),
                             row["commit_ms_p99"].get<double>(),
                             row["features_ms_p99"].get<double>(), r.tick_p99,
                             r.real_time ? "" : "NOT ", row["peak_rss_mb"].get<double>(),
                             row["rss_growth_mb"].get<double>())
              << std::endl;
}

void run_stream_bench(const BenchArgs& a, std::shared_ptr<const Model> model, int threads) {
    if (a.find_streams <= 0) {
        print_stream_row(a, measure_streams(a, model, threads, a.streams, a.stream_seconds));
        return;
    }
    // Capacity: the most streams whose ticks stay real time and whose step p99 stays under the bound. Doubling
    // from --streams, then bisection between the last passing and the first failing count.
    auto passes = [&](int n) {
        const StreamBenchResult r = measure_streams(a, model, threads, n, a.stream_seconds);
        print_stream_row(a, r);
        return r.real_time && r.step_p99 <= a.p99_bound_ms;
    };
    int good = 0, bad = 0;
    for (int n = a.streams; n <= a.find_streams; n *= 2) {
        if (!passes(n)) {
            bad = n;
            break;
        }
        good = n;
    }
    if (bad == 0 && good < a.find_streams && passes(a.find_streams)) good = a.find_streams;
    while (bad > 0 && bad - good > std::max(8, good / 16)) {
        const int mid = (good + bad) / 2;
        (passes(mid) ? good : bad) = mid;
    }
    nlohmann::ordered_json row = {{"capacity_streams", good}, {"p99_bound_ms", a.p99_bound_ms},
                                  {"first_failing_streams", bad}, {"precision", a.precision}};
    if (a.json) {
        std::cout << row.dump() << std::endl;
    } else {
        std::cout << fmt::format("capacity: {} real-time streams with step p99 <= {:.0f} ms ({} fail)\n", good,
                                 a.p99_bound_ms, bad);
    }
}

void run_encoder_bench(const BenchArgs& a, std::shared_ptr<const Model> model, int threads) {
    DeviceRunner runner(model, Device::parse(a.device), parse_precision(a.precision), threads);
    Tensor feats = Tensor::empty({a.encoder_frames, model->config().preprocessor.features});
    for (int64_t i = 0; i < feats.numel(); ++i) feats.data<float>()[i] = static_cast<float>(std::sin(i * 0.37));
    std::vector<int> lengths;
    std::vector<double> ms;
    for (int r = 0; r < a.repeat + 3; ++r) {
        const double t0 = now();
        model->encoder().forward(runner.ctx(), {feats}, lengths, model->encoder().attention_context(0));
        runner.synchronize();
        if (r >= 3) ms.push_back((now() - t0) * 1000);
    }
    std::cout << fmt::format("encoder only, [{}, {}] features, batch 1, {} {} threads {}: p50 {:.2f} ms, p99 {:.2f} ms\n",
                             a.encoder_frames, model->config().preprocessor.features, a.device, a.precision, threads,
                             percentile(ms, 0.5), percentile(ms, 0.99));
    if (!runner.is_cuda()) return;
    // The same through DeviceRunner::encode: features already on the device, the encoder a captured CUDA graph.
    Tensor on_device = feats.to(runner.ctx().device);
    std::vector<double> graph_ms;
    for (int r = 0; r < a.repeat + 3; ++r) {
        const double t0 = now();
        runner.encode(on_device, lengths, model->encoder().attention_context(0));
        runner.synchronize();
        if (r >= 3) graph_ms.push_back((now() - t0) * 1000);
    }
    std::cout << fmt::format("encoder only, captured graph, device features: p50 {:.2f} ms, p99 {:.2f} ms\n",
                             percentile(graph_ms, 0.5), percentile(graph_ms, 0.99));
}

// Encoder output and tokens of `device` vs the CPU backend on the same audio (full-architecture parity).
void run_compare_cpu(const BenchArgs& a, std::shared_ptr<const Model> model, int threads, int seconds) {
    const auto audio = test_audio(seconds, model->config().preprocessor.sample_rate);
    auto capture = [&](const std::string& device, const std::string& precision, Tensor& enc) {
        DeviceRunner runner(model, Device::parse(device), parse_precision(precision), threads);
        TranscribeOptions opt;
        opt.sink = [&](const std::string& name, const Tensor& t) {
            if (name == "encoder_output") enc = t.clone();
        };
        return transcribe(*model, runner, {audio}, opt)[0];
    };
    Tensor enc_cpu, enc_dev;
    Transcript cpu = capture("cpu", "fp32", enc_cpu);
    Transcript dev = capture(a.device, a.precision, enc_dev);
    double max_abs = 0, sum_abs = 0, max_ref = 0;
    for (int64_t i = 0; i < enc_cpu.numel(); ++i) {
        const double d = std::fabs(static_cast<double>(enc_cpu.data<float>()[i]) - enc_dev.data<float>()[i]);
        max_abs = std::max(max_abs, d);
        sum_abs += d;
        max_ref = std::max(max_ref, static_cast<double>(std::fabs(enc_cpu.data<float>()[i])));
    }
    // Token agreement: 1 - edit distance / reference length.
    const auto& x = cpu.tokens;
    const auto& y = dev.tokens;
    std::vector<size_t> prev(y.size() + 1), cur(y.size() + 1);
    for (size_t j = 0; j <= y.size(); ++j) prev[j] = j;
    for (size_t i = 1; i <= x.size(); ++i) {
        cur[0] = i;
        for (size_t j = 1; j <= y.size(); ++j)
            cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x[i - 1].id != y[j - 1].id)});
        std::swap(prev, cur);
    }
    const double agreement = x.empty() ? (y.empty() ? 1.0 : 0.0) : 1.0 - static_cast<double>(prev[y.size()]) / x.size();
    std::cout << fmt::format("{} s, {} {} vs cpu fp32: encoder max |diff| {:.3e} (max |value| {:.2f}), mean {:.3e}; "
                             "tokens {} vs {}, agreement {:.4f}\n",
                             seconds, a.device, a.precision, max_abs, max_ref, sum_abs / std::max<int64_t>(enc_cpu.numel(), 1),
                             y.size(), x.size(), agreement);
}

void run_bench(const BenchArgs& a) {
    PK_CHECK(a.model.empty() != a.arch.empty(), kInvalidArgument, "give either -m MODEL or --arch NAME");
    PK_CHECK(a.arch.empty() || a.random_weights, kInvalidArgument, "--arch needs --random-weights (no weights ship)");
    PK_CHECK(a.repeat >= 1 && a.repeat <= 1000, kInvalidArgument, "bad --repeat {}", a.repeat);
    PK_CHECK(a.batch >= 1 && a.batch <= 1024, kInvalidArgument, "bad --batch {}", a.batch);
    const auto seconds = parse_list(a.seconds, "--seconds");
    const auto threads = parse_list(a.threads, "--threads");
    const double t_load = now();
    std::shared_ptr<const Model> model;
    if (!a.arch.empty()) {
        ModelConfig cfg = builtin_architecture(a.arch);
        model = Model::from_weights(cfg, random_weights(cfg, 1234));
    } else {
        model = Model::load(a.model);
    }
    const double load_s = now() - t_load;
    const ModelConfig& cfg = model->config();
    if (a.encoder_frames > 0) {
        for (int th : threads) run_encoder_bench(a, model, th);
        return;
    }
    if (a.compare_cpu) {
        for (int secs : seconds) run_compare_cpu(a, model, threads.back(), secs);
        return;
    }
    if (!a.stream.empty()) {
        PK_CHECK(a.stream == "windowed" || a.stream == "cache-aware", kInvalidArgument,
                 "bad --stream '{}' (expected windowed or cache-aware)", a.stream);
        PK_CHECK(a.streams >= 1 && a.streams <= 8192, kInvalidArgument, "bad --streams {}", a.streams);
        PK_CHECK(a.find_streams >= 0 && a.find_streams <= 8192, kInvalidArgument, "bad --find-streams {}",
                 a.find_streams);
        PK_CHECK(a.p99_bound_ms > 0, kInvalidArgument, "bad --p99-bound-ms {}", a.p99_bound_ms);
        for (int th : threads) run_stream_bench(a, model, th);
        return;
    }
    nlohmann::ordered_json rows = nlohmann::ordered_json::array();
    if (!a.json)
        std::cout << fmt::format("model: {} ({} parameters), built/loaded in {:.2f} s\n",
                                 a.arch.empty() ? a.model : a.arch + " (random weights)", model->parameter_count(),
                                 load_s)
                  << fmt::format("{:>6} {:>7} {:>9} {:>8} {:>8} {:>8} {:>9} {:>9} {:>8} {:>9}\n", "audio", "threads",
                                 "wall_s", "RTFx", "front%", "enc%", "dec%", "gemm_s", "x_floor", "rss_MB");
    for (int secs : seconds) {
        const auto audio = test_audio(secs, cfg.preprocessor.sample_rate);
        for (int th : threads) {
            DeviceRunner runner(model, Device::parse(a.device), parse_precision(a.precision), th);
            const bool gpu = runner.is_cuda();
            const std::vector<std::vector<float>> batch(a.batch, audio);
            TranscribeOptions opt;
            transcribe(*model, runner, batch, opt);  // warm-up
            double best = 1e30;
            Transcript best_t;
            for (int r = 0; r < a.repeat; ++r) {
                const double t0 = now();
                Transcript t = transcribe(*model, runner, batch, opt)[0];
                const double wall = now() - t0;
                if (wall < best) {
                    best = wall;
                    best_t = t;
                }
            }
            // The GEMM floor is a CPU measurement; on the GPU the baseline is the PyTorch run (torch_bench.py).
            const double floor_s = gpu ? 0.0 : gemm_floor(cfg, best_t.n_feature_frames, best_t.n_encoder_frames);
            const double rtfx = secs * a.batch / best;
            nlohmann::ordered_json row = {{"audio_seconds", secs},
                                          {"batch", a.batch},
                                          {"device", a.device},
                                          {"precision", a.precision},
                                          {"threads", th},
                                          {"wall_seconds", best},
                                          {"rtfx", rtfx},
                                          {"frontend_share", best_t.frontend_seconds / best},
                                          {"encoder_share", best_t.encoder_seconds / best},
                                          {"decoder_share", best_t.decoder_seconds / best},
                                          {"gemm_floor_seconds", floor_s},
                                          {"ratio_to_floor", gpu ? 0.0 : best / floor_s},
                                          {"tokens", best_t.tokens.size()},
                                          {"peak_rss_mb", peak_rss_mb()}};
            if (!a.json)
                std::cout << fmt::format("{:>5}s {:>7} {:>9.3f} {:>8.1f} {:>7.1f}% {:>7.1f}% {:>8.1f}% {:>9.3f} {:>8.2f} {:>9.0f}\n",
                                         secs, th, best, rtfx, 100 * best_t.frontend_seconds / best,
                                         100 * best_t.encoder_seconds / best, 100 * best_t.decoder_seconds / best,
                                         floor_s, gpu ? 0.0 : best / floor_s, peak_rss_mb());
            rows.push_back(std::move(row));
        }
    }
    if (a.json) std::cout << nlohmann::ordered_json{{"offline", rows}}.dump(1) << "\n";
}

}  // namespace

void add_bench(CLI::App& app) {
    auto a = std::make_shared<BenchArgs>();
    CLI::App* sub = app.add_subcommand("bench", "Benchmark the offline path against the GEMM floor");
    sub->add_option("-m,--model", a->model, "NeMo checkpoint (.nemo)");
    sub->add_option("--arch", a->arch, "Built-in architecture, e.g. parakeet-tdt-0.6b-v3");
    sub->add_flag("--random-weights", a->random_weights, "Random weights (with --arch)");
    sub->add_option("--seconds", a->seconds, "Comma-separated audio lengths in seconds");
    sub->add_option("--threads", a->threads, "Comma-separated CPU thread counts");
    sub->add_option("--repeat", a->repeat, "Timed repetitions (best is reported)");
    sub->add_flag("--json", a->json, "Print JSON");
    sub->add_option("--device", a->device, "cpu or cuda[:N]");
    sub->add_option("--precision", a->precision, "fp32, tf32, fp16 or bf16 (GPU)");
    sub->add_option("--batch", a->batch, "Files transcribed together (same length)");
    sub->add_option("--stream", a->stream, "Benchmark streaming instead: windowed or cache-aware");
    sub->add_option("--chunk-size", a->chunk_size, "Cache-aware chunk (encoder frames; 2 = 160 ms)");
    sub->add_option("--shift-size", a->shift_size, "Cache-aware shift (encoder frames; default = chunk)");
    sub->add_option("--left-chunks", a->left_chunks, "Cache-aware left chunks");
    sub->add_option("--left-secs", a->left_secs, "Windowed left context");
    sub->add_option("--chunk-secs", a->chunk_secs, "Windowed chunk");
    sub->add_option("--right-secs", a->right_secs, "Windowed right context");
    sub->add_option("--stream-seconds", a->stream_seconds, "Seconds of audio per stream");
    sub->add_option("--streams", a->streams, "Streams stepped in lockstep (real-time capacity)");
    sub->add_flag("--no-batch", a->no_batch, "Step streams one at a time (no batched decode of all streams)");
    sub->add_option("--find-streams", a->find_streams,
                    "Search the most real-time streams (from --streams, doubling, up to this many)");
    sub->add_option("--step-trace", a->step_trace, "Streaming: append one JSON line per tick (times in ms) to this file");
    sub->add_option("--p99-bound-ms", a->p99_bound_ms, "Step latency p99 bound of --find-streams (ms)");
    sub->add_option("--encoder-frames", a->encoder_frames, "Time the encoder alone on this many feature frames");
    sub->add_flag("--compare-cpu", a->compare_cpu, "Encoder error and token agreement of --device vs the CPU");
    sub->callback([a] { run_bench(*a); });
}

}  // namespace parakeet::cli
