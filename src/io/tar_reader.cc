#include "io/tar_reader.h"

#include <archive.h>
#include <archive_entry.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <set>

#include "core/error.h"
#include "io/mapped_file.h"

namespace parakeet {

namespace {

constexpr size_t kBlock = 512;
// First bytes of a member that read_tar compares between libarchive's stream and the computed
// offset.
constexpr size_t kVerifyBytes = 4096;
// Deflate cannot expand data by more than about 1032:1; a size field claiming more is not believed
// when reserving memory.
constexpr uint64_t kMaxInflateRatio = 1032;

struct ArchiveFree {
    void operator()(archive* a) const { archive_read_free(a); }
};

std::string archive_message(archive* a) {
    const char* s = archive_error_string(a);
    return printable(s ? s : "unknown libarchive error");
}

// A tar numeric field: octal text (space/NUL padded) or GNU base-256 (high bit of the first byte
// set).
bool parse_tar_number(const uint8_t* field, size_t len, uint64_t* out) {
    uint64_t v = 0;
    if (field[0] & 0x80) {
        if (field[0] != 0x80) return false;  // negative or too large
        for (size_t i = 1; i < len; ++i) {
            if (v >> 56) return false;
            v = (v << 8) | field[i];
        }
        *out = v;
        return true;
    }
    size_t i = 0;
    while (i < len && (field[i] == ' ' || field[i] == '0')) ++i;
    for (; i < len && field[i] >= '0' && field[i] <= '7'; ++i) {
        if (v >> 60) return false;
        v = v * 8 + (field[i] - '0');
    }
    for (; i < len; ++i) {
        if (field[i] != ' ' && field[i] != '\0') return false;
    }
    *out = v;
    return true;
}

bool header_checksum_ok(const uint8_t* h) {
    uint64_t stored = 0;
    if (!parse_tar_number(h + 148, 8, &stored)) return false;
    int64_t unsigned_sum = 0, signed_sum = 0;
    for (size_t i = 0; i < kBlock; ++i) {
        bool in_field = i >= 148 && i < 156;
        unsigned_sum += in_field ? ' ' : h[i];
        signed_sum += in_field ? ' ' : static_cast<int8_t>(h[i]);
    }
    return static_cast<int64_t>(stored) == unsigned_sum ||
           static_cast<int64_t>(stored) == signed_sum;
}

// Walks the 512-byte headers that start at `pos` (libarchive's header position, which is the first
// extension header when there are any) to the member's own header; returns where its data starts,
// or nothing when the chain does not look like one plain regular-file member.
std::optional<uint64_t> walk_to_data(const uint8_t* data, size_t size, uint64_t pos,
                                     uint64_t member_size) {
    bool size_overridden = false;
    for (int hops = 0; hops < 64; ++hops) {
        if (pos > size || size - pos < kBlock) return std::nullopt;
        const uint8_t* h = data + pos;
        if (!header_checksum_ok(h)) return std::nullopt;
        uint64_t field_size = 0;
        if (!parse_tar_number(h + 124, 12, &field_size)) return std::nullopt;
        char type = static_cast<char>(h[156]);
        if (type == 'x' || type == 'g' || type == 'L' || type == 'K') {
            size_overridden |= type == 'x';
            if (field_size > size) return std::nullopt;
            uint64_t padded = (field_size + kBlock - 1) / kBlock * kBlock;
            if (padded > size - pos - kBlock) return std::nullopt;
            pos += kBlock + padded;
            continue;
        }
        if (type != '0' && type != '\0' && type != '7') return std::nullopt;
        if (!size_overridden && field_size != member_size) return std::nullopt;
        return pos + kBlock;
    }
    return std::nullopt;
}

// Appends the rest of the current member's data to `out`; `limit` bounds the up-front reservation.
void read_rest(archive* a, const std::string& context, const std::string& name, uint64_t size,
               uint64_t limit, std::string* out) {
    uint64_t reserve = std::min(size, limit);
    if (reserve > out->size()) out->reserve(reserve);
    char buf[64 * 1024];
    while (true) {
        la_ssize_t n = archive_read_data(a, buf, sizeof buf);
        PK_CHECK(n >= 0, kFormat, "{}: truncated or corrupt archive while reading '{}': {}",
                 context, printable(name), archive_message(a));
        if (n == 0) break;
        out->append(buf, static_cast<size_t>(n));
    }
    PK_CHECK(out->size() == size, kFormat,
             "{}: truncated archive: member '{}' has {} of its {} bytes", context, printable(name),
             out->size(), size);
}

// Reads up to `n` bytes of the current member into `out` (fewer only at the member's end).
void read_prefix(archive* a, const std::string& context, const std::string& name, size_t n,
                 std::string* out) {
    out->resize(n);
    size_t got = 0;
    while (got < n) {
        la_ssize_t r = archive_read_data(a, out->data() + got, n - got);
        PK_CHECK(r >= 0, kFormat, "{}: truncated or corrupt archive while reading '{}': {}",
                 context, printable(name), archive_message(a));
        if (r == 0) break;
        got += static_cast<size_t>(r);
    }
    out->resize(got);
}

std::string strip_dot_slash(std::string name) {
    size_t i = 0;
    while (name.compare(i, 2, "./") == 0) i += 2;
    return name.substr(i);
}

}  // namespace

TarListing read_tar(const uint8_t* data, size_t size, const std::string& context,
                    const TarWantFn& want) {
    std::unique_ptr<archive, ArchiveFree> a(archive_read_new());
    PK_CHECK(a != nullptr, kInternal, "{}: cannot create a libarchive reader", context);
    archive_read_support_filter_gzip(a.get());
    archive_read_support_format_tar(a.get());
    PK_CHECK(archive_read_open_memory(a.get(), data, size) == ARCHIVE_OK, kFormat,
             "{}: not a .nemo archive (neither tar nor gzip-compressed tar): {}", context,
             archive_message(a.get()));

    bool gzip_magic = size >= 2 && data[0] == 0x1f && data[1] == 0x8b;
    bool ustar_magic = size >= 262 && std::memcmp(data + 257, "ustar", 5) == 0;
    TarListing listing;
    std::set<std::string> seen;
    bool first = true;
    while (true) {
        archive_entry* entry = nullptr;
        int rc = archive_read_next_header(a.get(), &entry);
        if (rc == ARCHIVE_EOF) break;
        if (rc != ARCHIVE_OK && rc != ARCHIVE_WARN) {
            PK_CHECK(!first || gzip_magic || ustar_magic, kFormat,
                     "{}: not a .nemo archive (neither tar nor gzip-compressed tar)", context);
            PK_THROW(kFormat, "{}: truncated or corrupt archive: {}", context,
                     archive_message(a.get()));
        }
        if (first) listing.compressed = archive_filter_code(a.get(), 0) != ARCHIVE_FILTER_NONE;
        first = false;
        if (archive_entry_filetype(entry) != AE_IFREG || archive_entry_hardlink(entry) != nullptr)
            continue;

        const char* raw_name = archive_entry_pathname(entry);
        if (!raw_name) raw_name = archive_entry_pathname_utf8(entry);
        PK_CHECK(raw_name != nullptr, kFormat, "{}: archive member with an unreadable name",
                 context);
        TarMember member;
        member.name = strip_dot_slash(raw_name);
        PK_CHECK(archive_entry_size_is_set(entry) && archive_entry_size(entry) >= 0, kFormat,
                 "{}: member '{}' has no valid size", context, printable(member.name));
        member.size = static_cast<uint64_t>(archive_entry_size(entry));
        PK_CHECK(seen.insert(member.name).second, kFormat, "{}: member '{}' appears twice", context,
                 printable(member.name));

        uint64_t limit = size;
        std::string prefix;
        if (!listing.compressed) {
            la_int64_t header_pos = archive_read_header_position(a.get());
            std::optional<uint64_t> offset;
            if (header_pos >= 0 && archive_entry_sparse_count(entry) == 0) {
                offset = walk_to_data(data, size, static_cast<uint64_t>(header_pos), member.size);
            }
            if (offset) {
                PK_CHECK(*offset <= size && member.size <= size - *offset, kFormat,
                         "{}: truncated archive: member '{}' ends at byte {} but the file has {}",
                         context, printable(member.name), *offset + member.size, size);
                read_prefix(a.get(), context, member.name,
                            static_cast<size_t>(std::min<uint64_t>(member.size, kVerifyBytes)),
                            &prefix);
                if (prefix.size() == std::min<uint64_t>(member.size, kVerifyBytes) &&
                    std::memcmp(prefix.data(), data + *offset, prefix.size()) == 0) {
                    member.data_offset = offset;
                }
            }
        } else {
            limit = size > UINT64_MAX / kMaxInflateRatio ? UINT64_MAX : size * kMaxInflateRatio;
        }
        if (want(member)) {
            member.contents = std::move(prefix);
            read_rest(a.get(), context, member.name, member.size, limit, &member.contents);
            member.has_contents = true;
        } else if (!member.data_offset) {
            PK_CHECK(archive_read_data_skip(a.get()) == ARCHIVE_OK, kFormat,
                     "{}: truncated or corrupt archive while skipping '{}': {}", context,
                     printable(member.name), archive_message(a.get()));
        }
        listing.members.push_back(std::move(member));
    }
    return listing;
}

}  // namespace parakeet
