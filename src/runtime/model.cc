#include "runtime/model.h"

#include "io/nemo_archive.h"

#include <set>

namespace parakeet {

void Model::build(const ModelOptions& options) {
    config_.validate();
    const int64_t n_bins = config_.preprocessor.n_fft / 2 + 1;
    Tensor window = weights_.get_optional("preprocessor.featurizer.window", {config_.preprocessor.win_length()});
    Tensor fb = weights_.get_optional("preprocessor.featurizer.fb", {1, config_.preprocessor.features, n_bins});
    frontend_ = std::make_unique<MelFrontend>(config_.preprocessor, window, fb, options.frontend);
    encoder_ = std::make_unique<FastConformerEncoder>(config_.encoder, weights_);
    predictor_ = std::make_unique<Predictor>(config_.decoder, weights_);
    joint_ = std::make_unique<Joint>(config_, weights_);
}

std::shared_ptr<const Model> Model::load(const std::string& path, const ModelOptions& options) {
    NemoArchive archive = open_nemo(path);
    std::shared_ptr<Model> m(new Model());
    m->config_ = ModelConfig::parse(archive.config_yaml);
    // NeMo overwrites these from the tokenizer at load; the checkpoint's shapes are the truth.
    std::string tok_member = m->config_.tokenizer.model_path;
    if (tok_member.rfind("nemo:", 0) == 0) tok_member = tok_member.substr(5);
    if (!tok_member.empty()) {
        auto it = archive.members.find(tok_member);
        if (it == archive.members.end()) {
            for (const auto& [name, bytes] : archive.members)
                if (name.ends_with("tokenizer.model")) it = archive.members.find(name);
        }
        PK_CHECK(it != archive.members.end(), kFormat, "{}: tokenizer model '{}' is not in the archive", path,
                 tok_member);
        m->tokenizer_ = Tokenizer::from_model_bytes(it->second, path + ":" + it->first);
    }
    if (m->tokenizer_) {
        const int v = m->tokenizer_->vocab_size();
        if (m->config_.decoder.vocab_size == 0) m->config_.decoder.vocab_size = v;
        if (m->config_.joint.num_classes == 0) m->config_.joint.num_classes = v;
        PK_CHECK(m->config_.decoder.vocab_size == v, kFormat,
                 "{}: decoder.vocab_size {} differs from the tokenizer's {} pieces", path,
                 m->config_.decoder.vocab_size, v);
    }
    m->weights_ = WeightStore(std::move(archive.tensors));
    m->build(options);
    return m;
}

std::shared_ptr<const Model> Model::from_weights(const ModelConfig& config, std::map<std::string, Tensor> weights,
                                                 const ModelOptions& options) {
    std::shared_ptr<Model> m(new Model());
    m->config_ = config;
    m->weights_ = WeightStore(std::move(weights));
    m->build(options);
    return m;
}

bool is_parameter_name(const std::string& name) {
    // Buffers, not parameters (what NeMo's model.num_weights leaves out).
    return !name.starts_with("preprocessor.") && !name.ends_with(".running_mean") &&
           !name.ends_with(".running_var") && !name.ends_with(".num_batches_tracked");
}

double Model::frame_seconds() const {
    return config_.preprocessor.window_stride * config_.encoder.subsampling_factor;
}

int64_t Model::parameter_count() const { return count_parameters(weights_.all()); }

int64_t count_parameters(const std::map<std::string, Tensor>& tensors) {
    // A parameter saved under several keys (NeMo's shared pos_bias_u/v) shares its storage: count it once.
    std::set<std::pair<const void*, int64_t>> seen;
    int64_t n = 0;
    for (const auto& [name, t] : tensors)
        if (is_parameter_name(name) && seen.insert({t.raw(), t.numel()}).second) n += t.numel();
    return n;
}

ModelConfig builtin_architecture(const std::string& name) {
    PK_CHECK(name == "parakeet-tdt-0.6b-v3" || name == "parakeet-tdt-0.6b-v2", kInvalidArgument,
             "unknown architecture '{}' (known: parakeet-tdt-0.6b-v3, parakeet-tdt-0.6b-v2)", name);
    ModelConfig c;
    c.target = "nemo.collections.asr.models.rnnt_bpe_models.EncDecRNNTBPEModel";
    c.preprocessor.features = 128;
    EncoderConfig& e = c.encoder;
    e.feat_in = 128;
    e.n_layers = 24;
    e.d_model = 1024;
    e.n_heads = 8;
    e.ff_expansion_factor = 4;
    e.conv_kernel_size = 9;
    e.conv_context_size = {4, 4};
    e.subsampling_conv_channels = 256;
    e.use_bias = false;
    e.xscaling = false;
    e.untie_biases = true;
    c.decoder.vocab_size = name.ends_with("v3") ? 8192 : 1024;
    c.decoder.pred_hidden = 640;
    c.decoder.pred_rnn_layers = 2;
    c.joint.joint_hidden = 640;
    c.joint.num_classes = c.decoder.vocab_size;
    c.joint.num_extra_outputs = 5;
    c.decoding.model_type = "tdt";
    c.decoding.durations = {0, 1, 2, 3, 4};
    c.decoding.max_symbols = 10;
    return c;
}

}  // namespace parakeet
