// Which keys a query may attend to (NeMo ConformerEncoder._create_masks), shared by every backend so that their
// masks cannot drift apart. Positions are absolute in the key sequence [cache rows; chunk rows].
#pragma once

#include <algorithm>
#include <cstdint>

#if defined(__CUDACC__)
#define PK_HOST_DEVICE __host__ __device__
#else
#define PK_HOST_DEVICE
#endif

namespace parakeet {

// [lo, hi) for query position qpos: valid keys [key_begin, key_end), then regular style (att_left/att_right
// frames, -1 = unlimited) or, when att_chunk > 0, chunked_limited style (whole chunks of att_chunk keys from
// chunk qpos / att_chunk - att_left_chunks to its own).
PK_HOST_DEVICE inline void attention_key_range(int64_t qpos, int64_t key_begin, int64_t key_end, int64_t att_left,
                                               int64_t att_right, int64_t att_chunk, int64_t att_left_chunks,
                                               int64_t& lo, int64_t& hi) {
    lo = key_begin;
    hi = key_end;
    if (att_chunk > 0) {
        const int64_t c = qpos / att_chunk;
        lo = lo > (c - att_left_chunks) * att_chunk ? lo : (c - att_left_chunks) * att_chunk;
        hi = hi < (c + 1) * att_chunk ? hi : (c + 1) * att_chunk;
    } else {
        if (att_left >= 0 && qpos - att_left > lo) lo = qpos - att_left;
        if (att_right >= 0 && qpos + att_right + 1 < hi) hi = qpos + att_right + 1;
    }
}

}  // namespace parakeet
