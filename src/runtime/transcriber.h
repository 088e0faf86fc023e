// Offline transcription: audio -> features -> encoder -> greedy transducer decoding -> text, tokens, words.
#pragma once

#include <string>
#include <vector>

#include "core/context.h"
#include "decoding/words.h"
#include "runtime/device.h"
#include "runtime/model.h"

namespace parakeet {

struct TranscribeOptions {
    // Attention over the whole file up to this many encoder frames (18000 = 24 min at 80 ms); longer inputs
    // use NeMo's local attention (rel_pos_local_attn) with `local_window` frames each side, so memory and
    // time grow linearly. 0 forces local attention; a negative value forces full context.
    int full_context_max_frames = 18000;
    int local_window = 128;
    // Receives NeMo-named intermediates (features, encoder_output, ...) for parity dumps; may be null.
    TensorSink sink;
    DecodeTraceSink trace;
};

struct Transcript {
    std::string text;
    std::vector<TimedToken> tokens;
    std::vector<Word> words;
    double duration = 0;  // seconds of audio
    int n_feature_frames = 0;
    int n_encoder_frames = 0;
    // Wall-clock seconds per stage.
    double frontend_seconds = 0, encoder_seconds = 0, decoder_seconds = 0;
};

// Transcribes each item of a batch (samples at the model's rate) on the runner's device. Encoder and decoder
// run batched.
std::vector<Transcript> transcribe(const Model& model, const DeviceRunner& runner,
                                   const std::vector<std::vector<float>>& audio, const TranscribeOptions& options);
// CPU convenience form (ctx.device must be the CPU).
std::vector<Transcript> transcribe(const Model& model, const ExecContext& ctx,
                                   const std::vector<std::vector<float>>& audio, const TranscribeOptions& options);

}  // namespace parakeet
