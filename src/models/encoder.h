// FastConformer encoder (NeMo ConformerEncoder with dw_striding subsampling and rel-pos attention).
// NeMo: nemo/collections/asr/modules/conformer_encoder.py, parts/submodules/{subsampling,conformer_modules,
// multi_head_attention}.py.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "core/context.h"
#include "core/tensor.h"
#include "models/config.h"
#include "models/weights.h"

namespace parakeet {

// Receives named intermediate tensors (NeMo probe names: pre_encode_out, pos_emb, layer0_out, ...).
using TensorSink = std::function<void(const std::string& name, const Tensor& t)>;

// Attention context used for a forward pass (encoder frames, -1 = unlimited).
struct AttentionContext {
    int left = -1;
    int right = -1;
};

struct ConformerLayerWeights {
    Tensor ff1_norm_w, ff1_norm_b, ff1_w1, ff1_b1, ff1_w2, ff1_b2;
    Tensor att_norm_w, att_norm_b, q_w, q_b, k_w, k_b, v_w, v_b, out_w, out_b, pos_w, pos_bias_u, pos_bias_v;
    Tensor conv_norm_w, conv_norm_b, pw1_w, pw1_b, dw_w, dw_b /* BatchNorm folded */, pw2_w, pw2_b;
    Tensor ff2_norm_w, ff2_norm_b, ff2_w1, ff2_b1, ff2_w2, ff2_b2;
    Tensor out_norm_w, out_norm_b;
};

class FastConformerEncoder {
public:
    FastConformerEncoder(const EncoderConfig& config, const WeightStore& weights);

    // Offline forward of a batch. features[b] is [F_b, n_mels] (time-major). Returns [B, T, d_model] with
    // T = max encoded length; lengths[b] receives ceil-subsampled F_b. Rows past a length are padding.
    Tensor forward(const ExecContext& ctx, const std::vector<Tensor>& features, std::vector<int>& lengths,
                   const AttentionContext& att, const TensorSink& sink = nullptr) const;

    // Subsampling of one item: [F, n_mels] -> [ceil(F / factor), d_model] (with xscaling applied).
    Tensor subsample(const ExecContext& ctx, const Tensor& features) const;

    // Encoder length for F feature frames.
    int encoded_length(int n_frames) const;
    const EncoderConfig& config() const { return config_; }

private:
    void layer_forward(const ExecContext& ctx, const ConformerLayerWeights& w, Tensor& x, const Tensor& pos,
                       int64_t pos_first, const std::vector<int>& lengths, const AttentionContext& att) const;

    EncoderConfig config_;
    int n_stages_;
    Tensor conv0_w_, conv0_b_;
    std::vector<Tensor> dw_w_, dw_b_, pw_w_, pw_b_;  // per later stage; pw as [C, C]
    Tensor out_w_, out_b_;
    std::vector<ConformerLayerWeights> layers_;
};

}  // namespace parakeet
