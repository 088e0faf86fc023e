// Batched cache-aware streaming on the GPU (src/runtime/stream_batch.cc): NeMo's streamed tokens for tiny-a,
// and token-for-token equality with the CPU's per-stream path for many streams stepped together at different
// positions (first chunks and later chunks in one step, last partial chunks, slot reuse, page growth), on
// tiny-a and the variant checkpoints (RNNT, two LSTM layers, biases, causal chunked_limited). Skips without a GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>

#include "backends/cuda/context.h"
#include "backends/cuda/greedy_decode.h"
#include "io/audio.h"
#include "parakeet/parakeet.hpp"
#include "runtime/device.h"
#include "runtime/model.h"
#include "runtime/stream_batch.h"

namespace parakeet {
namespace {

const std::string kData = PARAKEET_TEST_DATA_DIR;

class StreamBatch : public ::testing::Test {
protected:
    void SetUp() override {
        if (cuda::device_count() == 0) GTEST_SKIP() << "no CUDA device";
    }
};

RecognizerConfig config(const std::string& model, const std::string& device, bool compat = false) {
    RecognizerConfig cfg;
    cfg.model_path = model;
    cfg.mode = "cache-aware";
    cfg.device = device;
    cfg.nemo_compat = compat;
    cfg.endpoint_silence_ms = 0;
    if (model.find("tiny-a") != std::string::npos) {
        cfg.chunk_size = 4;
        cfg.shift_size = 2;
        cfg.left_chunks = 8;
    }
    return cfg;
}

std::vector<float> clip(int i) { return load_audio(kData + "/tiny-a/inputs/clip" + std::to_string(i) + ".wav", 16000); }

std::vector<int> final_ids(Stream& s, std::vector<int>* frames = nullptr) {
    std::vector<int> ids;
    for (const Event& e : s.pop_events())
        if (e.type == Event::Type::kFinal)
            for (const TokenInfo& t : e.tokens) {
                ids.push_back(t.id);
                if (frames) frames->push_back(t.frame);
            }
    return ids;
}

// Streams fed `feed[i]` samples per round (different positions each round) and decoded together.
std::vector<std::vector<int>> run_together(Recognizer& rec, const std::vector<std::vector<float>>& audio,
                                           const std::vector<size_t>& feed, const std::vector<int>& start_round,
                                           std::vector<std::vector<int>>* frames = nullptr) {
    const size_t n = audio.size();
    std::vector<std::unique_ptr<Stream>> streams;
    std::vector<Stream*> ptrs;
    for (size_t i = 0; i < n; ++i) {
        streams.push_back(rec.create_stream());
        ptrs.push_back(streams.back().get());
    }
    std::vector<size_t> pos(n, 0);
    std::vector<std::vector<int>> ids(n), fr(n);
    for (int round = 0;; ++round) {
        bool any = false;
        for (size_t i = 0; i < n; ++i) {
            if (round < start_round[i] || pos[i] > audio[i].size()) continue;
            const size_t k = std::min(feed[i], audio[i].size() - pos[i]);
            if (k > 0) streams[i]->accept_waveform(16000, audio[i].data() + pos[i], k);
            pos[i] += k;
            if (pos[i] == audio[i].size()) {
                streams[i]->input_finished();
                pos[i] = audio[i].size() + 1;
            }
            any = true;
        }
        rec.decode(ptrs);
        for (size_t i = 0; i < n; ++i) {
            auto got = final_ids(*streams[i], &fr[i]);
            ids[i].insert(ids[i].end(), got.begin(), got.end());
        }
        if (!any) break;
    }
    if (frames) *frames = fr;
    return ids;
}

std::vector<int> run_alone(Recognizer& rec, const std::vector<float>& audio, std::vector<int>* frames = nullptr) {
    auto s = rec.create_stream();
    s->accept_waveform(16000, audio.data(), audio.size());
    s->input_finished();
    rec.decode(*s);
    return final_ids(*s, frames);
}

// The device decoder with carried state: a batch of four equals four single decodes, chunk after chunk.
TEST_F(StreamBatch, BatchedDecodeWithCarriedStateEqualsSingle) {
    auto model = Model::load(kData + "/tiny-a/model/tiny-a.nemo");
    auto ctx = cuda::create_context();
    cuda::GreedyDecoder dec(*ctx, model->config(), model->weights());
    const int64_t jh = model->joint().hidden(), T = 6;
    std::vector<DecoderState> batch_states(4), single_states(4);
    std::vector<std::vector<Token>> batch_tokens(4), single_tokens(4), cpu_tokens(4);
    std::vector<DecoderState> cpu_states(4);
    uint32_t seed = 7;
    for (int chunk = 0; chunk < 12; ++chunk) {
        Tensor f = Tensor::empty({4, T, jh});
        for (int64_t i = 0; i < f.numel(); ++i) {
            seed = seed * 1664525u + 1013904223u;
            f.data<float>()[i] = static_cast<float>(seed >> 8) / 16777216.f * 4.f - 2.f;
        }
        Tensor fd = f.to(Device{DeviceType::kCUDA, 0});
        std::vector<int> lengths{6, 4, 6, 2};
        dec.decode(*ctx, fd.data<float>(), T, lengths.data(), 4, batch_states, batch_tokens);
        for (int b = 0; b < 4; ++b) {
            std::vector<DecoderState> one{single_states[b]};
            std::vector<std::vector<Token>> toks(1);
            dec.decode(*ctx, fd.data<float>() + b * T * jh, T, &lengths[b], 1, one, toks);
            single_states[b] = one[0];
            single_tokens[b].insert(single_tokens[b].end(), toks[0].begin(), toks[0].end());
        }
        for (int b = 0; b < 4; ++b)
            greedy_decode(model->predictor(), model->joint(), dec.options(), f.data<float>() + b * T * jh, lengths[b],
                          cpu_states[b], cpu_tokens[b]);
        for (int b = 0; b < 4; ++b) {
            std::vector<int> a, c, r;
            for (const Token& t : batch_tokens[b]) a.push_back(t.id);
            for (const Token& t : single_tokens[b]) c.push_back(t.id);
            for (const Token& t : cpu_tokens[b]) r.push_back(t.id);
            EXPECT_EQ(c, r) << "single vs cpu, item " << b << " chunk " << chunk << " max_symbols "
                            << dec.options().max_symbols;
            EXPECT_EQ(batch_states[b].time_jump, single_states[b].time_jump) << "item " << b << " chunk " << chunk;
            double dh = 0;
            for (size_t i = 0; i < batch_states[b].lstm.h.size(); ++i)
                dh = std::max(dh, static_cast<double>(std::fabs(batch_states[b].lstm.h[i] - single_states[b].lstm.h[i])));
            for (size_t i = 0; i < batch_states[b].pred_proj.size(); ++i)
                dh = std::max(dh, static_cast<double>(std::fabs(batch_states[b].pred_proj[i] - single_states[b].pred_proj[i])));
            EXPECT_EQ(dh, 0.0) << "state, item " << b << " chunk " << chunk;
            if (a != r) {
                for (const Token& t : batch_tokens[b]) std::printf("(%d f%d d%d) ", t.id, t.frame, t.duration);
                std::printf("\n");
                for (const Token& t : cpu_tokens[b]) std::printf("(%d f%d d%d) ", t.id, t.frame, t.duration);
                std::printf("\n");
            }
            ASSERT_EQ(a, r) << "batch vs cpu, item " << b << " chunk " << chunk;
        }
    }
}

// 16-bit decoders run the joint of 32 or more active items, and the LSTM and prediction projection of 32 or more
// emitting items (the SOS step of the 64 here, at least), on tensor cores with their inputs rounded to 16 bits:
// 64 items decoded as one batch stay close to each item decoded alone (CUDA cores, float32 inputs) with the same
// 16-bit weights. Agreement: 1 - edit distance / tokens, over all items.
TEST_F(StreamBatch, HalfPrecisionLargeBatchDecodeTracksSingleItems) {
    auto model = Model::load(kData + "/tiny-a/model/tiny-a.nemo");
    auto ctx = cuda::create_context();
    const int64_t jh = model->joint().hidden(), T = 24;
    const int B = 64;
    Tensor f = Tensor::empty({B, T, jh});
    uint32_t seed = 11;
    for (int64_t i = 0; i < f.numel(); ++i) {
        seed = seed * 1664525u + 1013904223u;
        f.data<float>()[i] = static_cast<float>(seed >> 8) / 16777216.f * 4.f - 2.f;
    }
    Tensor fd = f.to(Device{DeviceType::kCUDA, 0});
    std::vector<int> lengths(B);
    for (int b = 0; b < B; ++b) lengths[b] = static_cast<int>(T) - b % 7;
    auto edit_distance = [](const std::vector<int>& a, const std::vector<int>& b) {
        std::vector<size_t> row(b.size() + 1);
        for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
        for (size_t i = 1; i <= a.size(); ++i) {
            size_t diag = row[0];
            row[0] = i;
            for (size_t j = 1; j <= b.size(); ++j) {
                const size_t up = row[j];
                row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
                diag = up;
            }
        }
        return row[b.size()];
    };
    for (Precision prec : {Precision::kF16, Precision::kBF16}) {
        cuda::GreedyDecoder dec(*ctx, model->config(), model->weights(), prec);
        std::vector<DecoderState> states(B);
        std::vector<std::vector<Token>> batch_tokens(B);
        dec.decode(*ctx, fd.data<float>(), T, lengths.data(), B, states, batch_tokens);
        size_t tokens = 0, distance = 0;
        int identical = 0;
        // The carried state (h, c, projection) of the items whose tokens agree: the batch steps its predictor on
        // tensor cores (inputs rounded to 16 bits) while a single item keeps float32 inputs, so they differ by
        // rounding only; a wrong gate, unit or item mapping would differ by O(1).
        double state_diff = 0.0, state_max = 0.0;
        for (int b = 0; b < B; ++b) {
            std::vector<DecoderState> one(1);
            std::vector<std::vector<Token>> toks(1);
            dec.decode(*ctx, fd.data<float>() + b * T * jh, T, &lengths[b], 1, one, toks);
            std::vector<int> got, want;
            for (const Token& t : batch_tokens[b]) got.push_back(t.id);
            for (const Token& t : toks[0]) want.push_back(t.id);
            tokens += want.size();
            distance += edit_distance(want, got);
            identical += got == want ? 1 : 0;
            if (got != want) continue;
            auto compare = [&](const std::vector<float>& x, const std::vector<float>& y) {
                ASSERT_EQ(x.size(), y.size());
                for (size_t i = 0; i < x.size(); ++i) {
                    state_diff = std::max(state_diff, static_cast<double>(std::fabs(x[i] - y[i])));
                    state_max = std::max(state_max, static_cast<double>(std::fabs(y[i])));
                }
            };
            compare(states[b].lstm.h, one[0].lstm.h);
            compare(states[b].lstm.c, one[0].lstm.c);
            compare(states[b].pred_proj, one[0].pred_proj);
        }
        const double agreement = 1.0 - static_cast<double>(distance) / static_cast<double>(tokens);
        const double relative = state_diff / std::max(state_max, 1e-30);
        std::printf("[ measured ] %s decode, 64 items as one batch vs alone: %zu tokens, agreement %.4f, %d/64 items "
                    "identical; their states differ by %.3g (max |state| %.3g)\n",
                    precision_name(prec), tokens, agreement, identical, state_diff, state_max);
        EXPECT_GT(tokens, 200u);
        EXPECT_GE(agreement, 0.9) << precision_name(prec);
        EXPECT_GT(identical, 0) << precision_name(prec);
        EXPECT_LT(relative, 0.1) << precision_name(prec);
    }
}

// Per chunk, the batched step's encoder output against FastConformerEncoder::stream_step on the same device,
// first chunk to the last partial one, four clips of different lengths stepped as one batch, for tiny-a and
// the causal chunked_limited variant.
// small_rows 8 (the most; the default is 2): batches of up to 8 rows take the fused small-row kernels; 0: cuBLAS
// throughout.
class StreamBatchRows : public StreamBatch, public ::testing::WithParamInterface<int> {};

TEST_P(StreamBatchRows, EncoderOutputMatchesPerStreamStepEveryChunk) {
    for (const std::string& path : {kData + "/tiny-a/model/tiny-a.nemo", kData + "/variants/v-causal/model.nemo"}) {
        auto model = Model::load(path);
        const bool tiny = path.find("tiny-a") != std::string::npos;
        const StreamingConfig sc = tiny ? model->encoder().streaming_config(4, 2, 8) : model->encoder().streaming_config();
        DeviceRunner runner(model, Device{DeviceType::kCUDA, 0}, Precision::kF32, 1);
        StreamBatchEngine engine(model, sc, 0, 0, Precision::kF32);
        engine.set_small_step_rows(GetParam());
        struct Item {
            Tensor f;
            EncoderCache cache;
            DecoderState dstate, dstate2;
            std::vector<int> ref_ids, got_ids, redecoded_ids;
            int slot = 0, frames = 0;
            int64_t p = 0;
            bool done = false;
        };
        std::vector<Item> items(4);
        for (int c = 0; c < 4; ++c) {
            auto audio = clip(c);
            items[c].f = model->frontend().compute(audio.data(), static_cast<int64_t>(audio.size()));
            items[c].cache = model->encoder().initial_cache(sc, 1, Device{DeviceType::kCUDA, 0});
            items[c].slot = engine.acquire();
        }
        for (int k = 0;; ++k) {
            std::vector<StreamBatchEngine::Step> steps;
            std::vector<Tensor> chunks, want;
            std::vector<int> who;
            for (int c = 0; c < 4; ++c) {
                Item& it = items[c];
                if (it.done) continue;
                const int64_t n_feats = it.f.dim(0);
                const int pre = k == 0 ? 0 : sc.pre_encode_cache_size[1];
                const int64_t width = k == 0 ? sc.chunk_size[0] : sc.chunk_size[1];
                const int64_t real = std::min(it.p + width, n_feats) - it.p;
                if (it.p >= n_feats || real < (k == 0 ? 1 : model->config().encoder.subsampling_factor)) {
                    it.done = true;
                    continue;
                }
                const int64_t p_next = it.p + (k == 0 ? sc.shift_size[0] : sc.shift_size[1]);
                const bool last = p_next >= n_feats;
                Tensor chunk = it.f.slice0(it.p - pre, it.p + real).clone();
                const int rows = static_cast<int>(chunk.dim(0));
                auto ref = model->encoder().stream_step(runner.ctx(), sc, {chunk}, {rows}, it.cache,
                                                        k == 0 ? 0 : sc.drop_extra_pre_encoded, last);
                const int n = ref.encoded_len[0];
                want.push_back(ref.encoded.to(Device{}).reshape({ref.encoded.dim(1), ref.encoded.dim(2)}).slice0(0, n));
                {
                    // Reference tokens: the joint projection and the per-stream device decode.
                    const int64_t jh = model->joint().hidden();
                    Tensor fp = Tensor::empty({1, std::max(n, 0), jh}, DType::kF32, Device{DeviceType::kCUDA, 0});
                    if (n > 0) {
                        Tensor f2 = fp.reshape({n, jh});
                        model->joint().project_encoder(
                            runner.ctx(), ref.encoded.reshape({ref.encoded.dim(1), ref.encoded.dim(2)}).slice0(0, n), f2);
                    }
                    std::vector<DecoderState> states{it.dstate};
                    std::vector<std::vector<Token>> toks;
                    runner.decode(fp, {n}, states, toks);
                    it.dstate = states[0];
                    for (const Token& t : toks[0]) it.ref_ids.push_back(t.id);
                }
                chunks.push_back(chunk);
                steps.push_back({it.slot, k == 0, chunks.back().data<float>(), rows, last, it.frames, true});
                who.push_back(c);
                it.frames += n;
                it.p = p_next;
                if (last) it.done = true;
            }
            if (steps.empty()) break;
            std::vector<StreamBatchEngine::Output> out;
            engine.step(steps, out);
            for (size_t i = 0; i < who.size(); ++i) {
                ASSERT_EQ(out[i].frames, want[i].dim(0)) << path << " clip" << who[i] << " chunk " << k;
                double diff = 0;
                for (int64_t j = 0; j < want[i].numel(); ++j)
                    diff = std::max(diff, static_cast<double>(std::fabs(want[i].data<float>()[j] -
                                                                        out[i].encoded.data<float>()[j])));
                EXPECT_LT(diff, 1e-4) << path << " clip" << who[i] << " chunk " << k << " of a batch of " << who.size();
                Item& it = items[who[i]];
                for (const Token& t : out[i].tokens) it.got_ids.push_back(t.id);
                {
                    // The per-stream decoder on the batched step's own encoder output: the batched decode must
                    // give exactly these tokens.
                    const int64_t jh = model->joint().hidden(), n = out[i].frames;
                    Tensor enc = out[i].encoded.to(Device{DeviceType::kCUDA, 0});
                    Tensor fp = Tensor::empty({1, n, jh}, DType::kF32, Device{DeviceType::kCUDA, 0});
                    if (n > 0) {
                        Tensor f2 = fp.reshape({n, jh});
                        model->joint().project_encoder(runner.ctx(), enc, f2);
                    }
                    std::vector<DecoderState> states{it.dstate2};
                    std::vector<std::vector<Token>> toks;
                    runner.decode(fp, {static_cast<int>(n)}, states, toks);
                    it.dstate2 = states[0];
                    for (const Token& t : toks[0]) it.redecoded_ids.push_back(t.id);
                }
                EXPECT_EQ(it.got_ids, it.redecoded_ids) << path << " clip" << who[i] << " chunk " << k << " (decode)";
                if (it.got_ids != it.ref_ids)
                    std::printf("tokens differ from the per-stream path: %s clip%d chunk %d, encoder max diff %.3g\n",
                                path.c_str(), who[i], k, diff);
            }
        }
        for (const Item& it : items) engine.release(it.slot);
    }
}

// fp16/bf16 (16-bit activations written by the kernels that feed each GEMM): the encoder output of every chunk
// stays close to the per-stream path at the same precision, which converts activations before each GEMM.
TEST_P(StreamBatchRows, HalfPrecisionEncoderOutputTracksPerStreamStep) {
    auto model = Model::load(kData + "/tiny-a/model/tiny-a.nemo");
    const StreamingConfig sc = model->encoder().streaming_config(4, 2, 8);
    for (const auto& [prec, tol] : {std::pair{Precision::kF16, 2e-2}, std::pair{Precision::kBF16, 1e-1}}) {
        DeviceRunner runner(model, Device{DeviceType::kCUDA, 0}, prec, 1);
        StreamBatchEngine engine(model, sc, 0, 0, prec);
        engine.set_small_step_rows(GetParam());
        auto audio = clip(1);
        Tensor f = model->frontend().compute(audio.data(), static_cast<int64_t>(audio.size()));
        EncoderCache cache = model->encoder().initial_cache(sc, 1, Device{DeviceType::kCUDA, 0});
        const int slot = engine.acquire();
        double worst = 0;
        int64_t p = 0;
        for (int k = 0; p + sc.chunk_size[1] <= f.dim(0); ++k) {
            const int pre = k == 0 ? 0 : sc.pre_encode_cache_size[1];
            const int64_t rows = (k == 0 ? sc.chunk_size[0] : sc.chunk_size[1]) + pre;
            Tensor chunk = f.slice0(p - pre, p - pre + rows).clone();
            auto ref = model->encoder().stream_step(runner.ctx(), sc, {chunk}, {static_cast<int>(rows)}, cache,
                                                    k == 0 ? 0 : sc.drop_extra_pre_encoded, false);
            std::vector<StreamBatchEngine::Output> out;
            engine.step({{slot, k == 0, chunk.data<float>(), static_cast<int>(rows), false, 0, true}}, out);
            const int n = ref.encoded_len[0];
            ASSERT_EQ(out[0].frames, n);
            Tensor want = ref.encoded.to(Device{}).reshape({ref.encoded.dim(1), ref.encoded.dim(2)}).slice0(0, n);
            for (int64_t i = 0; i < want.numel(); ++i)
                worst = std::max(worst, static_cast<double>(std::fabs(want.data<float>()[i] - out[0].encoded.data<float>()[i])));
            p += k == 0 ? sc.shift_size[0] : sc.shift_size[1];
        }
        std::printf("[ measured ] %s batched vs per-stream encoder, clip1: max |diff| %.3g\n", precision_name(prec), worst);
        EXPECT_LT(worst, tol) << precision_name(prec);
        EXPECT_GT(worst, 0.0) << precision_name(prec) << ": the 16-bit path did not run";
        engine.release(slot);
    }
}

// Many streams: the attention kernel by rows (16-byte row loads, several rows per warp) against the per-channel
// kernel, float32 and 16-bit caches. 40 streams at different positions of four clips step together in two engines
// fed the same chunks; every step's encoder output agrees to rounding (the two sum in different orders), and so do
// the caches the next steps read.
TEST_F(StreamBatch, AttentionByRowsMatchesByChannel) {
    auto model = Model::load(kData + "/tiny-a/model/tiny-a.nemo");
    const StreamingConfig sc = model->encoder().streaming_config(4, 2, 8);
    std::vector<Tensor> feats;
    for (int c = 0; c < 4; ++c) {
        auto audio = clip(c);
        feats.push_back(model->frontend().compute(audio.data(), static_cast<int64_t>(audio.size())));
    }
    for (const auto& [prec, tol] : {std::pair{Precision::kF32, 1e-4}, std::pair{Precision::kBF16, 2e-2}}) {
        StreamBatchEngine rows(model, sc, 0, 0, prec), channel(model, sc, 0, 0, prec);
        channel.set_attention_by_channel(true);
        constexpr int kStreams = 40;  // x 4 heads: more blocks than the H100's SMs, so the narrow kernels run
        std::vector<int> slot_r, slot_c;
        std::vector<int64_t> pos(kStreams);
        for (int i = 0; i < kStreams; ++i) {
            slot_r.push_back(rows.acquire());
            slot_c.push_back(channel.acquire());
        }
        double worst = 0;
        int steps = 0;
        for (int k = 0; k < 12; ++k) {
            std::vector<Tensor> chunks;
            std::vector<StreamBatchEngine::Step> st_r, st_c;
            for (int i = 0; i < kStreams; ++i) {
                const Tensor& f = feats[i % 4];
                // Stream i starts i % 3 steps late, so first and later chunks mix within a step.
                const int kk = k - i % 3;
                if (kk < 0) continue;
                const int pre = kk == 0 ? 0 : sc.pre_encode_cache_size[1];
                const int64_t n_rows = (kk == 0 ? sc.chunk_size[0] : sc.chunk_size[1]) + pre;
                if (pos[i] + n_rows - pre > f.dim(0)) continue;
                chunks.push_back(f.slice0(pos[i] - pre, pos[i] - pre + n_rows).clone());
                const StreamBatchEngine::Step step{0, kk == 0, chunks.back().data<float>(), static_cast<int>(n_rows),
                                                   false, 0, true};
                st_r.push_back(step);
                st_r.back().slot = slot_r[i];
                st_c.push_back(step);
                st_c.back().slot = slot_c[i];
                pos[i] += kk == 0 ? sc.shift_size[0] : sc.shift_size[1];
            }
            if (st_r.empty()) break;
            std::vector<StreamBatchEngine::Output> out_r, out_c;
            rows.step(st_r, out_r);
            channel.step(st_c, out_c);
            ASSERT_EQ(out_r.size(), out_c.size());
            for (size_t i = 0; i < out_r.size(); ++i) {
                ASSERT_EQ(out_r[i].frames, out_c[i].frames);
                const Tensor& a = out_r[i].encoded;
                const Tensor& b = out_c[i].encoded;
                ASSERT_EQ(a.numel(), b.numel());
                for (int64_t e = 0; e < a.numel(); ++e) {
                    ASSERT_TRUE(std::isfinite(a.data<float>()[e]) && std::isfinite(b.data<float>()[e]))
                        << precision_name(prec) << " step " << k << " stream output " << i << " element " << e;
                    worst = std::max(worst, static_cast<double>(std::fabs(a.data<float>()[e] - b.data<float>()[e])));
                }
            }
            ++steps;
        }
        std::printf("[ measured ] %s attention by rows vs by channel, %d streams, %d steps: max |diff| %.3g\n",
                    precision_name(prec), kStreams, steps, worst);
        EXPECT_GE(steps, 8);
        EXPECT_LT(worst, tol) << precision_name(prec);
        // Both kernels write the attention output rounded to 16 bits at bf16, so equal outputs can happen there; at
        // fp32 a difference shows that the two engines ran different kernels.
        if (prec == Precision::kF32) {
            EXPECT_GT(worst, 0.0) << "both engines ran the same kernel";
        }
    }
}

INSTANTIATE_TEST_SUITE_P(SmallRows, StreamBatchRows, ::testing::Values(8, 0),
                         [](const auto& param_info) { return param_info.param ? "small_rows_kernels" : "cublas"; });

// The subsampling alone (no conformer layers) on full and partial chunks: rows [drop, ...) of
// FastConformerEncoder::subsample.
TEST_F(StreamBatch, SubsamplingMatchesOnPartialChunks) {
    auto model = Model::load(kData + "/tiny-a/model/tiny-a.nemo");
    const StreamingConfig sc = model->encoder().streaming_config(4, 2, 8);
    DeviceRunner runner(model, Device{DeviceType::kCUDA, 0}, Precision::kF32, 1);
    StreamBatchEngine engine(model, sc, 0, 0, Precision::kF32);
    engine.set_debug_layers(0);
    auto audio = clip(0);
    Tensor f = model->frontend().compute(audio.data(), static_cast<int64_t>(audio.size()));
    const int slot = engine.acquire();
    for (int rows = 17; rows <= 41; ++rows) {
        Tensor chunk = f.slice0(100, 100 + rows).clone();
        std::vector<StreamBatchEngine::Output> out;
        engine.step({{slot, false, chunk.data<float>(), rows, true, 0, true}}, out);
        Tensor sub = model->encoder().subsample(runner.ctx(), chunk).to(Device{});
        const int64_t n = out[0].frames, d = sub.dim(1);
        ASSERT_LE(n + sc.drop_extra_pre_encoded, sub.dim(0));
        double diff = 0;
        for (int64_t i = 0; i < n * d; ++i)
            diff = std::max(diff, static_cast<double>(std::fabs(sub.data<float>()[sc.drop_extra_pre_encoded * d + i] -
                                                                out[0].encoded.data<float>()[i])));
        EXPECT_LT(diff, 1e-5) << "rows " << rows << " frames " << n;
    }
}

// A partial chunk after six full ones, for many partial lengths, with all layers.
TEST_F(StreamBatch, PartialChunkSweep) {
    auto model = Model::load(kData + "/tiny-a/model/tiny-a.nemo");
    const StreamingConfig sc = model->encoder().streaming_config(4, 2, 8);
    DeviceRunner runner(model, Device{DeviceType::kCUDA, 0}, Precision::kF32, 1);
    StreamBatchEngine engine(model, sc, 0, 0, Precision::kF32);
    engine.set_small_step_rows(8);  // the fused small-row kernels on every chunk length
    auto audio = clip(0);
    Tensor f = model->frontend().compute(audio.data(), static_cast<int64_t>(audio.size()));
    for (int last_rows : {17, 20, 23, 24, 25, 28, 31, 33, 36, 40, 41}) {
        {
            EncoderCache cache = model->encoder().initial_cache(sc, 1, Device{DeviceType::kCUDA, 0});
            const int slot = engine.acquire();
            int64_t p = 0;
            for (int k = 0; k <= 6; ++k) {
                const int pre = k == 0 ? 0 : sc.pre_encode_cache_size[1];
                const int64_t rows = k == 0 ? sc.chunk_size[0] : (k == 6 ? last_rows : pre + sc.chunk_size[1]);
                Tensor chunk = f.slice0(p - pre, p - pre + rows).clone();
                auto ref = model->encoder().stream_step(runner.ctx(), sc, {chunk}, {static_cast<int>(rows)}, cache,
                                                        k == 0 ? 0 : sc.drop_extra_pre_encoded, k == 6);
                std::vector<StreamBatchEngine::Output> out;
                engine.step({{slot, k == 0, chunk.data<float>(), static_cast<int>(rows), k == 6, 0, true}}, out);
                {
                    const int n = ref.encoded_len[0];
                    ASSERT_EQ(out[0].frames, n);
                    Tensor want = ref.encoded.to(Device{}).reshape({ref.encoded.dim(1), ref.encoded.dim(2)}).slice0(0, n);
                    double diff = 0;
                    for (int64_t i = 0; i < want.numel(); ++i)
                        diff = std::max(diff, static_cast<double>(std::fabs(want.data<float>()[i] -
                                                                            out[0].encoded.data<float>()[i])));
                    EXPECT_LT(diff, 1e-4) << "chunk " << k << " rows " << rows << " frames " << n;
                }
                p += k == 0 ? sc.shift_size[0] : sc.shift_size[1];
            }
            engine.release(slot);
        }
    }
}

TEST_F(StreamBatch, NemoCompatGivesNemosStreamedTokens) {
    auto rec = Recognizer::create(config(kData + "/tiny-a/model/tiny-a.nemo", "cuda", true));
    EXPECT_EQ(run_alone(*rec, clip(0)),
              (std::vector<int>{83, 88, 53, 22, 22, 22, 22, 22, 22, 22, 62, 118, 118, 113, 113, 113, 66, 113}));
}

TEST_F(StreamBatch, ManyStreamsAtDifferentPositionsMatchCpu) {
    const std::string path = kData + "/tiny-a/model/tiny-a.nemo";
    auto cpu = Recognizer::create(config(path, "cpu"));
    auto gpu = Recognizer::create(config(path, "cuda"));
    // 40 streams (three pages of slots), four clips, feeds of 0.01-0.5 s, staggered starts: steps mix first
    // chunks, later chunks and last partial chunks.
    std::vector<std::vector<float>> audio;
    std::vector<size_t> feed;
    std::vector<int> start;
    for (int i = 0; i < 40; ++i) {
        audio.push_back(clip(i % 4));
        feed.push_back(std::vector<size_t>{160, 1280, 4000, 8000, 2560}[i % 5]);
        start.push_back(i % 7);
    }
    std::map<int, std::pair<std::vector<int>, std::vector<int>>> ref;
    for (int c = 0; c < 4; ++c) {
        std::vector<int> frames;
        auto ids = run_alone(*cpu, audio[c], &frames);
        ASSERT_FALSE(ids.empty());
        ref[c] = {ids, frames};
    }
    std::vector<std::vector<int>> frames;
    auto got = run_together(*gpu, audio, feed, start, &frames);
    for (int i = 0; i < 40; ++i) {
        EXPECT_EQ(got[i], ref[i % 4].first) << "stream " << i;
        EXPECT_EQ(frames[i], ref[i % 4].second) << "stream " << i;
    }
    // Slots are reused: a second round with fresh streams gives the same tokens.
    auto again = run_together(*gpu, audio, feed, start);
    for (int i = 0; i < 40; ++i) EXPECT_EQ(again[i], ref[i % 4].first) << "stream " << i << " (second round)";
}

TEST_F(StreamBatch, ResetStartsANewUtterance) {
    const std::string path = kData + "/tiny-a/model/tiny-a.nemo";
    auto cpu = Recognizer::create(config(path, "cpu"));
    auto gpu = Recognizer::create(config(path, "cuda"));
    const auto ref = run_alone(*cpu, clip(2));
    auto s = gpu->create_stream();
    auto a = clip(1);
    s->accept_waveform(16000, a.data(), a.size() / 2);
    gpu->decode(*s);
    s->reset();
    auto b = clip(2);
    s->accept_waveform(16000, b.data(), b.size());
    s->input_finished();
    gpu->decode(*s);
    EXPECT_EQ(final_ids(*s), ref);
}

TEST_F(StreamBatch, VariantsMatchCpu) {
    for (const char* name : {"v-rnnt", "v-lstm2", "v-bias", "v-causal", "v-sub"}) {
        const std::string v = name;
        const std::string path = kData + "/variants/" + v + "/model.nemo";
        RecognizerConfig cc = config(path, "cpu"), gc = config(path, "cuda");
        if (v != "v-causal") {
            // Offline-trained variants: NeMo's setup for such models, as for tiny-a.
            cc.chunk_size = gc.chunk_size = 4;
            cc.shift_size = gc.shift_size = 2;
            cc.left_chunks = gc.left_chunks = 8;
        }
        auto model = Model::load(path);
        const StreamingConfig sc =
            model->encoder().streaming_config(gc.chunk_size, gc.shift_size, gc.left_chunks, gc.att_context);
        ASSERT_EQ(StreamBatchEngine::unsupported_reason(*model, sc, 0), "") << v;
        auto cpu = Recognizer::create(cc);
        auto gpu = Recognizer::create(gc);
        std::vector<std::vector<float>> audio;
        for (int c = 0; c < 4; ++c) audio.push_back(clip(c));
        auto got = run_together(*gpu, audio, {640, 1600, 3200, 16000}, {0, 1, 2, 3});
        for (int c = 0; c < 4; ++c) {
            const auto ref = run_alone(*cpu, audio[c]);
            if (v != "v-rnnt") {
                EXPECT_FALSE(ref.empty()) << v;  // the random RNNT variant emits nothing
            }
            EXPECT_EQ(got[c], ref) << v << " clip" << c;
        }
    }
}

// Windowed streaming of many streams on the GPU: the windows of all ready streams are encoded as one batch and
// their chunks decoded as one batch; each stream's tokens equal decoding it alone on the GPU and on the CPU.
TEST_F(StreamBatch, WindowedManyStreamsEqualOneByOne) {
    const std::string path = kData + "/tiny-a/model/tiny-a.nemo";
    RecognizerConfig cfg;
    cfg.model_path = path;
    cfg.left_secs = 1;
    cfg.chunk_secs = 0.48;
    cfg.right_secs = 0.32;
    cfg.endpoint_silence_ms = 0;
    cfg.device = "cuda";
    auto gpu = Recognizer::create(cfg);
    cfg.device = "cpu";
    auto cpu = Recognizer::create(cfg);
    std::vector<std::vector<float>> audio;
    for (int i = 0; i < 12; ++i) audio.push_back(clip(i % 4));
    auto got = run_together(*gpu, audio, {800, 3200, 12000, 480, 1600, 16000, 640, 2400, 800, 3200, 12000, 480},
                            {0, 1, 2, 3, 0, 1, 2, 3, 4, 5, 6, 7});
    for (int i = 0; i < 12; ++i) {
        EXPECT_EQ(got[i], run_alone(*gpu, audio[i])) << "stream " << i << " vs GPU alone";
        EXPECT_EQ(got[i], run_alone(*cpu, audio[i])) << "stream " << i << " vs CPU alone";
    }
}

TEST_F(StreamBatch, PerStreamPathIsStillAvailable) {
    const std::string path = kData + "/tiny-a/model/tiny-a.nemo";
    RecognizerConfig cfg = config(path, "cuda");
    cfg.batch_streams = false;
    auto unbatched = Recognizer::create(cfg);
    auto batched = Recognizer::create(config(path, "cuda"));
    for (int c = 0; c < 4; ++c) EXPECT_EQ(run_alone(*batched, clip(c)), run_alone(*unbatched, clip(c))) << c;
}

}  // namespace
}  // namespace parakeet
