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
