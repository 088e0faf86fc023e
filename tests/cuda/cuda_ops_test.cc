// CUDA backend vs the CPU reference: one test body per op, run on both devices with seeded random inputs;
// tolerances per precision. Whole-model checks on tiny-a: encoder output and GPU greedy decoding.
// Every test skips when no CUDA device is present.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "backends/cuda/context.h"
#include "backends/cuda/context_impl.h"
#include "backends/cuda/stream_kernels.h"
#include "backends/cuda/cuda_ops.h"
#include "backends/cuda/greedy_decode.h"
#include "frontend/mel.h"
#include "io/audio.h"
#include "ops/ops.h"
#include "runtime/transcriber.h"

namespace parakeet {
namespace {

// PARAKEET_TEST_DATA_DIR in the environment overrides the build tree's path (a bundle run on another machine).
std::string data_dir() {
    const char* env = std::getenv("PARAKEET_TEST_DATA_DIR");
    return env && *env ? env : PARAKEET_TEST_DATA_DIR;
}
const std::string kTinyA = data_dir() + "/tiny-a";
const Device kGpu{DeviceType::kCUDA, 0};


// Max |ref - got| relative to max(1, max |ref|).
double tolerance(Precision p) {
    switch (p) {
        case Precision::kF32: return 1e-5;
        case Precision::kTF32: return 3e-3;
        case Precision::kF16: return 1e-2;
        case Precision::kBF16: return 2e-2;
    }
    return 0;
}

Tensor random_tensor(const Shape& shape, std::mt19937& rng, float lo = -1.f, float hi = 1.f) {
    Tensor t = Tensor::empty(shape);
    std::uniform_real_distribution<float> dist(lo, hi);
    for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = dist(rng);
    return t;
}

double relative_error(const Tensor& ref, const Tensor& got) {
    EXPECT_EQ(shape_str(ref.shape()), shape_str(got.shape()));
    if (ref.numel() != got.numel()) return INFINITY;
    Tensor g = got.to(Device{});
    double diff = 0, scale = 1;
    for (int64_t i = 0; i < ref.numel(); ++i) {
        const double a = ref.data<float>()[i], b = g.data<float>()[i];
        if (!std::isfinite(b)) return INFINITY;
        diff = std::max(diff, std::fabs(a - b));
        scale = std::max(scale, std::fabs(a));
    }
    return diff / scale;
}

class CudaTest : public ::testing::Test {
protected:
    void SetUp() override {
        if (cuda::device_count() == 0) GTEST_SKIP() << "no CUDA device";
        context();  // registers device memory before any tensor is put on the GPU
        seed_ = static_cast<uint32_t>(std::random_device{}());
        rng_.seed(seed_);
    }
    static cuda::CudaContext& context() {
        static std::shared_ptr<cuda::CudaContext> ctx = cuda::create_context();
        return *ctx;
    }
    ExecContext gpu(Precision p = Precision::kF32) { return cuda::exec_context(context(), p); }
    static ExecContext cpu() {
        ExecContext ctx;
        ctx.n_threads = 2;
        return ctx;
    }
    Tensor rand(const Shape& s, float lo = -1.f, float hi = 1.f) { return random_tensor(s, rng_, lo, hi); }
    void expect_close(const Tensor& ref, const Tensor& got, double tol, const std::string& what) {
        const double err = relative_error(ref, got);
        EXPECT_LE(err, tol) << what << " (seed " << seed_ << ")";
    }

    uint32_t seed_ = 0;
    std::mt19937 rng_;
};

class CudaPrecisionTest : public CudaTest, public ::testing::WithParamInterface<Precision> {};

TEST_P(CudaPrecisionTest, Linear) {
    const Precision prec = GetParam();
    for (bool with_bias : {false, true}) {
        for (float beta : {0.f, 0.5f}) {
            const int64_t m = 37, n = 70, k = 96;
            Tensor x = rand({1, m, k}), w = rand({n, k}), b = rand({n}), y0 = rand({1, m, n});
            Tensor y_cpu = y0.clone(), y_gpu = y0.to(kGpu);
            ops::linear(cpu(), x, w, with_bias ? &b : nullptr, y_cpu, beta);
            ops::linear(gpu(prec), x.to(kGpu), w, with_bias ? &b : nullptr, y_gpu, beta);
            expect_close(y_cpu, y_gpu, tolerance(prec),
                         fmt::format("linear {} bias={} beta={}", precision_name(prec), with_bias, beta));
        }
    }
}

// Three linears of one input as one strided-batched GEMM over weights joined on the device, against three CPU
// linears; float32 input (converted once for 16-bit weights) and the precision's GEMM input dtype.
TEST_P(CudaPrecisionTest, Linear3) {
    const Precision prec = GetParam();
    const int64_t m = 37, n = 64, k = 96;
    Tensor x = rand({1, m, k}), w0 = rand({n, k}), w1 = rand({n, k}), w2 = rand({n, k}), b1 = rand({n});
    const Tensor* const ws[3] = {&w0, &w1, &w2};
    const Tensor* const bs[3] = {nullptr, &b1, nullptr};
    Tensor y_cpu = Tensor::empty({3, m, n});
    ops::linear3(cpu(), x, ws, bs, y_cpu);
    for (int i = 0; i < 3; ++i) {
        Tensor yi = Tensor::empty({m, n});
        ops::linear(cpu(), x, *ws[i], bs[i], yi);
        expect_close(yi, y_cpu.slice0(i, i + 1).reshape({m, n}), 0, "linear3 cpu");
    }
    const ExecContext g = gpu(prec);
    const Tensor xg = x.to(kGpu);
    for (const bool x16 : {false, true}) {
        if (x16 && ops::gemm_input_dtype(g) == DType::kF32) continue;
        const Tensor xin = x16 ? ops::to_gemm_input(g, xg) : xg;
        Tensor y_gpu = Tensor::empty({3, m, n}, DType::kF32, kGpu);
        ops::linear3(g, xin, ws, bs, y_gpu);
        expect_close(y_cpu, y_gpu, tolerance(prec), fmt::format("linear3 {} x16={}", precision_name(prec), x16));
    }
}

TEST_P(CudaPrecisionTest, Matmul) {
    const Precision prec = GetParam();
    Tensor a = rand({24, 40}), b = rand({40, 33});
    Tensor y_cpu = Tensor::empty({24, 33}), y_gpu = Tensor::empty({24, 33}, DType::kF32, kGpu);
    ops::matmul(cpu(), a, b, y_cpu, 0.75f);
    ops::matmul(gpu(prec), a, b.to(kGpu), y_gpu, 0.75f);
    expect_close(y_cpu, y_gpu, tolerance(prec), fmt::format("matmul {}", precision_name(prec)));
}

struct AttentionCase {
    int64_t batch, n_query, n_cache, n_heads, d_head;
    int att_left, att_right;
    bool lengths, local_table;
    int att_chunk = 0, att_left_chunks = 0;  // chunked_limited style when att_chunk > 0
};

TEST_P(CudaPrecisionTest, RelPosAttention) {
    const Precision prec = GetParam();
    const AttentionCase cases[] = {
        {2, 19, 0, 4, 8, -1, -1, true, false},    // full context, ragged batch
        {1, 33, 0, 2, 64, 5, 3, false, false},    // limited context
        {2, 16, 6, 2, 16, 8, 0, true, false},     // cached keys, causal-right
        {1, 40, 0, 2, 128, 7, 7, true, true},     // local attention with a window-sized table
        {2, 300, 0, 8, 16, -1, -1, true, false},  // several query blocks on the CPU side
        {2, 37, 0, 2, 16, -1, -1, true, false, 4, 2},  // chunked_limited [8, 3] offline
        {1, 6, 16, 2, 16, -1, -1, true, false, 2, 8},  // chunked_limited with a cache
        // d_head 64/128 at fp16/bf16 run the fused kernel: several query blocks and key chunks, cached keys with a
        // left limit, chunked_limited, a window-sized table.
        {2, 150, 0, 2, 128, -1, -1, true, false},
        {2, 70, 12, 2, 64, 20, 0, true, false},
        {2, 97, 0, 2, 128, -1, -1, true, false, 8, 2},
        {1, 130, 0, 2, 128, 30, 10, true, true},
    };
    for (const AttentionCase& c : cases) {
        const int64_t d = c.n_heads * c.d_head, n_key = c.n_cache + c.n_query;
        int64_t pos_first = n_key - 1, n_pos = 2 * n_key - 1;
        if (c.local_table) {
            pos_first = std::min<int64_t>(c.att_left, n_key - 1);
            n_pos = pos_first + std::min<int64_t>(c.att_right, n_key - 1) + 1;
        }
        Tensor q = rand({c.batch, c.n_query, d}), k = rand({c.batch, n_key, d}), v = rand({c.batch, n_key, d});
        Tensor p = rand({n_pos, d}), u = rand({c.n_heads, c.d_head}), vb = rand({c.n_heads, c.d_head});
        std::vector<int> key_begin(c.batch), key_end(c.batch), q_valid(c.batch);
        for (int64_t b = 0; b < c.batch; ++b) {
            q_valid[b] = static_cast<int>(c.n_query - (c.lengths ? 3 * b : 0));
            key_begin[b] = static_cast<int>(c.n_cache > 0 ? b * 2 : 0);
            key_end[b] = static_cast<int>(c.n_cache + q_valid[b]);
        }
        ops::AttentionParams params;
        params.n_heads = static_cast<int>(c.n_heads);
        params.n_cache = static_cast<int>(c.n_cache);
        params.att_left = c.att_left;
        params.att_right = c.att_right;
        params.pos_first = c.local_table ? pos_first : -1;
        params.att_chunk = c.att_chunk;
        params.att_left_chunks = c.att_left_chunks;
        if (c.lengths) {
            params.key_begin = key_begin.data();
            params.key_end = key_end.data();
            params.q_valid = q_valid.data();
        }
        Tensor out_cpu = Tensor::empty(q.shape()), out_gpu = Tensor::empty(q.shape(), DType::kF32, kGpu);
        ops::rel_pos_attention(cpu(), q, k, v, p, u, vb, params, out_cpu);
        ops::rel_pos_attention(gpu(prec), q.to(kGpu), k.to(kGpu), v.to(kGpu), p.to(kGpu), u, vb, params, out_gpu);
        expect_close(out_cpu, out_gpu, tolerance(prec),
                     fmt::format("attention {} T={} C={} H={} dk={} L={} R={}", precision_name(prec), c.n_query,
                                 c.n_cache, c.n_heads, c.d_head, c.att_left, c.att_right));
        // Written in the output linear's 16-bit input dtype (fp16/bf16): the float32 result rounded, whichever path
        // ran (the fused kernel stores 16 bits itself; the GEMM paths convert their float32 result).
        const DType dt = ops::gemm_input_dtype(gpu(prec));
        if (dt == DType::kF32) continue;
        Tensor out16 = Tensor::empty(q.shape(), dt, kGpu);
        ops::rel_pos_attention(gpu(prec), q.to(kGpu), k.to(kGpu), v.to(kGpu), p.to(kGpu), u, vb, params, out16);
        const Tensor rounded = ops::to_gemm_input(gpu(prec), out_gpu).to(Device{}).to_f32();
        expect_close(rounded, out16.to(Device{}).to_f32(), 0,
                     fmt::format("attention 16-bit output {} T={} dk={}", precision_name(prec), c.n_query, c.d_head));
    }
}

// Several items of different valid lengths run as one batch (the GPU's batched path: one set of launches per group
// of items, masked per item) against the CPU op, and against each item run alone on the GPU (the per-item path).
TEST_P(CudaPrecisionTest, RelPosAttentionBatchedMatchesItems) {
    const Precision prec = GetParam();
    struct Case {
        int64_t batch, n_query, n_cache, n_heads, d_head;
        int att_left, att_right, att_chunk, att_left_chunks;
        bool empty_item;  // item 1 has no valid query (its output is all zeros)
    };
    const Case cases[] = {
        {5, 23, 0, 4, 16, -1, -1, 0, 0, false},  // full context
        {5, 23, 0, 4, 16, 4, 2, 0, 0, true},     // limited context
        {4, 30, 0, 2, 8, 3, 0, 0, 0, false},     // limited, causal-right
        {4, 21, 0, 2, 8, -1, -1, 4, 1, true},    // chunked_limited
        {3, 12, 6, 2, 16, 8, 0, 0, 0, false},    // cached keys, a different first valid key per item
        {5, 1200, 0, 4, 16, -1, -1, 0, 0, false},  // 5 items' scores exceed the budget: groups of 3 and 2
        {5, 150, 0, 2, 128, -1, -1, 0, 0, true},    // fused kernel at fp16/bf16
        {4, 70, 0, 2, 64, 4, 2, 0, 0, false},
    };
    for (const Case& c : cases) {
        const int64_t d = c.n_heads * c.d_head, n_key = c.n_cache + c.n_query;
        Tensor q = rand({c.batch, c.n_query, d}), k = rand({c.batch, n_key, d}), v = rand({c.batch, n_key, d});
        Tensor p = rand({2 * n_key - 1, d}), u = rand({c.n_heads, c.d_head}), vb = rand({c.n_heads, c.d_head});
        std::vector<int> key_begin(c.batch), key_end(c.batch), q_valid(c.batch);
        for (int64_t b = 0; b < c.batch; ++b) {
            q_valid[b] = static_cast<int>(std::max<int64_t>(c.n_query - 5 * b, 1));
            if (c.empty_item && b == 1) q_valid[b] = 0;
            key_begin[b] = static_cast<int>(c.n_cache > 0 ? b * 2 : 0);
            key_end[b] = static_cast<int>(c.n_cache + q_valid[b]);
        }
        const auto params_at = [&](int64_t b) {
            ops::AttentionParams params;
            params.n_heads = static_cast<int>(c.n_heads);
            params.n_cache = static_cast<int>(c.n_cache);
            params.att_left = c.att_left;
            params.att_right = c.att_right;
            params.att_chunk = c.att_chunk;
            params.att_left_chunks = c.att_left_chunks;
            params.key_begin = key_begin.data() + b;
            params.key_end = key_end.data() + b;
            params.q_valid = q_valid.data() + b;
            return params;
        };
        const std::string what = fmt::format("batched attention {} B={} T={} C={} H={} dk={} L={} R={} chunk={}",
                                             precision_name(prec), c.batch, c.n_query, c.n_cache, c.n_heads,
                                             c.d_head, c.att_left, c.att_right, c.att_chunk);
        Tensor out_cpu = Tensor::empty(q.shape()), out_gpu = Tensor::empty(q.shape(), DType::kF32, kGpu);
        const Tensor q_gpu = q.to(kGpu), k_gpu = k.to(kGpu), v_gpu = v.to(kGpu), p_gpu = p.to(kGpu);
        ops::rel_pos_attention(cpu(), q, k, v, p, u, vb, params_at(0), out_cpu);
        ops::rel_pos_attention(gpu(prec), q_gpu, k_gpu, v_gpu, p_gpu, u, vb, params_at(0), out_gpu);
        expect_close(out_cpu, out_gpu, tolerance(prec), what + " vs cpu");
        for (int64_t b = 0; b < c.batch; ++b) {
            Tensor out_item = Tensor::empty({1, c.n_query, d}, DType::kF32, kGpu);
            ops::rel_pos_attention(gpu(prec), q_gpu.slice0(b, b + 1), k_gpu.slice0(b, b + 1),
                                   v_gpu.slice0(b, b + 1), p_gpu, u, vb, params_at(b), out_item);
            expect_close(out_item.to(Device{}), out_gpu.slice0(b, b + 1), tolerance(prec),
                         fmt::format("{} vs item {} alone", what, b));
        }
    }
}

// The small-row linear of the batched streaming step against the CPU ops: every row count it specialises (1, 2,
// 4, 8 and the odd counts between), an odd output width (its last warp has one row), a short k and a long one
// (split over warps), with and without the norm prologue (residual update, pre-norm, norm) and the SiLU epilogue.
TEST_P(CudaPrecisionTest, SkinnyLinear) {
    const Precision prec = GetParam();
    cuda::CudaContext& c = context();
    const cuda::Launch l{c.stream, c.n_sms};
    for (const int64_t rows : {1, 2, 3, 5, 8}) {
        for (const int64_t k : {96, 1024}) {
            for (const bool norm : {false, true}) {
                const int64_t n = 333;
                Tensor w = rand({n, k}), b = rand({n}), res = rand({rows, k}, -2.f, 2.f), delta = rand({rows, k});
                Tensor g1 = rand({k}, 0.5f, 1.5f), b1 = rand({k}), g2 = rand({k}, 0.5f, 1.5f), b2 = rand({k});
                Tensor x = rand({rows, k});
                // Reference: the prologue with the CPU ops, the input rounded as the GPU feeds it, then the linear.
                Tensor r = res.clone(), in = x.clone();
                if (norm) {
                    ops::add_scaled_(cpu(), r, delta, 0.5f);
                    Tensor r2 = Tensor::empty(r.shape());
                    ops::layer_norm(cpu(), r, g1, b1, 1e-5f, r2);
                    r = r2;
                    ops::layer_norm(cpu(), r, g2, b2, 1e-5f, in);
                }
                const Tensor wd = cuda::device_weight(c, w, prec);
                const int code = wd.dtype() == DType::kF16 ? 1 : wd.dtype() == DType::kBF16 ? 2 : 0;
                // The input in the weight's dtype (the rounding the GPU's input goes through), and back on the host.
                const Tensor x_dev = cuda::device_weight(c, in, prec);
                const Tensor in_q = x_dev.to(Device{}).to_f32();
                Tensor y_ref = Tensor::empty({rows, n});
                ops::linear(cpu(), in_q, w, &b, y_ref);
                ops::silu_(cpu(), y_ref);

                Tensor y_gpu = Tensor::zeros({rows, n}, DType::kF32, kGpu);
                Tensor res_gpu = res.to(kGpu), delta_gpu = delta.to(kGpu);
                Tensor res_out = Tensor::zeros({rows, k}, DType::kF32, kGpu);
                cuda::kernels::SkinnyLinearArgs a{};
                a.rows = rows;
                a.n = n;
                a.k = k;
                a.w = wd.raw();
                a.w_dtype = code;
                a.bias = cuda::weight_f32(c, b);
                a.silu = 1;
                a.y = y_gpu.raw();
                a.y_dtype = 0;
                a.ldy = n;
                if (norm) {
                    a.res = res_gpu.data<float>();
                    a.delta = delta_gpu.data<float>();
                    a.delta_scale = 0.5f;
                    a.pre_g = cuda::weight_f32(c, g1);
                    a.pre_b = cuda::weight_f32(c, b1);
                    a.res_out = res_out.data<float>();
                    a.norm_g = cuda::weight_f32(c, g2);
                    a.norm_b = cuda::weight_f32(c, b2);
                    a.eps = 1e-5f;
                } else {
                    a.x = x_dev.raw();
                }
                ASSERT_TRUE(cuda::kernels::skinny_linear_fits(rows, k, norm));
                cuda::kernels::skinny_linear(l, a);
                const std::string what = fmt::format("skinny {} rows={} k={} norm={}", precision_name(prec), rows, k, norm);
                // 16-bit weights: the reference uses the float32 weights, so the tolerance is the precision's.
                expect_close(y_ref, y_gpu, prec == Precision::kF32 || prec == Precision::kTF32 ? 1e-5 : tolerance(prec),
                             what);
                if (norm) expect_close(r, res_out, 1e-5, what + " residual");
            }
        }
    }
    EXPECT_FALSE(cuda::kernels::skinny_linear_fits(9, 64, false));
    EXPECT_FALSE(cuda::kernels::skinny_linear_fits(2, 100, false));
    EXPECT_FALSE(cuda::kernels::skinny_linear_fits(8, 4096, true));
}

INSTANTIATE_TEST_SUITE_P(Precisions, CudaPrecisionTest,
                         ::testing::Values(Precision::kF32, Precision::kTF32, Precision::kF16, Precision::kBF16),
                         [](const auto& param_info) { return std::string(precision_name(param_info.param)); });

TEST_F(CudaTest, LayerNorm) {
    // 200 columns, or 33 rows: one block per row; 750 rows of 128 and 1024: one warp per row (750 is not a multiple
    // of the rows per block).
    for (const auto& [rows, cols] : {std::pair<int64_t, int64_t>{33, 200}, {33, 1024}, {750, 128}, {750, 1024}}) {
        Tensor x = rand({3, rows / 3, cols}, -3.f, 5.f), g = rand({cols}), b = rand({cols});
        Tensor y_cpu = Tensor::empty(x.shape()), y_gpu = Tensor::empty(x.shape(), DType::kF32, kGpu);
        ops::layer_norm(cpu(), x, g, b, 1e-5f, y_cpu);
        ops::layer_norm(gpu(), x.to(kGpu), g, b, 1e-5f, y_gpu);
        expect_close(y_cpu, y_gpu, 1e-5, fmt::format("layer_norm {} x {}", rows, cols));
        // With the residual update.
        Tensor r = rand(x.shape()), x_cpu = x.clone(), x_gpu = x.to(kGpu), r_gpu = r.to(kGpu);
        ops::add_scaled_(cpu(), x_cpu, r, 0.5f);
        ops::layer_norm(cpu(), x_cpu, g, b, 1e-5f, y_cpu);
        cuda::CudaContext& c = context();
        cuda::add_layer_norm(c, x_gpu.data<float>(), r_gpu.data<float>(), 0.5f, cuda::weight_f32(c, g),
                             cuda::weight_f32(c, b), 1e-5f, rows, cols, y_gpu.data<float>());
        expect_close(x_cpu, x_gpu, 1e-6, fmt::format("add_layer_norm residual {} x {}", rows, cols));
        expect_close(y_cpu, y_gpu, 1e-5, fmt::format("add_layer_norm {} x {}", rows, cols));
    }
}

TEST_F(CudaTest, ElementWise) {
    Tensor x = rand({5, 7, 33}, -6.f, 6.f), r = rand({5, 7, 33});
    {
        Tensor a = x.clone(), g = x.to(kGpu);
        ops::silu_(cpu(), a);
        ops::silu_(gpu(), g);
        expect_close(a, g, 1e-6, "silu");
    }
    {
        Tensor a = x.clone(), g = x.to(kGpu);
        ops::relu_(cpu(), a);
        ops::relu_(gpu(), g);
        expect_close(a, g, 0, "relu");
    }
    {
        Tensor a = x.clone(), g = x.to(kGpu);
        ops::add_scaled_(cpu(), a, r, 0.5f);
        ops::add_scaled_(gpu(), g, r.to(kGpu), 0.5f);
        expect_close(a, g, 1e-6, "add_scaled");
    }
    {
        Tensor a = x.clone(), g = x.to(kGpu);
        ops::scale_(cpu(), a, 1.7f);
        ops::scale_(gpu(), g, 1.7f);
        expect_close(a, g, 1e-6, "scale");
    }
    {
        Tensor a = Tensor::empty({5, 7, 33}), g = Tensor::empty({5, 7, 33}, DType::kF32, kGpu);
        Tensor in = rand({5, 7, 66}, -4.f, 4.f);
        ops::glu(cpu(), in, a);
        ops::glu(gpu(), in.to(kGpu), g);
        expect_close(a, g, 1e-6, "glu");
    }
    {
        Tensor a = rand({12, 50}), bias = rand({12});
        Tensor g = a.to(kGpu);
        ops::add_row_bias_(cpu(), a, bias);
        ops::add_row_bias_(gpu(), g, bias);
        expect_close(a, g, 1e-6, "add_row_bias");
    }
}

TEST_F(CudaTest, Layout) {
    Tensor x = rand({6, 9, 5});
    Tensor y_cpu = Tensor::empty({9, 30}), y_gpu = Tensor::empty({9, 30}, DType::kF32, kGpu);
    ops::flatten_channels(cpu(), x, y_cpu);
    ops::flatten_channels(gpu(), x.to(kGpu), y_gpu);
    expect_close(y_cpu, y_gpu, 0, "flatten_channels");

    Tensor z = rand({3, 8, 4});
    Tensor z_gpu = z.to(kGpu);
    const int lengths[] = {8, 0, 5};
    ops::zero_after_lengths_(cpu(), z, lengths);
    ops::zero_after_lengths_(gpu(), z_gpu, lengths);
    expect_close(z, z_gpu, 0, "zero_after_lengths");

    Tensor back = Tensor::empty(z.shape());
    Tensor mid = Tensor::empty(z.shape(), DType::kF32, kGpu);
    ops::copy_(gpu(), mid, z_gpu);
    ops::copy_(gpu(), back, mid);
    expect_close(z, back, 0, "copy");
}

TEST_F(CudaTest, DepthwiseConv1d) {
    for (int pad_left : {4, 8, 0}) {
        Tensor x = rand({2, 23, 48}), w = rand({48, 9}), b = rand({48});
        Tensor y_cpu = Tensor::empty(x.shape()), y_gpu = Tensor::empty(x.shape(), DType::kF32, kGpu);
        ops::depthwise_conv1d(cpu(), x, w, &b, pad_left, y_cpu);
        ops::depthwise_conv1d(gpu(), x.to(kGpu), w, &b, pad_left, y_gpu);
        expect_close(y_cpu, y_gpu, 1e-5, fmt::format("depthwise_conv1d pad {}", pad_left));
    }
}

TEST_F(CudaTest, Conv2d3x3s2) {
    auto out = [](int64_t n, int pad_lo) { return (n + pad_lo - 2) / 2 + 1; };
    for (int pad_lo : {1, 2}) {
        {
            const Shape ys{8, out(17, pad_lo), out(20, pad_lo)};
            Tensor x = rand({1, 17, 20}), w = rand({8, 1, 3, 3}), b = rand({8});
            Tensor y_cpu = Tensor::empty(ys), y_gpu = Tensor::empty(ys, DType::kF32, kGpu);
            ops::conv2d_3x3_s2(cpu(), x, w, b, false, pad_lo, y_cpu);
            ops::conv2d_3x3_s2(gpu(), x.to(kGpu), w, b, false, pad_lo, y_gpu);
            expect_close(y_cpu, y_gpu, 1e-5, fmt::format("conv2d dense pad {}", pad_lo));
        }
        {
            const Shape ys{8, out(9, pad_lo), out(10, pad_lo)};
            Tensor x = rand({8, 9, 10}), w = rand({8, 1, 3, 3}), b = rand({8});
            Tensor y_cpu = Tensor::empty(ys), y_gpu = Tensor::empty(ys, DType::kF32, kGpu);
            ops::conv2d_3x3_s2(cpu(), x, w, b, true, pad_lo, y_cpu);
            ops::conv2d_3x3_s2(gpu(), x.to(kGpu), w, b, true, pad_lo, y_gpu);
            expect_close(y_cpu, y_gpu, 1e-5, fmt::format("conv2d depthwise pad {}", pad_lo));
        }
    }
}

// The batched subsampling's ops (channels last) against the CPU backend: uneven lengths (one of a single frame, one
// empty), channels not a multiple of 32, both paddings.
TEST_F(CudaTest, BatchedSubsamplingOps) {
    auto out = [](int64_t n, int pad_lo) { return (n + pad_lo - 2) / 2 + 1; };
    const int64_t c = 40;
    for (int pad_lo : {1, 2}) {
        {
            const std::vector<int> lengths{37, 1, 0, 20};
            Tensor x = rand({4, 37, 20}), w0 = rand({c, 1, 3, 3}), b0 = rand({c}), w1 = rand({c, 1, 3, 3}),
                   b1 = rand({c});
            const Shape ys{4, out(out(37, pad_lo), pad_lo), out(out(20, pad_lo), pad_lo), c};
            Tensor y_cpu = Tensor::empty(ys), y_gpu = Tensor::empty(ys, DType::kF32, kGpu);
            ops::subsample_front(cpu(), x, lengths.data(), w0, b0, w1, b1, pad_lo, y_cpu);
            ops::subsample_front(gpu(), x.to(kGpu), lengths.data(), w0, b0, w1, b1, pad_lo, y_gpu);
            expect_close(y_cpu, y_gpu, 1e-5, fmt::format("subsample_front pad {}", pad_lo));
        }
        {
            const std::vector<int> lengths{19, 0, 7};
            Tensor x = rand({3, 19, 10, c}), w = rand({c, 1, 3, 3}), b = rand({c}), in_b = rand({c});
            const Shape ys{3, out(19, pad_lo), out(10, pad_lo), c};
            Tensor y_cpu = Tensor::empty(ys), y_gpu = Tensor::empty(ys, DType::kF32, kGpu);
            for (const Tensor* ib : {static_cast<const Tensor*>(nullptr), static_cast<const Tensor*>(&in_b)}) {
                ops::relu_depthwise_conv2d_s2(cpu(), x, ib, lengths.data(), w, b, pad_lo, y_cpu);
                ops::relu_depthwise_conv2d_s2(gpu(), x.to(kGpu), ib, lengths.data(), w, b, pad_lo, y_gpu);
                expect_close(y_cpu, y_gpu, 1e-5,
                             fmt::format("relu_depthwise_conv2d_s2 pad {}{}", pad_lo, ib ? " input bias" : ""));
            }
            Tensor r_cpu = Tensor::empty(x.shape()), r_gpu = Tensor::empty(x.shape(), DType::kF32, kGpu);
            ops::relu_to(cpu(), x, &in_b, r_cpu);
            ops::relu_to(gpu(), x.to(kGpu), &in_b, r_gpu);
            expect_close(r_cpu, r_gpu, 1e-6, "relu_to with bias");
        }
    }
}

// Fusions: each against the composition of the unfused CPU ops.
TEST_F(CudaTest, FusedAddLayerNorm) {
    Tensor x = rand({2, 13, 96}), r = rand({2, 13, 96}), g = rand({96}), b = rand({96});
    Tensor x_cpu = x.clone(), y_cpu = Tensor::empty(x.shape());
    ops::add_scaled_(cpu(), x_cpu, r, 0.5f);
    ops::layer_norm(cpu(), x_cpu, g, b, 1e-5f, y_cpu);
    Tensor x_gpu = x.to(kGpu), r_gpu = r.to(kGpu), y_gpu = Tensor::empty(x.shape(), DType::kF32, kGpu);
    cuda::CudaContext& c = context();
    cuda::add_layer_norm(c, x_gpu.data<float>(), r_gpu.data<float>(), 0.5f, cuda::weight_f32(c, g),
                         cuda::weight_f32(c, b), 1e-5f, 26, 96, y_gpu.data<float>());
    expect_close(x_cpu, x_gpu, 1e-6, "add_layer_norm residual");
    expect_close(y_cpu, y_gpu, 1e-5, "add_layer_norm norm");
}

// A layer's output norm and the next layer's first norm in one pass: bit-identical to the two single norms, on the
// block-per-row path (few rows), the warp-per-row path (many rows of 1024) and the two-launch path (wide rows), with
// float32 and 16-bit second outputs.
TEST_F(CudaTest, DoubleLayerNormEqualsTwoNorms) {
    struct Case {
        int64_t rows, cols;
    };
    for (const Case cs : {Case{26, 96}, Case{175, 1024}, Case{4 * 132 + 7, 1024}, Case{1100, 512}, Case{9, 2500}}) {
        for (Precision prec : {Precision::kF32, Precision::kBF16, Precision::kF16}) {
            const ExecContext g = gpu(prec);
            const DType dt = ops::gemm_input_dtype(g);
            Tensor x = rand({cs.rows, cs.cols}), r = rand({cs.rows, cs.cols});
            Tensor g1 = rand({cs.cols}), b1 = rand({cs.cols}), g2 = rand({cs.cols}), b2 = rand({cs.cols});
            Tensor xa = x.to(kGpu), xb = x.to(kGpu), rg = r.to(kGpu);
            Tensor ya = Tensor::empty(x.shape(), DType::kF32, kGpu), yb = Tensor::empty(x.shape(), DType::kF32, kGpu);
            Tensor za = Tensor::empty(x.shape(), dt, kGpu), zb = Tensor::empty(x.shape(), dt, kGpu);
            ops::add_layer_norm_(g, xa, rg, 0.5f, g1, b1, 1e-5f, ya);
            ops::add_layer_norm_(g, ya, Tensor(), 0.f, g2, b2, 1e-5f, za);
            ops::add_layer_norm2_(g, xb, rg, 0.5f, g1, b1, 1e-5f, yb, g2, b2, zb);
            const std::string what = fmt::format("{} x {} {}", cs.rows, cs.cols, precision_name(prec));
            expect_close(xa.to(Device{}), xb, 0, "residual " + what);
            expect_close(ya.to(Device{}), yb, 0, "first norm " + what);
            expect_close(za.to(Device{}).to_f32(), zb.to(Device{}).to_f32(), 0, "second norm " + what);
            // And against the CPU.
            Tensor xc = x.clone(), yc = Tensor::empty(x.shape()), zc = Tensor::empty(x.shape());
            ops::add_layer_norm2_(cpu(), xc, r, 0.5f, g1, b1, 1e-5f, yc, g2, b2, zc);
            expect_close(yc, yb, 1e-5, "first norm vs CPU " + what);
            expect_close(zc, zb.to(Device{}).to_f32(), dt == DType::kF32 ? 1e-5 : 1e-2, "second norm vs CPU " + what);
        }
    }
}

TEST_F(CudaTest, FusedGluDepthwiseSilu) {
    // Short and multi-tile inputs, channels not a multiple of 32; a few items take the 16-row tiles, 64 items the
    // 64-row tiles (the kernel tiles rows x 32 channels).
    struct Case {
        int64_t batch, t;
    };
    for (const Case cs : {Case{3, 21}, Case{3, 150}, Case{64, 150}}) {
        const int64_t batch = cs.batch, t = cs.t, ch = 40, k = 9;
        Tensor x = rand({batch, t, 2 * ch}, -3.f, 3.f), w = rand({ch, k}), b = rand({ch});
        std::vector<int> lengths(static_cast<size_t>(batch));
        for (int64_t i = 0; i < batch; ++i) lengths[i] = static_cast<int>(i == 0 ? t : (i * 37) % t + 1);
        Tensor glu = Tensor::empty({batch, t, ch}), y_cpu = Tensor::empty({batch, t, ch});
        ops::glu(cpu(), x, glu);
        ops::zero_after_lengths_(cpu(), glu, lengths.data());
        ops::depthwise_conv1d(cpu(), glu, w, &b, 4, y_cpu);
        ops::silu_(cpu(), y_cpu);
        Tensor xg = x.to(kGpu);
        cuda::CudaContext& c = context();
        // float32 output, and the 16-bit outputs that feed a 16-bit GEMM (rounded once).
        for (const DType dt : {DType::kF32, DType::kF16, DType::kBF16}) {
            Tensor y_gpu = Tensor::empty({batch, t, ch}, dt, kGpu);
            cuda::glu_depthwise_conv1d_silu(c, xg.data<float>(), lengths.data(), cuda::weight_f32(c, w),
                                            cuda::weight_f32(c, b), batch, t, ch, k, 4, y_gpu.raw(), dt);
            const double tol = dt == DType::kF32 ? 1e-5 : dt == DType::kF16 ? 1e-3 : 8e-3;
            expect_close(y_cpu, y_gpu.to(Device{}).to_f32(), tol,
                         fmt::format("glu_depthwise_conv1d_silu batch={} t={} {}", batch, t, dtype_name(dt)));
        }
    }
}

TEST_F(CudaTest, FusedLinearBiasSilu) {
    for (Precision prec : {Precision::kF32, Precision::kF16}) {
        Tensor x = rand({29, 64}), w = rand({80, 64}), b = rand({80});
        Tensor y_cpu = Tensor::empty({29, 80});
        ops::linear(cpu(), x, w, &b, y_cpu);
        ops::silu_(cpu(), y_cpu);
        Tensor xg = x.to(kGpu), y_gpu = Tensor::empty({29, 80}, DType::kF32, kGpu);
        cuda::CudaContext& c = context();
        cuda::linear_bias_silu(c, prec, xg.data<float>(), cuda::device_weight(c, w, prec), cuda::weight_f32(c, b),
                               y_gpu.data<float>(), 29, 80, 64);
        expect_close(y_cpu, y_gpu, tolerance(prec), fmt::format("linear_bias_silu {}", precision_name(prec)));
    }
}

// In-place bias + SiLU on 16-bit rows: the 16-byte kernel (cols a multiple of 8, aligned rows) gives the two-element
// kernel's values bit for bit (the same rows placed 4 bytes off alignment take that kernel), and both the CPU's
// within the 16-bit rounding.
TEST_F(CudaTest, BiasSilu16VectorisedEqualsScalar) {
    cuda::CudaContext& c = context();
    const cuda::Launch l{c.stream, c.n_sms};
    for (Precision prec : {Precision::kF16, Precision::kBF16}) {
        const DType dt = ops::gemm_input_dtype(gpu(prec));
        for (const bool with_bias : {false, true}) {
            const int64_t rows = 37, cols = 4096;
            Tensor x = rand({rows, cols}, -6.f, 6.f), b = rand({cols});
            const Tensor x16 = ops::to_gemm_input(gpu(prec), x.to(kGpu));
            // Aligned copy and a copy 2 elements in (4 bytes: not 16-byte aligned).
            Tensor buf = Tensor::empty({rows * cols + 8}, dt, kGpu);
            Tensor aligned = Tensor::empty({rows, cols}, dt, kGpu);
            char* off = static_cast<char*>(buf.raw()) + 4;
            ASSERT_EQ(cudaMemcpy(aligned.raw(), x16.raw(), x16.nbytes(), cudaMemcpyDeviceToDevice), cudaSuccess);
            ASSERT_EQ(cudaMemcpy(off, x16.raw(), x16.nbytes(), cudaMemcpyDeviceToDevice), cudaSuccess);
            const Tensor bias = b.to(kGpu);
            const int code = dt == DType::kF16 ? 1 : 2;
            cuda::kernels::bias_silu_16(l, aligned.raw(), with_bias ? bias.data<float>() : nullptr, rows, cols, code);
            cuda::kernels::bias_silu_16(l, off, with_bias ? bias.data<float>() : nullptr, rows, cols, code);
            cuda::synchronize(c);
            std::vector<uint16_t> a(static_cast<size_t>(rows * cols)), o(a.size());
            ASSERT_EQ(cudaMemcpy(a.data(), aligned.raw(), a.size() * 2, cudaMemcpyDeviceToHost), cudaSuccess);
            ASSERT_EQ(cudaMemcpy(o.data(), off, o.size() * 2, cudaMemcpyDeviceToHost), cudaSuccess);
            EXPECT_TRUE(a == o) << precision_name(prec) << " bias=" << with_bias;
            // Against the CPU: SiLU of the rounded input (+ bias).
            Tensor ref = x16.to(Device{}).to_f32();
            if (with_bias)
                for (int64_t r = 0; r < rows; ++r)
                    for (int64_t k = 0; k < cols; ++k) ref.data<float>()[r * cols + k] += b.data<float>()[k];
            ops::silu_(cpu(), ref);
            expect_close(ref, aligned.to(Device{}).to_f32(), 1e-2,
                         fmt::format("bias_silu_16 {} bias={}", precision_name(prec), with_bias));
        }
    }
}

// The batched streaming step normalises chunks on the GPU: bit for bit the host's normalize_per_feature, per item
// over its own rows (one row: std 0), rows past them and items asking none untouched.
TEST_F(CudaTest, ChunkNormalisationEqualsHost) {
    cuda::CudaContext& c = context();
    const cuda::Launch l{c.stream, c.n_sms};
    const int64_t B = 6, rows = 25, mels = 128;
    const std::vector<int> norm_rows = {25, 16, 1, 0, 2, 24};
    Tensor x = rand({B, rows, mels}, -12.f, 3.f);
    Tensor dev = x.to(kGpu);
    Tensor n_dev = Tensor::empty({B}, DType::kI32, kGpu);
    ASSERT_EQ(cudaMemcpy(n_dev.raw(), norm_rows.data(), B * sizeof(int), cudaMemcpyHostToDevice), cudaSuccess);
    cuda::kernels::normalize_chunks_per_feature(l, dev.data<float>(), B, rows, mels, n_dev.data<int>());
    cuda::synchronize(c);
    Tensor got = dev.to(Device{});
    Tensor want = x.clone();
    for (int64_t b = 0; b < B; ++b) normalize_per_feature(want.data<float>() + b * rows * mels, norm_rows[b], mels);
    EXPECT_EQ(std::memcmp(got.raw(), want.raw(), want.nbytes()), 0);
    EXPECT_NE(std::memcmp(got.raw(), x.raw(), x.nbytes()), 0);
}

TEST_F(CudaTest, WeightCacheUploadsOnce) {
    cuda::CudaContext& c = context();
    Tensor w = rand({16, 8});
    Tensor a = cuda::device_weight(c, w, Precision::kF16);
    Tensor b = cuda::device_weight(c, w, Precision::kF16);
    EXPECT_EQ(a.raw(), b.raw());
    EXPECT_EQ(a.dtype(), DType::kF16);
    EXPECT_EQ(a.device(), kGpu);
    Tensor f = cuda::device_weight(c, w, Precision::kF32);
    expect_close(w, f, 0, "fp32 weight upload");
    EXPECT_GT(cuda::weight_cache_bytes(c), 0u);
}

TEST_F(CudaTest, GraphReplayMatchesDirect) {
    cuda::CudaContext& c = context();
    ExecContext g = gpu();
    Tensor x = rand({4, 10, 64}), w = rand({64, 64}), gamma = rand({64}), beta = rand({64});
    Tensor xg = x.to(kGpu), hidden = Tensor::empty({4, 10, 64}, DType::kF32, kGpu);
    Tensor out = Tensor::empty({4, 10, 64}, DType::kF32, kGpu);
    cuda::prefetch_weights(c, {w, gamma, beta}, Precision::kF32);
    auto step = [&] {
        ops::linear(g, xg, w, nullptr, hidden);
        ops::silu_(g, hidden);
        ops::layer_norm(g, hidden, gamma, beta, 1e-5f, out);
    };
    step();
    Tensor direct = out.to(Device{});
    Tensor zero = Tensor::zeros(out.shape(), DType::kF32, kGpu);
    ops::copy_(g, out, zero);
    cuda::run_graph(c, 42, step);  // capture + launch
    expect_close(direct, out, 1e-6, "graph first launch");
    ops::copy_(g, out, zero);
    int calls = 0;
    cuda::run_graph(c, 42, [&] { ++calls; });  // replay: fn is not called
    expect_close(direct, out, 1e-6, "graph replay");
    EXPECT_EQ(calls, 0);
    cuda::clear_graphs(c);
    // A GEMM shape met first in a capture: the graph's output is right at once, and it is right again when the
    // graph is recorded with the tuned algorithm (the call after the capture: fn runs again, or the graph replays
    // when the tuned choice was cuBLAS's own).
    Tensor x2h = rand({3, 7, 64}), ref2 = Tensor::empty({3, 7, 64});
    ops::linear(ExecContext{}, x2h, w, nullptr, ref2);  // the CPU's result: the GPU must not run this shape eagerly
    Tensor x2 = x2h.to(kGpu), h2 = Tensor::empty({3, 7, 64}, DType::kF32, kGpu);
    auto step2 = [&] { ops::linear(g, x2, w, nullptr, h2); };
    for (int call = 0; call < 3; ++call) {
        ops::copy_(g, h2, Tensor::zeros(h2.shape(), DType::kF32, kGpu));
        cuda::run_graph(c, 43, step2);
        expect_close(ref2, h2, 1e-4, "graph with a GEMM shape first met in the capture");
    }
    cuda::clear_graphs(c);
}

// tiny-a: the encoder on the GPU against the CPU, and GPU greedy decoding against the CPU transcript.
class CudaTinyA : public CudaTest {
protected:
    static std::shared_ptr<const Model> model() {
        static auto m = Model::load(kTinyA + "/model/tiny-a.nemo");
        return m;
    }
    static std::vector<float> clip(int i) {
        return load_audio(kTinyA + "/inputs/clip" + std::to_string(i) + ".wav", 16000);
    }
    static Tensor features(const Model& m, const std::vector<float>& audio) {
        return m.frontend().compute(audio.data(), static_cast<int64_t>(audio.size()));
    }
};

TEST_F(CudaTinyA, EncoderMatchesCpu) {
    auto m = model();
    std::vector<Tensor> feats;
    for (int i = 0; i < 4; ++i) feats.push_back(features(*m, clip(i)));
    std::vector<int> len_cpu, len_gpu;
    Tensor ref = m->encoder().forward(cpu(), feats, len_cpu, AttentionContext{});
    const std::pair<Precision, double> runs[] = {
        {Precision::kF32, 1e-3}, {Precision::kTF32, 2e-2}, {Precision::kF16, 2e-2}, {Precision::kBF16, 1e-1}};
    for (const auto& [prec, tol] : runs) {
        Tensor got = m->encoder().forward(gpu(prec), feats, len_gpu, AttentionContext{});
        EXPECT_EQ(len_cpu, len_gpu);
        EXPECT_EQ(got.device(), kGpu);
        expect_close(ref, got, tol, fmt::format("tiny-a encoder (batch of 4) {}", precision_name(prec)));
    }
    // Limited context (local attention path).
    Tensor ref_local = m->encoder().forward(cpu(), feats, len_cpu, AttentionContext{4, 2});
    Tensor got_local = m->encoder().forward(gpu(), feats, len_gpu, AttentionContext{4, 2});
    expect_close(ref_local, got_local, 1e-3, "tiny-a encoder, context [4, 2]");
}

// Causal subsampling, causal convolution and chunked_limited attention (v-causal): offline and streamed.
TEST_F(CudaTinyA, CausalChunkedModelMatchesCpu) {
    auto m = Model::load(std::string(PARAKEET_TEST_DATA_DIR) + "/variants/v-causal/model.nemo");
    std::vector<Tensor> feats{features(*m, clip(0)), features(*m, clip(3))};
    std::vector<int> len_cpu, len_gpu;
    const AttentionContext att = m->encoder().attention_context(0);
    ASSERT_TRUE(att.chunked_limited);
    Tensor ref = m->encoder().forward(cpu(), feats, len_cpu, att);
    Tensor got = m->encoder().forward(gpu(), feats, len_gpu, att);
    EXPECT_EQ(len_cpu, len_gpu);
    expect_close(ref, got, 1e-3, "v-causal encoder");
    // Cache-aware steps with the model's own context, caches kept on each device.
    const StreamingConfig sc = m->encoder().streaming_config();
    EncoderCache c_cpu = m->encoder().initial_cache(sc, 1), c_gpu = m->encoder().initial_cache(sc, 1, kGpu);
    const Tensor& f = feats[0];
    for (int64_t p = 0, k = 0; p + sc.chunk_size[1] <= f.dim(0); ++k) {
        const int pre = k == 0 ? 0 : sc.pre_encode_cache_size[1];
        const int64_t width = (k == 0 ? sc.chunk_size[0] : sc.chunk_size[1]) + pre;
        Tensor chunk = f.slice0(std::max<int64_t>(p - pre, 0), std::min(p - pre + width, f.dim(0))).clone();
        const int n = static_cast<int>(chunk.dim(0));
        auto out_cpu = m->encoder().stream_step(cpu(), sc, {chunk}, {n}, c_cpu, k == 0 ? 0 : 2, false);
        auto out_gpu = m->encoder().stream_step(gpu(), sc, {chunk}, {n}, c_gpu, k == 0 ? 0 : 2, false);
        expect_close(out_cpu.encoded, out_gpu.encoded, 1e-3, fmt::format("v-causal stream step {}", k));
        EXPECT_EQ(c_cpu.channel_len, c_gpu.channel_len);
        p += k == 0 ? sc.shift_size[0] : sc.shift_size[1];
    }
}

TEST_F(CudaTinyA, GreedyDecodeMatchesCpu) {
    auto m = model();
    cuda::CudaContext& c = context();
    cuda::GreedyDecoder decoder(c, m->config(), m->weights());
    const int64_t jh = m->joint().hidden();
    std::vector<Tensor> feats;
    std::vector<std::vector<int>> ref_ids(4);
    for (int i = 0; i < 4; ++i) {
        std::vector<float> audio = clip(i);
        feats.push_back(features(*m, audio));
        Transcript tr = transcribe(*m, cpu(), {audio}, TranscribeOptions{})[0];
        for (const TimedToken& t : tr.tokens) ref_ids[i].push_back(t.id);
        ASSERT_FALSE(ref_ids[i].empty());
    }
    // Whole pipeline on the GPU, batch of 4: encoder, joint projection, device decode.
    std::vector<int> lengths;
    Tensor enc = m->encoder().forward(gpu(), feats, lengths, AttentionContext{});
    const int64_t t_max = enc.dim(1);
    Tensor fproj = Tensor::empty({4, t_max, jh}, DType::kF32, kGpu);
    m->joint().project_encoder(gpu(), enc, fproj);
    auto tokens = cuda::greedy_decode_batch(c, decoder, fproj.data<float>(), t_max, lengths.data(), 4);
    for (int i = 0; i < 4; ++i) {
        std::vector<int> ids;
        for (const Token& t : tokens[i]) ids.push_back(t.id);
        EXPECT_EQ(ids, ref_ids[i]) << "clip" << i;
    }

    // Decoder alone on the CPU's projection, one item at a time and in two chunks with carried state:
    // tokens, frames, durations and state must equal greedy_decode()'s exactly.
    GreedyOptions gopt = decoder.options();
    for (int i = 0; i < 4; ++i) {
        std::vector<int> len;
        Tensor e = m->encoder().forward(cpu(), {feats[i]}, len, AttentionContext{});
        const int n = len[0];
        Tensor f = Tensor::empty({n, jh});
        m->joint().project_encoder(cpu(), e.reshape({e.dim(1), e.dim(2)}).slice0(0, n), f);
        Tensor f_gpu = f.to(kGpu);
        const int split = n / 2;
        DecoderState cpu_state;
        std::vector<Token> cpu_tokens;
        greedy_decode(m->predictor(), m->joint(), gopt, f.data<float>(), split, cpu_state, cpu_tokens);
        greedy_decode(m->predictor(), m->joint(), gopt, f.data<float>() + split * jh, n - split, cpu_state,
                      cpu_tokens);
        std::vector<DecoderState> gpu_state(1);
        std::vector<std::vector<Token>> gpu_tokens(1);
        const int first = split, second = n - split;
        decoder.decode(c, f_gpu.data<float>(), first, &first, 1, gpu_state, gpu_tokens);
        decoder.decode(c, f_gpu.data<float>() + split * jh, second, &second, 1, gpu_state, gpu_tokens);
        ASSERT_EQ(cpu_tokens.size(), gpu_tokens[0].size()) << "clip" << i;
        for (size_t j = 0; j < cpu_tokens.size(); ++j) {
            EXPECT_EQ(cpu_tokens[j].id, gpu_tokens[0][j].id) << "clip" << i << " token " << j;
            EXPECT_EQ(cpu_tokens[j].frame, gpu_tokens[0][j].frame) << "clip" << i << " token " << j;
            EXPECT_EQ(cpu_tokens[j].duration, gpu_tokens[0][j].duration) << "clip" << i << " token " << j;
            EXPECT_NEAR(cpu_tokens[j].confidence, gpu_tokens[0][j].confidence, 1e-4) << "clip" << i;
        }
        EXPECT_EQ(cpu_state.time_jump, gpu_state[0].time_jump);
        EXPECT_EQ(cpu_state.frames_decoded, gpu_state[0].frames_decoded);
    }
}

}  // namespace
}  // namespace parakeet
