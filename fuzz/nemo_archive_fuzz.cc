// libFuzzer entry point: arbitrary bytes as a .nemo archive (tar or gzip-compressed tar) or, when
// they start with "PK", as a bare torch.save zip checkpoint. Every tensor returned is read in full
// so that a view past the input shows up under AddressSanitizer.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/error.h"
#include "io/nemo_archive.h"

namespace {

uint8_t touch(const parakeet::Tensor& t) {
    const auto* p = static_cast<const uint8_t*>(t.raw());
    uint8_t acc = 0;
    for (size_t i = 0; i < t.nbytes(); ++i) acc ^= p[i];
    return acc;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    volatile uint8_t sink = 0;
    try {
        if (size >= 2 && data[0] == 'P' && data[1] == 'K') {
            parakeet::Checkpoint c =
                parakeet::read_torch_checkpoint(data, size, nullptr, "fuzz.ckpt");
            for (const auto& [name, t] : c.tensors) sink = sink ^ touch(t);
        } else {
            parakeet::NemoArchive a = parakeet::open_nemo_from_memory(
                std::vector<uint8_t>(data, data + size), "fuzz.nemo");
            for (const auto& [name, t] : a.tensors) sink = sink ^ touch(t);
            for (const auto& [name, bytes] : a.members)
                sink = sink ^ static_cast<uint8_t>(bytes.size());
        }
    } catch (const parakeet::Error&) {
    }
    (void)sink;
    return 0;
}
