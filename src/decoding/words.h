// Tokens -> text, token times and words, as NeMo's RNNTDecoding does for TDT timestamps
// (nemo/collections/asr/parts/submodules/rnnt_decoding.py, parts/utils/timestamp_utils.py).
#pragma once

#include <string>
#include <vector>

#include "decoding/greedy.h"
#include "models/tokenizer.h"

namespace parakeet {

struct TimedToken {
    int id = 0;
    std::string piece;
    int frame = 0;
    int duration = 0;
    double start = 0, end = 0;  // seconds
    float confidence = 0;
};

struct Word {
    std::string word;
    double start = 0, end = 0;  // seconds
};

// Token offsets: start = frame, end = frame + duration (RNNT: end = frame + 1); a punctuation token
// (not the first) gets start = end = the previous token's end so it never stretches a word.
std::vector<TimedToken> time_tokens(const std::vector<Token>& tokens, const Tokenizer* tokenizer,
                                    double frame_seconds, bool tdt);
// One token of such a sequence: `first` marks the sequence's first token, `prev_end` carries the previous
// token's end frame in and this token's out (time_tokens is this over a sequence, from first = true).
TimedToken time_token(const Token& token, const Tokenizer* tokenizer, double frame_seconds, bool tdt, bool first,
                      int& prev_end);
// Words: a new word starts at a token whose piece starts with U+2581; punctuation joins the current word.
std::vector<Word> group_words(const std::vector<TimedToken>& tokens, const Tokenizer& tokenizer);

}  // namespace parakeet
