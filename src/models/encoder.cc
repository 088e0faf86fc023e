#include "models/encoder.h"

#include <algorithm>
#include <cmath>

#include "ops/ops.h"

namespace parakeet {

namespace {

// BatchNorm (eval) folded into the depthwise conv: w' = w·s, b' = (b - mean)·s + beta, s = gamma/sqrt(var+eps).
void fold_batch_norm(const Tensor& dw, const Tensor& dw_bias, const Tensor& gamma, const Tensor& beta,
                     const Tensor& mean, const Tensor& var, int64_t channels, int64_t kernel, Tensor& w_out,
                     Tensor& b_out) {
    w_out = Tensor::empty({channels, kernel});
    b_out = Tensor::empty({channels});
    for (int64_t c = 0; c < channels; ++c) {
        const float s = gamma.data<float>()[c] / std::sqrt(var.data<float>()[c] + 1e-5f);
        for (int64_t k = 0; k < kernel; ++k) w_out.data<float>()[c * kernel + k] = dw.data<float>()[c * kernel + k] * s;
        const float b = dw_bias.defined() ? dw_bias.data<float>()[c] : 0.f;
        b_out.data<float>()[c] = (b - mean.data<float>()[c]) * s + beta.data<float>()[c];
    }
}

}  // namespace

FastConformerEncoder::FastConformerEncoder(const EncoderConfig& c, const WeightStore& ws) : config_(c) {
    n_stages_ = 0;
    for (int f = c.subsampling_factor; f > 1; f /= 2) ++n_stages_;
    const int64_t d = c.d_model, ch = c.subsampling_conv_channels, ff = d * c.ff_expansion_factor;
    const int64_t dk = d / c.n_heads, k = c.conv_kernel_size;
    int64_t freq = c.feat_in;
    for (int s = 0; s < n_stages_; ++s) freq = (freq - 1) / 2 + 1;
    conv0_w_ = ws.get("encoder.pre_encode.conv.0.weight", {ch, 1, 3, 3});
    conv0_b_ = ws.get("encoder.pre_encode.conv.0.bias", {ch});
    for (int s = 1; s < n_stages_; ++s) {
        dw_w_.push_back(ws.get(fmt::format("encoder.pre_encode.conv.{}.weight", 3 * s - 1), {ch, 1, 3, 3}));
        dw_b_.push_back(ws.get(fmt::format("encoder.pre_encode.conv.{}.bias", 3 * s - 1), {ch}));
        pw_w_.push_back(ws.get(fmt::format("encoder.pre_encode.conv.{}.weight", 3 * s), {ch, ch, 1, 1}).reshape({ch, ch}));
        pw_b_.push_back(ws.get(fmt::format("encoder.pre_encode.conv.{}.bias", 3 * s), {ch}));
    }
    out_w_ = ws.get("encoder.pre_encode.out.weight", {d, ch * freq});
    out_b_ = ws.get("encoder.pre_encode.out.bias", {d});
    Tensor shared_u, shared_v;
    if (!c.untie_biases) {
        shared_u = ws.get("encoder.pos_bias_u", {c.n_heads, dk});
        shared_v = ws.get("encoder.pos_bias_v", {c.n_heads, dk});
    }
    const bool b = c.use_bias;
    for (int l = 0; l < c.n_layers; ++l) {
        const std::string p = fmt::format("encoder.layers.{}.", l);
        auto get = [&](const std::string& n, const Shape& s) { return ws.get(p + n, s); };
        auto bias = [&](const std::string& n, const Shape& s) { return b ? ws.get(p + n, s) : Tensor(); };
        ConformerLayerWeights w;
        w.ff1_norm_w = get("norm_feed_forward1.weight", {d});
        w.ff1_norm_b = get("norm_feed_forward1.bias", {d});
        w.ff1_w1 = get("feed_forward1.linear1.weight", {ff, d});
        w.ff1_b1 = bias("feed_forward1.linear1.bias", {ff});
        w.ff1_w2 = get("feed_forward1.linear2.weight", {d, ff});
        w.ff1_b2 = bias("feed_forward1.linear2.bias", {d});
        w.att_norm_w = get("norm_self_att.weight", {d});
        w.att_norm_b = get("norm_self_att.bias", {d});
        w.q_w = get("self_attn.linear_q.weight", {d, d});
        w.q_b = bias("self_attn.linear_q.bias", {d});
        w.k_w = get("self_attn.linear_k.weight", {d, d});
        w.k_b = bias("self_attn.linear_k.bias", {d});
        w.v_w = get("self_attn.linear_v.weight", {d, d});
        w.v_b = bias("self_attn.linear_v.bias", {d});
        w.out_w = get("self_attn.linear_out.weight", {d, d});
        w.out_b = bias("self_attn.linear_out.bias", {d});
        w.pos_w = get("self_attn.linear_pos.weight", {d, d});
        w.pos_bias_u = c.untie_biases ? get("self_attn.pos_bias_u", {c.n_heads, dk}) : shared_u;
        w.pos_bias_v = c.untie_biases ? get("self_attn.pos_bias_v", {c.n_heads, dk}) : shared_v;
        w.conv_norm_w = get("norm_conv.weight", {d});
        w.conv_norm_b = get("norm_conv.bias", {d});
        w.pw1_w = get("conv.pointwise_conv1.weight", {2 * d, d, 1}).reshape({2 * d, d});
        w.pw1_b = bias("conv.pointwise_conv1.bias", {2 * d});
        fold_batch_norm(get("conv.depthwise_conv.weight", {d, 1, k}), bias("conv.depthwise_conv.bias", {d}),
                        get("conv.batch_norm.weight", {d}), get("conv.batch_norm.bias", {d}),
                        get("conv.batch_norm.running_mean", {d}), get("conv.batch_norm.running_var", {d}), d, k,
                        w.dw_w, w.dw_b);
        w.pw2_w = get("conv.pointwise_conv2.weight", {d, d, 1}).reshape({d, d});
        w.pw2_b = bias("conv.pointwise_conv2.bias", {d});
        w.ff2_norm_w = get("norm_feed_forward2.weight", {d});
        w.ff2_norm_b = get("norm_feed_forward2.bias", {d});
        w.ff2_w1 = get("feed_forward2.linear1.weight", {ff, d});
        w.ff2_b1 = bias("feed_forward2.linear1.bias", {ff});
        w.ff2_w2 = get("feed_forward2.linear2.weight", {d, ff});
        w.ff2_b2 = bias("feed_forward2.linear2.bias", {d});
        w.out_norm_w = get("norm_out.weight", {d});
        w.out_norm_b = get("norm_out.bias", {d});
        layers_.push_back(std::move(w));
    }
}

int FastConformerEncoder::encoded_length(int n_frames) const {
    int len = n_frames;
    for (int s = 0; s < n_stages_; ++s) len = len <= 0 ? 0 : (len - 1) / 2 + 1;
    return len;
}

Tensor FastConformerEncoder::subsample(const ExecContext& ctx, const Tensor& features) const {
    const int64_t t = features.dim(0), f = features.dim(1), ch = config_.subsampling_conv_channels;
    const int64_t d = config_.d_model;
    const Device dev = ctx.device;
    if (t == 0) return Tensor::zeros({0, d}, DType::kF32, dev);
    // [T, F] is already the [1, T, F] single-channel image NeMo convolves (height = time, width = mel).
    Tensor x = features.to(dev).reshape({1, t, f});
    int64_t tt = (t - 1) / 2 + 1, ft = (f - 1) / 2 + 1;
    Tensor y = Tensor::empty({ch, tt, ft}, DType::kF32, dev);
    ops::conv2d_3x3_s2(ctx, x, conv0_w_, conv0_b_, false, y);
    ops::relu_(ctx, y);
    for (int s = 1; s < n_stages_; ++s) {
        const int64_t t2 = (tt - 1) / 2 + 1, f2 = (ft - 1) / 2 + 1;
        Tensor z = Tensor::empty({ch, t2, f2}, DType::kF32, dev);
        ops::conv2d_3x3_s2(ctx, y, dw_w_[s - 1], dw_b_[s - 1], true, z);
        // Pointwise conv: [C, C] · [C, T2·F2] + bias per channel.
        Tensor zp = Tensor::empty({ch, t2 * f2}, DType::kF32, dev);
        ops::matmul(ctx, pw_w_[s - 1], z.reshape({ch, t2 * f2}), zp);
        ops::add_row_bias_(ctx, zp, pw_b_[s - 1]);
        ops::relu_(ctx, zp);
        y = zp.reshape({ch, t2, f2});
        tt = t2;
        ft = f2;
    }
    // [C, T', F'] -> [T', C·F'] channel-major, then Linear to d_model.
    Tensor flat = Tensor::empty({tt, ch * ft}, DType::kF32, dev);
    ops::flatten_channels(ctx, y, flat);
    Tensor out = Tensor::empty({tt, d}, DType::kF32, dev);
    ops::linear(ctx, flat, out_w_, &out_b_, out);
    if (config_.xscaling) ops::scale_(ctx, out, static_cast<float>(std::sqrt(static_cast<double>(d))));
    return out;
}

void FastConformerEncoder::layer_forward(const ExecContext& ctx, const ConformerLayerWeights& w, Tensor& x,
                                         const Tensor& pos, int64_t pos_first, const std::vector<int>& lengths,
                                         const AttentionContext& att) const {
    const int64_t batch = x.dim(0), t = x.dim(1), d = x.dim(2);
    const int64_t ff = d * config_.ff_expansion_factor;
    const Device dev = ctx.device;
    auto empty = [dev](const Shape& shape) { return Tensor::empty(shape, DType::kF32, dev); };
    Tensor norm = empty({batch, t, d});
    Tensor hidden = empty({batch, t, ff});
    Tensor tmp = empty({batch, t, d});

    auto feed_forward = [&](const Tensor& nw, const Tensor& nb, const Tensor& w1, const Tensor& b1,
                            const Tensor& w2, const Tensor& b2) {
        ops::layer_norm(ctx, x, nw, nb, 1e-5f, norm);
        ops::linear(ctx, norm, w1, b1.defined() ? &b1 : nullptr, hidden);
        ops::silu_(ctx, hidden);
        ops::linear(ctx, hidden, w2, b2.defined() ? &b2 : nullptr, tmp);
        ops::add_scaled_(ctx, x, tmp, 0.5f);
    };

    // FF1 (half residual).
    feed_forward(w.ff1_norm_w, w.ff1_norm_b, w.ff1_w1, w.ff1_b1, w.ff1_w2, w.ff1_b2);

    // Self-attention.
    ops::layer_norm(ctx, x, w.att_norm_w, w.att_norm_b, 1e-5f, norm);
    Tensor q = empty({batch, t, d}), k = empty({batch, t, d}), v = empty({batch, t, d});
    ops::linear(ctx, norm, w.q_w, w.q_b.defined() ? &w.q_b : nullptr, q);
    ops::linear(ctx, norm, w.k_w, w.k_b.defined() ? &w.k_b : nullptr, k);
    ops::linear(ctx, norm, w.v_w, w.v_b.defined() ? &w.v_b : nullptr, v);
    Tensor p = empty({pos.dim(0), d});
    ops::linear(ctx, pos, w.pos_w, nullptr, p);
    Tensor att_out = empty({batch, t, d});
    ops::AttentionParams params;
    params.n_heads = config_.n_heads;
    params.att_left = att.left;
    params.att_right = att.right;
    params.key_end = lengths.data();
    params.q_valid = lengths.data();
    params.pos_first = pos_first;
    ops::rel_pos_attention(ctx, q, k, v, p, w.pos_bias_u, w.pos_bias_v, params, att_out);
    ops::linear(ctx, att_out, w.out_w, w.out_b.defined() ? &w.out_b : nullptr, tmp);
    ops::add_scaled_(ctx, x, tmp, 1.f);

    // Convolution module: pointwise (2d) -> GLU -> pad mask -> depthwise+BN -> SiLU -> pointwise.
    ops::layer_norm(ctx, x, w.conv_norm_w, w.conv_norm_b, 1e-5f, norm);
    Tensor pw1 = empty({batch, t, 2 * d});
    ops::linear(ctx, norm, w.pw1_w, w.pw1_b.defined() ? &w.pw1_b : nullptr, pw1);
    Tensor glu = empty({batch, t, d});
    ops::glu(ctx, pw1, glu);
    ops::zero_after_lengths_(ctx, glu, lengths.data());
    Tensor dw = empty({batch, t, d});
    ops::depthwise_conv1d(ctx, glu, w.dw_w, &w.dw_b, config_.conv_context_size[0], dw);
    ops::silu_(ctx, dw);
    ops::linear(ctx, dw, w.pw2_w, w.pw2_b.defined() ? &w.pw2_b : nullptr, tmp);
    ops::add_scaled_(ctx, x, tmp, 1.f);

    // FF2 (half residual), then the output norm.
    feed_forward(w.ff2_norm_w, w.ff2_norm_b, w.ff2_w1, w.ff2_b1, w.ff2_w2, w.ff2_b2);
    ops::layer_norm(ctx, x, w.out_norm_w, w.out_norm_b, 1e-5f, norm);
    std::swap(x, norm);
}

Tensor FastConformerEncoder::forward(const ExecContext& ctx, const std::vector<Tensor>& features,
                                     std::vector<int>& lengths, const AttentionContext& att,
                                     const TensorSink& sink) const {
    const int64_t batch = static_cast<int64_t>(features.size()), d = config_.d_model;
    std::vector<Tensor> sub(batch);
    lengths.assign(batch, 0);
    int64_t t_max = 0;
    for (int64_t b = 0; b < batch; ++b) {
        sub[b] = subsample(ctx, features[b]);
        lengths[b] = static_cast<int>(sub[b].dim(0));
        t_max = std::max<int64_t>(t_max, lengths[b]);
    }
    Tensor x = Tensor::zeros({batch, t_max, d}, DType::kF32, ctx.device);
    for (int64_t b = 0; b < batch; ++b) {
        if (!lengths[b]) continue;
        Tensor dst = x.slice0(b, b + 1).reshape({t_max, d}).slice0(0, lengths[b]);
        ops::copy_(ctx, dst, sub[b]);
    }
    if (t_max == 0) return x;
    if (sink) sink("pre_encode_out", x.to(Device{}));
    // Positional rows for distances t_max-1 ... -(t_max-1), computed for the length at hand.
    // With a limited context only the distances the window reaches are needed (long audio).
    const int64_t pos_first = att.left >= 0 ? std::min<int64_t>(att.left, t_max - 1) : t_max - 1;
    const int64_t pos_last = att.right >= 0 ? std::min<int64_t>(att.right, t_max - 1) : t_max - 1;
    const int64_t n_pos = pos_first + pos_last + 1;
    Tensor pos_host = Tensor::empty({n_pos, d});
    ops::rel_positions(pos_first, n_pos, static_cast<int>(d), pos_host);
    Tensor pos = pos_host.to(ctx.device);
    if (sink) {
        sink("pos_enc_x", x.to(Device{}));
        sink("pos_emb", pos_host.reshape({1, n_pos, d}));
    }
    for (size_t l = 0; l < layers_.size(); ++l) {
        layer_forward(ctx, layers_[l], x, pos, pos_first, lengths, att);
        if (sink) sink(fmt::format("layer{}_out", l), x.to(Device{}));
    }
    return x;
}

}  // namespace parakeet
