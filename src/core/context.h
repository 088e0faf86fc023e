// Execution context passed down through ops: the device and its resources. No thread-local state:
// many streams may share one device, each with its own context.
#pragma once

#include "core/tensor.h"

namespace parakeet {

namespace cuda {
struct CudaContext;  // stream, cuBLAS handle, workspace (src/backends/cuda); opaque to everything else
}

// Arithmetic precision of the encoder on GPUs (CPU always computes in fp32).
enum class Precision : uint8_t { kF32, kTF32, kF16, kBF16 };

struct ExecContext {
    Device device;
    int n_threads = 1;                  // CPU: threads for BLAS and the element-wise loops
    cuda::CudaContext* cuda = nullptr;  // CUDA: non-owning; required when device is CUDA
    Precision precision = Precision::kF32;
};

// Sets the thread count used by OpenBLAS and OpenMP for this process (CPU backend).
void set_cpu_threads(int n_threads);

}  // namespace parakeet
