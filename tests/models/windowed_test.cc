// Windowed streaming against NeMo's speech_to_text_streaming_infer_rnnt.py goldens (tests/data/tiny-a/windowed),
// and the seams: no duplicated or lost tokens where chunks meet.
#include <gtest/gtest.h>

#include <cmath>

#include "common/test_util.h"
#include "io/audio.h"
#include "io/npy.h"
#include "runtime/transcriber.h"
#include "runtime/windowed.h"

namespace parakeet {
namespace {

using testing::ints;

const std::string& kDir = testing::kTinyADir;

using testing::tiny_a_model;

struct StreamRun {
    std::vector<Token> tokens;
    std::vector<float> frames;  // decoded frames concatenated, [T, D] row-major
    int n_frames = 0;
};

StreamRun stream(const std::vector<float>& audio, const WindowedOptions& opt, size_t feed = 0) {
    WindowedStreamer s(tiny_a_model(), opt);
    DeviceRunner ctx(tiny_a_model(), Device{}, Precision::kF32, 1);
    StreamRun r;
    auto drain = [&] {
        while (s.ready()) {
            WindowedStep st = s.step(ctx);
            r.tokens.insert(r.tokens.end(), st.tokens.begin(), st.tokens.end());
            const int64_t d = st.encoded.dim(1);
            r.frames.insert(r.frames.end(), st.encoded.data<float>(), st.encoded.data<float>() + st.out_len * d);
            r.n_frames += st.out_len;
        }
    };
    const size_t step = feed ? feed : audio.size();
    for (size_t i = 0; i < audio.size(); i += step) {
        s.accept(audio.data() + i, std::min(step, audio.size() - i));
        drain();
    }
    s.finish();
    drain();
    return r;
}

struct Setting {
    const char* name;
    double left, chunk, right;
};
const Setting kSettings[] = {{"L10-C2-R2", 10, 2, 2}, {"L2-C0.48-R0.32", 2, 0.48, 0.32},
                             {"L1-C0.16-R0.16", 1, 0.16, 0.16}, {"L10-C10-R5", 10, 10, 5}};

class WindowedGolden : public ::testing::TestWithParam<std::tuple<int, int>> {};

TEST_P(WindowedGolden, NemoCompatMatchesNemo) {
    const auto& [si, clip] = GetParam();
    const Setting& set = kSettings[si];
    const std::string g = kDir + "/windowed/" + set.name + "/clip" + std::to_string(clip) + "/";
    auto audio = load_audio(kDir + "/inputs/clip" + std::to_string(clip) + ".wav", 16000);
    WindowedOptions opt{set.left, set.chunk, set.right, true};
    StreamRun r = stream(audio, opt);
    std::vector<int64_t> ids, frames, durs;
    for (const Token& t : r.tokens) {
        ids.push_back(t.id);
        frames.push_back(t.frame);
        durs.push_back(t.duration);
    }
    EXPECT_EQ(ids, ints(read_npy(g + "tokens.npy")));
    EXPECT_EQ(frames, ints(read_npy(g + "token_frames.npy")));
    EXPECT_EQ(durs, ints(read_npy(g + "token_durations.npy")));
    Tensor ref = read_npy(g + "chunk_encoder_output.npy");  // [1, D, T]
    const int64_t d = ref.dim(1), t = ref.dim(2);
    ASSERT_EQ(r.n_frames, t);
    // Each window is normalised on its own; a window of near-silence (clip3 starts with one) has mel bins whose
    // std is ~1e-5, which amplifies FFT rounding differences into the features. So: nearly every frame within
    // 1e-4, none beyond 5e-2, and the decisions identical (above). docs/PARITY.md has the measured figures.
    double worst = 0;
    int64_t loose = 0;
    for (int64_t i = 0; i < t; ++i) {
        double frame = 0;
        for (int64_t c = 0; c < d; ++c)
            frame = std::max(frame, static_cast<double>(std::fabs(r.frames[i * d + c] - ref.data<float>()[c * t + i])));
        worst = std::max(worst, frame);
        loose += frame > 1e-4;
    }
    EXPECT_LT(worst, 5e-2);
    EXPECT_LE(loose, t / 5) << loose << " of " << t << " frames beyond 1e-4";
    if (clip != 3) {
        EXPECT_LT(worst, 1e-4);
    }
}

INSTANTIATE_TEST_SUITE_P(All, WindowedGolden, ::testing::Combine(::testing::Range(0, 4), ::testing::Range(0, 4)));

TEST(Windowed, WholeInputWindowEqualsOffline) {
    for (int clip = 0; clip < 4; ++clip) {
        auto audio = load_audio(kDir + "/inputs/clip" + std::to_string(clip) + ".wav", 16000);
        ExecContext ctx;
        Transcript off = transcribe(*tiny_a_model(), ctx, {audio}, {})[0];
        StreamRun r = stream(audio, WindowedOptions{10, 10, 5, false});
        ASSERT_EQ(r.tokens.size(), off.tokens.size()) << "clip" << clip;
        for (size_t i = 0; i < r.tokens.size(); ++i) {
            EXPECT_EQ(r.tokens[i].id, off.tokens[i].id);
            EXPECT_EQ(r.tokens[i].frame, off.tokens[i].frame);
            EXPECT_EQ(r.tokens[i].duration, off.tokens[i].duration);
        }
        // NeMo's own behaviour loses the token on the last frame of clip1..3 (fixture README).
        if (clip > 0) {
            EXPECT_LT(stream(audio, WindowedOptions{10, 10, 5, true}).tokens.size(), off.tokens.size());
        }
    }
}

// Seams: every encoder frame is decoded exactly once, in order, whatever the chunking and however the audio
// arrives; tokens are frame-ordered with no frame decoded twice (no duplicates) or skipped (no losses).
TEST(Windowed, SeamsNeitherDuplicateNorLoseFrames) {
    const char* files[] = {"inputs/clip0.wav", "inputs/clip1.wav", "inputs/clip2.wav", "inputs/clip3.wav"};
    const Setting settings[] = {{"", 1, 0.16, 0.16}, {"", 2, 0.48, 0.32}, {"", 0.5, 0.24, 0.08},
                                {"", 3, 1.04, 0.0},  {"", 10, 2, 2},     {"", 0.0, 0.8, 0.4}};
    for (const char* file : files) {
        auto audio = load_audio(kDir + "/" + file, 16000);
        const int offline_frames = tiny_a_model()->encoder().encoded_length(static_cast<int>(audio.size() / 160));
        for (const Setting& s : settings) {
            for (size_t feed : {size_t{0}, size_t{160}, size_t{1111}, size_t{4000}}) {
                WindowedStreamer ws(tiny_a_model(), WindowedOptions{s.left, s.chunk, s.right, false});
                DeviceRunner ctx(tiny_a_model(), Device{}, Precision::kF32, 1);
                int next_frame = 0, last_token_frame = -1;
                auto drain = [&] {
                    while (ws.ready()) {
                        WindowedStep st = ws.step(ctx);
                        EXPECT_EQ(st.first_frame, next_frame) << file << " seam";
                        next_frame += st.out_len;
                        for (const Token& t : st.tokens) {
                            EXPECT_GE(t.frame, last_token_frame) << file << " token out of order";
                            EXPECT_GE(t.frame, st.first_frame) << file << " token before its chunk";
                            EXPECT_LT(t.frame, st.first_frame + st.out_len) << file << " token after its chunk";
                            last_token_frame = t.frame;
                        }
                    }
                };
                const size_t step = feed ? feed : audio.size();
                for (size_t i = 0; i < audio.size(); i += step) {
                    ws.accept(audio.data() + i, std::min(step, audio.size() - i));
                    drain();
                }
                ws.finish();
                drain();
                EXPECT_EQ(next_frame, offline_frames) << file << " chunk " << s.chunk << " feed " << feed;
            }
        }
    }
}

}  // namespace
}  // namespace parakeet
