// Rel-pos multi-head attention on the GPU (NeMo RelPositionMultiHeadAttention, Transformer-XL scores): cuBLAS
// computes AC = (q+u)·Kᵀ and BD = (q+v)·Pᵀ for all heads, one kernel applies the relative shift by index, the
// masks and the softmax, and cuBLAS computes softmax·V straight into the output. At fp16/bf16 with d_head 64 or 128
// the whole attention is one kernel instead (attention_fused.cu, rel_pos_attention_fused); the GEMM path serves fp32,
// tf32 and other head sizes, in two ways:
//
// - Batched (offline batches of short inputs): when every item's queries fit one block and the scores of several
//   items fit the budget, a group of items costs six launches whatever its size: the biased queries of all its
//   rows, a setup kernel (GEMM pointer arrays, per-item key ranges to the device), AC as one pointer-array GEMM
//   over items x heads, BD as one GEMM strided over heads (P is shared, so all the group's rows form one matrix
//   per head), the softmax, and softmax·V as one pointer-array GEMM. The group spans the union of its items' keys
//   and distances; the softmax masks each row with its own item's range, so every item gets the probabilities of
//   the per-item path, and the union's other keys get probability 0 (their values enter softmax·V multiplied by
//   0, as in NeMo's own matmul over all keys).
// - Per item (everything else: long inputs, a single item, d_head not a multiple of 4): per batch item and block
//   of queries, AC and BD strided-batched over heads. Blocking mirrors cpu::rel_pos_attention, so the masking is
//   identical; the block height bounds the scores' memory for long inputs.
#include <algorithm>
#include <climits>
#include <cmath>
#include <vector>

#include "backends/cuda/context_impl.h"
#include "backends/cuda/cuda_ops.h"
#include "backends/cuda/kernels.h"
#include "core/env.h"
#include "core/error.h"
#include "ops/attention_range.h"

namespace parakeet::cuda {

namespace {

constexpr size_t kScoreBudgetBytes = 256u << 20;
// Items of one batched group at most: their key ranges go through the context's small staging buffer.
constexpr int64_t kMaxGroupItems = 1024;

size_t align256(size_t bytes) { return (bytes + 255) / 256 * 256; }
int64_t round4(int64_t n) { return (n + 3) / 4 * 4; }

// One item of the batched path: its query rows [0, n_query) as the per-item path's single block sees them.
struct ItemKeys {
    int key_begin, key_end;
    int valid_rows;  // 0 when no pair is allowed (the per-item path writes zeros, so do the zero probabilities)
    KeySpan span;
};

void unite(KeySpan& all, const KeySpan& s) {
    all.j0 = std::min(all.j0, s.j0);
    all.j1 = std::max(all.j1, s.j1);
    all.d_min = std::min(all.d_min, s.d_min);
    all.d_max = std::max(all.d_max, s.d_max);
}

// The softmax arguments the two paths share: heads, context limits, positions; the caller sets the block's shape
// and the items' key ranges.
kernels::AttentionSoftmaxArgs softmax_args(const AttentionArgs& a, int64_t nb, int64_t nk, int64_t ld, int64_t nr,
                                           int64_t j0, int64_t qpos0, int64_t r0) {
    kernels::AttentionSoftmaxArgs sa{};
    sa.n_heads = a.n_heads;
    sa.n_items = 1;
    sa.nb = nb;
    sa.nk = nk;
    sa.ld = ld;
    sa.nr = nr;
    sa.j0 = j0;
    sa.qpos0 = qpos0;
    sa.att_left = a.att_left;
    sa.att_right = a.att_right;
    sa.att_chunk = a.att_chunk;
    sa.att_left_chunks = a.att_left_chunks;
    sa.pos_first = a.pos_first;
    sa.r0 = r0;
    sa.denom = std::sqrt(static_cast<float>(a.d_head));
    return sa;
}

// The batched path (see the file comment); returns false, having queued nothing, where it does not apply.
bool rel_pos_attention_batched(CudaContext& ctx, Precision precision, const AttentionArgs& a, const float* q,
                               const float* k, const float* v, const float* p, const float* pos_bias_u,
                               const float* pos_bias_v, float* out) {
    const Launch l{ctx.stream, ctx.n_sms};
    const int64_t nh = a.n_heads, dk = a.d_head, d_model = nh * dk, nq = a.n_query;
    // d_head % 4 == 0 keeps every matrix of the pointer-array GEMMs 16-byte aligned (K, V and the output of an item
    // and head start a multiple of d_head floats apart; the score rows are padded to 4 floats), which cuBLAS cannot
    // check for pointer arrays (on the H100 it takes its align-1 kernels for them).
    if (a.batch < 2 || dk % 4 != 0) return false;
    std::vector<ItemKeys> items(static_cast<size_t>(a.batch));
    KeySpan all{INT64_MAX, INT64_MIN, INT64_MAX, INT64_MIN};
    for (int64_t b = 0; b < a.batch; ++b) {
        ItemKeys& it = items[b];
        it.key_begin = a.key_begin ? a.key_begin[b] : 0;
        it.key_end = a.key_end ? a.key_end[b] : static_cast<int>(a.n_key);
        it.valid_rows = static_cast<int>(std::clamp<int64_t>(a.q_valid ? a.q_valid[b] : nq, 0, nq));
        if (attention_block_span(a.n_cache, it.valid_rows, it.valid_rows, it.key_begin, it.key_end, a.att_left,
                                 a.att_right, a.att_chunk, a.att_left_chunks, nullptr, nullptr, it.span)) {
            unite(all, it.span);
        } else {
            it.valid_rows = 0;
        }
    }
    if (all.j1 <= all.j0) {  // no item has an allowed pair
        PK_CUDA_CHECK(cudaMemsetAsync(out, 0, static_cast<size_t>(a.batch * nq * d_model) * sizeof(float),
                                      ctx.stream));
        return true;
    }
    // Group size from the union of all items (every group's own union lies within it): qu, qv, AC and BD rows.
    const int64_t item_floats = nh * nq * (2 * dk + round4(all.j1 - all.j0) + all.d_max - all.d_min + 1);
    const int64_t group = std::min({a.batch, kMaxGroupItems,
                                    static_cast<int64_t>(kScoreBudgetBytes / sizeof(float)) / item_floats});
    if (group < 2) return false;
    // Scratch: five pointer arrays [H · group] and the items' key ranges [group][3], then the floats.
    const size_t head_bytes = align256(static_cast<size_t>(5 * nh * group) * sizeof(void*) +
                                       static_cast<size_t>(3 * group) * sizeof(int));
    char* base = static_cast<char*>(ctx.scratch(head_bytes + static_cast<size_t>(group * item_floats) * sizeof(float)));
    const auto array = [&](int i) { return base + static_cast<size_t>(i * nh * group) * sizeof(void*); };
    kernels::AttentionBatchSetup setup{};
    setup.qu_ptrs = reinterpret_cast<const float**>(array(0));
    setup.k_ptrs = reinterpret_cast<const float**>(array(1));
    setup.v_ptrs = reinterpret_cast<const float**>(array(2));
    setup.ac_ptrs = reinterpret_cast<float**>(array(3));
    setup.out_ptrs = reinterpret_cast<float**>(array(4));
    setup.items = reinterpret_cast<int*>(array(5));
    float* floats = reinterpret_cast<float*>(base + head_bytes);
    std::vector<int> ranges;
    for (int64_t b0 = 0; b0 < a.batch; b0 += group) {
        const int64_t g = std::min(group, a.batch - b0);
        KeySpan span{INT64_MAX, INT64_MIN, INT64_MAX, INT64_MIN};
        ranges.clear();
        for (int64_t b = b0; b < b0 + g; ++b) {
            const ItemKeys& it = items[b];
            if (it.valid_rows > 0) unite(span, it.span);
            ranges.insert(ranges.end(), {it.key_begin, it.key_end, it.valid_rows});
        }
        float* ob = out + b0 * nq * d_model;
        if (span.j1 <= span.j0) {
            PK_CUDA_CHECK(
                cudaMemsetAsync(ob, 0, static_cast<size_t>(g * nq * d_model) * sizeof(float), ctx.stream));
            continue;
        }
        const int64_t j0 = span.j0, nk = span.j1 - span.j0, ld = round4(nk);
        const int64_t r0 = a.pos_first - span.d_max, nr = span.d_max - span.d_min + 1;
        const int64_t rows = g * nq;  // the group's query rows, item-major as in q
        // [H, g, nq, dk] twice, then AC [H, g, nq, ld] and BD [H, g, nq, nr].
        float* qu = floats;
        float* qv = qu + nh * rows * dk;
        float* ac = qv + nh * rows * dk;
        float* bd = ac + nh * rows * ld;
        kernels::attention_bias_queries(l, q + b0 * nq * d_model, d_model, nh, dk, rows, pos_bias_u, pos_bias_v, qu,
                                        qv);
        setup.n_heads = nh;
        setup.n_items = g;
        setup.nq = nq;
        setup.n_key = a.n_key;
        setup.d_head = dk;
        setup.ld = ld;
        setup.j0 = j0;
        setup.qu = qu;
        setup.k = k + b0 * a.n_key * d_model;
        setup.v = v + b0 * a.n_key * d_model;
        setup.ac = ac;
        setup.out = ob;
        setup.items_host = static_cast<const int*>(ctx.upload(ranges.data(), ranges.size() * sizeof(int)));
        kernels::attention_batch_setup(l, setup);
        // Per (head, item): [nq, dk] · [nk, dk]ᵀ, the item's K rows from j0 (stride d_model).
        gemm_batched(ctx, precision, false, true, nq, nk, dk, 1.f, setup.qu_ptrs, dk, setup.k_ptrs, d_model, 0.f,
                     setup.ac_ptrs, ld, nh * g);
        // Per head: all the group's rows [g · nq, dk] · [nr, dk]ᵀ.
        gemm(ctx, precision, false, true, rows, nr, dk, 1.f, GemmOperand{qv, DType::kF32, dk, rows * dk},
             GemmOperand{p + r0 * d_model, DType::kF32, d_model, dk}, 0.f, bd, nr, rows * nr, nh);
        kernels::AttentionSoftmaxArgs sa = softmax_args(a, nq, nk, ld, nr, j0, a.n_cache, r0);
        sa.n_items = g;
        sa.items = setup.items;
        kernels::attention_softmax(l, sa, ac, bd);
        // Per (head, item): out[b, i, h·dk + c] = Σ_j prob[h, b, i, j] · V[b, j0 + j, h·dk + c].
        gemm_batched(ctx, precision, false, false, nq, dk, nk, 1.f, setup.ac_ptrs, ld, setup.v_ptrs, d_model, 0.f,
                     setup.out_ptrs, d_model, nh * g);
    }
    return true;
}

// fp16/bf16 with d_head 64 or 128: the whole attention in one kernel (attention_fused.cu); returns false, having
// queued nothing, elsewhere. PARAKEET_UNFUSED_ATTENTION=1 keeps the GEMM path (A/B measurements).
bool rel_pos_attention_fused(CudaContext& ctx, Precision precision, const AttentionArgs& a, const float* q,
                             const float* k, const float* v, const float* p, const float* pos_bias_u,
                             const float* pos_bias_v, void* out, DType out_dtype) {
    static const bool unfused = env_switch("PARAKEET_UNFUSED_ATTENTION");
    if ((precision != Precision::kF16 && precision != Precision::kBF16) || unfused ||
        !kernels::fused_attention_supported(a.d_head) || a.n_key >= INT_MAX / 2 || a.n_query >= INT_MAX / 2 ||
        a.n_pos >= INT_MAX / 2)
        return false;
    std::vector<int> items(static_cast<size_t>(3 * a.batch));
    for (int64_t b = 0; b < a.batch; ++b) {
        items[3 * b] = a.key_begin ? a.key_begin[b] : 0;
        items[3 * b + 1] = a.key_end ? a.key_end[b] : static_cast<int>(a.n_key);
        items[3 * b + 2] = a.q_valid ? a.q_valid[b] : static_cast<int>(a.n_query);
    }
    kernels::FusedAttentionArgs fa{};
    fa.q = q;
    fa.k = k;
    fa.v = v;
    fa.p = p;
    fa.pos_bias_u = pos_bias_u;
    fa.pos_bias_v = pos_bias_v;
    fa.out = out;
    fa.out_dtype = act_code(out_dtype);
    fa.items = static_cast<const int*>(ctx.upload(items.data(), items.size() * sizeof(int)));
    fa.batch = static_cast<int>(a.batch);
    fa.n_query = static_cast<int>(a.n_query);
    fa.n_key = static_cast<int>(a.n_key);
    fa.n_heads = static_cast<int>(a.n_heads);
    fa.d_head = static_cast<int>(a.d_head);
    fa.n_cache = static_cast<int>(a.n_cache);
    fa.n_pos = static_cast<int>(a.n_pos);
    fa.pos_first = static_cast<int>(a.pos_first);
    fa.att_left = static_cast<int>(a.att_left);
    fa.att_right = static_cast<int>(a.att_right);
    fa.att_chunk = static_cast<int>(a.att_chunk);
    fa.att_left_chunks = static_cast<int>(std::min<int64_t>(a.att_left_chunks, INT_MAX / 4));
    fa.scale = 1.f / std::sqrt(static_cast<float>(a.d_head));
    fa.n_splits = kernels::fused_attention_splits(a.batch, a.n_query, a.n_heads, a.n_key, ctx.n_sms);
    if (fa.n_splits > 1) {
        const size_t rows = static_cast<size_t>(fa.n_splits * a.batch * a.n_heads * a.n_query);
        fa.part_o = static_cast<float*>(ctx.scratch(rows * static_cast<size_t>(a.d_head + 2) * sizeof(float)));
        fa.part_ml = fa.part_o + rows * static_cast<size_t>(a.d_head);
    }
    kernels::fused_attention(Launch{ctx.stream, ctx.n_sms}, fa, precision == Precision::kF16);
    return true;
}

}  // namespace

void rel_pos_attention(CudaContext& ctx, Precision precision, const AttentionArgs& a, const float* q, const float* k,
                       const float* v, const float* p, const float* pos_bias_u, const float* pos_bias_v, void* out_any,
                       DType out_dtype) {
    const Launch l{ctx.stream, ctx.n_sms};
    if (rel_pos_attention_fused(ctx, precision, a, q, k, v, p, pos_bias_u, pos_bias_v, out_any, out_dtype)) return;
    if (out_dtype != DType::kF32) {
        // The GEMM paths write float32: through a temporary, then converted.
        const int64_t n = a.batch * a.n_query * a.n_heads * a.d_head;
        Tensor tmp = Tensor::empty({n}, DType::kF32, Device{DeviceType::kCUDA, ctx.device});
        rel_pos_attention(ctx, precision, a, q, k, v, p, pos_bias_u, pos_bias_v, tmp.data<float>(), DType::kF32);
        convert_f32(ctx, tmp.data<float>(), out_any, out_dtype, n);
        return;
    }
    float* const out = static_cast<float*>(out_any);
    const int64_t d_model = a.n_heads * a.d_head, n_key = a.n_key, dk = a.d_head, nh = a.n_heads;
    // Query block height: the scores of one block (AC and BD, all heads) within the budget.
    const int64_t per_row = 4 * nh * (2 * dk + 3 * n_key + 1);
    const int64_t block = std::clamp<int64_t>(static_cast<int64_t>(kScoreBudgetBytes) / per_row, 16, 4096);
    if (a.n_query <= block &&
        rel_pos_attention_batched(ctx, precision, a, q, k, v, p, pos_bias_u, pos_bias_v, out))
        return;
    const size_t max_bytes = static_cast<size_t>(4 * nh * block * (2 * dk + 2 * n_key + block));
    float* qu = static_cast<float*>(ctx.scratch(max_bytes));
    float* qv = qu + nh * block * dk;
    float* ac = qv + nh * block * dk;
    for (int64_t b = 0; b < a.batch; ++b) {
        const int64_t kb = a.key_begin ? a.key_begin[b] : 0;
        const int64_t ke = a.key_end ? a.key_end[b] : n_key;
        const int64_t nq_valid = a.q_valid ? a.q_valid[b] : a.n_query;
        const float* qb = q + b * a.n_query * d_model;
        const float* kb_ptr = k + b * n_key * d_model;
        const float* vb_ptr = v + b * n_key * d_model;
        float* ob = out + b * a.n_query * d_model;
        for (int64_t i0 = 0; i0 < a.n_query; i0 += block) {
            const int64_t i1 = std::min(i0 + block, a.n_query);
            const int64_t nb = i1 - i0;
            // The block spans the union of its valid rows' allowed keys (the same rule as the CPU backend), and
            // the distances those pairs reach select a contiguous range of positional rows.
            const int64_t valid_rows = std::clamp<int64_t>(nq_valid - i0, 0, nb);
            KeySpan span;
            if (!attention_block_span(a.n_cache + i0, valid_rows, valid_rows, kb, ke, a.att_left, a.att_right,
                                      a.att_chunk, a.att_left_chunks, nullptr, nullptr, span)) {
                PK_CUDA_CHECK(cudaMemsetAsync(ob + i0 * d_model, 0, static_cast<size_t>(nb * d_model) * sizeof(float),
                                              ctx.stream));
                continue;
            }
            const int64_t j0 = span.j0, nk = span.j1 - span.j0, d_max = span.d_max;
            const int64_t r0 = a.pos_first - d_max;
            const int64_t nr = d_max - span.d_min + 1;
            float* bd = ac + nh * nb * nk;
            kernels::attention_bias_queries(l, qb + i0 * d_model, d_model, nh, dk, nb, pos_bias_u, pos_bias_v, qu, qv);
            // Per head h (batch index): [nb, dk] · [nk, dk]ᵀ, K rows strided by d_model, heads by dk.
            gemm(ctx, precision, false, true, nb, nk, dk, 1.f, GemmOperand{qu, DType::kF32, dk, nb * dk},
                 GemmOperand{kb_ptr + j0 * d_model, DType::kF32, d_model, dk}, 0.f, ac, nk, nb * nk, nh);
            gemm(ctx, precision, false, true, nb, nr, dk, 1.f, GemmOperand{qv, DType::kF32, dk, nb * dk},
                 GemmOperand{p + r0 * d_model, DType::kF32, d_model, dk}, 0.f, bd, nr, nb * nr, nh);
            kernels::AttentionSoftmaxArgs sa = softmax_args(a, nb, nk, nk, nr, j0, a.n_cache + i0, r0);
            sa.key_begin = kb;
            sa.key_end = ke;
            sa.valid_rows = valid_rows;
            kernels::attention_softmax(l, sa, ac, bd);
            // out[i0 + i, h·dk + c] = Σ_j prob[h, i, j] · V[j0 + j, h·dk + c].
            gemm(ctx, precision, false, false, nb, dk, nk, 1.f, GemmOperand{ac, DType::kF32, nk, nb * nk},
                 GemmOperand{vb_ptr + j0 * d_model, DType::kF32, d_model, dk}, 0.f, ob + i0 * d_model, d_model,
                 dk, nh);
        }
    }
}

}  // namespace parakeet::cuda
