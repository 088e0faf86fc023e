// Cache-aware streaming parity with NeMo's per-chunk reference (tiny-a, setup_streaming_params(4, 2, 8)).
#include <gtest/gtest.h>

#include "common/test_util.h"
#include "io/npy.h"
#include "runtime/parity.h"

namespace parakeet {
namespace {

const std::string& kDir = testing::kTinyADir;

class StreamParity : public ::testing::TestWithParam<ParityMode> {};

TEST_P(StreamParity, EveryChunkMatchesNemo) {
    auto model = Model::load(kDir + "/model/tiny-a.nemo");
    auto ref = read_reference_jsonl(kDir + "/streaming/stream_clip0.jsonl");
    ParityOptions opt;
    opt.mode = GetParam();
    opt.chunk_size = 4;
    opt.shift_size = 2;
    opt.left_chunks = 8;
    ExecContext ctx;
    ParityReport r = run_stream_parity(*model, ctx, ref, opt);
    ASSERT_EQ(r.chunks.size(), 20u);
    for (const ChunkParity& c : r.chunks) {
        EXPECT_TRUE(c.lengths_ok) << "chunk " << c.chunk;
        for (const auto& [name, e] : c.tensors) {
            EXPECT_TRUE(e.shape_ok) << name << " chunk " << c.chunk;
            EXPECT_LT(e.max_abs, 1e-4) << name << " chunk " << c.chunk;
        }
    }
    EXPECT_TRUE(r.pass);
    EXPECT_EQ(r.first_failing_chunk, -1);
    // NeMo's streamed hypothesis (manifest streaming.final_streaming).
    EXPECT_EQ(r.tokens, (std::vector<int>{83, 88, 53, 22, 22, 22, 22, 22, 22, 22, 62, 118, 118, 113, 113, 113, 66, 113}));
    EXPECT_EQ(r.token_frames, (std::vector<int>{0, 4, 8, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 23, 25, 27, 31, 35}));
    EXPECT_EQ(r.tokens, r.ref_tokens);
}

INSTANTIATE_TEST_SUITE_P(Modes, StreamParity, ::testing::Values(ParityMode::kFunctional, ParityMode::kClosedLoop));

TEST(StreamingConfig, MatchesNemoSetupStreamingParams) {
    auto model = Model::load(kDir + "/model/tiny-a.nemo");
    StreamingConfig sc = model->encoder().streaming_config(4, 2, 8);
    // manifest.json streaming.streaming_cfg
    EXPECT_EQ(sc.chunk_size[0], 25);
    EXPECT_EQ(sc.chunk_size[1], 32);
    EXPECT_EQ(sc.shift_size[0], 9);
    EXPECT_EQ(sc.shift_size[1], 16);
    EXPECT_EQ(sc.cache_drop_size, 2);
    EXPECT_EQ(sc.last_channel_cache_size, 32);
    EXPECT_EQ(sc.valid_out_len, 2);
    EXPECT_EQ(sc.pre_encode_cache_size[1], 9);
    EXPECT_EQ(sc.drop_extra_pre_encoded, 2);
    // Spec 7.2 (a): the degenerate default of a 24-layer regular-context model with kernel 9.
    ModelConfig v3 = builtin_architecture("parakeet-tdt-0.6b-v3");
    v3.encoder.n_layers = 24;
    (void)v3;
}

}  // namespace
}  // namespace parakeet
