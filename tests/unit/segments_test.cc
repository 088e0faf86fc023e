// Streaming events (SegmentTracker): each partial and final event must equal what the whole segment gives when
// timed, grouped into words and decoded from scratch (time_tokens, group_words, Tokenizer::decode), although the
// tracker extends its text and words step by step. Random token streams over two real tokenizers (tiny-a's, and
// the punctuation fixture with CONTROL, USER_DEFINED and unknown pieces) and none.
#include "runtime/segments.h"

#include <gtest/gtest.h>

#include <random>

#include "common/test_util.h"
#include "decoding/words.h"

namespace parakeet {
namespace {

constexpr double kFrame = 0.08;

struct Reference {
    std::vector<Token> segment;
    int segment_id = 0;
    int last_token_end = 0;
};

// What an event over `tokens` holds, from scratch.
void expect_event(const Event& e, const Tokenizer* tok, const std::vector<Token>& tokens, int segment_id,
                  const std::string& where) {
    SCOPED_TRACE(where);
    EXPECT_EQ(e.segment, segment_id);
    const std::vector<TimedToken> timed = time_tokens(tokens, tok, kFrame, true);
    ASSERT_EQ(e.tokens.size(), timed.size());
    for (size_t i = 0; i < timed.size(); ++i) {
        EXPECT_EQ(e.tokens[i].id, timed[i].id);
        EXPECT_EQ(e.tokens[i].piece, timed[i].piece);
        EXPECT_EQ(e.tokens[i].frame, timed[i].frame);
        EXPECT_EQ(e.tokens[i].start, timed[i].start);
        EXPECT_EQ(e.tokens[i].end, timed[i].end);
    }
    if (!timed.empty()) {
        EXPECT_EQ(e.start, timed.front().start);
        EXPECT_EQ(e.end, timed.back().end);
    }
    if (!tok) {
        EXPECT_TRUE(e.text.empty() && e.words.empty());
        return;
    }
    std::vector<int> ids;
    for (const Token& t : tokens) ids.push_back(t.id);
    EXPECT_EQ(e.text, tok->decode(ids));
    const std::vector<Word> words = group_words(timed, *tok);
    ASSERT_EQ(e.words.size(), words.size());
    for (size_t i = 0; i < words.size(); ++i) {
        EXPECT_EQ(e.words[i].word, words[i].word);
        EXPECT_EQ(e.words[i].start, words[i].start);
        EXPECT_EQ(e.words[i].end, words[i].end);
    }
}

// Random steps through a tracker and the from-scratch reference; returns the number of events checked.
int run_random_stream(const Tokenizer* tok, int vocab, uint32_t seed) {
    std::mt19937 rng(seed);
    RecognizerConfig cfg;
    cfg.revision_tokens = static_cast<int>(rng() % 6);
    cfg.revision_ms = (rng() % 2) ? 0 : 240;
    cfg.endpoint_silence_ms = (rng() % 2) ? 0 : 400;
    SegmentTracker tracker(tok, kFrame, true);
    Reference ref;
    std::deque<Event> events;
    int frame = 0, checked = 0;
    const int steps = 60 + static_cast<int>(rng() % 60);
    for (int step = 0; step < steps; ++step) {
        const bool last = step == steps - 1;
        // Sometimes silence (no tokens for a while: endpoints), else up to 4 committed and 3 lookahead tokens.
        const bool quiet = rng() % 5 == 0;
        std::vector<Token> committed, lookahead;
        const int n = quiet ? 0 : static_cast<int>(rng() % 5);
        for (int k = 0; k < n; ++k) {
            Token t;
            t.id = static_cast<int>(rng() % vocab);
            t.frame = frame + static_cast<int>(rng() % 2);
            t.duration = static_cast<int>(rng() % 5);
            committed.push_back(t);
        }
        frame += quiet ? 8 : 2;
        const int nl = quiet ? 0 : static_cast<int>(rng() % 4);
        for (int k = 0; k < nl; ++k) {
            Token t;
            t.id = static_cast<int>(rng() % vocab);
            t.frame = frame + k;
            t.duration = 1;
            lookahead.push_back(t);
        }
        tracker.update(cfg, committed, lookahead, frame, last, 1.0, 0.0, events);
        // The reference: the old whole-segment rules.
        for (const Token& t : committed) {
            ref.segment.push_back(t);
            ref.last_token_end = std::max(ref.last_token_end, t.frame + std::max(t.duration, 1));
        }
        const bool endpoint = cfg.endpoint_silence_ms > 0 && !ref.segment.empty() && lookahead.empty() &&
                              (frame - ref.last_token_end) * kFrame * 1000.0 >= cfg.endpoint_silence_ms;
        const std::string where = "seed " + std::to_string(seed) + " step " + std::to_string(step);
        if ((last || endpoint) && !ref.segment.empty()) {
            EXPECT_EQ(events.size(), 1u) << where;
            if (events.size() != 1) return checked;
            EXPECT_EQ(events.front().type, Event::Type::kFinal) << where;
            expect_event(events.front(), tok, ref.segment, ref.segment_id, where);
            ref.segment.clear();
            ++ref.segment_id;
            ++checked;
        } else if (!last && (!committed.empty() || !lookahead.empty())) {
            EXPECT_EQ(events.size(), 1u) << where;
            if (events.size() != 1) return checked;
            const Event& e = events.front();
            EXPECT_EQ(e.type, Event::Type::kPartial) << where;
            std::vector<Token> all = ref.segment;
            all.insert(all.end(), lookahead.begin(), lookahead.end());
            expect_event(e, tok, all, ref.segment_id, where);
            if (tok) {
                size_t stable = ref.segment.size() > static_cast<size_t>(cfg.revision_tokens)
                                    ? ref.segment.size() - cfg.revision_tokens
                                    : 0;
                while (stable > 0 && cfg.revision_ms > 0 &&
                       (frame - ref.segment[stable - 1].frame) * kFrame * 1000.0 < cfg.revision_ms)
                    --stable;
                while (stable > 0 && stable < ref.segment.size() && !tok->starts_word(ref.segment[stable].id)) --stable;
                std::vector<int> ids;
                for (size_t i = 0; i < stable; ++i) ids.push_back(ref.segment[i].id);
                EXPECT_EQ(e.stable_text, tok->decode(ids)) << where;
            }
            ++checked;
        }
        events.clear();
    }
    return checked;
}

TEST(SegmentTracker, EventsEqualTheWholeSegmentDecodedTinyA) {
    const Tokenizer* tok = testing::tiny_a_model()->tokenizer();
    ASSERT_NE(tok, nullptr);
    int checked = 0;
    for (uint32_t seed = 1; seed <= 40; ++seed) checked += run_random_stream(tok, tok->vocab_size(), seed);
    EXPECT_GT(checked, 1000);
}

TEST(SegmentTracker, EventsEqualTheWholeSegmentDecodedPunctuationTokenizer) {
    const Tokenizer tok = Tokenizer::from_file(std::string(PARAKEET_TEST_DATA_DIR) + "/tokenizer/punct.model");
    int checked = 0;
    for (uint32_t seed = 100; seed <= 140; ++seed) checked += run_random_stream(&tok, tok.vocab_size(), seed);
    EXPECT_GT(checked, 1000);
}

TEST(SegmentTracker, EventsWithoutTokenizer) {
    int checked = 0;
    for (uint32_t seed = 200; seed <= 210; ++seed) checked += run_random_stream(nullptr, 1000, seed);
    EXPECT_GT(checked, 200);
}

TEST(SegmentTracker, JoinsWithSpace) {
    const Tokenizer* tok = testing::tiny_a_model()->tokenizer();
    ASSERT_NE(tok, nullptr);
    int joins = 0;
    for (int id = 0; id < tok->vocab_size(); ++id) {
        const bool expected = tok->starts_word(id) && !tok->token_text(id).empty() && !tok->is_unknown(id);
        EXPECT_EQ(tok->joins_with_space(id), expected) << tok->piece(id);
        joins += tok->joins_with_space(id);
        // The property itself, after a piece without a word start ("s") and after a word ("▁the").
        if (!tok->joins_with_space(id)) continue;
        for (int a : {tok->encode("s").back(), tok->encode("the").back()})
            EXPECT_EQ(tok->decode({a, id}), tok->decode({a}) + " " + tok->decode({id})) << tok->piece(id);
    }
    EXPECT_GT(joins, 40);
    // "▁" alone has no text of its own: decoding it before punctuation drops its space.
    EXPECT_FALSE(tok->joins_with_space(tok->encode(" ").empty() ? 0 : tok->encode(" ").back()));
}

}  // namespace
}  // namespace parakeet
