#include "backends/cuda/greedy_decode.h"

#include <algorithm>
#include <cstring>

#include "backends/cuda/context_impl.h"
#include "backends/cuda/kernels.h"
#include "core/env.h"
#include "core/error.h"

namespace parakeet::cuda {

struct GreedyDecoder::DeviceWeights {
    Tensor embed, pred_w, pred_b, out_w, out_b;
    std::vector<Tensor> w_ih, w_hh, bias;
};

GreedyDecoder::GreedyDecoder(CudaContext& ctx, const ModelConfig& c, const WeightStore& ws, Precision precision)
    : weights_(std::make_unique<DeviceWeights>()) {
    options_.blank_id = c.blank_id();
    options_.durations = c.is_tdt() ? c.decoding.durations : std::vector<int>{};
    options_.max_symbols = c.decoding.max_symbols;
    hidden_ = c.decoder.pred_hidden;
    n_layers_ = c.decoder.pred_rnn_layers;
    joint_hidden_ = c.joint.joint_hidden;
    n_outputs_ = c.joint.num_classes + 1 + c.joint.num_extra_outputs;
    PK_CHECK(n_layers_ >= 1 && n_layers_ <= kernels::kGreedyMaxLayers, kUnsupported,
             "GPU decoding supports 1..{} LSTM layers, the model has {}", kernels::kGreedyMaxLayers, n_layers_);
    PK_CHECK(static_cast<int>(options_.durations.size()) <= kernels::kGreedyMaxDurations, kUnsupported,
             "GPU decoding supports at most {} TDT durations", kernels::kGreedyMaxDurations);
    PK_CHECK(n_outputs_ == options_.blank_id + 1 + static_cast<int>(options_.durations.size()), kFormat,
             "joint has {} outputs, expected {}", n_outputs_,
             options_.blank_id + 1 + static_cast<int>(options_.durations.size()));
    const std::string& act = c.joint.activation;
    activation_ = act == "relu" ? 0 : act == "tanh" ? 1 : 2;
    const Device dev{DeviceType::kCUDA, ctx.device};
    const int64_t h = hidden_, j = joint_hidden_;
    weight_type_ = precision == Precision::kF16    ? kernels::kGreedyF16
                   : precision == Precision::kBF16 ? kernels::kGreedyBF16
                                                   : kernels::kGreedyF32;
    // The matrices in the precision's weight type (device_weight converts once and caches on the context).
    auto matrix = [&](const std::string& name, std::vector<int64_t> shape) {
        return device_weight(ctx, ws.get(name, std::move(shape)), precision);
    };
    DeviceWeights& w = *weights_;
    w.embed = ws.get("decoder.prediction.embed.weight", {c.decoder.vocab_size + 1, h}).to(dev);
    for (int l = 0; l < n_layers_; ++l) {
        const std::string p = "decoder.prediction.dec_rnn.lstm.";
        w.w_ih.push_back(matrix(fmt::format("{}weight_ih_l{}", p, l), {4 * h, h}));
        w.w_hh.push_back(matrix(fmt::format("{}weight_hh_l{}", p, l), {4 * h, h}));
        Tensor bi = ws.get(fmt::format("{}bias_ih_l{}", p, l), {4 * h});
        Tensor bh = ws.get(fmt::format("{}bias_hh_l{}", p, l), {4 * h});
        Tensor b = Tensor::empty({4 * h});
        for (int64_t i = 0; i < 4 * h; ++i) b.data<float>()[i] = bi.data<float>()[i] + bh.data<float>()[i];
        w.bias.push_back(b.to(dev));
    }
    w.pred_w = matrix("joint.pred.weight", {j, h});
    w.pred_b = ws.get("joint.pred.bias", {j}).to(dev);
    w.out_w = matrix("joint.joint_net.2.weight", {n_outputs_, j});
    // The tensor-core joint reads out_w in tiles of 16 rows: a copy padded with zero rows.
    tensor_joint_ = weight_type_ != kernels::kGreedyF32 && j % 16 == 0;
    if (tensor_joint_) {
        const int64_t rows = (n_outputs_ + 15) / 16 * 16;
        Tensor padded = Tensor::zeros({rows, j}, w.out_w.dtype(), dev);
        PK_CUDA_CHECK(cudaMemcpy(padded.raw(), w.out_w.raw(), w.out_w.nbytes(), cudaMemcpyDeviceToDevice));
        w.out_w = padded;
    }
    w.out_b = ws.get("joint.joint_net.2.bias", {n_outputs_}).to(dev);
}

GreedyDecoder::~GreedyDecoder() = default;

void GreedyDecoder::decode(CudaContext& ctx, const float* fproj, int64_t max_frames, const int* lengths, int batch,
                           std::vector<DecoderState>& states, std::vector<std::vector<Token>>& tokens) const {
    PK_CHECK(static_cast<int>(states.size()) == batch && static_cast<int>(tokens.size()) == batch, kInternal,
             "GreedyDecoder::decode: {} states and {} token lists for a batch of {}", states.size(), tokens.size(),
             batch);
    if (batch == 0) return;
    const int64_t B = batch, L = n_layers_, H = hidden_, J = joint_hidden_;
    int max_t = 0;
    for (int b = 0; b < batch; ++b) {
        PK_CHECK(lengths[b] >= 0 && lengths[b] <= max_frames, kInternal, "decode: length {} of item {} outside [0, {}]",
                 lengths[b], b, max_frames);
        max_t = std::max(max_t, lengths[b]);
    }
    const int64_t max_tokens = int64_t{std::max(max_t, 1)} * options_.max_symbols + 1;

    // One device buffer holds everything that crosses to the host and back, in 32-bit words: token counts [B] |
    // lengths, t, started [3B] | the kernel's int scratch (zeroed; the error flag at 4B) | h, c [B, L·H] and
    // p [B, J] | tokens [4, B, max_tokens] (16-byte aligned regions). One upload fills all but the tokens (the zeros
    // included) and one read-back returns it all (a copy on the legacy stream waits for the kernel: the context's
    // stream is blocking), instead of a copy, allocation or memset per array.
    const int64_t n_int_scratch = static_cast<int64_t>(int_scratch(batch));
    auto align4 = [](int64_t n) { return (n + 3) / 4 * 4; };
    const int64_t off_ints = B, off_state = 4 * B, off_floats = align4(off_state + n_int_scratch);
    const int64_t off_tok = align4(off_floats + B * (2 * L * H + J)), words = off_tok + 4 * B * max_tokens;
    std::vector<int32_t> host(static_cast<size_t>(words), 0);
    int32_t* ints = host.data() + off_ints;
    float* floats = reinterpret_cast<float*>(host.data() + off_floats);
    for (int b = 0; b < batch; ++b) {
        const DecoderState& s = states[b];
        ints[b] = lengths[b];
        ints[B + b] = s.started ? s.time_jump : 0;
        ints[2 * B + b] = s.started ? 1 : 0;
        if (s.started) {
            PK_CHECK(static_cast<int64_t>(s.lstm.h.size()) == L * H && static_cast<int64_t>(s.pred_proj.size()) == J,
                     kInternal, "decode: carried state of item {} does not match the model", b);
            std::copy(s.lstm.h.begin(), s.lstm.h.end(), floats + b * L * H);
            std::copy(s.lstm.c.begin(), s.lstm.c.end(), floats + B * L * H + b * L * H);
            std::copy(s.pred_proj.begin(), s.pred_proj.end(), floats + 2 * B * L * H + b * J);
        }
    }
    const Device dev{DeviceType::kCUDA, ctx.device};
    Tensor d_io = Tensor::empty({words}, DType::kI32, dev);
    Tensor d_scratch = Tensor::empty({static_cast<int64_t>(scratch_floats(batch))}, DType::kF32, dev);
    PK_CUDA_CHECK(cudaMemcpy(d_io.raw(), host.data(), static_cast<size_t>(off_tok) * sizeof(int32_t),
                             cudaMemcpyHostToDevice));

    int* io = d_io.data<int>();
    float* df = reinterpret_cast<float*>(io + off_floats);
    DeviceBatch d{};
    d.fproj = fproj;
    d.item_stride = max_frames * J;
    d.lengths = io + off_ints;
    d.batch = batch;
    d.max_tokens = static_cast<int>(max_tokens);
    d.h = df;
    d.c = df + B * L * H;
    d.p = df + 2 * B * L * H;
    d.t = io + off_ints + B;
    d.started = io + off_ints + 2 * B;
    d.scratch = d_scratch.data<float>();
    d.int_scratch = io + off_state;
    d.tokens = io + off_tok;
    d.n_tokens = io;
    decode_device(ctx, d);

    PK_CUDA_CHECK(cudaMemcpy(host.data(), io, host.size() * sizeof(int32_t), cudaMemcpyDeviceToHost));
    PK_CHECK(host[off_state + 4 * B] == 0, kInternal, "GPU greedy decode failed (code {})", host[off_state + 4 * B]);
    for (int b = 0; b < batch; ++b) {
        DecoderState& s = states[b];
        append_device_tokens(host.data() + off_tok, host[b], b, batch, static_cast<int>(max_tokens), s.frames_decoded,
                             tokens[b]);
        s.started = true;
        s.lstm.h.assign(floats + b * L * H, floats + (b + 1) * L * H);
        s.lstm.c.assign(floats + B * L * H + b * L * H, floats + B * L * H + (b + 1) * L * H);
        s.pred_proj.assign(floats + 2 * B * L * H + b * J, floats + 2 * B * L * H + (b + 1) * J);
        s.time_jump = ints[B + b] - lengths[b];
        s.frames_decoded += lengths[b];
    }
}

void append_device_tokens(const int* tokens, int count, int item, int batch, int max_tokens, int frame_offset,
                          std::vector<Token>& out) {
    const int64_t B = batch, M = max_tokens;
    for (int i = 0; i < count; ++i) {
        const int64_t o = item * M + i;
        Token t;
        t.id = tokens[o];
        t.frame = frame_offset + tokens[B * M + o];
        t.duration = tokens[2 * B * M + o];
        std::memcpy(&t.confidence, &tokens[3 * B * M + o], sizeof(float));
        out.push_back(t);
    }
}

namespace {

// Scratch layout (floats): hn [B, L·H] | logits [R, n_out] | partials [R, kGreedyMaxBlocks] | z16 [B, J] (16-bit),
// 16-byte aligned regions, with R = 2B for the small-batch kernel (double-buffered by iteration) and B otherwise.
struct ScratchLayout {
    int64_t logits, partials, z16, total;
};

ScratchLayout scratch_layout(int64_t batch, int64_t lh, int64_t n_out, int64_t j) {
    const int64_t rows = batch <= kernels::kGreedySmallBatch ? 2 * batch : batch;
    auto align = [](int64_t floats) { return (floats + 3) / 4 * 4; };
    ScratchLayout s;
    s.logits = batch * lh;
    s.partials = align(s.logits + rows * n_out);
    s.z16 = s.partials + rows * kernels::kGreedyMaxBlocks * (kernels::kGreedyPartialBytes / sizeof(float));
    s.total = align(s.z16 + (batch * j + 1) / 2);
    return s;
}

}  // namespace

size_t GreedyDecoder::scratch_floats(int batch) const {
    return static_cast<size_t>(scratch_layout(batch, int64_t{n_layers_} * hidden_, n_outputs_, joint_hidden_).total);
}

size_t GreedyDecoder::int_scratch(int batch) const { return static_cast<size_t>(4) * batch + 1; }

void GreedyDecoder::decode_device(CudaContext& ctx, const DeviceBatch& d) const {
    const int64_t B = d.batch, LH = int64_t{n_layers_} * hidden_, J = joint_hidden_, M = d.max_tokens;
    const DeviceWeights& w = *weights_;
    const ScratchLayout layout = scratch_layout(B, LH, n_outputs_, J);
    PK_CHECK(reinterpret_cast<uintptr_t>(d.scratch) % kernels::kGreedyPartialBytes == 0, kInternal,
             "decode scratch is not 16-byte aligned");
    for (int b0 = 0; b0 < d.batch; b0 += kernels::kGreedyMaxBatch) {
        const int nb = std::min(kernels::kGreedyMaxBatch, d.batch - b0);
        kernels::GreedyParams p{};
        p.embed = w.embed.data<float>();
        for (int l = 0; l < n_layers_; ++l) {
            p.w_ih[l] = w.w_ih[l].raw();
            p.w_hh[l] = w.w_hh[l].raw();
            p.bias[l] = w.bias[l].data<float>();
        }
        p.pred_w = w.pred_w.raw();
        p.pred_b = w.pred_b.data<float>();
        p.out_w = w.out_w.raw();
        p.weight_type = weight_type_;
        p.out_b = w.out_b.data<float>();
        p.hidden = hidden_;
        p.n_layers = n_layers_;
        p.joint_hidden = joint_hidden_;
        p.n_out = n_outputs_;
        p.blank = options_.blank_id;
        p.n_dur = static_cast<int>(options_.durations.size());
        p.max_symbols = options_.max_symbols;
        p.activation = activation_;
        for (int i = 0; i < p.n_dur; ++i) p.durations[i] = options_.durations[i];
        p.batch = nb;
        p.fproj = d.fproj + b0 * d.item_stride;
        p.item_stride = d.item_stride;
        p.lengths = d.lengths + b0;
        p.h = d.h + b0 * LH;
        p.c = d.c + b0 * LH;
        p.p = d.p + b0 * J;
        p.t = d.t + b0;
        p.started = d.started + b0;
        p.hn = d.scratch + b0 * LH;
        // Small batches are a single launch (b0 = 0) and use 2B rows of logits and partials.
        p.logits = d.scratch + layout.logits + b0 * n_outputs_;
        p.partials = d.scratch + layout.partials +
                     b0 * kernels::kGreedyMaxBlocks * (kernels::kGreedyPartialBytes / sizeof(float));
        // 16-bit rows: b0 * J halves are 16-byte aligned as b0 is a multiple of kGreedyMaxBatch.
        p.z16 = tensor_joint_ ? reinterpret_cast<uint16_t*>(d.scratch + layout.z16) + b0 * J : nullptr;
        p.label = d.int_scratch + b0;
        p.need_lstm = d.int_scratch + B + b0;
        p.run = d.int_scratch + 2 * B + b0;
        p.last_ts = d.int_scratch + 3 * B + b0;
        p.error = d.int_scratch + 4 * B;
        p.tok_id = d.tokens + b0 * M;
        p.tok_frame = d.tokens + B * M + b0 * M;
        p.tok_dur = d.tokens + 2 * B * M + b0 * M;
        p.tok_conf = reinterpret_cast<float*>(d.tokens + 3 * B * M + b0 * M);
        p.max_tokens = static_cast<int>(M);
        p.n_tokens = d.n_tokens + b0;
        static const bool wide_lstm = env_switch("PARAKEET_WIDE_LSTM_UNITS");
        p.split_lstm = wide_lstm ? 0 : 1;
        kernels::greedy_decode(Launch{ctx.stream, ctx.n_sms}, p);
    }
}

std::vector<std::vector<Token>> greedy_decode_batch(CudaContext& ctx, const GreedyDecoder& decoder,
                                                    const float* fproj, int64_t max_frames, const int* lengths,
                                                    int batch) {
    std::vector<DecoderState> states(batch);
    std::vector<std::vector<Token>> tokens(batch);
    decoder.decode(ctx, fproj, max_frames, lengths, batch, states, tokens);
    return tokens;
}

}  // namespace parakeet::cuda
