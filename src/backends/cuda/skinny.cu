// Linear layers on a few rows (a small batch of streaming steps): y[m] = act(x[m] · wᵀ + bias) for m < 8.
// cuBLAS runs these as split-K GEMVs followed by separate bias, activation and layer-norm launches, each a few
// microseconds of mostly launch latency. Here one kernel reads each weight row once with 16-byte streaming loads
// (the weight read is the floor), keeps the few input rows in L1 or shared memory and applies bias and SiLU in
// its epilogue. With the norm prologue the residual update and the layer norm(s) that feed the linear run in the
// same kernel: every block normalises the rows itself (a few KiB from L2), block 0 also stores the updated
// residual stream.
#include "backends/cuda/kernel_utils.cuh"
#include "backends/cuda/stream_kernels.h"

namespace parakeet::cuda::kernels {

namespace {

constexpr int kSkinnyThreads = 512;
constexpr int kSkinnyWarps = kSkinnyThreads / 32;
constexpr int kOutPerWarp = 2;  // weight rows per warp: each input load serves two of them
constexpr int kNormCols = 4;    // the norm prologue's columns per thread: k <= kNormCols * kSkinnyThreads

// v rounded to T (the 16-bit GEMM paths feed their inputs in 16 bits; float stays as it is).
template <typename T>
__device__ __forceinline__ float round_to(float v) {
    return to_float(from_float<T>(v));
}

// 16 bytes of input rows at p as floats. kGlobal: through the read-only cache (every warp reads them); kShared: a
// plain load (the prologue's rows in shared memory).
enum Load { kGlobal, kShared };
template <typename T, Load kLoad>
__device__ __forceinline__ void load16(const T* p, float* out) {
    const uint4* q = reinterpret_cast<const uint4*>(p);
    const uint4 raw = kLoad == kGlobal ? __ldg(q) : *q;
    const T* e = reinterpret_cast<const T*>(&raw);
#pragma unroll
    for (int i = 0; i < static_cast<int>(16 / sizeof(T)); ++i) out[i] = to_float(e[i]);
}

// Sums of M values per thread over the block (every thread gets the M totals); red holds kSkinnyWarps * M floats.
template <int M>
__device__ __forceinline__ void block_sums(float (&v)[M], float* red) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
    for (int m = 0; m < M; ++m) v[m] = warp_sum(v[m]);
    __syncthreads();  // red may still be read by the previous reduction
    if (lane == 0)
#pragma unroll
        for (int m = 0; m < M; ++m) red[warp * M + m] = v[m];
    __syncthreads();
#pragma unroll
    for (int m = 0; m < M; ++m) {
        float t = 0.f;
        for (int w = 0; w < kSkinnyWarps; ++w) t += red[w * M + m];
        v[m] = t;
    }
}

// Up to kPrefetch passes of a warp's weight rows are loaded into registers before the wait.
constexpr int kPrefetch = 4;

// 16 bytes at column c of weight rows w0 and w0 + w1, raw (converted when used); streaming loads, as each weight is
// read once.
template <typename W>
__device__ __forceinline__ void load_pair(const W* w0, int64_t w1, int64_t c, uint4 (&out)[kOutPerWarp]) {
    out[0] = __ldcs(reinterpret_cast<const uint4*>(w0 + c));
    out[1] = __ldcs(reinterpret_cast<const uint4*>(w0 + w1 + c));
}

// Requests passes [0, kPrefetch) of weight rows w0 and w0 + w1 (lane offset c0, pass stride step).
template <typename W>
__device__ __forceinline__ void prefetch_rows(const W* w0, int64_t w1, int64_t c0, int64_t step, int64_t k,
                                              uint4 (&pre)[kPrefetch][kOutPerWarp]) {
#pragma unroll
    for (int i = 0; i < kPrefetch; ++i)
        if (c0 + i * step < k) load_pair(w0, w1, c0 + i * step, pre[i]);
}

// W: weight element type; M: rows rounded up to 1, 2, 4 or 8; kNorm: the input rows come from the norm prologue
// (float32 in shared memory) instead of a.x (W-typed, or float32 when W is float). A grid of at most one block per
// SM walks the pairs of weight rows (each pair split over `splits` warps along k), so the prologue and the input
// rows are read once per SM.
template <typename W, int M, bool kNorm>
__global__ void __launch_bounds__(kSkinnyThreads) skinny_linear_kernel(SkinnyLinearArgs a, int splits) {
    extern __shared__ float xs[];  // kNorm: [rows][k]
    __shared__ float part[kSkinnyWarps][M * kOutPerWarp];
    constexpr int kVec = 16 / sizeof(W);
    using X = std::conditional_t<kNorm, float, W>;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int64_t k = a.k;
    const int rows = a.rows;
    launch_dependents();

    // The first pair of rows of this warp is requested now: the weights are constant, so this overlaps the
    // previous kernel. An odd last row reads its pair's first row twice and drops it.
    const int per_block = kSkinnyWarps / splits, group = warp / splits, ks = warp % splits;
    const int64_t groups = (a.n + kOutPerWarp - 1) / kOutPerWarp;
    const int64_t step = int64_t{splits} * 32 * kVec, c0 = (int64_t{ks} * 32 + lane) * kVec;
    const W* const w = static_cast<const W*>(a.w);
    auto rows_of = [&](int64_t gi, const W*& w0, int64_t& w1) {
        const int64_t n0 = gi * kOutPerWarp;
        w0 = w + n0 * k;
        w1 = n0 + 1 < a.n ? k : 0;
    };
    uint4 pre[kPrefetch][kOutPerWarp];
    {
        const int64_t gi = int64_t{blockIdx.x} * per_block + group;
        if (gi < groups) {
            const W* w0;
            int64_t w1;
            rows_of(gi, w0, w1);
            prefetch_rows(w0, w1, c0, step, k, pre);
        }
    }
    // The other constants the kernel needs, also before the wait: the norms' parameters of this thread's columns
    // and the bias of the output this lane stores for its first pair.
    float norm_p[4][kNormCols];  // pre_g, pre_b, norm_g, norm_b
    if constexpr (kNorm) {
        const float* params[4] = {a.pre_g, a.pre_b, a.norm_g, a.norm_b};
#pragma unroll
        for (int q = 0; q < 4; ++q)
#pragma unroll
            for (int j = 0; j < kNormCols; ++j) {
                const int64_t c = threadIdx.x + int64_t{j} * kSkinnyThreads;
                norm_p[q][j] = params[q] && c < k ? params[q][c] : 0.f;
            }
    }
    auto bias_of = [&](int64_t gi) {
        const int64_t n = gi * kOutPerWarp + lane % kOutPerWarp;
        return a.bias && n < a.n ? a.bias[n] : 0.f;
    };
    float bias = bias_of(int64_t{blockIdx.x} * per_block + group);
    wait_for_previous_kernel();

    if constexpr (kNorm) {
        // The block builds every row: r = res (+ scale · delta), optionally r = LN_pre(r) (the new residual, stored
        // by block 0), then the linear's input LN(r), rounded to W, into xs. Thread t holds columns t + j·blockDim
        // (j < kNormCols) of every row in registers, so all its loads are issued at once.
        __shared__ float red[kSkinnyWarps * M];
        float v[M][kNormCols];
        const float* del = a.delta;
#pragma unroll
        for (int m = 0; m < M; ++m)
#pragma unroll
            for (int j = 0; j < kNormCols; ++j) {
                const int64_t c = threadIdx.x + int64_t{j} * kSkinnyThreads;
                v[m][j] = 0.f;
                if (m < rows && c < k) v[m][j] = del ? a.res[m * k + c] + a.delta_scale * del[m * k + c] : a.res[m * k + c];
            }
        float mean[M], rstd[M];
        auto moments = [&]() {
#pragma unroll
            for (int m = 0; m < M; ++m) {
                mean[m] = 0.f;
#pragma unroll
                for (int j = 0; j < kNormCols; ++j) mean[m] += v[m][j];  // zero outside the row
            }
            block_sums<M>(mean, red);
            float var[M];
#pragma unroll
            for (int m = 0; m < M; ++m) {
                mean[m] /= static_cast<float>(k);
                var[m] = 0.f;
#pragma unroll
                for (int j = 0; j < kNormCols; ++j) {
                    const int64_t c = threadIdx.x + int64_t{j} * kSkinnyThreads;
                    const float d = c < k ? v[m][j] - mean[m] : 0.f;
                    var[m] += d * d;
                }
            }
            block_sums<M>(var, red);
#pragma unroll
            for (int m = 0; m < M; ++m) rstd[m] = 1.f / sqrtf(var[m] / static_cast<float>(k) + a.eps);
        };
        // apply(g, b): v = (v - mean) · rstd · g + b on the valid columns.
        auto apply = [&](const float (&g)[kNormCols], const float (&b)[kNormCols]) {
#pragma unroll
            for (int j = 0; j < kNormCols; ++j) {
                const int64_t c = threadIdx.x + int64_t{j} * kSkinnyThreads;
                if (c >= k) continue;
#pragma unroll
                for (int m = 0; m < M; ++m) v[m][j] = (v[m][j] - mean[m]) * rstd[m] * g[j] + b[j];
            }
        };
        if (a.pre_g) {
            moments();
            apply(norm_p[0], norm_p[1]);
        }
        if (a.res_out && blockIdx.x == 0) {
#pragma unroll
            for (int m = 0; m < M; ++m)
#pragma unroll
                for (int j = 0; j < kNormCols; ++j) {
                    const int64_t c = threadIdx.x + int64_t{j} * kSkinnyThreads;
                    if (m < rows && c < k) a.res_out[m * k + c] = v[m][j];
                }
        }
        if (a.norm_g) {
            moments();
            apply(norm_p[2], norm_p[3]);
        }
#pragma unroll
        for (int m = 0; m < M; ++m)
#pragma unroll
            for (int j = 0; j < kNormCols; ++j) {
                const int64_t c = threadIdx.x + int64_t{j} * kSkinnyThreads;
                if (m < rows && c < k) xs[m * k + c] = round_to<W>(v[m][j]);
            }
        __syncthreads();
    }
    const X* x = kNorm ? reinterpret_cast<const X*>(xs) : static_cast<const X*>(a.x);
    constexpr Load kIn = kNorm ? kShared : kGlobal;

    // Every warp of the block runs the same number of iterations (the barriers of the split reduction).
    for (int64_t gb = int64_t{blockIdx.x} * per_block; gb < groups; gb += int64_t{gridDim.x} * per_block) {
        const int64_t gi = gb + group;
        const bool active = gi < groups;
        if (gb != int64_t{blockIdx.x} * per_block) bias = bias_of(gi);
        float acc[M][kOutPerWarp];
#pragma unroll
        for (int m = 0; m < M; ++m)
#pragma unroll
            for (int p = 0; p < kOutPerWarp; ++p) acc[m][p] = 0.f;
        // Passes [0, kPrefetch) come from pre, which is refilled with the next pair's passes as each is consumed
        // (so its loads are in flight during this pair's arithmetic); any further passes are loaded in place.
        const int64_t next = gi + int64_t{gridDim.x} * per_block;
        const W* n0w = nullptr;
        int64_t n1w = 0;
        if (next < groups) rows_of(next, n0w, n1w);
        if (active) {
            const W* w0;
            int64_t w1;
            rows_of(gi, w0, w1);
            for (int64_t base = 0; c0 + base < k; base += kPrefetch * step) {
#pragma unroll
                for (int i = 0; i < kPrefetch; ++i) {
                    const int64_t c = c0 + base + i * step;
                    if (c >= k) break;
                    uint4 raw[kOutPerWarp];
                    if (base == 0) {
#pragma unroll
                        for (int p = 0; p < kOutPerWarp; ++p) raw[p] = pre[i][p];
                        if (n0w) load_pair(n0w, n1w, c, pre[i]);
                    } else {
                        load_pair(w0, w1, c, raw);
                    }
                    float wv[kOutPerWarp][kVec];
#pragma unroll
                    for (int p = 0; p < kOutPerWarp; ++p) {
                        const W* e = reinterpret_cast<const W*>(&raw[p]);
#pragma unroll
                        for (int j = 0; j < kVec; ++j) wv[p][j] = to_float(e[j]);
                    }
#pragma unroll
                    for (int m = 0; m < M; ++m) {
                        if (m >= rows) break;
                        float xv[kVec];
                        load16<X, kIn>(x + m * k + c, xv);
                        if constexpr (sizeof(X) != sizeof(W)) load16<X, kIn>(x + m * k + c + 4, xv + 4);  // float rows
#pragma unroll
                        for (int p = 0; p < kOutPerWarp; ++p)
#pragma unroll
                            for (int e = 0; e < kVec; ++e) acc[m][p] += wv[p][e] * xv[e];
                    }
                }
            }
        }
#pragma unroll
        for (int m = 0; m < M; ++m)
#pragma unroll
            for (int p = 0; p < kOutPerWarp; ++p) acc[m][p] = warp_sum(acc[m][p]);
        if (splits > 1) {
            if (lane == 0) {
#pragma unroll
                for (int m = 0; m < M; ++m)
#pragma unroll
                    for (int p = 0; p < kOutPerWarp; ++p) part[warp][m * kOutPerWarp + p] = acc[m][p];
            }
            __syncthreads();
            if (ks == 0) {
#pragma unroll
                for (int m = 0; m < M; ++m)
#pragma unroll
                    for (int p = 0; p < kOutPerWarp; ++p) {
                        float s = 0.f;
                        for (int j = 0; j < splits; ++j) s += part[warp + j][m * kOutPerWarp + p];
                        acc[m][p] = s;
                    }
            }
            __syncthreads();  // part is rewritten by the next iteration
        }
        if (ks != 0 || !active) continue;
        // Lane i writes output (m, p) = (i / kOutPerWarp, i % kOutPerWarp).
        float v = 0.f;
#pragma unroll
        for (int m = 0; m < M; ++m)
#pragma unroll
            for (int p = 0; p < kOutPerWarp; ++p)
                if (lane == m * kOutPerWarp + p) v = acc[m][p];
        const int m = lane / kOutPerWarp;
        const int64_t n = gi * kOutPerWarp + lane % kOutPerWarp;
        if (lane < M * kOutPerWarp && m < rows && n < a.n) {
            v += bias;
            if (a.silu) v = v / (1.f + expf(-v));
            store_act(a.y, m * a.ldy + n, v, a.y_dtype);
        }
    }
}

template <typename W, int M>
void launch_rows(Launch l, const SkinnyLinearArgs& a, int splits, unsigned int blocks) {
    if (a.res) {
        const size_t shared = static_cast<size_t>(a.rows * a.k) * sizeof(float);
        launch_after_previous(l, skinny_linear_kernel<W, M, true>, blocks, kSkinnyThreads, shared, a, splits);
    } else {
        launch_after_previous(l, skinny_linear_kernel<W, M, false>, blocks, kSkinnyThreads, 0, a, splits);
    }
}

template <typename W>
void launch_typed(Launch l, const SkinnyLinearArgs& a, int splits, unsigned int blocks) {
    if (a.rows <= 1) {
        launch_rows<W, 1>(l, a, splits, blocks);
    } else if (a.rows <= 2) {
        launch_rows<W, 2>(l, a, splits, blocks);
    } else if (a.rows <= 4) {
        launch_rows<W, 4>(l, a, splits, blocks);
    } else {
        launch_rows<W, 8>(l, a, splits, blocks);
    }
}

}  // namespace

bool skinny_linear_fits(int64_t rows, int64_t k, bool norm) {
    if (rows < 1 || rows > kSkinnyMaxRows || k <= 0 || k % 8 != 0) return false;
    return !norm || (k <= kNormCols * kSkinnyThreads && static_cast<size_t>(rows * k) * sizeof(float) <= 48 * 1024);
}

void skinny_linear(Launch l, const SkinnyLinearArgs& a) {
    if (a.n <= 0 || a.rows <= 0) return;
    const int vec = a.w_dtype == 0 ? 4 : 8;
    // Split each pair of weight rows over up to 16 warps: until a warp's part fits the kPrefetch passes it loads
    // before waiting for the previous kernel, and while the rows in flight are short of 16 warps per SM, as long as
    // every lane still has a 16-byte load.
    const int64_t groups = (a.n + kOutPerWarp - 1) / kOutPerWarp;
    auto passes = [&](int sp) { return (a.k + int64_t{sp} * 32 * vec - 1) / (int64_t{sp} * 32 * vec); };
    int splits = 1;
    while (splits < kSkinnyWarps && a.k >= int64_t{splits} * 2 * 32 * vec &&
           (passes(splits) > kPrefetch || groups * splits < int64_t{l.n_sms} * kSkinnyWarps))
        splits *= 2;
    const int64_t per_block = kSkinnyWarps / splits;
    const unsigned int blocks = static_cast<unsigned int>(std::min<int64_t>((groups + per_block - 1) / per_block, l.n_sms));
    switch (a.w_dtype) {
        case 1: launch_typed<__half>(l, a, splits, blocks); break;
        case 2: launch_typed<__nv_bfloat16>(l, a, splits, blocks); break;
        default: launch_typed<float>(l, a, splits, blocks); break;
    }
    PK_CUDA_CHECK_LAUNCH();
}

}  // namespace parakeet::cuda::kernels
