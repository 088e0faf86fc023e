// GEMM through cuBLAS(Lt), and the linear layer built on it.
//
// Each GEMM shape is tuned once per context: cuBLASLt's heuristic proposes up to kTuneCandidates algorithms, each is
// timed on scratch operands of the call's shape and alignment (a spin kernel holds the stream while the runs are
// queued, so the events time the GPU, not the launches), and the fastest is kept for every later call of that shape.
// The heuristic's first choice is among the candidates. A shape first met during a graph capture cannot be timed
// there: it runs cublasGemmEx's choice, is queued, and tuned after the capture (run_graph then records the graph
// again). PARAKEET_NO_GEMM_TUNING=1: cublasGemmEx throughout (the A/B switch); PARAKEET_GEMM_TUNING_LOG=1 prints
// each shape's heuristic and tuned times.
#include <array>
#include <limits>
#include <map>
#include <utility>
#include <vector>

#include "backends/cuda/context_impl.h"
#include "backends/cuda/cuda_ops.h"
#include "backends/cuda/kernels.h"
#include "core/env.h"
#include "core/error.h"

namespace parakeet::cuda {

// One tuned shape: the cuBLASLt descriptors (owned) and the chosen algorithm.
struct GemmPlan {
    cublasLtMatmulDesc_t desc = nullptr;
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
    cublasLtMatmulAlgo_t algo{};
    float tuned_us = 0, default_us = 0;  // the chosen algorithm's time (0: none runs) and the heuristic's first's

    GemmPlan() = default;
    GemmPlan(const GemmPlan&) = delete;
    GemmPlan& operator=(const GemmPlan&) = delete;
    GemmPlan(GemmPlan&& o) noexcept
        : desc(std::exchange(o.desc, nullptr)),
          a(std::exchange(o.a, nullptr)),
          b(std::exchange(o.b, nullptr)),
          c(std::exchange(o.c, nullptr)),
          algo(o.algo),
          tuned_us(o.tuned_us),
          default_us(o.default_us) {}
    ~GemmPlan() {
        if (a) (void)cublasLtMatrixLayoutDestroy(a);
        if (b) (void)cublasLtMatrixLayoutDestroy(b);
        if (c) (void)cublasLtMatrixLayoutDestroy(c);
        if (desc) (void)cublasLtMatmulDescDestroy(desc);
    }
};

// What tuning needs of a call: everything but the operands' addresses (their alignments are in the key).
struct GemmShape {
    cublasComputeType_t compute;
    cublasOperation_t op_a, op_b;
    int64_t m, n, k;
    DType a_dtype, b_dtype, c_dtype;
    int64_t lda, ldb, ldc, stride_a, stride_b, stride_c, batch;
    int64_t align_a, align_b, align_c;
    float beta;
};

struct GemmPlans {
    // Key: operations, sizes, leading dimensions, strides, batch, data types, compute type, operand alignments.
    using Key = std::array<int64_t, 20>;
    std::map<Key, GemmPlan> plans;
    std::vector<std::pair<Key, GemmShape>> pending;  // met during a capture, tuned after it
    // Scratch operands for the timed runs (device, grown on demand).
    void* arena[3] = {nullptr, nullptr, nullptr};
    size_t arena_bytes[3] = {0, 0, 0};
    ~GemmPlans() {
        for (void* a : arena)
            if (a) (void)cudaFree(a);
    }
};

namespace {

constexpr int kTuneCandidates = 8;
constexpr int kTuneReps = 3;

cudaDataType cuda_type(DType dtype) {
    switch (dtype) {
        case DType::kF32: return CUDA_R_32F;
        case DType::kF16: return CUDA_R_16F;
        case DType::kBF16: return CUDA_R_16BF;
        case DType::kF64:
        case DType::kI64:
        case DType::kI32:
        case DType::kI16:
        case DType::kI8:
        case DType::kU8:
        case DType::kBool: break;
    }
    PK_THROW(kInternal, "gemm: unsupported dtype {}", dtype_name(dtype));
}

cublasComputeType_t compute_type(Precision precision, DType inputs) {
    if (inputs != DType::kF32) return CUBLAS_COMPUTE_32F;  // 16-bit inputs, fp32 accumulation
    switch (precision) {
        case Precision::kF32: return CUBLAS_COMPUTE_32F;
        case Precision::kTF32: return CUBLAS_COMPUTE_32F_FAST_TF32;
        case Precision::kF16: return CUBLAS_COMPUTE_32F_FAST_16F;
        case Precision::kBF16: return CUBLAS_COMPUTE_32F_FAST_16BF;
    }
    return CUBLAS_COMPUTE_32F;
}

int to_int(int64_t v, const char* what) {
    PK_CHECK(v >= 0 && v <= std::numeric_limits<int>::max(), kInternal, "gemm: {} = {} out of range", what, v);
    return static_cast<int>(v);
}

}  // namespace

void gemm(CudaContext& ctx, Precision precision, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
          float alpha, const GemmOperand& a, const GemmOperand& b, float beta, float* c, int64_t ldc,
          int64_t stride_c, int64_t batch) {
    gemm_to(ctx, precision, trans_a, trans_b, m, n, k, alpha, a, b, beta, c, DType::kF32, ldc, stride_c, batch);
}

namespace {

// The largest power of two (up to 256) dividing the address: cuBLASLt's algorithms state the alignment they need.
int64_t alignment(const void* p) {
    const auto v = reinterpret_cast<uintptr_t>(p);
    int64_t a = 256;
    while (a > 1 && v % static_cast<uintptr_t>(a) != 0) a /= 2;
    return a;
}

// Builds the plan's descriptors for column-major C[n, m] = op_b(B) · op_a(A) (gemm_to's operand swap).
void make_descriptors(GemmPlan& p, const GemmShape& g) {
    PK_CUBLAS_CHECK(cublasLtMatmulDescCreate(&p.desc, g.compute, CUDA_R_32F));
    // cuBLASLt's A is our B (op_b), its B our A (op_a).
    PK_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSA, &g.op_b, sizeof(g.op_b)));
    PK_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSB, &g.op_a, sizeof(g.op_a)));
    auto layout = [&](cublasLtMatrixLayout_t& l, DType dtype, int64_t rows, int64_t cols, int64_t ld, int64_t stride) {
        PK_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&l, cuda_type(dtype), static_cast<uint64_t>(rows),
                                                   static_cast<uint64_t>(cols), ld));
        if (g.batch > 1) {
            const int32_t count = static_cast<int32_t>(g.batch);
            PK_CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count, sizeof(count)));
            PK_CUBLAS_CHECK(
                cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride, sizeof(stride)));
        }
    };
    const bool tb = g.op_b != CUBLAS_OP_N, ta = g.op_a != CUBLAS_OP_N;
    layout(p.a, g.b_dtype, tb ? g.k : g.n, tb ? g.n : g.k, g.ldb, g.stride_b);
    layout(p.b, g.a_dtype, ta ? g.m : g.k, ta ? g.k : g.m, g.lda, g.stride_a);
    layout(p.c, g.c_dtype, g.n, g.m, g.ldc, g.stride_c);
}

// Bytes a strided batch of `batch` column-major matrices [rows, cols] with leading dimension ld spans.
size_t extent_bytes(int64_t rows, int64_t cols, int64_t ld, int64_t stride, int64_t batch, DType dtype) {
    const int64_t elems = (batch > 1 ? stride * (batch - 1) : 0) + ld * (cols - 1) + rows;
    return static_cast<size_t>(elems) * dtype_size(dtype);
}

void* arena(GemmPlans& plans, int i, size_t bytes) {
    if (bytes > plans.arena_bytes[i]) {
        if (plans.arena[i]) PK_CUDA_CHECK(cudaFree(plans.arena[i]));
        plans.arena[i] = nullptr;
        plans.arena_bytes[i] = 0;
        PK_CUDA_CHECK(cudaMalloc(&plans.arena[i], bytes));
        PK_CUDA_CHECK(cudaMemset(plans.arena[i], 0, bytes));
        plans.arena_bytes[i] = bytes;
    }
    return plans.arena[i];
}

// Tunes one shape (not during a capture): the heuristic's candidates, each timed over kTuneReps runs on arena
// operands. The plan has no algorithm (tuned_us 0) when cuBLASLt offers nothing that runs.
GemmPlan tune(CudaContext& ctx, GemmPlans& plans, const GemmShape& g, int* chosen) {
    GemmPlan p;
    make_descriptors(p, g);
    cublasLtMatmulPreference_t pref = nullptr;
    PK_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    const uint64_t ws = ctx.cublas_workspace_bytes;
    const uint32_t align[4] = {static_cast<uint32_t>(g.align_b), static_cast<uint32_t>(g.align_a),
                               static_cast<uint32_t>(g.align_c), static_cast<uint32_t>(g.align_c)};
    const cublasLtMatmulPreferenceAttributes_t attr[4] = {
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES};
    cublasStatus_t st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws));
    for (int i = 0; i < 4 && st == CUBLAS_STATUS_SUCCESS; ++i)
        st = cublasLtMatmulPreferenceSetAttribute(pref, attr[i], &align[i], sizeof(align[i]));
    cublasLtMatmulHeuristicResult_t results[kTuneCandidates];
    int n_results = 0;
    if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatmulAlgoGetHeuristic(ctx.cublas_lt, p.desc, p.a, p.b, p.c, p.c, pref, kTuneCandidates, results,
                                            &n_results);
    (void)cublasLtMatmulPreferenceDestroy(pref);
    *chosen = -1;
    if (st != CUBLAS_STATUS_SUCCESS || n_results == 0) return p;

    const bool tb = g.op_b != CUBLAS_OP_N, ta = g.op_a != CUBLAS_OP_N;
    const void* b = arena(plans, 0, extent_bytes(tb ? g.k : g.n, tb ? g.n : g.k, g.ldb, g.stride_b, g.batch, g.b_dtype));
    const void* a = arena(plans, 1, extent_bytes(ta ? g.m : g.k, ta ? g.k : g.m, g.lda, g.stride_a, g.batch, g.a_dtype));
    void* c = arena(plans, 2, extent_bytes(g.n, g.m, g.ldc, g.stride_c, g.batch, g.c_dtype));
    cudaEvent_t start = nullptr, stop = nullptr;
    PK_CUDA_CHECK(cudaEventCreate(&start));
    PK_CUDA_CHECK(cudaEventCreate(&stop));
    const Launch l{ctx.stream, ctx.n_sms};
    const float alpha = 1.f;
    float best = std::numeric_limits<float>::infinity();
    for (int i = 0; i < n_results; ++i) {
        if (results[i].state != CUBLAS_STATUS_SUCCESS || results[i].workspaceSize > ws) continue;
        auto run = [&] {
            return cublasLtMatmul(ctx.cublas_lt, p.desc, &alpha, b, p.a, a, p.b, &g.beta, c, p.c, c, p.c,
                                  &results[i].algo, ctx.cublas_workspace, ws, ctx.stream);
        };
        if (run() != CUBLAS_STATUS_SUCCESS) continue;  // warm-up; an algorithm that fails is skipped
        kernels::spin(l, 200000);  // 0.2 ms: the timed runs are queued meanwhile
        PK_CUDA_CHECK(cudaEventRecord(start, ctx.stream));
        bool ok = true;
        for (int r = 0; r < kTuneReps && ok; ++r) ok = run() == CUBLAS_STATUS_SUCCESS;
        PK_CUDA_CHECK(cudaEventRecord(stop, ctx.stream));
        PK_CUDA_CHECK(cudaEventSynchronize(stop));
        float ms = 0;
        PK_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
        const float us = ok ? ms * 1000.f / kTuneReps : std::numeric_limits<float>::infinity();
        if (i == 0) p.default_us = us;
        if (us < best) {
            best = us;
            *chosen = i;
        }
    }
    (void)cudaEventDestroy(start);
    (void)cudaEventDestroy(stop);
    if (*chosen < 0) return p;
    p.algo = results[*chosen].algo;
    p.tuned_us = best;
    static const bool log = env_switch("PARAKEET_GEMM_TUNING_LOG");
    if (log)
        fmt::print(stderr, "gemm tuning: m {} n {} k {} batch {} {}: heuristic's first {:.1f} us, chosen #{} of {} {:.1f} us\n",
                   g.m, g.n, g.k, g.batch, dtype_name(g.a_dtype), p.default_us, *chosen, n_results, best);
    return p;
}

GemmPlans& plans_of(CudaContext& ctx) {
    if (!ctx.gemm_plans) ctx.gemm_plans = std::make_shared<GemmPlans>();
    return *ctx.gemm_plans;
}

// The tuned plan of a shape, or null: during a capture (the shape is queued for tuning after it), or when
// cuBLASLt offers nothing for it.
const GemmPlan* tuned_plan(CudaContext& ctx, const GemmShape& g) {
    GemmPlans& plans = plans_of(ctx);
    GemmPlans::Key key{g.op_a,     g.op_b,     g.m,        g.n,       g.k,       g.lda,
                       g.ldb,      g.ldc,      g.stride_a, g.stride_b, g.stride_c, g.batch,
                       static_cast<int64_t>(g.a_dtype), static_cast<int64_t>(g.b_dtype),
                       static_cast<int64_t>(g.c_dtype), g.compute, g.align_a, g.align_b, g.align_c,
                       g.beta == 0.f ? 0 : 1};
    auto it = plans.plans.find(key);
    if (it == plans.plans.end()) {
        if (ctx.capturing) {
            bool queued = false;
            for (const auto& [k, shape] : plans.pending) queued = queued || k == key;
            if (!queued) plans.pending.emplace_back(key, g);
            return nullptr;
        }
        int chosen = -1;
        it = plans.plans.emplace(key, tune(ctx, plans, g, &chosen)).first;
    }
    return it->second.tuned_us > 0 ? &it->second : nullptr;
}

}  // namespace

bool tune_pending_gemms(CudaContext& ctx) {
    if (!ctx.gemm_plans || ctx.gemm_plans->pending.empty()) return false;
    GemmPlans& plans = *ctx.gemm_plans;
    bool changed = false;
    for (const auto& [key, shape] : plans.pending) {
        if (plans.plans.count(key)) continue;
        int chosen = -1;
        plans.plans.emplace(key, tune(ctx, plans, shape, &chosen));
        changed = changed || chosen > 0;  // the capture ran the heuristic's first choice
    }
    plans.pending.clear();
    return changed;
}

void gemm_to(CudaContext& ctx, Precision precision, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
             float alpha, const GemmOperand& a, const GemmOperand& b, float beta, void* c, DType c_dtype, int64_t ldc,
             int64_t stride_c, int64_t batch) {
    if (m == 0 || n == 0 || batch == 0) return;
    PK_CHECK(a.dtype == b.dtype, kInternal, "gemm: A is {} but B is {}", dtype_name(a.dtype), dtype_name(b.dtype));
    // cuBLAS is column-major. A row-major matrix with leading dimension ld is, read column-major, its
    // transpose; so row-major C = op(A)·op(B) is computed as column-major Cᵀ = op(B)ᵀ·op(A)ᵀ: swap the
    // operands and m/n, keep the transpose flags and leading dimensions.
    const cublasOperation_t op_a = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
    const cublasOperation_t op_b = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
    const cublasComputeType_t compute = compute_type(precision, a.dtype);
    static const bool no_tuning = env_switch("PARAKEET_NO_GEMM_TUNING");
    if (!no_tuning && k > 0) {
        const GemmShape g{compute,  op_a,     op_b,     m,        n,          k,        a.dtype,
                          b.dtype,  c_dtype,  a.ld,     b.ld,     ldc,        a.stride, b.stride,
                          stride_c, batch,    alignment(a.data), alignment(b.data), alignment(c), beta};
        if (const GemmPlan* p = tuned_plan(ctx, g)) {
            PK_CUBLAS_CHECK(cublasLtMatmul(ctx.cublas_lt, p->desc, &alpha, b.data, p->a, a.data, p->b, &beta, c, p->c,
                                           c, p->c, &p->algo, ctx.cublas_workspace, ctx.cublas_workspace_bytes,
                                           ctx.stream));
            return;
        }
    }
    PK_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
        ctx.cublas, op_b, op_a, to_int(n, "n"), to_int(m, "m"), to_int(k, "k"), &alpha, b.data, cuda_type(b.dtype),
        to_int(b.ld, "ldb"), b.stride, a.data, cuda_type(a.dtype), to_int(a.ld, "lda"), a.stride, &beta, c,
        cuda_type(c_dtype), to_int(ldc, "ldc"), stride_c, to_int(batch, "batch"), compute, CUBLAS_GEMM_DEFAULT));
}

void gemm_batched(CudaContext& ctx, Precision precision, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                  float alpha, const float* const* a, int64_t lda, const float* const* b, int64_t ldb, float beta,
                  float* const* c, int64_t ldc, int64_t batch) {
    if (m == 0 || n == 0 || batch == 0) return;
    // Column-major swap as in gemm().
    const cublasOperation_t op_a = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
    const cublasOperation_t op_b = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
    PK_CUBLAS_CHECK(cublasGemmBatchedEx(
        ctx.cublas, op_b, op_a, to_int(n, "n"), to_int(m, "m"), to_int(k, "k"), &alpha,
        reinterpret_cast<const void* const*>(b), CUDA_R_32F, to_int(ldb, "ldb"),
        reinterpret_cast<const void* const*>(a), CUDA_R_32F, to_int(lda, "lda"), &beta,
        reinterpret_cast<void* const*>(c), CUDA_R_32F, to_int(ldc, "ldc"), to_int(batch, "batch"),
        compute_type(precision, DType::kF32), CUBLAS_GEMM_DEFAULT));
}

void linear(CudaContext& ctx, Precision precision, const float* x, const Tensor& w, const float* bias, float* y,
            int64_t m, int64_t n, int64_t k, float beta) {
    if (m == 0 || n == 0) return;
    GemmOperand a{x, DType::kF32, k};
    if (w.dtype() != DType::kF32) {
        // Tensor cores need both inputs in 16 bits: convert the activations once per call.
        void* x16 = ctx.scratch(static_cast<size_t>(m * k) * 2);
        convert_f32(ctx, x, x16, w.dtype(), m * k);
        a = GemmOperand{x16, w.dtype(), k};
    }
    gemm(ctx, precision, false, true, m, n, k, 1.f, a, GemmOperand{w.raw(), w.dtype(), k}, beta, y, n);
    if (bias) add_bias_rows(ctx, y, bias, m, n);
}

void check_on_device(const CudaContext& ctx, const char* op, std::initializer_list<const Tensor*> tensors) {
    const Device dev{DeviceType::kCUDA, ctx.device};
    for (const Tensor* t : tensors)
        PK_CHECK(!t || !t->defined() || t->device() == dev, kInternal, "op '{}': a {} tensor is on {}, not on {}",
                 op, shape_str(t->shape()), t->device().str(), dev.str());
}

const float* weight_f32(CudaContext& ctx, const Tensor& w) {
    return device_weight(ctx, w, Precision::kF32).data<float>();
}

}  // namespace parakeet::cuda

namespace parakeet::cuda {

void matmul(CudaContext& ctx, Precision precision, const float* a, const float* b, float* y, int64_t m, int64_t n,
            int64_t k, float alpha) {
    gemm(ctx, precision, false, false, m, n, k, alpha, GemmOperand{a, DType::kF32, k}, GemmOperand{b, DType::kF32, n},
         0.f, y, n);
}

}  // namespace parakeet::cuda
