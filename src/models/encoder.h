// FastConformer encoder (NeMo ConformerEncoder with dw_striding subsampling and rel-pos attention).
// NeMo: nemo/collections/asr/modules/conformer_encoder.py, parts/submodules/{subsampling,conformer_modules,
// multi_head_attention}.py.
#pragma once

#include <functional>
#include <mutex>
#include <tuple>
#include <string>
#include <vector>

#include "core/context.h"
#include "core/tensor.h"
#include "models/config.h"
#include "models/weights.h"

namespace parakeet {

// Receives named intermediate tensors (NeMo probe names: pre_encode_out, pos_emb, layer0_out, ...).
using TensorSink = std::function<void(const std::string& name, const Tensor& t)>;

// Attention context used for a forward pass (encoder frames, -1 = unlimited).
struct AttentionContext {
    int left = -1;
    int right = -1;
    bool chunked_limited = false;  // NeMo att_context_style "chunked_limited"
};

// NeMo's streaming_cfg, from ConformerEncoder.setup_streaming_params (spec 7.1). Sizes in feature frames
// unless noted; [0] applies to the first chunk, [1] to later ones.
struct StreamingConfig {
    int chunk_size[2] = {0, 0};
    int shift_size[2] = {0, 0};
    int cache_drop_size = 0;          // encoder frames of each chunk's output that are provisional
    int last_channel_cache_size = 0;  // C: rows of cache_last_channel
    int valid_out_len = 0;            // encoder frames output per chunk
    int pre_encode_cache_size[2] = {0, 0};
    int drop_extra_pre_encoded = 0;   // encoder frames dropped after subsampling (later chunks)
};

// Per-stream encoder caches, layer-first as NeMo keeps them, resident on the device that steps them.
struct EncoderCache {
    Tensor channel;                     // cache_last_channel [L, B, C, D]; valid rows right-aligned
    Tensor time;                        // cache_last_time, time-major [L, B, Kc, D] (NeMo: [L, B, D, Kc])
    std::vector<int64_t> channel_len;   // cache_last_channel_len [B]; may go negative (NeMo has no clamp)
};

// cache_last_time between NeMo's [L, B, D, Kc] and our [L, B, Kc, D] (CPU tensors).
Tensor time_cache_from_nemo(const Tensor& nemo);
Tensor time_cache_to_nemo(const Tensor& ours);

// One cache-aware step's output.
struct StreamStepOutput {
    Tensor encoded;                // [B, T_out, D]
    std::vector<int> encoded_len;  // [B]
};

struct ConformerLayerWeights {
    Tensor ff1_norm_w, ff1_norm_b, ff1_w1, ff1_b1, ff1_w2, ff1_b2;
    Tensor att_norm_w, att_norm_b, q_w, q_b, k_w, k_b, v_w, v_b, out_w, out_b, pos_w, pos_bias_u, pos_bias_v;
    Tensor conv_norm_w, conv_norm_b, pw1_w, pw1_b, dw_w, dw_b /* BatchNorm folded */, pw2_w, pw2_b;
    Tensor ff2_norm_w, ff2_norm_b, ff2_w1, ff2_b1, ff2_w2, ff2_b2;
    Tensor out_norm_w, out_norm_b;
};

// The subsampling's weights as the encoder holds them.
struct SubsamplingWeights {
    Tensor conv0_w, conv0_b;                     // [C, 1, 3, 3], [C]
    std::vector<Tensor> dw_w, dw_b, pw_w, pw_b;  // later stages: depthwise [C, 1, 3, 3], pointwise [C, C]
    Tensor out_w, out_b;                         // [D, C·F'], [D]
    Tensor out_w_cl;                             // out_w for channels-last input (column f·C + c)
};

class FastConformerEncoder {
public:
    FastConformerEncoder(const EncoderConfig& config, const WeightStore& weights);

    // Offline forward of a batch. features[b] is [F_b, n_mels] (time-major). Returns [B, T, d_model] with
    // T = max encoded length; lengths[b] receives ceil-subsampled F_b. Rows past a length are padding.
    Tensor forward(const ExecContext& ctx, const std::vector<Tensor>& features, std::vector<int>& lengths,
                   const AttentionContext& att, const TensorSink& sink = nullptr) const;

    // NeMo setup_streaming_params(chunk_size, shift_size, left_chunks) with encoder-frame arguments; -1 leaves
    // a value to the model's att_context_size (context index `context`).
    StreamingConfig streaming_config(int chunk_size = -1, int shift_size = -1, int left_chunks = -1,
                                     int context = 0) const;
    EncoderCache initial_cache(const StreamingConfig& sc, int batch, Device device = {}) const;
    // NeMo cache_aware_stream_step for a batch of feature chunks [Tc_b, n_mels] whose first frames are the
    // pre-encode cache; `length[b]` valid frames. Updates `cache` in place (channel rows may shrink when a
    // configuration drops more than a chunk produces, exactly as NeMo's slicing does).
    StreamStepOutput stream_step(const ExecContext& ctx, const StreamingConfig& sc, const std::vector<Tensor>& chunks,
                                 const std::vector<int>& length, EncoderCache& cache, int drop_extra_pre_encoded,
                                 bool keep_all_outputs, int context = 0) const;

    // Subsampling of one item: [F, n_mels] -> [ceil(F / factor), d_model] (with xscaling applied).
    Tensor subsample(const ExecContext& ctx, const Tensor& features) const;
    // Subsampling of a batch into x[B, T, d_model] (T = the longest item's length; rows past an item's length zero),
    // channels last with the stages fused (ops::subsample_front): what `subsample` gives each item, in a fixed
    // number of launches per group of items. Needs two or more stages (subsampling factor 4 or more).
    void subsample_batch(const ExecContext& ctx, const std::vector<Tensor>& features, Tensor& x) const;

    // The model's trained attention context number `context` (att_context_size[context] and its style).
    AttentionContext attention_context(int context) const;
    // Encoder length for F feature frames.
    int encoded_length(int n_frames) const;
    // Output size of one stride-2 subsampling stage for n input rows/bins.
    int64_t stage_size(int64_t n) const;
    const EncoderConfig& config() const { return config_; }
    int n_subsampling_stages() const { return n_stages_; }
    // Weights for code that runs the layers its own way (src/runtime/stream_batch.cc); BatchNorm is folded
    // into dw_w/dw_b.
    SubsamplingWeights subsampling_weights() const {
        return {conv0_w_, conv0_b_, dw_w_, dw_b_, pw_w_, pw_b_, out_w_, out_b_, out_w_cl_};
    }
    const std::vector<ConformerLayerWeights>& layer_weights() const { return layers_; }

private:
    // Caches of one layer for a streaming step (time-major copies of NeMo's tensors).
    struct LayerCache {
        Tensor channel;                 // [B, C, D] in
        Tensor time;                    // [B, Kc, D] in
        std::vector<int> key_begin;     // [B] first valid key: C - cache_len
        int keep = 0;                   // chunk rows committed to the channel cache (T' - cache_drop_size)
        int cache_drop = 0;
        Tensor next_channel;            // [B, C', D] out
        Tensor next_time;               // [B, Kc, D] out
    };
    // One layer on x. The norm feeding its first feed-forward, LN_ff1(x), comes from `ff1_norm` when defined (the
    // layer before computed it); with `next` set, the output norm also computes the next layer's LN_ff1 into
    // `next_ff1_norm` (one pass on CUDA).
    void layer_forward(const ExecContext& ctx, const ConformerLayerWeights& w, Tensor& x, const Tensor& pos,
                       int64_t pos_first, const std::vector<int>& lengths, const AttentionContext& att,
                       LayerCache* cache, const Tensor& ff1_norm = Tensor(),
                       const ConformerLayerWeights* next = nullptr, Tensor* next_ff1_norm = nullptr) const;

    // Positional rows pe(first), pe(first - 1), ... (count rows) on a device, built once per (first, count, device).
    Tensor position_rows(int64_t first, int64_t count, Device device) const;
    // The 2n - 1 rows for n keys of a streaming step.
    Tensor stream_positions(int64_t n, Device device) const;

    EncoderConfig config_;
    int n_stages_;
    mutable std::mutex pos_mu_;
    mutable std::vector<std::tuple<int64_t, int64_t, Device, Tensor>> pos_cache_;
    Tensor conv0_w_, conv0_b_;
    std::vector<Tensor> dw_w_, dw_b_, pw_w_, pw_b_;  // per later stage; pw as [C, C]
    Tensor out_w_, out_b_;
    Tensor out_w_cl_;  // out_w_ with its inputs in channels-last order (f·C + c) for subsample_batch
    std::vector<ConformerLayerWeights> layers_;
};

}  // namespace parakeet
