#include "core/tensor.h"

#include <cstdlib>
#include <cstring>
#include <mutex>
#include <unordered_map>
#include <vector>

namespace parakeet {

size_t dtype_size(DType dtype) {
    switch (dtype) {
        case DType::kF32: return 4;
        case DType::kF64: return 8;
        case DType::kF16: return 2;
        case DType::kBF16: return 2;
        case DType::kI64: return 8;
        case DType::kI32: return 4;
        case DType::kI16: return 2;
        case DType::kI8: return 1;
        case DType::kU8: return 1;
        case DType::kBool: return 1;
    }
    return 0;
}

const char* dtype_name(DType dtype) {
    switch (dtype) {
        case DType::kF32: return "float32";
        case DType::kF64: return "float64";
        case DType::kF16: return "float16";
        case DType::kBF16: return "bfloat16";
        case DType::kI64: return "int64";
        case DType::kI32: return "int32";
        case DType::kI16: return "int16";
        case DType::kI8: return "int8";
        case DType::kU8: return "uint8";
        case DType::kBool: return "bool";
    }
    return "?";
}

std::string Device::str() const {
    switch (type) {
        case DeviceType::kCPU: return "cpu";
        case DeviceType::kCUDA: return fmt::format("cuda:{}", index);
    }
    return "?";
}

Device Device::parse(const std::string& s) {
    if (s == "cpu") return Device{DeviceType::kCPU, 0};
    if (s == "cuda") return Device{DeviceType::kCUDA, 0};
    if (s.rfind("cuda:", 0) == 0 && s.size() > 5 && s.size() < 9) {
        int index = 0;
        for (size_t i = 5; i < s.size(); ++i) {
            PK_CHECK(s[i] >= '0' && s[i] <= '9', kInvalidArgument, "bad device '{}' (expected cpu, cuda or cuda:N)", s);
            index = index * 10 + (s[i] - '0');
        }
        return Device{DeviceType::kCUDA, index};
    }
    PK_THROW(kInvalidArgument, "bad device '{}' (expected cpu, cuda or cuda:N)", s);
}

std::string shape_str(const Shape& shape) {
    std::string out = "[";
    for (size_t i = 0; i < shape.size(); ++i) out += (i ? ", " : "") + std::to_string(shape[i]);
    return out + "]";
}

int64_t shape_numel(const Shape& shape) {
    int64_t n = 1;
    for (int64_t d : shape) {
        PK_CHECK(d >= 0, kFormat, "negative dimension in shape {}", shape_str(shape));
        PK_CHECK(!__builtin_mul_overflow(n, d, &n), kFormat, "shape {} has too many elements", shape_str(shape));
    }
    return n;
}

namespace {
DeviceMemory g_device_memory[2];

std::shared_ptr<Storage> device_storage(size_t nbytes, Device device) {
    const DeviceMemory& mem = device_memory(device.type);
    auto storage = std::make_shared<Storage>();
    void* p = mem.alloc(nbytes ? nbytes : 64, device.index);
    storage->data = p;
    storage->nbytes = nbytes;
    storage->device = device;
    auto free_fn = mem.free;
    const int index = device.index;
    storage->owner = std::shared_ptr<void>(p, [free_fn, index](void* q) { free_fn(q, index); });
    return storage;
}

// Host blocks are recycled: a freed block goes to a free list of its size class (powers of two from 256 bytes),
// so a streaming step that allocates the same temporaries every time allocates nothing new once warm. Blocks over
// kMaxCachedBlock and a cache over kMaxCachedTotal go back to the system.
class HostBlockCache {
public:
    static constexpr size_t kMaxCachedBlock = size_t{64} << 20;
    static constexpr size_t kMaxCachedTotal = size_t{512} << 20;

    void* get(size_t size_class) {
        {
            std::lock_guard<std::mutex> lock(mu_);
            auto& list = free_[size_class];
            if (!list.empty()) {
                void* p = list.back();
                list.pop_back();
                cached_ -= size_class;
                return p;
            }
            ++fresh_;
        }
        void* p = std::aligned_alloc(64, size_class);  // 64-byte alignment for SIMD and BLAS
        PK_CHECK(p != nullptr, kInternal, "out of memory allocating {} bytes", size_class);
        return p;
    }

    void put(void* p, size_t size_class) {
        {
            std::lock_guard<std::mutex> lock(mu_);
            if (size_class <= kMaxCachedBlock && cached_ + size_class <= kMaxCachedTotal) {
                free_[size_class].push_back(p);
                cached_ += size_class;
                return;
            }
        }
        std::free(p);
    }

    uint64_t fresh() const {
        std::lock_guard<std::mutex> lock(mu_);
        return fresh_;
    }

private:
    mutable std::mutex mu_;
    std::unordered_map<size_t, std::vector<void*>> free_;
    size_t cached_ = 0;
    uint64_t fresh_ = 0;
};

HostBlockCache& host_cache() {
    static HostBlockCache* cache = new HostBlockCache();  // never destroyed: tensors may outlive static teardown
    return *cache;
}

size_t size_class(size_t nbytes) {
    size_t c = 256;
    while (c < nbytes) c <<= 1;
    return c;
}

std::shared_ptr<Storage> heap_storage(size_t nbytes) {
    auto storage = std::make_shared<Storage>();
    const size_t cls = size_class(nbytes);
    void* p = host_cache().get(cls);
    storage->data = p;
    storage->nbytes = nbytes;
    storage->owner = std::shared_ptr<void>(p, [cls](void* q) { host_cache().put(q, cls); });
    return storage;
}
}  // namespace

uint64_t host_fresh_allocations() { return host_cache().fresh(); }

void register_device_memory(DeviceType type, const DeviceMemory& memory) {
    g_device_memory[static_cast<int>(type)] = memory;
}

const DeviceMemory& device_memory(DeviceType type) {
    const DeviceMemory& m = g_device_memory[static_cast<int>(type)];
    PK_CHECK(m.alloc != nullptr, kUnsupported, "unsupported device {}: this build has no backend for it",
             Device{type, 0}.str());
    return m;
}

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
    Tensor t;
    t.shape_ = shape;
    t.dtype_ = dtype;
    int64_t n = shape_numel(shape);
    size_t bytes = 0;
    PK_CHECK(!__builtin_mul_overflow(static_cast<size_t>(n), dtype_size(dtype), &bytes), kFormat,
             "tensor {} too large", shape_str(shape));
    t.storage_ = device.type == DeviceType::kCPU ? heap_storage(bytes) : device_storage(bytes, device);
    return t;
}

Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) {
    Tensor t = empty(shape, dtype, device);
    if (device.type == DeviceType::kCPU) {
        std::memset(t.raw(), 0, t.nbytes());
    } else {
        device_memory(device.type).memset0(t.raw(), t.nbytes(), device.index);
    }
    return t;
}

Tensor Tensor::to(Device target) const {
    if (device() == target) return *this;
    Tensor t = empty(shape_, dtype_, target);
    const Device src = device();
    const DeviceType other = target.type != DeviceType::kCPU ? target.type : src.type;
    device_memory(other).copy(t.raw(), target, raw(), src, nbytes());
    return t;
}

Tensor Tensor::view(void* data, const Shape& shape, DType dtype, std::shared_ptr<void> owner) {
    Tensor t;
    t.shape_ = shape;
    t.dtype_ = dtype;
    t.storage_ = std::make_shared<Storage>();
    t.storage_->data = data;
    t.storage_->nbytes = static_cast<size_t>(shape_numel(shape)) * dtype_size(dtype);
    t.storage_->owner = std::move(owner);
    return t;
}

Tensor Tensor::reshape(const Shape& shape) const {
    PK_CHECK(shape_numel(shape) == numel(), kInternal, "cannot reshape {} to {}", shape_str(shape_), shape_str(shape));
    Tensor t = *this;
    t.shape_ = shape;
    return t;
}

Tensor Tensor::slice0(int64_t begin, int64_t end) const {
    PK_CHECK(rank() >= 1 && begin >= 0 && begin <= end && end <= shape_[0], kInternal,
             "bad slice [{}, {}) of {}", begin, end, shape_str(shape_));
    Tensor t = *this;
    int64_t row = shape_[0] ? numel() / shape_[0] : 0;
    t.offset_ += static_cast<size_t>(begin * row) * dtype_size(dtype_);
    t.shape_[0] = end - begin;
    return t;
}

Tensor Tensor::clone() const {
    Tensor t = empty(shape_, dtype_, device());
    if (!nbytes()) return t;
    if (is_cpu()) {
        std::memcpy(t.raw(), raw(), nbytes());
    } else {
        device_memory(device().type).copy(t.raw(), device(), raw(), device(), nbytes());
    }
    return t;
}

namespace {
float half_to_float(uint16_t h) {
    uint32_t sign = (h & 0x8000u) << 16, exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
    uint32_t bits;
    if (exp == 0) {
        if (mant == 0) {
            bits = sign;
        } else {  // subnormal
            exp = 127 - 15 + 1;
            while ((mant & 0x400) == 0) {
                mant <<= 1;
                --exp;
            }
            bits = sign | (exp << 23) | ((mant & 0x3ff) << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (mant << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
    }
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
}
}  // namespace

Tensor Tensor::to_f32() const {
    if (dtype_ == DType::kF32) return *this;
    PK_CHECK(is_cpu(), kInternal, "to_f32 needs a CPU tensor");
    Tensor t = empty(shape_, DType::kF32);
    float* out = t.data<float>();
    int64_t n = numel();
    for (int64_t i = 0; i < n; ++i) {
        switch (dtype_) {
            case DType::kF32: out[i] = data<float>()[i]; break;
            case DType::kF64: out[i] = static_cast<float>(data<double>()[i]); break;
            case DType::kF16: out[i] = half_to_float(data<uint16_t>()[i]); break;
            case DType::kBF16: {
                uint32_t bits = static_cast<uint32_t>(data<uint16_t>()[i]) << 16;
                std::memcpy(&out[i], &bits, 4);
                break;
            }
            case DType::kI64: out[i] = static_cast<float>(data<int64_t>()[i]); break;
            case DType::kI32: out[i] = static_cast<float>(data<int32_t>()[i]); break;
            case DType::kI16: out[i] = static_cast<float>(data<int16_t>()[i]); break;
            case DType::kI8: out[i] = static_cast<float>(data<int8_t>()[i]); break;
            case DType::kU8: out[i] = static_cast<float>(data<uint8_t>()[i]); break;
            case DType::kBool: out[i] = data<uint8_t>()[i] ? 1.f : 0.f; break;
        }
    }
    return t;
}

}  // namespace parakeet
