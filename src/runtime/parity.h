// Parity harness for cache-aware streaming: replays a per-chunk reference (NeMo's inputs and outputs for each
// encoder step) through our encoder and measures the error of every output tensor on every chunk.
//   functional:  each chunk gets the reference's own inputs (features, length, caches);
//   closed_loop: only the first chunk's caches come from the reference, later chunks use our own.
#pragma once

#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "runtime/model.h"

namespace parakeet {

enum class ParityMode { kFunctional, kClosedLoop };

struct TensorError {
    double max_abs = 0, mean_abs = 0, p95 = 0, p99 = 0;
    int64_t count = 0;
    bool shape_ok = true;
    bool pass = true;
};

struct ChunkParity {
    int chunk = 0;
    std::map<std::string, TensorError> tensors;  // encoder_output, cache_last_channel_out, cache_last_time_out
    bool lengths_ok = true;                      // encoded_lengths and cache_last_channel_len_out exact
    bool pass = true;
};

struct ParityReport {
    std::vector<ChunkParity> chunks;
    std::map<std::string, double> drift_slope;  // least-squares slope of max_abs over chunk index, per tensor
    int first_failing_chunk = -1;
    bool pass = true;
    std::vector<int> tokens, token_frames;       // our streamed decode (closed loop over our encoder output)
    std::vector<int> ref_tokens;                 // the reference's final hypothesis, when it carries one
    nlohmann::ordered_json to_json() const;
};

struct ParityOptions {
    ParityMode mode = ParityMode::kFunctional;
    int chunk_size = -1, shift_size = -1, left_chunks = -1;  // setup_streaming_params arguments
    double default_atol = 1e-4;
    std::map<std::string, double> atol;  // per-tensor overrides
};

// Reads a reference JSONL (one chunk object per line). Throws kFormat/kIo naming the line.
std::vector<nlohmann::json> read_reference_jsonl(const std::string& path);

ParityReport run_stream_parity(const Model& model, const ExecContext& ctx, const std::vector<nlohmann::json>& ref,
                               const ParityOptions& options);

// Error statistics of a vs b (same shape) over all elements.
TensorError compare_tensors(const Tensor& a, const Tensor& b, double atol);

}  // namespace parakeet
