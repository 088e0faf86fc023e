#include "core/error.h"

#include <cstdlib>

namespace parakeet {

const char* error_code_name(ErrorCode code) {
    switch (code) {
        case ErrorCode::kInvalidArgument: return "invalid argument";
        case ErrorCode::kIo: return "i/o error";
        case ErrorCode::kFormat: return "format error";
        case ErrorCode::kUnsupported: return "unsupported";
        case ErrorCode::kInternal: return "internal error";
    }
    return "error";
}

void throw_error(ErrorCode code, const char* file, int line, const std::string& message) {
    // The message is what users see; file:line is appended only when PARAKEET_DEBUG_ERRORS is set.
    static const bool with_location = std::getenv("PARAKEET_DEBUG_ERRORS") != nullptr;
    if (with_location) throw Error(code, fmt::format("{} [{}:{}]", message, file, line));
    throw Error(code, message);
}

}  // namespace parakeet
