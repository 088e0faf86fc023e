// Error checks for CUDA runtime and cuBLAS calls: throw parakeet::Error (kInternal) with the call, the
// library's message and file:line. Backend-internal (includes CUDA headers).
#pragma once

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>

namespace parakeet::cuda {

[[noreturn]] void throw_cuda_error(cudaError_t status, const char* expr, const char* file, int line);
[[noreturn]] void throw_cublas_error(cublasStatus_t status, const char* expr, const char* file, int line);

}  // namespace parakeet::cuda

#define PK_CUDA_CHECK(expr)                                                                          \
    do {                                                                                             \
        const cudaError_t pk_status_ = (expr);                                                       \
        if (pk_status_ != cudaSuccess) ::parakeet::cuda::throw_cuda_error(pk_status_, #expr, __FILE__, __LINE__); \
    } while (0)

#define PK_CUBLAS_CHECK(expr)                                                                        \
    do {                                                                                             \
        const cublasStatus_t pk_status_ = (expr);                                                    \
        if (pk_status_ != CUBLAS_STATUS_SUCCESS)                                                     \
            ::parakeet::cuda::throw_cublas_error(pk_status_, #expr, __FILE__, __LINE__);             \
    } while (0)

// After a kernel launch: reports launch-configuration errors at once (execution errors surface at the next
// synchronising call).
#define PK_CUDA_CHECK_LAUNCH() PK_CUDA_CHECK(cudaGetLastError())
