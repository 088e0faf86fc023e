/* parakeet-engine C ABI.
 *
 * Ownership: every parakeet_*_create returns a handle the caller frees with the matching parakeet_*_destroy.
 * Strings returned inside a parakeet_event stay valid until the next parakeet_stream_pop_event or
 * parakeet_stream_destroy on that stream. Threads: a recognizer may be shared; calls on one stream must not
 * overlap; on a CUDA device, parakeet_recognizer_decode calls on one recognizer must not overlap.
 * Errors: fallible calls return a parakeet_status; parakeet_last_error() gives the message of the calling
 * thread's last failure. Nothing here aborts or exits. */
#ifndef PARAKEET_H_
#define PARAKEET_H_

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    PARAKEET_OK = 0,
    PARAKEET_INVALID_ARGUMENT = 1,
    PARAKEET_IO_ERROR = 2,
    PARAKEET_FORMAT_ERROR = 3,
    PARAKEET_UNSUPPORTED = 4,
    PARAKEET_INTERNAL_ERROR = 5,
    PARAKEET_NO_EVENT = 6
} parakeet_status;

typedef struct parakeet_recognizer parakeet_recognizer;
typedef struct parakeet_stream parakeet_stream;

typedef struct {
    const char* model_path;  /* .nemo checkpoint */
    const char* mode;        /* "windowed" or "cache-aware" */
    double left_secs, chunk_secs, right_secs;           /* windowed */
    int chunk_size, shift_size, left_chunks, att_context; /* cache-aware, encoder frames; -1 = model default */
    int nemo_compat;         /* 1: reproduce NeMo exactly (parity) */
    int revision_tokens;
    double revision_ms;
    double endpoint_silence_ms;
    const char* device;      /* "cpu", "cuda", "cuda:N" */
    const char* precision;   /* "fp32", "tf32", "fp16", "bf16" */
    int threads;             /* 0: all cores */
} parakeet_recognizer_config;

typedef enum { PARAKEET_EVENT_PARTIAL = 0, PARAKEET_EVENT_FINAL = 1 } parakeet_event_type;

typedef struct {
    const char* word;
    double start, end; /* seconds */
} parakeet_word;

typedef struct {
    parakeet_event_type type;
    int segment;
    const char* text;
    const char* stable_text;    /* partials: prefix that will not change */
    const parakeet_word* words;
    size_t n_words;
    double start, end;          /* seconds */
    double audio_seconds;
    double compute_ms;
} parakeet_event;

/* Defaults: windowed 10-2-2 on the CPU. */
parakeet_recognizer_config parakeet_recognizer_default_config(void);
parakeet_status parakeet_recognizer_create(const parakeet_recognizer_config* config, parakeet_recognizer** out);
void parakeet_recognizer_destroy(parakeet_recognizer* recognizer);
int parakeet_recognizer_sample_rate(const parakeet_recognizer* recognizer);
parakeet_status parakeet_recognizer_decode(parakeet_recognizer* recognizer, parakeet_stream* stream);
/* Decodes n streams of one recognizer; cache-aware streaming on CUDA steps the ready ones as one batch. */
parakeet_status parakeet_recognizer_decode_many(parakeet_recognizer* recognizer, parakeet_stream* const* streams,
                                                size_t n);

parakeet_status parakeet_stream_create(parakeet_recognizer* recognizer, parakeet_stream** out);
void parakeet_stream_destroy(parakeet_stream* stream);
parakeet_status parakeet_stream_accept_waveform(parakeet_stream* stream, int sample_rate, const float* samples,
                                                size_t n);
parakeet_status parakeet_stream_input_finished(parakeet_stream* stream);
parakeet_status parakeet_stream_reset(parakeet_stream* stream);
/* PARAKEET_NO_EVENT when none is queued. */
parakeet_status parakeet_stream_pop_event(parakeet_stream* stream, parakeet_event* event);

const char* parakeet_last_error(void);
const char* parakeet_version(void);

#ifdef __cplusplus
}
#endif

#endif /* PARAKEET_H_ */
