// The rel-pos attention in one kernel for the 16-bit precisions (fp16/bf16): the biased queries, AC = (q+u)·Kᵀ,
// BD = (q+v)·Pᵀ with the relative shift, the masks, the softmax and softmax·V, on tensor cores (mma.sync
// m16n8k16, float32 accumulation), the scores never leaving the SM. It replaces six launches and the float32
// score matrices of attention.cc's GEMM path with one launch.
//
// One block per (64 queries, head, item); each of its four warps owns 16 query rows. The block walks the union of
// its rows' allowed keys in chunks of 32: it stages the chunk's keys, values and the 95 positional rows the
// chunk's (query, key) pairs reach in shared memory as 16-bit rows (the positional rows as a ring: consecutive
// chunks share 64 of them), then each warp
//   1. multiplies its biased queries (q+v) with its 47-row slice of the positional rows (BD for every distance
//      its rows and the chunk's keys have), and parks that band in shared memory;
//   2. multiplies its biased queries (q+u) with the chunk's keys (AC), adds BD[i][j] read from the band at the
//      pair's distance (the relative shift by index), scales, masks and folds the chunk into a running maximum
//      and sum per row (online softmax);
//   3. adds the chunk's probabilities (rounded to 16 bits) times the values to its output rows.
// Masks are the per-row key ranges of attention_key_range, as in every other path; a row with no allowed key (or
// past the item's valid queries) is written as zeros. Where (query blocks x heads x items) would leave SMs idle, each
// block's keys are split into parts run by separate blocks, and a second kernel merges their unnormalised rows by
// their maxima and sums (fused_attention_splits).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <climits>
#include <type_traits>

#include "backends/cuda/kernel_utils.cuh"
#include "backends/cuda/kernels.h"
#include "ops/attention_range.h"

namespace parakeet::cuda::kernels {

namespace {

constexpr int kFaRows = 64;    // query rows per block (16 per warp)
constexpr int kFaKeys = 32;    // keys per chunk
constexpr int kFaBand = 96;    // positional rows staged per chunk (kFaRows + kFaKeys - 1, rounded up)
constexpr int kFaBandLd = 48;  // floats per row of a warp's BD band (16 + kFaKeys - 1 = 47 used)
constexpr int kFaThreads = 128;
constexpr int kFaLoads = 6;    // 16-byte chunks each thread loads before converting them (loads in flight)

// Shared-memory rows of DK 16-bit values as 16-byte chunks, XOR-swizzled by row so that the 8 rows an ldmatrix
// reads at one chunk column fall in different banks.
template <int DK>
__device__ __forceinline__ int chunk_at(int row, int chunk) {
    return row * (DK / 8) + (chunk ^ (row & 7));
}

template <typename T>
__device__ __forceinline__ uint32_t pack2(float lo, float hi) {
    if constexpr (std::is_same_v<T, __half>) {
        const __half2 h = __floats2half2_rn(lo, hi);
        return *reinterpret_cast<const uint32_t*>(&h);
    } else {
        const __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
        return *reinterpret_cast<const uint32_t*>(&h);
    }
}

// Stages n_rows rows of DK floats as 16-bit rows in shared memory (swizzled): row r from where(r, src, dst, slot)
// (src null: zeros; dst row `slot` of buffer dst), plus the bias row (may be null). Each thread issues the loads of
// kFaLoads 16-byte chunks before converting any of them, so that many loads are in flight.
template <typename T, int DK, typename Where>
__device__ __forceinline__ void stage_rows(int n_rows, const float* bias, Where where) {
    constexpr int per_row = DK / 8;
    for (int c0 = threadIdx.x; c0 < n_rows * per_row; c0 += kFaThreads * kFaLoads) {
        float4 v[kFaLoads][2];
#pragma unroll
        for (int i = 0; i < kFaLoads; ++i) {
            const int c = c0 + i * kFaThreads;
            const float* src = nullptr;
            uint4* dst;
            int slot;
            if (c < n_rows * per_row) where(c / per_row, src, dst, slot);
            if (src) {
                v[i][0] = *reinterpret_cast<const float4*>(src + 8 * (c % per_row));
                v[i][1] = *reinterpret_cast<const float4*>(src + 8 * (c % per_row) + 4);
            } else {
                v[i][0] = v[i][1] = make_float4(0.f, 0.f, 0.f, 0.f);
            }
        }
#pragma unroll
        for (int i = 0; i < kFaLoads; ++i) {
            const int c = c0 + i * kFaThreads;
            if (c >= n_rows * per_row) break;
            const float* src;
            uint4* dst;
            int slot;
            where(c / per_row, src, dst, slot);
            float4 a = v[i][0], b = v[i][1];
            if (bias) {
                const float* u = bias + 8 * (c % per_row);
                a.x += u[0], a.y += u[1], a.z += u[2], a.w += u[3];
                b.x += u[4], b.y += u[5], b.z += u[6], b.w += u[7];
            }
            dst[chunk_at<DK>(slot, c % per_row)] =
                make_uint4(pack2<T>(a.x, a.y), pack2<T>(a.z, a.w), pack2<T>(b.x, b.y), pack2<T>(b.z, b.w));
        }
    }
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* p) {
    const unsigned a = static_cast<unsigned>(__cvta_generic_to_shared(p));
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a));
}

__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* p) {
    const unsigned a = static_cast<unsigned>(__cvta_generic_to_shared(p));
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a));
}

// c += a · b for one m16n8k16 tile (a: 4 registers, b: 2), float32 accumulators.
template <typename T>
__device__ __forceinline__ void mma16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    if constexpr (std::is_same_v<T, __half>) {
        asm volatile(
            "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
            "{%0,%1,%2,%3};\n"
            : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    } else {
        asm volatile(
            "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
            "{%0,%1,%2,%3};\n"
            : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    }
}

// acc[t] (16 x 8 tiles t = 0 .. NT-1) += A rows [a_row0, +16) of sa · (rows [b_row0 + 8t, +8) of sb)ᵀ over DK;
// with ring > 0, row r of sb sits in slot r % ring.
template <typename T, int DK, int NT>
__device__ __forceinline__ void multiply_rows(float (&acc)[NT][4], const uint4* sa, int a_row0, const uint4* sb,
                                              int b_row0, int lane, int ring = 0) {
#pragma unroll
    for (int ks = 0; ks < DK / 16; ++ks) {
        uint32_t a[4];
        ldmatrix_x4(a, sa + chunk_at<DK>(a_row0 + (lane & 15), 2 * ks + (lane >> 4)));
#pragma unroll
        for (int t = 0; t < NT; t += 2) {
            uint32_t b[4];
            int row = b_row0 + 8 * t + (lane & 7) + ((lane >> 4) << 3);
            if (ring > 0) row %= ring;
            ldmatrix_x4(b, sb + chunk_at<DK>(row, 2 * ks + ((lane >> 3) & 1)));
            mma16816<T>(acc[t], a, b[0], b[1]);
            mma16816<T>(acc[t + 1], a, b[2], b[3]);
        }
    }
}

template <typename T, int DK>
__global__ void __launch_bounds__(kFaThreads) fused_attention_kernel(FusedAttentionArgs a) {
    extern __shared__ __align__(128) uint4 smem[];
    launch_dependents();
    wait_for_previous_kernel();
    uint4* s_qu = smem;                        // [64][DK]
    uint4* s_qv = s_qu + kFaRows * DK / 8;     // [64][DK]
    uint4* s_k = s_qv + kFaRows * DK / 8;      // [kFaKeys][DK]
    uint4* s_v = s_k + kFaKeys * DK / 8;       // [kFaKeys][DK]
    uint4* s_p = s_v + kFaKeys * DK / 8;       // [kFaBand][DK]
    float* s_band = reinterpret_cast<float*>(s_p + kFaBand * DK / 8);  // [4 warps][16][kFaBandLd]
    __shared__ int span[2];

    const int i0 = blockIdx.x * kFaRows, h = blockIdx.y, b = blockIdx.z / a.n_splits, split = blockIdx.z % a.n_splits;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int d_model = a.n_heads * DK;
    const int key_begin = a.items[3 * b], key_end = a.items[3 * b + 1], q_valid = a.items[3 * b + 2];
    const int n_rows = min(kFaRows, a.n_query - i0);
    const float* q = a.q + (int64_t{b} * a.n_query + i0) * d_model + h * DK;
    const int64_t out0 = (int64_t{b} * a.n_query + i0) * d_model + h * DK;  // element offset of row i0, head h

    // The union of the block's rows' key ranges (each row's [lo, hi) from attention_key_range).
    if (tid == 0) {
        span[0] = INT_MAX;
        span[1] = INT_MIN;
    }
    __syncthreads();
    if (tid < n_rows && i0 + tid < q_valid) {
        int64_t lo, hi;
        attention_key_range(a.n_cache + i0 + tid, key_begin, key_end, a.att_left, a.att_right, a.att_chunk,
                            a.att_left_chunks, lo, hi);
        if (hi > lo) {
            atomicMin(&span[0], static_cast<int>(lo));
            atomicMax(&span[1], static_cast<int>(hi));
        }
    }
    // Queries of the block, biased (rows past the block's zero).
    stage_rows<T, DK>(kFaRows, a.pos_bias_u + h * DK, [&](int r, const float*& src, uint4*& dst, int& slot) {
        src = r < n_rows ? q + int64_t{r} * d_model : nullptr;
        dst = s_qu;
        slot = r;
    });
    stage_rows<T, DK>(kFaRows, a.pos_bias_v + h * DK, [&](int r, const float*& src, uint4*& dst, int& slot) {
        src = r < n_rows ? q + int64_t{r} * d_model : nullptr;
        dst = s_qv;
        slot = r;
    });
    __syncthreads();
    // This block's part of the span: whole chunks, split as evenly as the chunks allow.
    int j_begin = span[0], j_end = span[1];
    if (a.n_splits > 1 && j_end > j_begin) {
        const int n_chunks = (j_end - j_begin + kFaKeys - 1) / kFaKeys;
        const int per = (n_chunks + a.n_splits - 1) / a.n_splits;
        const int c0 = min(split * per, n_chunks), c1 = min(c0 + per, n_chunks);
        j_end = min(j_end, j_begin + c1 * kFaKeys);
        j_begin += c0 * kFaKeys;
    }

    // This thread's two rows (g and g + 8 of its warp's 16): allowed keys, running maximum (log2 units) and sum.
    const int g = lane >> 2, qd = lane & 3;
    int lo[2], hi[2];
#pragma unroll
    for (int e = 0; e < 2; ++e) {
        const int i = i0 + warp * 16 + g + 8 * e;
        int64_t l64 = 0, h64 = 0;
        if (i < a.n_query && i < q_valid)
            attention_key_range(a.n_cache + i, key_begin, key_end, a.att_left, a.att_right, a.att_chunk,
                                a.att_left_chunks, l64, h64);
        lo[e] = static_cast<int>(l64);
        hi[e] = static_cast<int>(h64 > l64 ? h64 : l64);
    }
    float m_run[2] = {-INFINITY, -INFINITY}, l_run[2] = {0.f, 0.f};
    float acc_o[DK / 8][4];
#pragma unroll
    for (int t = 0; t < DK / 8; ++t) acc_o[t][0] = acc_o[t][1] = acc_o[t][2] = acc_o[t][3] = 0.f;
    const float scale_log2 = a.scale * 1.4426950408889634f;
    float* band = s_band + warp * 16 * kFaBandLd;
    const int qpos0 = a.n_cache + i0;
    const float* kb = a.k + int64_t{b} * a.n_key * d_model + h * DK;
    const float* vb = a.v + int64_t{b} * a.n_key * d_model + h * DK;

    for (int kc = j_begin; kc < j_end; kc += kFaKeys) {
        __syncthreads();  // the previous chunk's reads of s_k, s_v and s_p are done
        // Keys and values [kc, kc + kFaKeys) (zero past the span) and the chunk's positional rows r0 .. r0 + 95
        // (zero outside the table: only disallowed pairs reach them). The positional rows are a ring: row r0 + m
        // sits in slot (kc - j_begin + m) % kFaBand, so a later chunk loads only its last kFaKeys rows.
        const int r0 = a.pos_first - qpos0 - (kFaRows - 1) + kc, ring0 = (kc - j_begin) % kFaBand;
        const int p_new = kc == j_begin ? 0 : kFaBand - kFaKeys;
        stage_rows<T, DK>(2 * kFaKeys + kFaBand - p_new, nullptr,
                          [&](int r, const float*& src, uint4*& dst, int& slot) {
                              if (r < 2 * kFaKeys) {
                                  const int j = kc + r % kFaKeys;
                                  src = j < j_end ? (r < kFaKeys ? kb : vb) + int64_t{j} * d_model : nullptr;
                                  dst = r < kFaKeys ? s_k : s_v;
                                  slot = r % kFaKeys;
                              } else {
                                  const int m = p_new + r - 2 * kFaKeys, pr = r0 + m;
                                  src = pr >= 0 && pr < a.n_pos ? a.p + int64_t{pr} * d_model + h * DK : nullptr;
                                  dst = s_p;
                                  slot = (ring0 + m) % kFaBand;
                              }
                          });
        __syncthreads();

        // 1. BD band: row ii of this warp, band column m holds positional row r0 + (48 - 16·warp) + m, i.e. the
        // pair (ii, jj) sits at m = 15 - ii + jj.
        {
            constexpr int nt = kFaBandLd / 8;
            float acc_b[nt][4];
#pragma unroll
            for (int t = 0; t < nt; ++t) acc_b[t][0] = acc_b[t][1] = acc_b[t][2] = acc_b[t][3] = 0.f;
            multiply_rows<T, DK, nt>(acc_b, s_qv, warp * 16, s_p, ring0 + kFaRows - 16 - 16 * warp, lane, kFaBand);
#pragma unroll
            for (int t = 0; t < nt; ++t) {
                band[g * kFaBandLd + 8 * t + 2 * qd] = acc_b[t][0];
                band[g * kFaBandLd + 8 * t + 2 * qd + 1] = acc_b[t][1];
                band[(g + 8) * kFaBandLd + 8 * t + 2 * qd] = acc_b[t][2];
                band[(g + 8) * kFaBandLd + 8 * t + 2 * qd + 1] = acc_b[t][3];
            }
        }
        // 2. AC, then the scores in log2 units, masked.
        constexpr int ns = kFaKeys / 8;
        float s[ns][4];
#pragma unroll
        for (int t = 0; t < ns; ++t) s[t][0] = s[t][1] = s[t][2] = s[t][3] = 0.f;
        multiply_rows<T, DK, ns>(s, s_qu, warp * 16, s_k, 0, lane);
        __syncwarp();
        float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
        for (int t = 0; t < ns; ++t) {
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const int ii = g + 8 * (e >> 1), jj = 8 * t + 2 * qd + (e & 1), j = kc + jj;
                const float v = (s[t][e] + band[ii * kFaBandLd + 15 - ii + jj]) * scale_log2;
                s[t][e] = j >= lo[e >> 1] && j < hi[e >> 1] ? v : -INFINITY;
                mx[e >> 1] = fmaxf(mx[e >> 1], s[t][e]);
            }
        }
        float corr[2];
#pragma unroll
        for (int e = 0; e < 2; ++e) {
            mx[e] = fmaxf(mx[e], __shfl_xor_sync(0xffffffffu, mx[e], 1));
            mx[e] = fmaxf(mx[e], __shfl_xor_sync(0xffffffffu, mx[e], 2));
            const float m_new = fmaxf(m_run[e], mx[e]);
            corr[e] = m_new == -INFINITY ? 1.f : exp2f(m_run[e] - m_new);
            m_run[e] = m_new;
            l_run[e] *= corr[e];
        }
#pragma unroll
        for (int t = 0; t < ns; ++t) {
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const float m = m_run[e >> 1];
                const float pr = m == -INFINITY ? 0.f : exp2f(s[t][e] - m);
                s[t][e] = pr;
                l_run[e >> 1] += pr;
            }
        }
#pragma unroll
        for (int t = 0; t < DK / 8; ++t) {
            acc_o[t][0] *= corr[0];
            acc_o[t][1] *= corr[0];
            acc_o[t][2] *= corr[1];
            acc_o[t][3] *= corr[1];
        }
        // 3. O += P · V: the score tiles are the A fragments of 16-key steps.
#pragma unroll
        for (int kk = 0; kk < kFaKeys / 16; ++kk) {
            uint32_t pa[4];
            pa[0] = pack2<T>(s[2 * kk][0], s[2 * kk][1]);
            pa[1] = pack2<T>(s[2 * kk][2], s[2 * kk][3]);
            pa[2] = pack2<T>(s[2 * kk + 1][0], s[2 * kk + 1][1]);
            pa[3] = pack2<T>(s[2 * kk + 1][2], s[2 * kk + 1][3]);
#pragma unroll
            for (int t = 0; t < DK / 8; t += 2) {
                uint32_t bv[4];
                ldmatrix_x4_trans(bv, s_v + chunk_at<DK>(16 * kk + (lane & 7) + (((lane >> 3) & 1) << 3),
                                                         t + (lane >> 4)));
                mma16816<T>(acc_o[t], pa, bv[0], bv[1]);
                mma16816<T>(acc_o[t + 1], pa, bv[2], bv[3]);
            }
        }
    }

    // Normalise and write this thread's two rows (zeros where no key was allowed), or with several parts, write
    // the part's unnormalised rows, maxima and sums.
#pragma unroll
    for (int e = 0; e < 2; ++e) {
        l_run[e] += __shfl_xor_sync(0xffffffffu, l_run[e], 1);
        l_run[e] += __shfl_xor_sync(0xffffffffu, l_run[e], 2);
        const int r = warp * 16 + g + 8 * e;
        if (r >= n_rows) continue;
        if (a.n_splits > 1) {
            const int64_t z = ((int64_t{split} * a.batch + b) * a.n_heads + h) * a.n_query + i0 + r;
            float* row = a.part_o + z * DK;
#pragma unroll
            for (int t = 0; t < DK / 8; ++t)
                *reinterpret_cast<float2*>(row + 8 * t + 2 * qd) = make_float2(acc_o[t][2 * e], acc_o[t][2 * e + 1]);
            if (qd == 0) *reinterpret_cast<float2*>(a.part_ml + 2 * z) = make_float2(m_run[e], l_run[e]);
            continue;
        }
        const float inv = l_run[e] > 0.f ? 1.f / l_run[e] : 0.f;
        const int64_t row = out0 + int64_t{r} * d_model;
#pragma unroll
        for (int t = 0; t < DK / 8; ++t) {
            const float o0 = acc_o[t][2 * e] * inv, o1 = acc_o[t][2 * e + 1] * inv;
            const int64_t at = row + 8 * t + 2 * qd;
            if (a.out_dtype == 0) {
                *reinterpret_cast<float2*>(static_cast<float*>(a.out) + at) = make_float2(o0, o1);
            } else if (a.out_dtype == 1) {
                *reinterpret_cast<uint32_t*>(static_cast<__half*>(a.out) + at) = pack2<__half>(o0, o1);
            } else {
                *reinterpret_cast<uint32_t*>(static_cast<__nv_bfloat16*>(a.out) + at) = pack2<__nv_bfloat16>(o0, o1);
            }
        }
    }
}

// One block per (item, head, query row), one thread per channel: the parts merged (weights 2^(m_s - m)).
__global__ void fused_attention_merge_kernel(FusedAttentionArgs a) {
    launch_dependents();
    wait_for_previous_kernel();
    const int64_t rows = int64_t{a.batch} * a.n_heads * a.n_query, z = blockIdx.x;
    const int i = static_cast<int>(z % a.n_query), h = static_cast<int>((z / a.n_query) % a.n_heads);
    const int b = static_cast<int>(z / (int64_t{a.n_query} * a.n_heads));
    float m = -INFINITY;
    for (int s = 0; s < a.n_splits; ++s) m = fmaxf(m, a.part_ml[2 * (s * rows + z)]);
    float l = 0.f, o = 0.f;
    if (m != -INFINITY) {
        for (int s = 0; s < a.n_splits; ++s) {
            const float w = exp2f(a.part_ml[2 * (s * rows + z)] - m);
            l += w * a.part_ml[2 * (s * rows + z) + 1];
            o += w * a.part_o[(s * rows + z) * a.d_head + threadIdx.x];
        }
    }
    store_act(a.out, (int64_t{b} * a.n_query + i) * a.n_heads * a.d_head + h * a.d_head + threadIdx.x,
              l > 0.f ? o / l : 0.f, a.out_dtype);
}

template <typename T, int DK>
void launch_fused(Launch l, const FusedAttentionArgs& a) {
    constexpr size_t shared = static_cast<size_t>(2 * kFaRows + 2 * kFaKeys + kFaBand) * DK * 2 +
                              static_cast<size_t>(4 * 16 * kFaBandLd) * sizeof(float);
    static const bool configured = [] {
        PK_CUDA_CHECK(cudaFuncSetAttribute(fused_attention_kernel<T, DK>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                           static_cast<int>(shared)));
        return true;
    }();
    (void)configured;
    const dim3 grid(static_cast<unsigned int>((a.n_query + kFaRows - 1) / kFaRows),
                    static_cast<unsigned int>(a.n_heads), static_cast<unsigned int>(a.batch * a.n_splits));
    // Programmatic launches: blocks are scheduled while the kernel before drains (they wait before reading).
    launch_after_previous(l, fused_attention_kernel<T, DK>, grid, kFaThreads, shared, a);
    if (a.n_splits > 1)
        launch_after_previous(l, fused_attention_merge_kernel,
                              static_cast<unsigned int>(int64_t{a.batch} * a.n_heads * a.n_query), DK, 0, a);
}

}  // namespace

bool fused_attention_supported(int64_t d_head) { return d_head == 64 || d_head == 128; }

int fused_attention_splits(int64_t batch, int64_t n_query, int64_t n_heads, int64_t n_key, int n_sms) {
    // Blocks enough for two per SM where the keys allow, at least one chunk per part (the 592-frame chunk, 75 keys:
    // 2.91 ms with parts of one chunk, 2.99 ms with parts of two).
    const int64_t blocks = batch * n_heads * ((n_query + kFaRows - 1) / kFaRows);
    const int64_t want = (2 * int64_t{n_sms} + blocks - 1) / blocks;
    const int64_t most = std::max<int64_t>(1, (n_key + kFaKeys - 1) / kFaKeys);
    return static_cast<int>(std::clamp<int64_t>(std::min(want, most), 1, 64));
}

void fused_attention(Launch l, const FusedAttentionArgs& a, bool half) {
    if (a.batch <= 0 || a.n_query <= 0) return;
    if (int64_t{a.batch} * a.n_splits > 65535 || a.n_heads > 65535 || a.n_splits < 1 ||
        (a.n_splits > 1 && (!a.part_o || !a.part_ml)))
        throw_cuda_error(cudaErrorInvalidValue, "fused_attention size", __FILE__, __LINE__);
    if (a.d_head == 128) {
        if (half) launch_fused<__half, 128>(l, a);
        else launch_fused<__nv_bfloat16, 128>(l, a);
    } else if (a.d_head == 64) {
        if (half) launch_fused<__half, 64>(l, a);
        else launch_fused<__nv_bfloat16, 64>(l, a);
    } else {
        throw_cuda_error(cudaErrorInvalidValue, "fused_attention d_head", __FILE__, __LINE__);
    }
}

}  // namespace parakeet::cuda::kernels
