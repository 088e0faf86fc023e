// Read-only memory map of a whole file, plus a helper the archive readers share for error messages.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace parakeet {

// A whole regular file mapped read-only into memory. Always owned by a shared_ptr so that tensor
// views into the mapping can keep it alive (Tensor::view's `owner`). Writing through data() faults.
// The file must not be rewritten or truncated while mapped: the mapping follows the file, and
// reading a page cut off by truncation raises SIGBUS. Thread-safe: immutable after open().
class MappedFile {
public:
    // Maps `path`. Throws parakeet::Error: kIo when the file is missing, unreadable, a directory or
    // not a regular file; kFormat when it is empty. Messages name the path.
    static std::shared_ptr<MappedFile> open(const std::string& path);

    ~MappedFile();
    MappedFile(const MappedFile&) = delete;
    MappedFile& operator=(const MappedFile&) = delete;

    const uint8_t* data() const { return data_; }
    size_t size() const { return size_; }
    const std::string& path() const { return path_; }

private:
    MappedFile(std::string path, const uint8_t* data, size_t size);

    std::string path_;
    const uint8_t* data_ = nullptr;
    size_t size_ = 0;
};

// `s` made safe for a one-line error message: bytes outside printable ASCII become \xNN, and text
// past `max_len` characters is cut and marked with "...". For names that come from untrusted files.
std::string printable(std::string_view s, size_t max_len = 120);

}  // namespace parakeet
