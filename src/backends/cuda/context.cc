#include "backends/cuda/context.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <set>
#include <thread>

#include "backends/cuda/context_impl.h"
#include "backends/cuda/cuda_ops.h"
#include "core/error.h"

namespace parakeet::cuda {

void throw_cuda_error(cudaError_t status, const char* expr, const char* file, int line) {
    throw_error(ErrorCode::kInternal, file, line,
                fmt::format("CUDA error {} ({}) in {}", cudaGetErrorName(status), cudaGetErrorString(status), expr));
}

void throw_cublas_error(cublasStatus_t status, const char* expr, const char* file, int line) {
    throw_error(ErrorCode::kInternal, file, line,
                fmt::format("cuBLAS error {} ({}) in {}", cublasGetStatusName(status), cublasGetStatusString(status),
                            expr));
}

namespace {

// Device memory for Tensor: the device's stream-ordered pool (cudaMallocAsync), queued on the legacy
// default stream. Contexts use blocking streams, so the legacy stream orders every allocation, free,
// memset and copy after the work already queued by any context (a tensor freed on the host while a kernel
// still reads it stays valid until that kernel is done), without blocking the host.
//
// While run_graph() captures on a thread, that thread's allocations, frees, memsets and device copies go to
// the capturing stream instead (graph memory nodes); frees of memory from outside the graph wait until the
// capture ends.
struct Capture {
    std::mutex mutex;
    std::atomic<int> active{0};
    CudaContext* ctx = nullptr;
    std::thread::id thread;
    std::set<void*> graph_memory;
    std::vector<std::pair<void*, int>> deferred_frees;
};
Capture g_capture;

// The capturing stream when the calling thread is capturing on `index`, else the legacy stream.
cudaStream_t memory_stream(int index) {
    if (g_capture.active.load(std::memory_order_acquire) == 0) return cudaStreamLegacy;
    std::lock_guard<std::mutex> lock(g_capture.mutex);
    if (g_capture.ctx && g_capture.ctx->device == index && g_capture.thread == std::this_thread::get_id())
        return g_capture.ctx->stream;
    return cudaStreamLegacy;
}

void* device_alloc(size_t nbytes, int index) {
    PK_CUDA_CHECK(cudaSetDevice(index));
    const cudaStream_t stream = memory_stream(index);
    void* p = nullptr;
    PK_CUDA_CHECK(cudaMallocAsync(&p, nbytes, stream));
    if (stream != cudaStreamLegacy) {
        std::lock_guard<std::mutex> lock(g_capture.mutex);
        g_capture.graph_memory.insert(p);
    }
    return p;
}

void device_free(void* p, int index) {
    // Frees run in destructors: report nothing, leak rather than throw.
    if (cudaSetDevice(index) != cudaSuccess) return;
    const cudaStream_t stream = memory_stream(index);
    if (stream != cudaStreamLegacy) {
        std::lock_guard<std::mutex> lock(g_capture.mutex);
        if (g_capture.graph_memory.erase(p) == 0) {
            g_capture.deferred_frees.emplace_back(p, index);
            return;
        }
    }
    (void)cudaFreeAsync(p, stream);
}

void device_memset0(void* p, size_t nbytes, int index) {
    PK_CUDA_CHECK(cudaSetDevice(index));
    PK_CUDA_CHECK(cudaMemsetAsync(p, 0, nbytes, memory_stream(index)));
}

void device_copy(void* dst, Device dst_device, const void* src, Device src_device, size_t nbytes) {
    if (!nbytes) return;
    const bool dst_gpu = dst_device.type == DeviceType::kCUDA, src_gpu = src_device.type == DeviceType::kCUDA;
    const int index = dst_gpu ? dst_device.index : src_device.index;
    PK_CUDA_CHECK(cudaSetDevice(index));
    if (dst_gpu && src_gpu) {
        PK_CUDA_CHECK(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyDeviceToDevice, memory_stream(index)));
    } else {
        // Synchronous on the legacy stream: waits for the producers of src, returns with dst ready.
        // (Not allowed while capturing a graph: the capture fails with a CUDA error.)
        PK_CUDA_CHECK(cudaMemcpy(dst, src, nbytes, cudaMemcpyDefault));
    }
}

std::once_flag g_register_once;

void register_memory() {
    std::call_once(g_register_once, [] {
        register_device_memory(DeviceType::kCUDA,
                               DeviceMemory{device_alloc, device_free, device_memset0, device_copy});
    });
}

constexpr size_t kStagingBytes = 64u << 10;
constexpr size_t kCublasWorkspaceBytes = 32u << 20;

}  // namespace

int device_count() {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        (void)cudaGetLastError();
        return 0;
    }
    return n;
}

CudaContext::~CudaContext() {
    (void)cudaSetDevice(device);
    if (stream) (void)cudaStreamSynchronize(stream);
    for (auto& [key, g] : graphs) {
        if (g.exec) (void)cudaGraphExecDestroy(g.exec);
        if (g.graph) (void)cudaGraphDestroy(g.graph);
    }
    if (cublas_lt) (void)cublasLtDestroy(cublas_lt);
    if (cublas) (void)cublasDestroy(cublas);
    if (workspace) (void)cudaFree(workspace);
    if (cublas_workspace) (void)cudaFree(cublas_workspace);
    if (staging) (void)cudaFreeHost(staging);
    if (audio_staging) (void)cudaFreeHost(audio_staging);
    if (audio_uploaded) (void)cudaEventDestroy(audio_uploaded);
    if (device_staging) (void)cudaFree(device_staging);
    if (stream) (void)cudaStreamDestroy(stream);
}

void* CudaContext::scratch(size_t bytes) {
    if (bytes > workspace_bytes) {
        PK_CHECK(capturing == nullptr, kInternal, "workspace must not grow during graph capture ({} bytes)", bytes);
        PK_CUDA_CHECK(cudaStreamSynchronize(stream));
        if (workspace) PK_CUDA_CHECK(cudaFree(workspace));
        workspace = nullptr;
        const size_t grown = std::max(bytes, workspace_bytes + workspace_bytes / 2);
        PK_CUDA_CHECK(cudaMalloc(&workspace, grown));
        workspace_bytes = grown;
    }
    return workspace;
}

const void* CudaContext::upload(const void* host, size_t bytes) {
    // Small host arrays (lengths, key ranges) reach the device through a pinned staging buffer and an async copy
    // into a device ring slice, which the kernels queued next read. (Kernels reading pinned host memory directly
    // stall on PCIe: the fused conv module took 24 us for 175 rows that way.) The device slices need no fence:
    // every copy into a slice and the kernels reading it run in stream order, so a later copy into the same slice
    // (after a wrap-around, or in a graph replay) lands after them.
    const size_t rounded = std::max<size_t>((bytes + 255) / 256 * 256, 256);
    PK_CHECK(rounded <= staging_bytes, kInternal, "staging upload of {} bytes is too large", bytes);
    if (staging_offset + rounded > staging_bytes) {
        // Wrap around: the host side of earlier slices may still be read by queued copies.
        if (!capturing) PK_CUDA_CHECK(cudaStreamSynchronize(stream));
        staging_offset = 0;
    }
    void* src = static_cast<char*>(staging) + staging_offset;
    void* dst = static_cast<char*>(device_staging) + staging_offset;
    staging_offset += rounded;
    if (capturing) {
        // The copy's source must outlive the graph: a pinned buffer owned by it (read at every replay). Allocating
        // is a "potentially unsafe" call that would invalidate a thread-local capture: allowed for this call only.
        cudaStreamCaptureMode mode = cudaStreamCaptureModeRelaxed;
        PK_CUDA_CHECK(cudaThreadExchangeStreamCaptureMode(&mode));
        const cudaError_t status = cudaMallocHost(&src, rounded);
        PK_CUDA_CHECK(cudaThreadExchangeStreamCaptureMode(&mode));
        PK_CUDA_CHECK(status);
        capturing->owned.emplace_back(src, [](void* q) { (void)cudaFreeHost(q); });
    }
    std::memcpy(src, host, bytes);
    PK_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream));
    return dst;
}

std::shared_ptr<CudaContext> create_context(const ContextOptions& options) {
    const int n = device_count();
    PK_CHECK(n > 0, kUnsupported, "no CUDA device available");
    PK_CHECK(options.device_index >= 0 && options.device_index < n, kInvalidArgument,
             "CUDA device {} does not exist ({} present)", options.device_index, n);
    register_memory();
    auto ctx = std::make_shared<CudaContext>();
    ctx->device = options.device_index;
    PK_CUDA_CHECK(cudaSetDevice(ctx->device));
    // Keep freed pool memory cached instead of returning it to the driver at each synchronisation.
    cudaMemPool_t pool;
    PK_CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool, ctx->device));
    uint64_t threshold = UINT64_MAX;
    PK_CUDA_CHECK(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &threshold));
    PK_CUDA_CHECK(cudaDeviceGetAttribute(&ctx->n_sms, cudaDevAttrMultiProcessorCount, ctx->device));
    PK_CUDA_CHECK(cudaStreamCreate(&ctx->stream));  // blocking: ordered with the legacy stream (allocator)
    PK_CUBLAS_CHECK(cublasCreate(&ctx->cublas));
    PK_CUBLAS_CHECK(cublasSetStream(ctx->cublas, ctx->stream));
    PK_CUBLAS_CHECK(cublasLtCreate(&ctx->cublas_lt));
    ctx->cublas_workspace_bytes = kCublasWorkspaceBytes;
    PK_CUDA_CHECK(cudaMalloc(&ctx->cublas_workspace, ctx->cublas_workspace_bytes));
    PK_CUBLAS_CHECK(cublasSetWorkspace(ctx->cublas, ctx->cublas_workspace, ctx->cublas_workspace_bytes));
    if (options.workspace_bytes) {
        PK_CUDA_CHECK(cudaMalloc(&ctx->workspace, options.workspace_bytes));
        ctx->workspace_bytes = options.workspace_bytes;
    }
    ctx->staging_bytes = kStagingBytes;
    PK_CUDA_CHECK(cudaMallocHost(&ctx->staging, ctx->staging_bytes));
    PK_CUDA_CHECK(cudaMalloc(&ctx->device_staging, ctx->staging_bytes));
    if (options.share_weights_with) {
        PK_CHECK(options.share_weights_with->device == ctx->device, kInvalidArgument,
                 "weights can only be shared between contexts of one device");
        ctx->weights = options.share_weights_with->weights;
    } else {
        ctx->weights = std::make_shared<WeightCache>();
    }
    return ctx;
}

ExecContext exec_context(CudaContext& cuda, Precision precision) {
    ExecContext ctx;
    ctx.device = Device{DeviceType::kCUDA, cuda.device};
    ctx.cuda = &cuda;
    ctx.precision = precision;
    return ctx;
}

void synchronize(CudaContext& ctx) {
    PK_CUDA_CHECK(cudaSetDevice(ctx.device));
    PK_CUDA_CHECK(cudaStreamSynchronize(ctx.stream));
}

namespace {
DType weight_dtype(Precision precision) {
    switch (precision) {
        case Precision::kF32: return DType::kF32;
        case Precision::kTF32: return DType::kF32;
        case Precision::kF16: return DType::kF16;
        case Precision::kBF16: return DType::kBF16;
    }
    return DType::kF32;
}
}  // namespace

Tensor device_weight(CudaContext& ctx, const Tensor& w, Precision precision) {
    PK_CHECK(w.defined(), kInternal, "device_weight: undefined tensor");
    const DType want = weight_dtype(precision);
    const Device dev{DeviceType::kCUDA, ctx.device};
    if (w.device() == dev && w.dtype() == want) return w;
    WeightCache& cache = *ctx.weights;
    std::lock_guard<std::mutex> lock(cache.mutex);
    const auto key = std::make_pair(static_cast<const void*>(w.raw()), want);
    auto it = cache.entries.find(key);
    if (it != cache.entries.end() && it->second.numel() == w.numel()) return it->second.reshape(w.shape());
    PK_CHECK(ctx.capturing == nullptr, kInternal, "weights must be uploaded before graph capture");
    Tensor f32 = w.is_cpu() ? w.to_f32().to(dev) : w;
    PK_CHECK(f32.dtype() == DType::kF32, kInternal, "device_weight: device tensor of dtype {}", dtype_name(w.dtype()));
    Tensor out = f32;
    if (want != DType::kF32) {
        out = Tensor::empty(w.shape(), want, dev);
        convert_f32(ctx, f32.data<float>(), out.raw(), want, f32.numel());
        synchronize(ctx);
    }
    cache.entries[key] = out;
    cache.keep_alive.push_back(w);
    cache.bytes += out.nbytes();
    return out;
}

Tensor device_weight_rows(CudaContext& ctx, const std::vector<const Tensor*>& parts, Precision precision) {
    PK_CHECK(!parts.empty(), kInternal, "device_weight_rows: no parts");
    const DType want = weight_dtype(precision);
    const Device dev{DeviceType::kCUDA, ctx.device};
    std::vector<const void*> ptrs;
    int64_t rows = 0;
    const int64_t k = parts.front()->dim(-1);
    for (const Tensor* w : parts) {
        PK_CHECK(w->defined() && w->rank() == 2 && w->dim(1) == k && w->is_cpu(), kInternal,
                 "device_weight_rows: part {} is not a host [n, {}] matrix", shape_str(w->shape()), k);
        ptrs.push_back(w->raw());
        rows += w->dim(0);
    }
    WeightCache& cache = *ctx.weights;
    std::lock_guard<std::mutex> lock(cache.mutex);
    auto key = std::make_pair(ptrs, want);
    if (auto it = cache.joined.find(key); it != cache.joined.end()) return it->second;
    PK_CHECK(ctx.capturing == nullptr, kInternal, "weights must be uploaded before graph capture");
    Tensor host = Tensor::empty({rows, k});
    int64_t row = 0;
    for (const Tensor* w : parts) {
        const Tensor f32 = w->to_f32();
        std::memcpy(host.data<float>() + row * k, f32.data<float>(), static_cast<size_t>(f32.numel()) * sizeof(float));
        row += w->dim(0);
    }
    Tensor out = host.to(dev);
    if (want != DType::kF32) {
        Tensor converted = Tensor::empty(out.shape(), want, dev);
        convert_f32(ctx, out.data<float>(), converted.raw(), want, out.numel());
        synchronize(ctx);
        out = converted;
    }
    for (const Tensor* w : parts) cache.keep_alive.push_back(*w);
    cache.bytes += out.nbytes();
    cache.joined.emplace(std::move(key), out);
    return out;
}

void prefetch_weights(CudaContext& ctx, const std::vector<Tensor>& weights, Precision precision) {
    for (const Tensor& w : weights) device_weight(ctx, w, precision);
}

size_t weight_cache_bytes(const CudaContext& ctx) {
    std::lock_guard<std::mutex> lock(ctx.weights->mutex);
    return ctx.weights->bytes;
}

namespace {

void end_capture_state() {
    std::vector<std::pair<void*, int>> frees;
    {
        std::lock_guard<std::mutex> lock(g_capture.mutex);
        g_capture.ctx = nullptr;
        g_capture.graph_memory.clear();
        frees.swap(g_capture.deferred_frees);
        g_capture.active.store(0, std::memory_order_release);
    }
    for (const auto& [p, index] : frees) device_free(p, index);
}

}  // namespace

void run_graph(CudaContext& ctx, uint64_t key, const std::function<void()>& fn) {
    PK_CUDA_CHECK(cudaSetDevice(ctx.device));
    auto it = ctx.graphs.find(key);
    bool fresh = false;
    if (it == ctx.graphs.end()) {
        fresh = true;
        GraphEntry entry;
        {
            std::lock_guard<std::mutex> lock(g_capture.mutex);
            PK_CHECK(g_capture.ctx == nullptr, kInternal, "run_graph: another capture is in progress");
            g_capture.ctx = &ctx;
            g_capture.thread = std::this_thread::get_id();
            g_capture.active.store(1, std::memory_order_release);
        }
        ctx.capturing = &entry;
        cudaGraph_t graph = nullptr;
        try {
            PK_CUDA_CHECK(cudaStreamBeginCapture(ctx.stream, cudaStreamCaptureModeThreadLocal));
            try {
                fn();
            } catch (...) {
                (void)cudaStreamEndCapture(ctx.stream, &graph);
                if (graph) (void)cudaGraphDestroy(graph);
                throw;
            }
            PK_CUDA_CHECK(cudaStreamEndCapture(ctx.stream, &graph));
        } catch (...) {
            ctx.capturing = nullptr;
            end_capture_state();
            throw;
        }
        ctx.capturing = nullptr;
        end_capture_state();
        entry.graph = graph;
        const cudaError_t status = cudaGraphInstantiate(&entry.exec, graph, 0);
        if (status != cudaSuccess) {
            (void)cudaGraphDestroy(graph);
            PK_CUDA_CHECK(status);
        }
        it = ctx.graphs.emplace(key, std::move(entry)).first;
    }
    PK_CUDA_CHECK(cudaGraphLaunch(it->second.exec, ctx.stream));
    // GEMM shapes met for the first time in this capture ran cuBLAS's default choice; once tuned, the next call
    // records the graph again if a tuned choice differs.
    if (fresh && tune_pending_gemms(ctx)) {
        PK_CUDA_CHECK(cudaStreamSynchronize(ctx.stream));
        PK_CUDA_CHECK(cudaGraphExecDestroy(it->second.exec));
        PK_CUDA_CHECK(cudaGraphDestroy(it->second.graph));
        ctx.graphs.erase(it);
    }
}

void clear_graphs(CudaContext& ctx) {
    PK_CUDA_CHECK(cudaSetDevice(ctx.device));
    PK_CUDA_CHECK(cudaStreamSynchronize(ctx.stream));
    for (auto& [key, g] : ctx.graphs) {
        if (g.exec) PK_CUDA_CHECK(cudaGraphExecDestroy(g.exec));
        if (g.graph) PK_CUDA_CHECK(cudaGraphDestroy(g.graph));
    }
    ctx.graphs.clear();
}

}  // namespace parakeet::cuda
