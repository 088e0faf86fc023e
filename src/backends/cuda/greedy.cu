// Greedy label-looping decode on the device: one persistent cooperative kernel runs the whole loop of
// src/decoding/greedy.cc (NeMo tdt/rnnt_label_looping.py) for a batch, with grid-wide barriers between its
// phases instead of host round trips. Per iteration every active item evaluates the joint at its frame;
// items that emitted a token then run the LSTM step and the prediction projection.
//
// Two kernels share the phases:
// - batches up to kGreedySmallBatch (offline files, one stream, a few windows): every block keeps the items'
//   loop state in shared memory and decides every item itself from the per-block argmax partials, so an
//   iteration that emits nothing costs one grid barrier (joint, barrier, decide); logits and partials are
//   double-buffered by iteration parity, as a block may start the next joint while another still decides.
// - larger batches: the loop state lives in global memory, one block decides one item, and a barrier
//   follows the decision.
// The joint's output rows are spread over all warps of the grid; each block reduces the rows it computed to
// one (max, argmax, Σexp) partial per item, so a decision reads gridDim.x partials instead of the vocabulary.
// Weight matrices are float32, float16 or bfloat16 (accumulation in float32); 16-bit weights halve the bytes
// each iteration reads and keep the decoder resident in L2. With 16-bit weights the large kernel runs the joint
// of 32 or more active items and the LSTM and projection of 32 or more emitting items on tensor cores (WMMA,
// inputs rounded to 16 bits); float32 weights and fewer items stay on CUDA cores. The tensor-core phases size their
// work units to fill the grid: the projection splits k over a block's warps, and the LSTM of up to a few hundred
// items gives each warp one gate and one input (lstm_split_phase); every warp keeps kTcPrefetch weight fragments
// in flight, as the phases wait on L2 latency, not bandwidth.
#include <cooperative_groups.h>
#include <mma.h>

#include <algorithm>
#include <climits>
#include <type_traits>

#include "backends/cuda/kernel_utils.cuh"

namespace cg = cooperative_groups;

namespace parakeet::cuda::kernels {

namespace {

// Items sharing one pass over a weight row: the joint and the prediction projection (one accumulator per item),
// the LSTM (four gates per item). A single item keeps its input in registers.
constexpr int kMaxGroup = 32;
constexpr int kMaxLstmGroup = 16;
constexpr int kDecodeThreads = 256;
constexpr int kSmall = kGreedySmallBatch;
// Floats of an input vector one lane holds in registers (single-item path): inputs up to 32 · 32 = 1024 wide.
constexpr int kRegFloats = 32;

static_assert(kSmall <= kDecodeThreads / 32, "the small-batch decide gives each item one warp");

// Weights as floats: four consecutive elements (a lane's share of a row; consecutive lanes then read consecutive
// 16-byte chunks of x in shared memory), or one.
template <typename W>
struct WeightVec;

template <>
struct WeightVec<float> {
    __device__ static void load4(const float* p, float* out) {
        const float4 v = __ldg(reinterpret_cast<const float4*>(p));
        out[0] = v.x;
        out[1] = v.y;
        out[2] = v.z;
        out[3] = v.w;
    }
    __device__ static float one(const float* p) { return __ldg(p); }
};

template <typename H2, typename H>
struct WeightVec16 {
    __device__ static float2 pair(uint32_t bits) {
        H2 h;
        memcpy(&h, &bits, sizeof(h));
        if constexpr (std::is_same_v<H, __half>) return __half22float2(h);
        else return __bfloat1622float2(h);
    }
    __device__ static void load4(const H* p, float* out) {
        const uint2 v = __ldg(reinterpret_cast<const uint2*>(p));
        const float2 a = pair(v.x), b = pair(v.y);
        out[0] = a.x;
        out[1] = a.y;
        out[2] = b.x;
        out[3] = b.y;
    }
    __device__ static float one(const H* p) {
        if constexpr (std::is_same_v<H, __half>) return __half2float(p[0]);
        else return __bfloat162float(p[0]);
    }
};

template <>
struct WeightVec<__half> : WeightVec16<__half2, __half> {};
template <>
struct WeightVec<__nv_bfloat16> : WeightVec16<__nv_bfloat162, __nv_bfloat16> {};

// A k-wide input fits the registers of one warp.
__device__ __forceinline__ bool fits_registers(int k) { return k % 4 == 0 && k <= 32 * kRegFloats; }

// Lane `lane`'s slice of x[k] (shared memory): chunk c covers x[(c·32 + lane)·4, +4), the elements dot_group
// gives this lane, so both paths sum in the same order and one item decodes bit-identically alone or in a group.
__device__ __forceinline__ void load_registers(const float* x, int k, float* xr) {
    const int lane = threadIdx.x & 31;
#pragma unroll
    for (int c = 0; c < kRegFloats / 4; ++c) {
        const int j0 = (c * 32 + lane) * 4;
#pragma unroll
        for (int e = 0; e < 4; ++e) xr[c * 4 + e] = j0 < k ? x[j0 + e] : 0.f;
    }
}

// acc += this lane's part of w_row · x with x in registers (load_registers); the caller sums over the warp.
template <typename W>
__device__ __forceinline__ void dot_registers(const W* w_row, const float* xr, int k, float& acc) {
    const int lane = threadIdx.x & 31;
#pragma unroll
    for (int c = 0; c < kRegFloats / 4; ++c) {
        const int j0 = (c * 32 + lane) * 4;
        if (j0 < k) {
            float w[4];
            WeightVec<W>::load4(w_row + j0, w);
            acc += w[0] * xr[c * 4] + w[1] * xr[c * 4 + 1] + w[2] * xr[c * 4 + 2] + w[3] * xr[c * 4 + 3];
        }
    }
}

// acc[gi] += w_row · xs[gi] for the group's inputs xs[ng, k] (shared memory, 16-byte aligned rows), this lane's
// part; the caller sums over the warp. Four weights per load, so a warp's x reads are 512 contiguous bytes
// (conflict-free).
template <int kGroup, typename W>
__device__ __forceinline__ void dot_group(const W* w_row, const float* xs, int k, int ng, float* acc) {
    const int lane = threadIdx.x & 31;
    if (k % 4 == 0) {
        for (int j0 = lane * 4; j0 < k; j0 += 128) {
            float w[4];
            WeightVec<W>::load4(w_row + j0, w);
#pragma unroll
            for (int gi = 0; gi < kGroup; ++gi) {
                if (gi < ng) {
                    const float4 x = *reinterpret_cast<const float4*>(xs + gi * k + j0);
                    acc[gi] += w[0] * x.x + w[1] * x.y + w[2] * x.z + w[3] * x.w;
                }
            }
        }
    } else {
        for (int j = lane; j < k; j += 32) {
            const float w = WeightVec<W>::one(w_row + j);
#pragma unroll
            for (int gi = 0; gi < kGroup; ++gi)
                if (gi < ng) acc[gi] += w * xs[gi * k + j];
        }
    }
}

__device__ __forceinline__ float activate(float s, int activation) {
    if (activation == 0) return s > 0.f ? s : 0.f;
    if (activation == 1) return tanhf(s);
    return 1.f / (1.f + expf(-s));
}

// Max logit (ties: the lowest index) and Σ exp(logit - max) over a set of rows. s == 0: empty.
struct Partial {
    float m;
    int i;
    double s;
};
static_assert(sizeof(Partial) == kGreedyPartialBytes, "partial layout");

__device__ __forceinline__ Partial empty_partial() { return Partial{-INFINITY, INT_MAX, 0.0}; }

__device__ __forceinline__ void merge(Partial& a, const Partial& b) {
    if (b.s == 0.0) return;
    if (a.s == 0.0) {
        a = b;
    } else if (b.m > a.m || (b.m == a.m && b.i < a.i)) {
        a.s = b.s + a.s * exp(static_cast<double>(a.m) - static_cast<double>(b.m));
        a.m = b.m;
        a.i = b.i;
    } else {
        a.s += b.s * exp(static_cast<double>(b.m) - static_cast<double>(a.m));
    }
}

// Every lane gets the warp's merged partial.
__device__ __forceinline__ void warp_merge(Partial& p) {
    for (int o = 16; o > 0; o >>= 1) {
        Partial q;
        q.m = __shfl_xor_sync(0xffffffffu, p.m, o);
        q.i = __shfl_xor_sync(0xffffffffu, p.i, o);
        q.s = __shfl_xor_sync(0xffffffffu, p.s, o);
        merge(p, q);
    }
}

__device__ __forceinline__ Partial load_partial(const Partial* p) {
    return Partial{__ldcg(&p->m), __ldcg(&p->i), __ldcg(&p->s)};
}

__device__ __forceinline__ void store_partial(Partial* p, const Partial& v) {
    p->m = v.m;
    p->i = v.i;
    p->s = v.s;
}

// Items b < batch with pred(b), in order, compacted into the block's shared `list` by all its threads (warp
// ballots and a prefix over warps); every thread gets the count. Every block builds the same list.
template <typename Pred>
__device__ int compact(int batch, int* list, Pred pred) {
    __shared__ int warp_counts[32];
    __shared__ int total;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
    __syncthreads();  // the previous list and total may still be read
    if (threadIdx.x == 0) total = 0;
    __syncthreads();
    for (int b0 = 0; b0 < batch; b0 += blockDim.x) {
        const int b = b0 + threadIdx.x;
        const bool f = b < batch && pred(b);
        const unsigned m = __ballot_sync(0xffffffffu, f);
        if (lane == 0) warp_counts[warp] = __popc(m);
        __syncthreads();
        int before = total;
        for (int w = 0; w < warp; ++w) before += warp_counts[w];
        if (f) list[before + __popc(m & ((1u << lane) - 1u))] = b;
        __syncthreads();
        if (threadIdx.x == 0)
            for (int w = 0; w < n_warps; ++w) total += warp_counts[w];
        __syncthreads();  // total is final before warp_counts are rewritten or total is read
    }
    return total;
}

__device__ __forceinline__ int warp_id_global() { return (blockIdx.x * blockDim.x + threadIdx.x) >> 5; }
__device__ __forceinline__ int warps_total() { return (gridDim.x * blockDim.x) >> 5; }

// Running max (ties: the first row seen, rows come in increasing order) and Σexp over one lane's rows.
__device__ __forceinline__ void online_update(Partial& p, float v, int row) {
    if (v > p.m) {
        p.s = p.s * static_cast<double>(expf(p.m - v)) + 1.0;
        p.m = v;
        p.i = row;
    } else {
        p.s += static_cast<double>(expf(v - p.m));
    }
}

// out[items[gi] * out_stride + row] = w[row] · xs[gi] + bias[row] for every row of w[rows, k] and the group's ng
// inputs xs[ng, k] (shared memory); rows are spread over all warps of the grid, lanes over k. With `parts`, the
// rows up to partial_rows (exclusive) this block computed are also reduced to one partial per item:
// parts[items[gi] * kGreedyMaxBlocks + blockIdx.x] (lane gi of each warp tracks item gi).
template <int kGroup, typename W>
__device__ void group_gemv(const W* w, const float* bias, int rows, int k, const float* xs, int ng,
                           const int* items, float* out, int64_t out_stride, Partial* parts = nullptr,
                           int partial_rows = 0) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    Partial mine = empty_partial();
    // Row `row`'s sums, every lane holding all of them: write the outputs, and lane gi folds in item gi's.
    auto finish = [&](int row, const float* sums) {
        float v = 0.f;
#pragma unroll
        for (int gi = 0; gi < kGroup; ++gi) {
            if (gi >= ng) break;
            const float y = sums[gi] + __ldg(bias + row);
            if (lane == 0) out[int64_t{items[gi]} * out_stride + row] = y;
            if (lane == gi) v = y;
        }
        if (parts && lane < ng && row < partial_rows) online_update(mine, v, row);
    };
    bool done = false;
    if constexpr (kGroup == 1) {
        if (fits_registers(k)) {
            float xr[kRegFloats];
            load_registers(xs, k, xr);
            for (int row = warp_id_global(); row < rows; row += warps_total()) {
                float acc = 0.f;
                dot_registers(w + int64_t{row} * k, xr, k, acc);
                const float sum = warp_sum(acc);
                finish(row, &sum);
            }
            done = true;
        }
    }
    if (!done) {
        for (int row = warp_id_global(); row < rows; row += warps_total()) {
            float acc[kGroup] = {};
            dot_group<kGroup>(w + int64_t{row} * k, xs, k, ng, acc);
#pragma unroll
            for (int gi = 0; gi < kGroup; ++gi) acc[gi] = gi < ng ? warp_sum(acc[gi]) : 0.f;
            finish(row, acc);
        }
    }
    if (!parts) return;
    // The block's warps' partials, merged per item.
    __shared__ Partial warp_parts[kDecodeThreads / 32][kGroup];
    if (lane < ng) warp_parts[warp][lane] = mine;
    __syncthreads();
    if (threadIdx.x < ng) {
        Partial p = warp_parts[0][threadIdx.x];
        for (int wi = 1; wi < (blockDim.x >> 5); ++wi) merge(p, warp_parts[wi][threadIdx.x]);
        store_partial(parts + int64_t{items[threadIdx.x]} * kGreedyMaxBlocks + blockIdx.x, p);
    }
    __syncthreads();  // warp_parts is reused by the next group
}

// logits[b] = out_w · act(f[b, time_of(b)] + p[b]) + out_b for the active items, and the block's partials.
template <int kGroup, typename W, typename TimeOf>
__device__ void joint_phase_g(const GreedyParams& P, const int* active, int n_active, float* zs, float* logits,
                              Partial* parts, TimeOf time_of) {
    const int J = P.joint_hidden;
    for (int g0 = 0; g0 < n_active; g0 += kGroup) {
        const int ng = min(kGroup, n_active - g0);
        __syncthreads();
        for (int i = threadIdx.x; i < ng * J; i += blockDim.x) {
            const int gi = i / J, j = i - gi * J, b = active[g0 + gi];
            const float* f = P.fproj + b * P.item_stride + int64_t{time_of(b)} * J;
            zs[i] = activate(f[j] + __ldcg(P.p + b * J + j), P.activation);
        }
        __syncthreads();
        group_gemv<kGroup>(static_cast<const W*>(P.out_w), P.out_b, P.n_out, J, zs, ng, active + g0, logits, P.n_out,
                           parts, P.blank + 1);
    }
}

// Small groups keep fewer predicated accumulators per weight element, large ones pass over the weights fewer
// times; a single item keeps its input in registers.
template <typename W, typename TimeOf>
__device__ void joint_phase(const GreedyParams& P, const int* active, int n_active, float* zs, float* logits,
                            Partial* parts, TimeOf time_of) {
    if (n_active == 1) {
        joint_phase_g<1, W>(P, active, n_active, zs, logits, parts, time_of);
    } else if (n_active <= 8) {
        joint_phase_g<8, W>(P, active, n_active, zs, logits, parts, time_of);
    } else {
        joint_phase_g<kMaxGroup, W>(P, active, n_active, zs, logits, parts, time_of);
    }
}

// The merged partials of item b (all threads of one warp take part; every lane gets the result).
__device__ Partial item_best(const Partial* parts, int b, int n_slots) {
    Partial acc = empty_partial();
    for (int i = threadIdx.x & 31; i < n_slots; i += 32) merge(acc, load_partial(parts + int64_t{b} * kGreedyMaxBlocks + i));
    warp_merge(acc);
    return acc;
}

// Loop state of one item (global or shared memory).
struct ItemState {
    int* t;
    int* run;
    int* last_ts;
    int* label;
    int* n_tokens;
};

// The loop rules for item b after its joint: the token is best.i with confidence 1 / best.s, the duration the
// argmax of the duration logits. Updates the state; `write` stores the token (only one block does in the
// small-batch kernel). Returns whether a token was emitted (the predictor must step).
__device__ bool apply_rules(const GreedyParams& P, int b, const Partial& best, const float* lg, const ItemState& s,
                            bool write) {
    const int tok = best.i;
    int dur;
    if (P.n_dur > 0) {
        int di = 0;
        float dv = __ldcg(lg + P.blank + 1);
        for (int i = 1; i < P.n_dur; ++i) {
            const float v = __ldcg(lg + P.blank + 1 + i);
            if (v > dv) {
                dv = v;
                di = i;
            }
        }
        dur = P.durations[di];
        if (tok == P.blank && dur == 0) dur = 1;
    } else {
        dur = tok == P.blank ? 1 : 0;
    }
    const int T = P.lengths[b];
    const int t_tok = *s.t;
    int t = t_tok + dur;
    bool emitted = false;
    if (tok != P.blank) {
        const int n = *s.n_tokens;
        if (n < P.max_tokens) {
            if (write) {
                const int64_t o = int64_t{b} * P.max_tokens + n;
                P.tok_id[o] = tok;
                P.tok_frame[o] = t_tok;
                P.tok_dur[o] = P.n_dur > 0 ? dur : 0;
                P.tok_conf[o] = static_cast<float>(1.0 / best.s);
            }
            *s.n_tokens = n + 1;
        } else if (write) {
            atomicOr(P.error, 1);
        }
        const int run = t_tok == *s.last_ts ? *s.run + 1 : 1;
        *s.run = run;
        *s.last_ts = t_tok;
        *s.label = tok;
        emitted = true;
        if (t < T && run >= P.max_symbols && t_tok == t) t += 1;  // force a step
    }
    *s.t = t;
    return emitted;
}

// The LSTM cell update of element o (c in place, the new h to hn) from the four gate pre-activations (bias
// included), gate order i, f, g, o.
__device__ __forceinline__ void lstm_cell(const GreedyParams& P, int64_t o, float gi, float gf, float gg, float go) {
    const float ig = 1.f / (1.f + expf(-gi));
    const float fg = 1.f / (1.f + expf(-gf));
    const float cg = tanhf(gg);
    const float og = 1.f / (1.f + expf(-go));
    const float cn = fg * __ldcg(P.c + o) + ig * cg;
    P.c[o] = cn;
    P.hn[o] = og * tanhf(cn);
}

// LSTM layer `l` for the items in `items`: gates from x (embedding of label_of(b), or layer l-1's new h) and the
// old h; c updated in place, the new h written to hn.
template <int kLstmGroup, typename W, typename LabelOf>
__device__ void lstm_phase_g(const GreedyParams& P, int l, const int* items, int n_items, float* smem,
                             LabelOf label_of) {
    const int H = P.hidden, lane = threadIdx.x & 31;
    float* xs = smem;
    float* hs = smem + kLstmGroup * H;
    const W* w_ih = static_cast<const W*>(P.w_ih[l]);
    const W* w_hh = static_cast<const W*>(P.w_hh[l]);
    const float* bias = P.bias[l];
    for (int g0 = 0; g0 < n_items; g0 += kLstmGroup) {
        const int ng = min(kLstmGroup, n_items - g0);
        __syncthreads();
        for (int i = threadIdx.x; i < ng * H; i += blockDim.x) {
            const int gi = i / H, j = i - gi * H, b = items[g0 + gi];
            const int64_t base = (int64_t{b} * P.n_layers + l) * H;
            xs[i] = l == 0 ? P.embed[int64_t{label_of(b)} * H + j] : __ldcg(P.hn + base - H + j);
            hs[i] = __ldcg(P.h + base + j);
        }
        __syncthreads();
        // The four gates of unit u for each item of the group, summed over the warp.
        auto update = [&](int u, int gi, const float* gate_sums) {
            if (lane != 0) return;
            float gate[4];
#pragma unroll
            for (int q = 0; q < 4; ++q) gate[q] = gate_sums[q] + __ldg(bias + q * H + u);
            lstm_cell(P, (int64_t{items[g0 + gi]} * P.n_layers + l) * H + u, gate[0], gate[1], gate[2], gate[3]);
        };
        if constexpr (kLstmGroup == 1) {
            if (fits_registers(H)) {
                float xr[kRegFloats], hr[kRegFloats];
                load_registers(xs, H, xr);
                load_registers(hs, H, hr);
                for (int u = warp_id_global(); u < H; u += warps_total()) {
                    float sums[4];
#pragma unroll
                    for (int q = 0; q < 4; ++q) {
                        // The order of dot_group's: the input weights, then the recurrent ones, one accumulator.
                        const int64_t row = int64_t{q * H + u} * H;
                        float acc = 0.f;
                        dot_registers(w_ih + row, xr, H, acc);
                        dot_registers(w_hh + row, hr, H, acc);
                        sums[q] = warp_sum(acc);
                    }
                    update(u, 0, sums);
                }
                continue;
            }
        }
        for (int u = warp_id_global(); u < H; u += warps_total()) {
            float acc[4][kLstmGroup] = {};
#pragma unroll
            for (int q = 0; q < 4; ++q) {
                const int64_t row = int64_t{q * H + u} * H;
                dot_group<kLstmGroup>(w_ih + row, xs, H, ng, acc[q]);
                dot_group<kLstmGroup>(w_hh + row, hs, H, ng, acc[q]);
            }
#pragma unroll
            for (int gi = 0; gi < kLstmGroup; ++gi) {
                if (gi >= ng) break;
                float sums[4];
#pragma unroll
                for (int q = 0; q < 4; ++q) sums[q] = warp_sum(acc[q][gi]);
                update(u, gi, sums);
            }
        }
    }
}

// p[b] = pred_w · g[b] + pred_b with g the last layer's new h; then h = hn for the updated items.
template <int kGroup, typename W>
__device__ void projection_phase_g(const GreedyParams& P, const int* items, int n_items, float* gs) {
    const int H = P.hidden, J = P.joint_hidden, L = P.n_layers;
    for (int g0 = 0; g0 < n_items; g0 += kGroup) {
        const int ng = min(kGroup, n_items - g0);
        __syncthreads();
        for (int i = threadIdx.x; i < ng * H; i += blockDim.x) {
            const int gi = i / H, j = i - gi * H, b = items[g0 + gi];
            gs[i] = __ldcg(P.hn + (int64_t{b} * L + L - 1) * H + j);
        }
        __syncthreads();
        group_gemv<kGroup>(static_cast<const W*>(P.pred_w), P.pred_b, J, H, gs, ng, items + g0, P.p, J);
    }
}

// The predictor of many items on tensor cores (16-bit weights, hidden and joint_hidden multiples of 16; the
// joint's style): the block converts a unit's float32 inputs to 16-bit rows in shared memory (padded by kTcPad
// elements against bank conflicts). The wide LSTM units (lstm_tensor_phase, for many emitting items) are
// kTcLstmItems items times a chunk of hidden-unit tiles, one per warp: each warp holds the four gate row tiles of
// 16 hidden units (rows q·H + u0 .. +15), so the cell update happens in its epilogue, element by element across the
// four accumulators (fragments of one type share their layout; index_fragment says which (item, unit) an element
// holds). The split units (lstm_split_phase) and the projection sum their warps' tiles in shared memory instead.
// c, h and hn stay float32.
constexpr int kTcItems = 64;
constexpr int kTcTileRows = 16;
constexpr int kTcMinItems = 32;
constexpr int kTcPad = 8;
// The split-k phases' per-warp sums: eight warps times four 16 x 16 float tiles, after the staged rows.
constexpr int kTcReduceFloats = 8 * 4 * 256;

__host__ __device__ inline size_t tc_rows_bytes(int hidden) {
    return (static_cast<size_t>(kTcItems) * (hidden + kTcPad) * 2 + 127) / 128 * 128;
}
// The LSTM's units: three item tiles keep its 4 x 3 accumulators in registers (1024 items x 640 units then
// make 110 units for 132 SMs).
constexpr int kTcLstmItems = 48;

namespace wmma = nvcuda::wmma;
using AccFragment = wmma::fragment<wmma::accumulator, 16, 16, 16, float>;

template <typename W>
__device__ __forceinline__ W to_weight_type(float v) {
    if constexpr (std::is_same_v<W, __half>) return __float2half_rn(v);
    else return __float2bfloat16_rn(v);
}

// Weight fragments a warp keeps in flight ahead of its products: the weight tiles come from L2 and a warp has
// few other loads to overlap, so one fragment in flight left the decode waiting on L2 latency at every step.
constexpr int kTcPrefetch = 4;

// acc[it] (+)= A_it · B over k in [k_begin, k_end) (multiples of 16) for the n_tiles 16-item tiles A_it of `as`
// (16-bit rows, leading dimension lda, columns counted from k_begin: as points at column k_begin) and the weight
// tile B[k, n] = w[n, k] (w: the tile's first row, column 0; leading dimension ldw; read straight from L2 with
// kTcPrefetch fragments in flight). Not zeroed here.
template <int kTiles, typename W>
__device__ __forceinline__ void multiply_item_tiles(const W* w, int ldw, const W* as, int lda, int k_begin, int k_end,
                                                    int n_tiles, AccFragment* acc) {
    using BFragment = wmma::fragment<wmma::matrix_b, 16, 16, 16, W, wmma::col_major>;
    BFragment bf[kTcPrefetch];
#pragma unroll
    for (int d = 0; d < kTcPrefetch; ++d)
        if (k_begin + d * 16 < k_end) wmma::load_matrix_sync(bf[d], w + k_begin + d * 16, ldw);
    for (int k0 = k_begin; k0 < k_end; k0 += kTcPrefetch * 16) {
#pragma unroll
        for (int d = 0; d < kTcPrefetch; ++d) {
            const int k = k0 + d * 16;
            if (k < k_end) {
#pragma unroll
                for (int it = 0; it < kTiles; ++it) {
                    if (it < n_tiles) {
                        wmma::fragment<wmma::matrix_a, 16, 16, 16, W, wmma::row_major> af;
                        wmma::load_matrix_sync(af, as + it * 16 * lda + (k - k_begin), lda);
                        wmma::mma_sync(acc[it], af, bf[d], acc[it]);
                    }
                }
                // Refill this slot with the fragment kTcPrefetch steps ahead.
                const int next = k + kTcPrefetch * 16;
                if (next < k_end) wmma::load_matrix_sync(bf[d], w + next, ldw);
            }
        }
    }
}

template <int kTiles>
__device__ __forceinline__ void zero_tiles(AccFragment* acc) {
#pragma unroll
    for (int it = 0; it < kTiles; ++it) wmma::fill_fragment(acc[it], 0.f);
}

// idx.x[e] = row · 16 + column of the tile element that element e of every accumulator fragment holds. All
// threads of the block call it (it uses a shared tile).
__device__ void index_fragment(AccFragment& idx) {
    __shared__ __align__(32) float positions[256];
    __syncthreads();
    for (int i = threadIdx.x; i < 256; i += blockDim.x) positions[i] = static_cast<float>(i);
    __syncthreads();
    wmma::load_matrix_sync(idx, positions, 16, wmma::mem_row_major);
}

// A unit's input rows in shared memory, 16-bit with leading dimension ld: row r < ng holds the k floats at
// row_of(r) (16-byte aligned), rows up to the tile boundary are zero.
template <typename W, typename RowOf>
__device__ void stage_rows(W* as, int ld, int k, int ng, int n_tiles, RowOf row_of) {
    const int per_row = k / 4;
    for (int i = threadIdx.x; i < n_tiles * 16 * per_row; i += blockDim.x) {
        const int r = i / per_row, c = (i - r * per_row) * 4;
        float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
        if (r < ng) v = __ldcg(reinterpret_cast<const float4*>(row_of(r) + c));
        W h[4] = {to_weight_type<W>(v.x), to_weight_type<W>(v.y), to_weight_type<W>(v.z), to_weight_type<W>(v.w)};
        uint2 bits;
        memcpy(&bits, h, sizeof(bits));
        *reinterpret_cast<uint2*>(as + r * ld + c) = bits;
    }
}

// LSTM layer `l` for the items in `items` on tensor cores: gates[items, 4H] = [x | h_old] · [W_ih | W_hh]^T + bias
// (x staged, multiplied, then h_old), then the cell update (lstm_phase_g's formulas).
template <typename W, typename LabelOf>
__device__ void lstm_tensor_phase(const GreedyParams& P, int l, const int* items, int n_items, W* as,
                                  LabelOf label_of) {
    constexpr int kTiles = kTcLstmItems / 16;
    using BFragment = wmma::fragment<wmma::matrix_b, 16, 16, 16, W, wmma::col_major>;
    const int H = P.hidden, L = P.n_layers, ld = H + kTcPad, warp = threadIdx.x >> 5, wpb = blockDim.x >> 5;
    const int n_unit_tiles = H / 16, n_chunks = (n_unit_tiles + wpb - 1) / wpb;
    const int n_groups = (n_items + kTcLstmItems - 1) / kTcLstmItems;
    const W* w_ih = static_cast<const W*>(P.w_ih[l]);
    const W* w_hh = static_cast<const W*>(P.w_hh[l]);
    const float* bias = P.bias[l];
    AccFragment idx;
    index_fragment(idx);
    for (int unit = blockIdx.x; unit < n_groups * n_chunks; unit += gridDim.x) {
        const int a0 = (unit / n_chunks) * kTcLstmItems, chunk = unit % n_chunks;
        const int ng = min(kTcLstmItems, n_items - a0), n_tiles = (ng + 15) / 16;
        const int u0 = (chunk * wpb + warp) * 16;
        const bool busy = u0 < H;
        AccFragment acc[4][kTiles];
#pragma unroll
        for (int q = 0; q < 4; ++q)
#pragma unroll
            for (int it = 0; it < kTiles; ++it) wmma::fill_fragment(acc[q][it], 0.f);
        for (int half = 0; half < 2; ++half) {
            // half 0: x (the label's embedding, or layer l-1's new h) against W_ih; half 1: h_old against W_hh.
            __syncthreads();  // the previous rows may still be read
            stage_rows(as, ld, H, ng, n_tiles, [&](int r) -> const float* {
                const int b = items[a0 + r];
                const int64_t base = (int64_t{b} * L + l) * H;
                if (half == 1) return P.h + base;
                if (l > 0) return P.hn + base - H;
                return P.embed + int64_t{label_of(b)} * H;
            });
            __syncthreads();
            if (!busy) continue;
            // B[k, n] = W[q·H + u0 + n, k]; the next step's four fragments load during this step's products.
            const W* w = (half == 0 ? w_ih : w_hh) + int64_t{u0} * H;
            BFragment bf[4], next[4];
#pragma unroll
            for (int q = 0; q < 4; ++q) wmma::load_matrix_sync(bf[q], w + int64_t{q} * H * H, H);
            for (int k0 = 0; k0 < H; k0 += 16) {
                if (k0 + 16 < H) {
#pragma unroll
                    for (int q = 0; q < 4; ++q) wmma::load_matrix_sync(next[q], w + int64_t{q} * H * H + k0 + 16, H);
                }
#pragma unroll
                for (int it = 0; it < kTiles; ++it) {
                    if (it < n_tiles) {
                        wmma::fragment<wmma::matrix_a, 16, 16, 16, W, wmma::row_major> af;
                        wmma::load_matrix_sync(af, as + it * 16 * ld + k0, ld);
#pragma unroll
                        for (int q = 0; q < 4; ++q) wmma::mma_sync(acc[q][it], af, bf[q], acc[q][it]);
                    }
                }
#pragma unroll
                for (int q = 0; q < 4; ++q) bf[q] = next[q];
            }
        }
        if (!busy) continue;
#pragma unroll
        for (int it = 0; it < kTiles; ++it) {
            if (it >= n_tiles) break;
#pragma unroll
            for (int e = 0; e < idx.num_elements; ++e) {
                const int pos = static_cast<int>(idx.x[e]), a = a0 + it * 16 + (pos >> 4), u = u0 + (pos & 15);
                if (a >= n_items) continue;
                lstm_cell(P, (int64_t{items[a]} * L + l) * H + u, acc[0][it].x[e] + __ldg(bias + u),
                          acc[1][it].x[e] + __ldg(bias + H + u), acc[2][it].x[e] + __ldg(bias + 2 * H + u),
                          acc[3][it].x[e] + __ldg(bias + 3 * H + u));
            }
        }
    }
}

// p[b] = pred_w · g[b] + pred_b on tensor cores (g the last layer's new h). A unit is one 16-row tile of pred_w
// for a group of kTcItems items; the block's warps split the k steps and their sums meet in `red` (kTcReduceFloats),
// so a few dozen items still spread over J / 16 blocks instead of J / 128.
template <typename W>
__device__ void projection_tensor_phase(const GreedyParams& P, const int* items, int n_items, W* as, float* red) {
    constexpr int kTiles = kTcItems / 16;
    const int H = P.hidden, J = P.joint_hidden, L = P.n_layers, ld = H + kTcPad;
    const int warp = threadIdx.x >> 5, wpb = blockDim.x >> 5;
    const int n_row_tiles = J / kTcTileRows, n_groups = (n_items + kTcItems - 1) / kTcItems;
    const int steps = (H / 16 + wpb - 1) / wpb, kb = min(H, warp * steps * 16), ke = min(H, kb + steps * 16);
    const W* pred_w = static_cast<const W*>(P.pred_w);
    int staged = -1;
    for (int unit = blockIdx.x; unit < n_groups * n_row_tiles; unit += gridDim.x) {
        const int g = unit / n_row_tiles, rt = unit % n_row_tiles;
        const int a0 = g * kTcItems, ng = min(kTcItems, n_items - a0), n_tiles = (ng + 15) / 16;
        __syncthreads();  // the previous unit's rows and sums are read
        if (g != staged) {
            stage_rows(as, ld, H, ng, n_tiles,
                       [&](int r) -> const float* { return P.hn + (int64_t{items[a0 + r]} * L + L - 1) * H; });
            staged = g;
            __syncthreads();
        }
        AccFragment acc[kTiles];
        zero_tiles<kTiles>(acc);
        if (kb < ke) multiply_item_tiles<kTiles>(pred_w + int64_t{rt} * kTcTileRows * H, H, as + kb, ld, kb, ke, n_tiles,
                                                 acc);
#pragma unroll
        for (int it = 0; it < kTiles; ++it)
            wmma::store_matrix_sync(red + (warp * kTiles + it) * 256, acc[it], 16, wmma::mem_row_major);
        __syncthreads();
        // Tile element pos: item pos / 16 of the tile, row pos % 16 of the row tile.
        for (int e = threadIdx.x; e < n_tiles * 256; e += blockDim.x) {
            const int it = e >> 8, pos = e & 255, a = a0 + it * 16 + (pos >> 4), row = rt * kTcTileRows + (pos & 15);
            if (a >= n_items) continue;
            float sum = 0.f;
            for (int w = 0; w < wpb; ++w) sum += red[(w * kTiles + it) * 256 + pos];
            P.p[int64_t{items[a]} * J + row] = sum + __ldg(P.pred_b + row);
        }
    }
}

// LSTM layer `l` on tensor cores for up to a few hundred items: a unit is one tile of 16 hidden units for a group of
// kTcSplitItems items, and its eight warps take one gate each of x · W_ih (warps 0-3) or h_old · W_hh (warps 4-7),
// so 64 items keep 80 blocks busy (lstm_tensor_phase: 10). The sums meet in `red`, then the cell update.
constexpr int kTcSplitItems = 32;

template <typename W, typename LabelOf>
__device__ void lstm_split_phase(const GreedyParams& P, int l, const int* items, int n_items, W* as, float* red,
                                 LabelOf label_of) {
    constexpr int kTiles = kTcSplitItems / 16;
    static_assert(kDecodeThreads == 256, "eight warps: four gates times two inputs");
    const int H = P.hidden, L = P.n_layers, ld = H + kTcPad, warp = threadIdx.x >> 5;
    const int q = warp & 3, half = warp >> 2;
    const int n_unit_tiles = H / 16, n_groups = (n_items + kTcSplitItems - 1) / kTcSplitItems;
    W* ax = as;
    W* ah = as + kTcSplitItems * ld;
    const W* w = static_cast<const W*>(half == 0 ? P.w_ih[l] : P.w_hh[l]);
    const float* bias = P.bias[l];
    int staged = -1;
    for (int unit = blockIdx.x; unit < n_groups * n_unit_tiles; unit += gridDim.x) {
        const int g = unit / n_unit_tiles, u0 = (unit % n_unit_tiles) * 16;
        const int a0 = g * kTcSplitItems, ng = min(kTcSplitItems, n_items - a0), n_tiles = (ng + 15) / 16;
        __syncthreads();  // the previous unit's rows and sums are read
        if (g != staged) {
            // x: the label's embedding, or layer l-1's new h; and the old h.
            stage_rows(ax, ld, H, ng, n_tiles, [&](int r) -> const float* {
                const int b = items[a0 + r];
                if (l > 0) return P.hn + (int64_t{b} * L + l - 1) * H;
                return P.embed + int64_t{label_of(b)} * H;
            });
            stage_rows(ah, ld, H, ng, n_tiles,
                       [&](int r) -> const float* { return P.h + (int64_t{items[a0 + r]} * L + l) * H; });
            staged = g;
            __syncthreads();
        }
        AccFragment acc[kTiles];
        zero_tiles<kTiles>(acc);
        multiply_item_tiles<kTiles>(w + int64_t{q * H + u0} * H, H, half == 0 ? ax : ah, ld, 0, H, n_tiles, acc);
#pragma unroll
        for (int it = 0; it < kTiles; ++it)
            wmma::store_matrix_sync(red + (warp * kTiles + it) * 256, acc[it], 16, wmma::mem_row_major);
        __syncthreads();
        for (int e = threadIdx.x; e < n_tiles * 256; e += blockDim.x) {
            const int it = e >> 8, pos = e & 255, a = a0 + it * 16 + (pos >> 4), u = u0 + (pos & 15);
            if (a >= n_items) continue;
            float gate[4];
#pragma unroll
            for (int gq = 0; gq < 4; ++gq)
                gate[gq] = red[(gq * kTiles + it) * 256 + pos] + red[((4 + gq) * kTiles + it) * 256 + pos] +
                           __ldg(bias + gq * H + u);
            lstm_cell(P, (int64_t{items[a]} * L + l) * H + u, gate[0], gate[1], gate[2], gate[3]);
        }
    }
}

// h = hn for the updated items.
__device__ void commit_hidden(const GreedyParams& P, const int* items, int n_items) {
    const int64_t per = int64_t{P.n_layers} * P.hidden, n = int64_t{n_items} * per;
    for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
        const int64_t o = int64_t{items[i / per]} * per + i % per;
        P.h[o] = __ldcg(P.hn + o);
    }
}

// The LSTM layers and the projection for the items in `items`, each behind a grid barrier. kMayUseTensorCores:
// 16-bit weights and batches that can reach kTcMinItems emitters (the small-batch kernel cannot).
template <typename W, bool kMayUseTensorCores, typename LabelOf>
__device__ __forceinline__ void predictor_update(const GreedyParams& P, cg::grid_group& grid, const int* items, int n_items,
                                 float* smem, LabelOf label_of) {
    constexpr bool kTensor = kMayUseTensorCores && !std::is_same_v<W, float>;
    bool tensor = false, split = false;
    if constexpr (kTensor) {
        tensor = n_items >= kTcMinItems && P.hidden % 16 == 0 && P.joint_hidden % 16 == 0;
        // Split units while they fill at most two rounds of the grid; beyond that the wide units read each weight
        // tile once for more items.
        split = P.split_lstm && (n_items + kTcSplitItems - 1) / kTcSplitItems * (P.hidden / 16) <= 2 * static_cast<int>(gridDim.x);
    }
    float* red = reinterpret_cast<float*>(reinterpret_cast<char*>(smem) + tc_rows_bytes(P.hidden));
    for (int l = 0; l < P.n_layers; ++l) {
        if (tensor) {
            if constexpr (kTensor) {
                if (split) lstm_split_phase<W>(P, l, items, n_items, reinterpret_cast<W*>(smem), red, label_of);
                else lstm_tensor_phase<W>(P, l, items, n_items, reinterpret_cast<W*>(smem), label_of);
            }
        } else if (n_items == 1) {
            lstm_phase_g<1, W>(P, l, items, n_items, smem, label_of);
        } else if (n_items <= 8) {
            lstm_phase_g<8, W>(P, l, items, n_items, smem, label_of);
        } else {
            lstm_phase_g<kMaxLstmGroup, W>(P, l, items, n_items, smem, label_of);
        }
        grid.sync();
    }
    if (tensor) {
        if constexpr (kTensor) projection_tensor_phase<W>(P, items, n_items, reinterpret_cast<W*>(smem), red);
    } else if (n_items == 1) {
        projection_phase_g<1, W>(P, items, n_items, smem);
    } else if (n_items <= 8) {
        projection_phase_g<8, W>(P, items, n_items, smem);
    } else {
        projection_phase_g<kMaxGroup, W>(P, items, n_items, smem);
    }
    commit_hidden(P, items, n_items);
    grid.sync();
}

// Zeroes h and c of the items without carried state (they start from the SOS step).
__device__ void zero_new_states(const GreedyParams& P) {
    const int64_t per = int64_t{P.n_layers} * P.hidden, n_state = int64_t{P.batch} * per;
    for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n_state; i += int64_t{gridDim.x} * blockDim.x) {
        if (!P.started[i / per]) {
            P.h[i] = 0.f;
            P.c[i] = 0.f;
        }
    }
}

__device__ int64_t iteration_limit(const GreedyParams& P) {
    int max_T = 0;
    for (int b = 0; b < P.batch; ++b) max_T = max(max_T, P.lengths[b]);
    // Each iteration moves every active item forward by a frame or emits a token (at most max_symbols per
    // frame), so the loop ends within max_T · (max_symbols + 1) iterations.
    return int64_t{max_T} * (P.max_symbols + 1) + 1;
}

// Batches of up to kSmall items: the loop state is replicated in every block's shared memory and every block
// decides every item (one warp each) from the same partials, so all blocks agree without a barrier after the
// decision; block 0 alone writes tokens and the final state.
template <typename W>
__global__ void __launch_bounds__(kDecodeThreads) greedy_small_kernel(GreedyParams P) {
    extern __shared__ float4 smem4[];
    float* smem = reinterpret_cast<float*>(smem4);
    __shared__ int s_t[kSmall], s_run[kSmall], s_last[kSmall], s_label[kSmall], s_ntok[kSmall], s_emit[kSmall];
    __shared__ int active[kSmall], emit[kSmall];
    __shared__ int n_active, n_emit;
    cg::grid_group grid = cg::this_grid();
    const int B = P.batch;
    const bool writer = blockIdx.x == 0;
    if (threadIdx.x < B) {
        const int b = threadIdx.x;
        s_t[b] = P.t[b];
        s_run[b] = 0;
        s_last[b] = -1;
        s_label[b] = P.blank;
        s_ntok[b] = 0;
    }
    if (threadIdx.x == 0) {
        n_emit = 0;
        for (int b = 0; b < B; ++b)
            if (!P.started[b]) emit[n_emit++] = b;
    }
    zero_new_states(P);
    grid.sync();
    auto label_of = [&](int b) { return s_label[b]; };
    if (n_emit > 0) predictor_update<W, false>(P, grid, emit, n_emit, smem, label_of);

    const int64_t max_iterations = iteration_limit(P);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    for (int64_t it = 0;; ++it) {
        __syncthreads();
        if (threadIdx.x == 0) {
            n_active = 0;
            for (int b = 0; b < B; ++b)
                if (s_t[b] < P.lengths[b]) active[n_active++] = b;
        }
        __syncthreads();
        const int na = n_active;
        if (na == 0) break;
        if (it >= max_iterations) {
            if (writer && threadIdx.x == 0) atomicOr(P.error, 2);
            break;
        }
        float* logits = P.logits + (it & 1) * int64_t{B} * P.n_out;
        Partial* parts = static_cast<Partial*>(P.partials) + (it & 1) * int64_t{B} * kGreedyMaxBlocks;
        joint_phase<W>(P, active, na, smem, logits, parts, [&](int b) { return s_t[b]; });
        grid.sync();
        if (warp < na) {
            const int b = active[warp];
            const Partial best = item_best(parts, b, gridDim.x);
            if (lane == 0) {
                const ItemState s{&s_t[b], &s_run[b], &s_last[b], &s_label[b], &s_ntok[b]};
                s_emit[b] = apply_rules(P, b, best, logits + int64_t{b} * P.n_out, s, writer);
            }
        }
        __syncthreads();
        if (threadIdx.x == 0) {
            n_emit = 0;
            for (int a = 0; a < na; ++a)
                if (s_emit[active[a]]) emit[n_emit++] = active[a];
        }
        __syncthreads();
        if (n_emit > 0) predictor_update<W, false>(P, grid, emit, n_emit, smem, label_of);
    }
    if (writer && threadIdx.x < B) {
        P.t[threadIdx.x] = s_t[threadIdx.x];
        P.n_tokens[threadIdx.x] = s_ntok[threadIdx.x];
    }
}

// The joint of many items on tensor cores (16-bit weights, J a multiple of 16): logits = out_w · z + out_b with
// z = act(f + p) staged once per iteration as 16-bit rows z16[a] (a = position in the active list; written
// before a grid barrier). Work units are (64 items, 8 row tiles of 16): a block stages the unit's z rows in
// shared memory, each warp multiplies one 16-row tile of out_w (fragments read once, straight from L2) with the
// four 16-item tiles, adds the bias, writes the logits and folds them into per-item partials, stored per row
// chunk: parts[b * kGreedyMaxBlocks + chunk]. Returns the number of partial slots (row chunks).
template <typename W>
__device__ void stage_z16(const GreedyParams& P, const int* active, int n_active, W* z16) {
    const int J = P.joint_hidden;
    const int64_t n = int64_t{n_active} * J;
    for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
        const int a = static_cast<int>(i / J), j = static_cast<int>(i % J), b = active[a];
        const float* f = P.fproj + b * P.item_stride + int64_t{__ldcg(P.t + b)} * J;
        z16[i] = to_weight_type<W>(activate(f[j] + __ldcg(P.p + b * J + j), P.activation));
    }
}

template <typename W>
__device__ int joint_tensor_phase(const GreedyParams& P, const int* active, int n_active, W* zs, const W* z16,
                                  Partial* parts) {
    __shared__ __align__(32) float stage[kDecodeThreads / 32][16 * 16];
    __shared__ Partial warp_parts[kDecodeThreads / 32][kTcItems];
    const int J = P.joint_hidden, lane = threadIdx.x & 31, warp = threadIdx.x >> 5, wpb = blockDim.x >> 5;
    const int n_row_tiles = (P.n_out + kTcTileRows - 1) / kTcTileRows;
    const int n_chunks = (n_row_tiles + wpb - 1) / wpb;
    const int n_groups = (n_active + kTcItems - 1) / kTcItems;
    const W* out_w = static_cast<const W*>(P.out_w);
    for (int unit = blockIdx.x; unit < n_groups * n_chunks; unit += gridDim.x) {
        const int a0 = (unit / n_chunks) * kTcItems, chunk = unit % n_chunks;
        const int ng = min(kTcItems, n_active - a0), n_tiles = (ng + 15) / 16;
        // The unit's z rows (zero rows up to the tile boundary), 16 bytes at a time.
        __syncthreads();
        {
            const int per_row = J * static_cast<int>(sizeof(W)) / 16;
            const uint4* src = reinterpret_cast<const uint4*>(z16 + int64_t{a0} * J);
            uint4* dst = reinterpret_cast<uint4*>(zs);
            for (int i = threadIdx.x; i < n_tiles * 16 * per_row; i += blockDim.x)
                dst[i] = i < ng * per_row ? __ldcg(src + i) : make_uint4(0, 0, 0, 0);
        }
        __syncthreads();
        const int rt = chunk * wpb + warp;
        if (rt < n_row_tiles) {
            // out_w rows are B's columns: B[k, n] = out_w[rt·16 + n, k] (column-major, ld J).
            AccFragment acc[kTcItems / 16];
            zero_tiles<kTcItems / 16>(acc);
            multiply_item_tiles<kTcItems / 16>(out_w + int64_t{rt} * kTcTileRows * J, J, zs, J, 0, J, n_tiles, acc);
            // Tile it: [16 items][16 rows]; lane = item (lane & 15) x half of the rows (lane >> 4).
            const int m = lane & 15, half = lane >> 4;
#pragma unroll
            for (int it = 0; it < kTcItems / 16; ++it) {
                if (it >= n_tiles) break;
                wmma::store_matrix_sync(stage[warp], acc[it], 16, wmma::mem_row_major);
                __syncwarp();
                const int a = a0 + it * 16 + m;
                Partial part = empty_partial();
                if (a < n_active) {
                    const int b = active[a];
                    float* lg = P.logits + int64_t{b} * P.n_out;
                    for (int r = half * 8; r < half * 8 + 8; ++r) {
                        const int row = rt * kTcTileRows + r;
                        if (row >= P.n_out) break;
                        const float v = stage[warp][m * 16 + r] + __ldg(P.out_b + row);
                        lg[row] = v;
                        if (row <= P.blank) online_update(part, v, row);
                    }
                }
                Partial other;
                other.m = __shfl_xor_sync(0xffffffffu, part.m, 16);
                other.i = __shfl_xor_sync(0xffffffffu, part.i, 16);
                other.s = __shfl_xor_sync(0xffffffffu, part.s, 16);
                merge(part, other);
                if (half == 0) warp_parts[warp][it * 16 + m] = part;
                __syncwarp();
            }
        }
        if (rt >= n_row_tiles) {
            for (int i = lane; i < kTcItems; i += 32) warp_parts[warp][i] = empty_partial();
        }
        __syncthreads();
        if (threadIdx.x < ng) {
            Partial p = warp_parts[0][threadIdx.x];
            for (int w = 1; w < wpb; ++w) merge(p, warp_parts[w][threadIdx.x]);
            store_partial(parts + int64_t{active[a0 + threadIdx.x]} * kGreedyMaxBlocks + chunk, p);
        }
    }
    return n_chunks;
}

// One warp per active item: the merged partials and the loop rules, state in global memory.
__device__ void decide_phase(const GreedyParams& P, const int* active, int n_active, const Partial* parts,
                             int n_slots) {
    for (int a = warp_id_global(); a < n_active; a += warps_total()) {
        const int b = active[a];
        const Partial best = item_best(parts, b, n_slots);
        if ((threadIdx.x & 31) == 0) {
            const ItemState s{P.t + b, P.run + b, P.last_ts + b, P.label + b, P.n_tokens + b};
            P.need_lstm[b] = apply_rules(P, b, best, P.logits + int64_t{b} * P.n_out, s, true) ? 1 : 0;
        }
    }
}

template <typename W>
__global__ void __launch_bounds__(kDecodeThreads) greedy_decode_kernel(GreedyParams P) {
    extern __shared__ __align__(128) float4 smem4[];
    float* smem = reinterpret_cast<float*>(smem4);
    __shared__ int list[kGreedyMaxBatch + 1];
    cg::grid_group grid = cg::this_grid();
    const int B = P.batch;
    Partial* parts = static_cast<Partial*>(P.partials);

    // SOS: items without carried state step the LSTM once on the blank label from the zero state.
    zero_new_states(P);
    if (blockIdx.x == 0) {
        for (int b = threadIdx.x; b < B; b += blockDim.x) {
            P.need_lstm[b] = !P.started[b];
            P.label[b] = P.blank;
            P.run[b] = 0;
            P.last_ts[b] = -1;
            P.n_tokens[b] = 0;
        }
    }
    grid.sync();
    auto label_of = [&P](int b) { return __ldcg(P.label + b); };
    auto collect_lstm = [&] { return compact(B, list, [&P](int b) { return __ldcg(P.need_lstm + b) != 0; }); };
    int n_items = collect_lstm();
    if (n_items > 0) predictor_update<W, true>(P, grid, list, n_items, smem, label_of);

    const int64_t max_iterations = iteration_limit(P);
    for (int64_t it = 0;; ++it) {
        // Only this iteration's emitters step the predictor: an item that emitted last iteration and has since
        // run out of frames is not in decide_phase's list, so its flag must not survive to this iteration's
        // collect (it would step its LSTM again on the same label and corrupt the state carried to the next
        // chunk). The previous collect is behind a grid barrier, or all flags were already 0.
        if (blockIdx.x == 0)
            for (int b = threadIdx.x; b < B; b += blockDim.x) P.need_lstm[b] = 0;
        const int n_active = compact(B, list, [&P](int b) { return __ldcg(P.t + b) < P.lengths[b]; });
        if (n_active == 0) break;
        if (it >= max_iterations) {
            if (blockIdx.x == 0 && threadIdx.x == 0) atomicOr(P.error, 2);
            break;
        }
        int n_slots = gridDim.x;
        if constexpr (!std::is_same_v<W, float>) {
            if (P.z16 && n_active >= kTcMinItems) {
                W* z16 = static_cast<W*>(P.z16);
                stage_z16(P, list, n_active, z16);
                grid.sync();
                n_slots = joint_tensor_phase(P, list, n_active, reinterpret_cast<W*>(smem), z16, parts);
            } else {
                joint_phase<W>(P, list, n_active, smem, P.logits, parts, [&P](int b) { return __ldcg(P.t + b); });
            }
        } else {
            joint_phase<W>(P, list, n_active, smem, P.logits, parts, [&P](int b) { return __ldcg(P.t + b); });
        }
        grid.sync();
        decide_phase(P, list, n_active, parts, n_slots);
        grid.sync();
        n_items = collect_lstm();
        if (n_items > 0) predictor_update<W, true>(P, grid, list, n_items, smem, label_of);
    }
}

template <typename W>
void launch(Launch l, const GreedyParams& p) {
    const size_t shared = greedy_shared_bytes(p);
    void* kernel = p.batch <= kSmall ? reinterpret_cast<void*>(greedy_small_kernel<W>)
                                     : reinterpret_cast<void*>(greedy_decode_kernel<W>);
    // Static shared memory counts against the 48 KB a block gets without opting in, so the limit is always set.
    PK_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(shared)));
    int per_sm = 0;
    PK_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kDecodeThreads, shared));
    if (per_sm < 1) throw_cuda_error(cudaErrorInvalidConfiguration, "greedy decode kernel occupancy", __FILE__, __LINE__);
    // Two blocks per SM at most: enough warps for the weight rows, few participants in each grid barrier
    // (PARAKEET_DECODE_BLOCKS_PER_SM=1: one per SM, for A/B measurements).
    static const int most = env_switch("PARAKEET_DECODE_BLOCKS_PER_SM") ? 1 : 2;
    const unsigned int blocks = static_cast<unsigned int>(std::min(l.n_sms * std::min(per_sm, most), kGreedyMaxBlocks));
    GreedyParams params = p;
    void* args[] = {&params};
    PK_CUDA_CHECK(cudaLaunchCooperativeKernel(kernel, dim3(blocks), dim3(kDecodeThreads), args, shared, l.stream));
}

}  // namespace

size_t greedy_shared_bytes(const GreedyParams& p) {
    const size_t floats = std::max(static_cast<size_t>(kMaxGroup) * std::max(p.joint_hidden, p.hidden),
                                   static_cast<size_t>(kMaxLstmGroup) * 2 * p.hidden);
    if (p.batch <= kSmall) return floats * sizeof(float);  // the small-batch kernel never uses tensor cores
    // The tensor-core phases' rows (kTcItems x (hidden + kTcPad) 16-bit values), then the split-k sums.
    const size_t tensor = tc_rows_bytes(p.hidden) + kTcReduceFloats * sizeof(float);
    return std::max(floats * sizeof(float), tensor);
}

void greedy_decode(Launch l, const GreedyParams& p) {
    switch (p.weight_type) {
        case kGreedyF32: launch<float>(l, p); return;
        case kGreedyF16: launch<__half>(l, p); return;
        case kGreedyBF16: launch<__nv_bfloat16>(l, p); return;
    }
    throw_cuda_error(cudaErrorInvalidValue, "greedy decode weight type", __FILE__, __LINE__);
}

}  // namespace parakeet::cuda::kernels
