// Host side of the GPU log-mel frontend: the audio upload, cuFFT plans and the passes over the frames.
#include "backends/cuda/mel_gpu.h"

#include <cufft.h>

#include <algorithm>
#include <bit>
#include <map>
#include <mutex>
#include <tuple>
#include <vector>

#include "backends/cuda/context_impl.h"
#include "backends/cuda/mel_kernels.h"
#include "core/error.h"

namespace parakeet::cuda {

namespace {

const char* cufft_result_name(cufftResult r) {
    switch (r) {
        case CUFFT_SUCCESS: return "CUFFT_SUCCESS";
        case CUFFT_INVALID_PLAN: return "CUFFT_INVALID_PLAN";
        case CUFFT_ALLOC_FAILED: return "CUFFT_ALLOC_FAILED";
        case CUFFT_INVALID_VALUE: return "CUFFT_INVALID_VALUE";
        case CUFFT_INTERNAL_ERROR: return "CUFFT_INTERNAL_ERROR";
        case CUFFT_EXEC_FAILED: return "CUFFT_EXEC_FAILED";
        case CUFFT_SETUP_FAILED: return "CUFFT_SETUP_FAILED";
        case CUFFT_INVALID_SIZE: return "CUFFT_INVALID_SIZE";
        case CUFFT_INVALID_DEVICE: return "CUFFT_INVALID_DEVICE";
        case CUFFT_NOT_SUPPORTED: return "CUFFT_NOT_SUPPORTED";
        default: return "cuFFT error";
    }
}

#define PK_CUFFT_CHECK(expr)                                                                                  \
    do {                                                                                                      \
        const cufftResult pk_fft_status_ = (expr);                                                            \
        if (pk_fft_status_ != CUFFT_SUCCESS)                                                                  \
            PK_THROW(kInternal, "cuFFT error {} ({}) in {}", cufft_result_name(pk_fft_status_),               \
                     static_cast<int>(pk_fft_status_), #expr);                                                \
    } while (0)

// Frames per FFT pass: a batched plan of this many frames is reused for any length (82 s of audio at a 10 ms
// hop per pass); shorter inputs use the next power of two, so at most a dozen plans exist per (device, n_fft).
constexpr int64_t kMaxBatch = 8192;
constexpr int64_t kMinBatch = 64;

struct Plan {
    cufftHandle handle = 0;
    size_t work_bytes = 0;  // the work area is passed at each execution (a slice of the context's workspace)
};

// Plans are shared by every context of a device: the lock is held while a plan's stream and work area are set
// and its execution is queued, and each context passes its own work area, so concurrent executions on
// different streams never share scratch memory. Never destroyed (plans would outlive the CUDA runtime at exit).
struct PlanCache {
    std::mutex mutex;
    std::map<std::tuple<int, int, int64_t>, Plan> plans;  // (device, n_fft, batch)
};

PlanCache& plan_cache() {
    static auto* cache = new PlanCache;
    return *cache;
}

// Caller holds the cache's lock; the device is current.
Plan& r2c_plan(PlanCache& cache, int device, int n_fft, int64_t batch) {
    const auto key = std::make_tuple(device, n_fft, batch);
    auto it = cache.plans.find(key);
    if (it != cache.plans.end()) return it->second;
    Plan plan;
    PK_CUFFT_CHECK(cufftCreate(&plan.handle));
    try {
        PK_CUFFT_CHECK(cufftSetAutoAllocation(plan.handle, 0));
        int n[1] = {n_fft}, in_embed[1] = {n_fft}, out_embed[1] = {n_fft / 2 + 1};
        // Row r of the input [batch, n_fft] (real) -> row r of the output [batch, n_fft/2 + 1] (complex).
        PK_CUFFT_CHECK(cufftMakePlanMany(plan.handle, 1, n, in_embed, 1, n_fft, out_embed, 1, n_fft / 2 + 1,
                                         CUFFT_R2C, static_cast<int>(batch), &plan.work_bytes));
    } catch (...) {
        (void)cufftDestroy(plan.handle);
        throw;
    }
    return cache.plans.emplace(key, plan).first->second;
}

size_t align256(size_t bytes) { return (bytes + 255) / 256 * 256; }

}  // namespace

float* mel_staging(CudaContext& ctx, int64_t n_samples) {
    PK_CHECK(n_samples >= 0, kInternal, "mel_staging: {} samples", n_samples);
    PK_CUDA_CHECK(cudaSetDevice(ctx.device));
    if (ctx.audio_uploaded) PK_CUDA_CHECK(cudaEventSynchronize(ctx.audio_uploaded));
    if (n_samples > ctx.audio_staging_floats) {
        if (ctx.audio_staging) PK_CUDA_CHECK(cudaFreeHost(ctx.audio_staging));
        ctx.audio_staging = nullptr;
        ctx.audio_staging_floats = 0;
        // Grown by half again, so a run of slowly growing inputs does not reallocate every time.
        const int64_t floats = std::max<int64_t>(n_samples + n_samples / 2, 1 << 16);
        PK_CUDA_CHECK(cudaMallocHost(&ctx.audio_staging, static_cast<size_t>(floats) * sizeof(float)));
        ctx.audio_staging_floats = floats;
    }
    return ctx.audio_staging;
}

void mel_features_batch(CudaContext& ctx, const MelArgs& a, const MelItem* items, int batch, int64_t total_samples,
                        float* out) {
    PK_CHECK(batch > 0 && a.n_fft > 0 && a.n_fft % 2 == 0 && a.hop > 0 && a.n_mels > 0 && total_samples >= 0 &&
                 total_samples <= ctx.audio_staging_floats,
             kInternal, "mel_features_batch: batch {} samples {} n_fft {} hop {} n_mels {}", batch, total_samples,
             a.n_fft, a.hop, a.n_mels);
    PK_CUDA_CHECK(cudaSetDevice(ctx.device));
    const Launch l{ctx.stream, ctx.n_sms};
    const int n_bins = a.n_fft / 2 + 1;
    // Per-item tables: sample offsets and lengths, frame offsets (batch + 1 entries, the last the total).
    std::vector<int64_t> table(3 * static_cast<size_t>(batch) + 1);
    int64_t total_frames = 0;
    for (int b = 0; b < batch; ++b) {
        const MelItem& it = items[b];
        PK_CHECK(it.n >= 0 && it.n_frames >= 0 && it.sample_offset >= 0 && it.sample_offset + it.n <= total_samples &&
                     it.frame_offset == total_frames,
                 kInternal, "mel_features_batch: item {} (samples {}+{}, frames {}+{})", b, it.sample_offset, it.n,
                 it.frame_offset, it.n_frames);
        table[b] = it.sample_offset;
        table[batch + b] = it.n;
        table[2 * batch + b] = it.frame_offset;
        total_frames += it.n_frames;
    }
    table[3 * batch] = total_frames;
    if (total_frames == 0) return;

    // The audio, once, from the pinned staging buffer; the event marks when the buffer may be rewritten.
    Tensor x = Tensor::empty({std::max<int64_t>(total_samples, 1)}, DType::kF32, Device{DeviceType::kCUDA, ctx.device});
    PK_CUDA_CHECK(cudaMemcpyAsync(x.data<float>(), ctx.audio_staging, static_cast<size_t>(total_samples) * sizeof(float),
                                  cudaMemcpyHostToDevice, ctx.stream));
    if (!ctx.audio_uploaded) PK_CUDA_CHECK(cudaEventCreateWithFlags(&ctx.audio_uploaded, cudaEventDisableTiming));
    PK_CUDA_CHECK(cudaEventRecord(ctx.audio_uploaded, ctx.stream));
    const auto* dev_table = static_cast<const int64_t*>(ctx.upload(table.data(), table.size() * sizeof(int64_t)));
    kernels::MelBatch mb{dev_table, dev_table + batch, dev_table + 2 * batch, batch};

    const int64_t pass =
        std::clamp<int64_t>(static_cast<int64_t>(std::bit_ceil(static_cast<uint64_t>(total_frames))), kMinBatch,
                            kMaxBatch);
    PlanCache& cache = plan_cache();
    size_t work_bytes = 0;
    {
        std::lock_guard<std::mutex> lock(cache.mutex);
        work_bytes = r2c_plan(cache, ctx.device, a.n_fft, pass).work_bytes;
    }
    // Workspace: frames [pass, n_fft] f32, spectrum [pass, n_bins] complex, cuFFT's work area.
    const size_t frames_bytes = align256(static_cast<size_t>(pass) * a.n_fft * sizeof(float));
    const size_t spec_bytes = align256(static_cast<size_t>(pass) * n_bins * sizeof(cufftComplex));
    char* ws = static_cast<char*>(ctx.scratch(frames_bytes + spec_bytes + align256(work_bytes)));
    float* frames = reinterpret_cast<float*>(ws);
    auto* spec = reinterpret_cast<cufftComplex*>(ws + frames_bytes);
    void* work = ws + frames_bytes + spec_bytes;

    for (int64_t g0 = 0; g0 < total_frames; g0 += pass) {
        const int64_t count = std::min(pass, total_frames - g0);
        kernels::mel_frames(l, x.data<float>(), mb, g0, count, pass, a.n_fft, a.hop, a.preemph, a.reflect_pad,
                            a.window, frames);
        {
            std::lock_guard<std::mutex> lock(cache.mutex);
            Plan& plan = r2c_plan(cache, ctx.device, a.n_fft, pass);
            PK_CUFFT_CHECK(cufftSetStream(plan.handle, ctx.stream));
            PK_CUFFT_CHECK(cufftSetWorkArea(plan.handle, work));
            PK_CUFFT_CHECK(cufftExecR2C(plan.handle, frames, spec));
        }
        kernels::mel_power_log(l, spec, count, n_bins, a.n_mels, a.fb, a.fb_span, a.log_guard, out + g0 * a.n_mels);
    }
    if (a.normalize) kernels::mel_normalize(l, out, mb, a.n_mels);
    // x is freed on the legacy stream, which runs after the kernels queued above (see context.cc).
}

}  // namespace parakeet::cuda
