// Windowed (left/chunk/right) streaming for offline-trained models, as NeMo's
// examples/asr/asr_chunked_inference/rnnt/speech_to_text_streaming_infer_rnnt.py runs it: each step re-encodes a
// window of audio (its own normalisation), drops the left-context frames, decodes only the chunk's frames with
// the decoder state carried over, and keeps the right-context frames as acoustic context only.
#pragma once

#include <vector>

#include "decoding/greedy.h"
#include "runtime/device.h"
#include "runtime/model.h"

namespace parakeet {

struct WindowedOptions {
    double left_secs = 10.0, chunk_secs = 2.0, right_secs = 2.0;  // NeMo left/chunk/right_context_secs
    // NeMo's exact behaviour (what parity uses): on the last step the window is cut to end at the input's end,
    // so its frames leave the 80 ms grid, and only floor(chunk / frame) frames are decoded, which loses the last
    // encoder frame (and any token on it) whenever the length is not a multiple of 1280 samples.
    // Default (false): the last window starts on the frame grid and decodes every remaining encoder frame, so a
    // window covering the whole input gives exactly the offline result.
    bool nemo_compat = false;
};

// One step's result.
struct WindowedStep {
    int64_t buffer_start = 0, buffer_end = 0;  // samples of the window
    int left_frames = 0;                       // encoder frames dropped from the window's start
    int out_len = 0;                           // chunk frames decoded
    int first_frame = 0;                       // global encoder frame of the first decoded frame
    Tensor encoded;                            // [T_window - left_frames, D]: chunk and right-context frames
                                               // (on the stepping device)
    std::vector<Token> tokens;                 // committed tokens of this step (global frames)
    std::vector<Token> lookahead;              // tentative tokens decoded from the right context (not committed)
    bool last = false;
};

class WindowedStreamer {
public:
    WindowedStreamer(std::shared_ptr<const Model> model, const WindowedOptions& options);

    // Appends samples at the model's rate.
    void accept(const float* samples, size_t n);
    // No more input: the next step is the last one.
    void finish();
    // True when a step can run (a full chunk plus right context, or the rest after finish()).
    bool ready() const;
    // Runs one step on the runner's device. Requires ready().
    WindowedStep step(const DeviceRunner& runner, bool with_lookahead = false);
    // One step of each streamer (all ready(), distinct) with their windows encoded as one batch and their chunks
    // decoded as one batch; the same results as step() on each.
    static std::vector<WindowedStep> step_many(const DeviceRunner& runner, const std::vector<WindowedStreamer*>& streamers,
                                               bool with_lookahead = false);
    bool done() const { return done_; }
    void reset();

    int frame_samples() const { return frame_samples_; }
    int64_t samples_received() const { return received_; }
    const DecoderState& decoder_state() const { return state_; }

private:
    // A step's window, cut and featurised, waiting for the encoder.
    struct Pending {
        WindowedStep s;
        int64_t chunk_end = 0, left = 0, chunk = 0;
        Tensor feats;  // [F, n_mels] on the runner's device
    };
    Pending prepare(const ExecContext& ctx) const;
    // After the encoder: the step's frames (item rows of the batch's output, enc_len valid) and its projection.
    int64_t place(Pending& p, const Tensor& enc_rows, int enc_len) const;
    // Moves past the step (state already updated).
    void advance(const Pending& p);

    std::shared_ptr<const Model> model_;
    WindowedOptions opt_;
    int frame_samples_;          // samples per encoder frame (1280)
    int64_t left_, chunk_, right_;  // samples
    std::vector<float> buffer_;  // samples [buffer_offset_, received_)
    int64_t buffer_offset_ = 0;
    int64_t received_ = 0;
    int64_t next_chunk_ = 0;     // first sample of the next chunk
    bool finished_ = false, done_ = false;
    DecoderState state_;
};

}  // namespace parakeet
