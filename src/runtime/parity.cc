#include "runtime/parity.h"

#include <algorithm>
#include <cmath>
#include <fstream>

#include "decoding/greedy.h"
#include "io/json_tensor.h"

namespace parakeet {

TensorError compare_tensors(const Tensor& a, const Tensor& b, double atol) {
    TensorError e;
    e.shape_ok = a.shape() == b.shape();
    if (!e.shape_ok) {
        e.pass = false;
        e.max_abs = INFINITY;
        return e;
    }
    Tensor fa = a.to(Device{}).to_f32(), fb = b.to(Device{}).to_f32();
    std::vector<double> diffs(static_cast<size_t>(fa.numel()));
    double sum = 0;
    for (int64_t i = 0; i < fa.numel(); ++i) {
        diffs[i] = std::fabs(static_cast<double>(fa.data<float>()[i]) - fb.data<float>()[i]);
        if (std::isnan(diffs[i])) diffs[i] = INFINITY;
        sum += diffs[i];
    }
    e.count = fa.numel();
    if (!diffs.empty()) {
        std::sort(diffs.begin(), diffs.end());
        e.max_abs = diffs.back();
        e.mean_abs = sum / diffs.size();
        e.p95 = diffs[static_cast<size_t>(0.95 * (diffs.size() - 1))];
        e.p99 = diffs[static_cast<size_t>(0.99 * (diffs.size() - 1))];
    }
    e.pass = e.max_abs <= atol;
    return e;
}

std::vector<nlohmann::json> read_reference_jsonl(const std::string& path) {
    std::ifstream in(path);
    PK_CHECK(in.good(), kIo, "cannot read reference '{}'", path);
    std::vector<nlohmann::json> out;
    std::string line;
    int n = 0;
    while (std::getline(in, line)) {
        ++n;
        if (line.empty()) continue;
        try {
            out.push_back(nlohmann::json::parse(line));
        } catch (const nlohmann::json::exception& e) {
            PK_THROW(kFormat, "{}:{}: not JSON ({})", path, n, e.what());
        }
        PK_CHECK(out.back().contains("inputs") && out.back().contains("outputs"), kFormat,
                 "{}:{}: a chunk needs 'inputs' and 'outputs'", path, n);
    }
    PK_CHECK(!out.empty(), kFormat, "{}: no chunks", path);
    return out;
}

namespace {

// The valid region of cache_last_channel [L, B, C, D]: the last `len` rows of each (layer, item).
Tensor valid_channel_rows(const Tensor& cache, int64_t len) {
    const int64_t l = cache.dim(0), b = cache.dim(1), c = cache.dim(2), d = cache.dim(3);
    const int64_t keep = std::clamp<int64_t>(len, 0, c);
    Tensor out = Tensor::empty({l, b, keep, d});
    for (int64_t i = 0; i < l * b; ++i)
        std::copy_n(cache.data<float>() + (i * c + c - keep) * d, keep * d, out.data<float>() + i * keep * d);
    return out;
}

double slope(const std::vector<double>& y) {
    const double n = static_cast<double>(y.size());
    if (n < 2) return 0;
    double sx = 0, sy = 0, sxx = 0, sxy = 0;
    for (size_t i = 0; i < y.size(); ++i) {
        const double yi = std::isfinite(y[i]) ? y[i] : 0;
        sx += i;
        sy += yi;
        sxx += static_cast<double>(i) * i;
        sxy += i * yi;
    }
    return (n * sxy - sx * sy) / (n * sxx - sx * sx);
}

int64_t scalar(const Tensor& t) { return t.dtype() == DType::kI64 ? t.data<int64_t>()[0] : t.data<int32_t>()[0]; }

}  // namespace

ParityReport run_stream_parity(const Model& model, const ExecContext& ctx, const std::vector<nlohmann::json>& ref,
                               const ParityOptions& opt) {
    const FastConformerEncoder& enc = model.encoder();
    const StreamingConfig sc = enc.streaming_config(opt.chunk_size, opt.shift_size, opt.left_chunks);
    auto atol = [&](const std::string& name) {
        auto it = opt.atol.find(name);
        return it == opt.atol.end() ? opt.default_atol : it->second;
    };
    ParityReport report;
    EncoderCache cache;
    const ModelConfig& cfg = model.config();
    GreedyOptions gopt{cfg.blank_id(), cfg.is_tdt() ? cfg.decoding.durations : std::vector<int>{},
                       cfg.decoding.max_symbols};
    DecoderState dstate;
    std::vector<Token> tokens;
    for (size_t k = 0; k < ref.size(); ++k) {
        const auto& in = ref[k]["inputs"];
        const auto& out = ref[k]["outputs"];
        const std::string where = fmt::format("chunk {}", k);
        Tensor audio = tensor_from_json(in["audio_signal"], where + " audio_signal");  // [1, M, Tc]
        PK_CHECK(audio.rank() == 3 && audio.dim(0) == 1 && audio.dim(1) == cfg.preprocessor.features, kFormat,
                 "{}: audio_signal {} does not fit a {}-mel model at batch 1", where, shape_str(audio.shape()),
                 cfg.preprocessor.features);
        const int64_t tc = audio.dim(2), m = audio.dim(1);
        Tensor chunk = Tensor::empty({tc, m});
        for (int64_t i = 0; i < tc; ++i)
            for (int64_t j = 0; j < m; ++j) chunk.data<float>()[i * m + j] = audio.data<float>()[j * tc + i];
        const int length = static_cast<int>(scalar(tensor_from_json(in["length"], where + " length")));
        if (k == 0 || opt.mode == ParityMode::kFunctional) {
            cache.channel = tensor_from_json(in["cache_last_channel"], where + " cache_last_channel").to_f32();
            cache.time = time_cache_from_nemo(tensor_from_json(in["cache_last_time"], where + " cache_last_time"));
            cache.channel_len = {scalar(tensor_from_json(in["cache_last_channel_len"], where + " cache_len"))};
        }
        const auto& meta = ref[k].contains("metadata") ? ref[k]["metadata"] : nlohmann::json::object();
        const int drop = meta.value("drop_extra_pre_encoded", k == 0 ? 0 : sc.drop_extra_pre_encoded);
        const bool keep_all = meta.value("keep_all_outputs", k + 1 == ref.size());
        StreamStepOutput step = enc.stream_step(ctx, sc, {chunk}, {length}, cache, drop, keep_all);

        ChunkParity cp;
        cp.chunk = static_cast<int>(k);
        // Our encoder output in NeMo's [B, D, T] layout.
        const int64_t t_out = step.encoded.dim(1), d = step.encoded.dim(2);
        Tensor ours = Tensor::empty({1, d, t_out});
        Tensor enc_host = step.encoded.to(Device{});
        for (int64_t i = 0; i < t_out; ++i)
            for (int64_t c = 0; c < d; ++c) ours.data<float>()[c * t_out + i] = enc_host.data<float>()[i * d + c];
        cp.tensors["encoder_output"] =
            compare_tensors(ours, tensor_from_json(out["encoder_output"], where + " encoder_output"),
                            atol("encoder_output"));
        const int64_t ref_len = scalar(tensor_from_json(out["cache_last_channel_len_out"], where + " len_out"));
        Tensor ref_channel = tensor_from_json(out["cache_last_channel_out"], where + " cache_last_channel_out");
        cp.tensors["cache_last_channel_out"] =
            compare_tensors(valid_channel_rows(cache.channel.to(Device{}), cache.channel_len[0]),
                            valid_channel_rows(ref_channel, ref_len), atol("cache_last_channel_out"));
        cp.tensors["cache_last_time_out"] =
            compare_tensors(time_cache_to_nemo(cache.time),
                            tensor_from_json(out["cache_last_time_out"], where + " cache_last_time_out"),
                            atol("cache_last_time_out"));
        cp.lengths_ok = cache.channel_len[0] == ref_len &&
                        step.encoded_len[0] == scalar(tensor_from_json(out["encoded_lengths"], where + " lengths"));
        cp.pass = cp.lengths_ok;
        for (const auto& [name, e] : cp.tensors) cp.pass = cp.pass && e.pass;
        if (!cp.pass && report.first_failing_chunk < 0) report.first_failing_chunk = cp.chunk;
        report.pass = report.pass && cp.pass;
        report.chunks.push_back(std::move(cp));

        // Decode the chunk's valid frames, carrying the decoder state (NeMo conformer_stream_step).
        const int n = step.encoded_len[0];
        Tensor f = Tensor::empty({n, model.joint().hidden()});
        if (n > 0) model.joint().project_encoder(ctx, enc_host.reshape({t_out, d}).slice0(0, n), f);
        greedy_decode(model.predictor(), model.joint(), gopt, f.data<float>(), n, dstate, tokens);
        if (meta.contains("hyp_token_ids_so_far")) report.ref_tokens = meta["hyp_token_ids_so_far"].get<std::vector<int>>();
    }
    for (const Token& t : tokens) {
        report.tokens.push_back(t.id);
        report.token_frames.push_back(t.frame);
    }
    for (const std::string name : {"encoder_output", "cache_last_channel_out", "cache_last_time_out"}) {
        std::vector<double> y;
        for (const ChunkParity& c : report.chunks) y.push_back(c.tensors.at(name).max_abs);
        report.drift_slope[name] = slope(y);
    }
    return report;
}

nlohmann::ordered_json ParityReport::to_json() const {
    nlohmann::ordered_json j;
    j["pass"] = pass;
    j["first_failing_chunk"] = first_failing_chunk;
    j["drift_slope"] = drift_slope;
    auto& cs = j["chunks"] = nlohmann::ordered_json::array();
    for (const ChunkParity& c : chunks) {
        nlohmann::ordered_json cj = {{"chunk", c.chunk}, {"pass", c.pass}, {"lengths_ok", c.lengths_ok}};
        for (const auto& [name, e] : c.tensors)
            cj["tensors"][name] = {{"max_abs", e.max_abs}, {"mean_abs", e.mean_abs}, {"p95", e.p95},
                                   {"p99", e.p99},         {"count", e.count},       {"shape_ok", e.shape_ok},
                                   {"pass", e.pass}};
        cs.push_back(std::move(cj));
    }
    j["tokens"] = tokens;
    j["token_frames"] = token_frames;
    j["ref_tokens"] = ref_tokens;
    j["tokens_match_reference"] = ref_tokens.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(ref_tokens == tokens);
    return j;
}

}  // namespace parakeet
