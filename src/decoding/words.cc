#include "decoding/words.h"

namespace parakeet {

TimedToken time_token(const Token& t, const Tokenizer* tok, double frame_seconds, bool tdt, bool first,
                      int& prev_end) {
    TimedToken tt;
    tt.id = t.id;
    tt.piece = tok ? tok->piece(t.id) : std::to_string(t.id);
    tt.frame = t.frame;
    tt.duration = t.duration;
    tt.confidence = t.confidence;
    int start = t.frame, end = t.frame + (tdt ? t.duration : 1);
    if (tok && !first && tok->is_punctuation_token(t.id)) start = end = prev_end;
    prev_end = end;
    tt.start = start * frame_seconds;
    tt.end = end * frame_seconds;
    return tt;
}

std::vector<TimedToken> time_tokens(const std::vector<Token>& tokens, const Tokenizer* tok, double frame_seconds,
                                    bool tdt) {
    std::vector<TimedToken> out;
    out.reserve(tokens.size());
    int prev_end = 0;
    for (size_t i = 0; i < tokens.size(); ++i)
        out.push_back(time_token(tokens[i], tok, frame_seconds, tdt, i == 0, prev_end));
    return out;
}

std::vector<Word> group_words(const std::vector<TimedToken>& tokens, const Tokenizer& tok) {
    std::vector<Word> words;
    std::vector<int> ids;
    auto flush = [&] {
        if (ids.empty()) return;
        words.back().word = tok.decode(ids);
        ids.clear();
    };
    for (const TimedToken& t : tokens) {
        const bool punct = tok.is_punctuation_token(t.id);
        if (words.empty() || (tok.starts_word(t.id) && !punct)) {
            flush();
            words.push_back({"", t.start, t.end});
        }
        ids.push_back(t.id);
        if (!punct) words.back().end = std::max(words.back().end, t.end);
    }
    flush();
    std::erase_if(words, [](const Word& w) { return w.word.empty(); });
    return words;
}

}  // namespace parakeet
