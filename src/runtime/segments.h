// Partial and final events from the tokens a streaming decoder commits: a stable prefix plus a revision
// window, and endpointing that closes a segment after a stretch of decoded audio without tokens.
#pragma once

#include <deque>
#include <vector>

#include "decoding/greedy.h"
#include "parakeet/parakeet.hpp"
#include "runtime/model.h"

namespace parakeet {

class SegmentTracker {
public:
    // After a decoding step: `committed` tokens (never revised), `lookahead` tokens (shown, may change),
    // `frontier` the first encoder frame not yet decoded. Closes the segment as final on an endpoint
    // (cfg.endpoint_silence_ms of decoded frames after the newest token's end) or when `last`; otherwise
    // queues a partial when anything changed.
    void update(const Model& model, const RecognizerConfig& cfg, const std::vector<Token>& committed,
                std::vector<Token> lookahead, int frontier, bool last, double compute_ms, double audio_seconds,
                std::deque<Event>& events);
    int segment_id() const { return segment_id_; }

private:
    std::vector<Token> segment_, lookahead_;
    int segment_id_ = 0;
    int last_token_end_ = 0;  // encoder frame where the newest token ends
};

}  // namespace parakeet
