#include "models/config.h"

#include <yaml-cpp/yaml.h>

#include "core/error.h"

namespace parakeet {

namespace {

template <typename T>
void read(const YAML::Node& node, const char* key, T& out, const char* section) {
    const YAML::Node v = node[key];
    if (!v || v.IsNull()) return;
    try {
        out = v.as<T>();
    } catch (const YAML::Exception&) {
        PK_THROW(kFormat, "model_config.yaml: {}.{} has an unexpected value", section, key);
    }
}

std::array<int, 2> read_pair(const YAML::Node& v, const char* what) {
    PK_CHECK(v.IsSequence() && v.size() == 2, kFormat, "model_config.yaml: {} must be a list of two ints", what);
    return {v[0].as<int>(), v[1].as<int>()};
}

}  // namespace

ModelConfig ModelConfig::parse(const std::string& yaml_text) {
    YAML::Node root;
    try {
        root = YAML::Load(yaml_text);
    } catch (const YAML::Exception& e) {
        PK_THROW(kFormat, "model_config.yaml is not valid YAML: {}", e.what());
    }
    PK_CHECK(root.IsMap(), kFormat, "model_config.yaml: top level is not a mapping");
    ModelConfig c;
    try {
        read(root, "target", c.target, "");
        if (c.target.empty()) read(root, "_target_", c.target, "");
        read(root, "sample_rate", c.sample_rate, "");

        PK_CHECK(root["preprocessor"] && root["preprocessor"].IsMap(), kUnsupported,
                 "model_config.yaml: no preprocessor section");
        const YAML::Node pp = root["preprocessor"];
        PreprocessorConfig& p = c.preprocessor;
        std::string pp_target;
        read(pp, "_target_", pp_target, "preprocessor");
        PK_CHECK(pp_target.empty() || pp_target.find("AudioToMelSpectrogramPreprocessor") != std::string::npos,
                 kUnsupported, "unsupported preprocessor._target_ '{}'", pp_target);
        read(pp, "sample_rate", p.sample_rate, "preprocessor");
        read(pp, "features", p.features, "preprocessor");
        read(pp, "nfilt", p.features, "preprocessor");
        read(pp, "n_fft", p.n_fft, "preprocessor");
        read(pp, "window_size", p.window_size, "preprocessor");
        read(pp, "window_stride", p.window_stride, "preprocessor");
        read(pp, "window", p.window, "preprocessor");
        read(pp, "normalize", p.normalize, "preprocessor");
        read(pp, "preemph", p.preemph, "preprocessor");
        read(pp, "dither", p.dither, "preprocessor");
        read(pp, "pad_to", p.pad_to, "preprocessor");
        read(pp, "pad_value", p.pad_value, "preprocessor");
        read(pp, "log", p.log, "preprocessor");
        read(pp, "log_zero_guard_type", p.log_zero_guard_type, "preprocessor");
        if (pp["log_zero_guard_value"] && pp["log_zero_guard_value"].IsScalar()) {
            std::string s = pp["log_zero_guard_value"].as<std::string>();
            if (s != "tiny" && s != "eps") read(pp, "log_zero_guard_value", p.log_zero_guard_value, "preprocessor");
            PK_CHECK(s != "tiny" && s != "eps", kUnsupported,
                     "unsupported preprocessor.log_zero_guard_value '{}'", s);
        }
        read(pp, "mag_power", p.mag_power, "preprocessor");
        read(pp, "frame_splicing", p.frame_splicing, "preprocessor");
        read(pp, "exact_pad", p.exact_pad, "preprocessor");
        read(pp, "lowfreq", p.lowfreq, "preprocessor");
        read(pp, "highfreq", p.highfreq, "preprocessor");
        read(pp, "mel_norm", p.mel_norm, "preprocessor");

        PK_CHECK(root["encoder"] && root["encoder"].IsMap(), kUnsupported, "model_config.yaml: no encoder section");
        const YAML::Node en = root["encoder"];
        EncoderConfig& e = c.encoder;
        std::string enc_target;
        read(en, "_target_", enc_target, "encoder");
        PK_CHECK(enc_target.find("ConformerEncoder") != std::string::npos, kUnsupported,
                 "unsupported encoder._target_ '{}' (this engine runs FastConformer encoders)", enc_target);
        read(en, "feat_in", e.feat_in, "encoder");
        read(en, "feat_out", e.feat_out, "encoder");
        read(en, "n_layers", e.n_layers, "encoder");
        read(en, "d_model", e.d_model, "encoder");
        read(en, "n_heads", e.n_heads, "encoder");
        read(en, "ff_expansion_factor", e.ff_expansion_factor, "encoder");
        read(en, "conv_kernel_size", e.conv_kernel_size, "encoder");
        read(en, "conv_norm_type", e.conv_norm_type, "encoder");
        read(en, "subsampling", e.subsampling, "encoder");
        read(en, "subsampling_factor", e.subsampling_factor, "encoder");
        read(en, "subsampling_conv_channels", e.subsampling_conv_channels, "encoder");
        read(en, "causal_downsampling", e.causal_downsampling, "encoder");
        read(en, "self_attention_model", e.self_attention_model, "encoder");
        read(en, "att_context_style", e.att_context_style, "encoder");
        read(en, "use_bias", e.use_bias, "encoder");
        read(en, "xscaling", e.xscaling, "encoder");
        read(en, "untie_biases", e.untie_biases, "encoder");
        read(en, "pos_emb_max_len", e.pos_emb_max_len, "encoder");
        if (e.subsampling_conv_channels == -1) e.subsampling_conv_channels = e.d_model;
        if (en["reduction"] && !en["reduction"].IsNull())
            PK_THROW(kUnsupported, "unsupported encoder.reduction '{}'", en["reduction"].as<std::string>());
        if (const YAML::Node acs = en["att_context_size"]; acs && !acs.IsNull()) {
            PK_CHECK(acs.IsSequence() && acs.size() > 0, kFormat, "model_config.yaml: bad encoder.att_context_size");
            e.att_context_size.clear();
            if (acs[0].IsSequence()) {
                for (const auto& item : acs) e.att_context_size.push_back(read_pair(item, "encoder.att_context_size"));
            } else {
                e.att_context_size.push_back(read_pair(acs, "encoder.att_context_size"));
            }
        }
        const int k = e.conv_kernel_size;
        if (const YAML::Node ccs = en["conv_context_size"]; ccs && !ccs.IsNull()) {
            if (ccs.IsScalar() && ccs.as<std::string>() == "causal") {
                e.conv_context_size = {k - 1, 0};
            } else {
                e.conv_context_size = read_pair(ccs, "encoder.conv_context_size");
            }
        } else {
            e.conv_context_size = {(k - 1) / 2, (k - 1) / 2};
        }

        PK_CHECK(root["decoder"] && root["decoder"].IsMap(), kUnsupported,
                 "model_config.yaml: no decoder section (CTC-only models are not supported)");
        const YAML::Node de = root["decoder"];
        std::string dec_target;
        read(de, "_target_", dec_target, "decoder");
        PK_CHECK(dec_target.find("RNNTDecoder") != std::string::npos, kUnsupported,
                 "unsupported decoder._target_ '{}' (this engine runs RNNT/TDT transducers)", dec_target);
        read(de, "vocab_size", c.decoder.vocab_size, "decoder");
        read(de, "blank_as_pad", c.decoder.blank_as_pad, "decoder");
        if (const YAML::Node pn = de["prednet"]; pn && pn.IsMap()) {
            read(pn, "pred_hidden", c.decoder.pred_hidden, "decoder.prednet");
            read(pn, "pred_rnn_layers", c.decoder.pred_rnn_layers, "decoder.prednet");
        }
        std::string norm_mode;
        read(de, "normalization_mode", norm_mode, "decoder");
        PK_CHECK(norm_mode.empty() || norm_mode == "null", kUnsupported,
                 "unsupported decoder.normalization_mode '{}'", norm_mode);

        PK_CHECK(root["joint"] && root["joint"].IsMap(), kUnsupported, "model_config.yaml: no joint section");
        const YAML::Node jo = root["joint"];
        read(jo, "num_classes", c.joint.num_classes, "joint");
        read(jo, "num_extra_outputs", c.joint.num_extra_outputs, "joint");
        if (const YAML::Node jn = jo["jointnet"]; jn && jn.IsMap()) {
            read(jn, "joint_hidden", c.joint.joint_hidden, "joint.jointnet");
            read(jn, "activation", c.joint.activation, "joint.jointnet");
        }

        if (const YAML::Node dc = root["decoding"]; dc && dc.IsMap()) {
            read(dc, "strategy", c.decoding.strategy, "decoding");
            read(dc, "model_type", c.decoding.model_type, "decoding");
            if (dc["durations"] && dc["durations"].IsSequence())
                c.decoding.durations = dc["durations"].as<std::vector<int>>();
            if (dc["greedy"] && dc["greedy"].IsMap()) read(dc["greedy"], "max_symbols", c.decoding.max_symbols, "decoding.greedy");
        }
        if (c.decoding.durations.empty() && root["model_defaults"] && root["model_defaults"]["tdt_durations"] &&
            root["model_defaults"]["tdt_durations"].IsSequence()) {
            c.decoding.durations = root["model_defaults"]["tdt_durations"].as<std::vector<int>>();
            if (c.joint.num_extra_outputs > 0) c.decoding.model_type = "tdt";
        }
        if (const YAML::Node tk = root["tokenizer"]; tk && tk.IsMap()) {
            read(tk, "type", c.tokenizer.type, "tokenizer");
            read(tk, "model_path", c.tokenizer.model_path, "tokenizer");
        }
    } catch (const YAML::Exception& ex) {
        PK_THROW(kFormat, "model_config.yaml: unexpected structure: {}", ex.what());
    }
    return c;
}

std::string ModelConfig::unsupported_reason() const {
    try {
        validate();
    } catch (const Error& e) {
        return e.what();
    }
    return {};
}

void ModelConfig::validate() const {
    const PreprocessorConfig& p = preprocessor;
    PK_CHECK(p.normalize == "per_feature" || p.normalize == "NA" || p.normalize == "none", kUnsupported,
             "unsupported preprocessor.normalize '{}'", p.normalize);
    PK_CHECK(p.window == "hann", kUnsupported, "unsupported preprocessor.window '{}'", p.window);
    PK_CHECK(p.frame_splicing == 1, kUnsupported, "unsupported preprocessor.frame_splicing {}", p.frame_splicing);
    PK_CHECK(!p.exact_pad, kUnsupported, "unsupported preprocessor.exact_pad true");
    PK_CHECK(p.log, kUnsupported, "unsupported preprocessor.log false");
    PK_CHECK(p.log_zero_guard_type == "add", kUnsupported, "unsupported preprocessor.log_zero_guard_type '{}'",
             p.log_zero_guard_type);
    PK_CHECK(p.mel_norm == "slaney", kUnsupported, "unsupported preprocessor.mel_norm '{}'", p.mel_norm);
    PK_CHECK(p.mag_power == 2.0, kUnsupported, "unsupported preprocessor.mag_power {}", p.mag_power);
    PK_CHECK(p.sample_rate > 0 && p.sample_rate <= 192000, kUnsupported, "unsupported preprocessor.sample_rate {}",
             p.sample_rate);
    PK_CHECK(p.n_fft >= p.win_length() && p.n_fft > 0 && p.n_fft <= 8192 && p.win_length() > 0 &&
                 p.hop_length() > 0,
             kUnsupported, "unsupported preprocessor window: n_fft {} window {} hop {}", p.n_fft, p.win_length(),
             p.hop_length());
    PK_CHECK(p.features > 0 && p.features <= 512, kUnsupported, "unsupported preprocessor.features {}", p.features);

    const EncoderConfig& e = encoder;
    PK_CHECK(e.feat_in == p.features, kUnsupported, "encoder.feat_in {} differs from preprocessor.features {}",
             e.feat_in, p.features);
    PK_CHECK(e.subsampling == "dw_striding", kUnsupported, "unsupported encoder.subsampling '{}'", e.subsampling);
    PK_CHECK(e.subsampling_factor == 2 || e.subsampling_factor == 4 || e.subsampling_factor == 8 ||
                 e.subsampling_factor == 16,
             kUnsupported, "unsupported encoder.subsampling_factor {}", e.subsampling_factor);
    PK_CHECK(e.self_attention_model == "rel_pos" || e.self_attention_model == "rel_pos_local_attn", kUnsupported,
             "unsupported encoder.self_attention_model '{}'", e.self_attention_model);
    PK_CHECK(e.att_context_style == "regular" || e.att_context_style == "chunked_limited", kUnsupported,
             "unsupported encoder.att_context_style '{}'", e.att_context_style);
    PK_CHECK(e.conv_norm_type == "batch_norm", kUnsupported, "unsupported encoder.conv_norm_type '{}'",
             e.conv_norm_type);
    PK_CHECK(e.feat_out == -1, kUnsupported, "unsupported encoder.feat_out {}", e.feat_out);
    PK_CHECK(e.n_layers > 0 && e.n_layers <= 256, kUnsupported, "unsupported encoder.n_layers {}", e.n_layers);
    PK_CHECK(e.d_model > 0 && e.n_heads > 0 && e.d_model % e.n_heads == 0, kUnsupported,
             "unsupported encoder.d_model {} with n_heads {}", e.d_model, e.n_heads);
    PK_CHECK(e.conv_kernel_size > 0 && e.conv_kernel_size % 2 == 1, kUnsupported,
             "unsupported encoder.conv_kernel_size {}", e.conv_kernel_size);
    PK_CHECK(e.conv_context_size[0] + e.conv_context_size[1] + 1 == e.conv_kernel_size, kUnsupported,
             "unsupported encoder.conv_context_size [{}, {}]", e.conv_context_size[0], e.conv_context_size[1]);
    PK_CHECK(e.subsampling_conv_channels > 0, kUnsupported, "unsupported encoder.subsampling_conv_channels {}",
             e.subsampling_conv_channels);

    PK_CHECK(decoder.vocab_size > 0, kUnsupported, "unsupported decoder.vocab_size {}", decoder.vocab_size);
    PK_CHECK(decoder.blank_as_pad, kUnsupported, "unsupported decoder.blank_as_pad false");
    PK_CHECK(decoder.pred_rnn_layers >= 1, kUnsupported, "unsupported decoder.prednet.pred_rnn_layers {}",
             decoder.pred_rnn_layers);
    PK_CHECK(joint.activation == "relu" || joint.activation == "tanh" || joint.activation == "sigmoid",
             kUnsupported, "unsupported joint.jointnet.activation '{}'", joint.activation);
    PK_CHECK(decoding.model_type == "tdt" || decoding.model_type == "rnnt", kUnsupported,
             "unsupported decoding.model_type '{}'", decoding.model_type);
    if (is_tdt()) {
        PK_CHECK(!decoding.durations.empty() &&
                     static_cast<int>(decoding.durations.size()) == joint.num_extra_outputs,
                 kUnsupported, "TDT decoding.durations has {} values but joint.num_extra_outputs is {}",
                 decoding.durations.size(), joint.num_extra_outputs);
        for (int d : decoding.durations)
            PK_CHECK(d >= 0 && d < 1000, kUnsupported, "unsupported TDT duration {}", d);
    } else {
        PK_CHECK(joint.num_extra_outputs == 0, kUnsupported,
                 "joint.num_extra_outputs {} without TDT decoding (decoding.model_type '{}')",
                 joint.num_extra_outputs, decoding.model_type);
    }
    PK_CHECK(decoding.max_symbols > 0, kUnsupported, "unsupported decoding.greedy.max_symbols {}",
             decoding.max_symbols);
    PK_CHECK(tokenizer.type == "bpe" || tokenizer.type == "spe", kUnsupported, "unsupported tokenizer.type '{}'",
             tokenizer.type);
}

}  // namespace parakeet
