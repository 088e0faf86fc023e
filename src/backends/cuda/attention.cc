// Rel-pos multi-head attention on the GPU (NeMo RelPositionMultiHeadAttention, Transformer-XL scores):
// per batch item and block of queries, cuBLAS computes AC = (q+u)·Kᵀ and BD = (q+v)·Pᵀ for all heads
// (strided-batched over heads), one kernel applies the relative shift by index, the masks and the softmax,
// and cuBLAS computes softmax·V straight into the output. Blocking mirrors cpu::rel_pos_attention, so the
// masking is identical; the block height bounds the scores' memory for long inputs.
#include <algorithm>
#include <cmath>

#include "backends/cuda/context_impl.h"
#include "backends/cuda/cuda_ops.h"
#include "backends/cuda/kernels.h"
#include "core/error.h"
#include "ops/attention_range.h"

namespace parakeet::cuda {

namespace {
constexpr size_t kScoreBudgetBytes = 256u << 20;
}

void rel_pos_attention(CudaContext& ctx, Precision precision, const AttentionArgs& a, const float* q, const float* k,
                       const float* v, const float* p, const float* pos_bias_u, const float* pos_bias_v, float* out) {
    const Launch l{ctx.stream, ctx.n_sms};
    const int64_t d_model = a.n_heads * a.d_head, n_key = a.n_key, dk = a.d_head, nh = a.n_heads;
    // Query block height: the scores of one block (AC and BD, all heads) within the budget.
    const int64_t per_row = 4 * nh * (2 * dk + 3 * n_key + 1);
    const int64_t block = std::clamp<int64_t>(static_cast<int64_t>(kScoreBudgetBytes) / per_row, 16, 4096);
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
            kernels::AttentionSoftmaxArgs sa{nh,          nb,          nk,          nr,          j0,
                                             a.n_cache + i0, a.att_left, a.att_right, a.att_chunk, a.att_left_chunks,
                                             kb,          ke,          a.pos_first, r0,          valid_rows,
                                             std::sqrt(static_cast<float>(dk))};
            kernels::attention_softmax(l, sa, ac, bd);
            // out[i0 + i, h·dk + c] = Σ_j prob[h, i, j] · V[j0 + j, h·dk + c].
            gemm(ctx, precision, false, false, nb, dk, nk, 1.f, GemmOperand{ac, DType::kF32, nk, nb * nk},
                 GemmOperand{vb_ptr + j0 * d_model, DType::kF32, d_model, dk}, 0.f, ob + i0 * d_model, d_model,
                 dk, nh);
        }
    }
}

}  // namespace parakeet::cuda
