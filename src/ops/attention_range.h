// Which keys a query may attend to (NeMo ConformerEncoder._create_masks), shared by every backend so that their
// masks cannot drift apart. Positions are absolute in the key sequence [cache rows; chunk rows].
#pragma once

#include <algorithm>
#include <climits>
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

// Keys and positional rows one block of query rows needs: the union [j0, j1) of the allowed keys of its first
// `valid_rows` rows (positions qpos0, qpos0 + 1, ...) and the distances [d_min, d_max] those pairs reach.
// Rows past valid_rows, or with no allowed key, get an empty range. Returns false when no pair is allowed.
// row_lo/row_hi (may be null) receive each row's range.
struct KeySpan {
    int64_t j0, j1, d_min, d_max;
};
inline bool attention_block_span(int64_t qpos0, int64_t n_rows, int64_t valid_rows, int64_t key_begin,
                                 int64_t key_end, int64_t att_left, int64_t att_right, int64_t att_chunk,
                                 int64_t att_left_chunks, int64_t* row_lo, int64_t* row_hi, KeySpan& span) {
    span = {key_end, key_begin, INT64_MAX, INT64_MIN};
    for (int64_t i = 0; i < n_rows; ++i) {
        const int64_t qpos = qpos0 + i;
        int64_t lo, hi;
        attention_key_range(qpos, key_begin, key_end, att_left, att_right, att_chunk, att_left_chunks, lo, hi);
        if (i >= valid_rows || hi <= lo) hi = lo;
        if (row_lo) row_lo[i] = lo;
        if (row_hi) row_hi[i] = hi;
        if (hi <= lo) continue;
        span.j0 = std::min(span.j0, lo);
        span.j1 = std::max(span.j1, hi);
        span.d_max = std::max(span.d_max, qpos - lo);
        span.d_min = std::min(span.d_min, qpos - (hi - 1));
    }
    return span.j1 > span.j0;
}

}  // namespace parakeet
