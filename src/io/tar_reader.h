// Tar archives (.nemo containers) read with libarchive: plain or gzip-compressed; ustar, GNU and
// PAX headers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace parakeet {

// One regular-file member of a tar archive.
struct TarMember {
    std::string
        name;  // as stored, less any leading "./" ("./model_config.yaml" -> "model_config.yaml")
    uint64_t size = 0;  // bytes of data
    // Where the member's data starts in the archive bytes. Set only for an uncompressed archive,
    // once the 512-byte header chain has been walked and checked (data inside the input, first
    // bytes equal to what libarchive reads); the member can then be used in place, without a copy.
    std::optional<uint64_t> data_offset;
    bool has_contents = false;  // contents were read (the caller's `want` said so)
    std::string contents;       // the data, when has_contents
};

struct TarListing {
    bool compressed = false;         // the archive was gzip-compressed
    std::vector<TarMember> members;  // regular files only, in archive order
};

// Decides, per member, whether read_tar reads its data into TarMember::contents. It sees the
// member's name, size and data_offset (contents still empty).
using TarWantFn = std::function<bool(const TarMember&)>;

// Lists the regular files of the tar archive in bytes [data, data + size) (plain tar, or
// gzip-compressed tar) and reads the data of the members `want` selects. Directories, links and
// other entry types are skipped. Memory used grows with the data actually read, never with a size
// field alone. `context` (normally the file path) prefixes every error message. Throws
// parakeet::Error kFormat for input that is not a tar ("not a .nemo archive (neither tar nor
// gzip-compressed tar)"), for a truncated or corrupt archive, and for two regular members with the
// same name. The bytes must stay valid during the call only; the result owns copies.
TarListing read_tar(const uint8_t* data, size_t size, const std::string& context,
                    const TarWantFn& want);

}  // namespace parakeet
