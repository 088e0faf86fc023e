// The streaming API (include/parakeet/parakeet.hpp): NeMo's streamed tokens through Recognizer/Stream, the
// windowed mode's offline equivalence, event rules, and an hour-long stream in constant memory.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <random>

#include "common/test_util.h"
#include "io/audio.h"
#include "ops/ops.h"
#include "parakeet/parakeet.hpp"
#include "runtime/segments.h"
#include "runtime/transcriber.h"

namespace parakeet {
namespace {

using testing::rss_kb;

const std::string& kDir = testing::kTinyADir;

// tiny-a with NeMo's setup_streaming_params(4, shift, 8) for cache-aware mode.
RecognizerConfig tiny_config(const std::string& mode, int shift_size) {
    RecognizerConfig cfg;
    cfg.model_path = kDir + "/model/tiny-a.nemo";
    cfg.mode = mode;
    cfg.chunk_size = 4;
    cfg.shift_size = shift_size;
    cfg.left_chunks = 8;
    return cfg;
}

// tiny-a in windowed mode with the given left/chunk/right context (seconds).
RecognizerConfig windowed_config(double left, double chunk, double right) {
    RecognizerConfig cfg;
    cfg.model_path = kDir + "/model/tiny-a.nemo";
    cfg.left_secs = left;
    cfg.chunk_secs = chunk;
    cfg.right_secs = right;
    return cfg;
}

std::vector<Event> run(Recognizer& rec, const std::vector<float>& audio, int rate, size_t feed) {
    auto s = rec.create_stream();
    std::vector<Event> events;
    for (size_t i = 0; i < audio.size(); i += feed) {
        s->accept_waveform(rate, audio.data() + i, std::min(feed, audio.size() - i));
        rec.decode(*s);
        for (Event& e : s->pop_events()) events.push_back(std::move(e));
    }
    s->input_finished();
    rec.decode(*s);
    for (Event& e : s->pop_events()) events.push_back(std::move(e));
    return events;
}

std::vector<int> final_ids(const std::vector<Event>& events) {
    std::vector<int> ids;
    for (const Event& e : events)
        if (e.type == Event::Type::kFinal)
            for (const TokenInfo& t : e.tokens) ids.push_back(t.id);
    return ids;
}

TEST(Recognizer, CacheAwareNemoCompatGivesNemosStreamedTokens) {
    RecognizerConfig cfg = tiny_config("cache-aware", 2);
    cfg.nemo_compat = true;
    cfg.endpoint_silence_ms = 0;
    auto rec = Recognizer::create(cfg);
    auto audio = load_audio(kDir + "/inputs/clip0.wav", 16000);
    for (size_t feed : {size_t{320}, size_t{4000}, audio.size()}) {
        auto events = run(*rec, audio, 16000, feed);
        EXPECT_EQ(final_ids(events),
                  (std::vector<int>{83, 88, 53, 22, 22, 22, 22, 22, 22, 22, 62, 118, 118, 113, 113, 113, 66, 113}));
        ASSERT_FALSE(events.empty());
        EXPECT_EQ(events.back().text, "ill goas wh wh wh wh wh wh wh onyylll tol");
    }
}

TEST(Recognizer, CacheAwareLiveMatchesItselfAcrossFeedSizes) {
    RecognizerConfig cfg = tiny_config("cache-aware", 2);
    cfg.endpoint_silence_ms = 0;
    auto rec = Recognizer::create(cfg);
    auto audio = load_audio(kDir + "/inputs/clip1.wav", 16000);
    const auto ref = final_ids(run(*rec, audio, 16000, audio.size()));
    EXPECT_FALSE(ref.empty());
    for (size_t feed : {size_t{160}, size_t{1000}, size_t{16000}}) EXPECT_EQ(final_ids(run(*rec, audio, 16000, feed)), ref);
}

// decode(streams) in windowed mode encodes the windows of all ready streams as one batch: every stream's tokens
// and frames equal decoding it alone, with streams at different positions and feed sizes.
TEST(Recognizer, WindowedManyStreamsEqualOneByOne) {
    RecognizerConfig cfg = windowed_config(1, 0.48, 0.32);
    cfg.endpoint_silence_ms = 0;
    auto rec = Recognizer::create(cfg);
    std::vector<std::vector<float>> audio;
    for (int c = 0; c < 4; ++c) audio.push_back(load_audio(kDir + "/inputs/clip" + std::to_string(c) + ".wav", 16000));
    auto collect = [](Stream& s, std::vector<int>& ids, std::vector<int>& frames) {
        for (const Event& e : s.pop_events())
            if (e.type == Event::Type::kFinal)
                for (const TokenInfo& t : e.tokens) {
                    ids.push_back(t.id);
                    frames.push_back(t.frame);
                }
    };
    std::vector<std::vector<int>> ref_ids(4), ref_frames(4);
    for (int c = 0; c < 4; ++c) {
        auto s = rec->create_stream();
        s->accept_waveform(16000, audio[c].data(), audio[c].size());
        s->input_finished();
        rec->decode(*s);
        collect(*s, ref_ids[c], ref_frames[c]);
        ASSERT_FALSE(ref_ids[c].empty());
    }
    const size_t feed[4] = {800, 3200, 12000, 480};
    std::vector<std::unique_ptr<Stream>> streams;
    std::vector<Stream*> ptrs;
    for (int c = 0; c < 4; ++c) {
        streams.push_back(rec->create_stream());
        ptrs.push_back(streams.back().get());
    }
    std::vector<size_t> pos(4, 0);
    std::vector<std::vector<int>> ids(4), frames(4);
    for (bool more = true; more;) {
        more = false;
        for (int c = 0; c < 4; ++c) {
            if (pos[c] >= audio[c].size()) continue;
            const size_t k = std::min(feed[c], audio[c].size() - pos[c]);
            streams[c]->accept_waveform(16000, audio[c].data() + pos[c], k);
            pos[c] += k;
            if (pos[c] == audio[c].size()) streams[c]->input_finished();
            more = true;
        }
        rec->decode(ptrs);
        for (int c = 0; c < 4; ++c) collect(*streams[c], ids[c], frames[c]);
    }
    for (int c = 0; c < 4; ++c) {
        EXPECT_EQ(ids[c], ref_ids[c]) << "clip" << c;
        EXPECT_EQ(frames[c], ref_frames[c]) << "clip" << c;
    }
}

TEST(Recognizer, WindowedWholeInputEqualsOfflineText) {
    RecognizerConfig cfg = windowed_config(10, 10, 5);
    cfg.endpoint_silence_ms = 0;
    auto rec = Recognizer::create(cfg);
    auto model = Model::load(cfg.model_path);
    for (int clip = 0; clip < 4; ++clip) {
        auto audio = load_audio(kDir + "/inputs/clip" + std::to_string(clip) + ".wav", 16000);
        ExecContext ctx;
        const std::string offline = transcribe(*model, ctx, {audio}, {})[0].text;
        auto events = run(*rec, audio, 16000, 1600);
        std::string text;
        for (const Event& e : events)
            if (e.type == Event::Type::kFinal) text += (text.empty() ? "" : " ") + e.text;
        EXPECT_EQ(text, offline) << "clip" << clip;
    }
}

TEST(Recognizer, EventsFollowTheRules) {
    RecognizerConfig cfg = windowed_config(1, 0.16, 0.16);
    // The random tiny model emits tokens even in silence (each token's duration reaches the next), so its
    // segments rarely close; SegmentTracker's test below covers endpointing with exact frames.
    cfg.endpoint_silence_ms = 80;
    cfg.lookahead_partials = false;
    auto rec = Recognizer::create(cfg);
    // clip1, a pause, then clip2: endpoints split segments.
    auto a = load_audio(kDir + "/inputs/clip1.wav", 16000), b = load_audio(kDir + "/inputs/clip2.wav", 16000);
    a.insert(a.end(), 16000, 0.f);
    a.insert(a.end(), b.begin(), b.end());
    auto events = run(*rec, a, 16000, 800);
    int segment = 0;
    std::string last_stable;
    double prev_end = 0;
    bool saw_final = false;
    for (const Event& e : events) {
        EXPECT_GE(e.segment, segment);
        if (e.segment > segment) last_stable.clear();
        segment = e.segment;
        if (e.type == Event::Type::kPartial) {
            // The stable prefix only grows and is a prefix of the partial text.
            EXPECT_EQ(e.text.rfind(e.stable_text, 0), 0u) << e.text << " | " << e.stable_text;
            EXPECT_EQ(e.stable_text.rfind(last_stable, 0), 0u) << e.stable_text << " | " << last_stable;
            last_stable = e.stable_text;
        } else {
            saw_final = true;
            // A final covers the segment's tokens; finals of later segments start later.
            EXPECT_GE(e.start, prev_end - 1e-9);
            prev_end = e.end;
            EXPECT_EQ(e.text.rfind(last_stable, 0), 0u) << e.text << " | " << last_stable;
            last_stable.clear();
        }
    }
    EXPECT_TRUE(saw_final);
}

TEST(Recognizer, ResamplesAndRejectsBadInput) {
    RecognizerConfig cfg;
    cfg.model_path = kDir + "/model/tiny-a.nemo";
    auto rec = Recognizer::create(cfg);
    auto audio = load_audio(kDir + "/inputs/clip3.wav", 8000);
    auto events = run(*rec, audio, 8000, 400);
    EXPECT_FALSE(final_ids(events).empty());
    auto s = rec->create_stream();
    std::vector<float> nan(100, NAN);
    EXPECT_THROW(s->accept_waveform(16000, nan.data(), nan.size()), Error);
    EXPECT_THROW(s->accept_waveform(0, audio.data(), 10), Error);
    RecognizerConfig bad = cfg;
    bad.mode = "magic";
    EXPECT_THROW(Recognizer::create(bad), Error);
    bad = cfg;
    bad.chunk_secs = 0;
    EXPECT_THROW(Recognizer::create(bad), Error);
}

// An hour of audio through both modes: memory stays flat and the cache length saturates at its capacity.
TEST(Recognizer, HourLongStreamKeepsConstantMemory) {
    if (std::getenv("PARAKEET_SKIP_SLOW")) GTEST_SKIP() << "PARAKEET_SKIP_SLOW set (sanitizer run)";
    std::mt19937 rng(3);
    std::normal_distribution<float> n(0.f, 0.05f);
    std::vector<float> minute(16000 * 60);
    for (size_t i = 0; i < minute.size(); ++i)
        minute[i] = n(rng) * static_cast<float>(0.5 + 0.5 * std::sin(i * 2 * M_PI * 3 / 16000.0));
    for (const char* mode : {"cache-aware", "windowed"}) {
        RecognizerConfig cfg = tiny_config(mode, 4);
        cfg.left_secs = 2, cfg.chunk_secs = 2, cfg.right_secs = 0.48;
        cfg.threads = 1;
        auto rec = Recognizer::create(cfg);
        auto s = rec->create_stream();
        long rss_10min = 0;
        size_t tokens = 0;
        for (int m = 0; m < 60; ++m) {
            for (size_t i = 0; i < minute.size(); i += 16000) {
                s->accept_waveform(16000, minute.data() + i, 16000);
                rec->decode(*s);
                for (const Event& e : s->pop_events())
                    if (e.type == Event::Type::kFinal) tokens += e.tokens.size();
            }
            if (m == 9) rss_10min = rss_kb();
        }
        s->input_finished();
        rec->decode(*s);
        for (const Event& e : s->pop_events())
            if (e.type == Event::Type::kFinal) tokens += e.tokens.size();
        EXPECT_NEAR(s->audio_seconds(), 3600.0, 1e-6);
        EXPECT_GT(tokens, 0u);
        EXPECT_LT(rss_kb() - rss_10min, 20 * 1024) << mode << ": memory grew between minute 10 and 60";
    }
}

TEST(EncoderCache, LengthSaturatesAtCapacity) {
    auto model = Model::load(kDir + "/model/tiny-a.nemo");
    const FastConformerEncoder& enc = model->encoder();
    StreamingConfig sc = enc.streaming_config(4, 2, 8);
    EncoderCache cache = enc.initial_cache(sc, 1);
    ExecContext ctx;
    std::mt19937 rng(5);
    std::normal_distribution<float> n(0.f, 1.f);
    for (int k = 0; k < 400; ++k) {
        const int width = k == 0 ? sc.chunk_size[0] : sc.chunk_size[1] + sc.pre_encode_cache_size[1];
        Tensor chunk = Tensor::empty({width, 80});
        for (int64_t i = 0; i < chunk.numel(); ++i) chunk.data<float>()[i] = n(rng);
        StreamStepOutput out = enc.stream_step(ctx, sc, {chunk}, {width}, cache, k == 0 ? 0 : 2, false);
        EXPECT_EQ(cache.channel_len[0], std::min(2 * (k + 1), sc.last_channel_cache_size));
        EXPECT_EQ(cache.channel.dim(2), sc.last_channel_cache_size);
        for (int64_t i = 0; i < out.encoded.numel(); ++i) ASSERT_TRUE(std::isfinite(out.encoded.data<float>()[i]));
    }
}

TEST(SegmentTracker, EndpointClosesSegmentAndFinalsNeverChange) {
    auto model = Model::load(kDir + "/model/tiny-a.nemo");
    RecognizerConfig cfg;
    cfg.endpoint_silence_ms = 400;  // 5 encoder frames
    cfg.revision_tokens = 1;
    SegmentTracker t(model->tokenizer(), model->frame_seconds(), model->config().is_tdt());
    std::deque<Event> ev;
    // Tokens 43 ("▁u") and 84 ("ain") at frames 0 and 2, each lasting 1 frame.
    t.update(cfg, {{43, 0, 1, 0.9f}, {84, 2, 1, 0.8f}}, {}, 4, false, 1.0, 0.32, ev);
    ASSERT_EQ(ev.size(), 1u);
    EXPECT_EQ(ev[0].type, Event::Type::kPartial);
    EXPECT_EQ(ev[0].text, "uain");
    EXPECT_EQ(ev[0].stable_text, "");  // the one revisable token is inside the only word
    // Four frames after the last token's end (frame 3): no endpoint yet, nothing new: no event.
    t.update(cfg, {}, {}, 7, false, 1.0, 0.56, ev);
    EXPECT_EQ(ev.size(), 1u);
    // Five frames: the segment closes as final.
    t.update(cfg, {}, {}, 8, false, 1.0, 0.64, ev);
    ASSERT_EQ(ev.size(), 2u);
    EXPECT_EQ(ev[1].type, Event::Type::kFinal);
    EXPECT_EQ(ev[1].segment, 0);
    EXPECT_EQ(ev[1].text, "uain");
    EXPECT_NEAR(ev[1].end, 0.24, 1e-9);
    // The next tokens open segment 1; the end of input closes it.
    t.update(cfg, {{101, 9, 2, 0.7f}}, {{81, 11, 1, 0.5f}}, 11, false, 1.0, 0.9, ev);
    ASSERT_EQ(ev.size(), 3u);
    EXPECT_EQ(ev[2].segment, 1);
    EXPECT_EQ(ev[2].text, "justion");  // committed "▁just" + lookahead "ion"
    t.update(cfg, {}, {}, 12, true, 1.0, 1.0, ev);
    ASSERT_EQ(ev.size(), 4u);
    EXPECT_EQ(ev[3].type, Event::Type::kFinal);
    EXPECT_EQ(ev[3].text, "just");  // lookahead was never committed
    EXPECT_EQ(t.segment_id(), 2);
}

// Once warm, a streaming step takes every tensor from recycled blocks: no new host allocation per step.
TEST(Recognizer, SteadyStateStepAllocatesNoNewHostMemory) {
    for (const char* mode : {"cache-aware", "windowed"}) {
        RecognizerConfig cfg = tiny_config(mode, 4);
        cfg.left_secs = 1, cfg.chunk_secs = 0.32, cfg.right_secs = 0.16;
        cfg.endpoint_silence_ms = 0;
        cfg.threads = 1;
        auto rec = Recognizer::create(cfg);
        auto s = rec->create_stream();
        auto audio = load_audio(kDir + "/inputs/clip1.wav", 16000);
        auto feed = [&](size_t from, size_t to) {
            for (size_t i = from; i < to; i += 1280) {
                s->accept_waveform(16000, audio.data() + i, std::min<size_t>(1280, to - i));
                rec->decode(*s);
                s->pop_events();
            }
        };
        feed(0, 48000);  // warm-up: 3 s, past the first window's growth
        const uint64_t before = host_fresh_allocations();
        feed(48000, 75200);
        EXPECT_EQ(host_fresh_allocations(), before) << mode;
    }
}

}  // namespace
}  // namespace parakeet
