// Parity with NeMo's own goldens for the tiny-a checkpoint (tests/data/tiny-a, made by NeMo 2.6 on CPU fp32).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <random>
#include <nlohmann/json.hpp>

#include "common/test_util.h"
#include "io/audio.h"
#include "io/npy.h"
#include "ops/ops.h"
#include "runtime/transcriber.h"

namespace parakeet {
namespace {

using testing::ints;
using testing::max_abs_diff;
using testing::rss_kb;

const std::string& kDir = testing::kTinyADir;

using testing::tiny_a_model;

nlohmann::json manifest() {
    std::ifstream in(kDir + "/manifest.json");
    return nlohmann::json::parse(in);
}

ExecContext cpu_ctx() {
    ExecContext ctx;
    ctx.n_threads = 1;
    set_cpu_threads(1);
    return ctx;
}

class TinyAClip : public ::testing::TestWithParam<int> {};

TEST_P(TinyAClip, MatchesNemoGoldens) {
    const int clip = GetParam();
    const std::string golden = kDir + "/golden/clip" + std::to_string(clip) + "/";
    auto model = tiny_a_model();
    std::map<std::string, Tensor> dumped;
    TranscribeOptions opt;
    opt.sink = [&](const std::string& name, const Tensor& t) { dumped[name] = t.clone(); };
    auto audio = load_audio(kDir + "/inputs/clip" + std::to_string(clip) + ".wav", 16000);
    Transcript tr = transcribe(*model, cpu_ctx(), {audio}, opt)[0];

    // Tolerances: docs/PARITY.md. Features and encoder output within 1e-4 absolute (fp32).
    EXPECT_LT(max_abs_diff(dumped["features"], read_npy(golden + "features.npy")), 1e-4);
    EXPECT_LT(max_abs_diff(dumped["encoder_output"], read_npy(golden + "encoder_output.npy")), 1e-4);
    EXPECT_EQ(ints(dumped["features_len"]), ints(read_npy(golden + "features_len.npy")));
    EXPECT_EQ(ints(dumped["encoded_len"]), ints(read_npy(golden + "encoded_len.npy")));
    EXPECT_EQ(ints(dumped["tokens"]), ints(read_npy(golden + "tokens.npy")));
    EXPECT_EQ(ints(dumped["token_frames"]), ints(read_npy(golden + "token_frames.npy")));
    EXPECT_EQ(ints(dumped["token_durations"]), ints(read_npy(golden + "token_durations.npy")));
    const auto ref = manifest()["results"]["clip" + std::to_string(clip)]["greedy_batch"];
    EXPECT_EQ(tr.text, ref["text"].get<std::string>());
    // Token pieces and timestamps: 80 ms per encoder frame.
    ASSERT_EQ(tr.tokens.size(), ref["pieces"].size());
    for (size_t i = 0; i < tr.tokens.size(); ++i) {
        EXPECT_EQ(tr.tokens[i].piece, ref["pieces"][i].get<std::string>());
        EXPECT_NEAR(tr.tokens[i].start, ref["frame_index"][i].get<int>() * 0.08, 1e-9);
    }
}

INSTANTIATE_TEST_SUITE_P(Clips, TinyAClip, ::testing::Values(0, 1, 2, 3));

TEST(TinyA, Clip0Probes) {
    auto model = tiny_a_model();
    const std::string probes = kDir + "/golden/clip0/probes/";
    std::map<std::string, Tensor> dumped;
    TranscribeOptions opt;
    opt.sink = [&](const std::string& name, const Tensor& t) { dumped[name] = t.clone(); };
    auto audio = load_audio(kDir + "/inputs/clip0.wav", 16000);
    transcribe(*model, cpu_ctx(), {audio}, opt);
    for (const char* name : {"pre_encode_out", "pos_enc_x", "pos_emb", "layer0_out", "layer1_out"})
        EXPECT_LT(max_abs_diff(dumped[name], read_npy(probes + name + ".npy")), 1e-5) << name;

    // Prediction net at the SOS state, and the raw joint logits of every frame against it.
    Predictor::State st = model->predictor().initial_state();
    std::vector<float> g(model->predictor().hidden());
    model->predictor().step(model->config().blank_id(), st, g.data());
    const int64_t h = model->predictor().hidden();
    EXPECT_LT(max_abs_diff(Tensor::view(g.data(), {1, 1, h}, DType::kF32, nullptr),
                           read_npy(probes + "decoder_sos_out.npy")), 1e-6);
    EXPECT_LT(max_abs_diff(Tensor::view(st.h.data(), {1, 1, h}, DType::kF32, nullptr),
                           read_npy(probes + "decoder_sos_h.npy")), 1e-6);
    EXPECT_LT(max_abs_diff(Tensor::view(st.c.data(), {1, 1, h}, DType::kF32, nullptr),
                           read_npy(probes + "decoder_sos_c.npy")), 1e-6);
    const Joint& joint = model->joint();
    Tensor enc = dumped["layer1_out"];
    const int64_t t = enc.dim(1);
    Tensor f = Tensor::empty({t, joint.hidden()});
    joint.project_encoder(cpu_ctx(), enc.reshape({t, enc.dim(2)}), f);
    std::vector<float> p(joint.hidden()), scratch(joint.hidden());
    joint.project_prediction(g.data(), p.data());
    Tensor logits = Tensor::empty({1, t, 1, joint.n_outputs()});
    for (int64_t i = 0; i < t; ++i)
        joint.logits(f.data<float>() + i * joint.hidden(), p.data(), scratch.data(),
                     logits.data<float>() + i * joint.n_outputs());
    EXPECT_LT(max_abs_diff(logits, read_npy(probes + "joint_logits_u0.npy")), 1e-4);
}

TEST(TinyA, BatchedEncoderMatchesNemoBatch) {
    auto model = tiny_a_model();
    std::vector<Tensor> feats;
    for (int c = 0; c < 3; ++c) {
        auto audio = load_audio(kDir + "/inputs/clip" + std::to_string(c) + ".wav", 16000);
        feats.push_back(model->frontend().compute(audio.data(), static_cast<int64_t>(audio.size())));
    }
    std::vector<int> lengths;
    Tensor enc = model->encoder().forward(cpu_ctx(), feats, lengths, {});
    Tensor ref = read_npy(kDir + "/golden/batch/encoder_output.npy");  // [3, D, T]
    EXPECT_EQ(std::vector<int64_t>(lengths.begin(), lengths.end()),
              ints(read_npy(kDir + "/golden/batch/encoded_len.npy")));
    ASSERT_EQ(enc.dim(1), ref.dim(2));
    const int64_t d = ref.dim(1), t = ref.dim(2);
    double worst = 0;
    for (int b = 0; b < 3; ++b)
        for (int i = 0; i < lengths[b]; ++i)
            for (int64_t c = 0; c < d; ++c)
                worst = std::max(worst, static_cast<double>(std::fabs(enc.data<float>()[(b * t + i) * d + c] -
                                                                      ref.data<float>()[(b * d + c) * t + i])));
    EXPECT_LT(worst, 1e-4);
}

// compute_batch on the CPU: each item exactly what compute() gives it; a NaN or Inf anywhere (in the last block of
// the vectorised check too) is reported at its index, naming the input.
TEST(TinyA, FrontendBatchOnCpu) {
    auto model = tiny_a_model();
    const MelFrontend& fe = model->frontend();
    std::vector<std::vector<float>> audio;
    for (int c = 0; c < 3; ++c) audio.push_back(load_audio(kDir + "/inputs/clip" + std::to_string(c) + ".wav", 16000));
    audio.emplace_back();  // no frames
    std::vector<const float*> ptrs;
    std::vector<int64_t> lens;
    for (const auto& a : audio) {
        ptrs.push_back(a.data());
        lens.push_back(static_cast<int64_t>(a.size()));
    }
    const std::vector<Tensor> batch = fe.compute_batch(cpu_ctx(), ptrs, lens);
    ASSERT_EQ(batch.size(), audio.size());
    for (size_t b = 0; b < audio.size(); ++b) {
        const Tensor one = fe.compute(ptrs[b], lens[b]);
        ASSERT_EQ(batch[b].shape(), one.shape());
        EXPECT_EQ(batch[b].dim(0), fe.num_frames(lens[b]));
        for (int64_t i = 0; i < one.numel(); ++i) ASSERT_EQ(batch[b].data<float>()[i], one.data<float>()[i]);
    }
    EXPECT_GT(batch[0].dim(0), 0);
    for (const int64_t at : {int64_t{0}, int64_t{4095}, int64_t{4096}, lens[1] - 1}) {
        std::vector<float> bad = audio[1];
        bad[static_cast<size_t>(at)] = at % 2 ? INFINITY : NAN;
        try {
            fe.compute(bad.data(), static_cast<int64_t>(bad.size()));
            ADD_FAILURE() << "a non-finite sample at " << at << " was accepted";
        } catch (const Error& e) {
            EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
            EXPECT_NE(std::string(e.what()).find(fmt::format("at sample {})", at)), std::string::npos) << e.what();
        }
    }
}

// normalize_per_feature (frame by frame over all columns) gives, to the last bit, what the column-at-a-time loop
// gives: each column summed in frame order in double, unbiased std (0 for one frame) plus 1e-5.
TEST(TinyA, PerFeatureNormalisationIsColumnwise) {
    std::mt19937 rng(5);
    std::normal_distribution<float> nd(-4.f, 2.5f);
    for (const int64_t frames : {int64_t{1}, int64_t{2}, int64_t{25}, int64_t{1001}}) {
        for (const int mels : {80, 128}) {
            std::vector<float> x(static_cast<size_t>(frames * mels));
            for (float& v : x) v = nd(rng);
            std::vector<float> ref = x;
            for (int m = 0; m < mels; ++m) {
                double sum = 0.0;
                for (int64_t t = 0; t < frames; ++t) sum += ref[t * mels + m];
                const float mean = static_cast<float>(sum / frames);
                double sq = 0.0;
                for (int64_t t = 0; t < frames; ++t) {
                    const float d = ref[t * mels + m] - mean;
                    sq += static_cast<double>(d) * static_cast<double>(d);
                }
                float sd = frames > 1 ? static_cast<float>(std::sqrt(sq / (frames - 1))) : 0.f;
                sd += 1e-5f;
                for (int64_t t = 0; t < frames; ++t) ref[t * mels + m] = (ref[t * mels + m] - mean) / sd;
            }
            normalize_per_feature(x.data(), frames, mels);
            for (size_t i = 0; i < x.size(); ++i)
                ASSERT_EQ(x[i], ref[i]) << frames << " frames, " << mels << " mels, value " << i;
        }
    }
}

// The batched, channels-last subsampling (the CUDA encoder's path) gives every item what the per-item path gives it
// alone, for lengths around every stage's rounding, a single frame and an empty item, with rows past each item's
// length zero.
TEST(TinyA, BatchedSubsamplingMatchesPerItem) {
    auto model = tiny_a_model();
    const FastConformerEncoder& enc = model->encoder();
    auto audio = load_audio(kDir + "/inputs/clip0.wav", 16000);
    Tensor f = model->frontend().compute(audio.data(), static_cast<int64_t>(audio.size()));
    std::vector<Tensor> feats;
    for (int64_t n : {f.dim(0), int64_t{1}, int64_t{0}, int64_t{2}, int64_t{7}, int64_t{8}, int64_t{9}, int64_t{16},
                      int64_t{17}, int64_t{30}, int64_t{31}, int64_t{33}, f.dim(0) - 5})
        feats.push_back(f.slice0(f.dim(0) - n, f.dim(0)).clone());
    int64_t t = 0;
    for (const Tensor& x : feats) t = std::max<int64_t>(t, enc.encoded_length(static_cast<int>(x.dim(0))));
    const int64_t d = enc.config().d_model;
    Tensor x = Tensor::empty({static_cast<int64_t>(feats.size()), t, d});
    enc.subsample_batch(cpu_ctx(), feats, x);
    for (size_t b = 0; b < feats.size(); ++b) {
        const int64_t n = enc.encoded_length(static_cast<int>(feats[b].dim(0)));
        Tensor ref = enc.subsample(cpu_ctx(), feats[b]);
        ASSERT_EQ(ref.dim(0), n);
        double diff = 0, pad = 0;
        for (int64_t i = 0; i < t * d; ++i) {
            const float v = x.data<float>()[static_cast<int64_t>(b) * t * d + i];
            if (i < n * d) diff = std::max(diff, static_cast<double>(std::fabs(v - ref.data<float>()[i])));
            else pad = std::max(pad, static_cast<double>(std::fabs(v)));
        }
        EXPECT_LT(diff, 1e-4) << "item " << b << ": " << feats[b].dim(0) << " frames";
        EXPECT_EQ(pad, 0.0) << "item " << b;
    }
}

TEST(TinyA, LocalAttentionWiderThanInputEqualsFullContext) {
    auto model = tiny_a_model();
    auto audio = load_audio(kDir + "/inputs/clip1.wav", 16000);
    Tensor feats = model->frontend().compute(audio.data(), static_cast<int64_t>(audio.size()));
    std::vector<int> lengths;
    Tensor full = model->encoder().forward(cpu_ctx(), {feats}, lengths, {});
    Tensor local = model->encoder().forward(cpu_ctx(), {feats}, lengths, {100, 100});
    EXPECT_LT(max_abs_diff(full, local), 1e-6);
    Tensor narrow = model->encoder().forward(cpu_ctx(), {feats}, lengths, {4, 4});
    EXPECT_GT(max_abs_diff(full, narrow), 1e-3);  // a real band limit changes the output
}

// NeMo <= 2.4 frontend (reflect padding, N // 160 + 1 frames) against the PyTorch reference's goldens.
TEST(TinyA, Nemo24Frontend) {
    ModelOptions mo;
    mo.frontend = FrontendVersion::kNemo24;
    auto model = Model::load(kDir + "/model/tiny-a.nemo", mo);
    for (const char* clip : {"clip0", "clip3"}) {
        const std::string g = std::string(PARAKEET_TEST_DATA_DIR) + "/nemo24/" + clip + "/";
        std::map<std::string, Tensor> dumped;
        TranscribeOptions opt;
        opt.sink = [&](const std::string& name, const Tensor& t) { dumped[name] = t.clone(); };
        auto audio = load_audio(kDir + "/inputs/" + clip + ".wav", 16000);
        transcribe(*model, cpu_ctx(), {audio}, opt);
        EXPECT_LT(max_abs_diff(dumped["features"], read_npy(g + "features.npy")), 1e-4) << clip;
        EXPECT_LT(max_abs_diff(dumped["encoder_output"], read_npy(g + "encoder_output.npy")), 1e-4) << clip;
        EXPECT_EQ(ints(dumped["features_len"]), ints(read_npy(g + "features_len.npy"))) << clip;
        EXPECT_EQ(ints(dumped["tokens"]), ints(read_npy(g + "tokens.npy"))) << clip;
        EXPECT_EQ(ints(dumped["token_frames"]), ints(read_npy(g + "token_frames.npy"))) << clip;
    }
}

// An hour of audio offline: local attention beyond 24 min keeps memory linear in the length (no T x T scores).
TEST(TinyA, HourLongFileUsesBoundedMemory) {
    if (std::getenv("PARAKEET_SKIP_SLOW")) GTEST_SKIP() << "PARAKEET_SKIP_SLOW set (sanitizer run)";
    auto model = tiny_a_model();
    auto clip = load_audio(kDir + "/inputs/clip3.wav", 16000);
    std::vector<float> hour;
    hour.reserve(3600 * 16000);
    while (hour.size() < 3600u * 16000) hour.insert(hour.end(), clip.begin(), clip.end());
    hour.resize(3600u * 16000);
    const long before = rss_kb();
    ExecContext ctx;
    ctx.n_threads = 2;
    Transcript t = transcribe(*model, ctx, {hour}, {})[0];
    EXPECT_EQ(t.n_encoder_frames, 45000);
    EXPECT_GT(t.tokens.size(), 1000u);
    EXPECT_NEAR(t.tokens.back().start, 3600.0, 10.0);
    // Audio (230 MB) and features (115 MB) are held once; a full 45000 x 45000 score matrix alone would be 8 GB.
    EXPECT_LT(rss_kb() - before, 1500 * 1024);
}

}  // namespace
}  // namespace parakeet
