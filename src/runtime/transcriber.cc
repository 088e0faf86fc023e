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
    PK_CHECK(ctx.device.type == DeviceType::kCPU, kInternal, "transcribe(ctx) is the CPU form; use a DeviceRunner");
    // Non-owning: the runner only reads the model during this call.
    DeviceRunner runner(std::shared_ptr<const Model>(&model, [](const Model*) {}), ctx.device, Precision::kF32,
                        ctx.n_threads);
    return transcribe(model, runner, audio, opt);
}

std::vector<Transcript> transcribe(const Model& model, const DeviceRunner& runner,
                                   const std::vector<std::vector<float>>& audio, const TranscribeOptions& opt) {
    const ExecContext& ctx = runner.ctx();
    const ModelConfig& cfg = model.config();
    const int64_t batch = static_cast<int64_t>(audio.size());
    std::vector<Transcript> out(batch);
    std::vector<Tensor> feats(batch);
    const bool nemo25 = model.frontend().version() == FrontendVersion::kNemo25;
    // On ctx.device (cuFFT on CUDA); queued work is waited for once, after the whole batch, so the time is the
    // frontend's, not the encoder's (each item is given an equal share).
    const auto t_front = std::chrono::steady_clock::now();
    {
        std::vector<const float*> samples(batch);
        std::vector<int64_t> n(batch);
        for (int64_t b = 0; b < batch; ++b) {
            samples[b] = audio[b].data();
            n[b] = static_cast<int64_t>(audio[b].size());
        }
        feats = model.frontend().compute_batch(ctx, samples, n);
    }
    runner.synchronize();
    const double front_seconds = seconds_since(t_front) / std::max<int64_t>(batch, 1);
    for (int64_t b = 0; b < batch; ++b) {
        out[b].duration = static_cast<double>(audio[b].size()) / cfg.preprocessor.sample_rate;
        out[b].n_feature_frames = static_cast<int>(feats[b].dim(0));
        out[b].frontend_seconds = front_seconds;
        if (opt.sink && batch == 1) {
            // NeMo >= 2.5 emits one extra, zeroed STFT frame past the valid length.
            const Tensor host = feats[b].to(Device{});
            opt.sink("features", to_channels_first(host.data<float>(), host.dim(0), host.dim(1),
                                                   nemo25 && host.dim(0) > 0 ? 1 : 0));
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
    runner.synchronize();
    const double enc_seconds = seconds_since(t0) / std::max<int64_t>(batch, 1);
    const int64_t t_max = enc.dim(1), d = enc.dim(2);
    if (opt.sink && batch == 1) {
        Tensor host = enc.to(Device{});
        opt.sink("encoder_output", to_channels_first(host.data<float>(), t_max, d, 0));
        opt.sink("encoded_len", scalar_i64(lengths[0]));
    }

    auto t1 = std::chrono::steady_clock::now();
    const Joint& joint = model.joint();
    Tensor f = Tensor::empty({batch, t_max, joint.hidden()}, DType::kF32, ctx.device);
    if (t_max > 0) {
        Tensor f2 = f.reshape({batch * t_max, joint.hidden()});
        joint.project_encoder(ctx, enc.reshape({batch * t_max, d}), f2);
    }
    std::vector<DecoderState> states(batch);
    std::vector<std::vector<Token>> tokens(batch);
    if (opt.trace) {
        PK_CHECK(!runner.is_cuda(), kUnsupported, "decode traces are produced by the CPU decoder");
        GreedyOptions gopt{cfg.blank_id(), cfg.is_tdt() ? cfg.decoding.durations : std::vector<int>{},
                           cfg.decoding.max_symbols};
        for (int64_t b = 0; b < batch; ++b)
            greedy_decode(model.predictor(), joint, gopt, f.data<float>() + b * t_max * joint.hidden(), lengths[b],
                          states[b], tokens[b], opt.trace);
    } else {
        runner.decode(f, lengths, states, tokens);
    }
    const double dec_seconds = seconds_since(t1) / std::max<int64_t>(batch, 1);
    for (int64_t b = 0; b < batch; ++b) {
        Transcript& tr = out[b];
        tr.n_encoder_frames = lengths[b];
        tr.encoder_seconds = enc_seconds;
        tr.decoder_seconds = dec_seconds;
        tr.tokens = time_tokens(tokens[b], model.tokenizer(), model.frame_seconds(), cfg.is_tdt());
        if (const Tokenizer* tok = model.tokenizer()) {
            std::vector<int> ids;
            for (const Token& t : tokens[b]) ids.push_back(t.id);
            tr.text = tok->decode(ids);
            tr.words = group_words(tr.tokens, *tok);
        }
        if (opt.sink && batch == 1) {
            const auto& tk = tokens[b];
            Tensor ids = Tensor::empty({static_cast<int64_t>(tk.size())}, DType::kI32);
            Tensor frames = Tensor::empty(ids.shape(), DType::kI32), durs = Tensor::empty(ids.shape(), DType::kI32);
            for (size_t i = 0; i < tk.size(); ++i) {
                ids.data<int32_t>()[i] = tk[i].id;
                frames.data<int32_t>()[i] = tk[i].frame;
                durs.data<int32_t>()[i] = tk[i].duration;
            }
            opt.sink("tokens", ids);
            opt.sink("token_frames", frames);
            opt.sink("token_durations", durs);
        }
    }
    return out;
}

}  // namespace parakeet
