// The C ABI over the C++ API: catches everything and returns a status.
#include "parakeet/parakeet.h"

#include <deque>
#include <string>
#include <vector>

#include "core/error.h"
#include "parakeet/parakeet.hpp"

struct parakeet_recognizer {
    std::shared_ptr<parakeet::Recognizer> rec;
};

struct parakeet_stream {
    parakeet_recognizer* owner;
    std::unique_ptr<parakeet::Stream> stream;
    std::deque<parakeet::Event> queue;
    parakeet::Event current;  // backs the strings of the last popped event
    std::vector<parakeet_word> words;
};

namespace {

thread_local std::string g_last_error;

template <typename Fn>
parakeet_status guarded(Fn&& fn) {
    try {
        fn();
        return PARAKEET_OK;
    } catch (const parakeet::Error& e) {
        g_last_error = e.what();
        switch (e.code()) {
            case parakeet::ErrorCode::kInvalidArgument: return PARAKEET_INVALID_ARGUMENT;
            case parakeet::ErrorCode::kIo: return PARAKEET_IO_ERROR;
            case parakeet::ErrorCode::kFormat: return PARAKEET_FORMAT_ERROR;
            case parakeet::ErrorCode::kUnsupported: return PARAKEET_UNSUPPORTED;
            case parakeet::ErrorCode::kInternal: return PARAKEET_INTERNAL_ERROR;
        }
        return PARAKEET_INTERNAL_ERROR;
    } catch (const std::exception& e) {
        g_last_error = e.what();
        return PARAKEET_INTERNAL_ERROR;
    } catch (...) {
        g_last_error = "unknown error";
        return PARAKEET_INTERNAL_ERROR;
    }
}

parakeet_status null_argument(const char* what) {
    g_last_error = std::string("null argument: ") + what;
    return PARAKEET_INVALID_ARGUMENT;
}

}  // namespace

extern "C" {

parakeet_recognizer_config parakeet_recognizer_default_config(void) {
    const parakeet::RecognizerConfig d;
    parakeet_recognizer_config c{};
    c.mode = "windowed";
    c.left_secs = d.left_secs;
    c.chunk_secs = d.chunk_secs;
    c.right_secs = d.right_secs;
    c.chunk_size = d.chunk_size;
    c.shift_size = d.shift_size;
    c.left_chunks = d.left_chunks;
    c.att_context = d.att_context;
    c.revision_tokens = d.revision_tokens;
    c.revision_ms = d.revision_ms;
    c.endpoint_silence_ms = d.endpoint_silence_ms;
    c.device = "cpu";
    c.precision = "fp32";
    return c;
}

parakeet_status parakeet_recognizer_create(const parakeet_recognizer_config* c, parakeet_recognizer** out) {
    if (!c || !out) return null_argument("config/out");
    if (!c->model_path) return null_argument("model_path");
    return guarded([&] {
        parakeet::RecognizerConfig cfg;
        cfg.model_path = c->model_path;
        if (c->mode) cfg.mode = c->mode;
        cfg.left_secs = c->left_secs;
        cfg.chunk_secs = c->chunk_secs;
        cfg.right_secs = c->right_secs;
        cfg.chunk_size = c->chunk_size;
        cfg.shift_size = c->shift_size;
        cfg.left_chunks = c->left_chunks;
        cfg.att_context = c->att_context;
        cfg.nemo_compat = c->nemo_compat != 0;
        cfg.revision_tokens = c->revision_tokens;
        cfg.revision_ms = c->revision_ms;
        cfg.endpoint_silence_ms = c->endpoint_silence_ms;
        if (c->device) cfg.device = c->device;
        if (c->precision) cfg.precision = c->precision;
        cfg.threads = c->threads;
        *out = new parakeet_recognizer{parakeet::Recognizer::create(cfg)};
    });
}

void parakeet_recognizer_destroy(parakeet_recognizer* r) { delete r; }

int parakeet_recognizer_sample_rate(const parakeet_recognizer* r) { return r ? r->rec->sample_rate() : 0; }

parakeet_status parakeet_recognizer_decode(parakeet_recognizer* r, parakeet_stream* s) {
    if (!r || !s) return null_argument("recognizer/stream");
    return guarded([&] {
        r->rec->decode(*s->stream);
        for (parakeet::Event& e : s->stream->pop_events()) s->queue.push_back(std::move(e));
    });
}

parakeet_status parakeet_recognizer_decode_many(parakeet_recognizer* r, parakeet_stream* const* streams, size_t n) {
    if (!r || (n > 0 && !streams)) return null_argument("recognizer/streams");
    for (size_t i = 0; i < n; ++i)
        if (!streams[i]) return null_argument("streams[i]");
    return guarded([&] {
        std::vector<parakeet::Stream*> list;
        for (size_t i = 0; i < n; ++i) list.push_back(streams[i]->stream.get());
        r->rec->decode(list);
        for (size_t i = 0; i < n; ++i)
            for (parakeet::Event& e : streams[i]->stream->pop_events()) streams[i]->queue.push_back(std::move(e));
    });
}

parakeet_status parakeet_stream_create(parakeet_recognizer* r, parakeet_stream** out) {
    if (!r || !out) return null_argument("recognizer/out");
    return guarded([&] { *out = new parakeet_stream{r, r->rec->create_stream(), {}, {}, {}}; });
}

void parakeet_stream_destroy(parakeet_stream* s) { delete s; }

parakeet_status parakeet_stream_accept_waveform(parakeet_stream* s, int rate, const float* x, size_t n) {
    if (!s || (!x && n)) return null_argument("stream/samples");
    return guarded([&] { s->stream->accept_waveform(rate, x, n); });
}

parakeet_status parakeet_stream_input_finished(parakeet_stream* s) {
    if (!s) return null_argument("stream");
    return guarded([&] { s->stream->input_finished(); });
}

parakeet_status parakeet_stream_reset(parakeet_stream* s) {
    if (!s) return null_argument("stream");
    return guarded([&] {
        s->stream->reset();
        s->queue.clear();
    });
}

parakeet_status parakeet_stream_pop_event(parakeet_stream* s, parakeet_event* e) {
    if (!s || !e) return null_argument("stream/event");
    if (s->queue.empty()) return PARAKEET_NO_EVENT;
    s->current = std::move(s->queue.front());
    s->queue.pop_front();
    s->words.clear();
    for (const parakeet::WordInfo& w : s->current.words) s->words.push_back({w.word.c_str(), w.start, w.end});
    e->type = s->current.type == parakeet::Event::Type::kFinal ? PARAKEET_EVENT_FINAL : PARAKEET_EVENT_PARTIAL;
    e->segment = s->current.segment;
    e->text = s->current.text.c_str();
    e->stable_text = s->current.stable_text.c_str();
    e->words = s->words.data();
    e->n_words = s->words.size();
    e->start = s->current.start;
    e->end = s->current.end;
    e->audio_seconds = s->current.audio_seconds;
    e->compute_ms = s->current.compute_ms;
    return PARAKEET_OK;
}

const char* parakeet_last_error(void) { return g_last_error.c_str(); }

const char* parakeet_version(void) { return PARAKEET_VERSION; }

}  // extern "C"
