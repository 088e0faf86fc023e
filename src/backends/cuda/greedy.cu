// Greedy label-looping decode on the device: one persistent cooperative kernel runs the whole loop of
// src/decoding/greedy.cc (NeMo tdt/rnnt_label_looping.py) for a batch, with grid-wide barriers between its
// phases instead of host round trips. Per iteration every active item evaluates the joint at its frame;
// items that emitted a token then run the LSTM step and the prediction projection.
#include <cooperative_groups.h>

#include <algorithm>

#include "backends/cuda/kernel_utils.cuh"

namespace cg = cooperative_groups;

namespace parakeet::cuda::kernels {

namespace {

// Items sharing one pass over a weight row: the joint and the prediction projection (one accumulator per item),
// the LSTM (four gates per item).
constexpr int kMaxGroup = 32;
constexpr int kMaxLstmGroup = 16;
constexpr int kDecodeThreads = 256;

__device__ __forceinline__ float activate(float s, int activation) {
    if (activation == 0) return s > 0.f ? s : 0.f;
    if (activation == 1) return tanhf(s);
    return 1.f / (1.f + expf(-s));
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

// Items with flag[b] != 0 (global memory), in order.
__device__ int collect(const int* flag, int batch, int* list) {
    return compact(batch, list, [flag](int b) { return __ldcg(flag + b) != 0; });
}

// Items with frames left (t < T).
__device__ int collect_active(const GreedyParams& P, int* list) {
    return compact(P.batch, list, [&P](int b) { return __ldcg(P.t + b) < P.lengths[b]; });
}

__device__ __forceinline__ int warp_id_global() { return (blockIdx.x * blockDim.x + threadIdx.x) >> 5; }
__device__ __forceinline__ int warps_total() { return (gridDim.x * blockDim.x) >> 5; }

// out[items[gi] * out_stride + row] = w[row] · xs[gi] + bias[row] for every row of w[rows, k] and the group's ng
// inputs xs[ng, k] (shared memory); rows are spread over all warps of the grid, lanes over k.
template <int kGroup>
__device__ void group_gemv(const float* w, const float* bias, int rows, int k, const float* xs, int ng,
                           const int* items, float* out, int64_t out_stride) {
    const int lane = threadIdx.x & 31;
    for (int row = warp_id_global(); row < rows; row += warps_total()) {
        float acc[kGroup] = {};
        const float* wr = w + int64_t{row} * k;
        for (int j = lane; j < k; j += 32) {
            const float wj = __ldg(wr + j);
#pragma unroll
            for (int gi = 0; gi < kGroup; ++gi)
                if (gi < ng) acc[gi] += wj * xs[gi * k + j];
        }
#pragma unroll
        for (int gi = 0; gi < kGroup; ++gi) {
            if (gi >= ng) break;
            const float sum = warp_sum(acc[gi]);
            if (lane == 0) out[int64_t{items[gi]} * out_stride + row] = sum + bias[row];
        }
    }
}

// logits[b] = out_w · act(f[b, t_b] + p[b]) + out_b for the active items.
template <int kGroup>
__device__ void joint_phase_g(const GreedyParams& P, const int* active, int n_active, float* zs) {
    const int J = P.joint_hidden;
    for (int g0 = 0; g0 < n_active; g0 += kGroup) {
        const int ng = min(kGroup, n_active - g0);
        __syncthreads();
        for (int i = threadIdx.x; i < ng * J; i += blockDim.x) {
            const int gi = i / J, j = i - gi * J, b = active[g0 + gi];
            const float* f = P.fproj + b * P.item_stride + int64_t{__ldcg(P.t + b)} * J;
            zs[i] = activate(f[j] + __ldcg(P.p + b * J + j), P.activation);
        }
        __syncthreads();
        group_gemv<kGroup>(P.out_w, P.out_b, P.n_out, J, zs, ng, active + g0, P.logits, P.n_out);
    }
}

// One block per active item: argmax (ties to the lowest index), confidence, duration, and the loop rules.
__device__ void decide_phase(const GreedyParams& P, const int* active, int n_active) {
    __shared__ float best_v[32];
    __shared__ int best_i[32];
    __shared__ double sums[32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
    for (int a = blockIdx.x; a < n_active; a += gridDim.x) {
        const int b = active[a];
        const float* lg = P.logits + int64_t{b} * P.n_out;
        float bv = -INFINITY;
        int bi = 0x7fffffff;
        for (int i = threadIdx.x; i <= P.blank; i += blockDim.x) {
            const float v = __ldcg(lg + i);
            if (v > bv) {  // strided ascending: the first maximum seen is this thread's lowest index
                bv = v;
                bi = i;
            }
        }
        for (int o = 16; o > 0; o >>= 1) {
            const float ov = __shfl_xor_sync(0xffffffffu, bv, o);
            const int oi = __shfl_xor_sync(0xffffffffu, bi, o);
            if (ov > bv || (ov == bv && oi < bi)) {
                bv = ov;
                bi = oi;
            }
        }
        __syncthreads();
        if (lane == 0) {
            best_v[warp] = bv;
            best_i[warp] = bi;
        }
        __syncthreads();
        bv = best_v[0];
        bi = best_i[0];
        for (int w = 1; w < n_warps; ++w)
            if (best_v[w] > bv || (best_v[w] == bv && best_i[w] < bi)) {
                bv = best_v[w];
                bi = best_i[w];
            }
        double s = 0.0;
        for (int i = threadIdx.x; i <= P.blank; i += blockDim.x) s += exp(static_cast<double>(__ldcg(lg + i) - bv));
        for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
        __syncthreads();
        if (lane == 0) sums[warp] = s;
        __syncthreads();
        if (threadIdx.x == 0) {
            double total = 0.0;
            for (int w = 0; w < n_warps; ++w) total += sums[w];
            const int tok = bi;
            int dur;
            if (P.n_dur > 0) {
                int di = 0;
                for (int i = 1; i < P.n_dur; ++i)
                    if (__ldcg(lg + P.blank + 1 + i) > __ldcg(lg + P.blank + 1 + di)) di = i;
                dur = P.durations[di];
                if (tok == P.blank && dur == 0) dur = 1;
            } else {
                dur = tok == P.blank ? 1 : 0;
            }
            const int T = P.lengths[b];
            const int t_tok = __ldcg(P.t + b);
            int t = t_tok + dur;
            P.need_lstm[b] = 0;
            if (tok != P.blank) {
                const int n = __ldcg(P.n_tokens + b);
                if (n < P.max_tokens) {
                    const int64_t o = int64_t{b} * P.max_tokens + n;
                    P.tok_id[o] = tok;
                    P.tok_frame[o] = t_tok;
                    P.tok_dur[o] = P.n_dur > 0 ? dur : 0;
                    P.tok_conf[o] = static_cast<float>(1.0 / total);
                    P.n_tokens[b] = n + 1;
                } else {
                    atomicOr(P.error, 1);
                }
                const int run = t_tok == __ldcg(P.last_ts + b) ? __ldcg(P.run + b) + 1 : 1;
                P.run[b] = run;
                P.last_ts[b] = t_tok;
                P.label[b] = tok;
                P.need_lstm[b] = 1;
                if (t < T && run >= P.max_symbols && t_tok == t) t += 1;  // force a step
            }
            P.t[b] = t;
        }
        __syncthreads();
    }
}

// LSTM layer `l` for the items in `items`: gates from x (embedding of label, or layer l-1's new h) and the
// old h; c updated in place, the new h written to hn.
template <int kLstmGroup>
__device__ void lstm_phase_g(const GreedyParams& P, int l, const int* items, int n_items, float* smem) {
    const int H = P.hidden, lane = threadIdx.x & 31;
    float* xs = smem;
    float* hs = smem + kLstmGroup * H;
    const float* w_ih = P.w_ih[l];
    const float* w_hh = P.w_hh[l];
    const float* bias = P.bias[l];
    for (int g0 = 0; g0 < n_items; g0 += kLstmGroup) {
        const int ng = min(kLstmGroup, n_items - g0);
        __syncthreads();
        for (int i = threadIdx.x; i < ng * H; i += blockDim.x) {
            const int gi = i / H, j = i - gi * H, b = items[g0 + gi];
            const int64_t base = (int64_t{b} * P.n_layers + l) * H;
            xs[i] = l == 0 ? P.embed[int64_t{__ldcg(P.label + b)} * H + j] : __ldcg(P.hn + base - H + j);
            hs[i] = __ldcg(P.h + base + j);
        }
        __syncthreads();
        for (int u = warp_id_global(); u < H; u += warps_total()) {
            float acc[4][kLstmGroup] = {};
            for (int j = lane; j < H; j += 32) {
#pragma unroll
                for (int q = 0; q < 4; ++q) {
                    const float wi = __ldg(w_ih + int64_t{q * H + u} * H + j);
                    const float wh = __ldg(w_hh + int64_t{q * H + u} * H + j);
#pragma unroll
                    for (int gi = 0; gi < kLstmGroup; ++gi)
                        if (gi < ng) acc[q][gi] += wi * xs[gi * H + j] + wh * hs[gi * H + j];
                }
            }
#pragma unroll
            for (int gi = 0; gi < kLstmGroup; ++gi) {
                if (gi >= ng) break;
                float gate[4];
#pragma unroll
                for (int q = 0; q < 4; ++q) gate[q] = warp_sum(acc[q][gi]) + bias[q * H + u];
                if (lane == 0) {
                    const int64_t o = (int64_t{items[g0 + gi]} * P.n_layers + l) * H + u;
                    const float ig = 1.f / (1.f + expf(-gate[0]));
                    const float fg = 1.f / (1.f + expf(-gate[1]));
                    const float gg = tanhf(gate[2]);
                    const float og = 1.f / (1.f + expf(-gate[3]));
                    const float cn = fg * __ldcg(P.c + o) + ig * gg;
                    P.c[o] = cn;
                    P.hn[o] = og * tanhf(cn);
                }
            }
        }
    }
}

// p[b] = pred_w · g[b] + pred_b with g the last layer's new h; then h = hn for the updated items.
template <int kGroup>
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
        group_gemv<kGroup>(P.pred_w, P.pred_b, J, H, gs, ng, items + g0, P.p, J);
    }
    const int64_t n = int64_t{n_items} * L * H;
    for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
        const int64_t per = int64_t{L} * H;
        const int64_t o = int64_t{items[i / per]} * per + i % per;
        P.h[o] = __ldcg(P.hn + o);
    }
}

// Small batches use a small group (fewer predicated accumulators per weight element), large ones a large group
// (fewer passes over the weights).
__device__ void joint_phase(const GreedyParams& P, const int* active, int n_active, float* zs) {
    if (n_active <= 8) {
        joint_phase_g<8>(P, active, n_active, zs);
    } else {
        joint_phase_g<kMaxGroup>(P, active, n_active, zs);
    }
}

__device__ void lstm_phase(const GreedyParams& P, int l, const int* items, int n_items, float* smem) {
    if (n_items <= 8) {
        lstm_phase_g<8>(P, l, items, n_items, smem);
    } else {
        lstm_phase_g<kMaxLstmGroup>(P, l, items, n_items, smem);
    }
}

__device__ void projection_phase(const GreedyParams& P, const int* items, int n_items, float* gs) {
    if (n_items <= 8) {
        projection_phase_g<8>(P, items, n_items, gs);
    } else {
        projection_phase_g<kMaxGroup>(P, items, n_items, gs);
    }
}

__device__ void predictor_update(const GreedyParams& P, cg::grid_group& grid, const int* items, int n_items,
                                 float* smem) {
    for (int l = 0; l < P.n_layers; ++l) {
        lstm_phase(P, l, items, n_items, smem);
        grid.sync();
    }
    projection_phase(P, items, n_items, smem);
    grid.sync();
}

__global__ void __launch_bounds__(kDecodeThreads) greedy_decode_kernel(GreedyParams P) {
    extern __shared__ float smem[];
    __shared__ int list[kGreedyMaxBatch + 1];
    cg::grid_group grid = cg::this_grid();
    const int B = P.batch, H = P.hidden, L = P.n_layers;
    __shared__ int block_max_T;
    if (threadIdx.x == 0) block_max_T = 0;
    __syncthreads();
    {
        int m = 0;
        for (int b = threadIdx.x; b < B; b += blockDim.x) m = max(m, P.lengths[b]);
        atomicMax(&block_max_T, m);
    }
    __syncthreads();
    const int max_T = block_max_T;

    // SOS: items without carried state step the LSTM once on the blank label from the zero state.
    const int64_t n_state = int64_t{B} * L * H;
    for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n_state; i += int64_t{gridDim.x} * blockDim.x) {
        if (!P.started[i / (int64_t{L} * H)]) {
            P.h[i] = 0.f;
            P.c[i] = 0.f;
        }
    }
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
    int n_items = collect(P.need_lstm, B, list);
    if (n_items > 0) predictor_update(P, grid, list, n_items, smem);

    // Each iteration moves every active item forward by a frame or emits a token (at most max_symbols per
    // frame), so the loop ends within max_T · (max_symbols + 1) iterations.
    const int64_t max_iterations = int64_t{max_T} * (P.max_symbols + 1) + 1;
    for (int64_t it = 0;; ++it) {
        // Only this iteration's emitters step the predictor: an item that emitted last iteration and has since
        // run out of frames is not in decide_phase's list, so its flag must not survive to this iteration's
        // collect (it would step its LSTM again on the same label and corrupt the state carried to the next
        // chunk). The previous collect is behind a grid barrier, or all flags were already 0.
        if (blockIdx.x == 0)
            for (int b = threadIdx.x; b < B; b += blockDim.x) P.need_lstm[b] = 0;
        const int n_active = collect_active(P, list);
        if (n_active == 0) break;
        if (it >= max_iterations) {
            if (blockIdx.x == 0 && threadIdx.x == 0) atomicOr(P.error, 2);
            break;
        }
        joint_phase(P, list, n_active, smem);
        grid.sync();
        decide_phase(P, list, n_active);
        grid.sync();
        n_items = collect(P.need_lstm, B, list);
        if (n_items > 0) predictor_update(P, grid, list, n_items, smem);
    }
}

}  // namespace

size_t greedy_shared_bytes(const GreedyParams& p) {
    const size_t floats = std::max(static_cast<size_t>(kMaxGroup) * std::max(p.joint_hidden, p.hidden),
                                   static_cast<size_t>(kMaxLstmGroup) * 2 * p.hidden);
    return floats * sizeof(float);
}

void greedy_decode(Launch l, const GreedyParams& p) {
    const size_t shared = greedy_shared_bytes(p);
    if (shared > 48 * 1024)
        PK_CUDA_CHECK(cudaFuncSetAttribute(greedy_decode_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                           static_cast<int>(shared)));
    int per_sm = 0;
    PK_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, greedy_decode_kernel, kDecodeThreads, shared));
    if (per_sm < 1) throw_cuda_error(cudaErrorInvalidConfiguration, "greedy_decode_kernel occupancy", __FILE__, __LINE__);
    // Two blocks per SM at most: enough warps for the weight rows, few participants in each grid barrier.
    const unsigned int blocks = static_cast<unsigned int>(l.n_sms * min(per_sm, 2));
    GreedyParams params = p;
    void* args[] = {&params};
    PK_CUDA_CHECK(cudaLaunchCooperativeKernel(reinterpret_cast<void*>(greedy_decode_kernel), dim3(blocks),
                                              dim3(kDecodeThreads), args, shared, l.stream));
}

}  // namespace parakeet::cuda::kernels
