#include "runtime/segments.h"

#include "decoding/words.h"

namespace parakeet {

namespace {

std::vector<TokenInfo> token_infos(const Model& m, const std::vector<Token>& tokens, std::vector<WordInfo>* words,
                                   std::string* text) {
    const Tokenizer* tok = m.tokenizer();
    std::vector<TimedToken> timed = time_tokens(tokens, tok, m.frame_seconds(), m.config().is_tdt());
    std::vector<TokenInfo> out;
    for (const TimedToken& t : timed) out.push_back({t.id, t.piece, t.frame, t.start, t.end, t.confidence});
    if (tok) {
        std::vector<int> ids;
        for (const Token& t : tokens) ids.push_back(t.id);
        if (text) *text = tok->decode(ids);
        if (words)
            for (const Word& w : group_words(timed, *tok)) words->push_back({w.word, w.start, w.end});
    }
    return out;
}

}  // namespace

// After a step: append committed tokens, close the segment on an endpoint or at the end, else emit a partial.
void SegmentTracker::update(const Model& m, const RecognizerConfig& cfg, const std::vector<Token>& committed,
                            std::vector<Token> lookahead, int frontier, bool last, double compute_ms,
                            double audio_seconds, std::deque<Event>& events) {
    SegmentTracker& s = *this;
    const double fs = m.frame_seconds();
    const bool changed = !committed.empty() || lookahead.size() != s.lookahead_.size() || !lookahead.empty();
    for (const Token& t : committed) {
        s.segment_.push_back(t);
        s.last_token_end_ = std::max(s.last_token_end_, t.frame + std::max(t.duration, 1));
    }
    s.lookahead_ = std::move(lookahead);
    auto make = [&](Event::Type type, const std::vector<Token>& tokens) {
        Event e;
        e.type = type;
        e.segment = s.segment_id_;
        e.tokens = token_infos(m, tokens, &e.words, &e.text);
        if (!e.tokens.empty()) {
            e.start = e.tokens.front().start;
            e.end = e.tokens.back().end;
        }
        e.audio_seconds = audio_seconds;
        e.compute_ms = compute_ms;
        return e;
    };
    const bool endpoint = cfg.endpoint_silence_ms > 0 && !s.segment_.empty() && s.lookahead_.empty() &&
                          (frontier - s.last_token_end_) * fs * 1000.0 >= cfg.endpoint_silence_ms;
    if ((last || endpoint) && !s.segment_.empty()) {
        events.push_back(make(Event::Type::kFinal, s.segment_));
        s.segment_.clear();
        s.lookahead_.clear();
        ++s.segment_id_;
        return;
    }
    if (!changed || last) return;
    std::vector<Token> all = s.segment_;
    all.insert(all.end(), s.lookahead_.begin(), s.lookahead_.end());
    Event e = make(Event::Type::kPartial, all);
    // Stable prefix: committed tokens outside the revision window, cut back to a word start.
    size_t stable = s.segment_.size() > static_cast<size_t>(cfg.revision_tokens)
                        ? s.segment_.size() - cfg.revision_tokens
                        : 0;
    while (stable > 0 && cfg.revision_ms > 0 &&
           (frontier - s.segment_[stable - 1].frame) * fs * 1000.0 < cfg.revision_ms)
        --stable;
    const Tokenizer* tok = m.tokenizer();
    while (tok && stable > 0 && stable < s.segment_.size() && !tok->starts_word(s.segment_[stable].id)) --stable;
    if (tok) {
        std::vector<int> ids;
        for (size_t i = 0; i < stable; ++i) ids.push_back(s.segment_[i].id);
        e.stable_text = tok->decode(ids);
    }
    events.push_back(std::move(e));
}

}  // namespace parakeet
