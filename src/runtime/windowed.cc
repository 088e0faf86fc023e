#include "runtime/windowed.h"

#include <algorithm>
#include <cmath>

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

WindowedStep WindowedStreamer::step(const DeviceRunner& runner, bool with_lookahead) {
    const ExecContext& ctx = runner.ctx();
    PK_CHECK(ready(), kInternal, "windowed step without enough audio");
    WindowedStep s;
    const int64_t n_total = received_;
    s.last = finished_ && next_chunk_ + chunk_ + right_ >= n_total;
    const int64_t capacity = left_ + chunk_ + right_;
    int64_t chunk_end, start;
    if (!s.last) {
        chunk_end = next_chunk_ + chunk_;
        s.buffer_end = chunk_end + right_;
        start = std::max<int64_t>(0, s.buffer_end - capacity);
    } else {
        chunk_end = n_total;
        s.buffer_end = n_total;
        start = std::max<int64_t>(0, n_total - capacity);
        // Default: keep the window on the encoder-frame grid (NeMo cuts it to end at the input's end).
        if (!opt_.nemo_compat) start = std::min(next_chunk_, (start + frame_samples_ - 1) / frame_samples_ * frame_samples_);
    }
    s.buffer_start = start;
    const int64_t left = next_chunk_ - start, chunk = chunk_end - next_chunk_;
    const float* window = buffer_.data() + (start - buffer_offset_);
    const int64_t window_len = s.buffer_end - start;

    // The whole model on the window, as an independent utterance.
    // Features on the stepping device (cuFFT on CUDA): the window is re-featurised every step.
    Tensor feats = model_->frontend().compute(ctx, window, window_len);
    std::vector<int> lengths;
    Tensor enc = model_->encoder().forward(ctx, {feats}, lengths, model_->encoder().attention_context(0));
    const int enc_len = lengths[0];
    s.left_frames = static_cast<int>(left / frame_samples_);
    if (s.last && !opt_.nemo_compat) {
        s.out_len = std::max(0, enc_len - s.left_frames);
    } else {
        s.out_len = static_cast<int>(chunk / frame_samples_);
    }
    const int64_t d = model_->config().encoder.d_model;
    const int64_t avail = std::max<int64_t>(enc.dim(1) - s.left_frames, 0);
    Tensor frames = enc.reshape({enc.dim(1), d}).slice0(std::min<int64_t>(s.left_frames, enc.dim(1)), enc.dim(1));
    s.encoded = frames.to(Device{});
    s.out_len = static_cast<int>(std::min<int64_t>(s.out_len, avail));
    s.first_frame = state_.frames_decoded;

    // Project the chunk and right-context frames once, on the device; decode the chunk, then (optionally) peek at
    // the right context from a copy of the state: tentative tokens the next step redoes.
    const Joint& joint = model_->joint();
    const int64_t n_proj = std::max<int64_t>(std::min<int64_t>(avail, std::max<int64_t>(enc_len - s.left_frames, 0)),
                                             s.out_len);
    Tensor f = Tensor::empty({1, n_proj, joint.hidden()}, DType::kF32, ctx.device);
    if (n_proj > 0) {
        Tensor f2 = f.reshape({n_proj, joint.hidden()});
        joint.project_encoder(ctx, frames.slice0(0, n_proj), f2);
    }
    std::vector<DecoderState> states{state_};
    std::vector<std::vector<Token>> tokens;
    runner.decode(f, {s.out_len}, states, tokens);
    state_ = states[0];
    s.tokens = std::move(tokens[0]);
    if (with_lookahead && !s.last && n_proj > s.out_len) {
        Tensor rest = f.reshape({n_proj, joint.hidden()}).slice0(s.out_len, n_proj);
        std::vector<DecoderState> peek{state_};
        std::vector<std::vector<Token>> tentative;
        runner.decode(rest.reshape({1, n_proj - s.out_len, joint.hidden()}),
                      {static_cast<int>(n_proj - s.out_len)}, peek, tentative);
        s.lookahead = std::move(tentative[0]);
    }

    next_chunk_ = chunk_end;
    if (s.last) done_ = true;
    // Keep only what later windows can reach.
    const int64_t keep_from = std::max<int64_t>(0, next_chunk_ - capacity);
    if (keep_from > buffer_offset_) {
        buffer_.erase(buffer_.begin(), buffer_.begin() + (keep_from - buffer_offset_));
        buffer_offset_ = keep_from;
    }
    return s;
}

}  // namespace parakeet
