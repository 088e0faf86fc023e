#include "models/tokenizer.h"

#include <sentencepiece_processor.h>

#include <cstring>
#include <fstream>
#include <iterator>

#include "core/error.h"

namespace parakeet {

namespace {

constexpr char kWordStart[] = "\xE2\x96\x81";  // U+2581

// One code point of UTF-8 at `s[pos]`: its value and byte length. Invalid -> U+FFFD, length 1.
char32_t next_code_point(const std::string& s, size_t pos, size_t* len) {
    const auto b0 = static_cast<unsigned char>(s[pos]);
    auto cont = [&](size_t i) {
        return pos + i < s.size() && (static_cast<unsigned char>(s[pos + i]) & 0xC0) == 0x80;
    };
    auto byte = [&](size_t i) {
        return static_cast<char32_t>(static_cast<unsigned char>(s[pos + i]) & 0x3F);
    };
    if (b0 < 0x80) {
        *len = 1;
        return b0;
    }
    if (b0 >= 0xC2 && b0 <= 0xDF && cont(1)) {
        *len = 2;
        return (char32_t{b0 & 0x1Fu} << 6) | byte(1);
    }
    if (b0 >= 0xE0 && b0 <= 0xEF && cont(1) && cont(2)) {
        char32_t c = (char32_t{b0 & 0x0Fu} << 12) | (byte(1) << 6) | byte(2);
        if (c >= 0x800 && (c < 0xD800 || c > 0xDFFF)) {
            *len = 3;
            return c;
        }
    }
    if (b0 >= 0xF0 && b0 <= 0xF4 && cont(1) && cont(2) && cont(3)) {
        char32_t c = (char32_t{b0 & 0x07u} << 18) | (byte(1) << 12) | (byte(2) << 6) | byte(3);
        if (c >= 0x10000 && c <= 0x10FFFF) {
            *len = 4;
            return c;
        }
    }
    *len = 1;
    return 0xFFFD;
}

bool starts_with(const std::string& s, const char* prefix) {
    return s.compare(0, std::strlen(prefix), prefix) == 0;
}

// NeMo's special-token patterns: ^\[.*\]$, ^<.*>$, ^##, ^▁, ^\s*$ (Python's `$` also matches
// before one trailing '\n').
bool is_special_piece(const std::string& piece) {
    std::string body = piece;
    if (!body.empty() && body.back() == '\n') body.pop_back();
    if (body.size() >= 2 && body.front() == '[' && body.back() == ']' &&
        body.find('\n') == std::string::npos) {
        return true;
    }
    if (body.size() >= 2 && body.front() == '<' && body.back() == '>' &&
        body.find('\n') == std::string::npos) {
        return true;
    }
    if (starts_with(piece, "##") || starts_with(piece, kWordStart)) return true;
    for (char32_t c : utf8_to_u32(piece)) {
        if (!is_unicode_space(c)) return false;
    }
    return true;
}

}  // namespace

struct Tokenizer::Impl {
    sentencepiece::SentencePieceProcessor sp;
    std::vector<std::string> pieces;
    std::vector<std::string> texts;  // token_text per id
    std::set<char32_t> punctuation;
    std::vector<bool> punctuation_token;
    std::vector<bool> has_own_text, joins_with_space;
};

bool is_unicode_space(char32_t c) {
    return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
           c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 ||
           c == 0x202F || c == 0x205F || c == 0x3000;
}

std::u32string utf8_to_u32(const std::string& text) {
    std::u32string out;
    out.reserve(text.size());
    for (size_t pos = 0, len = 0; pos < text.size(); pos += len) {
        out.push_back(next_code_point(text, pos, &len));
    }
    return out;
}

std::string u32_to_utf8(char32_t c) {
    std::string out;
    if (c < 0x80) {
        out.push_back(static_cast<char>(c));
    } else if (c < 0x800) {
        out.push_back(static_cast<char>(0xC0 | (c >> 6)));
        out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
    } else if (c < 0x10000) {
        out.push_back(static_cast<char>(0xE0 | (c >> 12)));
        out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
    } else {
        out.push_back(static_cast<char>(0xF0 | (c >> 18)));
        out.push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
    }
    return out;
}

std::set<char32_t> punctuation_from_pieces(const std::vector<std::string>& pieces) {
    std::set<char32_t> out;
    for (const std::string& piece : pieces) {
        if (is_special_piece(piece)) continue;
        for (char32_t c : utf8_to_u32(piece)) {
            if (is_unicode_punctuation(c)) out.insert(c);
        }
    }
    return out;
}

std::string strip_space_before_punctuation(const std::string& text,
                                           const std::set<char32_t>& punctuation) {
    if (punctuation.empty()) return text;
    std::string out;
    out.reserve(text.size());
    size_t pos = 0, len = 0;
    char32_t c = text.empty() ? 0 : next_code_point(text, 0, &len);
    while (pos < text.size()) {
        size_t next_pos = pos + len, next_len = 0;
        char32_t next = next_pos < text.size() ? next_code_point(text, next_pos, &next_len) : 0;
        // A match of (\s)(punct) never overlaps the next one: punctuation is never whitespace.
        bool drop = next_pos < text.size() && is_unicode_space(c) && punctuation.count(next) > 0;
        if (!drop) out.append(text, pos, len);
        pos = next_pos;
        len = next_len;
        c = next;
    }
    return out;
}

Tokenizer Tokenizer::from_model_bytes(const std::string& serialized_model_proto,
                                      const std::string& name) {
    auto impl = std::make_shared<Impl>();
    PK_CHECK(!serialized_model_proto.empty(), kFormat, "{} is empty", name);
    const auto status = impl->sp.LoadFromSerializedProto(serialized_model_proto);
    PK_CHECK(status.ok(), kFormat, "cannot load SentencePiece model from {}: {}", name,
             status.ToString());
    const int n = impl->sp.GetPieceSize();
    PK_CHECK(n > 0, kFormat, "SentencePiece model {} has no pieces", name);
    impl->pieces.reserve(n);
    impl->texts.reserve(n);
    for (int id = 0; id < n; ++id) {
        impl->pieces.push_back(impl->sp.IdToPiece(id));
        std::string text;
        const auto st = impl->sp.Decode(std::vector<int>{id}, &text);
        PK_CHECK(st.ok(), kFormat, "SentencePiece model {} cannot decode id {}: {}", name, id,
                 st.ToString());
        impl->texts.push_back(std::move(text));
    }
    impl->punctuation = punctuation_from_pieces(impl->pieces);
    impl->punctuation_token.resize(n);
    for (int id = 0; id < n; ++id) {
        const std::u32string text = utf8_to_u32(impl->texts[id]);
        impl->punctuation_token[id] = text.size() == 1 && impl->punctuation.count(text[0]) > 0;
    }
    impl->has_own_text.resize(n);
    impl->joins_with_space.resize(n);
    for (int id = 0; id < n; ++id) {
        const std::string& t = impl->texts[id];
        impl->has_own_text[id] = !t.empty() && !impl->sp.IsControl(id) && !impl->sp.IsUnknown(id) &&
                                 !impl->sp.IsByte(id) && !impl->sp.IsUnused(id);
        if (!impl->has_own_text[id] || !starts_with(impl->pieces[id], kWordStart)) continue;
        size_t len = 0;
        const char32_t c = next_code_point(t, 0, &len);
        if (is_unicode_space(c) || impl->punctuation.count(c) > 0) continue;
        // The rule on the pair (id, id): SentencePiece keeps the word-start space after any text.
        std::string pair;
        const auto st = impl->sp.Decode(std::vector<int>{id, id}, &pair);
        impl->joins_with_space[id] = st.ok() && pair == t + " " + t;
    }
    return Tokenizer(std::move(impl));
}

Tokenizer Tokenizer::from_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    PK_CHECK(in.is_open(), kIo, "cannot open tokenizer model '{}': {}", path, std::strerror(errno));
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    PK_CHECK(!in.bad(), kIo, "error reading tokenizer model '{}'", path);
    return from_model_bytes(bytes, "'" + path + "'");
}

void Tokenizer::check_id(int id) const {
    PK_CHECK(id >= 0 && id < vocab_size(), kInvalidArgument,
             "token id {} is outside the tokenizer vocabulary [0, {})", id, vocab_size());
}

int Tokenizer::vocab_size() const { return static_cast<int>(impl_->pieces.size()); }
int Tokenizer::unk_id() const { return impl_->sp.unk_id(); }

const std::string& Tokenizer::piece(int id) const {
    check_id(id);
    return impl_->pieces[id];
}

bool Tokenizer::is_control(int id) const {
    check_id(id);
    return impl_->sp.IsControl(id);
}

bool Tokenizer::is_unknown(int id) const {
    check_id(id);
    return impl_->sp.IsUnknown(id);
}

bool Tokenizer::is_unused(int id) const {
    check_id(id);
    return impl_->sp.IsUnused(id);
}

bool Tokenizer::is_byte(int id) const {
    check_id(id);
    return impl_->sp.IsByte(id);
}

float Tokenizer::score(int id) const {
    check_id(id);
    return impl_->sp.GetScore(id);
}

std::string Tokenizer::decode_raw(const std::vector<int>& ids) const {
    for (int id : ids) check_id(id);
    std::string text;
    const auto status = impl_->sp.Decode(ids, &text);
    PK_CHECK(status.ok(), kInternal, "SentencePiece decode failed: {}", status.ToString());
    return text;
}

std::string Tokenizer::decode(const std::vector<int>& ids) const {
    std::vector<int> kept;
    kept.reserve(ids.size());
    for (int id : ids) {
        PK_CHECK(id >= 0, kInvalidArgument, "negative token id {}", id);
        if (id < vocab_size()) kept.push_back(id);
    }
    return strip_space_before_punctuation(decode_raw(kept), impl_->punctuation);
}

std::vector<int> Tokenizer::encode(const std::string& text) const {
    std::vector<int> ids;
    const auto status = impl_->sp.Encode(text, &ids);
    PK_CHECK(status.ok(), kInternal, "SentencePiece encode failed: {}", status.ToString());
    return ids;
}

const std::set<char32_t>& Tokenizer::punctuation() const { return impl_->punctuation; }

bool Tokenizer::starts_word(int id) const { return starts_with(piece(id), kWordStart); }

const std::string& Tokenizer::token_text(int id) const {
    check_id(id);
    return impl_->texts[id];
}

bool Tokenizer::has_own_text(int id) const {
    check_id(id);
    return impl_->has_own_text[id];
}

bool Tokenizer::joins_with_space(int id) const {
    check_id(id);
    return impl_->joins_with_space[id];
}

bool Tokenizer::is_punctuation_token(int id) const {
    check_id(id);
    return impl_->punctuation_token[id];
}

}  // namespace parakeet
