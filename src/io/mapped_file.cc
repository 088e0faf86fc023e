#include "io/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/error.h"

namespace parakeet {

namespace {

// Closes a file descriptor on every exit path of MappedFile::open.
struct FdGuard {
    int fd;
    ~FdGuard() {
        if (fd >= 0) ::close(fd);
    }
};

}  // namespace

std::shared_ptr<MappedFile> MappedFile::open(const std::string& path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int err = errno;
        PK_CHECK(err != EISDIR, kIo, "'{}' is a directory, not a file", path);
        PK_THROW(kIo, "cannot open '{}': {}", path, std::strerror(err));
    }
    FdGuard guard{fd};
    struct stat st {};
    PK_CHECK(::fstat(fd, &st) == 0, kIo, "cannot stat '{}': {}", path, std::strerror(errno));
    PK_CHECK(!S_ISDIR(st.st_mode), kIo, "'{}' is a directory, not a file", path);
    PK_CHECK(S_ISREG(st.st_mode), kIo, "'{}' is not a regular file", path);
    PK_CHECK(st.st_size > 0, kFormat, "'{}' is empty", path);
    size_t size = static_cast<size_t>(st.st_size);
    void* p = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
    PK_CHECK(p != MAP_FAILED, kIo, "cannot map '{}': {}", path, std::strerror(errno));
    return std::shared_ptr<MappedFile>(new MappedFile(path, static_cast<const uint8_t*>(p), size));
}

MappedFile::MappedFile(std::string path, const uint8_t* data, size_t size)
    : path_(std::move(path)), data_(data), size_(size) {}

MappedFile::~MappedFile() {
    if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
}

std::string printable(std::string_view s, size_t max_len) {
    std::string out;
    for (size_t i = 0; i < s.size(); ++i) {
        if (out.size() >= max_len) {
            out += "...";
            break;
        }
        auto c = static_cast<unsigned char>(s[i]);
        if (c >= 0x20 && c < 0x7f && c != '\\') {
            out += static_cast<char>(c);
        } else {
            out += fmt::format("\\x{:02x}", c);
        }
    }
    return out;
}

}  // namespace parakeet
