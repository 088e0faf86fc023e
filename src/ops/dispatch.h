// The one place that knows which backends were built. Switches on DeviceType have no default, so a new
// device is a compile error.
#pragma once

#include "core/context.h"
#include "core/error.h"

#if PARAKEET_WITH_CUDA
// Expands to the CUDA backend call in CUDA builds.
#define PK_CUDA_OP(...) __VA_ARGS__
#else
#define PK_CUDA_OP(...) PK_THROW(kUnsupported, "unsupported device cuda: this build has no CUDA backend")
#endif

namespace parakeet::ops {

// Runs cpu_fn() or cuda_fn() for ctx.device.
template <typename CpuFn, typename CudaFn>
void dispatch(const ExecContext& ctx, const char* op, CpuFn&& cpu_fn, CudaFn&& cuda_fn) {
    switch (ctx.device.type) {
        case DeviceType::kCPU: cpu_fn(); return;
        case DeviceType::kCUDA:
            PK_CHECK(ctx.cuda != nullptr, kInternal, "op '{}': CUDA device without a CUDA context", op);
            cuda_fn();
            return;
    }
}

// CPU-only op: CUDA throws until the CUDA backend implements it.
template <typename CpuFn>
void dispatch(const ExecContext& ctx, const char* op, CpuFn&& cpu_fn) {
    dispatch(ctx, op, cpu_fn, [op] { PK_THROW(kUnsupported, "op '{}' has no CUDA implementation", op); });
}

}  // namespace parakeet::ops
