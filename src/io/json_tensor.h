// Tensors inside JSON: {"dtype": "float32", "shape": [...], "data_b64": "<raw little-endian C-order bytes>"},
// the per-chunk reference format of the parity fixtures (tests/data/tiny-a/streaming/*.jsonl).
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "core/tensor.h"

namespace parakeet {

// Throws kFormat naming `what` for an unknown dtype, bad base64 or a size that does not match the shape.
Tensor tensor_from_json(const nlohmann::json& j, const std::string& what);
nlohmann::json tensor_to_json(const Tensor& t);

std::string base64_decode(const std::string& in);  // throws kFormat on invalid input
std::string base64_encode(const void* data, size_t n);

}  // namespace parakeet
