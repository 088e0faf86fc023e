#include "io/zip_reader.h"

#include <cstring>

#include "core/error.h"
#include "io/mapped_file.h"

namespace parakeet {

namespace {

constexpr uint32_t kEocdSig = 0x06054b50;
constexpr uint32_t kZip64LocatorSig = 0x07064b50;
constexpr uint32_t kZip64EocdSig = 0x06064b50;
constexpr uint32_t kCentralSig = 0x02014b50;
constexpr uint32_t kLocalSig = 0x04034b50;
constexpr size_t kEocdSize = 22;
constexpr size_t kZip64LocatorSize = 20;
constexpr size_t kZip64EocdSize = 56;
constexpr size_t kCentralSize = 46;
constexpr size_t kLocalSize = 30;

uint16_t u16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | p[1] << 8); }
uint32_t u32(const uint8_t* p) {
    return static_cast<uint32_t>(u16(p)) | static_cast<uint32_t>(u16(p + 2)) << 16;
}
uint64_t u64(const uint8_t* p) {
    return static_cast<uint64_t>(u32(p)) | static_cast<uint64_t>(u32(p + 4)) << 32;
}

// [offset, offset + length) lies inside a span of `size` bytes.
bool fits(uint64_t offset, uint64_t length, uint64_t size) {
    return offset <= size && length <= size - offset;
}

}  // namespace

ZipReader::ZipReader(const uint8_t* data, size_t size, std::string context)
    : data_(data), size_(size), context_(std::move(context)) {
    const std::string& ctx = context_;
    PK_CHECK(size_ >= kEocdSize, kFormat, "{}: not a zip archive ({} bytes)", ctx, size_);

    // The end-of-central-directory record is the last thing in the file, followed only by its
    // comment.
    size_t eocd = SIZE_MAX;
    size_t lowest = size_ - kEocdSize > 0xffff ? size_ - kEocdSize - 0xffff : 0;
    for (size_t pos = size_ - kEocdSize + 1; pos-- > lowest;) {
        if (u32(data_ + pos) == kEocdSig && pos + kEocdSize + u16(data_ + pos + 20) <= size_) {
            eocd = pos;
            break;
        }
    }
    PK_CHECK(eocd != SIZE_MAX, kFormat,
             "{}: not a zip archive (no end-of-central-directory record)", ctx);
    const uint8_t* e = data_ + eocd;
    uint64_t n_entries = u16(e + 10);
    uint64_t cd_size = u32(e + 12);
    uint64_t cd_offset = u32(e + 16);
    PK_CHECK(u16(e + 4) == 0 && u16(e + 6) == 0 && u16(e + 8) == u16(e + 10), kUnsupported,
             "{}: multi-disk zip archives are not supported", ctx);

    if (eocd >= kZip64LocatorSize && u32(data_ + eocd - kZip64LocatorSize) == kZip64LocatorSig) {
        uint64_t z = u64(data_ + eocd - kZip64LocatorSize + 8);
        PK_CHECK(fits(z, kZip64EocdSize, size_) && u32(data_ + z) == kZip64EocdSig, kFormat,
                 "{}: corrupt zip: bad ZIP64 end-of-central-directory offset {}", ctx, z);
        const uint8_t* z64 = data_ + z;
        n_entries = u64(z64 + 32);
        cd_size = u64(z64 + 40);
        cd_offset = u64(z64 + 48);
        PK_CHECK(u64(z64 + 24) == n_entries, kUnsupported,
                 "{}: multi-disk zip archives are not supported", ctx);
    }
    PK_CHECK(
        fits(cd_offset, cd_size, size_), kFormat,
        "{}: corrupt zip: central directory [{}, +{}) lies outside the {} bytes of the archive",
        ctx, cd_offset, cd_size, size_);
    PK_CHECK(n_entries <= cd_size / kCentralSize, kFormat,
             "{}: corrupt zip: {} entries cannot fit in a central directory of {} bytes", ctx,
             n_entries, cd_size);

    const uint64_t cd_end = cd_offset + cd_size;
    uint64_t pos = cd_offset;
    for (uint64_t i = 0; i < n_entries; ++i) {
        PK_CHECK(fits(pos, kCentralSize, cd_end) && u32(data_ + pos) == kCentralSig, kFormat,
                 "{}: corrupt zip: bad central directory entry {} at offset {}", ctx, i, pos);
        const uint8_t* c = data_ + pos;
        uint16_t flags = u16(c + 8);
        ZipEntry entry;
        entry.method = u16(c + 10);
        uint64_t compressed = u32(c + 20);
        entry.size = u32(c + 24);
        uint64_t name_len = u16(c + 28), extra_len = u16(c + 30), comment_len = u16(c + 32);
        uint64_t local = u32(c + 42);
        uint64_t var_len = name_len + extra_len + comment_len;
        PK_CHECK(fits(pos + kCentralSize, var_len, cd_end), kFormat,
                 "{}: corrupt zip: central directory entry {} runs past the directory", ctx, i);
        entry.name.assign(reinterpret_cast<const char*>(c + kCentralSize), name_len);

        // ZIP64 extended information: present fields are those whose 32-bit value is saturated.
        const uint8_t* x = c + kCentralSize + name_len;
        const uint8_t* x_end = x + extra_len;
        while (x_end - x >= 4) {
            uint16_t id = u16(x), len = u16(x + 2);
            PK_CHECK(len <= x_end - x - 4, kFormat,
                     "{}: corrupt zip: bad extra field in entry '{}'", ctx, printable(entry.name));
            if (id == 0x0001) {
                const uint8_t* f = x + 4;
                const uint8_t* f_end = f + len;
                auto next = [&](uint64_t* v) {
                    PK_CHECK(f_end - f >= 8, kFormat,
                             "{}: corrupt zip: short ZIP64 field in entry '{}'", ctx,
                             printable(entry.name));
                    *v = u64(f);
                    f += 8;
                };
                if (entry.size == 0xffffffffu) next(&entry.size);
                if (compressed == 0xffffffffu) next(&compressed);
                if (local == 0xffffffffu) next(&local);
            }
            x += 4 + len;
        }
        PK_CHECK((flags & 1) == 0, kUnsupported, "{}: zip entry '{}' is encrypted", ctx,
                 printable(entry.name));
        PK_CHECK(entry.method != 0 || compressed == entry.size, kFormat,
                 "{}: corrupt zip: stored entry '{}' has compressed size {} but size {}", ctx,
                 printable(entry.name), compressed, entry.size);

        PK_CHECK(fits(local, kLocalSize, size_) && u32(data_ + local) == kLocalSig, kFormat,
                 "{}: corrupt zip: bad local header offset {} for entry '{}'", ctx, local,
                 printable(entry.name));
        const uint8_t* l = data_ + local;
        uint64_t local_name_len = u16(l + 26), local_extra_len = u16(l + 28);
        PK_CHECK(local_name_len == name_len && fits(local + kLocalSize, name_len, size_) &&
                     std::memcmp(l + kLocalSize, entry.name.data(), name_len) == 0,
                 kFormat, "{}: corrupt zip: local header of entry '{}' names a different file", ctx,
                 printable(entry.name));
        entry.data_offset = local + kLocalSize + local_name_len + local_extra_len;
        PK_CHECK(fits(entry.data_offset, compressed, size_), kFormat,
                 "{}: corrupt zip: data of entry '{}' ({} bytes at offset {}) lies outside "
                 "the {} bytes of the archive",
                 ctx, printable(entry.name), compressed, entry.data_offset, size_);

        PK_CHECK(by_name_.emplace(entry.name, entries_.size()).second, kFormat,
                 "{}: corrupt zip: entry '{}' appears twice", ctx, printable(entry.name));
        entries_.push_back(std::move(entry));
        pos += kCentralSize + var_len;
    }
}

const ZipEntry* ZipReader::find(std::string_view name) const {
    auto it = by_name_.find(name);
    return it == by_name_.end() ? nullptr : &entries_[it->second];
}

const uint8_t* ZipReader::data(const ZipEntry& entry) const {
    PK_CHECK(entry.method == 0, kUnsupported,
             "{}: zip entry '{}' is compressed (method {}); only stored entries are supported",
             context_, printable(entry.name), entry.method);
    return data_ + entry.data_offset;
}

std::string_view ZipReader::read(const ZipEntry& entry) const {
    return {reinterpret_cast<const char*>(data(entry)), static_cast<size_t>(entry.size)};
}

}  // namespace parakeet
