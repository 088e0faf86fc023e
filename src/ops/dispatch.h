// The one place that knows which backends were built. Switches on DeviceType have no default, so a new
// device is a compile error.
#pragma once

#include "core/context.h"
#include "core/error.h"

namespace parakeet::ops {

// Calls cpu_fn() for CPU; CUDA ops are routed by the CUDA backend when it is built.
template <typename CpuFn>
void dispatch(const ExecContext& ctx, const char* op, CpuFn&& cpu_fn) {
    switch (ctx.device.type) {
        case DeviceType::kCPU: cpu_fn(); return;
        case DeviceType::kCUDA:
#if PARAKEET_WITH_CUDA
            PK_THROW(kUnsupported, "op '{}' has no CUDA implementation yet", op);
#else
            PK_THROW(kUnsupported, "unsupported device cuda: this build has no CUDA backend (op '{}')", op);
#endif
    }
}

}  // namespace parakeet::ops
