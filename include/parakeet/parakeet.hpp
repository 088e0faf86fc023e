// parakeet-engine C++ API: streaming and offline speech recognition with NVIDIA Parakeet (FastConformer +
// TDT/RNNT) checkpoints loaded from `.nemo` files.
//
// Ownership and threads: a Recognizer holds the model (read-only weights) and one device; it is created once
// and shared. A Stream holds all mutable state of one audio stream. Any number of streams may exist; calls on
// one Stream must not overlap, and Recognizer::decode must not run concurrently on the same Recognizer when it
// uses a CUDA device (one CUDA stream per recognizer). Streams must be destroyed before their recognizer.
// All errors are parakeet::Error (std::runtime_error).
#pragma once

#include <memory>
#include <string>
#include <vector>

namespace parakeet {

struct RecognizerConfig {
    std::string model_path;           // .nemo checkpoint
    std::string mode = "windowed";    // "windowed" (offline-trained models) or "cache-aware"
    // windowed: NeMo left_context_secs / chunk_secs / right_context_secs.
    double left_secs = 10.0, chunk_secs = 2.0, right_secs = 2.0;
    // cache-aware: NeMo setup_streaming_params(chunk_size, shift_size, left_chunks) in encoder frames; -1 keeps
    // the model's trained att_context_size (entry `att_context` of a multi-lookahead model).
    int chunk_size = -1, shift_size = -1, left_chunks = -1, att_context = 0;
    // Reproduce NeMo exactly, including its flaws (see docs/STREAMING.md): windowed mode drops the last frame;
    // cache-aware mode normalises features over the whole utterance, so it decodes only after input_finished().
    bool nemo_compat = false;
    // Partial results: the newest `revision_tokens` tokens, or those within `revision_ms` of the decoded
    // frontier, stay revisable; older whole words form the stable prefix.
    int revision_tokens = 4;
    double revision_ms = 0.0;
    // Endpointing: a segment closes as final after this much decoded audio without a new token (0 = never).
    double endpoint_silence_ms = 800.0;
    // Windowed mode: show tokens decoded from the right context as revisable partials.
    bool lookahead_partials = true;
    std::string device = "cpu";       // "cpu", "cuda", "cuda:N"
    std::string precision = "fp32";   // GPU: fp32, tf32, fp16, bf16
    // Cache-aware on CUDA: keep each stream's state on the device and step streams in batches through a
    // captured CUDA graph (false: the per-stream path, one stream_step at a time).
    bool batch_streams = true;
    int threads = 0;                  // CPU threads (0: all cores)
    // Throws parakeet::Error naming the first bad field.
    void validate() const;
};

struct TokenInfo {
    int id = 0;
    std::string piece;
    int frame = 0;              // global encoder frame
    double start = 0, end = 0;  // seconds from the start of the stream
    float confidence = 0;
};

struct WordInfo {
    std::string word;
    double start = 0, end = 0;  // seconds
};

struct Event {
    enum class Type { kPartial, kFinal };
    Type type = Type::kPartial;
    int segment = 0;            // segment id, increasing from 0
    std::string text;           // partial: the whole current segment; final: the committed segment
    std::string stable_text;    // partial: the prefix that will not change
    std::vector<TokenInfo> tokens;
    std::vector<WordInfo> words;
    double start = 0, end = 0;  // seconds of the segment's first and last token
    double audio_seconds = 0;   // input consumed when the event was made
    double compute_ms = 0;      // processing time of the step that made it
};

class Stream;
class Model;
class Recognizer;
// Internal: a recognizer over an already loaded model (benchmarks with generated weights).
std::shared_ptr<Recognizer> create_recognizer(const struct RecognizerConfig& config, std::shared_ptr<const Model> model);

class Recognizer {
public:
    static std::shared_ptr<Recognizer> create(const RecognizerConfig& config);
    ~Recognizer();
    std::unique_ptr<Stream> create_stream() const;
    // Runs every step the stream has audio for; events are queued on the stream.
    void decode(Stream& stream) const;
    // The same for many streams. Cache-aware streaming on a CUDA device steps all ready streams as one batch
    // (one graph launch per step for up to 1024 streams); elsewhere the streams are decoded one after another.
    void decode(const std::vector<Stream*>& streams) const;
    const RecognizerConfig& config() const;
    int sample_rate() const;  // the model's rate (input at other rates is resampled)

    struct Impl;

private:
    friend std::shared_ptr<Recognizer> create_recognizer(const RecognizerConfig&, std::shared_ptr<const Model>);
    friend class StreamBatchEngine* stream_batch_engine(const Recognizer&);
    explicit Recognizer(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

class Stream {
public:
    ~Stream();
    // Samples in [-1, 1] at any rate (resampled to the model's with soxr).
    void accept_waveform(int sample_rate, const float* samples, size_t n);
    // No more audio: the next decode() flushes everything as final.
    void input_finished();
    // True when decode() has a step to run.
    bool is_ready() const;
    // Events produced so far, oldest first; removes them from the stream.
    std::vector<Event> pop_events();
    // Forget all audio and state; the stream starts a new utterance (segment ids restart).
    void reset();
    double audio_seconds() const;

    struct Impl;

private:
    friend class Recognizer;
    explicit Stream(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

}  // namespace parakeet
