// Kernels of the rel-pos attention (attention.cc runs the GEMMs around them).
#include "backends/cuda/kernel_utils.cuh"
#include "ops/attention_range.h"

namespace parakeet::cuda::kernels {

namespace {

__global__ void attention_bias_queries_kernel(const float* q, int64_t d_model, int64_t n_heads, int64_t d_head,
                                              int64_t nb, const float* u, const float* v, float* qu, float* qv) {
    const int64_t n = n_heads * nb * d_head;
    for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
        const int64_t c = i % d_head, row = (i / d_head) % nb, h = i / (d_head * nb);
        const float x = q[row * d_model + h * d_head + c];
        qu[i] = x + u[h * d_head + c];
        qv[i] = x + v[h * d_head + c];
    }
}

// One block per (head, item, query row): scores = (ac + bd[rel-shift]) / denom over the row's allowed keys,
// softmax in place; keys outside [lo, hi) and rows past the item's valid ones get probability 0.
__global__ void attention_softmax_kernel(AttentionSoftmaxArgs a, float* ac, const float* bd) {
    __shared__ float shared[32];
    const int64_t hi_row = blockIdx.x;  // (h * n_items + item) * nb + i
    const int64_t i = hi_row % a.nb;
    int64_t key_begin = a.key_begin, key_end = a.key_end, valid_rows = a.valid_rows;
    if (a.items) {
        const int* item = a.items + 3 * ((hi_row / a.nb) % a.n_items);
        key_begin = item[0];
        key_end = item[1];
        valid_rows = item[2];
    }
    float* row = ac + hi_row * a.ld;
    const float* bdr = bd + hi_row * a.nr;
    const int64_t qpos = a.qpos0 + i;
    int64_t lo, hi;
    attention_key_range(qpos, key_begin, key_end, a.att_left, a.att_right, a.att_chunk, a.att_left_chunks, lo, hi);
    lo = max(lo - a.j0, int64_t{0});
    hi = min(hi - a.j0, a.nk);
    if (i >= valid_rows || hi <= lo) {
        for (int64_t j = threadIdx.x; j < a.nk; j += blockDim.x) row[j] = 0.f;
        return;
    }
    float mx = -INFINITY;
    for (int64_t j = lo + threadIdx.x; j < hi; j += blockDim.x) {
        const int64_t r = a.pos_first - (qpos - (a.j0 + j)) - a.r0;  // relative shift by index
        const float s = (row[j] + bdr[r]) / a.denom;
        row[j] = s;
        mx = fmaxf(mx, s);
    }
    mx = block_max(mx, shared);
    float sum = 0.f;
    for (int64_t j = lo + threadIdx.x; j < hi; j += blockDim.x) {
        const float e = expf(row[j] - mx);
        row[j] = e;
        sum += e;
    }
    const float inv = 1.f / block_sum(sum, shared);
    for (int64_t j = threadIdx.x; j < a.nk; j += blockDim.x) row[j] = (j >= lo && j < hi) ? row[j] * inv : 0.f;
}

__global__ void attention_batch_setup_kernel(AttentionBatchSetup a) {
    const int64_t n = a.n_heads * a.n_items, d_model = a.n_heads * a.d_head;
    const int64_t n_all = n > 3 * a.n_items ? n : 3 * a.n_items;
    for (int64_t z = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; z < n_all; z += int64_t{gridDim.x} * blockDim.x) {
        if (z < 3 * a.n_items) a.items[z] = a.items_host[z];
        if (z >= n) continue;
        const int64_t h = z / a.n_items, b = z % a.n_items;
        const int64_t kv = (b * a.n_key + a.j0) * d_model + h * a.d_head;
        a.qu_ptrs[z] = a.qu + z * a.nq * a.d_head;
        a.k_ptrs[z] = a.k + kv;
        a.v_ptrs[z] = a.v + kv;
        a.ac_ptrs[z] = a.ac + z * a.nq * a.ld;
        a.out_ptrs[z] = a.out + b * a.nq * d_model + h * a.d_head;
    }
}

}  // namespace

void attention_bias_queries(Launch l, const float* q, int64_t d_model, int64_t n_heads, int64_t d_head, int64_t nb,
                            const float* pos_bias_u, const float* pos_bias_v, float* qu, float* qv) {
    const int64_t n = n_heads * nb * d_head;
    if (n <= 0) return;
    attention_bias_queries_kernel<<<grid_for(l, n), kThreads, 0, l.stream>>>(q, d_model, n_heads, d_head, nb,
                                                                            pos_bias_u, pos_bias_v, qu, qv);
    PK_CUDA_CHECK_LAUNCH();
}

void attention_softmax(Launch l, const AttentionSoftmaxArgs& a, float* ac, const float* bd) {
    const int64_t rows = a.n_heads * a.n_items * a.nb;
    if (rows <= 0) return;
    const int threads = a.nk >= 512 ? 256 : 128;
    attention_softmax_kernel<<<static_cast<unsigned int>(rows), threads, 0, l.stream>>>(a, ac, bd);
    PK_CUDA_CHECK_LAUNCH();
}

void attention_batch_setup(Launch l, const AttentionBatchSetup& a) {
    const int64_t n = std::max(a.n_heads * a.n_items, 3 * a.n_items);
    if (a.n_items <= 0) return;
    attention_batch_setup_kernel<<<grid_for(l, n), kThreads, 0, l.stream>>>(a);
    PK_CUDA_CHECK_LAUNCH();
}

}  // namespace parakeet::cuda::kernels
