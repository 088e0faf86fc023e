// Model: everything immutable about a loaded checkpoint (config, weights, frontend, tokenizer). Shared by
// any number of recognizers and threads.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "frontend/mel.h"
#include "models/config.h"
#include "models/encoder.h"
#include "models/tokenizer.h"
#include "models/transducer.h"
#include "models/weights.h"

namespace parakeet {

struct ModelOptions {
    FrontendVersion frontend = FrontendVersion::kNemo25;  // which NeMo frontend to match
};

class Model {
public:
    // Loads a NeMo `.nemo` checkpoint. Throws parakeet::Error with a one-line message on any problem.
    static std::shared_ptr<const Model> load(const std::string& path, const ModelOptions& options = {});
    // Builds a model from a config and named weights (random-weight benchmarks, tests). No tokenizer.
    static std::shared_ptr<const Model> from_weights(const ModelConfig& config, std::map<std::string, Tensor> weights,
                                                     const ModelOptions& options = {});

    const ModelConfig& config() const { return config_; }
    const MelFrontend& frontend() const { return *frontend_; }
    const FastConformerEncoder& encoder() const { return *encoder_; }
    const Predictor& predictor() const { return *predictor_; }
    const Joint& joint() const { return *joint_; }
    // The checkpoint's named weights (host, as loaded); e.g. for a backend to upload its own copies.
    const WeightStore& weights() const { return weights_; }
    // Null for models built from_weights without a tokenizer.
    const Tokenizer* tokenizer() const { return tokenizer_ ? &*tokenizer_ : nullptr; }

    // Seconds per encoder frame (hop x subsampling factor: 0.08 for Parakeet).
    double frame_seconds() const;
    // Trainable parameters (buffers such as BatchNorm statistics and the mel filterbank excluded).
    int64_t parameter_count() const;

private:
    Model() = default;
    void build(const ModelOptions& options);

    ModelConfig config_;
    WeightStore weights_;
    std::unique_ptr<MelFrontend> frontend_;
    std::unique_ptr<FastConformerEncoder> encoder_;
    std::unique_ptr<Predictor> predictor_;
    std::unique_ptr<Joint> joint_;
    std::optional<Tokenizer> tokenizer_;
};

// Trainable parameters among named tensors, each storage counted once.
int64_t count_parameters(const std::map<std::string, Tensor>& tensors);

// True for a state-dict key that is a trainable parameter rather than a buffer.
bool is_parameter_name(const std::string& name);

// The architecture of a named published model (for `bench --arch`): "parakeet-tdt-0.6b-v3".
ModelConfig builtin_architecture(const std::string& name);

}  // namespace parakeet
