// Recognizer and Stream (include/parakeet/parakeet.hpp): windowed and cache-aware streaming over the same
// model, with partial/final events, endpointing and the decoder state carried across steps.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <deque>
#include <exception>
#include <thread>

#include "decoding/words.h"
#include "io/audio.h"
#include "ops/ops.h"
#include "parakeet/parakeet.hpp"
#include "runtime/device.h"
#include "runtime/segments.h"
#include "runtime/stream_batch.h"
#include "runtime/windowed.h"

namespace parakeet {

void RecognizerConfig::validate() const {
    PK_CHECK(mode == "windowed" || mode == "cache-aware", kInvalidArgument,
             "bad mode '{}' (expected windowed or cache-aware)", mode);
    PK_CHECK(left_secs >= 0 && chunk_secs > 0 && right_secs >= 0, kInvalidArgument,
             "bad windowed context: left {} s, chunk {} s, right {} s", left_secs, chunk_secs, right_secs);
    PK_CHECK(chunk_size == -1 || chunk_size > 0, kInvalidArgument, "bad chunk_size {}", chunk_size);
    PK_CHECK(shift_size == -1 || (shift_size > 0 && chunk_size > 0 && shift_size <= chunk_size), kInvalidArgument,
             "bad shift_size {} (needs chunk_size, and 0 < shift_size <= chunk_size)", shift_size);
    PK_CHECK(left_chunks >= -1, kInvalidArgument, "bad left_chunks {}", left_chunks);
    PK_CHECK(revision_tokens >= 0 && revision_ms >= 0, kInvalidArgument, "bad revision window");
    PK_CHECK(endpoint_silence_ms >= 0, kInvalidArgument, "bad endpoint_silence_ms {}", endpoint_silence_ms);
    PK_CHECK(threads >= 0 && threads <= 1024, kInvalidArgument, "bad threads {}", threads);
}

struct Recognizer::Impl {
    RecognizerConfig cfg;
    std::shared_ptr<const Model> model;
    std::unique_ptr<DeviceRunner> runner;
    StreamingConfig sc;  // cache-aware
    // Cache-aware on CUDA: streams keep their state in slots of this engine and step as one batch.
    std::unique_ptr<StreamBatchEngine> batch;
};

struct Stream::Impl {
    const Recognizer::Impl* rec = nullptr;
    int input_rate = 0;
    std::unique_ptr<Resampler> resampler;
    bool finished = false, done = false;
    int64_t samples = 0;

    // windowed
    std::unique_ptr<WindowedStreamer> win;
    // cache-aware
    std::unique_ptr<StreamingLogMel> mel;
    std::vector<float> feats;    // raw log-mels [n, n_mels] from frame feats_offset
    int64_t feats_offset = 0, n_feats = 0;
    int64_t p = 0;               // next chunk's first feature frame
    int step = 0;
    EncoderCache cache;
    DecoderState dstate;
    int slot = -1;               // StreamBatchEngine slot (batched cache-aware streaming)
    Tensor chunk_buffer;         // the rows of the current chunk (next_chunk)

    SegmentTracker segments;
    std::deque<Event> events;

    ~Impl() {
        if (slot >= 0 && rec && rec->batch) rec->batch->release(slot);
    }
    void feed(const float* x, size_t n);
};

namespace {

// One cache-aware chunk cut from a stream's features (NeMo CacheAwareStreamingAudioBuffer slicing, spec 7.7).
struct CacheAwareChunk {
    Tensor features;  // [pre + real, n_mels] host: a view of the stream's features or chunk buffer, valid until
                      // commit_chunk
    int pre = 0, real = 0;
    bool first = false, last = false;
    bool normalize = false;  // NeMo's online normalisation is still to be applied (see next_chunk)
    int64_t p_next = 0;
};

// Cuts the stream's next chunk: a view of the stream's features where its rows lie there unchanged, else a copy in
// the stream's chunk buffer (no allocation per step). NeMo's online per-feature normalisation is applied here (on
// the copy), or left to the batched engine's GPU step when `defer_normalize` (then out.normalize says whether it
// is due). False when the stream has no further step: it is then marked done and its last segment closed.
bool next_chunk(Stream::Impl& s, const Recognizer::Impl& r, double audio_seconds, CacheAwareChunk& out,
                bool defer_normalize = false) {
    const Model& m = *r.model;
    const StreamingConfig& sc = r.sc;
    const int n_mels = m.frontend().n_mels();
    const bool compat = r.cfg.nemo_compat;
    // NeMo >= 2.5 features carry one zeroed frame past the valid length, and its buffer counts it.
    const int64_t total = s.n_feats + (compat && s.finished && s.n_feats > 0 ? 1 : 0);
    if (compat && s.step == 0) {
        // Whole-utterance normalisation, as NeMo's simulation normalises the file before chunking.
        if (m.config().preprocessor.normalize == "per_feature") normalize_per_feature(s.feats.data(), s.n_feats, n_mels);
        s.feats.resize(static_cast<size_t>(total * n_mels), 0.f);
    }
    const int pre = s.step == 0 ? 0 : sc.pre_encode_cache_size[1];
    const int width = s.step == 0 ? sc.chunk_size[0] : sc.chunk_size[1];
    const int64_t end = std::min<int64_t>(s.p + width, total);
    const int64_t real = end - s.p;
    if (s.p >= total || real < (s.step == 0 ? 1 : m.config().encoder.subsampling_factor)) {
        s.done = true;
        s.segments.update(r.cfg, {}, {}, s.dstate.frames_decoded, true, 0, audio_seconds, s.events);
        return false;
    }
    const int64_t rows = pre + real;
    const bool online = !compat && m.config().preprocessor.normalize == "per_feature";  // NeMo online_normalization
    out.normalize = online && defer_normalize;
    const bool normalize_here = online && !defer_normalize;
    if (s.p - pre >= s.feats_offset && !normalize_here) {
        // The rows lie contiguous in the stream's features, which stay as they are until commit_chunk: a view.
        out.features = Tensor::view(s.feats.data() + (s.p - pre - s.feats_offset) * n_mels, {rows, n_mels}, DType::kF32,
                                    nullptr);
    } else {
        if (!s.chunk_buffer.defined() || s.chunk_buffer.dim(0) < rows)
            s.chunk_buffer =
                Tensor::empty({std::max<int64_t>(rows, sc.pre_encode_cache_size[1] + sc.chunk_size[1]), n_mels});
        out.features = s.chunk_buffer.slice0(0, rows);
        float* x = out.features.data<float>();
        for (int64_t i = -pre; i < real; ++i) {
            const int64_t f = s.p + i;
            float* row = x + (i + pre) * n_mels;
            if (f < 0) {
                std::fill_n(row, n_mels, 0.f);
            } else {
                std::copy_n(s.feats.data() + (f - s.feats_offset) * n_mels, n_mels, row);
            }
        }
        if (normalize_here) normalize_per_feature(x, rows, n_mels);
    }
    out.pre = pre;
    out.real = static_cast<int>(real);
    out.first = s.step == 0;
    out.p_next = s.p + (s.step == 0 ? sc.shift_size[0] : sc.shift_size[1]);
    out.last = s.finished && out.p_next >= total;
    return true;
}

// The batched engine's step for a stream's chunk.
StreamBatchEngine::Step batch_step(const Stream::Impl& s, const CacheAwareChunk& c) {
    StreamBatchEngine::Step st{s.slot, c.first, c.features.data<float>(), c.pre + c.real, c.last, s.dstate.frames_decoded};
    st.normalize = c.normalize;
    return st;
}

// Moves the stream past a decoded chunk and reports its tokens.
void commit_chunk(Stream::Impl& s, const Recognizer::Impl& r, const CacheAwareChunk& chunk,
                  std::vector<Token> tokens, double ms, double audio_seconds) {
    const int n_mels = r.model->frontend().n_mels();
    s.p = chunk.p_next;
    ++s.step;
    if (chunk.last) s.done = true;
    // Keep only the features later chunks can reach.
    const int64_t keep_from = std::max<int64_t>(0, s.p - r.sc.pre_encode_cache_size[1]);
    if (keep_from > s.feats_offset && keep_from <= s.n_feats) {
        s.feats.erase(s.feats.begin(), s.feats.begin() + (keep_from - s.feats_offset) * n_mels);
        s.feats_offset = keep_from;
    }
    s.segments.update(r.cfg, tokens, {}, s.dstate.frames_decoded, chunk.last, ms, audio_seconds, s.events);
}

}  // namespace


std::shared_ptr<Recognizer> Recognizer::create(const RecognizerConfig& config) {
    config.validate();
    return create_recognizer(config, Model::load(config.model_path));
}

std::shared_ptr<Recognizer> create_recognizer(const RecognizerConfig& config, std::shared_ptr<const Model> model) {
    config.validate();
    auto impl = std::make_unique<Recognizer::Impl>();
    impl->cfg = config;
    impl->model = std::move(model);
    const int threads =
        config.threads > 0 ? config.threads : std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
    impl->runner = std::make_unique<DeviceRunner>(impl->model, Device::parse(config.device),
                                                  parse_precision(config.precision), threads);
    if (config.mode == "cache-aware") {
        impl->sc = impl->model->encoder().streaming_config(config.chunk_size, config.shift_size, config.left_chunks,
                                                           config.att_context);
        if (impl->runner->is_cuda() && config.batch_streams &&
            StreamBatchEngine::unsupported_reason(*impl->model, impl->sc, config.att_context).empty())
            impl->batch = std::make_unique<StreamBatchEngine>(impl->model, impl->sc, config.att_context,
                                                              impl->runner->ctx().device.index,
                                                              impl->runner->ctx().precision);
    } else {
        WindowedStreamer probe(impl->model,
                               {config.left_secs, config.chunk_secs, config.right_secs, config.nemo_compat});
    }
    return std::shared_ptr<Recognizer>(new Recognizer(std::move(impl)));
}

Recognizer::Recognizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Recognizer::~Recognizer() = default;
const RecognizerConfig& Recognizer::config() const { return impl_->cfg; }
int Recognizer::sample_rate() const { return impl_->model->config().preprocessor.sample_rate; }

std::unique_ptr<Stream> Recognizer::create_stream() const {
    auto s = std::make_unique<Stream::Impl>();
    s->rec = impl_.get();
    std::unique_ptr<Stream> stream(new Stream(std::move(s)));
    stream->reset();
    return stream;
}

Stream::Stream(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Stream::~Stream() = default;

void Stream::reset() {
    Impl& s = *impl_;
    const Recognizer::Impl& r = *s.rec;
    s.resampler.reset();
    s.input_rate = 0;
    s.finished = s.done = false;
    s.samples = 0;
    s.segments = SegmentTracker(r.model->tokenizer(), r.model->frame_seconds(), r.model->config().is_tdt());
    s.events.clear();
    s.dstate = DecoderState();
    if (r.cfg.mode == "windowed") {
        s.win = std::make_unique<WindowedStreamer>(
            r.model, WindowedOptions{r.cfg.left_secs, r.cfg.chunk_secs, r.cfg.right_secs, r.cfg.nemo_compat});
    } else {
        s.mel = std::make_unique<StreamingLogMel>(r.model->frontend());
        s.feats.clear();
        s.feats_offset = s.n_feats = s.p = 0;
        s.step = 0;
        if (r.batch) {
            // Device state lives in the engine's slot (allocated once per stream, zeroed per utterance).
            if (s.slot < 0) {
                s.slot = r.batch->acquire();
            } else {
                r.batch->reset(s.slot);
            }
        } else {
            s.cache = r.model->encoder().initial_cache(r.sc, 1, r.runner->ctx().device);
        }
    }
}

double Stream::audio_seconds() const {
    return static_cast<double>(impl_->samples) / impl_->rec->model->config().preprocessor.sample_rate;
}

void Stream::Impl::feed(const float* x, size_t n) {
    if (n == 0) return;
    check_finite(x, n, "stream input");
    samples += static_cast<int64_t>(n);
    if (win) {
        win->accept(x, n);
    } else {
        mel->accept(x, n);
        n_feats += mel->pull(feats);
    }
}

void Stream::accept_waveform(int sample_rate, const float* x, size_t n) {
    Impl& s = *impl_;
    PK_CHECK(!s.finished, kInvalidArgument, "accept_waveform after input_finished");
    PK_CHECK(sample_rate > 0 && sample_rate <= 768000, kInvalidArgument, "bad sample rate {}", sample_rate);
    const int model_rate = s.rec->model->config().preprocessor.sample_rate;
    PK_CHECK(s.input_rate == 0 || s.input_rate == sample_rate, kInvalidArgument,
             "sample rate changed from {} to {} within a stream (reset() first)", s.input_rate, sample_rate);
    s.input_rate = sample_rate;
    if (sample_rate == model_rate) {
        s.feed(x, n);
        return;
    }
    if (!s.resampler) s.resampler = std::make_unique<Resampler>(sample_rate, model_rate);
    std::vector<float> y = s.resampler->process(x, n);
    s.feed(y.data(), y.size());
}

void Stream::input_finished() {
    Impl& s = *impl_;
    if (s.finished) return;
    if (s.resampler) {
        std::vector<float> y = s.resampler->flush();
        s.feed(y.data(), y.size());
    }
    s.finished = true;
    if (s.win) {
        s.win->finish();
    } else {
        s.mel->finish();
        s.n_feats += s.mel->pull(s.feats);
    }
}

bool Stream::is_ready() const {
    const Impl& s = *impl_;
    if (s.done) return false;
    if (s.win) return s.win->ready();
    const StreamingConfig& sc = s.rec->sc;
    if (s.rec->cfg.nemo_compat) return s.finished;
    if (s.finished) return true;
    return s.step == 0 ? s.n_feats >= sc.chunk_size[0] : s.n_feats >= s.p + sc.chunk_size[1];
}

std::vector<Event> Stream::pop_events() {
    std::vector<Event> out(impl_->events.begin(), impl_->events.end());
    impl_->events.clear();
    return out;
}

void Recognizer::decode(Stream& stream) const {
    Stream::Impl& s = *stream.impl_;
    const Impl& r = *impl_;
    const ExecContext& ctx = r.runner->ctx();
    const Model& m = *r.model;
    while (stream.is_ready()) {
        const auto t0 = std::chrono::steady_clock::now();
        std::vector<Token> committed, lookahead;
        int frontier = 0;
        bool last = false;
        if (s.win) {
            WindowedStep st = s.win->step(*r.runner, r.cfg.lookahead_partials);
            committed = std::move(st.tokens);
            lookahead = std::move(st.lookahead);
            frontier = s.win->decoder_state().frames_decoded;
            last = st.last;
        } else {
            CacheAwareChunk chunk;
            if (!next_chunk(s, r, stream.audio_seconds(), chunk, r.batch != nullptr)) return;
            std::vector<Token> toks;
            if (r.batch) {
                std::vector<StreamBatchEngine::Output> outs;
                r.batch->step({batch_step(s, chunk)}, outs);
                toks = std::move(outs[0].tokens);
                s.dstate.frames_decoded += outs[0].frames;
            } else {
                const int drop = chunk.first ? 0 : r.sc.drop_extra_pre_encoded;
                StreamStepOutput out = m.encoder().stream_step(ctx, r.sc, {chunk.features}, {chunk.pre + chunk.real},
                                                               s.cache, drop, chunk.last, r.cfg.att_context);
                const int n = out.encoded_len[0];
                Tensor f = Tensor::empty({1, std::max(n, 0), m.joint().hidden()}, DType::kF32, ctx.device);
                if (n > 0) {
                    Tensor f2 = f.reshape({n, m.joint().hidden()});
                    m.joint().project_encoder(
                        ctx, out.encoded.reshape({out.encoded.dim(1), out.encoded.dim(2)}).slice0(0, n), f2);
                }
                std::vector<DecoderState> states{s.dstate};
                std::vector<std::vector<Token>> dec;
                r.runner->decode(f, {n}, states, dec);
                s.dstate = states[0];
                toks = std::move(dec[0]);
            }
            const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
            commit_chunk(s, r, chunk, std::move(toks), ms, stream.audio_seconds());
            continue;
        }
        const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
        s.segments.update(r.cfg, committed, std::move(lookahead), frontier, last, ms, stream.audio_seconds(), s.events);
        if (last) s.done = true;
    }
}

StreamBatchEngine* stream_batch_engine(const Recognizer& recognizer) { return recognizer.impl_->batch.get(); }

void Recognizer::decode(const std::vector<Stream*>& streams) const {
    const Impl& r = *impl_;
    if (r.cfg.mode == "windowed") {
        // The windows of all ready streams are encoded as one batch (up to 64 at a time) and their chunks decoded
        // as one batch; each stream's result is the same as decoding it alone.
        constexpr size_t kMaxWindows = 64;
        for (;;) {
            std::vector<Stream*> ready;
            for (Stream* stream : streams)
                if (stream->is_ready()) ready.push_back(stream);
            if (ready.empty()) return;
            for (size_t i0 = 0; i0 < ready.size(); i0 += kMaxWindows) {
                const auto t0 = std::chrono::steady_clock::now();
                const size_t i1 = std::min(ready.size(), i0 + kMaxWindows);
                std::vector<WindowedStreamer*> ws;
                for (size_t i = i0; i < i1; ++i) ws.push_back(ready[i]->impl_->win.get());
                std::vector<WindowedStep> steps = WindowedStreamer::step_many(*r.runner, ws, r.cfg.lookahead_partials);
                const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
                for (size_t i = i0; i < i1; ++i) {
                    Stream::Impl& s = *ready[i]->impl_;
                    WindowedStep& st = steps[i - i0];
                    s.segments.update(r.cfg, st.tokens, std::move(st.lookahead), s.win->decoder_state().frames_decoded,
                                      st.last, ms, ready[i]->audio_seconds(), s.events);
                    if (st.last) s.done = true;
                }
            }
        }
    }
    if (!r.batch) {
        for (Stream* stream : streams) decode(*stream);
        return;
    }
    // Every ready stream contributes its next chunk to one batched step, until none is ready. The per-stream
    // commit (decoder position, events) runs on the CPU threads in parallel.
    std::vector<Stream*> ready;
    std::vector<CacheAwareChunk> chunks;
    std::vector<char> has_chunk;
    std::vector<Stream::Impl*> who;
    std::vector<size_t> which;
    std::vector<StreamBatchEngine::Step> steps;
    std::vector<StreamBatchEngine::Output> outs;
    std::vector<std::exception_ptr> errors;
    auto parallel = [&](size_t n, const auto& fn) {
        errors.assign(n, nullptr);
#pragma omp parallel for schedule(dynamic, 8) if (n >= 32)
        for (size_t i = 0; i < n; ++i) {
            try {
                fn(i);
            } catch (...) {
                errors[i] = std::current_exception();
            }
        }
        for (const auto& e : errors)
            if (e) std::rethrow_exception(e);
    };
    for (;;) {
        const auto t0 = std::chrono::steady_clock::now();
        ready.clear();
        for (Stream* stream : streams)
            if (stream->is_ready()) ready.push_back(stream);
        if (ready.empty()) return;
        chunks.assign(ready.size(), CacheAwareChunk{});
        has_chunk.assign(ready.size(), 0);
        // A chunk is a view of the stream's features (no copy, normalised on the GPU), well under a microsecond per
        // stream: one thread cuts them, as waking the worker threads after the previous GPU step cost up to 4 ms on
        // loaded hosts (H100 machine, session 9). Streams whose input has ended may close their segment instead (a
        // final event over the whole segment): when any may, the worker threads share the work.
        auto cut = [&](size_t i) {
            has_chunk[i] = next_chunk(*ready[i]->impl_, r, ready[i]->audio_seconds(), chunks[i], true) ? 1 : 0;
        };
        if (std::any_of(ready.begin(), ready.end(), [](const Stream* st) { return st->impl_->finished; })) {
            parallel(ready.size(), cut);
        } else {
            for (size_t i = 0; i < ready.size(); ++i) cut(i);
        }
        who.clear();
        which.clear();
        steps.clear();
        for (size_t i = 0; i < ready.size(); ++i) {
            if (!has_chunk[i]) continue;
            Stream::Impl& s = *ready[i]->impl_;
            const CacheAwareChunk& c = chunks[i];
            who.push_back(&s);
            which.push_back(i);
            steps.push_back(batch_step(s, c));
        }
        const auto t1 = std::chrono::steady_clock::now();
        if (steps.empty()) {  // streams that just ended; look again
            r.batch->add_host_timing(std::chrono::duration<double, std::milli>(t1 - t0).count(), 0);
            continue;
        }
        r.batch->step(steps, outs);
        const auto t2 = std::chrono::steady_clock::now();
        const double ms = std::chrono::duration<double, std::milli>(t2 - t0).count();
        parallel(who.size(), [&](size_t i) {
            Stream::Impl& s = *who[i];
            s.dstate.frames_decoded += outs[i].frames;
            const double seconds = static_cast<double>(s.samples) / r.model->config().preprocessor.sample_rate;
            commit_chunk(s, r, chunks[which[i]], std::move(outs[i].tokens), ms, seconds);
        });
        r.batch->add_host_timing(std::chrono::duration<double, std::milli>(t1 - t0).count(),
                                 std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t2).count());
    }
}

}  // namespace parakeet
