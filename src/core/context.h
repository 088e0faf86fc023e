// Execution context passed down through ops: the device and its resources. No thread-local state:
// many streams may share one device, each with its own context.
#pragma once

#include "core/tensor.h"

namespace parakeet {

struct ExecContext {
    Device device;
    int n_threads = 1;  // CPU: threads for BLAS and the element-wise loops
};

// Sets the thread count used by OpenBLAS and OpenMP for this process (CPU backend).
void set_cpu_threads(int n_threads);

}  // namespace parakeet
