// Batched cache-aware streaming on a GPU: many streams, each with a slot of device-resident caches and decoder
// state, stepped as one batch through a captured CUDA graph (encoder chunk, joint projection and the greedy
// decode loop), so one step costs one graph launch and one read-back of the new tokens.
//
// Numerically the step is NeMo's cache_aware_stream_step + the label-looping decode, as
// FastConformerEncoder::stream_step computes it, with two changes of representation: the channel cache holds
// each row's keys and values (linear_k/linear_v of the rows NeMo caches, so they are not recomputed every
// step) in a ring, and chunks shorter than the batch's padded length (a stream's last chunk) are masked per
// item exactly where NeMo's shorter tensors end (the subsampling's intermediate rows past each item's valid
// rows are zeroed, as NeMo's padding reads them). Tests compare it with the per-stream path and NeMo's goldens.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "core/context.h"
#include "decoding/greedy.h"
#include "models/encoder.h"

namespace parakeet {

class Model;
class Recognizer;

class StreamBatchEngine {
public:
    // One stream's chunk for a step.
    struct Step {
        int slot = -1;
        bool first = false;             // the stream's first chunk (chunk_size[0], no pre-encode cache)
        const float* features = nullptr;  // [rows, n_mels] host, pre-encode cache rows first
        int rows = 0;                   // valid rows (<= the chunk's full length)
        bool keep_all_outputs = false;  // the stream's last chunk (NeMo keep_all_outputs)
        int frames_decoded = 0;         // global frame of this chunk's first output frame
        bool want_encoded = false;      // also return the encoder output (parity checks)
        // NeMo's online per-feature normalisation of the chunk's rows is still to be done (the step does it on
        // the GPU, bit for bit as normalize_per_feature; models with per_feature normalisation only).
        bool normalize = false;
    };
    struct Output {
        std::vector<Token> tokens;  // global frames
        int frames = 0;             // encoder frames decoded
        Tensor encoded;             // [frames, d_model] host, when Step::want_encoded
    };
    // The steps of the next launch when `remaining` wait: all of them up to max_batch, run padded to a power of two,
    // unless that would pad a launch of over 256 by more than an eighth; then the largest power of two below.
    static size_t launch_size(size_t remaining, int max_batch);
    // Steps per launch at most (PARAKEET_STREAM_MAX_BATCH overrides it, for A/B measurements). 2048 streams in one
    // launch take 26.7 ms of GPU time on the H100 against 28.5 ms in two of 1024 (docs/PERFORMANCE.md, session 8).
    static constexpr int kMaxBatch = 2048;

    // Empty when the batched path runs this model and configuration on CUDA, else why not (the caller then
    // steps streams one at a time with FastConformerEncoder::stream_step).
    static std::string unsupported_reason(const Model& model, const StreamingConfig& sc, int context);

    // Uploads the weights for `precision` and precomputes the positional projections of both chunk shapes.
    StreamBatchEngine(std::shared_ptr<const Model> model, const StreamingConfig& sc, int context, int device_index,
                      Precision precision);
    ~StreamBatchEngine();
    StreamBatchEngine(const StreamBatchEngine&) = delete;
    StreamBatchEngine& operator=(const StreamBatchEngine&) = delete;

    // A slot for a new stream, its caches and decoder state zeroed (device memory for 16 slots is allocated
    // when none is free). Thread-safe.
    int acquire();
    void release(int slot);
    // Zeroes a slot's state for a new utterance.
    void reset(int slot);

    // Runs one chunk of each step (distinct slots), in launches of up to kMaxBatch steps per chunk shape (sizes from
    // launch_size); out[i] gets step i's tokens. Blocks until the tokens are on the host.
    void step(const std::vector<Step>& steps, std::vector<Output>& out);

    // Time spent in step() since the last call: all of it, and the GPU part (from the graph launch to the tokens
    // on the host, by CUDA events), with the number of batches launched.
    struct Timing {
        double total_ms = 0, gpu_ms = 0;
        double decode_ms = 0;  // the decode's share of gpu_ms, measured only when it runs outside the graph
        int batches = 0;
        // The recognizer's host work around the steps (add_host_timing): chunks cut and normalised before them,
        // tokens committed and events made after them.
        double cut_ms = 0, commit_ms = 0;
    };
    Timing take_timing();
    void add_host_timing(double cut_ms, double commit_ms);

    // Debugging: run only the first n conformer layers (-1: all); drops the captured graphs.
    void set_debug_layers(int n);
    // Steps of at most this many encoder rows (streams x frames per chunk; at most 8, default 2) run every linear
    // layer as one fused small-row kernel instead of cuBLAS and separate norm launches; 0 turns that path off.
    // Drops the captured graphs.
    void set_small_step_rows(int rows);
    // Many streams: the attention's per-channel kernel instead of the one by rows (A/B and tests; the environment
    // variable PARAKEET_ATTENTION_BY_CHANNEL=1 sets it at construction). Drops the captured graphs.
    void set_attention_by_channel(bool by_channel);

    // Device bytes held per stream slot (caches and decoder state).
    size_t slot_bytes() const;
    // Slots allocated (in use or free), the reserved padding slot included.
    int slots_allocated() const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

// The engine behind a cache-aware CUDA recognizer (null otherwise): for benchmarks and tests.
StreamBatchEngine* stream_batch_engine(const Recognizer& recognizer);

}  // namespace parakeet
