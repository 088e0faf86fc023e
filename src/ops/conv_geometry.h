// Output size of the subsampling's stride-2 3x3 convolutions, shared by the encoder, the op layer and both backends
// so that their shapes and per-item row counts cannot drift apart.
#pragma once

#include <cstdint>

namespace parakeet {

// Rows (or bins) after one 3x3/2 convolution of n with pad_lo zeros before and one after (1: symmetric, 2: NeMo's
// CausalConv2D): NeMo calc_length, floor((n + pad_lo + 1 - 3) / 2) + 1, and 0 when no window fits.
inline int64_t conv3x3_s2_size(int64_t n, int64_t pad_lo) { return n + pad_lo + 1 < 3 ? 0 : (n + pad_lo - 2) / 2 + 1; }

}  // namespace parakeet
