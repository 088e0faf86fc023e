// Tensor: a contiguous, row-major, typed view of a Storage on a Device.
// Every op in the engine takes tensors whose first dimension is the batch where that makes sense.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/error.h"

namespace parakeet {

enum class DType : uint8_t { kF32, kF64, kF16, kBF16, kI64, kI32, kI16, kI8, kU8, kBool };

size_t dtype_size(DType dtype);
const char* dtype_name(DType dtype);  // "float32", "int64", ... (PyTorch names)

enum class DeviceType : uint8_t { kCPU, kCUDA };

struct Device {
    DeviceType type = DeviceType::kCPU;
    int index = 0;
    bool operator==(const Device&) const = default;
    std::string str() const;                   // "cpu", "cuda:0"
    static Device parse(const std::string& s);  // "cpu", "cuda", "cuda:N"; throws kInvalidArgument
};

using Shape = std::vector<int64_t>;
std::string shape_str(const Shape& shape);  // "[1, 80, 311]"
// Number of elements; throws kFormat when the product overflows int64 or a dimension is negative.
int64_t shape_numel(const Shape& shape);

// A block of memory. `owner` keeps whatever backs it alive (a heap buffer, an mmap, a parent archive).
struct Storage {
    void* data = nullptr;
    size_t nbytes = 0;
    Device device;
    std::shared_ptr<void> owner;
};

// Memory functions of a non-CPU device, registered by its backend (the core never links CUDA).
struct DeviceMemory {
    void* (*alloc)(size_t nbytes, int index) = nullptr;
    void (*free)(void* p, int index) = nullptr;
    void (*memset0)(void* p, size_t nbytes, int index) = nullptr;
    // Copies nbytes; either side may be host or device memory of this device type.
    void (*copy)(void* dst, Device dst_device, const void* src, Device src_device, size_t nbytes) = nullptr;
};
void register_device_memory(DeviceType type, const DeviceMemory& memory);
// Host blocks obtained from the system so far (freed tensor memory is recycled by size class; a steady-state
// streaming step gets all its temporaries from the recycled blocks, which this counter proves in tests).
uint64_t host_fresh_allocations();
// Throws kUnsupported when no backend for `type` was built or registered.
const DeviceMemory& device_memory(DeviceType type);

class Tensor {
public:
    Tensor() = default;
    // New zero-filled tensor (CPU unless a device is given).
    static Tensor zeros(const Shape& shape, DType dtype = DType::kF32, Device device = {});
    // New uninitialised tensor (CPU unless a device is given).
    static Tensor empty(const Shape& shape, DType dtype = DType::kF32, Device device = {});
    // View of external memory; `owner` keeps it alive (may be null when the caller guarantees lifetime).
    static Tensor view(void* data, const Shape& shape, DType dtype, std::shared_ptr<void> owner);

    bool defined() const { return storage_ != nullptr; }
    DType dtype() const { return dtype_; }
    Device device() const { return storage_ ? storage_->device : Device{}; }
    const Shape& shape() const { return shape_; }
    int64_t dim(int i) const { return shape_.at(i < 0 ? shape_.size() + i : i); }
    int rank() const { return static_cast<int>(shape_.size()); }
    int64_t numel() const { return shape_numel(shape_); }
    size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype_); }

    void* raw() const { return static_cast<char*>(storage_->data) + offset_; }
    template <typename T>
    T* data() const { return static_cast<T*>(raw()); }

    // Same storage, new shape with the same element count.
    Tensor reshape(const Shape& shape) const;
    // Rows [begin, end) of the first dimension, as a view.
    Tensor slice0(int64_t begin, int64_t end) const;
    // Deep copy on the same device.
    Tensor clone() const;
    // Copy to another device (returns *this when already there).
    Tensor to(Device device) const;
    bool is_cpu() const { return device().type == DeviceType::kCPU; }
    // Convert to float32 (copy); returns *this when already float32.
    Tensor to_f32() const;

private:
    std::shared_ptr<Storage> storage_;
    size_t offset_ = 0;  // bytes
    Shape shape_;
    DType dtype_ = DType::kF32;
};

}  // namespace parakeet
