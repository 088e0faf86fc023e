// Minimal reader for the zip container of torch.save checkpoints, over bytes already in memory.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace parakeet {

struct ZipEntry {
    std::string name;          // as stored in the central directory
    uint16_t method = 0;       // compression method; only 0 (stored) can be read
    uint64_t size = 0;         // uncompressed bytes
    uint64_t data_offset = 0;  // start of the entry's data in the span (stored entries only)
};

// Parses the end-of-central-directory record (ZIP64 too), the central directory and every local
// header of a zip held in bytes [data, data + size). Every offset and length is checked against the
// span, so hostile input throws instead of reading outside it. The bytes are not copied: they must
// outlive the reader and the spans it returns. Immutable after construction; thread-safe.
class ZipReader {
public:
    // `context` (e.g. "x.nemo: model_weights.ckpt") prefixes every error message. Throws
    // parakeet::Error kFormat for anything that is not a well-formed zip, including duplicate entry
    // names and entries whose data would lie outside the span.
    ZipReader(const uint8_t* data, size_t size, std::string context);

    // Entries in central-directory order.
    const std::vector<ZipEntry>& entries() const { return entries_; }
    // The entry with exactly this name, or nullptr.
    const ZipEntry* find(std::string_view name) const;
    // Pointer to the entry's bytes inside the span (entry.size of them). Throws kUnsupported for a
    // compressed entry (method != 0; torch never compresses).
    const uint8_t* data(const ZipEntry& entry) const;
    std::string_view read(const ZipEntry& entry) const;

private:
    const uint8_t* data_;
    size_t size_;
    std::string context_;
    std::vector<ZipEntry> entries_;
    std::map<std::string, size_t, std::less<>> by_name_;
};

}  // namespace parakeet
