#include "ops/ops.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "backends/cpu/cpu_ops.h"
#include "backends/cuda/context.h"
#include "backends/cuda/cuda_ops.h"
#include "ops/conv_geometry.h"
#include "ops/dispatch.h"

namespace parakeet {

void set_cpu_threads(int n_threads) {
    PK_CHECK(n_threads >= 1 && n_threads <= 1024, kInvalidArgument, "bad thread count {}", n_threads);
    openblas_set_num_threads(n_threads);
    omp_set_num_threads(n_threads);
}

}  // namespace parakeet

namespace parakeet::ops {

namespace {
void check_f32(const Tensor& t, const char* op, const char* what) {
    PK_CHECK(t.defined() && t.dtype() == DType::kF32, kInternal, "{}: {} must be a defined float32 tensor", op, what);
}
int64_t rows_of(const Tensor& t) { return t.numel() / t.dim(-1); }
}  // namespace

DType gemm_input_dtype(const ExecContext& ctx) {
    if (ctx.device.type != DeviceType::kCUDA) return DType::kF32;
    return ctx.precision == Precision::kF16 ? DType::kF16 : ctx.precision == Precision::kBF16 ? DType::kBF16 : DType::kF32;
}

void linear(const ExecContext& ctx, const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y, float beta) {
    check_f32(w, "linear", "w");
    const int64_t k = x.dim(-1), n = w.dim(0), m = rows_of(x);
    PK_CHECK(w.rank() == 2 && w.dim(1) == k, kInternal, "linear: x {} vs w {}", shape_str(x.shape()),
             shape_str(w.shape()));
    PK_CHECK(y.dim(-1) == n && rows_of(y) == m, kInternal, "linear: y {} for x {} w {}", shape_str(y.shape()),
             shape_str(x.shape()), shape_str(w.shape()));
    PK_CHECK(!bias || bias->numel() == n, kInternal, "linear: bias size {} != {}", bias->numel(), n);
    if (x.dtype() != DType::kF32) {
        PK_CHECK(x.dtype() == gemm_input_dtype(ctx) && beta == 0.f, kInternal, "linear: {} input on {}",
                 dtype_name(x.dtype()), ctx.device.str());
        PK_CUDA_OP(cuda::check_on_device(*ctx.cuda, "linear", {&x, &y});
                   cuda::linear_x16(*ctx.cuda, ctx.precision, x.raw(), x.dtype(),
                                    cuda::device_weight(*ctx.cuda, w, ctx.precision),
                                    bias ? cuda::weight_f32(*ctx.cuda, *bias) : nullptr, y.data<float>(), m, n, k));
        return;
    }
    dispatch(ctx, "linear", [&] {
        cpu::sgemm(false, true, m, n, k, 1.f, x.data<float>(), k, w.data<float>(), k, beta, y.data<float>(), n);
        if (bias) cpu::add_bias_rows(y.data<float>(), bias->data<float>(), m, n);
    }, [&] {
        PK_CUDA_OP(cuda::check_on_device(*ctx.cuda, "linear", {&x, &y});
                   cuda::linear(*ctx.cuda, ctx.precision, x.data<float>(),
                                cuda::device_weight(*ctx.cuda, w, ctx.precision),
                                bias ? cuda::weight_f32(*ctx.cuda, *bias) : nullptr, y.data<float>(), m, n, k, beta));
    });
}

Tensor to_gemm_input(const ExecContext& ctx, const Tensor& x) {
    const DType dt = gemm_input_dtype(ctx);
    if (dt == DType::kF32) return x;
    check_f32(x, "to_gemm_input", "x");
    Tensor y = Tensor::empty(x.shape(), dt, ctx.device);
    PK_CUDA_OP(cuda::check_on_device(*ctx.cuda, "to_gemm_input", {&x});
               cuda::convert_f32(*ctx.cuda, x.data<float>(), y.raw(), dt, x.numel()));
    return y;
}

void linear3(const ExecContext& ctx, const Tensor& x, const Tensor* const (&w)[3], const Tensor* const (&b)[3],
             Tensor& y) {
    const int64_t k = x.dim(-1), n = w[0]->dim(0), m = rows_of(x);
    PK_CHECK(y.rank() == 3 && y.dim(0) == 3 && y.dim(1) == m && y.dim(2) == n, kInternal, "linear3: y {} for x {}",
             shape_str(y.shape()), shape_str(x.shape()));
    for (int i = 0; i < 3; ++i) {
        check_f32(*w[i], "linear3", "w");
        PK_CHECK(w[i]->rank() == 2 && w[i]->dim(0) == n && w[i]->dim(1) == k && (!b[i] || b[i]->numel() == n),
                 kInternal, "linear3: x {} w{} {}", shape_str(x.shape()), i, shape_str(w[i]->shape()));
    }
    if (ctx.device.type != DeviceType::kCUDA) {
        for (int i = 0; i < 3; ++i) {
            Tensor yi = y.slice0(i, i + 1).reshape({m, n});
            linear(ctx, x, *w[i], b[i], yi);
        }
        return;
    }
    PK_CHECK(x.dtype() == DType::kF32 || x.dtype() == gemm_input_dtype(ctx), kInternal, "linear3: {} input on {}",
             dtype_name(x.dtype()), ctx.device.str());
    PK_CUDA_OP(cuda::check_on_device(*ctx.cuda, "linear3", {&x, &y});
               const Tensor wd = cuda::device_weight_rows(*ctx.cuda, {w[0], w[1], w[2]}, ctx.precision);
               // A float32 input meets 16-bit weights converted once for the three GEMMs.
               const Tensor xa = x.dtype() == DType::kF32 ? to_gemm_input(ctx, x) : x;
               const cuda::GemmOperand a{xa.raw(), xa.dtype(), k, 0};
               // Batch i: x (stride 0) · w_iᵀ (stride n·k) into y[i] (stride m·n).
               cuda::gemm(*ctx.cuda, ctx.precision, false, true, m, n, k, 1.f, a,
                          cuda::GemmOperand{wd.raw(), wd.dtype(), k, n * k}, 0.f, y.data<float>(), n, m * n, 3);
               for (int i = 0; i < 3; ++i) {
                   if (b[i])
                       cuda::add_bias_rows(*ctx.cuda, y.data<float>() + i * m * n, cuda::weight_f32(*ctx.cuda, *b[i]),
                                           m, n);
               });
}

namespace {

// The arguments of y = LayerNorm(x (+ alpha · r)): shapes, and y float32 or the context's GEMM input dtype.
void check_layer_norm(const ExecContext& ctx, const char* op, const Tensor& x, const Tensor& r, const Tensor& gamma,
                      const Tensor& beta, const Tensor& y) {
    const int64_t cols = x.dim(-1);
    PK_CHECK(gamma.numel() == cols && beta.numel() == cols && y.numel() == x.numel() &&
                 (!r.defined() || r.numel() == x.numel()),
             kInternal, "{}: x {} gamma {} beta {}", op, shape_str(x.shape()), shape_str(gamma.shape()),
             shape_str(beta.shape()));
    PK_CHECK(y.dtype() == DType::kF32 || y.dtype() == gemm_input_dtype(ctx), kInternal, "{}: {} output on {}", op,
             dtype_name(y.dtype()), ctx.device.str());
}

}  // namespace

void add_layer_norm_(const ExecContext& ctx, Tensor& x, const Tensor& r, float alpha, const Tensor& gamma,
                     const Tensor& beta, float eps, Tensor& y) {
    const int64_t cols = x.dim(-1);
    check_layer_norm(ctx, "add_layer_norm", x, r, gamma, beta, y);
    dispatch(ctx, "add_layer_norm", [&] {
        if (r.defined()) cpu::add_scaled(x.data<float>(), r.data<float>(), alpha, x.numel());
        cpu::layer_norm(x.data<float>(), gamma.data<float>(), beta.data<float>(), eps, rows_of(x), cols,
                        y.data<float>());
    }, [&] {
        PK_CUDA_OP(cuda::check_on_device(*ctx.cuda, "add_layer_norm", {&x, &r, &y});
                   cuda::add_layer_norm_to(*ctx.cuda, x.data<float>(), r.defined() ? r.data<float>() : nullptr, alpha,
                                           cuda::weight_f32(*ctx.cuda, gamma), cuda::weight_f32(*ctx.cuda, beta), eps,
                                           rows_of(x), cols, y.raw(), y.dtype()));
    });
}

void add_layer_norm2_(const ExecContext& ctx, Tensor& x, const Tensor& r, float alpha, const Tensor& gamma,
                      const Tensor& beta, float eps, Tensor& y, const Tensor& gamma2, const Tensor& beta2, Tensor& y2) {
    PK_CHECK(y.dtype() == DType::kF32, kInternal, "add_layer_norm2: {} first output", dtype_name(y.dtype()));
    check_layer_norm(ctx, "add_layer_norm2", x, r, gamma, beta, y);
    check_layer_norm(ctx, "add_layer_norm2", y, Tensor(), gamma2, beta2, y2);
    if (ctx.device.type != DeviceType::kCUDA) {
        add_layer_norm_(ctx, x, r, alpha, gamma, beta, eps, y);
        add_layer_norm_(ctx, y, Tensor(), 0.f, gamma2, beta2, eps, y2);
        return;
    }
    PK_CUDA_OP(cuda::check_on_device(*ctx.cuda, "add_layer_norm2", {&x, &r, &y, &y2});
               cuda::add_layer_norm2_to(*ctx.cuda, x.data<float>(), r.defined() ? r.data<float>() : nullptr, alpha,
                                        cuda::weight_f32(*ctx.cuda, gamma), cuda::weight_f32(*ctx.cuda, beta), eps,
                                        rows_of(x), x.dim(-1), y.data<float>(), cuda::weight_f32(*ctx.cuda, gamma2),
                                        cuda::weight_f32(*ctx.cuda, beta2), y2.raw(), y2.dtype()));
}

void linear_silu(const ExecContext& ctx, const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y) {
    if (x.dtype() == DType::kF32) {
        PK_CHECK(y.dtype() == DType::kF32, kInternal, "linear_silu: float32 input, {} output", dtype_name(y.dtype()));
        linear(ctx, x, w, bias, y);
        silu_(ctx, y);
        return;
    }
    check_f32(w, "linear_silu", "w");
    const int64_t k = x.dim(-1), n = w.dim(0), m = rows_of(x);
    PK_CHECK(x.dtype() == gemm_input_dtype(ctx) && y.dtype() == x.dtype() && w.rank() == 2 && w.dim(1) == k &&
                 y.dim(-1) == n && rows_of(y) == m && (!bias || bias->numel() == n),
             kInternal, "linear_silu: x {} {} w {} y {} {}", shape_str(x.shape()), dtype_name(x.dtype()),
             shape_str(w.shape()), shape_str(y.shape()), dtype_name(y.dtype()));
    PK_CUDA_OP(cuda::check_on_device(*ctx.cuda, "linear_silu", {&x, &y});
               cuda::linear_x16_bias_silu(*ctx.cuda, ctx.precision, x.raw(), x.dtype(),
                                          cuda::device_weight(*ctx.cuda, w, ctx.precision),
                                          bias ? cuda::weight_f32(*ctx.cuda, *bias) : nullptr, y.raw(), m, n, k));
}

void glu_conv_silu(const ExecContext& ctx, const Tensor& x, const int* lengths, const Tensor& w, const Tensor& bias,
                   int pad_left, Tensor& y) {
    PK_CHECK(x.rank() == 3 && y.rank() == 3 && x.dim(0) == y.dim(0) && x.dim(1) == y.dim(1) &&
                 x.dim(2) == 2 * y.dim(2) && w.rank() == 2 && w.dim(0) == y.dim(2),
             kInternal, "glu_conv_silu: x {} y {} w {}", shape_str(x.shape()), shape_str(y.shape()),
             shape_str(w.shape()));
    if (ctx.device.type != DeviceType::kCUDA) {
        // The CPU runs the steps one by one (the same arithmetic).
        Tensor g = Tensor::empty(y.shape(), DType::kF32, ctx.device);
        glu(ctx, x, g);
        if (lengths) zero_after_lengths_(ctx, g, lengths);
        depthwise_conv1d(ctx, g, w, &bias, pad_left, y);
        silu_(ctx, y);
        return;
    }
    PK_CHECK(y.dtype() == DType::kF32 || y.dtype() == gemm_input_dtype(ctx), kInternal, "glu_conv_silu: {} output",
             dtype_name(y.dtype()));
    PK_CUDA_OP(cuda::check_on_device(*ctx.cuda, "glu_conv_silu", {&x, &y});
               cuda::glu_depthwise_conv1d_silu(*ctx.cuda, x.data<float>(), lengths, cuda::weight_f32(*ctx.cuda, w),
                                               cuda::weight_f32(*ctx.cuda, bias), y.dim(0), y.dim(1), y.dim(2),
                                               w.dim(1), pad_left, y.raw(), y.dtype()));
}

void matmul(const ExecContext& ctx, const Tensor& a, const Tensor& b, Tensor& y, float alpha) {
    PK_CHECK(a.rank() == 2 && b.rank() == 2 && y.rank() == 2 && a.dim(1) == b.dim(0) && y.dim(0) == a.dim(0) &&
                 y.dim(1) == b.dim(1),
             kInternal, "matmul: {} x {} -> {}", shape_str(a.shape()), shape_str(b.shape()), shape_str(y.shape()));
    dispatch(ctx, "matmul", [&] {
        cpu::sgemm(false, false, a.dim(0), b.dim(1), a.dim(1), alpha, a.data<float>(), a.dim(1), b.data<float>(),
                   b.dim(1), 0.f, y.data<float>(), b.dim(1));
    }, [&] {
        // A host operand is a weight (the subsampling's pointwise convs): uploaded once.
        PK_CUDA_OP(cuda::check_on_device(*ctx.cuda, "matmul", {&y});
                   cuda::matmul(*ctx.cuda, ctx.precision,
                                a.is_cpu() ? cuda::weight_f32(*ctx.cuda, a) : a.data<float>(),
                                b.is_cpu() ? cuda::weight_f32(*ctx.cuda, b) : b.data<float>(), y.data<float>(),
                                a.dim(0), b.dim(1), a.dim(1), alpha));
    });
}

void layer_norm(const ExecContext& ctx, const Tensor& x, const Tensor& gamma, const Tensor& beta, float eps,
                Tensor& y) {
    const int64_t cols = x.dim(-1);
    PK_CHECK(gamma.numel() == cols && beta.numel() == cols && y.numel() == x.numel(), kInternal,
             "layer_norm: x {} gamma {} beta {}", shape_str(x.shape()), shape_str(gamma.shape()),
             shape_str(beta.shape()));
    dispatch(ctx, "layer_norm", [&] {
        cpu::layer_norm(x.data<float>(), gamma.data<float>(), beta.data<float>(), eps, rows_of(x), cols,
                        y.data<float>());
    }, [&] {
        PK_CUDA_OP(cuda::check_on_device(*ctx.cuda, "layer_norm", {&x, &y});
                   cuda::layer_norm(*ctx.cuda, x.data<float>(), cuda::weight_f32(*ctx.cuda, gamma),
                                    cuda::weight_f32(*ctx.cuda, beta), eps, rows_of(x), cols, y.data<float>()));
    });
}

void silu_(const ExecContext& ctx, Tensor& x) {
    dispatch(ctx, "silu", [&] { cpu::silu(x.data<float>(), x.numel()); }, [&] {
        PK_CUDA_OP(cuda::check_on_device(*ctx.cuda, "silu", {&x}); cuda::silu(*ctx.cuda, x.data<float>(), x.numel()));
    });
}

void relu_(const ExecContext& ctx, Tensor& x) {
    dispatch(ctx, "relu", [&] { cpu::relu(x.data<float>(), x.numel()); }, [&] {
        PK_CUDA_OP(cuda::check_on_device(*ctx.cuda, "relu", {&x}); cuda::relu(*ctx.cuda, x.data<float>(), x.numel()));
    });
}

void add_scaled_(const ExecContext& ctx, Tensor& y, const Tensor& x, float alpha) {
    PK_CHECK(y.numel() == x.numel(), kInternal, "add: {} vs {}", shape_str(y.shape()), shape_str(x.shape()));
    dispatch(ctx, "add", [&] { cpu::add_scaled(y.data<float>(), x.data<float>(), alpha, y.numel()); }, [&] {
        PK_CUDA_OP(cuda::check_on_device(*ctx.cuda, "add", {&x, &y});
                   cuda::add_scaled(*ctx.cuda, y.data<float>(), x.data<float>(), alpha, y.numel()));
    });
}

void glu(const ExecContext& ctx, const Tensor& x, Tensor& y) {
    const int64_t cols = y.dim(-1);
    PK_CHECK(x.dim(-1) == 2 * cols && rows_of(x) == rows_of(y), kInternal, "glu: {} -> {}", shape_str(x.shape()),
             shape_str(y.shape()));
    dispatch(ctx, "glu", [&] { cpu::glu(x.data<float>(), rows_of(x), cols, y.data<float>()); }, [&] {
        PK_CUDA_OP(cuda::check_on_device(*ctx.cuda, "glu", {&x, &y});
                   cuda::glu(*ctx.cuda, x.data<float>(), rows_of(x), cols, y.data<float>()));
    });
}

void depthwise_conv1d(const ExecContext& ctx, const Tensor& x, const Tensor& w, const Tensor* bias, int pad_left,
                      Tensor& y) {
    PK_CHECK(x.rank() == 3 && w.rank() == 2 && w.dim(0) == x.dim(2) && y.shape() == x.shape(), kInternal,
             "depthwise_conv1d: x {} w {}", shape_str(x.shape()), shape_str(w.shape()));
    dispatch(ctx, "depthwise_conv1d", [&] {
        cpu::depthwise_conv1d(x.data<float>(), w.data<float>(), bias ? bias->data<float>() : nullptr, x.dim(0),
                              x.dim(1), x.dim(2), w.dim(1), pad_left, y.data<float>());
    }, [&] {
        PK_CUDA_OP(cuda::check_on_device(*ctx.cuda, "depthwise_conv1d", {&x, &y});
                   cuda::depthwise_conv1d(*ctx.cuda, x.data<float>(), cuda::weight_f32(*ctx.cuda, w),
                                          bias ? cuda::weight_f32(*ctx.cuda, *bias) : nullptr, x.dim(0), x.dim(1),
                                          x.dim(2), w.dim(1), pad_left, y.data<float>()));
    });
}

void rel_pos_attention(const ExecContext& ctx, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& p,
                       const Tensor& pos_bias_u, const Tensor& pos_bias_v, const AttentionParams& params,
                       Tensor& out) {
    PK_CHECK(q.rank() == 3 && k.rank() == 3 && v.shape() == k.shape() && out.shape() == q.shape() &&
                 k.dim(0) == q.dim(0) && k.dim(2) == q.dim(2),
             kInternal, "attention: q {} k {} v {}", shape_str(q.shape()), shape_str(k.shape()), shape_str(v.shape()));
    const int64_t d_model = q.dim(2);
    const int64_t n_key = k.dim(1);
    const int64_t pos_first = params.pos_first >= 0 ? params.pos_first : n_key - 1;
    // Rows needed: the largest and smallest distance any allowed (query, key) pair can have.
    const bool chunked = params.att_chunk > 0;
    const int64_t d_hi = !chunked && params.att_left >= 0 ? std::min<int64_t>(params.att_left, n_key - 1) : n_key - 1;
    const int64_t d_lo =
        !chunked && params.att_right >= 0 ? -std::min<int64_t>(params.att_right, n_key - 1) : -(n_key - 1);
    PK_CHECK(p.rank() == 2 && p.dim(1) == d_model && pos_first >= d_hi && pos_first - d_lo < p.dim(0), kInternal,
             "attention: p {} (first distance {}) does not cover distances {}..{}", shape_str(p.shape()), pos_first,
             d_hi, d_lo);
    PK_CHECK(d_model % params.n_heads == 0 && pos_bias_u.numel() == d_model && pos_bias_v.numel() == d_model,
             kInternal, "attention: bad heads/biases");
    PK_CHECK(params.n_cache >= 0 && params.n_cache + q.dim(1) == n_key, kInternal,
             "attention: {} cached + {} queries != {} keys", params.n_cache, q.dim(1), n_key);
    cpu::AttentionArgs a{q.dim(0), q.dim(1), n_key, params.n_heads, d_model / params.n_heads, params.n_cache,
                         params.att_left, params.att_right, params.att_chunk, params.att_left_chunks, pos_first, params.key_begin, params.key_end, params.q_valid};
    PK_CHECK(out.dtype() == DType::kF32 || out.dtype() == gemm_input_dtype(ctx), kInternal,
             "attention: {} output on {}", dtype_name(out.dtype()), ctx.device.str());
    dispatch(ctx, "rel_pos_attention", [&] {
        cpu::rel_pos_attention(a, q.data<float>(), k.data<float>(), v.data<float>(), p.data<float>(),
                               pos_bias_u.data<float>(), pos_bias_v.data<float>(), out.data<float>());
    }, [&] {
        PK_CUDA_OP(cuda::check_on_device(*ctx.cuda, "rel_pos_attention", {&q, &k, &v, &p, &out});
                   cuda::AttentionArgs ca{a.batch,     a.n_query,   a.n_key,           a.n_heads,   a.d_head,
                                          a.n_cache,   a.att_left,  a.att_right,       a.att_chunk, a.att_left_chunks,
                                          a.pos_first, a.key_begin, a.key_end,         a.q_valid,
                                          p.dim(0)};
                   cuda::rel_pos_attention(*ctx.cuda, ctx.precision, ca, q.data<float>(), k.data<float>(),
                                           v.data<float>(), p.data<float>(), cuda::weight_f32(*ctx.cuda, pos_bias_u),
                                           cuda::weight_f32(*ctx.cuda, pos_bias_v), out.raw(), out.dtype()));
    });
}

void rel_positions(int64_t first, int64_t n, int d_model, Tensor& out) {
    PK_CHECK(out.rank() == 2 && out.dim(0) == n && out.dim(1) == d_model && d_model % 2 == 0, kInternal,
             "rel_positions: out {}", shape_str(out.shape()));
    // NeMo PositionalEncoding.create_pe, in float32: div = exp(2i · -(ln 10000 / d)), pe = sin/cos(p · div).
    const float neg_log = static_cast<float>(-(std::log(10000.0) / d_model));
    std::vector<float> div(static_cast<size_t>(d_model / 2));
    for (int i = 0; i < d_model / 2; ++i) div[i] = std::exp(static_cast<float>(2 * i) * neg_log);
    float* o = out.data<float>();
#pragma omp parallel for if (n * d_model > 65536)
    for (int64_t r = 0; r < n; ++r) {
        const float pos = static_cast<float>(first - r);
        for (int i = 0; i < d_model / 2; ++i) {
            const float arg = pos * div[i];
            o[r * d_model + 2 * i] = std::sin(arg);
            o[r * d_model + 2 * i + 1] = std::cos(arg);
        }
    }
}

}  // namespace parakeet::ops

namespace parakeet::ops {
void conv2d_3x3_s2(const ExecContext& ctx, const Tensor& x, const Tensor& w, const Tensor& bias, bool depthwise,
                   int pad_lo, Tensor& y) {
    const int64_t c_in = x.dim(0), t = x.dim(1), f = x.dim(2), c_out = w.dim(0);
    PK_CHECK(x.rank() == 3 && w.rank() == 4 && w.dim(1) == 1 && w.dim(2) == 3 && w.dim(3) == 3 &&
                 bias.numel() == c_out && (depthwise ? c_in == c_out : c_in == 1),
             kInternal, "conv2d_3x3_s2: x {} w {}", shape_str(x.shape()), shape_str(w.shape()));
    PK_CHECK(pad_lo == 1 || pad_lo == 2, kInternal, "conv2d_3x3_s2: pad {}", pad_lo);
    PK_CHECK(y.shape() == (Shape{c_out, conv3x3_s2_size(t, pad_lo), conv3x3_s2_size(f, pad_lo)}), kInternal,
             "conv2d_3x3_s2: y {}",
             shape_str(y.shape()));
    dispatch(ctx, "conv2d_3x3_s2", [&] {
        cpu::conv2d_3x3_s2(x.data<float>(), c_in, t, f, w.data<float>(), bias.data<float>(), c_out, depthwise, pad_lo,
                           y.data<float>());
    }, [&] {
        PK_CUDA_OP(cuda::check_on_device(*ctx.cuda, "conv2d_3x3_s2", {&x, &y});
                   cuda::conv2d_3x3_s2(*ctx.cuda, x.data<float>(), c_in, t, f, cuda::weight_f32(*ctx.cuda, w),
                                       cuda::weight_f32(*ctx.cuda, bias), c_out, depthwise, pad_lo,
                                       y.data<float>()));
    });
}

namespace {
void check_act_out(const ExecContext& ctx, const Tensor& y, const char* op) {
    PK_CHECK(y.dtype() == DType::kF32 || y.dtype() == gemm_input_dtype(ctx), kInternal, "{}: {} output on {}", op,
             dtype_name(y.dtype()), ctx.device.str());
}
}  // namespace

void subsample_front(const ExecContext& ctx, const Tensor& x, const int* lengths, const Tensor& w0, const Tensor& b0,
                     const Tensor& w1, const Tensor& b1, int pad_lo, Tensor& y) {
    const int64_t c = w0.dim(0);
    PK_CHECK(x.rank() == 3 && w0.rank() == 4 && w0.dim(1) == 1 && w0.dim(2) == 3 && w0.dim(3) == 3 &&
                 w1.shape() == w0.shape() && b0.numel() == c && b1.numel() == c && (pad_lo == 1 || pad_lo == 2),
             kInternal, "subsample_front: x {} w0 {} w1 {}", shape_str(x.shape()), shape_str(w0.shape()),
             shape_str(w1.shape()));
    const int64_t batch = x.dim(0), t = x.dim(1), f = x.dim(2), f1 = conv3x3_s2_size(f, pad_lo);
    const int64_t f2 = conv3x3_s2_size(f1, pad_lo), t2 = conv3x3_s2_size(conv3x3_s2_size(t, pad_lo), pad_lo);
    PK_CHECK(x.dtype() == DType::kF32 && y.shape() == (Shape{batch, t2, f2, c}), kInternal, "subsample_front: y {}",
             shape_str(y.shape()));
    check_act_out(ctx, y, "subsample_front");
    for (int64_t b = 0; b < batch; ++b)
        PK_CHECK(lengths[b] >= 0 && lengths[b] <= t, kInternal, "subsample_front: length {}", lengths[b]);
    dispatch(ctx, "subsample_front", [&] {
        cpu::subsample_front(x.data<float>(), lengths, batch, t, f, w0.data<float>(), b0.data<float>(),
                             w1.data<float>(), b1.data<float>(), c, pad_lo, t2, f1, f2, y.data<float>());
    }, [&] {
        PK_CUDA_OP(cuda::check_on_device(*ctx.cuda, "subsample_front", {&x, &y});
                   cuda::subsample_front(*ctx.cuda, x.data<float>(), lengths, batch, t, f,
                                         cuda::weight_f32(*ctx.cuda, w0), cuda::weight_f32(*ctx.cuda, b0),
                                         cuda::weight_f32(*ctx.cuda, w1), cuda::weight_f32(*ctx.cuda, b1), c, pad_lo,
                                         t2, f1, f2, y.raw(), y.dtype()));
    });
}

void relu_depthwise_conv2d_s2(const ExecContext& ctx, const Tensor& x, const Tensor* in_bias, const int* lengths,
                              const Tensor& w, const Tensor& bias, int pad_lo, Tensor& y) {
    PK_CHECK(x.rank() == 4 && x.dtype() == DType::kF32 && w.rank() == 4 && w.dim(0) == x.dim(3) && w.dim(1) == 1 &&
                 w.dim(2) == 3 && w.dim(3) == 3 && bias.numel() == x.dim(3) && (pad_lo == 1 || pad_lo == 2),
             kInternal, "relu_depthwise_conv2d_s2: x {} w {}", shape_str(x.shape()), shape_str(w.shape()));
    const int64_t batch = x.dim(0), t = x.dim(1), f = x.dim(2), c = x.dim(3);
    const int64_t t_out = conv3x3_s2_size(t, pad_lo), f_out = conv3x3_s2_size(f, pad_lo);
    PK_CHECK(!in_bias || in_bias->numel() == c, kInternal, "relu_depthwise_conv2d_s2: input bias of {}",
             in_bias->numel());
    PK_CHECK(y.shape() == (Shape{batch, t_out, f_out, c}), kInternal, "relu_depthwise_conv2d_s2: y {}",
             shape_str(y.shape()));
    check_act_out(ctx, y, "relu_depthwise_conv2d_s2");
    for (int64_t b = 0; b < batch; ++b)
        PK_CHECK(lengths[b] >= 0 && lengths[b] <= t, kInternal, "relu_depthwise_conv2d_s2: length {}", lengths[b]);
    dispatch(ctx, "relu_depthwise_conv2d_s2", [&] {
        cpu::relu_depthwise_conv2d_s2(x.data<float>(), in_bias ? in_bias->data<float>() : nullptr, lengths, batch, t,
                                      f, c, w.data<float>(), bias.data<float>(), pad_lo, t_out, f_out,
                                      y.data<float>());
    }, [&] {
        PK_CUDA_OP(cuda::check_on_device(*ctx.cuda, "relu_depthwise_conv2d_s2", {&x, &y});
                   cuda::relu_depthwise_conv2d_s2(*ctx.cuda, x.data<float>(),
                                                  in_bias ? cuda::weight_f32(*ctx.cuda, *in_bias) : nullptr, lengths,
                                                  batch, t, f, c,
                                                  cuda::weight_f32(*ctx.cuda, w), cuda::weight_f32(*ctx.cuda, bias),
                                                  pad_lo, t_out, f_out, y.raw(), y.dtype()));
    });
}

void relu_to(const ExecContext& ctx, const Tensor& x, const Tensor* bias, Tensor& y) {
    const int64_t c = bias ? bias->numel() : 1;
    PK_CHECK(x.dtype() == DType::kF32 && x.numel() == y.numel() && c > 0 && x.numel() % c == 0, kInternal,
             "relu_to: {} -> {} (bias of {})", shape_str(x.shape()), shape_str(y.shape()), c);
    check_act_out(ctx, y, "relu_to");
    dispatch(ctx, "relu_to", [&] {
        const float* xs = x.data<float>();
        const float* bs = bias ? bias->data<float>() : nullptr;
        float* ys = y.data<float>();
        for (int64_t i = 0; i < x.numel(); ++i) ys[i] = std::max(xs[i] + (bs ? bs[i % c] : 0.f), 0.f);
    }, [&] {
        PK_CUDA_OP(cuda::check_on_device(*ctx.cuda, "relu_to", {&x, &y});
                   cuda::relu_to(*ctx.cuda, x.data<float>(), bias ? cuda::weight_f32(*ctx.cuda, *bias) : nullptr, c,
                                 x.numel(), y.raw(), y.dtype()));
    });
}

}  // namespace parakeet::ops

namespace parakeet::ops {

void add_row_bias_(const ExecContext& ctx, Tensor& y, const Tensor& bias) {
    PK_CHECK(y.rank() == 2 && bias.numel() == y.dim(0), kInternal, "add_row_bias: y {} bias {}",
             shape_str(y.shape()), shape_str(bias.shape()));
    dispatch(ctx, "add_row_bias", [&] { cpu::add_row_bias(y.data<float>(), bias.data<float>(), y.dim(0), y.dim(1)); },
             [&] {
                 PK_CUDA_OP(cuda::check_on_device(*ctx.cuda, "add_row_bias", {&y});
                            cuda::add_row_bias(*ctx.cuda, y.data<float>(), cuda::weight_f32(*ctx.cuda, bias),
                                               y.dim(0), y.dim(1)));
             });
}

void scale_(const ExecContext& ctx, Tensor& x, float alpha) {
    dispatch(ctx, "scale", [&] { cpu::scale(x.data<float>(), alpha, x.numel()); }, [&] {
        PK_CUDA_OP(cuda::check_on_device(*ctx.cuda, "scale", {&x});
                   cuda::scale(*ctx.cuda, x.data<float>(), alpha, x.numel()));
    });
}

void flatten_channels(const ExecContext& ctx, const Tensor& x, Tensor& y) {
    PK_CHECK(x.rank() == 3 && y.rank() == 2 && y.dim(0) == x.dim(1) && y.dim(1) == x.dim(0) * x.dim(2), kInternal,
             "flatten_channels: {} -> {}", shape_str(x.shape()), shape_str(y.shape()));
    dispatch(ctx, "flatten_channels",
             [&] { cpu::flatten_channels(x.data<float>(), x.dim(0), x.dim(1), x.dim(2), y.data<float>()); },
             [&] {
                 PK_CUDA_OP(cuda::check_on_device(*ctx.cuda, "flatten_channels", {&x, &y});
                            cuda::flatten_channels(*ctx.cuda, x.data<float>(), x.dim(0), x.dim(1), x.dim(2),
                                                   y.data<float>()));
             });
}

void zero_after_lengths_(const ExecContext& ctx, Tensor& x, const int* lengths) {
    PK_CHECK(x.rank() == 3, kInternal, "zero_after_lengths: x {}", shape_str(x.shape()));
    dispatch(ctx, "zero_after_lengths",
             [&] { cpu::zero_after_lengths(x.data<float>(), lengths, x.dim(0), x.dim(1), x.dim(2)); },
             [&] {
                 PK_CUDA_OP(cuda::check_on_device(*ctx.cuda, "zero_after_lengths", {&x});
                            cuda::zero_after_lengths(*ctx.cuda, x.data<float>(), lengths, x.dim(0), x.dim(1),
                                                     x.dim(2)));
             });
}

void copy_(const ExecContext& ctx, Tensor& dst, const Tensor& src) {
    PK_CHECK(dst.numel() == src.numel() && dst.dtype() == src.dtype(), kInternal, "copy: {} <- {}",
             shape_str(dst.shape()), shape_str(src.shape()));
    if (!src.nbytes()) return;
    if (dst.is_cpu() && src.is_cpu()) {
        std::memcpy(dst.raw(), src.raw(), src.nbytes());
        return;
    }
    (void)ctx;
    const DeviceType type = dst.is_cpu() ? src.device().type : dst.device().type;
    device_memory(type).copy(dst.raw(), dst.device(), src.raw(), src.device(), src.nbytes());
}

}  // namespace parakeet::ops
