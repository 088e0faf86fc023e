#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "io/nemo_archive.h"
#include "models/config.h"
#include "models/tokenizer.h"
#include "runtime/model.h"

namespace parakeet::cli {

namespace {

struct InspectArgs {
    std::string model;
    bool json = false;
};

nlohmann::ordered_json describe(const NemoArchive& archive) {
    nlohmann::ordered_json j;
    j["path"] = archive.path;
    ModelConfig cfg;
    std::string reason;
    try {
        cfg = ModelConfig::parse(archive.config_yaml);
    } catch (const Error& e) {
        reason = e.what();
    }
    // The tokenizer decides the vocabulary, as NeMo does at load.
    int vocab = -1;
    for (const auto& [name, bytes] : archive.members) {
        if (!name.ends_with("tokenizer.model")) continue;
        try {
            vocab = Tokenizer::from_model_bytes(bytes, name).vocab_size();
        } catch (const Error& e) {
            if (reason.empty()) reason = e.what();
        }
    }
    if (vocab > 0 && cfg.decoder.vocab_size == 0) cfg.decoder.vocab_size = vocab;
    if (vocab > 0 && cfg.joint.num_classes == 0) cfg.joint.num_classes = vocab;
    if (reason.empty()) reason = cfg.unsupported_reason();
    if (reason.empty()) {
        // The weights must be there with the shapes this config implies.
        for (const WeightSpec& w : expected_weights(cfg)) {
            auto it = archive.tensors.find(w.name);
            if (it == archive.tensors.end()) {
                if (!w.optional) reason = fmt::format("checkpoint has no weight '{}'", w.name);
            } else if (it->second.shape() != w.shape) {
                reason = fmt::format("weight '{}' has shape {}, expected {}", w.name, shape_str(it->second.shape()),
                                     shape_str(w.shape));
            }
            if (!reason.empty()) break;
        }
    }
    j["model_class"] = cfg.target;
    j["supported"] = reason.empty();
    j["unsupported_reason"] = reason;
    const EncoderConfig& e = cfg.encoder;
    j["preprocessor"] = {{"sample_rate", cfg.preprocessor.sample_rate},
                         {"features", cfg.preprocessor.features},
                         {"n_fft", cfg.preprocessor.n_fft},
                         {"window_size", cfg.preprocessor.window_size},
                         {"window_stride", cfg.preprocessor.window_stride},
                         {"normalize", cfg.preprocessor.normalize}};
    j["encoder"] = {{"n_layers", e.n_layers},
                    {"d_model", e.d_model},
                    {"n_heads", e.n_heads},
                    {"ff_expansion_factor", e.ff_expansion_factor},
                    {"conv_kernel_size", e.conv_kernel_size},
                    {"subsampling", e.subsampling},
                    {"subsampling_factor", e.subsampling_factor},
                    {"subsampling_conv_channels", e.subsampling_conv_channels},
                    {"self_attention_model", e.self_attention_model},
                    {"att_context_size", e.att_context_size},
                    {"att_context_style", e.att_context_style},
                    {"use_bias", e.use_bias},
                    {"xscaling", e.xscaling},
                    {"untie_biases", e.untie_biases}};
    j["decoder"] = {{"pred_hidden", cfg.decoder.pred_hidden}, {"pred_rnn_layers", cfg.decoder.pred_rnn_layers}};
    j["joint"] = {{"joint_hidden", cfg.joint.joint_hidden},
                  {"activation", cfg.joint.activation},
                  {"num_extra_outputs", cfg.joint.num_extra_outputs}};
    j["decoding"] = {{"model_type", cfg.decoding.model_type},
                     {"strategy", cfg.decoding.strategy},
                     {"durations", cfg.decoding.durations},
                     {"max_symbols", cfg.decoding.max_symbols}};
    j["vocab_size"] = cfg.decoder.vocab_size;
    j["blank_id"] = cfg.decoder.vocab_size;
    int64_t elements = 0;
    nlohmann::ordered_json tensors = nlohmann::ordered_json::array();
    for (const std::string& name : archive.tensor_names) {
        const Tensor& t = archive.tensors.at(name);
        elements += t.numel();
        tensors.push_back({{"name", name}, {"dtype", dtype_name(t.dtype())}, {"shape", t.shape()}});
    }
    j["parameters"] = count_parameters(archive.tensors);
    j["tensor_elements"] = elements;
    j["tensor_count"] = archive.tensor_names.size();
    j["weights_mapped"] = archive.weights_mapped;
    j["tensors"] = std::move(tensors);
    return j;
}

void run_inspect(const InspectArgs& args) {
    NemoArchive archive = open_nemo(args.model);
    nlohmann::ordered_json j = describe(archive);
    if (args.json) {
        std::cout << j.dump(1) << "\n";
        return;
    }
    std::cout << "model:        " << args.model << "\n"
              << "class:        " << j["model_class"].get<std::string>() << "\n"
              << "supported:    "
              << (j["supported"].get<bool>() ? "yes" : "no: " + j["unsupported_reason"].get<std::string>()) << "\n"
              << "encoder:      " << j["encoder"]["n_layers"] << " layers, d_model " << j["encoder"]["d_model"]
              << ", " << j["encoder"]["n_heads"] << " heads, ff x" << j["encoder"]["ff_expansion_factor"]
              << ", conv kernel " << j["encoder"]["conv_kernel_size"] << ", "
              << j["encoder"]["subsampling"].get<std::string>() << " x" << j["encoder"]["subsampling_factor"] << "\n"
              << "features:     " << j["preprocessor"]["features"] << " mels\n"
              << "predictor:    LSTM " << j["decoder"]["pred_rnn_layers"] << " x " << j["decoder"]["pred_hidden"]
              << "\n"
              << "joint:        hidden " << j["joint"]["joint_hidden"] << "\n"
              << "decoding:     " << j["decoding"]["model_type"].get<std::string>() << ", durations "
              << j["decoding"]["durations"].dump() << ", max_symbols " << j["decoding"]["max_symbols"] << "\n"
              << "vocabulary:   " << j["vocab_size"] << " (blank id " << j["blank_id"] << ")\n"
              << "parameters:   " << j["parameters"] << "\n"
              << "tensors:      " << j["tensor_count"] << (archive.weights_mapped ? " (memory-mapped)" : " (copied)")
              << "\n";
    for (const auto& t : j["tensors"])
        std::cout << "  " << t["name"].get<std::string>() << "  " << t["dtype"].get<std::string>() << "  "
                  << t["shape"].dump() << "\n";
}

}  // namespace

void add_inspect(CLI::App& app) {
    auto args = std::make_shared<InspectArgs>();
    CLI::App* sub = app.add_subcommand("inspect", "Describe a .nemo checkpoint: architecture, tensors, support");
    sub->add_option("-m,--model", args->model, "NeMo checkpoint (.nemo)")->required();
    sub->add_flag("--json", args->json, "Print JSON (keys documented in the README)");
    sub->callback([args] { run_inspect(*args); });
}

}  // namespace parakeet::cli
