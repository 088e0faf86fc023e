#include "models/encoder.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <mutex>
#include <optional>
#include <utility>

#include "core/env.h"
#include "ops/conv_geometry.h"
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
    for (int s = 0; s < n_stages_; ++s) freq = stage_size(freq);
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
    // The batched subsampling flattens [F', C] per frame (channels last): the same weight with its columns reordered.
    out_w_cl_ = Tensor::empty({d, ch * freq});
    for (int64_t o = 0; o < d; ++o)
        for (int64_t cc = 0; cc < ch; ++cc)
            for (int64_t f = 0; f < freq; ++f)
                out_w_cl_.data<float>()[o * ch * freq + f * ch + cc] = out_w_.data<float>()[o * ch * freq + cc * freq + f];
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
        w.pos_bias_u = get("self_attn.pos_bias_u", {c.n_heads, dk});
        w.pos_bias_v = get("self_attn.pos_bias_v", {c.n_heads, dk});
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

int64_t FastConformerEncoder::stage_size(int64_t n) const {
    // Stride-2 3x3 conv: padding 1/1 (symmetric) or 2 before, 1 after (CausalConv2D).
    return conv3x3_s2_size(n, config_.causal_downsampling ? 2 : 1);
}

int FastConformerEncoder::encoded_length(int n_frames) const {
    // NeMo calc_length: floor((len + pads - 3) / 2 + 1) per stage.
    int64_t len = n_frames;
    for (int s = 0; s < n_stages_; ++s) len = stage_size(len);
    return static_cast<int>(len);
}

Tensor FastConformerEncoder::subsample(const ExecContext& ctx, const Tensor& features) const {
    const int64_t t = features.dim(0), f = features.dim(1), ch = config_.subsampling_conv_channels;
    const int64_t d = config_.d_model;
    const Device dev = ctx.device;
    if (t == 0) return Tensor::zeros({0, d}, DType::kF32, dev);
    // [T, F] is already the [1, T, F] single-channel image NeMo convolves (height = time, width = mel).
    Tensor x = features.to(dev).reshape({1, t, f});
    const int pad_lo = config_.causal_downsampling ? 2 : 1;
    int64_t tt = stage_size(t), ft = stage_size(f);
    Tensor y = Tensor::empty({ch, tt, ft}, DType::kF32, dev);
    ops::conv2d_3x3_s2(ctx, x, conv0_w_, conv0_b_, false, pad_lo, y);
    ops::relu_(ctx, y);
    for (int s = 1; s < n_stages_; ++s) {
        const int64_t t2 = stage_size(tt), f2 = stage_size(ft);
        Tensor z = Tensor::empty({ch, t2, f2}, DType::kF32, dev);
        ops::conv2d_3x3_s2(ctx, y, dw_w_[s - 1], dw_b_[s - 1], true, pad_lo, z);
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

namespace {

// Rows [begin, end) that Python's a[start:stop] selects from n rows (either bound may be absent).
std::pair<int64_t, int64_t> py_slice(int64_t n, std::optional<int64_t> start, std::optional<int64_t> stop) {
    auto norm = [n](int64_t i) { return i < 0 ? std::max<int64_t>(n + i, 0) : std::min(i, n); };
    const int64_t b = start ? norm(*start) : 0, e = stop ? norm(*stop) : n;
    return {b, std::max(b, e)};
}

// View of rows [begin, end) of item b of x[B, T, D].
Tensor rows(const Tensor& x, int64_t b, int64_t begin, int64_t end) {
    return x.slice0(b, b + 1).reshape({x.dim(1), x.dim(2)}).slice0(begin, end);
}

}  // namespace

void FastConformerEncoder::layer_forward(const ExecContext& ctx, const ConformerLayerWeights& w, Tensor& x,
                                         const Tensor& pos, int64_t pos_first, const std::vector<int>& lengths,
                                         const AttentionContext& att, LayerCache* cache, const Tensor& ff1_norm,
                                         const ConformerLayerWeights* next, Tensor* next_ff1_norm) const {
    const int64_t batch = x.dim(0), t = x.dim(1), d = x.dim(2);
    const int64_t ff = d * config_.ff_expansion_factor;
    const Device dev = ctx.device;
    auto empty = [dev](const Shape& shape) { return Tensor::empty(shape, DType::kF32, dev); };
    // The norms and the FFN's hidden activations are GEMM inputs only: on CUDA at fp16/bf16 they are written in
    // 16 bits by the ops that produce them. Residual adds are fused into the following norm.
    const DType act = ops::gemm_input_dtype(ctx);
    Tensor norm = ff1_norm.defined() ? ff1_norm : Tensor::empty({batch, t, d}, act, dev);
    Tensor hidden = Tensor::empty({batch, t, ff}, act, dev);
    Tensor tmp = empty({batch, t, d});

    // tmp = FFN(norm) (the caller adds half of it to x).
    auto feed_forward = [&](const Tensor& w1, const Tensor& b1, const Tensor& w2, const Tensor& b2) {
        ops::linear_silu(ctx, norm, w1, b1.defined() ? &b1 : nullptr, hidden);
        ops::linear(ctx, hidden, w2, b2.defined() ? &b2 : nullptr, tmp);
    };

    // FF1 (half residual).
    if (!ff1_norm.defined()) ops::add_layer_norm_(ctx, x, Tensor(), 0.f, w.ff1_norm_w, w.ff1_norm_b, 1e-5f, norm);
    feed_forward(w.ff1_w1, w.ff1_b1, w.ff1_w2, w.ff1_b2);

    // Self-attention. With a cache, keys/values come from [cache; chunk] (NeMo MultiHeadAttention.update_cache);
    // the cache keeps float32 rows of the norm.
    Tensor att_norm = cache ? empty({batch, t, d}) : norm;
    ops::add_layer_norm_(ctx, x, tmp, 0.5f, w.att_norm_w, w.att_norm_b, 1e-5f, att_norm);
    const int64_t n_cache = cache ? cache->channel.dim(1) : 0;
    Tensor kv_in = att_norm;
    if (cache) {
        kv_in = empty({batch, n_cache + t, d});
        for (int64_t b = 0; b < batch; ++b) {
            Tensor dst_c = rows(kv_in, b, 0, n_cache), dst_x = rows(kv_in, b, n_cache, n_cache + t);
            ops::copy_(ctx, dst_c, rows(cache->channel, b, 0, n_cache));
            ops::copy_(ctx, dst_x, rows(att_norm, b, 0, t));
        }
        // Next cache: [cache[keep:], chunk[:keep]], then its last C rows (Python slicing, as NeMo).
        const auto [c0, c1] = py_slice(n_cache, cache->keep, std::nullopt);
        const auto [x0, x1] = py_slice(t, std::nullopt, cache->keep);
        const int64_t total = (c1 - c0) + (x1 - x0), kept = std::min(total, n_cache), skip = total - kept;
        cache->next_channel = empty({batch, kept, d});
        // The kept rows are the last `kept` of cache[c0:c1] ++ chunk[x0:x1]: at most two contiguous copies.
        const int64_t from_cache = std::max<int64_t>((c1 - c0) - skip, 0);
        const int64_t cache_begin = c1 - from_cache, chunk_begin = x0 + std::max<int64_t>(skip - (c1 - c0), 0);
        for (int64_t b = 0; b < batch; ++b) {
            if (from_cache > 0) {
                Tensor dst = rows(cache->next_channel, b, 0, from_cache);
                ops::copy_(ctx, dst, rows(cache->channel, b, cache_begin, c1));
            }
            if (x1 > chunk_begin) {
                Tensor dst = rows(cache->next_channel, b, from_cache, kept);
                ops::copy_(ctx, dst, rows(att_norm, b, chunk_begin, x1));
            }
        }
    }
    const int64_t n_key = n_cache + t;
    auto opt = [](const Tensor& b) { return b.defined() ? &b : nullptr; };
    Tensor q, k, v;
    // PARAKEET_SEPARATE_QKV=1: three GEMMs as before the joined one (A/B measurements).
    static const bool separate_qkv = env_switch("PARAKEET_SEPARATE_QKV");
    if (!cache && !separate_qkv) {
        // Keys and values come from the same rows as the queries: one GEMM for the three (q, k, v one after
        // another in qkv).
        Tensor qkv = empty({3, batch * t, d});
        const Tensor* const ws[3] = {&w.q_w, &w.k_w, &w.v_w};
        const Tensor* const bs[3] = {opt(w.q_b), opt(w.k_b), opt(w.v_b)};
        ops::linear3(ctx, att_norm, ws, bs, qkv);
        q = qkv.slice0(0, 1).reshape({batch, t, d});
        k = qkv.slice0(1, 2).reshape({batch, t, d});
        v = qkv.slice0(2, 3).reshape({batch, t, d});
    } else {
        q = empty({batch, t, d});
        k = empty({batch, n_key, d});
        v = empty({batch, n_key, d});
        ops::linear(ctx, att_norm, w.q_w, opt(w.q_b), q);
        ops::linear(ctx, kv_in, w.k_w, opt(w.k_b), k);
        ops::linear(ctx, kv_in, w.v_w, opt(w.v_b), v);
    }
    Tensor p = empty({pos.dim(0), d});
    ops::linear(ctx, pos, w.pos_w, nullptr, p);
    // In the output linear's input dtype (16 bits on CUDA fp16/bf16): no conversion pass before its GEMM
    // (PARAKEET_F32_ATTENTION_OUT=1: float32, converted by the linear, for A/B measurements).
    static const bool f32_att_out = env_switch("PARAKEET_F32_ATTENTION_OUT");
    Tensor att_out = Tensor::empty({batch, t, d}, f32_att_out ? DType::kF32 : act, dev);
    std::vector<int> key_end(batch);
    for (int64_t b = 0; b < batch; ++b) key_end[b] = static_cast<int>(n_cache) + lengths[b];
    ops::AttentionParams params;
    params.n_heads = config_.n_heads;
    params.n_cache = static_cast<int>(n_cache);
    if (att.chunked_limited) {
        params.att_chunk = att.right + 1;
        params.att_left_chunks = att.left < 0 ? 10000 : att.left / params.att_chunk;
    } else {
        params.att_left = att.left;
        params.att_right = att.right;
    }
    params.key_begin = cache ? cache->key_begin.data() : nullptr;
    params.key_end = key_end.data();
    params.q_valid = lengths.data();
    params.pos_first = pos_first;
    ops::rel_pos_attention(ctx, q, k, v, p, w.pos_bias_u, w.pos_bias_v, params, att_out);
    ops::linear(ctx, att_out, w.out_w, w.out_b.defined() ? &w.out_b : nullptr, tmp);

    // Convolution module: pointwise (2d) -> GLU -> pad mask -> depthwise+BN -> SiLU -> pointwise.
    ops::add_layer_norm_(ctx, x, tmp, 1.f, w.conv_norm_w, w.conv_norm_b, 1e-5f, norm);
    Tensor pw1 = empty({batch, t, 2 * d});
    ops::linear(ctx, norm, w.pw1_w, w.pw1_b.defined() ? &w.pw1_b : nullptr, pw1);
    // Without a cache the fused conv writes the pointwise GEMM's input dtype (16 bits on CUDA fp16/bf16).
    Tensor dw = cache ? empty({batch, t, d}) : Tensor::empty({batch, t, d}, act, dev);
    if (!cache) {
        ops::glu_conv_silu(ctx, pw1, lengths.data(), w.dw_w, w.dw_b, config_.conv_context_size[0], dw);
    } else {
        Tensor glu = empty({batch, t, d});
        ops::glu(ctx, pw1, glu);
        ops::zero_after_lengths_(ctx, glu, lengths.data());
        // NeMo CausalConv1D.update_cache: Gpad = [cache | G | zeros(right)], convolved without padding.
        const int64_t kc = cache->time.dim(1), right = config_.conv_context_size[1];
        Tensor gin = empty({batch, kc + t, d}), gout = empty({batch, kc + t, d});
        for (int64_t b = 0; b < batch; ++b) {
            Tensor dst_c = rows(gin, b, 0, kc), dst_x = rows(gin, b, kc, kc + t);
            ops::copy_(ctx, dst_c, rows(cache->time, b, 0, kc));
            ops::copy_(ctx, dst_x, rows(glu, b, 0, t));
        }
        ops::depthwise_conv1d(ctx, gin, w.dw_w, &w.dw_b, 0, gout);
        // Next cache: Gpad without its last cache_drop columns, then its last Kc columns.
        const int64_t g_len = kc + t + right - std::max(cache->cache_drop, 0);
        cache->next_time = Tensor::zeros({batch, kc, d}, DType::kF32, dev);
        // Rows [g_len - Kc, g_len) of Gpad; those at or past Kc + T are the right padding (zeros).
        const int64_t src0 = std::max<int64_t>(g_len - kc, 0), src1 = std::min<int64_t>(g_len, kc + t);
        const int64_t dst0 = src0 - (g_len - kc);
        for (int64_t b = 0; b < batch; ++b) {
            Tensor dst = rows(dw, b, 0, t);
            ops::copy_(ctx, dst, rows(gout, b, 0, t));
            if (src1 > src0) {
                Tensor row = rows(cache->next_time, b, dst0, dst0 + (src1 - src0));
                ops::copy_(ctx, row, rows(gin, b, src0, src1));
            }
        }
        ops::silu_(ctx, dw);
    }
    ops::linear(ctx, dw, w.pw2_w, w.pw2_b.defined() ? &w.pw2_b : nullptr, tmp);

    // FF2 (half residual), then the output norm (float32: the next layer's input).
    ops::add_layer_norm_(ctx, x, tmp, 1.f, w.ff2_norm_w, w.ff2_norm_b, 1e-5f, norm);
    feed_forward(w.ff2_w1, w.ff2_b1, w.ff2_w2, w.ff2_b2);
    Tensor out = empty({batch, t, d});
    if (next) {
        *next_ff1_norm = Tensor::empty({batch, t, d}, act, dev);
        ops::add_layer_norm2_(ctx, x, tmp, 0.5f, w.out_norm_w, w.out_norm_b, 1e-5f, out, next->ff1_norm_w,
                              next->ff1_norm_b, *next_ff1_norm);
    } else {
        ops::add_layer_norm_(ctx, x, tmp, 0.5f, w.out_norm_w, w.out_norm_b, 1e-5f, out);
    }
    std::swap(x, out);
}

Tensor FastConformerEncoder::position_rows(int64_t first, int64_t count, Device device) const {
    // Streaming steps and fixed-size windows repeat the same table, so it is built and uploaded once (and a
    // captured graph finds it on the device without a host copy).
    std::lock_guard<std::mutex> lock(pos_mu_);
    for (const auto& [key_first, key_count, key_device, rows] : pos_cache_)
        if (key_first == first && key_count == count && key_device == device) return rows;
    const int64_t d = config_.d_model;
    Tensor pos = Tensor::empty({count, d});
    ops::rel_positions(first, count, static_cast<int>(d), pos);
    if (count * d > (int64_t{4} << 20)) return pos.to(device);  // long inputs: not kept (up to 8 of 16 MB each)
    if (pos_cache_.size() >= 8) pos_cache_.erase(pos_cache_.begin());
    pos_cache_.emplace_back(first, count, device, pos.to(device));
    return std::get<3>(pos_cache_.back());
}

Tensor FastConformerEncoder::stream_positions(int64_t n, Device device) const {
    return position_rows(n - 1, 2 * n - 1, device);
}

AttentionContext FastConformerEncoder::attention_context(int context) const {
    PK_CHECK(context >= 0 && context < static_cast<int>(config_.att_context_size.size()), kInvalidArgument,
             "attention context index {} out of range (model has {})", context, config_.att_context_size.size());
    const auto& acs = config_.att_context_size[context];
    return {acs[0], acs[1], config_.att_context_style == "chunked_limited"};
}

StreamingConfig FastConformerEncoder::streaming_config(int chunk_size, int shift_size, int left_chunks,
                                                       int context) const {
    // NeMo ConformerEncoder.setup_streaming_params (spec 7.1).
    const AttentionContext att = attention_context(context);
    const int s = config_.subsampling_factor, n_layers = config_.n_layers;
    int lookahead, drop;
    if (chunk_size > 0) {
        PK_CHECK(shift_size > 0 && shift_size <= chunk_size, kInvalidArgument,
                 "--shift-size must be in [1, --chunk-size] (got chunk {} shift {})", chunk_size, shift_size);
        lookahead = chunk_size - 1;
        drop = chunk_size - shift_size;
    } else if (att.chunked_limited) {
        lookahead = att.right;
        drop = 0;
    } else {
        lookahead = att.right * n_layers + config_.conv_context_size[1] * n_layers;
        drop = lookahead;
    }
    StreamingConfig sc;
    sc.cache_drop_size = drop;
    if (chunk_size > 0 && left_chunks >= 0) {
        sc.last_channel_cache_size = left_chunks * chunk_size;
    } else {
        sc.last_channel_cache_size = att.left >= 0 ? att.left : 10000;
    }
    sc.chunk_size[0] = 1 + s * lookahead;
    sc.chunk_size[1] = s + s * lookahead;
    sc.shift_size[0] = 1 + s * (lookahead - drop);
    sc.shift_size[1] = s + s * (lookahead - drop);
    sc.valid_out_len = (sc.shift_size[1] - s) / s + 1;
    sc.pre_encode_cache_size[0] = 0;
    sc.pre_encode_cache_size[1] = s + 1;
    sc.drop_extra_pre_encoded = 1 + (s + 1 - 1) / s;
    PK_CHECK(sc.chunk_size[0] > 0 && sc.shift_size[0] > 0, kInvalidArgument,
             "streaming configuration gives non-positive chunk/shift sizes");
    return sc;
}

namespace {
// Swaps the last two dimensions of a CPU tensor [..., A, B] -> [..., B, A].
Tensor swap_last_two(const Tensor& x) {
    Tensor in = x.to(Device{}).to_f32();
    const int64_t a = in.dim(-2), b = in.dim(-1), outer = a * b != 0 ? in.numel() / (a * b) : 0;
    Shape shape = in.shape();
    std::swap(shape[shape.size() - 1], shape[shape.size() - 2]);
    Tensor out = Tensor::empty(shape);
    for (int64_t o = 0; o < outer; ++o)
        for (int64_t i = 0; i < a; ++i)
            for (int64_t j = 0; j < b; ++j) out.data<float>()[(o * b + j) * a + i] = in.data<float>()[(o * a + i) * b + j];
    return out;
}
}  // namespace

Tensor time_cache_from_nemo(const Tensor& nemo) { return swap_last_two(nemo); }
Tensor time_cache_to_nemo(const Tensor& ours) { return swap_last_two(ours); }

EncoderCache FastConformerEncoder::initial_cache(const StreamingConfig& sc, int batch, Device device) const {
    EncoderCache c;
    const int64_t l = config_.n_layers, d = config_.d_model;
    c.channel = Tensor::zeros({l, batch, sc.last_channel_cache_size, d}, DType::kF32, device);
    c.time = Tensor::zeros({l, batch, config_.conv_context_size[0], d}, DType::kF32, device);
    c.channel_len.assign(batch, 0);
    return c;
}

StreamStepOutput FastConformerEncoder::stream_step(const ExecContext& ctx, const StreamingConfig& sc,
                                                   const std::vector<Tensor>& chunks, const std::vector<int>& length,
                                                   EncoderCache& cache, int drop_extra, bool keep_all_outputs,
                                                   int context) const {
    const int64_t batch = static_cast<int64_t>(chunks.size()), d = config_.d_model;
    const int64_t n_layers = config_.n_layers, kc = config_.conv_context_size[0];
    PK_CHECK(static_cast<int64_t>(length.size()) == batch && cache.channel.dim(1) == batch, kInvalidArgument,
             "stream_step: {} chunks, {} lengths, cache for {} streams", batch, length.size(), cache.channel.dim(1));
    const AttentionContext att = attention_context(context);
    // Subsample each chunk, then drop the frames computed from the pre-encode cache.
    std::vector<Tensor> sub(batch);
    std::vector<int> lengths(batch);
    int64_t t = 0;
    for (int64_t b = 0; b < batch; ++b) {
        Tensor full = subsample(ctx, chunks[b].slice0(0, std::min<int64_t>(length[b], chunks[b].dim(0))));
        const int64_t drop = std::min<int64_t>(drop_extra, full.dim(0));
        sub[b] = full.slice0(drop, full.dim(0));
        lengths[b] = static_cast<int>(std::max<int64_t>(encoded_length(length[b]) - drop_extra, 0));
        t = std::max(t, sub[b].dim(0));
    }
    Tensor x = Tensor::zeros({batch, t, d}, DType::kF32, ctx.device);
    for (int64_t b = 0; b < batch; ++b) {
        Tensor dst = rows(x, b, 0, sub[b].dim(0));
        ops::copy_(ctx, dst, sub[b]);
    }
    const int64_t n_cache = cache.channel.dim(2), n = n_cache + t;
    const Tensor pos = ops::to_gemm_input(ctx, stream_positions(n, ctx.device));
    const int keep = static_cast<int>(t) - sc.cache_drop_size;

    // Caches live on the stepping device; a new stream's host caches move there once.
    if (cache.channel.device() != ctx.device) cache.channel = cache.channel.to(ctx.device);
    if (cache.time.device() != ctx.device) cache.time = cache.time.to(ctx.device);
    std::vector<Tensor> next_channel(n_layers), next_time(n_layers);
    for (int64_t l = 0; l < n_layers; ++l) {
        LayerCache lc;
        lc.channel = cache.channel.slice0(l, l + 1).reshape({batch, n_cache, d});
        lc.time = cache.time.slice0(l, l + 1).reshape({batch, kc, d});
        lc.key_begin.resize(batch);
        for (int64_t b = 0; b < batch; ++b)
            lc.key_begin[b] = static_cast<int>(std::clamp<int64_t>(n_cache - cache.channel_len[b], 0, n));
        lc.keep = keep;
        lc.cache_drop = sc.cache_drop_size;
        layer_forward(ctx, layers_[l], x, pos, n - 1, lengths, att, &lc);
        next_channel[l] = lc.next_channel;
        next_time[l] = lc.next_time;
    }
    // Stack the next caches (the channel cache keeps its size except in configurations NeMo slices shorter).
    const int64_t c_next = next_channel[0].dim(1);
    if (c_next != n_cache) cache.channel = Tensor::empty({n_layers, batch, c_next, d}, DType::kF32, ctx.device);
    for (int64_t l = 0; l < n_layers; ++l) {
        Tensor dst_c = cache.channel.slice0(l, l + 1).reshape(next_channel[l].shape());
        ops::copy_(ctx, dst_c, next_channel[l]);
        Tensor dst_t = cache.time.slice0(l, l + 1).reshape(next_time[l].shape());
        ops::copy_(ctx, dst_t, next_time[l]);
    }
    for (int64_t b = 0; b < batch; ++b)
        cache.channel_len[b] = std::min<int64_t>(cache.channel_len[b] + keep, n_cache);

    // streaming_post_process: regular style is always truncated to valid_out_len.
    StreamStepOutput out;
    out.encoded_len = lengths;
    int64_t t_out = t;
    if (sc.valid_out_len > 0 && (!keep_all_outputs || !att.chunked_limited)) {
        t_out = std::min<int64_t>(t, sc.valid_out_len);
        for (int& len : out.encoded_len) len = std::min(len, sc.valid_out_len);
    }
    out.encoded = Tensor::empty({batch, t_out, d}, DType::kF32, ctx.device);
    for (int64_t b = 0; b < batch; ++b) {
        Tensor dst = rows(out.encoded, b, 0, t_out);
        ops::copy_(ctx, dst, rows(x, b, 0, t_out));
    }
    return out;
}

void FastConformerEncoder::subsample_batch(const ExecContext& ctx, const std::vector<Tensor>& features,
                                           Tensor& x) const {
    const int64_t batch = x.dim(0), t_out = x.dim(1), d = config_.d_model, ch = config_.subsampling_conv_channels;
    const Device dev = ctx.device;
    const int pad_lo = config_.causal_downsampling ? 2 : 1;
    int64_t t_max = 0;
    for (const Tensor& f : features) t_max = std::max(t_max, f.dim(0));
    // Rows and bins after each stage, for the padded batch and per item.
    std::vector<int64_t> rows{t_max}, bins{config_.feat_in};
    for (int s = 0; s < n_stages_; ++s) {
        rows.push_back(stage_size(rows.back()));
        bins.push_back(stage_size(bins.back()));
    }
    PK_CHECK(n_stages_ >= 2 && rows.back() == t_out, kInternal, "subsample_batch: {} stages, {} rows for x {}",
             n_stages_, rows.back(), shape_str(x.shape()));
    const DType act = ops::gemm_input_dtype(ctx);
    // Items in groups whose padded features stay near 64 x 10 s, so the stage buffers stay bounded.
    const int64_t group = std::max<int64_t>(1, 65536 / std::max<int64_t>(t_max, 1));
    std::vector<std::vector<int>> len(n_stages_ + 1);
    for (int64_t b0 = 0; b0 < batch; b0 += group) {
        const int64_t g = std::min(group, batch - b0);
        for (auto& l : len) l.assign(g, 0);
        Tensor in = Tensor::empty({g, t_max, config_.feat_in}, DType::kF32, dev);
        for (int64_t i = 0; i < g; ++i) {
            const Tensor& f = features[b0 + i];
            len[0][i] = static_cast<int>(f.dim(0));
            for (int s = 0; s < n_stages_; ++s) len[s + 1][i] = static_cast<int>(stage_size(len[s][i]));
            if (f.dim(0) == 0) continue;
            Tensor dst = in.slice0(i, i + 1).reshape({t_max, config_.feat_in}).slice0(0, f.dim(0));
            ops::copy_(ctx, dst, f.to(dev));
        }
        Tensor y = Tensor::empty({g, rows[2], bins[2], ch}, act, dev);
        ops::subsample_front(ctx, in, len[0].data(), conv0_w_, conv0_b_, dw_w_[0], dw_b_[0], pad_lo, y);
        // The pointwise convs' biases are added by the op that reads their output, before its ReLU.
        Tensor z = Tensor::empty({g, rows[2], bins[2], ch}, DType::kF32, dev);
        ops::linear(ctx, y, pw_w_[0], nullptr, z);
        for (int s = 2; s < n_stages_; ++s) {
            y = Tensor::empty({g, rows[s + 1], bins[s + 1], ch}, act, dev);
            ops::relu_depthwise_conv2d_s2(ctx, z, &pw_b_[s - 2], len[s].data(), dw_w_[s - 1], dw_b_[s - 1], pad_lo, y);
            z = Tensor::empty({g, rows[s + 1], bins[s + 1], ch}, DType::kF32, dev);
            ops::linear(ctx, y, pw_w_[s - 1], nullptr, z);
        }
        Tensor flat = Tensor::empty({g * t_out, bins[n_stages_] * ch}, act, dev);
        ops::relu_to(ctx, z, &pw_b_[n_stages_ - 2], flat);
        Tensor out = x.slice0(b0, b0 + g).reshape({g * t_out, d});
        ops::linear(ctx, flat, out_w_cl_, &out_b_, out);
        Tensor out3 = out.reshape({g, t_out, d});
        ops::zero_after_lengths_(ctx, out3, len[n_stages_].data());
    }
    if (config_.xscaling) ops::scale_(ctx, x, static_cast<float>(std::sqrt(static_cast<double>(d))));
}

Tensor FastConformerEncoder::forward(const ExecContext& ctx, const std::vector<Tensor>& features,
                                     std::vector<int>& lengths, const AttentionContext& att,
                                     const TensorSink& sink) const {
    const int64_t batch = static_cast<int64_t>(features.size()), d = config_.d_model;
    lengths.assign(batch, 0);
    int64_t t_max = 0;
    for (int64_t b = 0; b < batch; ++b) {
        lengths[b] = encoded_length(static_cast<int>(features[b].dim(0)));
        t_max = std::max<int64_t>(t_max, lengths[b]);
    }
    // On CUDA the whole batch goes through the subsampling at once (PARAKEET_PER_ITEM_SUBSAMPLING=1: item by item, as
    // the CPU does, for A/B measurements).
    static const bool per_item = env_switch("PARAKEET_PER_ITEM_SUBSAMPLING");
    Tensor x;
    if (ctx.device.type == DeviceType::kCUDA && n_stages_ >= 2 && !per_item && t_max > 0) {
        x = Tensor::empty({batch, t_max, d}, DType::kF32, ctx.device);
        subsample_batch(ctx, features, x);
    } else {
        x = Tensor::zeros({batch, t_max, d}, DType::kF32, ctx.device);
        for (int64_t b = 0; b < batch; ++b) {
            if (!lengths[b]) continue;
            Tensor sub = subsample(ctx, features[b]);
            PK_CHECK(sub.dim(0) == lengths[b], kInternal, "subsample: {} rows, expected {}", sub.dim(0), lengths[b]);
            Tensor dst = x.slice0(b, b + 1).reshape({t_max, d}).slice0(0, lengths[b]);
            ops::copy_(ctx, dst, sub);
        }
    }
    if (t_max == 0) return x;
    if (sink) sink("pre_encode_out", x.to(Device{}));
    // Positional rows for distances t_max-1 ... -(t_max-1), computed for the length at hand.
    // With a limited context only the distances the window reaches are needed (long audio).
    const bool windowed = !att.chunked_limited;
    const int64_t pos_first = windowed && att.left >= 0 ? std::min<int64_t>(att.left, t_max - 1) : t_max - 1;
    const int64_t pos_last = windowed && att.right >= 0 ? std::min<int64_t>(att.right, t_max - 1) : t_max - 1;
    const int64_t n_pos = pos_first + pos_last + 1;
    // The position table in the GEMMs' input dtype, converted once for every layer's position linear.
    const Tensor pos = ops::to_gemm_input(ctx, position_rows(pos_first, n_pos, ctx.device));
    if (sink) {
        sink("pos_enc_x", x.to(Device{}));
        sink("pos_emb", pos.to(Device{}).reshape({1, n_pos, d}));
    }
    // Each layer's output norm also computes the next layer's first norm (one pass on CUDA;
    // PARAKEET_SEPARATE_NORMS=1: two, for A/B measurements).
    static const bool separate_norms = env_switch("PARAKEET_SEPARATE_NORMS");
    Tensor ff1_norm;
    for (size_t l = 0; l < layers_.size(); ++l) {
        Tensor next_norm;
        const ConformerLayerWeights* next = l + 1 < layers_.size() && !separate_norms ? &layers_[l + 1] : nullptr;
        layer_forward(ctx, layers_[l], x, pos, pos_first, lengths, att, nullptr, ff1_norm, next, &next_norm);
        ff1_norm = next_norm;
        if (sink) sink(fmt::format("layer{}_out", l), x.to(Device{}));
    }
    return x;
}

}  // namespace parakeet
