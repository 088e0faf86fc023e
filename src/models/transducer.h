// Transducer prediction network and joint (NeMo RNNTDecoder / RNNTJoint, nemo/collections/asr/modules/rnnt.py).
#pragma once

#include <vector>

#include "core/context.h"
#include "core/tensor.h"
#include "models/config.h"
#include "models/weights.h"

namespace parakeet {

// Multi-layer LSTM over label embeddings. Gate order i, f, g, o; both bias vectors added.
class Predictor {
public:
    Predictor(const DecoderConfig& config, const WeightStore& weights);

    struct State {
        std::vector<float> h, c;  // [n_layers, hidden]
    };
    State initial_state() const;
    // One step on `label` (the blank id gives the blank/pad embedding row): updates state, writes g[hidden].
    void step(int label, State& state, float* g) const;

    int hidden() const { return hidden_; }
    int n_layers() const { return n_layers_; }

private:
    int hidden_, n_layers_, vocab_with_blank_;
    Tensor embed_;                       // [V+1, H]
    std::vector<Tensor> w_ih_, w_hh_;    // [4H, H]
    std::vector<std::vector<float>> b_;  // b_ih + b_hh, [4H]
};

class Joint {
public:
    Joint(const ModelConfig& config, const WeightStore& weights);

    // f[T, J] = enc_proj(enc[T, D]).
    void project_encoder(const ExecContext& ctx, const Tensor& enc, Tensor& f) const;
    // p[J] = pred_proj(g[H]).
    void project_prediction(const float* g, float* p) const;
    // logits[n_outputs] = joint_net(act(f_t + p)); scratch[J].
    void logits(const float* f_t, const float* p, float* scratch, float* out) const;

    int hidden() const { return hidden_; }
    int n_outputs() const { return n_outputs_; }  // vocab + blank + durations
    const Tensor& encoder_weight() const { return enc_w_; }  // [J, D]
    const Tensor& encoder_bias() const { return enc_b_; }    // [J]

private:
    int hidden_, n_outputs_;
    std::string activation_;
    Tensor enc_w_, enc_b_, pred_w_, pred_b_, out_w_, out_b_;
};

}  // namespace parakeet
