// The CudaContext behind the opaque pointer of ExecContext (backend-internal: CUDA types).
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "backends/cuda/context.h"
#include "backends/cuda/cuda_check.h"

namespace parakeet::cuda {

// Device copies of host weights, keyed by (host pointer, dtype); shared by contexts of one device.
struct WeightCache {
    std::mutex mutex;
    std::map<std::pair<const void*, DType>, Tensor> entries;  // value: the device tensor
    std::map<std::pair<std::vector<const void*>, DType>, Tensor> joined;  // device_weight_rows
    std::vector<Tensor> keep_alive;                           // the host tensors the keys point into
    size_t bytes = 0;
};

struct GemmPlans;  // tuned cuBLASLt GEMM plans by shape (gemm.cc)
struct CudaContext;
// Tunes the GEMM shapes first met during a graph capture (gemm.cc); true when one of them now runs an algorithm
// other than the one the capture recorded (the graph should be recorded again).
bool tune_pending_gemms(CudaContext& ctx);

struct GraphEntry {
    cudaGraph_t graph = nullptr;
    cudaGraphExec_t exec = nullptr;
    std::vector<std::shared_ptr<void>> owned;  // pinned host buffers the graph's copies read from
};

}  // namespace parakeet::cuda

namespace parakeet::cuda {

struct CudaContext {
    int device = 0;
    cudaStream_t stream = nullptr;
    cublasHandle_t cublas = nullptr;
    cublasLtHandle_t cublas_lt = nullptr;
    int n_sms = 0;

    // Workspace: one growing device buffer handed out in slices within one op (never across ops).
    void* workspace = nullptr;
    size_t workspace_bytes = 0;
    void* cublas_workspace = nullptr;  // cuBLAS(Lt) scratch, fixed size
    size_t cublas_workspace_bytes = 0;

    // Staging rings for small host->device arrays (lengths): pinned host and device, one offset; see upload().
    void* staging = nullptr;
    void* device_staging = nullptr;
    size_t staging_bytes = 0;
    size_t staging_offset = 0;

    // Pinned host buffer for a batch's audio (src/backends/cuda/mel_gpu.cc), grown on demand; audio_uploaded is
    // recorded after its upload is queued, so the buffer is rewritten only once the copy has read it.
    float* audio_staging = nullptr;
    int64_t audio_staging_floats = 0;
    cudaEvent_t audio_uploaded = nullptr;

    std::shared_ptr<WeightCache> weights;

    std::shared_ptr<GemmPlans> gemm_plans;  // created on first use

    std::map<uint64_t, GraphEntry> graphs;
    GraphEntry* capturing = nullptr;  // set while run_graph records

    ~CudaContext();

    // A device scratch buffer of at least `bytes` valid until the next call (grows; syncs the stream then).
    void* scratch(size_t bytes);
    // Copies `bytes` of host data to a device buffer valid for work queued next on the stream.
    const void* upload(const void* host, size_t bytes);
};

}  // namespace parakeet::cuda
