// Greedy TDT/RNNT decoding on the GPU: the whole label-looping loop of src/decoding/greedy.cc runs in one
// persistent kernel per batch (no host round trip per step). Same rules and results as greedy_decode():
// ties to the lowest index, blank with duration 0 advances 1, duration values from the config, max_symbols
// force-step, time_jump carried between calls, a token emitted even when its duration passes T.
// Plain C++ header; defined only in CUDA builds.
#pragma once

#include <memory>
#include <vector>

#include "core/context.h"
#include "decoding/greedy.h"
#include "models/config.h"
#include "models/weights.h"

namespace parakeet::cuda {

// Device copies of the prediction network and joint, uploaded once per model and device. The LSTM, projection
// and joint matrices are float32 for kF32/kTF32 and float16/bfloat16 for kF16/kBF16 (accumulation stays float32;
// embeddings, biases and the carried state are float32).
class GreedyDecoder {
public:
    // Reads decoder.prediction.* and joint.* from `weights` (as Predictor and Joint do) and uploads them.
    GreedyDecoder(CudaContext& ctx, const ModelConfig& config, const WeightStore& weights,
                  Precision precision = Precision::kF32);
    ~GreedyDecoder();
    GreedyDecoder(const GreedyDecoder&) = delete;
    GreedyDecoder& operator=(const GreedyDecoder&) = delete;

    // Decodes a batch. fproj: device float32 [B, max_frames, joint_hidden] (the joint's projected encoder
    // output; item b's rows [0, lengths[b]) are read). lengths: host [B]. states: [B], in/out, the same
    // DecoderState as the CPU decoder (a default state starts a new utterance). tokens: [B], appended with
    // global frames (state.frames_decoded + t). Synchronises the context's stream. Thread-safe for distinct
    // contexts of the decoder's device.
    void decode(CudaContext& ctx, const float* fproj, int64_t max_frames, const int* lengths, int batch,
                std::vector<DecoderState>& states, std::vector<std::vector<Token>>& tokens) const;

    // The same decode with everything on the device and nothing synchronised (CUDA-graph capturable): the
    // batched streaming step (src/runtime/stream_batch.cc) keeps each stream's state on the device.
    struct DeviceBatch {
        const float* fproj;    // [B, ·] item b's frames at fproj + b * item_stride, joint_hidden apart
        int64_t item_stride;
        const int* lengths;    // [B] frames to decode
        int batch;
        int max_tokens;        // token capacity per item (>= max frames · max_symbols + 1)
        float* h;              // [B, layers · hidden] in/out
        float* c;              // [B, layers · hidden] in/out
        float* p;              // [B, joint_hidden] in/out
        int* t;                // [B] in: carried time jump; out: final t (time jump = t - lengths[b])
        const int* started;    // [B] 0: run the SOS step first
        float* scratch;        // scratch_floats(batch)
        int* int_scratch;      // int_scratch(batch), error flag last (must start at 0)
        int* tokens;           // [4, B, max_tokens]: id, local frame, duration, confidence (float bits)
        int* n_tokens;         // [B]
    };
    size_t scratch_floats(int batch) const;
    size_t int_scratch(int batch) const;
    void decode_device(CudaContext& ctx, const DeviceBatch& d) const;

    const GreedyOptions& options() const { return options_; }
    int state_floats() const { return 2 * n_layers_ * hidden_ + joint_hidden_; }
    int hidden() const { return hidden_; }
    int n_layers() const { return n_layers_; }
    int joint_hidden() const { return joint_hidden_; }

private:
    struct DeviceWeights;
    GreedyOptions options_;
    int hidden_ = 0, n_layers_ = 0, joint_hidden_ = 0, n_outputs_ = 0, activation_ = 0, weight_type_ = 0;
    bool tensor_joint_ = false;  // 16-bit weights and joint_hidden % 16 == 0: large batches use tensor cores
    std::unique_ptr<DeviceWeights> weights_;
};

// Appends item `item`'s `count` tokens from a host copy of DeviceBatch::tokens ([4, batch, max_tokens]: id, local
// frame, duration, confidence bits), frames offset by frame_offset.
void append_device_tokens(const int* tokens, int count, int item, int batch, int max_tokens, int frame_offset,
                          std::vector<Token>& out);

// One-call form: decodes fresh utterances (new states) and returns each item's tokens.
std::vector<std::vector<Token>> greedy_decode_batch(CudaContext& ctx, const GreedyDecoder& decoder,
                                                    const float* fproj, int64_t max_frames, const int* lengths,
                                                    int batch);

}  // namespace parakeet::cuda
