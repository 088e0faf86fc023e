// A/B switches read from the environment (the `PARAKEET_*` variables of docs/PERFORMANCE.md): each caller reads its
// switch once into a static.
#pragma once

#include <cstdlib>

namespace parakeet {

// True when the environment variable `name` is set and starts with '1'.
inline bool env_switch(const char* name) {
    const char* v = std::getenv(name);
    return v && *v == '1';
}

}  // namespace parakeet
