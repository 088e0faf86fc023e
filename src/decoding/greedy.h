// Greedy transducer decoding, NeMo's label-looping algorithm (greedy_batch):
// nemo/collections/asr/parts/submodules/transducer_decoding/{tdt,rnnt}_label_looping.py.
#pragma once

#include <functional>
#include <vector>

#include "models/transducer.h"

namespace parakeet {

struct Token {
    int id = 0;
    int frame = 0;       // global encoder frame where it was emitted
    int duration = 0;    // TDT duration value (encoder frames); 0 for RNNT
    float confidence = 0.f;  // softmax probability of the token over tokens + blank
};

// Decoder state carried across calls (streaming chunks): NeMo's BatchedLabelLoopingState.
struct DecoderState {
    bool started = false;     // false: the SOS step has not run yet
    Predictor::State lstm;
    std::vector<float> pred_proj;  // projected predictor output p [joint_hidden]
    int time_jump = 0;        // frames to skip at the start of the next call (t_end - T of the last call)
    int frames_decoded = 0;   // encoder frames decoded in earlier calls (global frame offset)
};

struct GreedyOptions {
    int blank_id = 0;
    std::vector<int> durations;  // empty: RNNT
    int max_symbols = 10;
};

// One step of the trace (for decode traces / debugging): frame, token argmax, duration, emitted?
struct DecodeStep {
    int frame, token, duration;
    bool emitted;
};
using DecodeTraceSink = std::function<void(const DecodeStep&)>;

// Decodes frames [0, n_frames) of fproj ([n_frames, joint_hidden], projected encoder output) starting from
// `state`, appending tokens with global frames (state.frames_decoded + t). Updates state for the next call.
void greedy_decode(const Predictor& predictor, const Joint& joint, const GreedyOptions& options,
                   const float* fproj, int n_frames, DecoderState& state, std::vector<Token>& tokens,
                   const DecodeTraceSink& trace = nullptr);

}  // namespace parakeet
