// Kernels of the batched cache-aware streaming step (see stream_kernels.h).
#include "backends/cuda/kernel_utils.cuh"
#include "backends/cuda/stream_kernels.h"
#include "ops/attention_range.h"

namespace parakeet::cuda::kernels {

namespace {

constexpr int kFieldHead = 0, kFieldLen = 1, kFieldT = 2, kFieldStarted = 3, kIntFields = 4;

__device__ __forceinline__ float* page_of(float* const* pages, int slot) { return pages[slot / kSlotsPerPage]; }
__device__ __forceinline__ int index_in_page(int slot) { return slot % kSlotsPerPage; }
__device__ __forceinline__ int* slot_ints(const SlotLayout& s, float* const* pages, int slot) {
    return reinterpret_cast<int*>(page_of(pages, slot) + s.int_offset) + index_in_page(slot) * kIntFields;
}
// Keys of `layer` as KV (s.kv_dtype's type; values follow C·D elements later).
template <typename KV>
__device__ __forceinline__ KV* slot_keys(const SlotLayout& s, float* const* pages, int slot, int64_t layer) {
    return reinterpret_cast<KV*>(page_of(pages, slot) + s.kv_offset) +
           ((int64_t{index_in_page(slot)} * s.n_layers + layer) * 2) * s.cache_rows * s.d_model;
}
__device__ __forceinline__ float* slot_time(const SlotLayout& s, float* const* pages, int slot, int64_t layer) {
    return page_of(pages, slot) + s.time_offset +
           (int64_t{index_in_page(slot)} * s.n_layers + layer) * s.time_rows * s.d_model;
}

#define PK_GRID_STRIDE_T(I, i, n) \
    for (I i = static_cast<I>(blockIdx.x) * blockDim.x + threadIdx.x; i < static_cast<I>(n); i += static_cast<I>(gridDim.x) * blockDim.x)
#define PK_GRID_STRIDE(i, n) \
    for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < (n); i += int64_t{gridDim.x} * blockDim.x)

template <typename I>
__global__ void sub_conv_first_kernel(const float* x, I batch, I t, I f, const float* w,
                                      const float* bias, I c_out, I pad_lo, const int* stage_len,
                                      I stage_stride, float* y) {
    const I t2 = (t + pad_lo - 2) / 2 + 1, f2 = (f + pad_lo - 2) / 2 + 1;
    PK_GRID_STRIDE_T(I, i, batch * c_out * t2 * f2) {
        const I fi = i % f2, ti = (i / f2) % t2, co = (i / (f2 * t2)) % c_out, b = i / (f2 * t2 * c_out);
        if (ti >= stage_len[b * stage_stride]) {
            y[i] = 0.f;
            continue;
        }
        y[i] = fmaxf(conv3x3_s2_at(x + b * t * f, w + co * 9, ti, fi, t, f, pad_lo) + bias[co], 0.f);
    }
}

template <typename I>
__global__ void sub_conv_depthwise_kernel(const float* x, I batch, I ch, I t, I f,
                                          const float* w, const float* bias, I pad_lo, float* y) {
    const I t2 = (t + pad_lo - 2) / 2 + 1, f2 = (f + pad_lo - 2) / 2 + 1;
    PK_GRID_STRIDE_T(I, i, batch * ch * t2 * f2) {
        const I fi = i % f2, ti = (i / f2) % t2, bc = i / (f2 * t2), co = bc % ch;
        y[i] = conv3x3_s2_at(x + bc * t * f, w + co * 9, ti, fi, t, f, pad_lo) + bias[co];
    }
}

template <typename I>
__global__ void bias_relu_rows_kernel(float* y, I batch, I ch, I t, I f, const float* bias,
                                      const int* stage_len, I stage_stride) {
    PK_GRID_STRIDE_T(I, i, batch * ch * t * f) {
        const I ti = (i / f) % t, co = (i / (f * t)) % ch, b = i / (f * t * ch);
        y[i] = ti < stage_len[b * stage_stride] ? fmaxf(y[i] + bias[co], 0.f) : 0.f;
    }
}

template <typename I>
__global__ void flatten_channels_batched_kernel(const float* x, I batch, I ch, I t, I f,
                                                float* y) {
    PK_GRID_STRIDE_T(I, i, batch * ch * t * f) {
        const I fi = i % f, ci = (i / f) % ch, ti = (i / (f * ch)) % t, b = i / (f * ch * t);
        y[i] = x[((b * ch + ci) * t + ti) * f + fi];
    }
}

template <typename I>
__global__ void drop_scale_rows_kernel(const float* x, I batch, I t_in, I drop, I t,
                                       I d, float alpha, const int* enc_len, float* y) {
    PK_GRID_STRIDE_T(I, i, batch * t * d) {
        const I c = i % d, ti = (i / d) % t, b = i / (d * t);
        y[i] = ti < enc_len[b] ? x[(b * t_in + ti + drop) * d + c] * alpha : 0.f;
    }
}

// One block per (item, head). The queries of a chunk are taken in groups of up to kAttQueries: every key row
// (cached or new) and value row is read once per group, not once per query, as the cached keys and values are
// the step's largest read at many streams. Per query: scores over its allowed keys (warp per key, lanes over
// the head's channels), softmax, the weighted sum of values (thread per channel); the per-query arithmetic and
// its order are those of one query at a time.
// kAttQueries is a template parameter sized to the chunk (2, 4 or 8): the per-query arrays live in registers, and
// a group larger than the chunk would cost occupancy for nothing.
// One query group of an attention block: the allowed key range [lo_q, hi_q) of queries i0 .. i0 + nq (empty past
// the item's enc_len) and the biased queries qu = q + u, qv = q + v of head h (q_rows: the item's rows of qkv at the
// head's columns, row stride 3d). The caller synchronises before reading them.
template <typename I>
__device__ __forceinline__ void attention_queries(const StreamAttentionArgs& a, int64_t c_rows, int64_t i0, int nq,
                                                  int64_t enc_len, int64_t key_begin, int64_t key_end,
                                                  const float* q_rows, int64_t d, int64_t h, int64_t dk,
                                                  const float* u, const float* v, I* lo_q, I* hi_q, float* qu,
                                                  float* qv) {
    if (threadIdx.x < nq) {
        const int64_t i = i0 + threadIdx.x;
        int64_t lo = 0, hi = 0;
        if (i < enc_len)
            attention_key_range(c_rows + i, key_begin, key_end, a.att_left, a.att_right, a.att_chunk,
                                a.att_left_chunks, lo, hi);
        lo_q[threadIdx.x] = static_cast<I>(lo);
        hi_q[threadIdx.x] = static_cast<I>(max(lo, hi));
    }
    const int dk32 = static_cast<int>(dk);  // 32-bit index math: 64-bit divisions are emulated
    for (int e = threadIdx.x; e < nq * dk32; e += blockDim.x) {
        const int qi = e / dk32, c = e % dk32;
        const float q = q_rows[(i0 + qi) * 3 * d + c];
        qu[qi * dk32 + c] = q + u[h * dk + c];
        qv[qi * dk32 + c] = q + v[h * dk + c];
    }
}

// In place: row qi of sc (stride n, keys lo_q[qi] .. hi_q[qi]) becomes exp(score - max); inv_q[qi] = 1 / its sum.
template <typename I>
__device__ __forceinline__ void softmax_rows(float* sc, int64_t n, int nq, const I* lo_q, const I* hi_q, float* red,
                                             float* inv_q) {
    for (int qi = 0; qi < nq; ++qi) {
        const int64_t m = hi_q[qi] - lo_q[qi];
        if (m <= 0) continue;
        float* row = sc + qi * n;
        float mx = -INFINITY;
        for (int64_t j = threadIdx.x; j < m; j += blockDim.x) mx = fmaxf(mx, row[j]);
        mx = block_max(mx, red);
        float sum = 0.f;
        for (int64_t j = threadIdx.x; j < m; j += blockDim.x) {
            const float e = expf(row[j] - mx);
            row[j] = e;
            sum += e;
        }
        const float total = block_sum(sum, red);  // block_sum's barriers publish row
        if (threadIdx.x == 0) inv_q[qi] = 1.f / total;
    }
}

// An attention block's cache append for its (item, head): the item's first enc_len - cache_drop new rows (at most
// the last C of them) into the ring after `head`, keys and values from qkv (q_rows: the item's rows at the head's
// columns).
template <typename KV>
__device__ __forceinline__ void append_kv(const StreamAttentionArgs& a, const float* q_rows, int64_t enc_len,
                                          int64_t head, int64_t c_rows, int64_t d, int64_t dk, KV* keys, KV* values) {
    const int keep = static_cast<int>(enc_len - a.cache_drop), c32 = static_cast<int>(c_rows);
    const int r0 = keep > c32 ? keep - c32 : 0, dk32 = static_cast<int>(dk);
    for (int e = threadIdx.x; e < (keep - r0) * dk32; e += blockDim.x) {
        const int r = r0 + e / dk32, c = e % dk32;
        int phys = static_cast<int>(head) + r;  // head < C and r < C: one wrap at most
        if (phys >= c32) phys -= c32;
        const float* src = q_rows + int64_t{r} * 3 * d + c;
        keys[phys * d + c] = from_float<KV>(src[d]);
        values[phys * d + c] = from_float<KV>(src[2 * d]);
    }
}

template <int kAttQueries, typename KV, bool kWide>
__global__ void __launch_bounds__(kWide ? 512 : 128, kWide ? 1 : 8)
    stream_attention_kernel(StreamAttentionArgs a, const float* qkv, const float* p, const float* u, const float* vbias,
                            void* out, int act_dtype, int kv_groups) {
    launch_dependents();
    wait_for_previous_kernel();
    extern __shared__ float sm[];
    __shared__ float red[32];
    __shared__ int64_t lo_q[kAttQueries], hi_q[kAttQueries];
    __shared__ float inv_q[kAttQueries];
    const SlotLayout& s = a.layout;
    const int64_t b = blockIdx.x / a.n_heads, h = blockIdx.x % a.n_heads;
    const int64_t dk = a.d_head, d = a.n_heads * dk, t = a.t, c_rows = s.cache_rows, n = c_rows + t;
    const int slot = a.items.slot[b];
    const int* ints = slot_ints(s, a.pages, slot);
    const int64_t head = ints[kFieldHead], len = ints[kFieldLen];
    KV* keys = slot_keys<KV>(s, a.pages, slot, a.layer) + h * dk;
    KV* values = keys + c_rows * d;
    const int64_t enc_len = a.items.enc_len[b];
    const int64_t key_begin = min(max(c_rows - len, int64_t{0}), n), key_end = c_rows + enc_len;
    const float denom = sqrtf(static_cast<float>(dk));
    float* qu = sm;                        // [kAttQueries][dk]
    float* qv = qu + kAttQueries * dk;     // [kAttQueries][dk]
    float* sc = qv + kAttQueries * dk;     // [kAttQueries][n]: scores, then probabilities, of keys lo..hi
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
    for (int64_t i0 = 0; i0 < t; i0 += kAttQueries) {
        const int nq = static_cast<int>(min(int64_t{kAttQueries}, t - i0));
        __syncthreads();  // the previous group's shared arrays may still be read
        attention_queries(a, c_rows, i0, nq, enc_len, key_begin, key_end, qkv + b * t * 3 * d + h * dk, d, h, dk, u,
                          vbias, lo_q, hi_q, qu, qv);
        __syncthreads();
        int64_t lo_all = n, hi_all = 0;
        for (int qi = 0; qi < nq; ++qi) {
            if (hi_q[qi] > lo_q[qi]) {
                lo_all = min(lo_all, lo_q[qi]);
                hi_all = max(hi_all, hi_q[qi]);
            }
        }
        for (int64_t j = lo_all + warp; j < hi_all; j += n_warps) {
            // Key j: a cached row (KV) or one of the chunk's own (float32, in qkv); the branch is warp-uniform.
            const KV* kcache = j < c_rows ? keys + ((head + j) % c_rows) * d : nullptr;
            const float* knew = j < c_rows ? nullptr : qkv + (b * t + (j - c_rows)) * 3 * d + d + h * dk;
            for (int qi = 0; qi < nq; ++qi) {
                if (j < lo_q[qi] || j >= hi_q[qi]) continue;
                const int64_t qpos = c_rows + i0 + qi;
                const float* prow = p + (n - 1 - (qpos - j)) * d + h * dk;  // relative shift by index
                float ac = 0.f, bd = 0.f;
                if (kcache) {
                    for (int64_t c = lane; c < dk; c += 32) ac += qu[qi * dk + c] * to_float(kcache[c]);
                } else {
                    for (int64_t c = lane; c < dk; c += 32) ac += qu[qi * dk + c] * knew[c];
                }
                for (int64_t c = lane; c < dk; c += 32) bd += qv[qi * dk + c] * prow[c];
                ac = warp_sum(ac);
                bd = warp_sum(bd);
                if (lane == 0) sc[qi * n + (j - lo_q[qi])] = (ac + bd) / denom;
            }
        }
        __syncthreads();
        softmax_rows(sc, n, nq, lo_q, hi_q, red, inv_q);
        __syncthreads();
        // Ranges in registers (empty past nq) and every loop over the queries unrolled, so acc stays in registers.
        int lo_r[kAttQueries], hi_r[kAttQueries];  // key indices < C + T fit an int
#pragma unroll
        for (int qi = 0; qi < kAttQueries; ++qi) {
            lo_r[qi] = qi < nq ? static_cast<int>(lo_q[qi]) : 0;
            hi_r[qi] = qi < nq ? static_cast<int>(hi_q[qi]) : 0;
        }
        // Weighted sum of values: thread per channel; with kv_groups > 1 (a small batch in a wide block) group g
        // of dk threads takes keys lo_all + g, + 2g, ... and group 0 adds the others' partial sums in order.
        const int g = kv_groups > 1 ? static_cast<int>(threadIdx.x / dk) : 0;
        const int64_t c_begin = kv_groups > 1 ? threadIdx.x % dk : threadIdx.x;
        const int64_t c_step = kv_groups > 1 ? dk : blockDim.x;
        for (int64_t c = c_begin; c < dk; c += c_step) {
            float acc[kAttQueries];
#pragma unroll
            for (int qi = 0; qi < kAttQueries; ++qi) acc[qi] = 0.f;
            auto add_value = [&](int64_t j, float v) {
#pragma unroll
                for (int qi = 0; qi < kAttQueries; ++qi)
                    if (j >= lo_r[qi] && j < hi_r[qi]) acc[qi] += sc[qi * n + (j - lo_r[qi])] * v;
            };
            // Cached rows, then the chunk's own (one pass over j in order, split where the source changes).
            int64_t j = lo_all + g;
            const int64_t cached_end = min(hi_all, c_rows);
#pragma unroll 4
            for (; j < cached_end; j += kv_groups) add_value(j, to_float(values[((head + j) % c_rows) * d + c]));
#pragma unroll 4
            for (; j < hi_all; j += kv_groups) add_value(j, qkv[(b * t + (j - c_rows)) * 3 * d + 2 * d + h * dk + c]);
            if (kv_groups > 1) {
                float* pv = sc + kAttQueries * n;  // [kv_groups - 1][kAttQueries][dk]
                if (g > 0) {
#pragma unroll
                    for (int qi = 0; qi < kAttQueries; ++qi) pv[((g - 1) * kAttQueries + qi) * dk + c] = acc[qi];
                }
                __syncthreads();
                if (g > 0) break;
                for (int gi = 1; gi < kv_groups; ++gi) {
#pragma unroll
                    for (int qi = 0; qi < kAttQueries; ++qi) acc[qi] += pv[((gi - 1) * kAttQueries + qi) * dk + c];
                }
            }
#pragma unroll
            for (int qi = 0; qi < kAttQueries; ++qi) {
                if (qi >= nq) break;
                const int64_t orow = (b * t + i0 + qi) * d + h * dk;
                store_act(out, orow + c, hi_r[qi] > lo_r[qi] ? acc[qi] * inv_q[qi] : 0.f, act_dtype);
            }
        }
    }
    // The cache append of this item's head: after every read of the cached rows (the oldest rows are overwritten).
    __syncthreads();
    append_kv(a, qkv + b * t * 3 * d + h * dk, enc_len, head, c_rows, d, dk, keys, values);
}

// E consecutive elements of a key or value row as floats: a 16-byte load of the cache's KV elements, or the
// chunk's own float32 rows (E / 4 16-byte loads).
template <typename KV, int E>
__device__ __forceinline__ void load_row(const KV* cached, const float* fresh, float (&v)[E]) {
    if (cached) {
        const uint4 raw = *reinterpret_cast<const uint4*>(cached);
        const KV* e = reinterpret_cast<const KV*>(&raw);
#pragma unroll
        for (int i = 0; i < E; ++i) v[i] = to_float(e[i]);
    } else {
#pragma unroll
        for (int i = 0; i < E; i += 4) {
            const float4 f = *reinterpret_cast<const float4*>(fresh + i);
            v[i] = f.x;
            v[i + 1] = f.y;
            v[i + 2] = f.z;
            v[i + 3] = f.w;
        }
    }
}

// The same attention as stream_attention_kernel for many items (one 128-thread block per (item, head)), organised
// around whole rows: L = d_head / E lanes read a key or value row with one 16-byte load each (E elements), so a warp
// covers 32 / L rows per load instead of 2 bytes per lane of one row, and each row is loaded once for all the
// group's queries. A query's score is reduced over its row's L lanes (its ac and bd terms together); the value sum
// keeps E channels x kAttQueries outputs per lane and the (warp, row) partial sums are added in a fixed order. With
// full 70-row caches at 1024 streams the per-channel kernel read the caches at ~0.4 TB/s (730 us per layer, H100).
// Passes of rows each lane of stream_attention_rows_kernel requests before using any (loads in flight per lane).
// Groups of 4 or 8 queries (the 560 ms chunks): two passes (256 streams: 15.0 against 15.6 ms of GPU per step on the
// H100). Groups of up to two queries keep one: with four, the registers held 5 blocks per SM instead of 8 and the
// 2048-stream step took 33.6 against 29.4 ms (docs/PERFORMANCE.md, session 8). PARAKEET_ATTENTION_ROW_PASSES=1:
// one pass everywhere (A/B measurements).
template <int kAttQueries>
constexpr int kRowPasses = kAttQueries <= 2 ? 1 : 2;

template <int kAttQueries, typename KV, int kPasses>
__global__ void __launch_bounds__(128, kAttQueries > 2 ? 4 : kPasses > 1 ? 5 : 8)  // more queries and passes: registers
    stream_attention_rows_kernel(StreamAttentionArgs a, const float* qkv, const float* p, const float* u,
                                 const float* vbias, void* out, int act_dtype) {
    launch_dependents();
    wait_for_previous_kernel();
    constexpr int E = 16 / sizeof(KV);
    extern __shared__ float sm[];
    __shared__ float red[32];
    __shared__ int lo_q[kAttQueries], hi_q[kAttQueries];
    __shared__ float inv_q[kAttQueries];
    const SlotLayout& s = a.layout;
    const int64_t b = blockIdx.x / a.n_heads, h = blockIdx.x % a.n_heads;
    const int dk = static_cast<int>(a.d_head);
    const int64_t d = a.n_heads * dk, t = a.t;
    const int c_rows = static_cast<int>(s.cache_rows), n = c_rows + static_cast<int>(t);
    const int slot = a.items.slot[b];
    const int* ints = slot_ints(s, a.pages, slot);
    const int head = ints[kFieldHead], len = ints[kFieldLen];
    KV* keys = slot_keys<KV>(s, a.pages, slot, a.layer) + h * dk;
    KV* values = keys + int64_t{c_rows} * d;
    const int enc_len = a.items.enc_len[b];
    const int key_begin = min(max(c_rows - len, 0), n), key_end = c_rows + enc_len;
    const float denom = sqrtf(static_cast<float>(dk));
    const int L = dk / E;                  // lanes per row (a power of two dividing 32)
    const int rows_per_warp = 32 / L;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
    const int sub = lane / L, c0 = (lane % L) * E;
    const int groups = n_warps * rows_per_warp, group = warp * rows_per_warp + sub;
    float* qu = sm;                        // [kAttQueries][dk]
    float* qv = qu + kAttQueries * dk;     // [kAttQueries][dk]
    float* sc = qv + kAttQueries * dk;     // [kAttQueries][n]: scores, then probabilities, of keys lo..hi
    float* part = sc + kAttQueries * n;    // [groups][kAttQueries][dk]: partial value sums
    const float* q_rows = qkv + b * t * 3 * d + h * dk;
    auto key_row = [&](int j, const KV*& cached, const float*& fresh) {
        const int phys = head + j >= c_rows ? head + j - c_rows : head + j;  // the ring (head < C, j < C when cached)
        cached = j < c_rows ? keys + int64_t{phys} * d + c0 : nullptr;
        fresh = j < c_rows ? nullptr : q_rows + int64_t{j - c_rows} * 3 * d + d + c0;
    };
    // The 16-byte load of cached row j below `end` (keys at offset 0, values at c_rows · d), for unpack_row; rows of
    // this chunk are read there.
    auto request_row = [&](int j, int end, int64_t offset, uint4& raw) {
        if (j < end && j < c_rows) {
            const KV* cached;
            const float* fresh;
            key_row(j, cached, fresh);
            raw = *reinterpret_cast<const uint4*>(cached + offset);
        }
    };
    // Row j's E elements as floats: a cached row from its 16-byte load `raw`, a row of this chunk from the qkv rows
    // (keys; values at fresh_offset = d).
    auto unpack_row = [&](int j, const uint4& raw, int64_t fresh_offset, float (&out)[E]) {
        if (j < c_rows) {
            const KV* e = reinterpret_cast<const KV*>(&raw);
#pragma unroll
            for (int i = 0; i < E; ++i) out[i] = to_float(e[i]);
        } else {
            const KV* cached;
            const float* fresh;
            key_row(j, cached, fresh);
            load_row<KV, E>(nullptr, fresh + fresh_offset, out);
        }
    };
    for (int i0 = 0; i0 < t; i0 += kAttQueries) {
        const int nq = min(kAttQueries, static_cast<int>(t) - i0);
        __syncthreads();  // the previous group's shared arrays may still be read
        attention_queries(a, c_rows, i0, nq, enc_len, key_begin, key_end, q_rows, d, h, dk, u, vbias, lo_q, hi_q, qu,
                          qv);
        __syncthreads();
        int lo_r[kAttQueries], hi_r[kAttQueries];  // empty past nq
        int lo_all = n, hi_all = 0;
#pragma unroll
        for (int qi = 0; qi < kAttQueries; ++qi) {
            lo_r[qi] = qi < nq ? lo_q[qi] : 0;
            hi_r[qi] = qi < nq ? hi_q[qi] : 0;
            if (hi_r[qi] > lo_r[qi]) {
                lo_all = min(lo_all, lo_r[qi]);
                hi_all = max(hi_all, hi_r[qi]);
            }
        }
        // Each query's positional row: r = base_q + j.
        const float* bd_q[kAttQueries];
        int base_q[kAttQueries];
        const int n_pos = 2 * n - 1;
#pragma unroll
        for (int qi = 0; qi < kAttQueries; ++qi) {
            base_q[qi] = n - 1 - (c_rows + i0 + qi);
            bd_q[qi] = a.bd ? a.bd + (h * a.batch * t + b * t + i0 + qi) * n_pos : nullptr;
        }
        const float* vp_h = a.vp ? a.vp + h * n_pos : nullptr;
        // Scores: the rows of one pass are [jb, jb + groups); every lane runs the same passes (the shuffles). The
        // cached rows of kPasses passes (and their positional scores) are requested before any is used: a block's
        // passes otherwise wait on memory one after another.
        for (int jb0 = lo_all; jb0 < hi_all; jb0 += kPasses * groups) {
            uint4 raw[kPasses];
            float pos[kPasses][kAttQueries];
#pragma unroll
            for (int u = 0; u < kPasses; ++u) {
                const int j = jb0 + u * groups + group;
                request_row(j, hi_all, 0, raw[u]);
#pragma unroll
                for (int qi = 0; qi < kAttQueries; ++qi) {
                    pos[u][qi] = 0.f;
                    if (qi < nq && bd_q[qi] && c0 == 0 && j < hi_r[qi] && j >= lo_r[qi])
                        pos[u][qi] = bd_q[qi][base_q[qi] + j] + vp_h[base_q[qi] + j];
                }
            }
#pragma unroll
            for (int u = 0; u < kPasses; ++u) {
                const int jb = jb0 + u * groups;
                if (jb >= hi_all) break;  // the same for every lane
                const int j = jb + group;
                const bool row_ok = j < hi_all;
                float kv[E];
                if (row_ok) unpack_row(j, raw[u], 0, kv);
#pragma unroll
                for (int qi = 0; qi < kAttQueries; ++qi) {
                    if (qi >= nq) break;
                    const bool ok = row_ok && j >= lo_r[qi] && j < hi_r[qi];
                    float sum = 0.f;
                    if (ok) {
                        const int r = base_q[qi] + j;  // relative shift by index
#pragma unroll
                        for (int e = 0; e < E; ++e) sum += qu[qi * dk + c0 + e] * kv[e];
                        if (bd_q[qi]) {
                            sum += pos[u][qi];  // the row's positional score, once (lane c0 == 0)
                        } else {
                            float pr[E];
                            load_row<float, E>(nullptr, p + int64_t{r} * d + h * dk + c0, pr);
#pragma unroll
                            for (int e = 0; e < E; ++e) sum += qv[qi * dk + c0 + e] * pr[e];
                        }
                    }
                    for (int o = L / 2; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
                    if (ok && c0 == 0) sc[qi * n + (j - lo_r[qi])] = sum / denom;
                }
            }
        }
        __syncthreads();
        softmax_rows(sc, n, nq, lo_q, hi_q, red, inv_q);
        __syncthreads();
        // Values: lane (group, c0) sums E channels of every query over the rows group, group + groups, ...
        float acc[kAttQueries][E];
#pragma unroll
        for (int qi = 0; qi < kAttQueries; ++qi)
#pragma unroll
            for (int e = 0; e < E; ++e) acc[qi][e] = 0.f;
        for (int j0 = lo_all + group; j0 < hi_all; j0 += kPasses * groups) {
            uint4 raw[kPasses];  // the cached value rows of kPasses passes, requested together
#pragma unroll
            for (int u = 0; u < kPasses; ++u) request_row(j0 + u * groups, hi_all, int64_t{c_rows} * d, raw[u]);
#pragma unroll
            for (int u = 0; u < kPasses; ++u) {
                const int j = j0 + u * groups;
                if (j >= hi_all) break;
                float vv[E];
                unpack_row(j, raw[u], d, vv);
#pragma unroll
                for (int qi = 0; qi < kAttQueries; ++qi) {
                    if (j < lo_r[qi] || j >= hi_r[qi]) continue;
                    const float pr = sc[qi * n + (j - lo_r[qi])];
#pragma unroll
                    for (int e = 0; e < E; ++e) acc[qi][e] += pr * vv[e];
                }
            }
        }
#pragma unroll
        for (int qi = 0; qi < kAttQueries; ++qi)
#pragma unroll
            for (int e = 0; e < E; ++e) part[(group * kAttQueries + qi) * dk + c0 + e] = acc[qi][e];
        __syncthreads();
        for (int e = threadIdx.x; e < nq * dk; e += blockDim.x) {
            const int qi = e / dk, c = e % dk;
            float v = 0.f;
            for (int g = 0; g < groups; ++g) v += part[(g * kAttQueries + qi) * dk + c];
            const int64_t orow = (b * t + i0 + qi) * d + h * dk;
            store_act(out, orow + c, hi_r[qi] > lo_r[qi] ? v * inv_q[qi] : 0.f, act_dtype);
        }
    }
    // The cache append of this item's head: after every read of the cached rows (the oldest rows are overwritten).
    __syncthreads();
    append_kv(a, qkv + b * t * 3 * d + h * dk, enc_len, head, c_rows, d, dk, keys, values);
}

// NeMo's cache_last_channel_len update, per item: len = min(len + keep_b, C) (negative keep_b, a stream's last
// partial chunk, shrinks it as NeMo does); the ring head moves past the appended rows.
__global__ void stream_advance_kernel(SlotLayout s, float* const* pages, StepItems items, int64_t batch,
                                      int64_t cache_drop) {
    const int64_t b = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
    if (b >= batch) return;
    int* ints = slot_ints(s, pages, items.slot[b]);
    const int64_t keep = items.enc_len[b] - cache_drop;
    if (keep > 0) ints[kFieldHead] = static_cast<int>((ints[kFieldHead] + keep) % s.cache_rows);
    ints[kFieldLen] = static_cast<int>(min(int64_t{ints[kFieldLen]} + keep, s.cache_rows));
}

// One thread per (item, column). The products and sums are rounded as the host's loop rounds them (no FMA).
__global__ void normalize_chunks_kernel(float* x, int64_t batch, int64_t rows, int64_t n_mels, const int* norm_rows) {
    const int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
    if (i >= batch * n_mels) return;
    const int64_t b = i / n_mels, m = i % n_mels;
    const int n = norm_rows[b];
    if (n <= 0) return;
    float* col = x + b * rows * n_mels + m;
    double sum = 0.0;
    for (int t = 0; t < n; ++t) sum = __dadd_rn(sum, static_cast<double>(col[t * n_mels]));
    const float mean = static_cast<float>(__ddiv_rn(sum, static_cast<double>(n)));
    double sq = 0.0;
    for (int t = 0; t < n; ++t) {
        const float d = __fsub_rn(col[t * n_mels], mean);
        const double dd = static_cast<double>(d);
        sq = __dadd_rn(sq, __dmul_rn(dd, dd));
    }
    const float std_dev =
        __fadd_rn(n > 1 ? static_cast<float>(__dsqrt_rn(__ddiv_rn(sq, static_cast<double>(n - 1)))) : 0.f, 1e-5f);
    for (int t = 0; t < n; ++t) col[t * n_mels] = __fdiv_rn(__fsub_rn(col[t * n_mels], mean), std_dev);
}

__global__ void stream_conv_kernel(SlotLayout s, float* const* pages, StepItems items, int64_t layer,
                                   const float* x, int64_t batch, int64_t t, int64_t kernel, int64_t right,
                                   int64_t drop, const float* w, const float* bias, void* y, int act_dtype) {
    launch_dependents();
    wait_for_previous_kernel();
    extern __shared__ float window[];  // [kc + t + right][blockDim.x]: thread i's column is its own window
    const int64_t d = s.d_model, kc = s.time_rows;
    PK_GRID_STRIDE(i, batch * d) {
        const int64_t c = i % d, b = i / d;
        const int slot = items.slot[b];
        float* cache = slot_time(s, pages, slot, layer) + c;
        const int64_t valid = items.enc_len[b], n = kc + t + right;
        struct Column {
            float* p;
            __device__ float& operator[](int64_t r) const { return p[r * blockDim.x]; }
        } g{window + threadIdx.x};
        for (int64_t r = 0; r < kc; ++r) g[r] = cache[r * d];
        for (int64_t r = 0; r < t; ++r) {
            const float* xr = x + (b * t + r) * 2 * d;
            g[kc + r] = r < valid ? xr[c] * (1.f / (1.f + expf(-xr[d + c]))) : 0.f;
        }
        for (int64_t r = kc + t; r < n; ++r) g[r] = 0.f;
        for (int64_t r = 0; r < t; ++r) {
            float acc = bias ? bias[c] : 0.f;
            for (int64_t k = 0; k < kernel; ++k) acc += w[c * kernel + k] * g[r + k];
            store_act(y, (b * t + r) * d + c, acc / (1.f + expf(-acc)), act_dtype);
        }
        const int64_t g_len = kc + valid + right - (drop > 0 ? drop : 0);  // the item's own length
        for (int64_t r = 0; r < kc; ++r) {
            const int64_t src = g_len - kc + r;
            cache[r * d] = src >= 0 && src < n ? g[src] : 0.f;
        }
    }
}

__global__ void bias_silu_act_kernel(const float* y, const float* bias, int rows, int cols, void* out, int act_dtype) {
    const int n = rows * cols;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        const float v = y[i] + (bias ? bias[i % cols] : 0.f);
        store_act(out, i, v / (1.f + expf(-v)), act_dtype);
    }
}

// In place on 16-bit rows, two elements per thread: y = SiLU(y + bias[col]) (cols even).
template <typename T>
__global__ void bias_silu_16_kernel(T* y, const float* bias, int rows, int half_cols) {
    launch_dependents();
    wait_for_previous_kernel();
    const int n = rows * half_cols;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        const int col = 2 * (i % half_cols);
        float v0 = to_float(y[2 * i]), v1 = to_float(y[2 * i + 1]);
        if (bias) {
            v0 += bias[col];
            v1 += bias[col + 1];
        }
        y[2 * i] = from_float<T>(v0 / (1.f + expf(-v0)));
        y[2 * i + 1] = from_float<T>(v1 / (1.f + expf(-v1)));
    }
}

// The same with 16-byte accesses: eight elements per thread and step (cols a multiple of 8, y 16-byte aligned). The
// two-element kernel ran at ~60% of the memory bandwidth on the 2048-stream step's 4096 x 4096 hidden rows.
template <typename T>
__global__ void bias_silu_16x8_kernel(T* y, const float* bias, int64_t n8, int64_t cols) {
    launch_dependents();
    wait_for_previous_kernel();
    for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n8; i += int64_t{gridDim.x} * blockDim.x) {
        uint4 raw = reinterpret_cast<const uint4*>(y)[i];
        T* e = reinterpret_cast<T*>(&raw);
        const int64_t col = (8 * i) % cols;
#pragma unroll
        for (int k = 0; k < 8; ++k) {
            float v = to_float(e[k]);
            if (bias) v += bias[col + k];
            e[k] = from_float<T>(v / (1.f + expf(-v)));
        }
        reinterpret_cast<uint4*>(y)[i] = raw;
    }
}

__global__ void decoder_gather_kernel(SlotLayout s, float* const* pages, const int* slot, int64_t batch, float* h,
                                      float* c, float* p, int* t, int* started) {
    const int64_t hd = s.dec_hidden, j = s.joint_hidden, per = 2 * hd + j;
    PK_GRID_STRIDE(i, batch * per) {
        const int64_t b = i / per, e = i % per, k = index_in_page(slot[b]);
        const float* base = page_of(pages, slot[b]);
        if (e < hd) {
            h[b * hd + e] = base[s.h_offset + k * hd + e];
        } else if (e < 2 * hd) {
            c[b * hd + e - hd] = base[s.c_offset + k * hd + e - hd];
        } else {
            p[b * j + e - 2 * hd] = base[s.p_offset + k * j + e - 2 * hd];
        }
        if (e == 0) {
            const int* ints = slot_ints(s, pages, slot[b]);
            started[b] = ints[kFieldStarted];
            t[b] = ints[kFieldStarted] ? ints[kFieldT] : 0;
        }
    }
}

__global__ void decoder_scatter_kernel(SlotLayout s, float* const* pages, const int* slot, const int* out_len,
                                       int64_t batch, const float* h, const float* c, const float* p, const int* t) {
    const int64_t hd = s.dec_hidden, j = s.joint_hidden, per = 2 * hd + j;
    PK_GRID_STRIDE(i, batch * per) {
        const int64_t b = i / per, e = i % per, k = index_in_page(slot[b]);
        float* base = page_of(pages, slot[b]);
        if (e < hd) {
            base[s.h_offset + k * hd + e] = h[b * hd + e];
        } else if (e < 2 * hd) {
            base[s.c_offset + k * hd + e - hd] = c[b * hd + e - hd];
        } else {
            base[s.p_offset + k * j + e - 2 * hd] = p[b * j + e - 2 * hd];
        }
        if (e == 0) {
            int* ints = slot_ints(s, pages, slot[b]);
            ints[kFieldT] = t[b] - out_len[b];
            ints[kFieldStarted] = 1;
        }
    }
}

__global__ void slot_reset_kernel(SlotLayout s, float* const* pages, int slot) {
    float* base = page_of(pages, slot);
    const int64_t k = index_in_page(slot);
    const int64_t n_time = s.n_layers * s.time_rows * s.d_model;
    const int64_t n = n_time + 2 * s.dec_hidden + s.joint_hidden + kIntFields;
    PK_GRID_STRIDE(i, n) {
        if (i < n_time) {
            base[s.time_offset + k * n_time + i] = 0.f;
        } else if (i < n_time + s.dec_hidden) {
            base[s.h_offset + k * s.dec_hidden + (i - n_time)] = 0.f;
        } else if (i < n_time + 2 * s.dec_hidden) {
            base[s.c_offset + k * s.dec_hidden + (i - n_time - s.dec_hidden)] = 0.f;
        } else if (i < n_time + 2 * s.dec_hidden + s.joint_hidden) {
            base[s.p_offset + k * s.joint_hidden + (i - n_time - 2 * s.dec_hidden)] = 0.f;
        } else {
            slot_ints(s, pages, slot)[i - (n_time + 2 * s.dec_hidden + s.joint_hidden)] = 0;
        }
    }
}

int64_t align64(int64_t n) { return (n + 63) / 64 * 64; }

// Queries handled together by one attention block (see stream_attention_kernel).
int attention_group(int64_t t) { return t <= 2 ? 2 : t <= 4 ? 4 : 8; }

// Key groups of the value sum: with fewer (item, head) blocks than SMs (small_batch) a block has 512 threads and
// 512 / d_head groups; otherwise 128 threads and one group. A block is wide exactly when this is above 1.
int attention_kv_groups(int64_t d_head, bool small_batch) {
    return small_batch && d_head <= 256 && 512 % d_head == 0 ? static_cast<int>(512 / d_head) : 1;
}

// Launches a grid-stride kernel over n elements with 32-bit index arithmetic when n leaves room for the stride
// (the common case: 64-bit divisions dominate these kernels), else its 64-bit instance.
template <typename K32, typename K64, typename... Args>
void launch_indexed(Launch l, int64_t n, K32 kernel32, K64 kernel64, Args... args) {
    if (n < (int64_t{1} << 30)) {
        kernel32<<<grid_for(l, n), kThreads, 0, l.stream>>>(args...);
    } else {
        kernel64<<<grid_for(l, n), kThreads, 0, l.stream>>>(args...);
    }
    PK_CUDA_CHECK_LAUNCH();
}

}  // namespace

SlotLayout make_slot_layout(int64_t n_layers, int64_t cache_rows, int64_t d_model, int64_t time_rows,
                            int64_t dec_hidden, int64_t joint_hidden, int kv_dtype) {
    SlotLayout s{};
    s.kv_dtype = kv_dtype;
    s.n_layers = n_layers;
    s.cache_rows = cache_rows;
    s.d_model = d_model;
    s.time_rows = time_rows;
    s.dec_hidden = dec_hidden;
    s.joint_hidden = joint_hidden;
    const int64_t p = kSlotsPerPage;
    int64_t off = 0;
    s.kv_offset = off;
    const int64_t kv_elements = p * n_layers * 2 * cache_rows * d_model;
    off = align64(off + (kv_dtype == 0 ? kv_elements : (kv_elements + 1) / 2));  // in floats
    s.time_offset = off;
    off = align64(off + p * n_layers * time_rows * d_model);
    s.h_offset = off;
    off = align64(off + p * dec_hidden);
    s.c_offset = off;
    off = align64(off + p * dec_hidden);
    s.p_offset = off;
    off = align64(off + p * joint_hidden);
    s.int_offset = off;
    off = align64(off + p * kIntFields);
    s.page_floats = off;
    return s;
}

void sub_conv_first(Launch l, const float* x, int64_t batch, int64_t t, int64_t f, const float* w, const float* bias,
                    int64_t c_out, int64_t pad_lo, const int* stage_len, int64_t stage_stride, float* y) {
    const int64_t n = batch * c_out * ((t + pad_lo - 2) / 2 + 1) * ((f + pad_lo - 2) / 2 + 1);
    if (n <= 0) return;
    launch_indexed(l, n, sub_conv_first_kernel<int>, sub_conv_first_kernel<int64_t>,
                   x, batch, t, f, w, bias, c_out, pad_lo, stage_len, stage_stride, y);
}

void sub_conv_depthwise(Launch l, const float* x, int64_t batch, int64_t c, int64_t t, int64_t f, const float* w,
                        const float* bias, int64_t pad_lo, float* y) {
    const int64_t n = batch * c * ((t + pad_lo - 2) / 2 + 1) * ((f + pad_lo - 2) / 2 + 1);
    if (n <= 0) return;
    launch_indexed(l, n, sub_conv_depthwise_kernel<int>, sub_conv_depthwise_kernel<int64_t>,
                   x, batch, c, t, f, w, bias, pad_lo, y);
}

void bias_relu_rows(Launch l, float* y, int64_t batch, int64_t c, int64_t t, int64_t f, const float* bias,
                    const int* stage_len, int64_t stage_stride) {
    const int64_t n = batch * c * t * f;
    if (n <= 0) return;
    launch_indexed(l, n, bias_relu_rows_kernel<int>, bias_relu_rows_kernel<int64_t>,
                   y, batch, c, t, f, bias, stage_len, stage_stride);
}

void flatten_channels_batched(Launch l, const float* x, int64_t batch, int64_t c, int64_t t, int64_t f, float* y) {
    const int64_t n = batch * c * t * f;
    if (n <= 0) return;
    launch_indexed(l, n, flatten_channels_batched_kernel<int>, flatten_channels_batched_kernel<int64_t>,
                   x, batch, c, t, f, y);
}

void drop_scale_rows(Launch l, const float* x, int64_t batch, int64_t t_in, int64_t drop, int64_t t, int64_t d,
                     float alpha, const int* enc_len, float* y) {
    const int64_t n = batch * t * d;
    if (n <= 0) return;
    launch_indexed(l, n, drop_scale_rows_kernel<int>, drop_scale_rows_kernel<int64_t>,
                   x, batch, t_in, drop, t, d, alpha, enc_len, y);
}

namespace {
// Shared memory of the narrow attention by rows: queries, scores and 4 warps x (rows per warp) partial value sums;
// 0 where d_head does not split into whole 16-byte loads whose lane count divides a warp.
int64_t attention_rows_bytes(int64_t group, int64_t t, int64_t d_head, int64_t cache_rows, int kv_dtype) {
    const int64_t e = kv_dtype == 0 ? 4 : 8, lanes = d_head / e;
    if (d_head % e != 0 || lanes < 1 || lanes > 32 || 32 % lanes != 0) return 0;
    return (group * (2 * d_head + cache_rows + t) + 4 * (32 / lanes) * group * d_head) *
           static_cast<int64_t>(sizeof(float));
}

// Whether the narrow attention can run by rows (stream_attention_rows_kernel): where its layout applies and its
// shared memory stays within the default 48 KiB.
bool attention_by_rows(int64_t t, int64_t d_head, int64_t cache_rows, int kv_dtype) {
    const int64_t bytes = attention_rows_bytes(attention_group(t), t, d_head, cache_rows, kv_dtype);
    return bytes > 0 && bytes <= 48 * 1024;
}
}  // namespace

size_t stream_attention_shared_bytes(int64_t t, int64_t d_head, int64_t cache_rows, bool small_batch, int kv_dtype) {
    const int64_t group = attention_group(t), kv_groups = attention_kv_groups(d_head, small_batch);
    const int64_t channel = (group * (2 * d_head + cache_rows + t) + (kv_groups - 1) * group * d_head) *
                            static_cast<int64_t>(sizeof(float));
    // Where the kernel by rows applies, the larger of the two (the per-channel one may be chosen instead).
    if (kv_groups == 1 && attention_by_rows(t, d_head, cache_rows, kv_dtype))
        return static_cast<size_t>(std::max(channel, attention_rows_bytes(group, t, d_head, cache_rows, kv_dtype)));
    return static_cast<size_t>(channel);
}

bool stream_attention_by_rows(Launch l, const StreamAttentionArgs& a) {
    const bool small_batch = a.batch * a.n_heads < l.n_sms;
    return attention_kv_groups(a.d_head, small_batch) == 1 && !a.by_channel &&
           attention_by_rows(a.t, a.d_head, a.layout.cache_rows, a.layout.kv_dtype);
}

void stream_attention(Launch l, const StreamAttentionArgs& a, const float* qkv, const float* p, const float* u,
                      const float* v, void* out, int act_dtype) {
    if (a.batch <= 0 || a.t <= 0) return;
    const int group = attention_group(a.t);
    // Fewer (item, head) blocks than SMs: wide blocks of 512 threads (more key rows in flight per block), the value
    // sum split over 512 / d_head groups of keys.
    const int64_t blocks = a.batch * a.n_heads;
    const bool small_batch = blocks < l.n_sms;
    const int kv_groups = attention_kv_groups(a.d_head, small_batch);
    const int threads = kv_groups > 1 ? 512 : 128;
    const size_t shared =
        stream_attention_shared_bytes(a.t, a.d_head, a.layout.cache_rows, small_batch, a.layout.kv_dtype);
    // Many items run by rows (128 threads); otherwise the per-channel kernel: wide blocks (few items) may take a whole
    // SM's registers, narrow ones are held to 64 registers so that 8 blocks fit an SM.
    const bool by_rows = stream_attention_by_rows(l, a);
    static const bool one_pass = env_switch("PARAKEET_ATTENTION_ROW_PASSES");
    auto run_rows = [&](auto kv) {
        using KV = decltype(kv);
        auto kernel = group == 2   ? (one_pass ? stream_attention_rows_kernel<2, KV, 1>
                                               : stream_attention_rows_kernel<2, KV, kRowPasses<2>>)
                      : group == 4 ? (one_pass ? stream_attention_rows_kernel<4, KV, 1>
                                               : stream_attention_rows_kernel<4, KV, kRowPasses<4>>)
                                   : (one_pass ? stream_attention_rows_kernel<8, KV, 1>
                                               : stream_attention_rows_kernel<8, KV, kRowPasses<8>>);
        launch_after_previous(l, kernel, static_cast<unsigned int>(blocks), 128, shared, a, qkv, p, u, v, out,
                              act_dtype);
    };
    auto run = [&](auto kv, auto wide) {
        using KV = decltype(kv);
        constexpr bool kWide = decltype(wide)::value;
        auto kernel = group == 2   ? stream_attention_kernel<2, KV, kWide>
                      : group == 4 ? stream_attention_kernel<4, KV, kWide>
                                   : stream_attention_kernel<8, KV, kWide>;
        launch_after_previous(l, kernel, static_cast<unsigned int>(blocks), threads, shared, a, qkv, p, u, v, out,
                              act_dtype, kv_groups);
    };
    auto by_width = [&](auto kv) {
        if (by_rows) {
            run_rows(kv);
        } else if (kv_groups > 1) {
            run(kv, std::true_type{});
        } else {
            run(kv, std::false_type{});
        }
    };
    if (a.layout.kv_dtype == 1) {
        by_width(__half{});
    } else if (a.layout.kv_dtype == 2) {
        by_width(__nv_bfloat16{});
    } else {
        by_width(float{});
    }
    PK_CUDA_CHECK_LAUNCH();
}

void stream_advance(Launch l, const SlotLayout& layout, float* const* pages, const StepItems& items, int64_t batch,
                    int64_t cache_drop) {
    if (batch <= 0) return;
    stream_advance_kernel<<<static_cast<unsigned int>((batch + 127) / 128), 128, 0, l.stream>>>(layout, pages, items,
                                                                                               batch, cache_drop);
    PK_CUDA_CHECK_LAUNCH();
}

void normalize_chunks_per_feature(Launch l, float* x, int64_t batch, int64_t rows, int64_t n_mels,
                                  const int* norm_rows) {
    const int64_t n = batch * n_mels;
    if (n <= 0) return;
    normalize_chunks_kernel<<<static_cast<unsigned int>((n + 127) / 128), 128, 0, l.stream>>>(x, batch, rows, n_mels,
                                                                                              norm_rows);
    PK_CUDA_CHECK_LAUNCH();
}

void stream_conv(Launch l, const SlotLayout& layout, float* const* pages, const StepItems& items, int64_t layer,
                 const float* x, int64_t batch, int64_t t, int64_t kernel, int64_t right, int64_t drop,
                 const float* w, const float* bias, void* y, int act_dtype) {
    const int64_t n = batch * layout.d_model;
    if (n <= 0 || t <= 0) return;
    // The window lives in shared memory (a local array indexed at run time would sit in local memory).
    const int64_t rows = layout.time_rows + t + right;
    const int threads = rows <= 96 ? 128 : 64;  // at most kMaxConvWindow rows: <= 48 KiB
    const size_t shared = static_cast<size_t>(rows * threads) * sizeof(float);
    const unsigned int grid = static_cast<unsigned int>(std::min<int64_t>((n + threads - 1) / threads, int64_t{l.n_sms} * 16));
    launch_after_previous(l, stream_conv_kernel, grid, threads, shared, layout, pages, items, layer, x, batch, t, kernel,
                          right, drop, w, bias, y, act_dtype);
    PK_CUDA_CHECK_LAUNCH();
}

void bias_silu_act(Launch l, const float* y, const float* bias, int64_t rows, int64_t cols, void* out, int act_dtype) {
    const int64_t n = rows * cols;
    if (n <= 0) return;
    if (n >= (int64_t{1} << 30)) throw_cuda_error(cudaErrorInvalidValue, "bias_silu_act size", __FILE__, __LINE__);
    bias_silu_act_kernel<<<grid_for(l, n), kThreads, 0, l.stream>>>(y, bias, static_cast<int>(rows),
                                                                   static_cast<int>(cols), out, act_dtype);
    PK_CUDA_CHECK_LAUNCH();
}

void bias_silu_16(Launch l, void* y, const float* bias, int64_t rows, int64_t cols, int act_dtype) {
    const int64_t n = rows * cols / 2;
    if (n <= 0) return;
    if (cols % 2 != 0 || n >= (int64_t{1} << 30) || (act_dtype != 1 && act_dtype != 2))
        throw_cuda_error(cudaErrorInvalidValue, "bias_silu_16 shape", __FILE__, __LINE__);
    if (cols % 8 == 0 && reinterpret_cast<uintptr_t>(y) % 16 == 0) {
        const int64_t n8 = rows * cols / 8;
        if (act_dtype == 2) {
            launch_after_previous(l, bias_silu_16x8_kernel<__nv_bfloat16>, grid_for(l, n8), kThreads, 0,
                                  static_cast<__nv_bfloat16*>(y), bias, n8, cols);
        } else {
            launch_after_previous(l, bias_silu_16x8_kernel<__half>, grid_for(l, n8), kThreads, 0,
                                  static_cast<__half*>(y), bias, n8, cols);
        }
    } else if (act_dtype == 2) {
        launch_after_previous(l, bias_silu_16_kernel<__nv_bfloat16>, grid_for(l, n), kThreads, 0,
                              static_cast<__nv_bfloat16*>(y), bias, static_cast<int>(rows), static_cast<int>(cols / 2));
    } else {
        launch_after_previous(l, bias_silu_16_kernel<__half>, grid_for(l, n), kThreads, 0, static_cast<__half*>(y),
                              bias, static_cast<int>(rows), static_cast<int>(cols / 2));
    }
    PK_CUDA_CHECK_LAUNCH();
}

void decoder_gather(Launch l, const SlotLayout& layout, float* const* pages, const int* slot, int64_t batch,
                    float* h, float* c, float* p, int* t, int* started) {
    const int64_t n = batch * (2 * layout.dec_hidden + layout.joint_hidden);
    if (n <= 0) return;
    decoder_gather_kernel<<<grid_for(l, n), kThreads, 0, l.stream>>>(layout, pages, slot, batch, h, c, p, t, started);
    PK_CUDA_CHECK_LAUNCH();
}

void decoder_scatter(Launch l, const SlotLayout& layout, float* const* pages, const int* slot, const int* out_len,
                     int64_t batch, const float* h, const float* c, const float* p, const int* t) {
    const int64_t n = batch * (2 * layout.dec_hidden + layout.joint_hidden);
    if (n <= 0) return;
    decoder_scatter_kernel<<<grid_for(l, n), kThreads, 0, l.stream>>>(layout, pages, slot, out_len, batch, h, c, p, t);
    PK_CUDA_CHECK_LAUNCH();
}

void slot_reset(Launch l, const SlotLayout& layout, float* const* pages, int slot) {
    const int64_t n = layout.n_layers * layout.time_rows * layout.d_model + 2 * layout.dec_hidden +
                      layout.joint_hidden + kIntFields;
    slot_reset_kernel<<<grid_for(l, n), kThreads, 0, l.stream>>>(layout, pages, slot);
    PK_CUDA_CHECK_LAUNCH();
}

}  // namespace parakeet::cuda::kernels
