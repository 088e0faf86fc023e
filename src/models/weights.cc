#include "models/weights.h"

#include <cmath>

#include "core/error.h"

namespace parakeet {

Tensor WeightStore::get(const std::string& name, const Shape& shape) const {
    auto it = tensors_.find(name);
    PK_CHECK(it != tensors_.end(), kFormat, "checkpoint has no weight '{}' (expected shape {})", name,
             shape_str(shape));
    const Tensor& t = it->second;
    PK_CHECK(t.shape() == shape, kFormat, "weight '{}' has shape {}, expected {}", name, shape_str(t.shape()),
             shape_str(shape));
    PK_CHECK(t.dtype() == DType::kF32 || t.dtype() == DType::kF16 || t.dtype() == DType::kBF16 ||
                 t.dtype() == DType::kF64,
             kFormat, "weight '{}' has dtype {}, expected a floating-point type", name, dtype_name(t.dtype()));
    used_.insert(name);
    return t.to_f32();
}

Tensor WeightStore::get_optional(const std::string& name, const Shape& shape) const {
    return has(name) ? get(name, shape) : Tensor();
}

std::vector<WeightSpec> expected_weights(const ModelConfig& c) {
    std::vector<WeightSpec> w;
    const EncoderConfig& e = c.encoder;
    const int64_t d = e.d_model, ff = d * e.ff_expansion_factor, ch = e.subsampling_conv_channels;
    const int64_t n_bins = c.preprocessor.n_fft / 2 + 1;
    w.push_back({"preprocessor.featurizer.window", {c.preprocessor.win_length()}, true});
    w.push_back({"preprocessor.featurizer.fb", {1, c.preprocessor.features, n_bins}, true});
    int64_t freq = e.feat_in;
    int stages = 0;
    for (int f = e.subsampling_factor; f > 1; f /= 2) ++stages;
    for (int s = 0; s < stages; ++s) freq = e.causal_downsampling ? freq / 2 + 1 : (freq - 1) / 2 + 1;
    w.push_back({"encoder.pre_encode.out.weight", {d, ch * freq}});
    w.push_back({"encoder.pre_encode.out.bias", {d}});
    w.push_back({"encoder.pre_encode.conv.0.weight", {ch, 1, 3, 3}});
    w.push_back({"encoder.pre_encode.conv.0.bias", {ch}});
    for (int s = 1; s < stages; ++s) {
        const int dw = 3 * s - 1, pw = 3 * s;
        w.push_back({fmt::format("encoder.pre_encode.conv.{}.weight", dw), {ch, 1, 3, 3}});
        w.push_back({fmt::format("encoder.pre_encode.conv.{}.bias", dw), {ch}});
        w.push_back({fmt::format("encoder.pre_encode.conv.{}.weight", pw), {ch, ch, 1, 1}});
        w.push_back({fmt::format("encoder.pre_encode.conv.{}.bias", pw), {ch}});
    }
    const bool b = e.use_bias;
    for (int l = 0; l < e.n_layers; ++l) {
        const std::string p = fmt::format("encoder.layers.{}.", l);
        auto add = [&](const std::string& n, Shape s) { w.push_back({p + n, std::move(s)}); };
        add("norm_feed_forward1.weight", {d});
        add("norm_feed_forward1.bias", {d});
        add("feed_forward1.linear1.weight", {ff, d});
        if (b) add("feed_forward1.linear1.bias", {ff});
        add("feed_forward1.linear2.weight", {d, ff});
        if (b) add("feed_forward1.linear2.bias", {d});
        add("norm_conv.weight", {d});
        add("norm_conv.bias", {d});
        add("conv.pointwise_conv1.weight", {2 * d, d, 1});
        if (b) add("conv.pointwise_conv1.bias", {2 * d});
        add("conv.depthwise_conv.weight", {d, 1, e.conv_kernel_size});
        if (b) add("conv.depthwise_conv.bias", {d});
        add("conv.batch_norm.weight", {d});
        add("conv.batch_norm.bias", {d});
        add("conv.batch_norm.running_mean", {d});
        add("conv.batch_norm.running_var", {d});
        add("conv.pointwise_conv2.weight", {d, d, 1});
        if (b) add("conv.pointwise_conv2.bias", {d});
        add("norm_self_att.weight", {d});
        add("norm_self_att.bias", {d});
        // With untie_biases false NeMo shares one parameter, still saved under every layer's key.
        add("self_attn.pos_bias_u", {e.n_heads, d / e.n_heads});
        add("self_attn.pos_bias_v", {e.n_heads, d / e.n_heads});
        for (const char* n : {"linear_q", "linear_k", "linear_v", "linear_out"}) {
            add(fmt::format("self_attn.{}.weight", n), {d, d});
            if (b) add(fmt::format("self_attn.{}.bias", n), {d});
        }
        add("self_attn.linear_pos.weight", {d, d});
        add("norm_feed_forward2.weight", {d});
        add("norm_feed_forward2.bias", {d});
        add("feed_forward2.linear1.weight", {ff, d});
        if (b) add("feed_forward2.linear1.bias", {ff});
        add("feed_forward2.linear2.weight", {d, ff});
        if (b) add("feed_forward2.linear2.bias", {d});
        add("norm_out.weight", {d});
        add("norm_out.bias", {d});
    }
    const int64_t v = c.decoder.vocab_size, h = c.decoder.pred_hidden, j = c.joint.joint_hidden;
    w.push_back({"decoder.prediction.embed.weight", {v + 1, h}});
    for (int l = 0; l < c.decoder.pred_rnn_layers; ++l) {
        w.push_back({fmt::format("decoder.prediction.dec_rnn.lstm.weight_ih_l{}", l), {4 * h, h}});
        w.push_back({fmt::format("decoder.prediction.dec_rnn.lstm.weight_hh_l{}", l), {4 * h, h}});
        w.push_back({fmt::format("decoder.prediction.dec_rnn.lstm.bias_ih_l{}", l), {4 * h}});
        w.push_back({fmt::format("decoder.prediction.dec_rnn.lstm.bias_hh_l{}", l), {4 * h}});
    }
    const int64_t n_out = c.joint.num_classes + 1 + c.joint.num_extra_outputs;
    w.push_back({"joint.pred.weight", {j, h}});
    w.push_back({"joint.pred.bias", {j}});
    w.push_back({"joint.enc.weight", {j, d}});
    w.push_back({"joint.enc.bias", {j}});
    w.push_back({"joint.joint_net.2.weight", {n_out, j}});
    w.push_back({"joint.joint_net.2.bias", {n_out}});
    return w;
}

std::map<std::string, Tensor> random_weights(const ModelConfig& c, uint64_t seed) {
    // Uniform values with the scale of PyTorch's default init (std 1/sqrt(fan_in)); a counter-based
    // generator (splitmix64) so the 600M values of the full model fill in parallel, reproducibly.
    auto mix = [](uint64_t x) {
        x += 0x9e3779b97f4a7c15ull;
        x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
        x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
        return x ^ (x >> 31);
    };
    std::map<std::string, Tensor> out;
    uint64_t stream = seed;
    for (const WeightSpec& s : expected_weights(c)) {
        if (s.optional) continue;
        Tensor t = Tensor::empty(s.shape);
        float* p = t.data<float>();
        const int64_t n = t.numel();
        const int64_t fan_in = s.shape.size() >= 2 ? n / s.shape[0] : 1;
        const bool near_one = s.name.find("running_var") != std::string::npos ||
                              (s.name.find("norm") != std::string::npos && s.name.ends_with(".weight"));
        const float center = near_one ? 1.f : 0.f;
        const float half_width = near_one ? 0.1f
                                 : s.shape.size() == 1
                                     ? 0.05f
                                     : std::sqrt(3.f / static_cast<float>(std::max<int64_t>(fan_in, 1)));
        const uint64_t base = mix(++stream);
#pragma omp parallel for if (n > 65536)
        for (int64_t i = 0; i < n; ++i) {
            const double u = static_cast<double>(mix(base + static_cast<uint64_t>(i)) >> 11) * 0x1.0p-53;
            p[i] = center + half_width * static_cast<float>(2.0 * u - 1.0);
        }
        out.emplace(s.name, std::move(t));
    }
    return out;
}

}  // namespace parakeet
