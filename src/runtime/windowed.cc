#include "runtime/windowed.h"

#include <algorithm>
#include <cmath>

#include "ops/ops.h"

namespace parakeet {

WindowedStreamer::WindowedStreamer(std::shared_ptr<const Model> model, const WindowedOptions& opt)
    : model_(std::move(model)), opt_(opt) {
    const ModelConfig& c = model_->config();
    PK_CHECK(opt.left_secs >= 0 && opt.chunk_secs > 0 && opt.right_secs >= 0, kInvalidArgument,
             "windowed streaming needs --left-secs >= 0, --chunk-secs > 0, --right-secs >= 0 (got {}/{}/{})",
             opt.left_secs, opt.chunk_secs, opt.right_secs);
    PK_CHECK(c.preprocessor.normalize == "per_feature", kUnsupported,
             "windowed streaming needs per_feature normalisation (model has '{}')", c.preprocessor.normalize);
    // NeMo: features_frame2audio_samples = make_divisible_by(hop, subsampling); encoder frame = that x factor.
    const int hop = c.preprocessor.hop_length(), factor = c.encoder.subsampling_factor;
    frame_samples_ = (hop / factor) * factor * factor;
    const double features_per_sec = 1.0 / c.preprocessor.window_stride;
    auto frames = [&](double secs) { return static_cast<int64_t>(secs * features_per_sec / factor); };
    left_ = frames(opt.left_secs) * frame_samples_;
    chunk_ = frames(opt.chunk_secs) * frame_samples_;
    right_ = frames(opt.right_secs) * frame_samples_;
    PK_CHECK(chunk_ > 0, kInvalidArgument, "--chunk-secs {} is shorter than one encoder frame ({} s)", opt.chunk_secs,
             static_cast<double>(frame_samples_) / c.preprocessor.sample_rate);
}

void WindowedStreamer::reset() {
    buffer_.clear();
    buffer_offset_ = received_ = next_chunk_ = 0;
    finished_ = done_ = false;
    state_ = DecoderState();
}

void WindowedStreamer::accept(const float* samples, size_t n) {
    PK_CHECK(!finished_, kInvalidArgument, "audio given after the end of input");
    buffer_.insert(buffer_.end(), samples, samples + n);
    received_ += static_cast<int64_t>(n);
}

void WindowedStreamer::finish() { finished_ = true; }

bool WindowedStreamer::ready() const {
    if (done_) return false;
    return received_ >= next_chunk_ + chunk_ + right_ || finished_;
}

WindowedStreamer::Pending WindowedStreamer::prepare(const ExecContext& ctx) const {
    PK_CHECK(ready(), kInternal, "windowed step without enough audio");
    Pending p;
    WindowedStep& s = p.s;
    const int64_t n_total = received_;
    s.last = finished_ && next_chunk_ + chunk_ + right_ >= n_total;
    const int64_t capacity = left_ + chunk_ + right_;
    int64_t start;
    if (!s.last) {
        p.chunk_end = next_chunk_ + chunk_;
        s.buffer_end = p.chunk_end + right_;
        start = std::max<int64_t>(0, s.buffer_end - capacity);
    } else {
        p.chunk_end = n_total;
        s.buffer_end = n_total;
        start = std::max<int64_t>(0, n_total - capacity);
        // Default: keep the window on the encoder-frame grid (NeMo cuts it to end at the input's end).
        if (!opt_.nemo_compat) start = std::min(next_chunk_, (start + frame_samples_ - 1) / frame_samples_ * frame_samples_);
    }
    s.buffer_start = start;
    p.left = next_chunk_ - start;
    p.chunk = p.chunk_end - next_chunk_;
    const float* window = buffer_.data() + (start - buffer_offset_);
    // The whole model on the window, as an independent utterance. Features on the stepping device (cuFFT on CUDA):
    // the window is re-featurised every step.
    p.feats = model_->frontend().compute(ctx, window, s.buffer_end - start);
    s.left_frames = static_cast<int>(p.left / frame_samples_);
    s.first_frame = state_.frames_decoded;
    return p;
}

int64_t WindowedStreamer::place(Pending& p, const Tensor& enc_rows, int enc_len) const {
    WindowedStep& s = p.s;
    if (s.last && !opt_.nemo_compat) {
        s.out_len = std::max(0, enc_len - s.left_frames);
    } else {
        s.out_len = static_cast<int>(p.chunk / frame_samples_);
    }
    const int64_t t = enc_rows.dim(0);
    const int64_t avail = std::max<int64_t>(t - s.left_frames, 0);
    Tensor frames = enc_rows.slice0(std::min<int64_t>(s.left_frames, t), t);
    s.encoded = frames.clone();  // on the stepping device, no wait: the encoder's output buffer is reused next step
    s.out_len = static_cast<int>(std::min<int64_t>(s.out_len, avail));
    // Frames projected: the chunk and the right context (valid rows only).
    return std::max<int64_t>(std::min<int64_t>(avail, std::max<int64_t>(enc_len - s.left_frames, 0)), s.out_len);
}

void WindowedStreamer::advance(const Pending& p) {
    next_chunk_ = p.chunk_end;
    if (p.s.last) done_ = true;
    // Keep only what later windows can reach.
    const int64_t keep_from = std::max<int64_t>(0, next_chunk_ - (left_ + chunk_ + right_));
    if (keep_from > buffer_offset_) {
        buffer_.erase(buffer_.begin(), buffer_.begin() + (keep_from - buffer_offset_));
        buffer_offset_ = keep_from;
    }
}

WindowedStep WindowedStreamer::step(const DeviceRunner& runner, bool with_lookahead) {
    std::vector<WindowedStreamer*> one{this};
    return std::move(step_many(runner, one, with_lookahead)[0]);
}

std::vector<WindowedStep> WindowedStreamer::step_many(const DeviceRunner& runner,
                                                      const std::vector<WindowedStreamer*>& streamers,
                                                      bool with_lookahead) {
    const ExecContext& ctx = runner.ctx();
    const int64_t n = static_cast<int64_t>(streamers.size());
    std::vector<WindowedStep> out;
    if (n == 0) return out;
    const Model& m = *streamers[0]->model_;
    std::vector<Pending> pending;
    std::vector<Tensor> feats;
    for (WindowedStreamer* w : streamers) {
        pending.push_back(w->prepare(ctx));
        feats.push_back(pending.back().feats);
    }
    // The windows as one batch (each item its own length and masks: the same as encoding it alone).
    std::vector<int> lengths;
    const AttentionContext att = m.encoder().attention_context(0);
    // A lone full-size window (the steady state of one stream) runs as a captured graph on CUDA; windows of other
    // sizes (a stream's first and last) and batches of windows run eagerly.
    const WindowedStreamer& w0 = *streamers[0];
    const bool steady = n == 1 && !pending[0].s.last &&
                        pending[0].s.buffer_end - pending[0].s.buffer_start == w0.left_ + w0.chunk_ + w0.right_;
    Tensor enc = steady ? runner.encode(feats[0], lengths, att) : m.encoder().forward(ctx, feats, lengths, att);
    const int64_t t_max = enc.dim(1), d = enc.dim(2);
    std::vector<int64_t> n_proj(n);
    int64_t proj_max = 0;
    for (int64_t b = 0; b < n; ++b) {
        Tensor rows = enc.slice0(b, b + 1).reshape({t_max, d}).slice0(0, lengths[b]);
        n_proj[b] = streamers[b]->place(pending[b], rows, lengths[b]);
        proj_max = std::max(proj_max, n_proj[b]);
    }
    // Project each item's chunk and right-context frames; decode every chunk as one batch, then (optionally) peek
    // at each right context from a copy of its state: tentative tokens the next step redoes.
    const Joint& joint = m.joint();
    const int64_t jh = joint.hidden();
    Tensor f = Tensor::zeros({n, std::max<int64_t>(proj_max, 1), jh}, DType::kF32, ctx.device);
    for (int64_t b = 0; b < n; ++b) {
        if (n_proj[b] == 0) continue;
        const WindowedStep& s = pending[b].s;
        Tensor src = enc.slice0(b, b + 1).reshape({t_max, d}).slice0(s.left_frames, s.left_frames + n_proj[b]);
        Tensor dst = f.slice0(b, b + 1).reshape({f.dim(1), jh}).slice0(0, n_proj[b]);
        joint.project_encoder(ctx, src, dst);
    }
    std::vector<DecoderState> states;
    std::vector<int> out_len;
    for (int64_t b = 0; b < n; ++b) {
        states.push_back(streamers[b]->state_);
        out_len.push_back(pending[b].s.out_len);
    }
    std::vector<std::vector<Token>> tokens;
    runner.decode(f, out_len, states, tokens);
    std::vector<int64_t> peek_items;
    for (int64_t b = 0; b < n; ++b) {
        streamers[b]->state_ = states[b];
        pending[b].s.tokens = std::move(tokens[b]);
        if (with_lookahead && !pending[b].s.last && n_proj[b] > pending[b].s.out_len) peek_items.push_back(b);
    }
    if (!peek_items.empty()) {
        int64_t rest_max = 0;
        for (int64_t b : peek_items) rest_max = std::max(rest_max, n_proj[b] - pending[b].s.out_len);
        const int64_t np = static_cast<int64_t>(peek_items.size());
        Tensor rest = Tensor::zeros({np, rest_max, jh}, DType::kF32, ctx.device);
        std::vector<DecoderState> peek;
        std::vector<int> rest_len;
        for (int64_t i = 0; i < np; ++i) {
            const int64_t b = peek_items[i], from = pending[b].s.out_len, k = n_proj[b] - from;
            Tensor dst = rest.slice0(i, i + 1).reshape({rest_max, jh}).slice0(0, k);
            ops::copy_(ctx, dst, f.slice0(b, b + 1).reshape({f.dim(1), jh}).slice0(from, n_proj[b]));
            peek.push_back(streamers[b]->state_);
            rest_len.push_back(static_cast<int>(k));
        }
        std::vector<std::vector<Token>> tentative;
        runner.decode(rest, rest_len, peek, tentative);
        for (int64_t i = 0; i < np; ++i) pending[peek_items[i]].s.lookahead = std::move(tentative[i]);
    }
    for (int64_t b = 0; b < n; ++b) {
        streamers[b]->advance(pending[b]);
        out.push_back(std::move(pending[b].s));
    }
    return out;
}

}  // namespace parakeet
