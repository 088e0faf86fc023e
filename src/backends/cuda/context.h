// CUDA backend: execution context and device resources. Plain C++ (no CUDA types), so runtime and test code
// can create contexts in any build; the functions exist only in CUDA builds (PARAKEET_WITH_CUDA=1).
//
// Threading: a CudaContext is used by one thread at a time (one stream). Many contexts may share a device;
// contexts created with `share_weights_with` share one device copy of every weight.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <vector>
#include <memory>

#include "core/context.h"
#include "core/tensor.h"

namespace parakeet::cuda {

// Number of usable CUDA devices; 0 when there is no GPU or no driver (never throws).
int device_count();

struct ContextOptions {
    int device_index = 0;                 // CUDA device ordinal
    size_t workspace_bytes = 256u << 20;  // scratch for fp16 staging and attention scores (grown on demand)
    // Another context whose weight cache (device copies of host weights) this one shares; may be null.
    const CudaContext* share_weights_with = nullptr;
};

// Creates a stream, cuBLAS/cuBLASLt handles, a workspace and a pinned staging buffer on the device, and
// registers the CUDA DeviceMemory functions (stream-ordered pool allocator). Throws parakeet::Error.
std::shared_ptr<CudaContext> create_context(const ContextOptions& options = {});

// An ExecContext running on `cuda` with `precision` (the context must outlive it).
ExecContext exec_context(CudaContext& cuda, Precision precision = Precision::kF32);

// Blocks until all work queued on the context's stream is done; throws on an asynchronous kernel error.
void synchronize(CudaContext& ctx);

// Device copy of a weight for `precision`, uploaded (and converted to fp16/bf16 for those precisions) on
// first use and cached by host pointer: the returned tensor is [same shape] on the device, dtype f32, f16
// or bf16. A weight already on the device in the wanted dtype is returned as is. Keeps `w` alive.
Tensor device_weight(CudaContext& ctx, const Tensor& w, Precision precision);
// The rows of `parts` (each [n_i, k] on the host, one k) joined into one device weight [Σ n_i, k] for `precision`,
// built on first use and cached by the parts' host pointers; the parts are not uploaded on their own. One GEMM then
// serves several linears of the same input (the attention's q, k and v).
Tensor device_weight_rows(CudaContext& ctx, const std::vector<const Tensor*>& parts, Precision precision);
// Uploads every tensor of `weights` for `precision` ahead of time (so the first forward does no copies).
void prefetch_weights(CudaContext& ctx, const std::vector<Tensor>& weights, Precision precision);
// Bytes of device memory held by the weight cache.
size_t weight_cache_bytes(const CudaContext& ctx);

// CUDA graphs for fixed-shape work (a streaming encoder chunk): `capture` records everything `fn` queues on
// the context's stream into a graph stored under `key`, then launches it; later calls with the same key
// replay the graph without calling `fn`. (If the capture met GEMM shapes not tuned yet, they are tuned after
// the launch and the graph is dropped, so the next call records it again with the tuned algorithms; gemm.cc.) `fn` must allocate no device memory that outlives it and must not
// synchronise (no device->host copies); its input and output tensors must live at fixed addresses (allocate
// them once per key and copy new data into them before each replay).
void run_graph(CudaContext& ctx, uint64_t key, const std::function<void()>& fn);
// Drops every captured graph of this context.
void clear_graphs(CudaContext& ctx);

}  // namespace parakeet::cuda
