// libFuzzer entry point: arbitrary bytes as a state_dict pickle. Anything but a clean
// parakeet::Error (a crash, a sanitizer report, another exception escaping) is a bug.
#include <cstddef>
#include <cstdint>

#include "core/error.h"
#include "io/pickle.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    try {
        parakeet::StateDict state = parakeet::unpickle_state_dict(data, size, "fuzz.pkl");
        for (const parakeet::PickledTensor& t : state.tensors) {
            if (state.storages.count(t.storage_key) != 1) __builtin_trap();
        }
    } catch (const parakeet::Error&) {
    }
    return 0;
}
