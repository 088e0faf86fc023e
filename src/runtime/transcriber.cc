#include "runtime/transcriber.h"

#include <algorithm>
#include <chrono>

#include "ops/ops.h"

namespace parakeet {

namespace {
double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// [T, C] rows of item b -> NeMo layout [1, C, T + pad] (pad columns zero).
Tensor to_channels_first(const float* x, int64_t t, int64_t c, int64_t pad) {
    Tensor out = Tensor::zeros({1, c, t + pad});
    for (int64_t i = 0; i < t; ++i)
        for (int64_t j = 0; j < c; ++j) out.data<float>()[j * (t + pad) + i] = x[i * c + j];
    return out;
}

Tensor scalar_i64(int64_t v) {
    Tensor t = Tensor::empty({1}, DType::kI64);
    t.data<int64_t>()[0] = v;
    return t;
}
}  // namespace

std::vector<Transcript> transcribe(const Model& model, const ExecContext& ctx,
                                   const std::vector<std::vector<float>>& audio, const TranscribeOptions& opt) {
    const ModelConfig& cfg = model.config();
    const int64_t batch = static_cast<int64_t>(audio.size());
    std::vector<Transcript> out(batch);
    std::vector<Tensor> feats(batch);
    const bool nemo25 = model.frontend().version() == FrontendVersion::kNemo25;
    for (int64_t b = 0; b < batch; ++b) {
        auto t0 = std::chrono::steady_clock::now();
        feats[b] = model.frontend().compute(audio[b].data(), static_cast<int64_t>(audio[b].size()));
        out[b].duration = static_cast<double>(audio[b].size()) / cfg.preprocessor.sample_rate;
        out[b].n_feature_frames = static_cast<int>(feats[b].dim(0));
        out[b].frontend_seconds = seconds_since(t0);
        if (opt.sink && batch == 1) {
            // NeMo >= 2.5 emits one extra, zeroed STFT frame past the valid length.
            opt.sink("features", to_channels_first(feats[b].data<float>(), feats[b].dim(0), feats[b].dim(1),
                                                   nemo25 && feats[b].dim(0) > 0 ? 1 : 0));
            opt.sink("features_len", scalar_i64(feats[b].dim(0)));
        }
    }
    int max_frames = 0;
    for (const Tensor& f : feats)
        max_frames = std::max(max_frames, model.encoder().encoded_length(static_cast<int>(f.dim(0))));
    // The model's (first) trained attention context; local attention for long inputs of full-context models.
    AttentionContext att = model.encoder().attention_context(0);
    if (opt.full_context_max_frames >= 0 && max_frames > opt.full_context_max_frames && att.left < 0 && att.right < 0)
        att = {opt.local_window, opt.local_window};

    auto t0 = std::chrono::steady_clock::now();
    std::vector<int> lengths;
    Tensor enc = model.encoder().forward(ctx, feats, lengths, att, batch == 1 ? opt.sink : TensorSink());
    const double enc_seconds = seconds_since(t0) / std::max<int64_t>(batch, 1);
    const int64_t t_max = enc.dim(1), d = enc.dim(2);
    if (opt.sink && batch == 1) {
        opt.sink("encoder_output", to_channels_first(enc.data<float>(), t_max, d, 0));
        opt.sink("encoded_len", scalar_i64(lengths[0]));
    }

    GreedyOptions gopt;
    gopt.blank_id = cfg.blank_id();
    gopt.durations = cfg.is_tdt() ? cfg.decoding.durations : std::vector<int>{};
    gopt.max_symbols = cfg.decoding.max_symbols;
    const Joint& joint = model.joint();
    for (int64_t b = 0; b < batch; ++b) {
        auto t1 = std::chrono::steady_clock::now();
        const int64_t n = lengths[b];
        Tensor f = Tensor::empty({n, joint.hidden()});
        if (n > 0) joint.project_encoder(ctx, enc.slice0(b, b + 1).reshape({t_max, d}).slice0(0, n), f);
        DecoderState state;
        std::vector<Token> tokens;
        greedy_decode(model.predictor(), joint, gopt, f.data<float>(), static_cast<int>(n), state, tokens, opt.trace);
        Transcript& tr = out[b];
        tr.n_encoder_frames = static_cast<int>(n);
        tr.encoder_seconds = enc_seconds;
        tr.tokens = time_tokens(tokens, model.tokenizer(), model.frame_seconds(), cfg.is_tdt());
        if (const Tokenizer* tok = model.tokenizer()) {
            std::vector<int> ids;
            for (const Token& t : tokens) ids.push_back(t.id);
            tr.text = tok->decode(ids);
            tr.words = group_words(tr.tokens, *tok);
        }
        tr.decoder_seconds = seconds_since(t1);
        if (opt.sink && batch == 1) {
            Tensor ids = Tensor::empty({static_cast<int64_t>(tokens.size())}, DType::kI32);
            Tensor frames = Tensor::empty(ids.shape(), DType::kI32), durs = Tensor::empty(ids.shape(), DType::kI32);
            for (size_t i = 0; i < tokens.size(); ++i) {
                ids.data<int32_t>()[i] = tokens[i].id;
                frames.data<int32_t>()[i] = tokens[i].frame;
                durs.data<int32_t>()[i] = tokens[i].duration;
            }
            opt.sink("tokens", ids);
            opt.sink("token_frames", frames);
            opt.sink("token_durations", durs);
        }
    }
    return out;
}

}  // namespace parakeet
