// SentencePiece tokenizer with NeMo's detokenisation rules (spec 1.4, 10.4).
//
// Ids are SentencePiece ids 0 .. vocab_size()-1. The transducer blank (= vocab_size()) and anything
// above it are not tokenizer ids: decode() drops them, the per-id accessors throw kInvalidArgument.
//
// Text is UTF-8 throughout; `char32_t` values are Unicode code points.
//
// Thread safety: a Tokenizer is immutable after construction; all const methods may be called
// from any number of threads. Copies share the loaded model.
#pragma once

#include <memory>
#include <set>
#include <string>
#include <vector>

namespace parakeet {

class Tokenizer {
public:
    // Loads a serialized SentencePiece ModelProto (the bytes of a .nemo's `*_tokenizer.model`).
    // Throws kFormat when SentencePiece cannot parse it, naming `name` in the message.
    static Tokenizer from_model_bytes(const std::string& serialized_model_proto,
                                      const std::string& name = "tokenizer model");
    // Reads and loads a `.model` file. Throws kIo when unreadable.
    static Tokenizer from_file(const std::string& path);

    int vocab_size() const;
    int unk_id() const;

    // The raw piece, with U+2581 for a word start (e.g. "▁the", "ing", "<unk>").
    const std::string& piece(int id) const;
    bool is_control(int id) const;  // CONTROL pieces decode to nothing
    bool is_unknown(int id) const;
    bool is_unused(int id) const;
    bool is_byte(int id) const;
    float score(int id) const;

    // NeMo's text for a hypothesis: ids >= vocab_size() are dropped, the rest go through
    // SentencePiece DecodeIds (pieces joined, U+2581 -> space, leading space dropped, CONTROL
    // pieces empty, the unknown piece -> " \u2047 "), then ONE whitespace character immediately
    // before each character of punctuation() is removed (NeMo's `(\s)(p1|p2|...)` -> `\2`; \s is
    // Python's Unicode whitespace). Negative ids throw kInvalidArgument.
    std::string decode(const std::vector<int>& ids) const;

    // SentencePiece DecodeIds alone, without the punctuation rule (ids must be < vocab_size()).
    std::string decode_raw(const std::vector<int>& ids) const;

    // Text -> ids (SentencePiece Encode); for tests and tools.
    std::vector<int> encode(const std::string& text) const;

    // NeMo's supported punctuation (extract_punctuation_from_vocab): every character of Unicode
    // category P* in a piece that does not start with U+2581 or "##", is not "<...>" or "[...]",
    // and is not all whitespace. Empty for vocabularies without punctuation.
    const std::set<char32_t>& punctuation() const;

    // True when the piece begins with U+2581 (the token starts a new word).
    bool starts_word(int id) const;

    // Surface text of one token decoded alone (SentencePiece DecodeIds({id})): "▁the" -> "the",
    // "ing" -> "ing", "," -> ",". Precomputed; no allocation beyond the copy.
    const std::string& token_text(int id) const;

    // True for a normal piece (not CONTROL, unknown, byte or unused) whose text alone is not empty.
    bool has_own_text(int id) const;

    // True when text splits before this token: decode(a + b) == decode(a) + " " + decode(b) for every `a` that
    // holds a token with has_own_text and every `b` that begins with `id`. Holds for a normal piece "▁x..." whose text begins with a character that is neither whitespace nor
    // punctuation (checked on each such id at load; tests/unit/segments_test.cc checks it on random sequences).
    // Lets streaming keep a segment's text and extend it instead of decoding it whole every step.
    bool joins_with_space(int id) const;

    // True when token_text(id) is exactly one character and it is in punctuation() (NeMo's
    // `text in supported_punctuation` test used for punctuation timestamps).
    bool is_punctuation_token(int id) const;

private:
    struct Impl;
    explicit Tokenizer(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
    void check_id(int id) const;

    std::shared_ptr<const Impl> impl_;
};

// NeMo's extract_punctuation_from_vocab over a list of pieces (see Tokenizer::punctuation()).
std::set<char32_t> punctuation_from_pieces(const std::vector<std::string>& pieces);

// Removes one Unicode whitespace character immediately before each character of `punctuation`.
std::string strip_space_before_punctuation(const std::string& text,
                                           const std::set<char32_t>& punctuation);

// Unicode general category P* (Pc Pd Ps Pe Pi Pf Po), from a table generated with Python's
// unicodedata (tools/reference/gen_unicode_punctuation.py). Symbols such as $ + < = > ^ ` | ~ are
// category S*, not P.
bool is_unicode_punctuation(char32_t c);

// Python's str.isspace() / re's \s for one code point.
bool is_unicode_space(char32_t c);

// UTF-8 -> code points. Each invalid byte becomes U+FFFD.
std::u32string utf8_to_u32(const std::string& text);
// Code point -> UTF-8.
std::string u32_to_utf8(char32_t c);

}  // namespace parakeet
