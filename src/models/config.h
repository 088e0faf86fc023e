// Typed NeMo model configuration (model_config.yaml), covering what Parakeet-TDT/RNNT inference uses.
// NeMo: nemo/collections/asr/models/rnnt_bpe_models.py and the module constructors named per struct.
#pragma once

#include <array>
#include <string>
#include <vector>

namespace parakeet {

// nemo.collections.asr.modules.AudioToMelSpectrogramPreprocessor / FilterbankFeatures.
struct PreprocessorConfig {
    int sample_rate = 16000;
    int features = 80;             // mel bins
    int n_fft = 512;
    double window_size = 0.025;    // seconds
    double window_stride = 0.01;   // seconds
    std::string window = "hann";
    std::string normalize = "per_feature";
    double preemph = 0.97;
    double dither = 1e-5;          // training only; never applied at inference
    int pad_to = 0;
    double pad_value = 0.0;
    bool log = true;
    std::string log_zero_guard_type = "add";
    double log_zero_guard_value = 5.9604644775390625e-08;  // 2^-24
    double mag_power = 2.0;
    int frame_splicing = 1;
    bool exact_pad = false;
    double lowfreq = 0.0;
    double highfreq = -1.0;        // -1 = null = sample_rate / 2
    std::string mel_norm = "slaney";

    int win_length() const { return static_cast<int>(window_size * sample_rate); }
    int hop_length() const { return static_cast<int>(window_stride * sample_rate); }
};

// nemo.collections.asr.modules.ConformerEncoder.
struct EncoderConfig {
    int feat_in = 80;
    int feat_out = -1;
    int n_layers = 17;
    int d_model = 512;
    int n_heads = 8;
    int ff_expansion_factor = 4;
    int conv_kernel_size = 31;
    std::string conv_norm_type = "batch_norm";
    std::array<int, 2> conv_context_size{-1, -1};  // [left, right]; derived from kernel when null
    std::string subsampling = "dw_striding";
    int subsampling_factor = 8;
    int subsampling_conv_channels = 256;
    bool causal_downsampling = false;
    std::string self_attention_model = "rel_pos";
    // One or more [left, right] contexts (multi-lookahead models list several; the first is the default).
    std::vector<std::array<int, 2>> att_context_size{{-1, -1}};
    std::string att_context_style = "regular";
    bool use_bias = true;
    bool xscaling = true;
    bool untie_biases = true;
    int pos_emb_max_len = 5000;
};

// nemo.collections.asr.modules.RNNTDecoder.
struct DecoderConfig {
    int vocab_size = 0;  // without blank
    int pred_hidden = 640;
    int pred_rnn_layers = 1;
    bool blank_as_pad = true;
};

// nemo.collections.asr.modules.RNNTJoint.
struct JointConfig {
    int joint_hidden = 640;
    std::string activation = "relu";
    int num_classes = 0;         // without blank
    int num_extra_outputs = 0;   // TDT duration logits
};

struct DecodingConfig {
    std::string strategy = "greedy_batch";
    std::string model_type = "rnnt";  // "rnnt" or "tdt"
    std::vector<int> durations;       // TDT durations in encoder frames (values, not indices)
    int max_symbols = 10;             // per encoder frame
};

struct TokenizerConfig {
    std::string type = "bpe";
    std::string model_path;  // "nemo:<hash>_tokenizer.model" -> archive member
};

struct ModelConfig {
    std::string target;  // "_target_" of the model or "target"
    int sample_rate = 16000;
    PreprocessorConfig preprocessor;
    EncoderConfig encoder;
    DecoderConfig decoder;
    JointConfig joint;
    DecodingConfig decoding;
    TokenizerConfig tokenizer;

    bool is_tdt() const { return decoding.model_type == "tdt"; }
    int blank_id() const { return decoder.vocab_size; }

    // Parses model_config.yaml text. Throws kFormat for malformed YAML or values of the wrong type.
    static ModelConfig parse(const std::string& yaml_text);
    // Throws kUnsupported naming the field and value when this engine cannot run the model.
    void validate() const;
    // validate() as a message: empty when supported.
    std::string unsupported_reason() const;
};

}  // namespace parakeet
