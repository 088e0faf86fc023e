#include "io/npy.h"

#include <cstring>
#include <fstream>
#include <iterator>
#include <optional>

#include "core/error.h"

namespace parakeet {

namespace {

constexpr char kMagic[] = "\x93NUMPY";
constexpr size_t kMagicLen = 6;

struct DescrInfo {
    DType dtype;
    bool swap;  // big-endian data
};

const char* descr_for(DType dtype) {
    switch (dtype) {
        case DType::kF32: return "<f4";
        case DType::kF64: return "<f8";
        case DType::kF16: return "<f2";
        case DType::kI64: return "<i8";
        case DType::kI32: return "<i4";
        case DType::kI16: return "<i2";
        case DType::kI8: return "|i1";
        case DType::kU8: return "|u1";
        case DType::kBool: return "|b1";
        case DType::kBF16: return nullptr;
    }
    return nullptr;
}

DescrInfo parse_descr(const std::string& descr, const std::string& name) {
    PK_CHECK(descr.size() >= 3, kFormat, "{}: bad .npy dtype '{}'", name, descr);
    const char order = descr[0];
    const std::string code = descr.substr(1);
    PK_CHECK(order == '<' || order == '>' || order == '|' || order == '=', kFormat,
             "{}: bad .npy dtype '{}'", name, descr);
    DType dtype;
    if (code == "f4")
        dtype = DType::kF32;
    else if (code == "f8")
        dtype = DType::kF64;
    else if (code == "f2")
        dtype = DType::kF16;
    else if (code == "i8")
        dtype = DType::kI64;
    else if (code == "i4")
        dtype = DType::kI32;
    else if (code == "i2")
        dtype = DType::kI16;
    else if (code == "i1")
        dtype = DType::kI8;
    else if (code == "u1")
        dtype = DType::kU8;
    else if (code == "b1")
        dtype = DType::kBool;
    else
        PK_THROW(kUnsupported, "{}: unsupported .npy dtype '{}'", name, descr);
    return {dtype, order == '>' && dtype_size(dtype) > 1};
}

// Parser for the Python dict literal numpy writes: {'descr': '<f4', 'fortran_order': False,
// 'shape': (1, 80, 311), }
class HeaderParser {
public:
    HeaderParser(const std::string& text, const std::string& name) : s_(text), name_(name) {}

    void parse(std::string* descr, bool* fortran_order, Shape* shape) {
        bool have_descr = false, have_order = false, have_shape = false;
        expect('{');
        for (;;) {
            skip_space();
            if (peek() == '}') break;
            std::string key = string_literal();
            expect(':');
            skip_space();
            if (key == "descr") {
                PK_CHECK(peek() == '\'' || peek() == '"', kUnsupported,
                         "{}: structured .npy dtypes are not supported", name_);
                *descr = string_literal();
                have_descr = true;
            } else if (key == "fortran_order") {
                *fortran_order = boolean();
                have_order = true;
            } else if (key == "shape") {
                *shape = tuple();
                have_shape = true;
            } else {
                fail(fmt::format("unexpected key '{}'", key));
            }
            skip_space();
            if (peek() == ',') {
                ++pos_;
                continue;
            }
            skip_space();
            if (peek() != '}') fail("expected ',' or '}'");
        }
        ++pos_;
        skip_space();
        if (pos_ != s_.size()) fail("trailing characters after the header dict");
        if (!have_descr || !have_order || !have_shape) {
            fail("header lacks 'descr', 'fortran_order' or 'shape'");
        }
    }

private:
    [[noreturn]] void fail(const std::string& what) const {
        PK_THROW(kFormat, "{}: bad .npy header ({} at offset {})", name_, what, pos_);
    }
    char peek() const { return pos_ < s_.size() ? s_[pos_] : '\0'; }
    void skip_space() {
        while (pos_ < s_.size() &&
               (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r')) {
            ++pos_;
        }
    }
    void expect(char c) {
        skip_space();
        if (peek() != c) fail(fmt::format("expected '{}'", c));
        ++pos_;
    }
    std::string string_literal() {
        skip_space();
        const char quote = peek();
        if (quote != '\'' && quote != '"') fail("expected a string");
        ++pos_;
        size_t end = s_.find(quote, pos_);
        if (end == std::string::npos) fail("unterminated string");
        std::string out = s_.substr(pos_, end - pos_);
        pos_ = end + 1;
        return out;
    }
    bool boolean() {
        if (s_.compare(pos_, 4, "True") == 0) {
            pos_ += 4;
            return true;
        }
        if (s_.compare(pos_, 5, "False") == 0) {
            pos_ += 5;
            return false;
        }
        fail("expected True or False");
    }
    Shape tuple() {
        expect('(');
        Shape shape;
        for (;;) {
            skip_space();
            if (peek() == ')') break;
            if (peek() < '0' || peek() > '9') fail("expected a dimension");
            int64_t v = 0;
            while (peek() >= '0' && peek() <= '9') {
                if (__builtin_mul_overflow(v, 10, &v) ||
                    __builtin_add_overflow(v, peek() - '0', &v)) {
                    fail("dimension too large");
                }
                ++pos_;
            }
            if (peek() == 'L') ++pos_;  // Python 2 long suffix
            shape.push_back(v);
            skip_space();
            if (peek() == ',') {
                ++pos_;
            } else if (peek() != ')') {
                fail("expected ',' or ')' in shape");
            }
        }
        ++pos_;
        return shape;
    }

    const std::string& s_;
    const std::string& name_;
    size_t pos_ = 0;
};

uint32_t read_le(const unsigned char* p, size_t n) {
    uint32_t v = 0;
    for (size_t i = 0; i < n; ++i) v |= uint32_t{p[i]} << (8 * i);
    return v;
}

std::string shape_literal(const Shape& shape) {
    if (shape.size() == 1) return fmt::format("({},)", shape[0]);
    std::string out = "(";
    for (size_t i = 0; i < shape.size(); ++i) out += (i ? ", " : "") + std::to_string(shape[i]);
    return out + ")";
}

}  // namespace

Tensor parse_npy(const void* data, size_t size, const std::string& name) {
    const auto* bytes = static_cast<const unsigned char*>(data);
    PK_CHECK(size >= kMagicLen + 2 && std::memcmp(bytes, kMagic, kMagicLen) == 0, kFormat,
             "{}: not a .npy file (bad magic)", name);
    const int major = bytes[6];
    const int minor = bytes[7];
    PK_CHECK(major >= 1 && major <= 3 && minor == 0, kUnsupported,
             "{}: unsupported .npy format version {}.{}", name, major, minor);
    const size_t len_bytes = major == 1 ? 2 : 4;
    const size_t prefix = kMagicLen + 2 + len_bytes;
    PK_CHECK(size >= prefix, kFormat, "{}: truncated .npy header", name);
    const size_t header_len = read_le(bytes + kMagicLen + 2, len_bytes);
    PK_CHECK(header_len <= size - prefix, kFormat,
             "{}: truncated .npy header (declares {} bytes, file has {})", name, header_len,
             size - prefix);
    const std::string header(reinterpret_cast<const char*>(bytes + prefix), header_len);

    std::string descr;
    bool fortran_order = false;
    Shape shape;
    HeaderParser(header, name).parse(&descr, &fortran_order, &shape);
    PK_CHECK(!fortran_order, kUnsupported, "{}: Fortran-order .npy arrays are not supported", name);
    const DescrInfo info = parse_descr(descr, name);

    const int64_t numel = shape_numel(shape);
    size_t nbytes = 0;
    PK_CHECK(!__builtin_mul_overflow(static_cast<size_t>(numel), dtype_size(info.dtype), &nbytes),
             kFormat, "{}: .npy shape {} is too large", name, shape_str(shape));
    const size_t available = size - prefix - header_len;
    PK_CHECK(available >= nbytes, kFormat,
             "{}: truncated .npy data ({} {} needs {} bytes, file has {})", name, descr,
             shape_str(shape), nbytes, available);
    PK_CHECK(available == nbytes, kFormat, "{}: .npy file has {} unexpected trailing bytes", name,
             available - nbytes);

    Tensor t = Tensor::empty(shape, info.dtype);
    if (nbytes) std::memcpy(t.raw(), bytes + prefix + header_len, nbytes);
    if (info.swap) {
        const size_t width = dtype_size(info.dtype);
        auto* p = static_cast<unsigned char*>(t.raw());
        for (size_t i = 0; i < nbytes; i += width) {
            for (size_t a = 0, b = width - 1; a < b; ++a, --b) std::swap(p[i + a], p[i + b]);
        }
    }
    return t;
}

Tensor read_npy(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    PK_CHECK(in.is_open(), kIo, "cannot open .npy file '{}': {}", path, std::strerror(errno));
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    PK_CHECK(!in.bad(), kIo, "error reading .npy file '{}'", path);
    return parse_npy(bytes.data(), bytes.size(), "'" + path + "'");
}

std::string serialize_npy(const Tensor& tensor) {
    PK_CHECK(tensor.defined(), kInvalidArgument, "cannot write an undefined tensor as .npy");
    PK_CHECK(tensor.device().type == DeviceType::kCPU, kInvalidArgument,
             "cannot write a {} tensor as .npy (copy it to the CPU first)", tensor.device().str());
    const char* descr = descr_for(tensor.dtype());
    PK_CHECK(descr != nullptr, kUnsupported, ".npy has no {} dtype", dtype_name(tensor.dtype()));

    // numpy.lib.format._write_array_header: room for the first axis to grow to 21 digits, then
    // space padding so that the data starts at a multiple of 64 bytes.
    const Shape& shape = tensor.shape();
    std::string header = fmt::format("{{'descr': '{}', 'fortran_order': False, 'shape': {}, }}",
                                     descr, shape_literal(shape));
    if (!shape.empty()) header.append(21 - std::to_string(shape[0]).size(), ' ');
    int major = 1;
    size_t prefix = kMagicLen + 2 + 2;
    size_t pad = 64 - (prefix + header.size() + 1) % 64;
    if (header.size() + pad + 1 > 65535) {
        major = 2;
        prefix = kMagicLen + 2 + 4;
        pad = 64 - (prefix + header.size() + 1) % 64;
    }
    header.append(pad, ' ');
    header.push_back('\n');

    std::string out(kMagic, kMagicLen);
    out.push_back(static_cast<char>(major));
    out.push_back('\0');
    const size_t len = header.size();
    for (size_t i = 0; i < (major == 1 ? 2u : 4u); ++i)
        out.push_back(static_cast<char>(len >> (8 * i)));
    out += header;
    out.append(static_cast<const char*>(tensor.raw()), tensor.nbytes());
    return out;
}

void write_npy(const std::string& path, const Tensor& tensor) {
    const std::string bytes = serialize_npy(tensor);
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    PK_CHECK(out.is_open(), kIo, "cannot create .npy file '{}': {}", path, std::strerror(errno));
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    out.close();
    PK_CHECK(!out.fail(), kIo, "error writing .npy file '{}'", path);
}

}  // namespace parakeet
