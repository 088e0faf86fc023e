// The .nemo reader (src/io): tiny-a against torch.load's view of it, tar/zip/pickle variants, and
// hostile or broken archives, which must throw parakeet::Error and never crash.
#include <archive.h>
#include <archive_entry.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "core/error.h"
#include "core/tensor.h"
#include "io/mapped_file.h"
#include "io/nemo_archive.h"
#include "io/pickle.h"
#include "io/tar_reader.h"
#include "io/zip_reader.h"

namespace parakeet {
namespace {

namespace fs = std::filesystem;
using namespace std::string_literals;

const std::string kDataDir = PARAKEET_TEST_DATA_DIR;
const std::string kTinyNemo = kDataDir + "/tiny-a/model/tiny-a.nemo";

using Members = std::vector<std::pair<std::string, std::string>>;

std::string read_bytes(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

void write_bytes(const std::string& path, std::string_view bytes) {
    std::ofstream out(path, std::ios::binary);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::vector<uint8_t> to_vec(std::string_view s) { return {s.begin(), s.end()}; }

// A fresh directory under the test temp dir, removed at the end of the test.
class TempDir {
public:
    TempDir() {
        std::string pattern = fs::path(testing::TempDir()) / "nemo_reader_XXXXXX";
        path_ = mkdtemp(pattern.data()) ? pattern : "";
        EXPECT_FALSE(path_.empty());
    }
    ~TempDir() { fs::remove_all(path_); }
    std::string file(const std::string& name) const { return path_ + "/" + name; }
    const std::string& path() const { return path_; }

private:
    std::string path_;
};

// Runs `fn`, which must throw parakeet::Error with `code` and a message containing `part`.
void expect_error(const std::function<void()>& fn, ErrorCode code, const std::string& part) {
    try {
        fn();
        ADD_FAILURE() << "no exception; expected one containing: " << part;
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), code) << e.what();
        EXPECT_NE(std::string(e.what()).find(part), std::string::npos)
            << "message: " << e.what() << "\nexpected to contain: " << part;
        EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos)
            << "multi-line: " << e.what();
    }
}

// ---- Builders for synthetic archives

la_ssize_t append_to_string(archive*, void* client, const void* buf, size_t n) {
    static_cast<std::string*>(client)->append(static_cast<const char*>(buf), n);
    return static_cast<la_ssize_t>(n);
}

struct TarOptions {
    int format = ARCHIVE_FORMAT_TAR_PAX_RESTRICTED;
    bool gzip = false;
    int64_t uid = 0;  // above 2097151 forces a PAX 'x' header (PAX) or base-256 fields (GNU)
};

// A tar of `members`; a name ending in '/' is a directory.
std::string make_tar(const Members& members, TarOptions opt = {}) {
    std::string out;
    archive* a = archive_write_new();
    archive_write_set_format(a, opt.format);
    if (opt.gzip) archive_write_add_filter_gzip(a);
    archive_write_open(a, &out, nullptr, append_to_string, nullptr);
    for (const auto& [name, data] : members) {
        archive_entry* e = archive_entry_new();
        archive_entry_set_pathname(e, name.c_str());
        bool dir = !name.empty() && name.back() == '/';
        archive_entry_set_filetype(e, dir ? AE_IFDIR : AE_IFREG);
        archive_entry_set_perm(e, dir ? 0755 : 0644);
        archive_entry_set_size(e, dir ? 0 : static_cast<la_int64_t>(data.size()));
        archive_entry_set_uid(e, opt.uid);
        EXPECT_EQ(archive_write_header(a, e), ARCHIVE_OK) << archive_error_string(a);
        if (!dir) archive_write_data(a, data.data(), data.size());
        archive_entry_free(e);
    }
    archive_write_close(a);
    archive_write_free(a);
    return out;
}

// gzip of `bytes` (one member, as `gzip` would write it).
std::string gzip(const std::string& bytes) {
    std::string out;
    archive* a = archive_write_new();
    archive_write_set_format_raw(a);
    archive_write_add_filter_gzip(a);
    archive_write_open(a, &out, nullptr, append_to_string, nullptr);
    archive_entry* e = archive_entry_new();
    archive_entry_set_pathname(e, "x");
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_size(e, static_cast<la_int64_t>(bytes.size()));
    archive_write_header(a, e);
    archive_write_data(a, bytes.data(), bytes.size());
    archive_entry_free(e);
    archive_write_close(a);
    archive_write_free(a);
    return out;
}

void put16(std::string* s, uint32_t v) {
    for (int i = 0; i < 2; ++i) s->push_back(static_cast<char>(v >> (8 * i)));
}
void put32(std::string* s, uint64_t v) {
    for (int i = 0; i < 4; ++i) s->push_back(static_cast<char>(v >> (8 * i)));
}
void put64(std::string* s, uint64_t v) {
    for (int i = 0; i < 8; ++i) s->push_back(static_cast<char>(v >> (8 * i)));
}

struct ZipOptions {
    bool zip64 = false;   // ZIP64 extra fields and end records, classic fields saturated
    uint16_t method = 0;  // compression method written (the data is stored either way)
};

// A zip whose entries' data start on 64-byte boundaries, like torch's writer.
std::string make_zip(const Members& entries, ZipOptions opt = {}) {
    std::string out, central;
    for (const auto& [name, data] : entries) {
        uint64_t local = out.size();
        size_t base = out.size() + 30 + name.size() + (opt.zip64 ? 20 : 0);
        size_t pad = (64 - (base + 4) % 64) % 64 + 4;
        put32(&out, 0x04034b50);
        put16(&out, 45);
        put16(&out, 0);
        put16(&out, opt.method);
        put32(&out, 0);
        put32(&out, 0);
        put32(&out, opt.zip64 ? 0xffffffffu : data.size());
        put32(&out, opt.zip64 ? 0xffffffffu : data.size());
        put16(&out, static_cast<uint32_t>(name.size()));
        put16(&out, static_cast<uint32_t>(pad + (opt.zip64 ? 20 : 0)));
        out += name;
        if (opt.zip64) {
            put16(&out, 1);
            put16(&out, 16);
            put64(&out, data.size());
            put64(&out, data.size());
        }
        put16(&out, 0x4246);
        put16(&out, static_cast<uint32_t>(pad - 4));
        out.append(pad - 4, 'Z');
        EXPECT_EQ(out.size() % 64, 0u);
        out += data;

        put32(&central, 0x02014b50);
        put16(&central, 45);
        put16(&central, 45);
        put16(&central, 0);
        put16(&central, opt.method);
        put32(&central, 0);
        put32(&central, 0);
        put32(&central, opt.zip64 ? 0xffffffffu : data.size());
        put32(&central, opt.zip64 ? 0xffffffffu : data.size());
        put16(&central, static_cast<uint32_t>(name.size()));
        put16(&central, opt.zip64 ? 28 : 0);
        put16(&central, 0);
        put16(&central, 0);
        put16(&central, 0);
        put32(&central, 0);
        put32(&central, opt.zip64 ? 0xffffffffu : local);
        central += name;
        if (opt.zip64) {
            put16(&central, 1);
            put16(&central, 24);
            put64(&central, data.size());
            put64(&central, data.size());
            put64(&central, local);
        }
    }
    uint64_t cd_offset = out.size();
    out += central;
    uint64_t n = entries.size();
    if (opt.zip64) {
        uint64_t z = out.size();
        put32(&out, 0x06064b50);
        put64(&out, 44);
        put16(&out, 45);
        put16(&out, 45);
        put32(&out, 0);
        put32(&out, 0);
        put64(&out, n);
        put64(&out, n);
        put64(&out, central.size());
        put64(&out, cd_offset);
        put32(&out, 0x07064b50);
        put32(&out, 0);
        put64(&out, z);
        put32(&out, 1);
    }
    put32(&out, 0x06054b50);
    put16(&out, 0);
    put16(&out, 0);
    put16(&out, opt.zip64 ? 0xffff : static_cast<uint32_t>(n));
    put16(&out, opt.zip64 ? 0xffff : static_cast<uint32_t>(n));
    put32(&out, opt.zip64 ? 0xffffffffu : central.size());
    put32(&out, opt.zip64 ? 0xffffffffu : cd_offset);
    put16(&out, 0);
    return out;
}

// Pickle opcodes for a protocol-2 state_dict, written the way torch.save does.
class PickleWriter {
public:
    PickleWriter() { out_ += "\x80\x02"; }
    PickleWriter& raw(std::string_view s) {
        out_ += s;
        return *this;
    }
    PickleWriter& global(std::string_view module, std::string_view name) {
        out_ += 'c';
        out_ += module;
        out_ += '\n';
        out_ += name;
        out_ += '\n';
        return *this;
    }
    PickleWriter& str(std::string_view s) {
        out_ += 'X';
        put32(&out_, s.size());
        out_ += s;
        return *this;
    }
    PickleWriter& integer(int64_t v) {
        if (v >= INT32_MIN && v <= INT32_MAX) {
            out_ += 'J';
            put32(&out_, static_cast<uint32_t>(v));
        } else {
            out_ += "\x8a\x08";
            put64(&out_, static_cast<uint64_t>(v));
        }
        return *this;
    }
    PickleWriter& ints(const std::vector<int64_t>& values) {
        out_ += '(';
        for (int64_t v : values) integer(v);
        out_ += 't';
        return *this;
    }
    const std::string& bytes() const { return out_; }

private:
    std::string out_;
};

struct FakeTensor {
    std::string name;
    std::string storage_class = "FloatStorage";
    std::string key = "0";
    int64_t storage_numel = 0;
    int64_t offset = 0;
    std::vector<int64_t> shape;
    std::vector<int64_t> strides;
};

// OrderedDict(name -> _rebuild_tensor_v2(...)) with a _metadata BUILD, then STOP.
std::string state_dict_pickle(const std::vector<FakeTensor>& tensors) {
    PickleWriter w;
    w.global("collections", "OrderedDict").raw(")R(");
    for (const FakeTensor& t : tensors) {
        w.str(t.name).global("torch._utils", "_rebuild_tensor_v2").raw("((");
        w.str("storage")
            .global("torch", t.storage_class)
            .str(t.key)
            .str("cpu")
            .integer(t.storage_numel);
        w.raw("tQ").integer(t.offset).ints(t.shape).ints(t.strides).raw("\x89");
        w.global("collections", "OrderedDict").raw(")Rt").raw("R");
    }
    w.raw("u}(").str("").raw("}").str("version").integer(1).raw("sub.");
    return w.bytes();
}

std::string floats(const std::vector<float>& v) {
    return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float));
}

// A torch-style checkpoint zip: "<prefix>/data.pkl", byteorder, version and one record per storage.
std::string make_checkpoint(const std::string& pickle, const Members& storages, ZipOptions opt = {},
                            const std::string& byteorder = "little") {
    Members entries{{"archive/data.pkl", pickle}, {"archive/byteorder", byteorder}};
    for (const auto& [key, data] : storages) entries.emplace_back("archive/data/" + key, data);
    entries.emplace_back("archive/version", "3\n");
    return make_zip(entries, opt);
}

std::string make_nemo(const std::string& checkpoint, TarOptions opt = {}) {
    return make_tar({{"./", ""},
                     {"./model_config.yaml", "sample_rate: 16000\n"},
                     {"./model_weights.ckpt", checkpoint}},
                    opt);
}

// The raw bytes of each regular member of a tar, read through read_tar.
Members tar_members(const std::string& tar) {
    TarListing listing = read_tar(reinterpret_cast<const uint8_t*>(tar.data()), tar.size(), "test",
                                  [](const TarMember&) { return true; });
    Members out;
    for (TarMember& m : listing.members) out.emplace_back(m.name, std::move(m.contents));
    return out;
}

double value_at(const Tensor& t, int64_t i) {
    switch (t.dtype()) {
        case DType::kF32: return t.data<float>()[i];
        case DType::kF64: return t.data<double>()[i];
        case DType::kI64: return static_cast<double>(t.data<int64_t>()[i]);
        case DType::kI32: return t.data<int32_t>()[i];
        case DType::kI16: return t.data<int16_t>()[i];
        case DType::kI8: return t.data<int8_t>()[i];
        case DType::kU8: return t.data<uint8_t>()[i];
        case DType::kBool: return t.data<uint8_t>()[i];
        case DType::kF16:
        case DType::kBF16: return t.to_f32().data<float>()[i];
    }
    return NAN;
}

void expect_same_tensors(const NemoArchive& a, const NemoArchive& b) {
    ASSERT_EQ(a.tensor_names, b.tensor_names);
    for (const std::string& name : a.tensor_names) {
        const Tensor& x = a.tensors.at(name);
        const Tensor& y = b.tensors.at(name);
        ASSERT_EQ(x.dtype(), y.dtype()) << name;
        ASSERT_EQ(x.shape(), y.shape()) << name;
        EXPECT_EQ(std::memcmp(x.raw(), y.raw(), x.nbytes()), 0) << name;
    }
}

// ---- tiny-a against torch.load

TEST(NemoReader, TinyAMatchesTorchLoad) {
    NemoArchive nemo = open_nemo(kTinyNemo);
    nlohmann::json golden = nlohmann::json::parse(read_bytes(kDataDir + "/tiny-a_tensors.json"));
    const auto& expected = golden.at("tensors");

    EXPECT_TRUE(nemo.weights_mapped);
    EXPECT_EQ(nemo.path, kTinyNemo);
    ASSERT_EQ(nemo.tensor_names.size(), expected.size());
    ASSERT_EQ(nemo.tensors.size(), expected.size());
    for (size_t k = 0; k < expected.size(); ++k) {
        const auto& g = expected[k];
        const std::string name = g.at("name");
        SCOPED_TRACE(name);
        ASSERT_EQ(nemo.tensor_names[k], name);
        const Tensor& t = nemo.tensors.at(name);
        EXPECT_EQ(dtype_name(t.dtype()), g.at("dtype").get<std::string>());
        EXPECT_EQ(t.shape(), g.at("shape").get<Shape>());
        ASSERT_EQ(t.numel(), g.at("numel").get<int64_t>());
        double sum = 0, abs_sum = 0;
        for (int64_t i = 0; i < t.numel(); ++i) {
            sum += value_at(t, i);
            abs_sum += std::abs(value_at(t, i));
        }
        const double g_sum = g.at("sum"), g_abs = g.at("abs_sum");
        EXPECT_NEAR(sum, g_sum, 1e-3 * std::max(1.0, std::abs(g_sum)));
        EXPECT_NEAR(abs_sum, g_abs, 1e-3 * std::max(1.0, g_abs));
        const auto first = g.at("first").get<std::vector<double>>();
        for (size_t i = 0; i < first.size(); ++i)
            EXPECT_EQ(value_at(t, static_cast<int64_t>(i)), first[i]);
    }
}

TEST(NemoReader, TinyAConfigAndMembers) {
    NemoArchive nemo = open_nemo(kTinyNemo);
    EXPECT_NE(nemo.config_yaml.find("encoder:"), std::string::npos);
    EXPECT_EQ(nemo.members.at("model_config.yaml"), nemo.config_yaml);
    EXPECT_EQ(nemo.members.count("model_weights.ckpt"), 0u);
    EXPECT_EQ(nemo.members.at("5ce2d1e0ab69cc0cc64010e5c17cc400_tokenizer.model").size(), 241652u);
    EXPECT_EQ(nemo.members.at("9ed573399d6a5b7bcb42325086b2f275_vocab.txt").size(), 518u);
    EXPECT_EQ(nemo.members.at("3bd5e89ffe8b31d8e787e4cfbf7e4aa0_tokenizer.vocab").size(), 1059u);
    EXPECT_EQ(nemo.members.size(), 4u);
}

TEST(NemoReader, TensorsOutliveTheArchiveStruct) {
    Tensor w;
    {
        NemoArchive nemo = open_nemo(kTinyNemo);
        w = nemo.tensors.at("preprocessor.featurizer.window");
    }
    EXPECT_EQ(w.data<float>()[0], 0.0f);
    EXPECT_EQ(w.data<float>()[1], 6.198883056640625e-05f);
}

TEST(NemoReader, MemoryVariantMatchesFile) {
    NemoArchive file = open_nemo(kTinyNemo);
    NemoArchive mem = open_nemo_from_memory(to_vec(read_bytes(kTinyNemo)), "tiny");
    EXPECT_EQ(mem.path, "tiny");
    EXPECT_TRUE(mem.weights_mapped);
    expect_same_tensors(file, mem);
    EXPECT_EQ(file.members, mem.members);
}

TEST(NemoReader, GzipCompressedLoadsIdenticalTensors) {
    TempDir dir;
    std::string path = dir.file("tiny-a.nemo");
    write_bytes(path, gzip(read_bytes(kTinyNemo)));
    NemoArchive gz = open_nemo(path);
    EXPECT_FALSE(gz.weights_mapped);
    NemoArchive plain = open_nemo(kTinyNemo);
    expect_same_tensors(plain, gz);
    EXPECT_EQ(plain.members, gz.members);
    EXPECT_EQ(plain.config_yaml, gz.config_yaml);
}

// Re-packed with other tar dialects, the weights must still be found in place (offset walk past PAX
// and GNU extension headers) and give the same tensors.
TEST(NemoReader, TarDialectsMapWeightsInPlace) {
    std::string original = read_bytes(kTinyNemo);
    Members members = tar_members(original);
    for (auto& [name, data] : members) name = "./" + name;
    members.insert(members.begin(), {"./" + std::string(150, 'n') + "_long_name.txt", "long"});
    NemoArchive reference = open_nemo(kTinyNemo);

    struct Case {
        const char* label;
        TarOptions opt;
        const char* marker;  // bytes that prove the dialect's extension header is there
    };
    const Case cases[] = {
        {"pax", {ARCHIVE_FORMAT_TAR_PAX_RESTRICTED, false, int64_t{1} << 24}, "uid=16777216"},
        {"pax-interchange", {ARCHIVE_FORMAT_TAR_PAX_INTERCHANGE, false, 0}, "path="},
        {"gnu", {ARCHIVE_FORMAT_TAR_GNUTAR, false, int64_t{1} << 24}, "././@LongLink"},
        {"ustar", {ARCHIVE_FORMAT_TAR_USTAR, false, 0}, "ustar"},
    };
    for (const Case& c : cases) {
        SCOPED_TRACE(c.label);
        Members these = members;
        // ustar cannot store the long name (no '/' to split it at).
        if (std::string(c.label) == "ustar") these.erase(these.begin());
        std::string tar = make_tar(these, c.opt);
        ASSERT_NE(tar.find(c.marker), std::string::npos);
        TarListing listing = read_tar(reinterpret_cast<const uint8_t*>(tar.data()), tar.size(), "t",
                                      [](const TarMember&) { return true; });
        for (const TarMember& m : listing.members) {
            ASSERT_TRUE(m.data_offset.has_value()) << m.name;
            EXPECT_EQ(tar.compare(*m.data_offset, m.size, m.contents), 0) << m.name;
        }
        NemoArchive nemo = open_nemo_from_memory(to_vec(tar), c.label);
        EXPECT_TRUE(nemo.weights_mapped);
        expect_same_tensors(reference, nemo);
    }
}

// ---- Synthetic checkpoints: strides, offsets, shared storages

TEST(NemoReader, SharedStoragesStridesAndOffsets) {
    std::vector<float> values(12);
    for (int i = 0; i < 12; ++i) values[i] = static_cast<float>(i);
    std::vector<int64_t> longs = {7, -8, int64_t{1} << 40};
    std::string pickle = state_dict_pickle({
        {"a", "FloatStorage", "0", 12, 0, {3, 4}, {4, 1}},
        {"a_t", "FloatStorage", "0", 12, 0, {4, 3}, {1, 4}},
        {"row", "FloatStorage", "0", 12, 4, {4}, {1}},
        {"scalar", "FloatStorage", "0", 12, 11, {}, {}},
        {"bcast", "FloatStorage", "0", 12, 2, {3}, {0}},
        {"col", "FloatStorage", "0", 12, 1, {3, 1}, {4, 99}},
        {"empty", "FloatStorage", "0", 12, 12, {0, 5}, {5, 1}},
        {"idx", "LongStorage", "1", 3, 0, {3}, {1}},
    });
    std::string ckpt = make_checkpoint(
        pickle, {{"0", floats(values)},
                 {"1", std::string(reinterpret_cast<const char*>(longs.data()), 24)}});
    NemoArchive nemo = open_nemo_from_memory(to_vec(make_nemo(ckpt)), "synthetic.nemo");

    EXPECT_EQ(nemo.tensor_names, (std::vector<std::string>{"a", "a_t", "row", "scalar", "bcast",
                                                           "col", "empty", "idx"}));
    EXPECT_FALSE(nemo.weights_mapped);  // a_t and bcast are copies
    const Tensor& a = nemo.tensors.at("a");
    const Tensor& a_t = nemo.tensors.at("a_t");
    for (int i = 0; i < 3; ++i) {
        for (int j = 0; j < 4; ++j) {
            EXPECT_EQ(a.data<float>()[i * 4 + j], i * 4 + j);
            EXPECT_EQ(a_t.data<float>()[j * 3 + i], i * 4 + j);
        }
    }
    EXPECT_EQ(nemo.tensors.at("row").shape(), Shape{4});
    EXPECT_EQ(nemo.tensors.at("row").data<float>()[0], 4.0f);
    EXPECT_EQ(nemo.tensors.at("row").data<float>()[3], 7.0f);
    EXPECT_EQ(nemo.tensors.at("scalar").rank(), 0);
    EXPECT_EQ(nemo.tensors.at("scalar").data<float>()[0], 11.0f);
    for (int i = 0; i < 3; ++i) EXPECT_EQ(nemo.tensors.at("bcast").data<float>()[i], 2.0f);
    for (int i = 0; i < 3; ++i) EXPECT_EQ(nemo.tensors.at("col").data<float>()[i], 1.0f + 4 * i);
    EXPECT_EQ(nemo.tensors.at("empty").numel(), 0);
    const Tensor& idx = nemo.tensors.at("idx");
    EXPECT_EQ(idx.dtype(), DType::kI64);
    EXPECT_EQ(idx.data<int64_t>()[1], -8);
    EXPECT_EQ(idx.data<int64_t>()[2], int64_t{1} << 40);
}

TEST(NemoReader, Zip64CheckpointAndAllStorageDtypes) {
    const std::pair<const char*, DType> classes[] = {
        {"FloatStorage", DType::kF32}, {"DoubleStorage", DType::kF64},
        {"HalfStorage", DType::kF16},  {"BFloat16Storage", DType::kBF16},
        {"LongStorage", DType::kI64},  {"IntStorage", DType::kI32},
        {"ShortStorage", DType::kI16}, {"CharStorage", DType::kI8},
        {"ByteStorage", DType::kU8},   {"BoolStorage", DType::kBool},
    };
    std::vector<FakeTensor> tensors;
    Members storages;
    for (size_t k = 0; k < std::size(classes); ++k) {
        std::string key = std::to_string(k);
        tensors.push_back({"t" + key, classes[k].first, key, 2, 0, {2}, {1}});
        storages.emplace_back(key, std::string(2 * dtype_size(classes[k].second), '\1'));
    }
    std::string ckpt = make_checkpoint(state_dict_pickle(tensors), storages, {.zip64 = true});
    Checkpoint c = read_torch_checkpoint(reinterpret_cast<const uint8_t*>(ckpt.data()), ckpt.size(),
                                         nullptr, "c");
    ASSERT_EQ(c.tensor_names.size(), std::size(classes));
    EXPECT_TRUE(c.views);
    for (size_t k = 0; k < std::size(classes); ++k) {
        EXPECT_EQ(c.tensors.at("t" + std::to_string(k)).dtype(), classes[k].second);
    }
}

// ---- Broken inputs

TEST(NemoReaderErrors, MissingFile) {
    expect_error([] { open_nemo(kDataDir + "/no/such/model.nemo"); }, ErrorCode::kIo,
                 "cannot open '" + kDataDir + "/no/such/model.nemo': No such file or directory");
}

TEST(NemoReaderErrors, Directory) {
    expect_error([] { open_nemo(kDataDir); }, ErrorCode::kIo, "'" + kDataDir + "' is a directory");
}

TEST(NemoReaderErrors, EmptyFile) {
    TempDir dir;
    write_bytes(dir.file("empty.nemo"), "");
    expect_error([&] { open_nemo(dir.file("empty.nemo")); }, ErrorCode::kFormat,
                 "empty.nemo' is empty");
}

TEST(NemoReaderErrors, RandomBytes) {
    std::mt19937 rng(1234);
    std::string bytes(100000, '\0');
    for (char& c : bytes) c = static_cast<char>(rng());
    TempDir dir;
    std::string path = dir.file("random.nemo");
    write_bytes(path, bytes);
    expect_error([&] { open_nemo(path); }, ErrorCode::kFormat,
                 path + ": not a .nemo archive (neither tar nor gzip-compressed tar)");
    expect_error([] { open_nemo_from_memory(to_vec("short"), "s"); }, ErrorCode::kFormat,
                 "not a .nemo archive");
}

TEST(NemoReaderErrors, TruncatedArchive) {
    std::string bytes = read_bytes(kTinyNemo);
    TempDir dir;
    std::string path = dir.file("half.nemo");
    write_bytes(path, std::string_view(bytes).substr(0, bytes.size() / 2));
    expect_error([&] { open_nemo(path); }, ErrorCode::kFormat, "half.nemo: truncated archive");

    // Any cut before the end of the last member's data must fail cleanly.
    TarListing listing = read_tar(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), "t",
                                  [](const TarMember&) { return false; });
    uint64_t end = 0;
    for (const TarMember& m : listing.members) end = std::max(end, *m.data_offset + m.size);
    for (uint64_t cut = 1; cut < end; cut += end / 97) {
        SCOPED_TRACE(cut);
        EXPECT_THROW(open_nemo_from_memory(to_vec(std::string_view(bytes).substr(0, cut)), "cut"),
                     Error);
    }
    std::string gz = gzip(bytes);
    expect_error(
        [&] { open_nemo_from_memory(to_vec(std::string_view(gz).substr(0, gz.size() / 2)), "gz"); },
        ErrorCode::kFormat, "gz: truncated");
}

TEST(NemoReaderErrors, MissingWeights) {
    std::string tar = make_tar({{"./model_config.yaml", "a: 1\n"}, {"./x_tokenizer.model", "spm"}});
    expect_error([&] { open_nemo_from_memory(to_vec(tar), "noweights.nemo"); }, ErrorCode::kFormat,
                 "noweights.nemo: no model_weights.ckpt in the archive");
}

TEST(NemoReaderErrors, MissingConfig) {
    std::string ckpt = make_checkpoint(state_dict_pickle({}), {});
    std::string tar = make_tar({{"./model_weights.ckpt", ckpt}});
    expect_error([&] { open_nemo_from_memory(to_vec(tar), "noconfig.nemo"); }, ErrorCode::kFormat,
                 "noconfig.nemo: no model_config.yaml in the archive");
}

TEST(NemoReaderErrors, ForbiddenGlobals) {
    const std::pair<const char*, const char*> globals[] = {
        {"os", "system"},
        {"posix", "system"},
        {"nt", "system"},
        {"builtins", "eval"},
        {"__builtin__", "eval"},
        {"subprocess", "Popen"},
        {"torch.storage", "_load_from_bytes"},
        {"torch", "load"},
        {"collections", "defaultdict"},
        {"torch._utils", "_rebuild_tensor"},
    };
    for (const auto& [module, name] : globals) {
        std::string qualified = std::string(module) + "." + name;
        SCOPED_TRACE(qualified);
        // cos\nsystem\n(S'touch pwned'\ntR. in spirit: the call would come right after the global.
        std::string pickle =
            PickleWriter().global(module, name).raw("(").str("touch pwned").raw("tR.").bytes();
        std::string nemo = make_nemo(make_checkpoint(pickle, {}));
        expect_error(
            [&] { open_nemo_from_memory(to_vec(nemo), "evil.nemo"); }, ErrorCode::kFormat,
            "evil.nemo: model_weights.ckpt: pickle refers to forbidden global '" + qualified + "'");
        // Protocol 4 spelling: STACK_GLOBAL on two strings.
        std::string p4 = std::string("\x80\x04\x8c") + char(std::strlen(module)) + module + "\x8c" +
                         char(std::strlen(name)) + name + "\x93.";
        expect_error(
            [&] {
                unpickle_state_dict(reinterpret_cast<const uint8_t*>(p4.data()), p4.size(), "p4");
            },
            ErrorCode::kFormat, "p4: pickle refers to forbidden global '" + qualified + "'");
    }
}

TEST(NemoReaderErrors, StoragePastItsRecord) {
    std::string pickle = state_dict_pickle({{"w", "FloatStorage", "0", 100, 0, {100}, {1}}});
    std::string nemo = make_nemo(make_checkpoint(pickle, {{"0", floats({1, 2, 3, 4})}}));
    expect_error([&] { open_nemo_from_memory(to_vec(nemo), "past.nemo"); }, ErrorCode::kFormat,
                 "past.nemo: model_weights.ckpt: storage '0' of tensor 'w' points past the end of "
                 "its record");
}

TEST(NemoReaderErrors, TensorPastItsStorage) {
    std::string pickle = state_dict_pickle({{"w", "FloatStorage", "0", 4, 2, {2, 2}, {2, 1}}});
    std::string nemo = make_nemo(make_checkpoint(pickle, {{"0", floats({1, 2, 3, 4})}}));
    expect_error([&] { open_nemo_from_memory(to_vec(nemo), "x.nemo"); }, ErrorCode::kFormat,
                 "tensor 'w' (shape [2, 2], strides [2, 1], offset 2) reaches past the 4 elements "
                 "of storage '0'");
}

TEST(NemoReaderErrors, ShapeOverflowsInt64) {
    const int64_t big = int64_t{1} << 40;
    std::string pickle =
        state_dict_pickle({{"huge", "FloatStorage", "0", 4, 0, {big, big}, {0, 0}}});
    std::string nemo = make_nemo(make_checkpoint(pickle, {{"0", floats({1, 2, 3, 4})}}));
    expect_error([&] { open_nemo_from_memory(to_vec(nemo), "huge.nemo"); }, ErrorCode::kFormat,
                 "tensor 'huge' has shape [1099511627776, 1099511627776] whose element count "
                 "overflows int64");
}

TEST(NemoReaderErrors, BroadcastCopyIsBounded) {
    // 2^34 elements viewing one float: copying it would need 64 GiB.
    std::string pickle =
        state_dict_pickle({{"wide", "FloatStorage", "0", 1, 0, {int64_t{1} << 34}, {0}}});
    std::string nemo = make_nemo(make_checkpoint(pickle, {{"0", floats({1})}}));
    expect_error(
        [&] { open_nemo_from_memory(to_vec(nemo), "wide.nemo"); }, ErrorCode::kFormat,
        "tensor 'wide' (shape [17179869184], strides [0]) would take the copied tensors past");
}

TEST(NemoReaderErrors, CheckpointProblems) {
    std::string pickle = state_dict_pickle({{"w", "FloatStorage", "0", 1, 0, {1}, {1}}});
    Members storage{{"0", floats({1})}};
    auto load = [](const std::string& ckpt) {
        return [ckpt] { open_nemo_from_memory(to_vec(make_nemo(ckpt)), "m.nemo"); };
    };
    expect_error(
        load(make_checkpoint(pickle, storage, {.method = 8})), ErrorCode::kUnsupported,
        "m.nemo: model_weights.ckpt: zip entry 'archive/byteorder' is compressed (method 8)");
    expect_error(load(make_checkpoint(pickle, storage, {}, "big")), ErrorCode::kUnsupported,
                 "byte order 'big' is not supported");
    expect_error(load(make_checkpoint(pickle, {})), ErrorCode::kFormat,
                 "storage '0' of tensor 'w' has no record 'archive/data/0'");
    expect_error(load(make_zip({{"archive/version", "3"}})), ErrorCode::kFormat,
                 "no data.pkl record");
    expect_error(load("not a zip at all, just some text that is long enough"), ErrorCode::kFormat,
                 "m.nemo: model_weights.ckpt: not a zip archive");
    std::string zip = make_checkpoint(pickle, storage);
    zip[zip.size() - 3] = 0x7f;  // central directory offset far past the end
    expect_error(load(zip), ErrorCode::kFormat, "central directory");
}

// ---- The unpickler on its own

StateDict unpickle(const std::string& bytes) {
    return unpickle_state_dict(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), "pkl");
}

TEST(NemoPickle, ReadsTinyAStateDict) {
    std::string nemo = read_bytes(kTinyNemo);
    std::string ckpt;
    for (auto& [name, data] : tar_members(nemo)) {
        if (name == "model_weights.ckpt") ckpt = data;
    }
    ZipReader zip(reinterpret_cast<const uint8_t*>(ckpt.data()), ckpt.size(), "ckpt");
    const ZipEntry* pkl = zip.find("model_weights/data.pkl");
    ASSERT_NE(pkl, nullptr);
    std::string_view bytes = zip.read(*pkl);
    StateDict sd = unpickle(std::string(bytes));
    ASSERT_EQ(sd.tensors.size(), 83u);
    EXPECT_EQ(sd.tensors[1].name, "preprocessor.featurizer.fb");
    EXPECT_EQ(sd.tensors[1].storage_key, "1");
    EXPECT_EQ(sd.tensors[1].shape, (Shape{1, 80, 257}));
    EXPECT_EQ(sd.tensors[1].strides, (std::vector<int64_t>{20560, 257, 1}));
    EXPECT_EQ(sd.storages.at("1").numel, 20560);
    EXPECT_EQ(sd.storages.at("1").dtype, DType::kF32);

    // Every strict prefix is a truncated pickle: an Error, never a crash.
    for (size_t n = 0; n < bytes.size(); n += 13) {
        EXPECT_THROW(unpickle(std::string(bytes.substr(0, n))), Error) << n;
    }
}

TEST(NemoPickle, ProtocolFourOpcodes) {
    // FRAME, SHORT_BINUNICODE, MEMOIZE, STACK_GLOBAL, BINGET, SHORT_BINBYTES in a small state_dict.
    auto u = [](std::string_view s) {
        return "\x8c"s + static_cast<char>(s.size()) + std::string(s);
    };
    const std::string memoize = "\x94", stack_global = "\x93", tuple1 = "\x85", newfalse = "\x89";
    std::string body;
    body +=
        u("collections") + memoize + u("OrderedDict") + memoize + stack_global + memoize;  // memo 2
    body += ")R" + memoize;    // the dict
    body += u("w") + memoize;  // its key
    body += u("torch._utils") + u("_rebuild_tensor_v2") + stack_global + memoize;
    body += "((" + u("storage") + u("torch") + u("FloatStorage") + stack_global;
    body += u("0") + u("cpu") + "K\x03" + "tQ";  // storage '0', 3 floats
    body +=
        "K\x01" + ("K\x02"s + tuple1) + ("K\x01"s + tuple1);  // offset 1, size (2,), stride (1,)
    body += newfalse + "h\x02" + ")R" + "t" + "R";            // requires_grad, OrderedDict()
    body += "s";                                              // dict['w'] = tensor
    body += "C\x02"s + "ab0";                                 // SHORT_BINBYTES, POP
    body += ".";
    std::string frame = "\x80\x04\x95";
    put64(&frame, body.size());
    std::string bytes = frame + body;
    StateDict sd = unpickle(bytes);
    ASSERT_EQ(sd.tensors.size(), 1u);
    EXPECT_EQ(sd.tensors[0].name, "w");
    EXPECT_EQ(sd.tensors[0].storage_offset, 1);
    EXPECT_EQ(sd.tensors[0].shape, Shape{2});
    EXPECT_EQ(sd.storages.at("0").numel, 3);
}

TEST(NemoPickle, RejectsMalformedInput) {
    expect_error([] { unpickle(""); }, ErrorCode::kFormat,
                 "pkl: pickle ends without a STOP opcode");
    expect_error([] { unpickle("\x80\x02"); }, ErrorCode::kFormat,
                 "pickle ends without a STOP opcode");
    expect_error([] { unpickle("\x80\x02."); }, ErrorCode::kFormat, "pickle stack underflow");
    expect_error([] { unpickle("\x80\x02N."); }, ErrorCode::kFormat,
                 "pickle holds a None, not a state_dict");
    expect_error([] { unpickle("\x80\x02h\x05."); }, ErrorCode::kFormat,
                 "memo entry 5 that was never written");
    expect_error([] { unpickle("\x80\x02X\xff\xff\xff\x7f"); }, ErrorCode::kFormat,
                 "pickle is truncated");
    expect_error([] { unpickle("\x80\x02\x81"s); }, ErrorCode::kUnsupported,
                 "pickle opcode 0x81 at byte 2 is not supported");
    expect_error([] { unpickle("\x80\x02(N(t(u."); }, ErrorCode::kFormat,
                 "pickle sets 0 items on a tuple");
    expect_error([] { unpickle(std::string(5000, '(')); }, ErrorCode::kFormat,
                 "pickle nests more than 4096 MARKs");
    expect_error([] { unpickle("\x80\x02\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00\x01."s); },
                 ErrorCode::kUnsupported, "does not fit in 64 bits");
    expect_error([] { unpickle("\x80\x02}X\x01\x00\x00\x00kNs."s); }, ErrorCode::kFormat,
                 "state_dict entry 'k' is a None, not a tensor");
    expect_error([] { unpickle("\x80\x02}X\x02\x00\x00\x00k\nNs."s); }, ErrorCode::kFormat,
                 "state_dict entry 'k\\x0a' is a None");
    // A self-containing list is harmless (no recursion, no leak).
    const std::string self_list = "\x80\x02]q\x00h\x00"s + "a.";  // [], memo 0, get 0, APPEND
    expect_error([&] { unpickle(self_list); }, ErrorCode::kFormat, "pickle holds a list");
    // The same storage key with two dtypes.
    std::string two = state_dict_pickle(
        {{"a", "FloatStorage", "0", 2, 0, {2}, {1}}, {"b", "LongStorage", "0", 2, 0, {2}, {1}}});
    expect_error([&] { unpickle(two); }, ErrorCode::kFormat, "storage '0' is declared twice");
    std::string neg = state_dict_pickle({{"a", "FloatStorage", "0", 2, 0, {-2}, {1}}});
    expect_error([&] { unpickle(neg); }, ErrorCode::kFormat,
                 "tensor 'a' has a negative size or stride");
    std::string dup = state_dict_pickle(
        {{"a", "FloatStorage", "0", 2, 0, {2}, {1}}, {"a", "FloatStorage", "0", 2, 0, {2}, {1}}});
    expect_error([&] { unpickle(dup); }, ErrorCode::kFormat, "state_dict has tensor 'a' twice");
}

// Seeded random corruption of a small valid archive: every outcome is a result or a
// parakeet::Error.
TEST(NemoReaderErrors, RandomCorruptionNeverCrashes) {
    std::vector<float> values(16, 1.5f);
    std::string pickle = state_dict_pickle({{"a", "FloatStorage", "0", 16, 0, {4, 4}, {4, 1}},
                                            {"b", "FloatStorage", "0", 16, 3, {2, 3}, {1, 2}}});
    std::string nemo = make_nemo(make_checkpoint(pickle, {{"0", floats(values)}}));
    ASSERT_EQ(open_nemo_from_memory(to_vec(nemo), "ok").tensors.size(), 2u);
    const uint32_t seed = 20240611;
    std::mt19937 rng(seed);
    int errors = 0;
    for (int iter = 0; iter < 400; ++iter) {
        std::string bad = nemo;
        int flips = 1 + static_cast<int>(rng() % 4);
        for (int f = 0; f < flips; ++f) bad[rng() % bad.size()] = static_cast<char>(rng());
        try {
            open_nemo_from_memory(to_vec(bad), "bad");
        } catch (const Error&) {
            ++errors;
        } catch (const std::exception& e) {
            ADD_FAILURE() << "seed " << seed << " iteration " << iter << ": non-parakeet exception "
                          << e.what();
        }
    }
    EXPECT_GT(errors, 0);
}

}  // namespace
}  // namespace parakeet
