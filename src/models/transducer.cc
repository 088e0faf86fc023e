#include "models/transducer.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>

#include "ops/ops.h"

namespace parakeet {

Predictor::Predictor(const DecoderConfig& c, const WeightStore& ws)
    : hidden_(c.pred_hidden), n_layers_(c.pred_rnn_layers), vocab_with_blank_(c.vocab_size + 1) {
    const int64_t h = hidden_;
    embed_ = ws.get("decoder.prediction.embed.weight", {vocab_with_blank_, h});
    for (int l = 0; l < n_layers_; ++l) {
        const std::string p = "decoder.prediction.dec_rnn.lstm.";
        w_ih_.push_back(ws.get(fmt::format("{}weight_ih_l{}", p, l), {4 * h, h}));
        w_hh_.push_back(ws.get(fmt::format("{}weight_hh_l{}", p, l), {4 * h, h}));
        Tensor bi = ws.get(fmt::format("{}bias_ih_l{}", p, l), {4 * h});
        Tensor bh = ws.get(fmt::format("{}bias_hh_l{}", p, l), {4 * h});
        std::vector<float> b(4 * h);
        for (int64_t i = 0; i < 4 * h; ++i) b[i] = bi.data<float>()[i] + bh.data<float>()[i];
        b_.push_back(std::move(b));
    }
}

Predictor::State Predictor::initial_state() const {
    State s;
    s.h.assign(static_cast<size_t>(n_layers_) * hidden_, 0.f);
    s.c.assign(s.h.size(), 0.f);
    return s;
}

void Predictor::step(int label, State& s, float* g) const {
    PK_CHECK(label >= 0 && label < vocab_with_blank_, kInternal, "predictor label {} out of range", label);
    const int h = hidden_;
    std::vector<float> gates(4 * h), x(embed_.data<float>() + static_cast<int64_t>(label) * h,
                                       embed_.data<float>() + static_cast<int64_t>(label + 1) * h);
    for (int l = 0; l < n_layers_; ++l) {
        float* hl = s.h.data() + l * h;
        float* cl = s.c.data() + l * h;
        std::copy(b_[l].begin(), b_[l].end(), gates.begin());
        cblas_sgemv(CblasRowMajor, CblasNoTrans, 4 * h, h, 1.f, w_ih_[l].data<float>(), h, x.data(), 1, 1.f,
                    gates.data(), 1);
        cblas_sgemv(CblasRowMajor, CblasNoTrans, 4 * h, h, 1.f, w_hh_[l].data<float>(), h, hl, 1, 1.f, gates.data(),
                    1);
        for (int i = 0; i < h; ++i) {
            const float ig = 1.f / (1.f + std::exp(-gates[i]));
            const float fg = 1.f / (1.f + std::exp(-gates[h + i]));
            const float gg = std::tanh(gates[2 * h + i]);
            const float og = 1.f / (1.f + std::exp(-gates[3 * h + i]));
            cl[i] = fg * cl[i] + ig * gg;
            hl[i] = og * std::tanh(cl[i]);
        }
        x.assign(hl, hl + h);
    }
    std::copy(x.begin(), x.end(), g);
}

Joint::Joint(const ModelConfig& c, const WeightStore& ws)
    : hidden_(c.joint.joint_hidden), activation_(c.joint.activation) {
    const int64_t j = hidden_, d = c.encoder.d_model, h = c.decoder.pred_hidden;
    n_outputs_ = c.joint.num_classes + 1 + c.joint.num_extra_outputs;
    PK_CHECK(c.joint.num_classes == c.decoder.vocab_size, kFormat,
             "joint.num_classes {} differs from decoder.vocab_size {}", c.joint.num_classes, c.decoder.vocab_size);
    enc_w_ = ws.get("joint.enc.weight", {j, d});
    enc_b_ = ws.get("joint.enc.bias", {j});
    pred_w_ = ws.get("joint.pred.weight", {j, h});
    pred_b_ = ws.get("joint.pred.bias", {j});
    out_w_ = ws.get("joint.joint_net.2.weight", {n_outputs_, j});
    out_b_ = ws.get("joint.joint_net.2.bias", {n_outputs_});
}

void Joint::project_encoder(const ExecContext& ctx, const Tensor& enc, Tensor& f) const {
    ops::linear(ctx, enc, enc_w_, &enc_b_, f);
}

void Joint::project_prediction(const float* g, float* p) const {
    std::copy_n(pred_b_.data<float>(), hidden_, p);
    cblas_sgemv(CblasRowMajor, CblasNoTrans, hidden_, pred_w_.dim(1), 1.f, pred_w_.data<float>(), pred_w_.dim(1), g,
                1, 1.f, p, 1);
}

void Joint::logits(const float* f_t, const float* p, float* z, float* out) const {
    for (int i = 0; i < hidden_; ++i) {
        const float s = f_t[i] + p[i];
        if (activation_ == "relu") {
            z[i] = s > 0.f ? s : 0.f;
        } else if (activation_ == "tanh") {
            z[i] = std::tanh(s);
        } else {
            z[i] = 1.f / (1.f + std::exp(-s));
        }
    }
    std::copy_n(out_b_.data<float>(), n_outputs_, out);
    cblas_sgemv(CblasRowMajor, CblasNoTrans, n_outputs_, hidden_, 1.f, out_w_.data<float>(), hidden_, z, 1, 1.f, out,
                1);
}

}  // namespace parakeet
