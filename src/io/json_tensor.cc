#include "io/json_tensor.h"

#include <cstring>

namespace parakeet {

namespace {
constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

DType dtype_from_name(const std::string& name, const std::string& what) {
    for (DType d : {DType::kF32, DType::kF64, DType::kF16, DType::kBF16, DType::kI64, DType::kI32, DType::kI16,
                    DType::kI8, DType::kU8, DType::kBool})
        if (name == dtype_name(d)) return d;
    PK_THROW(kFormat, "{}: unknown dtype '{}'", what, name);
}
}  // namespace

std::string base64_decode(const std::string& in) {
    int8_t table[256];
    std::memset(table, -1, sizeof(table));
    for (int i = 0; i < 64; ++i) table[static_cast<uint8_t>(kAlphabet[i])] = static_cast<int8_t>(i);
    std::string out;
    out.reserve(in.size() / 4 * 3);
    uint32_t acc = 0;
    int bits = 0;
    for (char ch : in) {
        if (ch == '=' || ch == '\n' || ch == '\r') continue;
        const int8_t v = table[static_cast<uint8_t>(ch)];
        PK_CHECK(v >= 0, kFormat, "invalid base64 character");
        acc = (acc << 6) | static_cast<uint32_t>(v);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out.push_back(static_cast<char>((acc >> bits) & 0xff));
        }
    }
    return out;
}

std::string base64_encode(const void* data, size_t n) {
    const auto* p = static_cast<const uint8_t*>(data);
    std::string out;
    out.reserve((n + 2) / 3 * 4);
    for (size_t i = 0; i < n; i += 3) {
        const uint32_t v = (p[i] << 16) | ((i + 1 < n ? p[i + 1] : 0) << 8) | (i + 2 < n ? p[i + 2] : 0);
        out.push_back(kAlphabet[(v >> 18) & 63]);
        out.push_back(kAlphabet[(v >> 12) & 63]);
        out.push_back(i + 1 < n ? kAlphabet[(v >> 6) & 63] : '=');
        out.push_back(i + 2 < n ? kAlphabet[v & 63] : '=');
    }
    return out;
}

Tensor tensor_from_json(const nlohmann::json& j, const std::string& what) {
    PK_CHECK(j.is_object() && j.contains("dtype") && j.contains("shape") && j.contains("data_b64"), kFormat,
             "{}: expected {{dtype, shape, data_b64}}", what);
    try {
        const DType dtype = dtype_from_name(j["dtype"].get<std::string>(), what);
        const Shape shape = j["shape"].get<Shape>();
        const std::string bytes = base64_decode(j["data_b64"].get<std::string>());
        Tensor t = Tensor::empty(shape, dtype);
        PK_CHECK(bytes.size() == t.nbytes(), kFormat, "{}: {} bytes of data for shape {} {}", what, bytes.size(),
                 shape_str(shape), dtype_name(dtype));
        if (!bytes.empty()) std::memcpy(t.raw(), bytes.data(), bytes.size());
        return t;
    } catch (const nlohmann::json::exception& e) {
        PK_THROW(kFormat, "{}: {}", what, e.what());
    }
}

nlohmann::json tensor_to_json(const Tensor& t) {
    Tensor c = t.to(Device{});
    return {{"dtype", dtype_name(c.dtype())}, {"shape", c.shape()}, {"data_b64", base64_encode(c.raw(), c.nbytes())}};
}

}  // namespace parakeet
