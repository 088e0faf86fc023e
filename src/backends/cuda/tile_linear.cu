// Linear layers on tens to a couple of hundred rows (an encoder window at batch 1, a batched streaming step):
// y = act(x · wᵀ + bias) on tensor cores, for sm_90.
// cuBLAS runs these shapes (75-192 rows, 1-8 MB of weights) as a few dozen small-tile blocks that each loop over
// the whole k: 6-8 us per GEMM where reading the weights takes 1-3 us, plus a separate pass for bias and SiLU and
// one converting the input to 16 bits. Here every block owns 64 output columns of all the rows and 1/S of k: the
// S blocks of one column tile form a thread-block cluster, so the grid covers every SM even at 1024 columns, and
// they add their partial tiles through distributed shared memory in a fixed order (deterministic, no workspace).
// Weights and inputs stream through a 3-stage cp.async pipeline (the weight stages are requested before waiting for
// the previous kernel); bias, SiLU and the output type are the epilogue; a float32 input is converted as it loads.
#include <cooperative_groups.h>
#include <mma.h>

#include "backends/cuda/kernel_utils.cuh"
#include "backends/cuda/stream_kernels.h"

namespace parakeet::cuda::kernels {

namespace {

namespace cg = cooperative_groups;
namespace wmma = nvcuda::wmma;

constexpr int kTileN = 64;               // output columns per block
constexpr int kTileK = 64;               // k per pipeline stage
constexpr int kWarpsN = 2, kWarpsM = 4;  // 8 warps: 32 columns x (every 4th 16-row fragment) each
constexpr int kBlockThreads = 32 * kWarpsN * kWarpsM;
constexpr int kLd = kTileK + 8;          // shared row stride (elements): 144 bytes, conflict-free fragment loads
constexpr int kOutLd = kTileN + 4;       // float stride of the block's partial tile
constexpr int kMaxSplits = 8;            // cluster size along k (portable limit)

constexpr int kStages = 3;               // cp.async pipeline depth (5-8 stages measured slower)

template <int MW>
constexpr int rows_of_block() {
    return 16 * MW * kWarpsM;
}
template <int MW>
constexpr size_t stage_elems() {
    return static_cast<size_t>(rows_of_block<MW>() + kTileN) * kLd;
}
template <typename T, int MW>
constexpr size_t shared_bytes() {
    return kStages * stage_elems<MW>() * sizeof(T);  // the float partial tile reuses it (always smaller)
}

__device__ __forceinline__ void cp_async16(void* smem, const void* gmem) {
    const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(s), "l"(gmem) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

// Eight consecutive values stored as T at p (16 bytes).
template <typename T>
__device__ __forceinline__ void store8(T* p, const float (&v)[8]) {
    uint4 raw;
    T* e = reinterpret_cast<T*>(&raw);
#pragma unroll
    for (int i = 0; i < 8; ++i) e[i] = from_float<T>(v[i]);
    *reinterpret_cast<uint4*>(p) = raw;
}

// Four consecutive outputs at y[i] in act_dtype (0 float32, 1 float16, 2 bfloat16).
__device__ __forceinline__ void store4(void* y, int64_t i, const float4& v, int act_dtype) {
    if (act_dtype == 0) {
        *reinterpret_cast<float4*>(static_cast<float*>(y) + i) = v;
        return;
    }
    uint2 raw;
    if (act_dtype == 2) {
        __nv_bfloat162* e = reinterpret_cast<__nv_bfloat162*>(&raw);
        e[0] = __floats2bfloat162_rn(v.x, v.y);
        e[1] = __floats2bfloat162_rn(v.z, v.w);
        *reinterpret_cast<uint2*>(static_cast<__nv_bfloat16*>(y) + i) = raw;
    } else {
        __half2* e = reinterpret_cast<__half2*>(&raw);
        e[0] = __floats2half2_rn(v.x, v.y);
        e[1] = __floats2half2_rn(v.z, v.w);
        *reinterpret_cast<uint2*>(static_cast<__half*>(y) + i) = raw;
    }
}

// T: weight element type (float16/bfloat16); X: input element type (T, or float32, converted while loading);
// MW: 16-row fragments per warp (block rows 64 · MW). Block b computes columns [64 (b / S), +64) over k range
// [(b % S) · kb, +kb); the S blocks of a column tile are one cluster.
template <typename T, typename X, int MW>
__global__ void __launch_bounds__(kBlockThreads) tile_linear_kernel(TileLinearArgs a, int splits, int kb) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    extern __shared__ __align__(128) unsigned char smem[];
    T* const sm = reinterpret_cast<T*>(smem);
    constexpr int kRows = rows_of_block<MW>();
    constexpr size_t kStage = stage_elems<MW>();
    const int tid = threadIdx.x, warp = tid >> 5;
    const int wn = warp % kWarpsN, wm = warp / kWarpsN;
    const int split = static_cast<int>(blockIdx.x % splits);
    const int64_t n0 = static_cast<int64_t>(blockIdx.x / splits) * kTileN;
    const int64_t k0 = static_cast<int64_t>(split) * kb;
    const int steps = kb / kTileK;
    const int rows = static_cast<int>(a.rows);
    const int rows16 = (rows + 15) & ~15;  // rows read by the fragments (the tail zero-filled)
    const T* const w = static_cast<const T*>(a.w);
    const X* const x = static_cast<const X*>(a.x);
    launch_dependents();

    auto load_w = [&](int step) {
        T* ws = sm + (step % kStages) * kStage + kRows * kLd;
        const T* src = w + n0 * a.k + k0 + int64_t{step} * kTileK;
        for (int c = tid; c < kTileN * (kTileK / 8); c += kBlockThreads) {
            const int r = c / (kTileK / 8), ch = c % (kTileK / 8);
            cp_async16(ws + r * kLd + ch * 8, src + r * a.k + ch * 8);
        }
    };
    auto load_x = [&](int step) {
        T* xs = sm + (step % kStages) * kStage;
        const int64_t kc = k0 + int64_t{step} * kTileK;
        for (int c = tid; c < rows16 * (kTileK / 8); c += kBlockThreads) {
            const int r = c / (kTileK / 8), ch = c % (kTileK / 8);
            T* dst = xs + r * kLd + ch * 8;
            if (r >= rows) {
                *reinterpret_cast<uint4*>(dst) = make_uint4(0, 0, 0, 0);
            } else if constexpr (std::is_same_v<X, T>) {
                cp_async16(dst, x + r * a.ldx + kc + ch * 8);
            } else {
                const float4* p = reinterpret_cast<const float4*>(x + r * a.ldx + kc + ch * 8);
                const float4 lo = __ldg(p), hi = __ldg(p + 1);
                const float v[8] = {lo.x, lo.y, lo.z, lo.w, hi.x, hi.y, hi.z, hi.w};
                store8(dst, v);
            }
        }
    };

    // The weights are constant: their first stages are requested before waiting for the kernel that writes x.
#pragma unroll
    for (int s = 0; s < kStages - 1; ++s)
        if (s < steps) load_w(s);
    wait_for_previous_kernel();
#pragma unroll
    for (int s = 0; s < kStages - 1; ++s) {
        if (s < steps) load_x(s);
        cp_async_commit();  // group s holds x stage s (group 0 also the early weight stages)
    }

    using FragA = wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major>;
    using FragB = wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major>;
    using FragC = wmma::fragment<wmma::accumulator, 16, 16, 16, float>;
    FragC acc[MW][2];
#pragma unroll
    for (int i = 0; i < MW; ++i)
#pragma unroll
        for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[i][j], 0.f);

    for (int step = 0; step < steps; ++step) {
        cp_async_wait<kStages - 2>();  // this step's group has landed (for this thread) ...
        __syncthreads();               // ... and for every thread; the stage refilled below is free again
        const int next = step + kStages - 1;
        if (next < steps) {
            load_w(next);
            load_x(next);
        }
        cp_async_commit();
        const T* xs = sm + (step % kStages) * kStage;
        const T* ws = xs + kRows * kLd;
#pragma unroll
        for (int kk = 0; kk < kTileK / 16; ++kk) {
            FragB b[2];
#pragma unroll
            for (int j = 0; j < 2; ++j) wmma::load_matrix_sync(b[j], ws + (wn * 32 + j * 16) * kLd + kk * 16, kLd);
#pragma unroll
            for (int i = 0; i < MW; ++i) {
                const int f = i * kWarpsM + wm;
                if (16 * f >= rows) break;
                FragA af;
                wmma::load_matrix_sync(af, xs + f * 16 * kLd + kk * 16, kLd);
#pragma unroll
                for (int j = 0; j < 2; ++j) wmma::mma_sync(acc[i][j], af, b[j], acc[i][j]);
            }
        }
    }
    cp_async_wait<0>();
    __syncthreads();  // every warp is done with the stages: the partial tile takes their place

    float* const part = reinterpret_cast<float*>(smem);  // [kRows][kOutLd]
#pragma unroll
    for (int i = 0; i < MW; ++i) {
        const int f = i * kWarpsM + wm;
        if (16 * f >= rows) break;
#pragma unroll
        for (int j = 0; j < 2; ++j)
            wmma::store_matrix_sync(part + f * 16 * kOutLd + wn * 32 + j * 16, acc[i][j], kOutLd, wmma::mem_row_major);
    }
    cg::cluster_group cluster = cg::this_cluster();
    if (splits > 1) {
        cluster.sync();  // every block's partial tile is complete
    } else {
        __syncthreads();
    }
    // Block `split` finishes rows split, split + S, ...: the S partial tiles summed in rank order, then the epilogue.
    constexpr int kColThreads = kTileN / 4;
    const int c4 = (tid % kColThreads) * 4;
    float bias[4] = {0.f, 0.f, 0.f, 0.f};
    if (a.bias)
#pragma unroll
        for (int e = 0; e < 4; ++e) bias[e] = a.bias[n0 + c4 + e];
    for (int r = split + (tid / kColThreads) * splits; r < rows; r += (kBlockThreads / kColThreads) * splits) {
        // All S reads are issued before the first add (distributed shared memory has the latency of L2).
        float4 p[kMaxSplits];
#pragma unroll
        for (int s = 0; s < kMaxSplits; ++s)
            if (s < splits)
                p[s] = *reinterpret_cast<const float4*>((splits > 1 ? cluster.map_shared_rank(part, s) : part) +
                                                        r * kOutLd + c4);
        float4 v = p[0];
#pragma unroll
        for (int s = 1; s < kMaxSplits; ++s)
            if (s < splits) {
                v.x += p[s].x;
                v.y += p[s].y;
                v.z += p[s].z;
                v.w += p[s].w;
            }
        float o[4] = {v.x + bias[0], v.y + bias[1], v.z + bias[2], v.w + bias[3]};
        if (a.silu)
#pragma unroll
            for (int e = 0; e < 4; ++e) o[e] = o[e] / (1.f + expf(-o[e]));
        store4(a.y, r * a.ldy + n0 + c4, make_float4(o[0], o[1], o[2], o[3]), a.y_dtype);
    }
    if (splits > 1) cluster.sync();  // the other blocks may still read this block's tile
#endif
}

template <typename T, typename X, int MW>
void launch_tile(Launch l, const TileLinearArgs& a, int splits) {
    auto kernel = tile_linear_kernel<T, X, MW>;
    constexpr size_t shared = shared_bytes<T, MW>();
    static const bool configured = [&] {
        PK_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(shared)));
        return true;
    }();
    (void)configured;
    cudaLaunchConfig_t config{};
    config.gridDim = dim3(static_cast<unsigned int>(a.n / kTileN * splits));
    config.blockDim = dim3(kBlockThreads);
    config.dynamicSmemBytes = shared;
    config.stream = l.stream;
    cudaLaunchAttribute attributes[2]{};
    int n_attributes = 0;
    if (programmatic_launch_supported()) {
        attributes[n_attributes].id = cudaLaunchAttributeProgrammaticStreamSerialization;
        attributes[n_attributes].val.programmaticStreamSerializationAllowed = 1;
        ++n_attributes;
    }
    if (splits > 1) {
        attributes[n_attributes].id = cudaLaunchAttributeClusterDimension;
        attributes[n_attributes].val.clusterDim.x = static_cast<unsigned int>(splits);
        attributes[n_attributes].val.clusterDim.y = 1;
        attributes[n_attributes].val.clusterDim.z = 1;
        ++n_attributes;
    }
    config.attrs = attributes;
    config.numAttrs = static_cast<unsigned int>(n_attributes);
    PK_CUDA_CHECK(cudaLaunchKernelEx(&config, kernel, a, splits, static_cast<int>(a.k / splits)));
}

template <typename T, typename X>
void launch_rows(Launch l, const TileLinearArgs& a, int splits) {
    if (a.rows <= rows_of_block<1>()) {
        launch_tile<T, X, 1>(l, a, splits);
    } else if (a.rows <= rows_of_block<2>()) {
        launch_tile<T, X, 2>(l, a, splits);
    } else {
        launch_tile<T, X, 3>(l, a, splits);
    }
}

template <typename T>
void launch_typed(Launch l, const TileLinearArgs& a, int splits) {
    if (a.x_dtype == 0) {
        launch_rows<T, float>(l, a, splits);
    } else {
        launch_rows<T, T>(l, a, splits);
    }
}

}  // namespace

bool tile_linear_supported() {
    static const bool supported = [] {
        if (const char* env = std::getenv("PARAKEET_NO_TILE_LINEAR"); env && *env == '1') return false;  // A/B
        int dev = 0, major = 0;
        if (cudaGetDevice(&dev) != cudaSuccess) return false;
        if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess) return false;
        return major == 9;  // clusters and the shared-memory sizes used here are sm_90's
    }();
    return supported;
}

bool tile_linear_fits(int64_t rows, int64_t n, int64_t k) {
    return tile_linear_supported() && rows >= 1 && rows <= kTileLinearMaxRows && n > 0 && n % kTileN == 0 && k > 0 &&
           k % kTileK == 0;
}

int tile_linear_splits(int n_sms, int64_t n, int64_t k) {
    static const int max_splits = [] {
        const char* env = std::getenv("PARAKEET_TILE_SPLITS");  // A/B: the largest cluster along k
        return env ? std::clamp(std::atoi(env), 1, kMaxSplits) : kMaxSplits;
    }();
    // The largest power of two that keeps the grid within one block per SM and each block at >= 2 k stages.
    const int64_t tiles = n / kTileN;
    int splits = 1;
    while (splits * 2 <= max_splits && tiles * splits * 2 <= n_sms && k % (int64_t{splits} * 2 * kTileK) == 0 &&
           k / (splits * 2) >= 2 * kTileK)
        splits *= 2;
    return splits;
}

void tile_linear(Launch l, const TileLinearArgs& a) {
    if (a.rows <= 0 || a.n <= 0) return;
    const int splits = tile_linear_splits(l.n_sms, a.n, a.k);
    if (a.w_dtype == 1) {
        launch_typed<__half>(l, a, splits);
    } else {
        launch_typed<__nv_bfloat16>(l, a, splits);
    }
    PK_CUDA_CHECK_LAUNCH();
}

}  // namespace parakeet::cuda::kernels
