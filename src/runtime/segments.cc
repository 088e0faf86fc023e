#include "runtime/segments.h"

#include <algorithm>

namespace parakeet {

namespace {

TokenInfo token_info(const TimedToken& t) { return {t.id, t.piece, t.frame, t.start, t.end, t.confidence}; }

std::vector<int> ids_of(const std::vector<Token>& tokens, size_t from, size_t to, const std::vector<Token>* tail) {
    std::vector<int> ids;
    ids.reserve(to - from + (tail ? tail->size() : 0));
    for (size_t i = from; i < to; ++i) ids.push_back(tokens[i].id);
    if (tail)
        for (const Token& t : *tail) ids.push_back(t.id);
    return ids;
}

}  // namespace

void SegmentTracker::clear_segment() {
    segment_.clear();
    lookahead_.clear();
    timed_.clear();
    prev_end_ = 0;
    words_.clear();
    open_ = 0;
    text_.clear();
    marks_.clear();
    has_text_ = false;
}

void SegmentTracker::commit(const std::vector<Token>& tokens) {
    const Tokenizer* tok = tok_;
    if (segment_.capacity() == 0 && !tokens.empty()) {
        // Room for a long segment up front (kept across segments: clear() keeps it), so that steps do not grow
        // these vectors every power of two; many streams growing them on the same step showed as 4-7 ms spikes
        // of a 2048-stream step on the H100 (docs/PERFORMANCE.md, session 9).
        segment_.reserve(kReservedTokens);
        timed_.reserve(kReservedTokens);
    }
    for (const Token& t : tokens) {
        const size_t i = segment_.size();
        if (tok && i > 0 && tok->starts_word(t.id) && !tok->is_punctuation_token(t.id)) {
            // Token i starts a word (group_words' rule): the open word closes.
            for (const Word& w : group_words({timed_.begin() + static_cast<std::ptrdiff_t>(open_), timed_.end()}, *tok))
                words_.push_back({w.word, w.start, w.end});
            open_ = i;
            if (has_text_ && tok->joins_with_space(t.id)) {
                const size_t from = marks_.empty() ? 0 : marks_.back().first;
                if (!marks_.empty()) text_ += ' ';  // appended in place: a long segment's text is not recopied
                text_ += tok->decode(ids_of(segment_, from, i, nullptr));
                marks_.emplace_back(i, text_.size());
            }
        }
        segment_.push_back(t);
        timed_.push_back(time_token(t, tok, frame_seconds_, tdt_, i == 0, prev_end_));
        if (tok && !has_text_) has_text_ = tok->has_own_text(t.id);
        last_token_end_ = std::max(last_token_end_, t.frame + std::max(t.duration, 1));
    }
}

std::string SegmentTracker::prefix_text(size_t end, const std::vector<Token>* tail) const {
    const Tokenizer& tok = *tok_;
    const bool more = tail && !tail->empty();
    // The last mark at or before `end` (before it when tokens follow `end`: they need not join with a space).
    auto it = std::upper_bound(marks_.begin(), marks_.end(), end,
                               [](size_t e, const std::pair<size_t, size_t>& mk) { return e < mk.first; });
    while (it != marks_.begin() && more && std::prev(it)->first == end) --it;
    if (it == marks_.begin()) return tok.decode(ids_of(segment_, 0, end, tail));
    const auto [from, bytes] = *std::prev(it);
    std::string out = text_.substr(0, bytes);
    if (from < end || more) {
        out += ' ';
        out += tok.decode(ids_of(segment_, from, end, tail));
    }
    return out;
}

Event SegmentTracker::make_event(Event::Type type, const std::vector<Token>& lookahead) const {
    const Tokenizer* tok = tok_;
    Event e;
    e.type = type;
    e.segment = segment_id_;
    e.tokens.reserve(timed_.size() + lookahead.size());
    for (const TimedToken& t : timed_) e.tokens.push_back(token_info(t));
    std::vector<TimedToken> open(timed_.begin() + static_cast<std::ptrdiff_t>(open_), timed_.end());
    int prev_end = prev_end_;
    for (size_t k = 0; k < lookahead.size(); ++k) {
        open.push_back(time_token(lookahead[k], tok, frame_seconds_, tdt_,
                                  segment_.empty() && k == 0, prev_end));
        e.tokens.push_back(token_info(open.back()));
    }
    if (tok) {
        e.words = words_;
        for (const Word& w : group_words(open, *tok)) e.words.push_back({w.word, w.start, w.end});
        e.text = prefix_text(segment_.size(), &lookahead);
    }
    if (!e.tokens.empty()) {
        e.start = e.tokens.front().start;
        e.end = e.tokens.back().end;
    }
    return e;
}

// After a step: append committed tokens, close the segment on an endpoint or at the end, else emit a partial.
void SegmentTracker::update(const RecognizerConfig& cfg, const std::vector<Token>& committed,
                            std::vector<Token> lookahead, int frontier, bool last, double compute_ms,
                            double audio_seconds, std::deque<Event>& events) {
    const double fs = frame_seconds_;
    const bool changed = !committed.empty() || lookahead.size() != lookahead_.size() || !lookahead.empty();
    commit(committed);
    lookahead_ = std::move(lookahead);
    const bool endpoint = cfg.endpoint_silence_ms > 0 && !segment_.empty() && lookahead_.empty() &&
                          (frontier - last_token_end_) * fs * 1000.0 >= cfg.endpoint_silence_ms;
    if ((last || endpoint) && !segment_.empty()) {
        Event e = make_event(Event::Type::kFinal, {});
        e.audio_seconds = audio_seconds;
        e.compute_ms = compute_ms;
        events.push_back(std::move(e));
        clear_segment();
        ++segment_id_;
        return;
    }
    if (!changed || last) return;
    Event e = make_event(Event::Type::kPartial, lookahead_);
    e.audio_seconds = audio_seconds;
    e.compute_ms = compute_ms;
    // Stable prefix: committed tokens outside the revision window, cut back to a word start.
    size_t stable = segment_.size() > static_cast<size_t>(cfg.revision_tokens) ? segment_.size() - cfg.revision_tokens
                                                                                : 0;
    while (stable > 0 && cfg.revision_ms > 0 && (frontier - segment_[stable - 1].frame) * fs * 1000.0 < cfg.revision_ms)
        --stable;
    const Tokenizer* tok = tok_;
    while (tok && stable > 0 && stable < segment_.size() && !tok->starts_word(segment_[stable].id)) --stable;
    if (tok) e.stable_text = prefix_text(stable, nullptr);
    events.push_back(std::move(e));
}

}  // namespace parakeet
