// Named weights as NeMo stores them, looked up with an expected shape. A missing or misshapen weight
// names the NeMo key. Float32 tensors stay as loaded (views into the mapped checkpoint); other float
// dtypes are converted once.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>

#include "core/tensor.h"
#include "models/config.h"

namespace parakeet {

class WeightStore {
public:
    WeightStore() = default;
    explicit WeightStore(std::map<std::string, Tensor> tensors) : tensors_(std::move(tensors)) {}

    bool has(const std::string& name) const { return tensors_.count(name) != 0; }
    // The tensor as float32 with exactly `shape`; throws kFormat naming the key otherwise.
    Tensor get(const std::string& name, const Shape& shape) const;
    // Like get() but returns an undefined tensor when absent.
    Tensor get_optional(const std::string& name, const Shape& shape) const;
    const std::map<std::string, Tensor>& all() const { return tensors_; }
    // Names looked up so far (to report unused checkpoint entries).
    const std::set<std::string>& used() const { return used_; }

private:
    std::map<std::string, Tensor> tensors_;
    mutable std::set<std::string> used_;
};

// Every weight the engine reads for `config`, with its NeMo name and shape, in NeMo's registration order.
struct WeightSpec {
    std::string name;
    Shape shape;
    bool optional = false;  // e.g. the preprocessor's window and filterbank buffers
};
std::vector<WeightSpec> expected_weights(const ModelConfig& config);

// Random weights with the expected names and shapes (for benchmarks of the full architecture).
// Deterministic for a seed; LayerNorm/BatchNorm parameters are near their identity values.
std::map<std::string, Tensor> random_weights(const ModelConfig& config, uint64_t seed);

}  // namespace parakeet
