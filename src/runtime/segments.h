// Partial and final events from the tokens a streaming decoder commits: a stable prefix plus a revision
// window, and endpointing that closes a segment after a stretch of decoded audio without tokens.
//
// A partial event carries the whole segment (tokens, words, text), but a step costs only its new tokens and the
// open word: the times, closed words and text of the committed tokens are kept and extended, never recomputed
// (the text is cut only before tokens where Tokenizer::joins_with_space says decoding splits exactly), so a
// long segment does not make every step slower. Events equal those computed from the whole segment with
// time_tokens, group_words and Tokenizer::decode (tests/unit/segments_test.cc).
#pragma once

#include <deque>
#include <string>
#include <utility>
#include <vector>

#include "decoding/greedy.h"
#include "decoding/words.h"
#include "parakeet/parakeet.hpp"
#include "models/tokenizer.h"

namespace parakeet {

class SegmentTracker {
public:
    SegmentTracker() = default;  // a placeholder until assigned one of the next
    // Tokens of a model with this tokenizer (null: none), encoder frame length and decoder kind.
    SegmentTracker(const Tokenizer* tokenizer, double frame_seconds, bool tdt)
        : tok_(tokenizer), frame_seconds_(frame_seconds), tdt_(tdt) {}

    // After a decoding step: `committed` tokens (never revised), `lookahead` tokens (shown, may change),
    // `frontier` the first encoder frame not yet decoded. Closes the segment as final on an endpoint
    // (cfg.endpoint_silence_ms of decoded frames after the newest token's end) or when `last`; otherwise
    // queues a partial when anything changed.
    void update(const RecognizerConfig& cfg, const std::vector<Token>& committed,
                std::vector<Token> lookahead, int frontier, bool last, double compute_ms, double audio_seconds,
                std::deque<Event>& events);
    int segment_id() const { return segment_id_; }

    // Tokens a segment holds before its vectors grow (about 2 minutes of speech).
    static constexpr size_t kReservedTokens = 512;

private:
    // Appends committed tokens to the segment and to what is kept of it.
    void commit(const std::vector<Token>& tokens);
    // An event over the segment plus `lookahead`, from what is kept and the open word.
    Event make_event(Event::Type type, const std::vector<Token>& lookahead) const;
    // Text of segment_[0, end) followed by *tail (when given), for end <= segment_.size().
    std::string prefix_text(size_t end, const std::vector<Token>* tail) const;
    void clear_segment();

    const Tokenizer* tok_ = nullptr;
    double frame_seconds_ = 0;
    bool tdt_ = true;
    std::vector<Token> segment_, lookahead_;
    int segment_id_ = 0;
    int last_token_end_ = 0;  // encoder frame where the newest token ends
    // Kept for the committed tokens:
    std::vector<TimedToken> timed_;  // segment_'s token times
    int prev_end_ = 0;               // end frame of segment_'s last token (time_token's carry)
    std::vector<WordInfo> words_;    // segment_'s words closed by a later word start
    size_t open_ = 0;                // first token of segment_'s open (last) word
    std::string text_;               // text of segment_[0, marks_.back().first)
    // (i, n): the text of segment_[0, i) is text_'s first n bytes, and decoding splits exactly before token i.
    std::vector<std::pair<size_t, size_t>> marks_;
    bool has_text_ = false;          // segment_ holds a token with Tokenizer::has_own_text (a mark may follow it)
};

}  // namespace parakeet
