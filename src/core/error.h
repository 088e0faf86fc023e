// Error handling: every fallible path in src/ throws parakeet::Error; the CLI and the C ABI catch it.
// Never abort() or exit() inside the library (a bad model or client must not kill a server).
#pragma once

#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace parakeet {

enum class ErrorCode {
    kInvalidArgument,  // bad option, bad CLI value, bad shape passed by a caller
    kIo,               // missing/unreadable file, short read
    kFormat,           // corrupt or hostile archive, pickle, audio or config
    kUnsupported,      // a valid model or input this engine does not handle
    kInternal,         // a broken invariant inside the engine
};

const char* error_code_name(ErrorCode code);

class Error : public std::runtime_error {
public:
    Error(ErrorCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
    ErrorCode code() const { return code_; }

private:
    ErrorCode code_;
};

[[noreturn]] void throw_error(ErrorCode code, const char* file, int line, const std::string& message);

}  // namespace parakeet

// PK_THROW(code, fmt, args...): throw with a formatted one-line message.
#define PK_THROW(code, ...) \
    ::parakeet::throw_error(::parakeet::ErrorCode::code, __FILE__, __LINE__, fmt::format(__VA_ARGS__))

// PK_CHECK(cond, code, fmt, args...): throw when cond is false.
#define PK_CHECK(cond, code, ...)          \
    do {                                   \
        if (!(cond)) PK_THROW(code, __VA_ARGS__); \
    } while (0)

#ifdef NDEBUG
#define PK_DCHECK(cond) \
    do {                \
    } while (0)
#else
#define PK_DCHECK(cond) PK_CHECK(cond, kInternal, "internal check failed: {}", #cond)
#endif
