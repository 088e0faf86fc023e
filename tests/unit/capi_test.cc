// The C ABI: a stream end to end, and errors as statuses with a message (never an exception or abort).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "io/audio.h"
#include "parakeet/parakeet.h"

namespace {

const std::string kModel = std::string(PARAKEET_TEST_DATA_DIR) + "/tiny-a/model/tiny-a.nemo";

TEST(CApi, StreamsAFileToFinalText) {
    parakeet_recognizer_config cfg = parakeet_recognizer_default_config();
    cfg.model_path = kModel.c_str();
    cfg.left_secs = 10;
    cfg.chunk_secs = 10;
    cfg.right_secs = 5;
    parakeet_recognizer* rec = nullptr;
    ASSERT_EQ(parakeet_recognizer_create(&cfg, &rec), PARAKEET_OK) << parakeet_last_error();
    EXPECT_EQ(parakeet_recognizer_sample_rate(rec), 16000);
    parakeet_stream* s = nullptr;
    ASSERT_EQ(parakeet_stream_create(rec, &s), PARAKEET_OK);
    auto audio = parakeet::load_audio(std::string(PARAKEET_TEST_DATA_DIR) + "/tiny-a/inputs/clip0.wav", 16000);
    ASSERT_EQ(parakeet_stream_accept_waveform(s, 16000, audio.data(), audio.size()), PARAKEET_OK);
    ASSERT_EQ(parakeet_stream_input_finished(s), PARAKEET_OK);
    ASSERT_EQ(parakeet_recognizer_decode(rec, s), PARAKEET_OK);
    std::string final_text;
    parakeet_event e;
    while (parakeet_stream_pop_event(s, &e) == PARAKEET_OK)
        if (e.type == PARAKEET_EVENT_FINAL) final_text = e.text;
    EXPECT_EQ(final_text, "uain justionr justionionainain justreis just d just qu rau");
    parakeet_stream_destroy(s);
    parakeet_recognizer_destroy(rec);
}

// decode_many on two streams gives each the text decode gives it alone; null arguments are statuses.
TEST(CApi, DecodeManyEqualsDecodeOneByOne) {
    parakeet_recognizer_config cfg = parakeet_recognizer_default_config();
    cfg.model_path = kModel.c_str();
    cfg.mode = "cache-aware";
    cfg.chunk_size = 4;
    cfg.shift_size = 2;
    cfg.left_chunks = 8;
    cfg.endpoint_silence_ms = 0;
    parakeet_recognizer* rec = nullptr;
    ASSERT_EQ(parakeet_recognizer_create(&cfg, &rec), PARAKEET_OK) << parakeet_last_error();
    auto final_text = [](parakeet_stream* s) {
        std::string text;
        parakeet_event e;
        while (parakeet_stream_pop_event(s, &e) == PARAKEET_OK)
            if (e.type == PARAKEET_EVENT_FINAL) text += e.text;
        return text;
    };
    std::vector<std::string> alone, together;
    std::vector<parakeet_stream*> streams(2, nullptr);
    for (int pass = 0; pass < 2; ++pass) {
        for (int i = 0; i < 2; ++i) {
            ASSERT_EQ(parakeet_stream_create(rec, &streams[i]), PARAKEET_OK);
            auto audio = parakeet::load_audio(
                std::string(PARAKEET_TEST_DATA_DIR) + "/tiny-a/inputs/clip" + std::to_string(i + 1) + ".wav", 16000);
            ASSERT_EQ(parakeet_stream_accept_waveform(streams[i], 16000, audio.data(), audio.size()), PARAKEET_OK);
            ASSERT_EQ(parakeet_stream_input_finished(streams[i]), PARAKEET_OK);
        }
        if (pass == 0) {
            for (int i = 0; i < 2; ++i) {
                ASSERT_EQ(parakeet_recognizer_decode(rec, streams[i]), PARAKEET_OK);
                alone.push_back(final_text(streams[i]));
            }
        } else {
            ASSERT_EQ(parakeet_recognizer_decode_many(rec, streams.data(), streams.size()), PARAKEET_OK);
            for (int i = 0; i < 2; ++i) together.push_back(final_text(streams[i]));
        }
        for (parakeet_stream* s : streams) parakeet_stream_destroy(s);
    }
    EXPECT_FALSE(alone[0].empty());
    EXPECT_NE(alone[0], alone[1]);
    EXPECT_EQ(together, alone);
    EXPECT_EQ(parakeet_recognizer_decode_many(rec, nullptr, 2), PARAKEET_INVALID_ARGUMENT);
    parakeet_stream* null_stream = nullptr;
    EXPECT_EQ(parakeet_recognizer_decode_many(rec, &null_stream, 1), PARAKEET_INVALID_ARGUMENT);
    EXPECT_EQ(parakeet_recognizer_decode_many(rec, nullptr, 0), PARAKEET_OK);
    parakeet_recognizer_destroy(rec);
}

TEST(CApi, ErrorsAreStatuses) {
    parakeet_recognizer_config cfg = parakeet_recognizer_default_config();
    parakeet_recognizer* rec = nullptr;
    EXPECT_EQ(parakeet_recognizer_create(&cfg, &rec), PARAKEET_INVALID_ARGUMENT);
    cfg.model_path = "/nonexistent.nemo";
    EXPECT_EQ(parakeet_recognizer_create(&cfg, &rec), PARAKEET_IO_ERROR);
    EXPECT_NE(std::string(parakeet_last_error()).find("/nonexistent.nemo"), std::string::npos);
    cfg.model_path = kModel.c_str();
    cfg.mode = "bogus";
    EXPECT_EQ(parakeet_recognizer_create(&cfg, &rec), PARAKEET_INVALID_ARGUMENT);
    cfg.mode = "windowed";
    cfg.device = "cuda:7";
    EXPECT_EQ(parakeet_recognizer_create(&cfg, &rec), PARAKEET_UNSUPPORTED);
    cfg.device = "cpu";
    ASSERT_EQ(parakeet_recognizer_create(&cfg, &rec), PARAKEET_OK);
    parakeet_stream* s = nullptr;
    ASSERT_EQ(parakeet_stream_create(rec, &s), PARAKEET_OK);
    float x = 0.f;
    EXPECT_EQ(parakeet_stream_accept_waveform(s, -5, &x, 1), PARAKEET_INVALID_ARGUMENT);
    EXPECT_EQ(parakeet_stream_accept_waveform(nullptr, 16000, &x, 1), PARAKEET_INVALID_ARGUMENT);
    parakeet_event e;
    EXPECT_EQ(parakeet_stream_pop_event(s, &e), PARAKEET_NO_EVENT);
    parakeet_stream_destroy(s);
    parakeet_recognizer_destroy(rec);
}

}  // namespace
