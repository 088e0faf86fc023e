#include "models/tokenizer.h"

#include <archive.h>
#include <archive_entry.h>
#include <gtest/gtest.h>

#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"

namespace parakeet {
namespace {

const std::string kData = PARAKEET_TEST_DATA_DIR;

// The bytes of the first member of `tar_path` whose name ends with `suffix` (libarchive directly;
// the .nemo reader is tested elsewhere).
std::string tar_member(const std::string& tar_path, const std::string& suffix) {
    archive* a = archive_read_new();
    archive_read_support_format_tar(a);
    EXPECT_EQ(archive_read_open_filename(a, tar_path.c_str(), 1 << 16), ARCHIVE_OK) << tar_path;
    archive_entry* entry = nullptr;
    std::string out;
    while (archive_read_next_header(a, &entry) == ARCHIVE_OK) {
        const std::string name = archive_entry_pathname(entry);
        if (name.size() >= suffix.size() &&
            name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0) {
            out.resize(static_cast<size_t>(archive_entry_size(entry)));
            EXPECT_EQ(archive_read_data(a, out.data(), out.size()),
                      static_cast<la_ssize_t>(out.size()));
            break;
        }
    }
    archive_read_free(a);
    EXPECT_FALSE(out.empty()) << "no member *" << suffix << " in " << tar_path;
    return out;
}

const Tokenizer& tiny_a() {
    static const Tokenizer tok = Tokenizer::from_model_bytes(
        tar_member(kData + "/tiny-a/model/tiny-a.nemo", "_tokenizer.model"), "tiny-a tokenizer");
    return tok;
}

nlohmann::json read_json(const std::string& path) {
    std::ifstream in(path);
    return nlohmann::json::parse(in);
}

ErrorCode error_code_of(const std::function<void()>& fn) {
    try {
        fn();
    } catch (const Error& e) {
        return e.code();
    }
    ADD_FAILURE() << "expected an error";
    return ErrorCode::kInternal;
}

TEST(Tokenizer, TinyAPiecesMatchTheVocabDump) {
    const Tokenizer& tok = tiny_a();
    ASSERT_EQ(tok.vocab_size(), 128);
    std::istringstream vocab(tar_member(kData + "/tiny-a/model/tiny-a.nemo", "_tokenizer.vocab"));
    std::string line;
    int id = 0;
    while (std::getline(vocab, line)) {
        const std::string piece = line.substr(0, line.find('\t'));
        ASSERT_LT(id, tok.vocab_size());
        EXPECT_EQ(tok.piece(id), piece) << "id " << id;
        EXPECT_EQ(tok.score(id), std::stof(line.substr(line.find('\t') + 1))) << "id " << id;
        ++id;
    }
    EXPECT_EQ(id, 128);
    EXPECT_EQ(tok.unk_id(), 0);
    EXPECT_TRUE(tok.is_unknown(0));
    EXPECT_FALSE(tok.is_control(0));
    EXPECT_FALSE(tok.is_unknown(1));
}

TEST(Tokenizer, TinyADecodesNemoTextForEveryClip) {
    const nlohmann::json manifest = read_json(kData + "/tiny-a/manifest.json");
    const Tokenizer& tok = tiny_a();
    for (const char* clip : {"clip0", "clip1", "clip2", "clip3"}) {
        for (const char* strategy : {"greedy_batch", "greedy"}) {
            const auto& result = manifest["results"][clip][strategy];
            const std::vector<int> ids = result["token_ids"].get<std::vector<int>>();
            EXPECT_EQ(tok.decode(ids), result["text"].get<std::string>())
                << clip << " " << strategy;
            const auto pieces = result["pieces"].get<std::vector<std::string>>();
            ASSERT_EQ(pieces.size(), ids.size());
            for (size_t i = 0; i < ids.size(); ++i) EXPECT_EQ(tok.piece(ids[i]), pieces[i]);
        }
    }
    // The blank (vocab_size) and anything above it are dropped, as NeMo does.
    EXPECT_EQ(tok.decode({128, 100, 128, 129, 83, 1000}), tok.decode({100, 83}));
    EXPECT_EQ(tok.decode({}), "");
    EXPECT_EQ(error_code_of([&] { tok.decode({5, -1}); }), ErrorCode::kInvalidArgument);
}

TEST(Tokenizer, TinyAWordHelpers) {
    const Tokenizer& tok = tiny_a();
    EXPECT_TRUE(tok.punctuation().empty());
    // 101 "▁just", 84 "ain", 103 "▁", 0 "<unk>"
    EXPECT_TRUE(tok.starts_word(101));
    EXPECT_EQ(tok.token_text(101), "just");
    EXPECT_FALSE(tok.starts_word(84));
    EXPECT_EQ(tok.token_text(84), "ain");
    EXPECT_TRUE(tok.starts_word(103));
    EXPECT_EQ(tok.token_text(103), "");
    EXPECT_FALSE(tok.starts_word(0));
    EXPECT_EQ(tok.token_text(0), " \u2047 ");
    for (int id = 0; id < tok.vocab_size(); ++id) EXPECT_FALSE(tok.is_punctuation_token(id));
    EXPECT_EQ(tok.encode("just"), (std::vector<int>{101}));
    EXPECT_EQ(error_code_of([&] { tok.piece(128); }), ErrorCode::kInvalidArgument);
    EXPECT_EQ(error_code_of([&] { tok.token_text(-1); }), ErrorCode::kInvalidArgument);

    const Tokenizer copy = tok;  // copies share the model
    EXPECT_EQ(copy.piece(101), tok.piece(101));
}

TEST(Tokenizer, PunctuationModelMatchesNemoRules) {
    const std::string dir = kData + "/tokenizer";
    const Tokenizer tok = Tokenizer::from_file(dir + "/punct.model");
    const nlohmann::json expected = read_json(dir + "/punct_expected.json");
    ASSERT_EQ(tok.vocab_size(), expected["vocab_size"].get<int>());
    for (int id = 0; id < tok.vocab_size(); ++id) {
        EXPECT_EQ(tok.piece(id), expected["pieces"][id].get<std::string>()) << id;
        EXPECT_EQ(tok.token_text(id), expected["token_text"][id].get<std::string>()) << id;
    }
    std::set<char32_t> punct;
    for (const auto& cp : expected["punctuation"]) punct.insert(cp.get<char32_t>());
    EXPECT_EQ(tok.punctuation(), punct);
    for (int id : expected["control"].get<std::vector<int>>())
        EXPECT_TRUE(tok.is_control(id)) << id;
    for (const auto& c : expected["cases"]) {
        const std::vector<int> ids = c["ids"].get<std::vector<int>>();
        std::vector<int> kept;
        for (int id : ids) {
            if (id < tok.vocab_size()) kept.push_back(id);
        }
        EXPECT_EQ(tok.decode_raw(kept), c["raw"].get<std::string>()) << c.dump();
        EXPECT_EQ(tok.decode(ids), c["text"].get<std::string>()) << c.dump();
    }

    auto id_of = [&](const std::string& piece) {
        for (int id = 0; id < tok.vocab_size(); ++id) {
            if (tok.piece(id) == piece) return id;
        }
        ADD_FAILURE() << "no piece " << piece;
        return 0;
    };
    EXPECT_TRUE(tok.is_punctuation_token(id_of(",")));
    EXPECT_TRUE(tok.is_punctuation_token(id_of("¿")));
    EXPECT_TRUE(tok.is_punctuation_token(id_of("—")));
    EXPECT_FALSE(tok.is_punctuation_token(id_of("..")));  // two characters: not `in` the set
    EXPECT_FALSE(tok.is_punctuation_token(id_of("$")));   // category Sc
    EXPECT_FALSE(tok.is_punctuation_token(id_of("[noise]")));
    EXPECT_FALSE(tok.is_punctuation_token(id_of("▁cat")));
}

TEST(Tokenizer, PunctuationFromPiecesSkipsSpecialPieces) {
    const std::vector<std::string> pieces = {
        "\u2581,", "##.",    "<a,b>", "[x!]",         "a.b", "?",         " ",     "[",
        "\u00e9!", "<|x;|>", "[]",    "\u00ab\u00bb", "x-y", "$+<=>^`|~", "<q>\n", "\u3001"};
    const std::set<char32_t> expected = {U'.',      U'?',      U'[', U'!',
                                         U'\u00ab', U'\u00bb', U'-', U'\u3001'};
    EXPECT_EQ(punctuation_from_pieces(pieces), expected);
}

TEST(Tokenizer, StripSpaceBeforePunctuation) {
    const std::set<char32_t> p = {U',', U'.', U'?', U'\u00bf'};
    EXPECT_EQ(strip_space_before_punctuation("a , b .", p), "a, b.");
    EXPECT_EQ(strip_space_before_punctuation("a  ,", p), "a ,");  // only one space
    EXPECT_EQ(strip_space_before_punctuation(" ,", p), ",");
    EXPECT_EQ(strip_space_before_punctuation("a\u00a0,\t.\u3000?", p), "a,.?");
    EXPECT_EQ(strip_space_before_punctuation("x \u00bfy", p), "x\u00bfy");
    EXPECT_EQ(strip_space_before_punctuation("a ! b", p), "a ! b");
    EXPECT_EQ(strip_space_before_punctuation("a , , ,", p), "a,,,");
    EXPECT_EQ(strip_space_before_punctuation("", p), "");
    EXPECT_EQ(strip_space_before_punctuation("a , b", {}), "a , b");
    // Invalid UTF-8 bytes pass through untouched.
    EXPECT_EQ(strip_space_before_punctuation("\xff ,\xc3", p), "\xff,\xc3");
}

TEST(Tokenizer, UnicodePunctuationTable) {
    // ASCII per Python's unicodedata: P* vs the S* symbols.
    const std::string ascii_p = "!\"#%&'()*,-./:;?@[\\]_{}";
    for (char32_t c = 0; c < 128; ++c) {
        const bool expected = ascii_p.find(static_cast<char>(c)) != std::string::npos;
        EXPECT_EQ(is_unicode_punctuation(c), expected) << "U+" << std::hex << static_cast<int>(c);
    }
    for (char32_t c :
         {U'\u00a1', U'\u00a7', U'\u00ab', U'\u00b6', U'\u00b7', U'\u00bb',    U'\u00bf',
          U'\u2010', U'\u2014', U'\u2026', U'\u2030', U'\u205e', U'\u3001',    U'\u3011',
          U'\uff01', U'\uff0c', U'\u055a', U'\u0589', U'\u05be', U'\u060c',    U'\u061f',
          U'\u066d', U'\u06d4', U'\u0964', U'\u0965', U'\u2047', U'\U0001e95e'}) {
        EXPECT_TRUE(is_unicode_punctuation(c)) << "U+" << std::hex << static_cast<int>(c);
    }
    for (char32_t c : {U'\u00a2', U'\u00a9', U'\u00b0', U'\u00d7', U'\u2581', U'\u20ac', U'\uff04',
                       U'\uff0b', U'a', U'\u00e9', U'\u4e00', U' ', U'\U0010ffff'}) {
        EXPECT_FALSE(is_unicode_punctuation(c)) << "U+" << std::hex << static_cast<int>(c);
    }
}

TEST(Tokenizer, Utf8Helpers) {
    EXPECT_EQ(utf8_to_u32("a\u00e9\u2581\U0001f600"), U"a\u00e9\u2581\U0001f600");
    EXPECT_EQ(utf8_to_u32("\xff\xc3"), U"\ufffd\ufffd");
    EXPECT_EQ(utf8_to_u32("\xed\xa0\x80"), U"\ufffd\ufffd\ufffd");  // surrogate
    for (char32_t c : {U'a', U'\u00e9', U'\u2581', U'\U0001f600'}) {
        EXPECT_EQ(utf8_to_u32(u32_to_utf8(c)), std::u32string(1, c));
    }
    EXPECT_TRUE(is_unicode_space(U' '));
    EXPECT_TRUE(is_unicode_space(U'\u3000'));
    EXPECT_TRUE(is_unicode_space(U'\x1f'));
    EXPECT_FALSE(is_unicode_space(U'\u200b'));  // zero width space is not \s in Python
    EXPECT_FALSE(is_unicode_space(U'\u2581'));
}

TEST(Tokenizer, BadModelsFailCleanly) {
    EXPECT_EQ(error_code_of([] { Tokenizer::from_model_bytes("", "empty"); }), ErrorCode::kFormat);
    EXPECT_EQ(error_code_of([] { Tokenizer::from_model_bytes("not a protobuf \x01\x02", "junk"); }),
              ErrorCode::kFormat);
    const std::string good = tar_member(kData + "/tiny-a/model/tiny-a.nemo", "_tokenizer.model");
    EXPECT_EQ(error_code_of([&] { Tokenizer::from_model_bytes(good.substr(0, good.size() / 2)); }),
              ErrorCode::kFormat);
    EXPECT_EQ(error_code_of([] { Tokenizer::from_file("/nonexistent/tokenizer.model"); }),
              ErrorCode::kIo);
}

}  // namespace
}  // namespace parakeet
