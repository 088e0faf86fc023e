#include "io/npy.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "core/error.h"

namespace parakeet {
namespace {

namespace fs = std::filesystem;

const std::string kGolden = std::string(PARAKEET_TEST_DATA_DIR) + "/tiny-a/golden/clip0";

std::string read_bytes(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

ErrorCode error_code_of(const std::function<void()>& fn, std::string* message = nullptr) {
    try {
        fn();
    } catch (const Error& e) {
        if (message) *message = e.what();
        return e.code();
    }
    ADD_FAILURE() << "expected an error";
    return ErrorCode::kInternal;
}

// A header-only .npy with `dict` as its header text (version 1.0), followed by `data_bytes` zeros.
std::string make_npy(const std::string& dict, size_t data_bytes) {
    std::string header = dict;
    while ((10 + header.size() + 1) % 64) header.push_back(' ');
    header.push_back('\n');
    std::string out("\x93NUMPY\x01\x00", 8);
    out.push_back(static_cast<char>(header.size() & 0xFF));
    out.push_back(static_cast<char>(header.size() >> 8));
    return out + header + std::string(data_bytes, '\0');
}

TEST(Npy, ReadsGoldenFeatures) {
    Tensor t = read_npy(kGolden + "/features.npy");
    EXPECT_EQ(t.dtype(), DType::kF32);
    EXPECT_EQ(t.shape(), (Shape{1, 80, 311}));
    // The last frame is zero (README: T = features_len + 1).
    const float* p = t.data<float>();
    for (int m = 0; m < 80; ++m) EXPECT_EQ(p[m * 311 + 310], 0.0f);
    bool any_nonzero = false;
    for (int64_t i = 0; i < t.numel(); ++i) any_nonzero |= p[i] != 0.0f;
    EXPECT_TRUE(any_nonzero);
}

TEST(Npy, ReadsGoldenInt64) {
    Tensor len = read_npy(kGolden + "/encoded_len.npy");
    EXPECT_EQ(len.dtype(), DType::kI64);
    EXPECT_EQ(len.shape(), (Shape{1}));
    EXPECT_EQ(len.data<int64_t>()[0], 39);
}

TEST(Npy, SerializeMatchesNumpyBytes) {
    // numpy.save's bytes: re-serialising what we read gives the file back exactly.
    for (const char* name :
         {"features.npy", "encoded_len.npy", "tokens.npy", "encoder_output.npy"}) {
        const std::string bytes = read_bytes(kGolden + "/" + name);
        Tensor t = parse_npy(bytes.data(), bytes.size(), name);
        EXPECT_EQ(serialize_npy(t), bytes) << name;
    }
}

TEST(Npy, RoundTripsEveryDtype) {
    const fs::path dir = fs::temp_directory_path() / fmt::format("pk_npy_{}", ::getpid());
    fs::create_directories(dir);
    for (DType dtype : {DType::kF32, DType::kF64, DType::kF16, DType::kI64, DType::kI32,
                        DType::kI16, DType::kI8, DType::kU8, DType::kBool}) {
        for (const Shape& shape : {Shape{}, Shape{0}, Shape{5}, Shape{2, 3, 4}, Shape{3, 0, 2}}) {
            Tensor t = Tensor::empty(shape, dtype);
            auto* bytes = static_cast<unsigned char*>(t.raw());
            for (size_t i = 0; i < t.nbytes(); ++i) {
                bytes[i] =
                    dtype == DType::kBool ? (i % 3 == 0) : static_cast<unsigned char>(i * 31 + 7);
            }
            const std::string path = (dir / "t.npy").string();
            write_npy(path, t);
            Tensor back = read_npy(path);
            EXPECT_EQ(back.dtype(), dtype) << dtype_name(dtype);
            EXPECT_EQ(back.shape(), shape) << dtype_name(dtype) << " " << shape_str(shape);
            ASSERT_EQ(back.nbytes(), t.nbytes());
            EXPECT_EQ(std::memcmp(back.raw(), t.raw(), t.nbytes()), 0) << dtype_name(dtype);
            // Data starts on a 64-byte boundary, as numpy writes it.
            EXPECT_EQ((fs::file_size(path) - t.nbytes()) % 64, 0u);
        }
    }
    fs::remove_all(dir);
}

TEST(Npy, ScalarAndHeaderVariants) {
    // Python 2 style header: double quotes are not used by numpy, but long suffixes and missing
    // trailing comma appear in old files.
    std::string bytes = make_npy("{'descr': '<i4', 'fortran_order': False, 'shape': (2L, 3L)}", 24);
    Tensor t = parse_npy(bytes.data(), bytes.size());
    EXPECT_EQ(t.shape(), (Shape{2, 3}));
    EXPECT_EQ(t.dtype(), DType::kI32);

    bytes = make_npy("{'shape': (), 'fortran_order': False, 'descr': '<f8', }", 8);
    t = parse_npy(bytes.data(), bytes.size());
    EXPECT_EQ(t.rank(), 0);
    EXPECT_EQ(t.numel(), 1);

    // Big-endian data is swapped.
    std::string be = make_npy("{'descr': '>i4', 'fortran_order': False, 'shape': (2,), }", 0);
    be += std::string("\x00\x00\x01\x02\xff\xff\xff\xfe", 8);
    t = parse_npy(be.data(), be.size());
    EXPECT_EQ(t.data<int32_t>()[0], 0x0102);
    EXPECT_EQ(t.data<int32_t>()[1], -2);

    // Version 2.0: 4-byte header length.
    std::string header = "{'descr': '|u1', 'fortran_order': False, 'shape': (3,), }";
    while ((12 + header.size() + 1) % 64) header.push_back(' ');
    header.push_back('\n');
    std::string v2("\x93NUMPY\x02\x00", 8);
    for (int i = 0; i < 4; ++i) v2.push_back(static_cast<char>(header.size() >> (8 * i)));
    v2 += header + "abc";
    t = parse_npy(v2.data(), v2.size());
    EXPECT_EQ(t.dtype(), DType::kU8);
    EXPECT_EQ(std::string(t.data<char>(), 3), "abc");
}

TEST(Npy, Errors) {
    std::string msg;
    EXPECT_EQ(error_code_of([] { read_npy("/nonexistent/x.npy"); }, &msg), ErrorCode::kIo);
    EXPECT_NE(msg.find("/nonexistent/x.npy"), std::string::npos);

    const std::string good = read_bytes(kGolden + "/features.npy");
    std::string bad_magic = good;
    bad_magic[1] = 'X';
    EXPECT_EQ(error_code_of([&] { parse_npy(bad_magic.data(), bad_magic.size(), "f"); }, &msg),
              ErrorCode::kFormat);
    EXPECT_NE(msg.find("bad magic"), std::string::npos);
    EXPECT_EQ(error_code_of([&] { parse_npy(good.data(), 5); }), ErrorCode::kFormat);
    EXPECT_EQ(error_code_of([&] { parse_npy(good.data(), 40); }), ErrorCode::kFormat);
    EXPECT_EQ(error_code_of([&] { parse_npy(good.data(), good.size() - 1); }, &msg),
              ErrorCode::kFormat);
    EXPECT_NE(msg.find("truncated"), std::string::npos);
    const std::string longer = good + "x";
    EXPECT_EQ(error_code_of([&] { parse_npy(longer.data(), longer.size()); }), ErrorCode::kFormat);

    auto code_for = [](const std::string& dict, size_t data) {
        const std::string bytes = make_npy(dict, data);
        return error_code_of([&] { parse_npy(bytes.data(), bytes.size()); });
    };
    EXPECT_EQ(code_for("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", 16),
              ErrorCode::kUnsupported);
    EXPECT_EQ(code_for("{'descr': '<c8', 'fortran_order': False, 'shape': (1,), }", 8),
              ErrorCode::kUnsupported);
    EXPECT_EQ(code_for("{'descr': '<u4', 'fortran_order': False, 'shape': (1,), }", 4),
              ErrorCode::kUnsupported);
    EXPECT_EQ(code_for("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }", 4),
              ErrorCode::kUnsupported);
    EXPECT_EQ(code_for("{'descr': '<f4', 'shape': (1,), }", 4), ErrorCode::kFormat);
    EXPECT_EQ(code_for("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'x': 1, }", 4),
              ErrorCode::kFormat);
    EXPECT_EQ(code_for("{'descr': '<f4', 'fortran_order': False, 'shape': (-1,), }", 4),
              ErrorCode::kFormat);
    EXPECT_EQ(
        code_for("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,), }", 4),
        ErrorCode::kFormat);
    EXPECT_EQ(
        code_for(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296, 16), }", 4),
        ErrorCode::kFormat);
    EXPECT_EQ(code_for("{'descr': '<f4', 'fortran_order': Maybe, 'shape': (1,), }", 4),
              ErrorCode::kFormat);
    EXPECT_EQ(code_for("not a dict", 0), ErrorCode::kFormat);

    Tensor bf16 = Tensor::zeros({2}, DType::kBF16);
    EXPECT_EQ(error_code_of([&] { serialize_npy(bf16); }), ErrorCode::kUnsupported);
    EXPECT_EQ(error_code_of([] { serialize_npy(Tensor()); }), ErrorCode::kInvalidArgument);
    EXPECT_EQ(error_code_of([] { write_npy("/nonexistent/dir/x.npy", Tensor::zeros({1})); }),
              ErrorCode::kIo);
}

}  // namespace
}  // namespace parakeet
