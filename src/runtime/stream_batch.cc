#include "runtime/stream_batch.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <mutex>

#include "core/env.h"
#include "ops/ops.h"
#include "runtime/model.h"

#if PARAKEET_WITH_CUDA
#include "backends/cuda/context.h"
#include "backends/cuda/context_impl.h"
#include "backends/cuda/cuda_ops.h"
#include "backends/cuda/greedy_decode.h"
#include "backends/cuda/stream_kernels.h"
#endif

namespace parakeet {

namespace {

// Rows of the encoder chunk and of the cache update for one chunk shape.
struct ShapeSizes {
    int64_t feat_rows = 0, drop = 0, t_in = 0, t = 0, keep = 0;
};

[[maybe_unused]] ShapeSizes shape_sizes(const FastConformerEncoder& enc, const StreamingConfig& sc, bool first) {
    ShapeSizes s;
    s.feat_rows = first ? sc.chunk_size[0] : sc.pre_encode_cache_size[1] + sc.chunk_size[1];
    s.drop = first ? 0 : sc.drop_extra_pre_encoded;
    s.t_in = enc.encoded_length(static_cast<int>(s.feat_rows));
    s.t = std::max<int64_t>(s.t_in - s.drop, 0);
    s.keep = s.t - sc.cache_drop_size;
    return s;
}

}  // namespace

std::string StreamBatchEngine::unsupported_reason(const Model& model, const StreamingConfig& sc, int context) {
#if !PARAKEET_WITH_CUDA
    (void)model;
    (void)sc;
    (void)context;
    return "this build has no CUDA backend";
#else
    const FastConformerEncoder& enc = model.encoder();
    const EncoderConfig& c = enc.config();
    (void)enc.attention_context(context);  // validates the index
    if (sc.last_channel_cache_size < 1) return "no channel cache (last_channel_cache_size 0)";
    for (bool first : {true, false}) {
        const ShapeSizes s = shape_sizes(enc, sc, first);
        if (s.t < 1) return "a chunk yields no encoder frames";
        if (s.keep < 0) return "cache_drop_size exceeds the frames of a chunk";
        if (c.conv_context_size[0] + s.t + c.conv_context_size[1] > cuda::kernels::kMaxConvWindow)
            return "chunk too long for the batched conv kernel";
        const int64_t dk = c.d_model / c.n_heads;
        // Every block shape the step may launch: few or many streams, float32 or 16-bit caches.
        for (const bool small_batch : {true, false})
            for (const int kv_dtype : {0, 2})
                if (cuda::kernels::stream_attention_shared_bytes(s.t, dk, sc.last_channel_cache_size, small_batch,
                                                                 kv_dtype) > 48 * 1024)
                    return "channel cache too long for the batched attention kernel";
    }
    return "";
#endif
}

size_t StreamBatchEngine::launch_size(size_t remaining, int max_batch) {
    // A launch of up to 256 items costs mostly its weight read, so padding it is cheaper than a second launch.
    const size_t g = std::min<size_t>(remaining, static_cast<size_t>(std::max(max_batch, 1)));
    size_t b = 1;
    while (b < g) b <<= 1;
    return b <= 256 || g * 8 >= b * 7 ? g : b / 2;
}

#if PARAKEET_WITH_CUDA

namespace {

// Device weights of one conformer layer for the batched step (q/k/v fused into one [3D, D] GEMM).
struct LayerDev {
    Tensor ff1_w1, ff1_w2, qkv_w, out_w, pw1_w, pw2_w, ff2_w1, ff2_w2;  // precision's dtype
    const float *ff1_b1, *ff1_b2, *qkv_b, *out_b, *pw1_b, *pw2_b, *ff2_b1, *ff2_b2;
    const float *ff1_norm_w, *ff1_norm_b, *att_norm_w, *att_norm_b, *conv_norm_w, *conv_norm_b;
    const float *ff2_norm_w, *ff2_norm_b, *out_norm_w, *out_norm_b, *u, *v, *dw_w, *dw_b;
};

struct ChunkShape {
    bool first = false;
    ShapeSizes sz;
    std::vector<int64_t> rows, bins;  // per subsampling stage boundary: rows[0] = feature rows
    std::vector<Tensor> pos_proj;     // per layer [2N - 1, D], N = C + t
    std::vector<Tensor> pos_bias_v;   // per layer [H, 2N - 1]: pos_bias_v_h · pos_proj rows (head h's columns)
};

// The per-item ints at the start of an Io's input buffer (host or device copy), B items and ns subsampling stages:
// slot [B] | stage_len [B, ns] | enc_len [B] | out_len [B] | norm_rows [B]; the features follow at Io::feats_offset.
template <typename I>
struct ItemInts {
    I *slot, *stage_len, *enc_len, *out_len, *norm_rows;
    ItemInts(I* base, int64_t B, int64_t ns)
        : slot(base), stage_len(slot + B), enc_len(stage_len + B * ns), out_len(enc_len + B), norm_rows(out_len + B) {}
    static size_t count(int64_t B, int64_t ns) { return static_cast<size_t>(B * (4 + ns)); }
};

// Fixed-address buffers of one (shape, batch size): inputs, decoder scratch and outputs.
struct Io {
    int batch = 0;
    int max_tokens = 0;
    size_t n_ints = 0, in_bytes = 0, out_ints = 0;
    void* host_in = nullptr;
    void* dev_in = nullptr;
    int* host_out = nullptr;
    int* host_error = nullptr;
    Tensor out;  // [B n_tokens | 4·B·max_tokens tokens]
    Tensor dec_h, dec_c, dec_p, dec_t, dec_started, dec_scratch, dec_ints, fproj;
    Tensor encoded;  // [B, t, D]: the chunk's encoder output, kept for parity checks
    bool warmed = false;
    // Byte offset of the features in the input buffer (after the ItemInts, 256-byte aligned).
    size_t feats_offset() const { return (n_ints * sizeof(int) + 255) / 256 * 256; }
};

void free_pinned(void* p) {
    if (p) (void)cudaFreeHost(p);
}

}  // namespace

constexpr int kDefaultSmallRows = 2;

// The dtype of the activations that feed the GEMMs (and of the key/value caches) for a precision: 16 bits for
// fp16/bf16, float32 otherwise; and its code for the kernels (0 float32, 1 float16, 2 bfloat16).
DType activation_dtype(Precision p) {
    return p == Precision::kF16 ? DType::kF16 : p == Precision::kBF16 ? DType::kBF16 : DType::kF32;
}
int kernel_dtype_code(DType t) { return t == DType::kF16 ? 1 : t == DType::kBF16 ? 2 : 0; }

// PARAKEET_CHANNEL_FIRST_SUBSAMPLING=1: the channel-first subsampling kernels this engine used before the
// channels-last ones (A/B measurements).
bool channel_first_subsampling() {
    static const bool on = env_switch("PARAKEET_CHANNEL_FIRST_SUBSAMPLING");
    return on;
}

struct StreamBatchEngine::Impl {
    std::shared_ptr<const Model> model;
    StreamingConfig sc;
    AttentionContext att;
    Precision precision;
    std::shared_ptr<cuda::CudaContext> cu;
    std::unique_ptr<cuda::GreedyDecoder> decoder;
    cuda::kernels::SlotLayout layout{};
    float** page_table = nullptr;
    std::vector<float*> pages;
    std::vector<int> free_slots;
    ChunkShape shapes[2];
    Tensor qkv_host_w, qkv_host_b;  // kept alive: the weight cache is keyed by their host pointers
    std::vector<Tensor> qkv_w_host, qkv_b_host;
    std::vector<LayerDev> layers;
    Tensor sub_out_w, sub_out_w_cl;
    const float *conv0_w, *conv0_b, *sub_out_b, *enc_b;
    std::vector<const float*> dw_w, dw_b, pw_w, pw_b;
    std::vector<Tensor> pw_w_dev;  // pointwise weights in the GEMMs' dtype (channels-last subsampling)
    Tensor enc_w;
    std::vector<std::unique_ptr<Io>> ios[2];  // per shape, indexed by log2(bucket)
    bool decode_in_graph = true;
    bool online_normalize = false;  // per_feature models: steps may ask for their chunks to be normalised
    int max_batch = StreamBatchEngine::kMaxBatch;  // steps per launch (PARAKEET_STREAM_MAX_BATCH)
    int debug_layers = -1;
    // Steps of at most this many rows take queue_small_layers. H100, bf16, 160 ms chunks (2 rows per stream): one
    // stream 2.11 ms against 2.60 ms through cuBLAS, but 2 streams 2.83 against 2.64 and 4 streams 4.36 against
    // 2.73 (docs/PERFORMANCE.md), so by default only single-stream steps of up to 2 rows take it.
    int64_t small_rows = kDefaultSmallRows;
    bool attention_by_channel = false;  // see set_attention_by_channel
    cudaEvent_t ev_start = nullptr, ev_mid = nullptr, ev_end = nullptr;
    Timing timing;
    std::mutex mutex;

    ~Impl() {
        if (cu) (void)cudaStreamSynchronize(cu->stream);
        if (ev_start) (void)cudaEventDestroy(ev_start);
        if (ev_mid) (void)cudaEventDestroy(ev_mid);
        if (ev_end) (void)cudaEventDestroy(ev_end);
        for (auto& list : ios)
            for (auto& io : list)
                if (io) {
                    free_pinned(io->host_in);
                    free_pinned(io->host_out);
                    free_pinned(io->host_error);
                    if (io->dev_in) (void)cudaFree(io->dev_in);
                }
        for (float* p : pages) (void)cudaFree(p);
        if (page_table) (void)cudaFree(page_table);
        if (cu) cuda::clear_graphs(*cu);
    }

    cuda::Launch launch() const { return cuda::Launch{cu->stream, cu->n_sms}; }
    int n_stages() const { return model->encoder().n_subsampling_stages(); }

    void add_page() {
        PK_CHECK(static_cast<int>(pages.size()) < cuda::kernels::kMaxPages, kUnsupported,
                 "too many streams for one recognizer ({})", pages.size() * cuda::kernels::kSlotsPerPage);
        float* p = nullptr;
        PK_CUDA_CHECK(cudaMalloc(&p, static_cast<size_t>(layout.page_floats) * sizeof(float)));
        PK_CUDA_CHECK(cudaMemset(p, 0, static_cast<size_t>(layout.page_floats) * sizeof(float)));
        PK_CUDA_CHECK(cudaMemcpy(page_table + pages.size(), &p, sizeof(float*), cudaMemcpyHostToDevice));
        const int base = static_cast<int>(pages.size()) * cuda::kernels::kSlotsPerPage;
        pages.push_back(p);
        for (int i = cuda::kernels::kSlotsPerPage - 1; i >= 0; --i)
            if (base + i != 0) free_slots.push_back(base + i);  // slot 0 pads partial batches
    }

    Io& io_for(int shape, int bucket_log2) {
        auto& list = ios[shape];
        if (static_cast<int>(list.size()) <= bucket_log2) list.resize(bucket_log2 + 1);
        if (list[bucket_log2]) return *list[bucket_log2];
        auto io = std::make_unique<Io>();
        const int B = 1 << bucket_log2;
        const ChunkShape& sh = shapes[shape];
        const int64_t n_mels = sh.bins[0], J = decoder->joint_hidden();
        const Device dev{DeviceType::kCUDA, cu->device};
        io->batch = B;
        io->max_tokens = static_cast<int>(sh.sz.t * model->config().decoding.max_symbols + 1);
        io->n_ints = ItemInts<int>::count(B, n_stages());
        io->in_bytes = io->feats_offset() + static_cast<size_t>(B * sh.sz.feat_rows * n_mels) * sizeof(float);
        PK_CUDA_CHECK(cudaMallocHost(&io->host_in, io->in_bytes));
        std::memset(io->host_in, 0, io->in_bytes);
        PK_CUDA_CHECK(cudaMalloc(&io->dev_in, io->in_bytes));
        io->out_ints = static_cast<size_t>(B) * (1 + 4 * io->max_tokens);
        io->out = Tensor::zeros({static_cast<int64_t>(io->out_ints)}, DType::kI32, dev);
        void* ho = nullptr;
        PK_CUDA_CHECK(cudaMallocHost(&ho, io->out_ints * sizeof(int)));
        io->host_out = static_cast<int*>(ho);
        PK_CUDA_CHECK(cudaMallocHost(&ho, sizeof(int)));
        io->host_error = static_cast<int*>(ho);
        const int64_t lh = int64_t{decoder->n_layers()} * decoder->hidden();
        io->dec_h = Tensor::empty({B, lh}, DType::kF32, dev);
        io->dec_c = Tensor::empty({B, lh}, DType::kF32, dev);
        io->dec_p = Tensor::empty({B, J}, DType::kF32, dev);
        io->dec_t = Tensor::empty({B}, DType::kI32, dev);
        io->dec_started = Tensor::empty({B}, DType::kI32, dev);
        io->dec_scratch = Tensor::empty({static_cast<int64_t>(decoder->scratch_floats(B))}, DType::kF32, dev);
        io->dec_ints = Tensor::zeros({static_cast<int64_t>(decoder->int_scratch(B))}, DType::kI32, dev);
        io->fproj = Tensor::empty({B * sh.sz.t, J}, DType::kF32, dev);
        io->encoded = Tensor::empty({B, sh.sz.t, model->config().encoder.d_model}, DType::kF32, dev);
        list[bucket_log2] = std::move(io);
        return *list[bucket_log2];
    }

    // Queues the decode of io.fproj (state gathered from and scattered to the slots).
    void queue_decode(const ChunkShape& sh, Io& io, const int* slot, const int* out_len) {
        const int B = io.batch;
        const cuda::Launch l = launch();
        cuda::kernels::decoder_gather(l, layout, page_table, slot, B, io.dec_h.data<float>(), io.dec_c.data<float>(),
                                      io.dec_p.data<float>(), io.dec_t.data<int>(), io.dec_started.data<int>());
        PK_CUDA_CHECK(cudaMemsetAsync(io.dec_ints.raw(), 0, io.dec_ints.nbytes(), cu->stream));
        cuda::GreedyDecoder::DeviceBatch d{};
        d.fproj = io.fproj.data<float>();
        d.item_stride = sh.sz.t * decoder->joint_hidden();
        d.lengths = out_len;
        d.batch = B;
        d.max_tokens = io.max_tokens;
        d.h = io.dec_h.data<float>();
        d.c = io.dec_c.data<float>();
        d.p = io.dec_p.data<float>();
        d.t = io.dec_t.data<int>();
        d.started = io.dec_started.data<int>();
        d.scratch = io.dec_scratch.data<float>();
        d.int_scratch = io.dec_ints.data<int>();
        d.n_tokens = io.out.data<int>();
        d.tokens = io.out.data<int>() + B;
        decoder->decode_device(*cu, d);
        cuda::kernels::decoder_scatter(l, layout, page_table, slot, out_len, B, io.dec_h.data<float>(),
                                       io.dec_c.data<float>(), io.dec_p.data<float>(), io.dec_t.data<int>());
        PK_CUDA_CHECK(cudaMemcpyAsync(io.host_out, io.out.raw(), io.out_ints * sizeof(int), cudaMemcpyDeviceToHost,
                                      cu->stream));
        PK_CUDA_CHECK(cudaMemcpyAsync(io.host_error, io.dec_ints.data<int>() + 4 * B, sizeof(int),
                                      cudaMemcpyDeviceToHost, cu->stream));
    }

    // Queues the whole step of one (shape, batch): upload, encoder chunk, joint projection, cache update and,
    // with `with_decode`, the decode and the read-back.
    void queue_step(const ChunkShape& sh, Io& io, bool with_decode) {
        const FastConformerEncoder& enc = model->encoder();
        const EncoderConfig& c = enc.config();
        const int B = io.batch, ns = n_stages();
        const int64_t D = c.d_model, ch = c.subsampling_conv_channels, T = sh.sz.t, rows = B * T;
        const int64_t ff = D * c.ff_expansion_factor, H = c.n_heads, dk = D / H;
        const Device dev{DeviceType::kCUDA, cu->device};
        const cuda::Launch l = launch();
        PK_CUDA_CHECK(cudaMemcpyAsync(io.dev_in, io.host_in, io.in_bytes, cudaMemcpyHostToDevice, cu->stream));
        const ItemInts<const int> in(static_cast<const int*>(io.dev_in), B, ns);
        const int *slot = in.slot, *stage_len = in.stage_len, *enc_len = in.enc_len, *out_len = in.out_len;
        const int* norm_rows = in.norm_rows;
        float* feats = reinterpret_cast<float*>(static_cast<char*>(io.dev_in) + io.feats_offset());
        // NeMo's online normalisation of each chunk (Step::normalize), in place on the uploaded features.
        if (online_normalize)
            cuda::kernels::normalize_chunks_per_feature(l, feats, B, sh.sz.feat_rows, sh.bins[0], norm_rows);
        const int64_t pad_lo = c.causal_downsampling ? 2 : 1;
        auto alloc = [&](int64_t n) { return Tensor::empty({n}, DType::kF32, dev); };

        const int64_t t_in = sh.rows[ns];
        Tensor sub;
        if (ns >= 2 && !channel_first_subsampling()) {
            // Subsampling, batched and channels last (the kernels of FastConformerEncoder::subsample_batch): stage 0
            // fused with stage 1's depthwise conv, the pointwise convs as GEMMs on 16-bit inputs (fp16/bf16), the
            // flatten folded into the output weight. The features are zero past each item's rows.
            const DType adt = activation_dtype(precision);
            const int code = kernel_dtype_code(adt);
            // The pointwise convs' biases are added by the kernel that reads their output, before its ReLU.
            auto gemm_bias = [&](const Tensor& a, const Tensor& w, const float* bias, Tensor& out, int64_t m, int64_t n,
                                 int64_t k) {
                cuda::gemm(*cu, precision, false, true, m, n, k, 1.f, cuda::GemmOperand{a.raw(), adt, k},
                           cuda::GemmOperand{w.raw(), w.dtype(), k}, 0.f, out.data<float>(), n);
                if (bias) cuda::add_bias_rows(*cu, out.data<float>(), bias, m, n);
            };
            int64_t n_pos = B * sh.rows[2] * sh.bins[2];
            Tensor y = Tensor::empty({n_pos * ch}, adt, dev);
            cuda::kernels::subsample_front(l, feats, cuda::kernels::SubsampleLengths{nullptr, stage_len, ns}, B,
                                           sh.rows[0], sh.bins[0], conv0_w, conv0_b, dw_w[0], dw_b[0], ch, pad_lo,
                                           sh.rows[2], sh.bins[1], sh.bins[2], y.raw(), code);
            Tensor z = alloc(n_pos * ch);
            gemm_bias(y, pw_w_dev[0], nullptr, z, n_pos, ch, ch);
            for (int s = 2; s < ns; ++s) {
                n_pos = B * sh.rows[s + 1] * sh.bins[s + 1];
                y = Tensor::empty({n_pos * ch}, adt, dev);
                cuda::kernels::relu_depthwise_conv2d_s2(
                    l, z.data<float>(), pw_b[s - 2], cuda::kernels::SubsampleLengths{stage_len + s - 1, stage_len + s, ns}, B,
                    sh.rows[s], sh.bins[s], ch, dw_w[s - 1], dw_b[s - 1], pad_lo, sh.rows[s + 1], sh.bins[s + 1],
                    y.raw(), code);
                z = alloc(n_pos * ch);
                gemm_bias(y, pw_w_dev[s - 1], nullptr, z, n_pos, ch, ch);
            }
            const int64_t f_last = sh.bins[ns];
            Tensor flat = Tensor::empty({n_pos * ch}, adt, dev);
            cuda::kernels::relu_to(l, z.data<float>(), pw_b[ns - 2], ch, n_pos * ch, flat.raw(), code);
            sub = alloc(B * t_in * D);
            gemm_bias(flat, sub_out_w_cl, sub_out_b, sub, B * t_in, D, ch * f_last);
        } else {
            // Subsampling, batched.
            Tensor y = alloc(B * ch * sh.rows[1] * sh.bins[1]);
            cuda::kernels::sub_conv_first(l, feats, B, sh.rows[0], sh.bins[0], conv0_w, conv0_b, ch, pad_lo, stage_len, ns,
                                          y.data<float>());
            for (int s = 1; s < ns; ++s) {
                const int64_t t2 = sh.rows[s + 1], f2 = sh.bins[s + 1];
                Tensor z = alloc(B * ch * t2 * f2), zp = alloc(B * ch * t2 * f2);
                cuda::kernels::sub_conv_depthwise(l, y.data<float>(), B, ch, sh.rows[s], sh.bins[s], dw_w[s - 1],
                                                  dw_b[s - 1], pad_lo, z.data<float>());
                cuda::gemm(*cu, precision, false, false, ch, t2 * f2, ch, 1.f, cuda::GemmOperand{pw_w[s - 1], DType::kF32, ch, 0},
                           cuda::GemmOperand{z.data<float>(), DType::kF32, t2 * f2, ch * t2 * f2}, 0.f, zp.data<float>(),
                           t2 * f2, ch * t2 * f2, B);
                cuda::kernels::bias_relu_rows(l, zp.data<float>(), B, ch, t2, f2, pw_b[s - 1], stage_len + s, ns);
                y = zp;
            }
            const int64_t f_last = sh.bins[ns];
            Tensor flat = alloc(B * t_in * ch * f_last);
            cuda::kernels::flatten_channels_batched(l, y.data<float>(), B, ch, t_in, f_last, flat.data<float>());
            sub = alloc(B * t_in * D);
            cuda::linear(*cu, precision, flat.data<float>(), sub_out_w, sub_out_b, sub.data<float>(), B * t_in, D,
                         ch * f_last, 0.f);
        }
        Tensor x = alloc(rows * D), norm = alloc(rows * D), tmp = alloc(rows * D), att_out = alloc(rows * D);
        Tensor hidden = alloc(rows * ff), qkv = alloc(rows * 3 * D), pw1 = alloc(rows * 2 * D), dw = alloc(rows * D);
        const float xscale = c.xscaling ? static_cast<float>(std::sqrt(static_cast<double>(D))) : 1.f;
        cuda::kernels::drop_scale_rows(l, sub.data<float>(), B, t_in, sh.sz.drop, T, D, xscale, enc_len, x.data<float>());

        cuda::kernels::StreamAttentionArgs aa{};
        aa.batch = B;
        aa.t = T;
        aa.n_heads = H;
        aa.d_head = dk;
        if (att.chunked_limited) {
            aa.att_chunk = att.right + 1;
            aa.att_left_chunks = att.left < 0 ? 10000 : att.left / aa.att_chunk;
            aa.att_left = aa.att_right = -1;
        } else {
            aa.att_left = att.left;
            aa.att_right = att.right;
        }
        aa.cache_drop = sc.cache_drop_size;
        aa.by_channel = attention_by_channel ? 1 : 0;
        aa.layout = layout;
        aa.pages = page_table;
        aa.items = cuda::kernels::StepItems{slot, stage_len, enc_len, out_len};
        const int64_t kernel = c.conv_kernel_size, right = c.conv_context_size[1];
        float* xp = x.data<float>();
        float* np = norm.data<float>();
        float* tp = tmp.data<float>();
        const size_t n_layers = debug_layers >= 0 ? std::min<size_t>(debug_layers, layers.size()) : layers.size();
        const bool act16 = precision == Precision::kF16 || precision == Precision::kBF16;
        const bool skinny = n_layers > 0 && rows <= small_rows && cuda::kernels::skinny_linear_fits(rows, D, true) &&
                            cuda::kernels::skinny_linear_fits(rows, ff, false);
        // Many streams (the attention kernel by rows): the positional scores q · P of all rows as one GEMM per layer
        // (bd[h][row][r], head h's columns of q from qkv), so the kernel reads one float per (query, key) instead of
        // a row of P.
        const bool att_rows = !skinny && cuda::kernels::stream_attention_by_rows(l, aa);
        const int64_t n_pos = 2 * (layout.cache_rows + T) - 1;
        Tensor bd = att_rows ? alloc(H * rows * n_pos) : Tensor();
        auto positional_scores = [&](size_t li) {
            if (!att_rows) return;
            cuda::gemm(*cu, precision, false, true, rows, n_pos, dk, 1.f,
                       cuda::GemmOperand{qkv.data<float>(), DType::kF32, 3 * D, dk},
                       cuda::GemmOperand{sh.pos_proj[li].data<float>(), DType::kF32, D, dk}, 0.f, bd.data<float>(),
                       n_pos, rows * n_pos, H);
            aa.bd = bd.data<float>();
            aa.vp = sh.pos_bias_v[li].data<float>();
        };
        if (skinny) {
            queue_small_layers(io, rows, n_layers, aa, sh, x, norm, tmp, qkv, pw1);
            return finish_step(sh, io, with_decode, x.data<float>(), slot, out_len, aa.items);
        }
        if (!act16) {
            for (size_t li = 0; li < n_layers; ++li) {
                const LayerDev& w = layers[li];
                aa.layer = static_cast<int64_t>(li);
                cuda::layer_norm(*cu, xp, w.ff1_norm_w, w.ff1_norm_b, 1e-5f, rows, D, np);
                cuda::linear_bias_silu(*cu, precision, np, w.ff1_w1, w.ff1_b1, hidden.data<float>(), rows, ff, D);
                cuda::linear(*cu, precision, hidden.data<float>(), w.ff1_w2, w.ff1_b2, tp, rows, D, ff, 0.f);
                cuda::add_layer_norm(*cu, xp, tp, 0.5f, w.att_norm_w, w.att_norm_b, 1e-5f, rows, D, np);
                cuda::linear(*cu, precision, np, w.qkv_w, w.qkv_b, qkv.data<float>(), rows, 3 * D, D, 0.f);
                positional_scores(li);
                cuda::kernels::stream_attention(l, aa, qkv.data<float>(), sh.pos_proj[li].data<float>(), w.u, w.v,
                                                att_out.data<float>());
                cuda::linear(*cu, precision, att_out.data<float>(), w.out_w, w.out_b, tp, rows, D, D, 0.f);
                cuda::add_layer_norm(*cu, xp, tp, 1.f, w.conv_norm_w, w.conv_norm_b, 1e-5f, rows, D, np);
                cuda::linear(*cu, precision, np, w.pw1_w, w.pw1_b, pw1.data<float>(), rows, 2 * D, D, 0.f);
                cuda::kernels::stream_conv(l, layout, page_table, aa.items, aa.layer, pw1.data<float>(), B, T, kernel,
                                           right, sc.cache_drop_size, w.dw_w, w.dw_b, dw.data<float>());
                cuda::linear(*cu, precision, dw.data<float>(), w.pw2_w, w.pw2_b, tp, rows, D, D, 0.f);
                cuda::add_layer_norm(*cu, xp, tp, 1.f, w.ff2_norm_w, w.ff2_norm_b, 1e-5f, rows, D, np);
                cuda::linear_bias_silu(*cu, precision, np, w.ff2_w1, w.ff2_b1, hidden.data<float>(), rows, ff, D);
                cuda::linear(*cu, precision, hidden.data<float>(), w.ff2_w2, w.ff2_b2, tp, rows, D, ff, 0.f);
                cuda::add_layer_norm(*cu, xp, tp, 0.5f, w.out_norm_w, w.out_norm_b, 1e-5f, rows, D, np);
                std::swap(xp, np);
            }
        } else {
            // fp16/bf16: the kernels that feed a GEMM write its input in 16 bits (no conversion passes); the
            // residual stream, GEMM outputs and the caches stay float32.
            const DType adt = activation_dtype(precision);
            const int code = kernel_dtype_code(adt);
            auto alloc16 = [&](int64_t n) { return Tensor::empty({n}, adt, dev); };
            Tensor norm16 = alloc16(rows * D), hidden16 = alloc16(rows * ff), att16 = alloc16(rows * D),
                   dw16 = alloc16(rows * D);
            auto gemm = [&](const Tensor& a16, const Tensor& w, const float* bias, float* out, int64_t n, int64_t k) {
                cuda::gemm(*cu, precision, false, true, rows, n, k, 1.f, cuda::GemmOperand{a16.raw(), adt, k},
                           cuda::GemmOperand{w.raw(), w.dtype(), k}, 0.f, out, n);
                if (bias) cuda::add_bias_rows(*cu, out, bias, rows, n);
            };
            // hidden16 = SiLU(norm16 · w1ᵀ + b1), the GEMM writing hidden16 (cuda::linear_x16_bias_silu).
            auto ff_hidden = [&](const Tensor& w1, const float* b1) {
                cuda::linear_x16_bias_silu(*cu, precision, norm16.raw(), adt, w1, b1, hidden16.raw(), rows, ff, D);
            };
            for (size_t li = 0; li < n_layers; ++li) {
                const LayerDev& w = layers[li];
                aa.layer = static_cast<int64_t>(li);
                cuda::kernels::layer_norm_act(l, xp, nullptr, 0.f, w.ff1_norm_w, w.ff1_norm_b, 1e-5f, rows, D,
                                              norm16.raw(), code);
                ff_hidden(w.ff1_w1, w.ff1_b1);
                gemm(hidden16, w.ff1_w2, w.ff1_b2, tp, D, ff);
                cuda::kernels::layer_norm_act(l, xp, tp, 0.5f, w.att_norm_w, w.att_norm_b, 1e-5f, rows, D, norm16.raw(),
                                              code);
                gemm(norm16, w.qkv_w, w.qkv_b, qkv.data<float>(), 3 * D, D);
                positional_scores(li);
                cuda::kernels::stream_attention(l, aa, qkv.data<float>(), sh.pos_proj[li].data<float>(), w.u, w.v,
                                                att16.raw(), code);
                gemm(att16, w.out_w, w.out_b, tp, D, D);
                cuda::kernels::layer_norm_act(l, xp, tp, 1.f, w.conv_norm_w, w.conv_norm_b, 1e-5f, rows, D,
                                              norm16.raw(), code);
                gemm(norm16, w.pw1_w, w.pw1_b, pw1.data<float>(), 2 * D, D);
                cuda::kernels::stream_conv(l, layout, page_table, aa.items, aa.layer, pw1.data<float>(), B, T, kernel,
                                           right, sc.cache_drop_size, w.dw_w, w.dw_b, dw16.raw(), code);
                gemm(dw16, w.pw2_w, w.pw2_b, tp, D, D);
                cuda::kernels::layer_norm_act(l, xp, tp, 1.f, w.ff2_norm_w, w.ff2_norm_b, 1e-5f, rows, D, norm16.raw(),
                                              code);
                ff_hidden(w.ff2_w1, w.ff2_b1);
                gemm(hidden16, w.ff2_w2, w.ff2_b2, tp, D, ff);
                cuda::add_layer_norm(*cu, xp, tp, 0.5f, w.out_norm_w, w.out_norm_b, 1e-5f, rows, D, np);
                std::swap(xp, np);
            }
        }
        cuda::linear(*cu, precision, xp, enc_w, enc_b, io.fproj.data<float>(), rows, decoder->joint_hidden(), D, 0.f);
        finish_step(sh, io, with_decode, xp, slot, out_len, aa.items);
    }

    // The encoder output kept for parity checks, the cache advance and the decode.
    void finish_step(const ChunkShape& sh, Io& io, bool with_decode, const float* xp, const int* slot,
                     const int* out_len, const cuda::kernels::StepItems& items) {
        PK_CUDA_CHECK(cudaMemcpyAsync(io.encoded.raw(), xp, io.encoded.nbytes(), cudaMemcpyDeviceToDevice, cu->stream));
        cuda::kernels::stream_advance(launch(), layout, page_table, items, io.batch, sc.cache_drop_size);
        if (with_decode) queue_decode(sh, io, slot, out_len);
    }

    // The conformer layers and the joint's encoder projection on a few rows (rows <= small_rows): every linear is
    // one skinny_linear launch with its bias and SiLU, and the residual updates and layer norms before a linear
    // run in that launch's prologue (the residual stream alternates between x and spare). 10 launches per layer
    // instead of 21. On return x holds the encoder output.
    void queue_small_layers(Io& io, int64_t rows, size_t n_layers, cuda::kernels::StreamAttentionArgs& aa,
                            const ChunkShape& sh, Tensor& x, Tensor& spare, Tensor& tmp, Tensor& qkv, Tensor& pw1) {
        const EncoderConfig& c = model->encoder().config();
        const int64_t D = c.d_model, ff = D * c.ff_expansion_factor, B = io.batch, T = sh.sz.t;
        const Device dev{DeviceType::kCUDA, cu->device};
        const cuda::Launch l = launch();
        const DType adt = activation_dtype(precision);
        const int code = kernel_dtype_code(adt);
        Tensor hidden = Tensor::empty({rows * ff}, adt, dev), att_act = Tensor::empty({rows * D}, adt, dev),
               dw = Tensor::empty({rows * D}, adt, dev);
        float* tp = tmp.data<float>();
        auto linear = [&](const Tensor& w, const float* bias, bool silu, const void* in, void* y, int y_code,
                          int64_t n, int64_t ldy) {
            PK_CHECK(w.dtype() == adt, kInternal, "batched step: {} weight for a {} step", dtype_name(w.dtype()),
                     dtype_name(adt));
            cuda::kernels::SkinnyLinearArgs a{};
            a.rows = rows;
            a.n = n;
            a.k = w.dim(1);
            a.w = w.raw();
            a.w_dtype = code;
            a.bias = bias;
            a.silu = silu ? 1 : 0;
            a.y = y;
            a.y_dtype = y_code;
            a.ldy = ldy;
            a.x = in;
            return a;
        };
        // The residual update x' = [LN_pre](x + scale · tp) (when scale != 0), then the linear's input LN(x').
        auto with_norm = [&](cuda::kernels::SkinnyLinearArgs a, float scale, const float* pre_g, const float* pre_b,
                             const float* g, const float* b) {
            a.res = x.data<float>();
            a.eps = 1e-5f;
            a.norm_g = g;
            a.norm_b = b;
            if (scale != 0.f) {
                a.delta = tp;
                a.delta_scale = scale;
                a.pre_g = pre_g;
                a.pre_b = pre_b;
                a.res_out = spare.data<float>();
                std::swap(x, spare);
            }
            cuda::kernels::skinny_linear(l, a);
        };
        for (size_t li = 0; li < n_layers; ++li) {
            const LayerDev& w = layers[li];
            const LayerDev* prev = li > 0 ? &layers[li - 1] : nullptr;
            aa.layer = static_cast<int64_t>(li);
            with_norm(linear(w.ff1_w1, w.ff1_b1, true, nullptr, hidden.raw(), code, ff, ff), prev ? 0.5f : 0.f,
                      prev ? prev->out_norm_w : nullptr, prev ? prev->out_norm_b : nullptr, w.ff1_norm_w, w.ff1_norm_b);
            cuda::kernels::skinny_linear(l, linear(w.ff1_w2, w.ff1_b2, false, hidden.raw(), tp, 0, D, D));
            with_norm(linear(w.qkv_w, w.qkv_b, false, nullptr, qkv.raw(), 0, 3 * D, 3 * D), 0.5f, nullptr, nullptr,
                      w.att_norm_w, w.att_norm_b);
            cuda::kernels::stream_attention(l, aa, qkv.data<float>(), sh.pos_proj[li].data<float>(), w.u, w.v,
                                            att_act.raw(), code);
            cuda::kernels::skinny_linear(l, linear(w.out_w, w.out_b, false, att_act.raw(), tp, 0, D, D));
            with_norm(linear(w.pw1_w, w.pw1_b, false, nullptr, pw1.raw(), 0, 2 * D, 2 * D), 1.f, nullptr, nullptr,
                      w.conv_norm_w, w.conv_norm_b);
            cuda::kernels::stream_conv(l, layout, page_table, aa.items, aa.layer, pw1.data<float>(), B, T,
                                       c.conv_kernel_size, c.conv_context_size[1], sc.cache_drop_size, w.dw_w, w.dw_b,
                                       dw.raw(), code);
            cuda::kernels::skinny_linear(l, linear(w.pw2_w, w.pw2_b, false, dw.raw(), tp, 0, D, D));
            with_norm(linear(w.ff2_w1, w.ff2_b1, true, nullptr, hidden.raw(), code, ff, ff), 1.f, nullptr, nullptr,
                      w.ff2_norm_w, w.ff2_norm_b);
            cuda::kernels::skinny_linear(l, linear(w.ff2_w2, w.ff2_b2, false, hidden.raw(), tp, 0, D, D));
        }
        const LayerDev& last = layers[n_layers - 1];
        const int64_t J = decoder->joint_hidden();
        with_norm(linear(enc_w, enc_b, false, nullptr, io.fproj.raw(), 0, J, J), 0.5f, last.out_norm_w,
                  last.out_norm_b, nullptr, nullptr);
    }
};

StreamBatchEngine::StreamBatchEngine(std::shared_ptr<const Model> model, const StreamingConfig& sc, int context,
                                     int device_index, Precision precision)
    : impl_(std::make_unique<Impl>()) {
    const std::string why = unsupported_reason(*model, sc, context);
    PK_CHECK(why.empty(), kUnsupported, "batched streaming: {}", why);
    Impl& m = *impl_;
    m.model = std::move(model);
    m.sc = sc;
    m.precision = precision;
    if (const char* env = std::getenv("PARAKEET_DECODE_OUTSIDE_GRAPH")) m.decode_in_graph = std::string(env) != "1";
    // A/B measurements of the small-row kernels (see set_small_step_rows).
    if (const char* env = std::getenv("PARAKEET_SMALL_STEP_ROWS"))
        m.small_rows = std::clamp(std::atoi(env), 0, cuda::kernels::kSkinnyMaxRows);
    if (const char* env = std::getenv("PARAKEET_ATTENTION_BY_CHANNEL")) m.attention_by_channel = *env == '1';
    const FastConformerEncoder& enc = m.model->encoder();
    const EncoderConfig& c = enc.config();
    m.att = enc.attention_context(context);
    m.online_normalize = m.model->config().preprocessor.normalize == "per_feature";
    const int64_t D = c.d_model, C = sc.last_channel_cache_size;
    cuda::ContextOptions o;
    o.device_index = device_index;
    // The workspace holds 16-bit copies of GEMM inputs; sized for the largest batch so it never grows (graphs
    // keep its address).
    int64_t max_rows = 0, max_k = std::max<int64_t>(D * c.ff_expansion_factor, 2 * D);
    for (bool first : {true, false}) max_rows = std::max(max_rows, shape_sizes(enc, sc, first).t_in);
    {
        int64_t f = c.feat_in;
        for (int s = 0; s < enc.n_subsampling_stages(); ++s) f = enc.stage_size(f);
        max_k = std::max(max_k, int64_t{c.subsampling_conv_channels} * f);
    }
    // PARAKEET_STREAM_MAX_BATCH: steps per launch, a power of two up to 4096 (A/B measurements).
    if (const char* env = std::getenv("PARAKEET_STREAM_MAX_BATCH")) {
        const int v = std::atoi(env);
        PK_CHECK(v >= 1 && v <= 4096 && (v & (v - 1)) == 0, kInvalidArgument,
                 "PARAKEET_STREAM_MAX_BATCH={} is not a power of two in [1, 4096]", env);
        m.max_batch = v;
    }
    o.workspace_bytes = static_cast<size_t>(m.max_batch * max_rows * max_k) * 2 + (1u << 20);
    m.cu = cuda::create_context(o);
    cuda::CudaContext& cu = *m.cu;
    m.decoder = std::make_unique<cuda::GreedyDecoder>(cu, m.model->config(), m.model->weights(), m.precision);
    // fp16/bf16 steps keep the keys/values in 16 bits: half the cache memory per stream and half the attention's
    // largest read at many streams.
    int kv_dtype = kernel_dtype_code(activation_dtype(precision));
    if (env_switch("PARAKEET_KV_F32")) kv_dtype = 0;  // A/B measurements
    m.layout = cuda::kernels::make_slot_layout(c.n_layers, C, D, c.conv_context_size[0],
                                               int64_t{m.decoder->n_layers()} * m.decoder->hidden(),
                                               m.decoder->joint_hidden(), kv_dtype);
    PK_CUDA_CHECK(cudaEventCreate(&m.ev_start));
    PK_CUDA_CHECK(cudaEventCreate(&m.ev_mid));
    PK_CUDA_CHECK(cudaEventCreate(&m.ev_end));
    PK_CUDA_CHECK(cudaMalloc(&m.page_table, cuda::kernels::kMaxPages * sizeof(float*)));
    PK_CUDA_CHECK(cudaMemset(m.page_table, 0, cuda::kernels::kMaxPages * sizeof(float*)));
    m.add_page();

    // Weights on the device.
    auto wt = [&](const Tensor& t) { return cuda::device_weight(cu, t, precision); };
    auto f32 = [&](const Tensor& t) -> const float* { return t.defined() ? cuda::weight_f32(cu, t) : nullptr; };
    const SubsamplingWeights sw = enc.subsampling_weights();
    m.conv0_w = f32(sw.conv0_w);
    m.conv0_b = f32(sw.conv0_b);
    for (size_t s = 0; s < sw.dw_w.size(); ++s) {
        m.dw_w.push_back(f32(sw.dw_w[s]));
        m.dw_b.push_back(f32(sw.dw_b[s]));
        m.pw_w.push_back(f32(sw.pw_w[s]));
        m.pw_b.push_back(f32(sw.pw_b[s]));
        m.pw_w_dev.push_back(wt(sw.pw_w[s]));
    }
    m.sub_out_w = wt(sw.out_w);
    m.sub_out_w_cl = wt(sw.out_w_cl);
    m.sub_out_b = f32(sw.out_b);
    m.enc_w = wt(m.model->joint().encoder_weight());
    m.enc_b = f32(m.model->joint().encoder_bias());
    for (const ConformerLayerWeights& w : enc.layer_weights()) {
        Tensor qkv_w = Tensor::empty({3 * D, D});
        for (int i = 0; i < 3; ++i) {
            const Tensor& src = i == 0 ? w.q_w : i == 1 ? w.k_w : w.v_w;
            Tensor s32 = src.to_f32();
            std::memcpy(qkv_w.data<float>() + i * D * D, s32.data<float>(), static_cast<size_t>(D * D) * sizeof(float));
        }
        Tensor qkv_b;
        if (w.q_b.defined()) {
            qkv_b = Tensor::empty({3 * D});
            for (int i = 0; i < 3; ++i) {
                const Tensor s32 = (i == 0 ? w.q_b : i == 1 ? w.k_b : w.v_b).to_f32();
                std::memcpy(qkv_b.data<float>() + i * D, s32.data<float>(), static_cast<size_t>(D) * sizeof(float));
            }
        }
        m.qkv_w_host.push_back(qkv_w);
        m.qkv_b_host.push_back(qkv_b);
        LayerDev d{};
        d.ff1_w1 = wt(w.ff1_w1);
        d.ff1_w2 = wt(w.ff1_w2);
        d.qkv_w = wt(qkv_w);
        d.out_w = wt(w.out_w);
        d.pw1_w = wt(w.pw1_w);
        d.pw2_w = wt(w.pw2_w);
        d.ff2_w1 = wt(w.ff2_w1);
        d.ff2_w2 = wt(w.ff2_w2);
        d.ff1_b1 = f32(w.ff1_b1);
        d.ff1_b2 = f32(w.ff1_b2);
        d.qkv_b = f32(qkv_b);
        d.out_b = f32(w.out_b);
        d.pw1_b = f32(w.pw1_b);
        d.pw2_b = f32(w.pw2_b);
        d.ff2_b1 = f32(w.ff2_b1);
        d.ff2_b2 = f32(w.ff2_b2);
        d.ff1_norm_w = f32(w.ff1_norm_w);
        d.ff1_norm_b = f32(w.ff1_norm_b);
        d.att_norm_w = f32(w.att_norm_w);
        d.att_norm_b = f32(w.att_norm_b);
        d.conv_norm_w = f32(w.conv_norm_w);
        d.conv_norm_b = f32(w.conv_norm_b);
        d.ff2_norm_w = f32(w.ff2_norm_w);
        d.ff2_norm_b = f32(w.ff2_norm_b);
        d.out_norm_w = f32(w.out_norm_w);
        d.out_norm_b = f32(w.out_norm_b);
        d.u = f32(w.pos_bias_u);
        d.v = f32(w.pos_bias_v);
        d.dw_w = f32(w.dw_w);
        d.dw_b = f32(w.dw_b);
        m.layers.push_back(d);
    }

    // Chunk shapes and their positional projections (constant per shape: N = C + t keys every step).
    const Device dev{DeviceType::kCUDA, cu.device};
    for (int si = 0; si < 2; ++si) {
        ChunkShape& sh = m.shapes[si];
        sh.first = si == 0;
        sh.sz = shape_sizes(enc, sc, sh.first);
        sh.rows = {sh.sz.feat_rows};
        sh.bins = {c.feat_in};
        for (int s = 0; s < enc.n_subsampling_stages(); ++s) {
            sh.rows.push_back(enc.stage_size(sh.rows.back()));
            sh.bins.push_back(enc.stage_size(sh.bins.back()));
        }
        const int64_t n = C + sh.sz.t;
        Tensor pos = Tensor::empty({2 * n - 1, D});
        ops::rel_positions(n - 1, 2 * n - 1, static_cast<int>(D), pos);
        Tensor pos_dev = pos.to(dev);
        for (const ConformerLayerWeights& w : enc.layer_weights()) {
            Tensor p = Tensor::empty({2 * n - 1, D}, DType::kF32, dev);
            cuda::linear(cu, precision, pos_dev.data<float>(), wt(w.pos_w), nullptr, p.data<float>(), 2 * n - 1, D, D,
                         0.f);
            // vp[h][r] = pos_bias_v_h · p[r, h·dk : (h+1)·dk]: per head a [1, dk] x [dk, 2N - 1] product.
            const int64_t H = c.n_heads, dk = D / H;
            Tensor vp = Tensor::empty({H, 2 * n - 1}, DType::kF32, dev);
            cuda::gemm(cu, Precision::kF32, false, true, 1, 2 * n - 1, dk, 1.f,
                       cuda::GemmOperand{f32(w.pos_bias_v), DType::kF32, dk, dk},
                       cuda::GemmOperand{p.data<float>(), DType::kF32, D, dk}, 0.f, vp.data<float>(), 2 * n - 1,
                       2 * n - 1, H);
            sh.pos_proj.push_back(p);
            sh.pos_bias_v.push_back(vp);
        }
    }
    cuda::synchronize(cu);
}

StreamBatchEngine::~StreamBatchEngine() = default;

int StreamBatchEngine::acquire() {
    Impl& m = *impl_;
    std::lock_guard<std::mutex> lock(m.mutex);
    if (m.free_slots.empty()) m.add_page();
    const int slot = m.free_slots.back();
    m.free_slots.pop_back();
    cuda::kernels::slot_reset(m.launch(), m.layout, m.page_table, slot);
    return slot;
}

void StreamBatchEngine::release(int slot) {
    Impl& m = *impl_;
    std::lock_guard<std::mutex> lock(m.mutex);
    if (slot > 0) m.free_slots.push_back(slot);
}

void StreamBatchEngine::reset(int slot) {
    Impl& m = *impl_;
    std::lock_guard<std::mutex> lock(m.mutex);
    cuda::kernels::slot_reset(m.launch(), m.layout, m.page_table, slot);
}

void StreamBatchEngine::set_debug_layers(int n) {
    Impl& m = *impl_;
    std::lock_guard<std::mutex> lock(m.mutex);
    cuda::clear_graphs(*m.cu);
    m.debug_layers = n;
}

void StreamBatchEngine::set_small_step_rows(int rows) {
    Impl& m = *impl_;
    std::lock_guard<std::mutex> lock(m.mutex);
    cuda::clear_graphs(*m.cu);
    m.small_rows = std::clamp(rows, 0, cuda::kernels::kSkinnyMaxRows);
}

void StreamBatchEngine::set_attention_by_channel(bool by_channel) {
    Impl& m = *impl_;
    std::lock_guard<std::mutex> lock(m.mutex);
    cuda::clear_graphs(*m.cu);
    m.attention_by_channel = by_channel;
}

size_t StreamBatchEngine::slot_bytes() const {
    return static_cast<size_t>(impl_->layout.page_floats) * sizeof(float) / cuda::kernels::kSlotsPerPage;
}

int StreamBatchEngine::slots_allocated() const {
    return static_cast<int>(impl_->pages.size()) * cuda::kernels::kSlotsPerPage;
}

void StreamBatchEngine::step(const std::vector<Step>& steps, std::vector<Output>& out) {
    Impl& m = *impl_;
    std::lock_guard<std::mutex> lock(m.mutex);
    const auto t_start = std::chrono::steady_clock::now();
    out.assign(steps.size(), Output{});
    const FastConformerEncoder& enc = m.model->encoder();
    const int ns = m.n_stages();
    const int64_t n_mels = enc.config().feat_in;
    for (int si = 0; si < 2; ++si) {
        std::vector<size_t> group;
        for (size_t i = 0; i < steps.size(); ++i)
            if (steps[i].first == (si == 0)) group.push_back(i);
        const ChunkShape& sh = m.shapes[si];
        for (size_t g0 = 0, batch = 0; g0 < group.size(); g0 += batch) {
            batch = launch_size(group.size() - g0, m.max_batch);
            const int n = static_cast<int>(batch);
            int lg = 0;
            while ((1 << lg) < n) ++lg;
            Io& io = m.io_for(si, lg);
            const int B = io.batch;
            const uint64_t key = (uint64_t{static_cast<unsigned>(si)} << 8) | static_cast<unsigned>(lg);
            if (!io.warmed) {
                // An eager run on the padding slot sizes cuBLAS's and the workspace's buffers before capture.
                std::memset(io.host_in, 0, io.in_bytes);
                m.queue_step(sh, io, true);
                cuda::synchronize(*m.cu);
                io.warmed = true;
            }
            // Inputs: the ItemInts of each item (padding items: nothing valid); features zero-padded.
            const ItemInts<int> in(static_cast<int*>(io.host_in), B, ns);
            int *slot = in.slot, *stage_len = in.stage_len, *enc_len = in.enc_len, *out_len = in.out_len;
            int* norm_rows = in.norm_rows;
            float* feats = reinterpret_cast<float*>(static_cast<char*>(io.host_in) + io.feats_offset());
            const size_t item_floats = static_cast<size_t>(sh.sz.feat_rows * n_mels);
            for (int b = n; b < B; ++b) {  // padding items: the reserved slot, nothing valid
                slot[b] = 0;
                for (int s = 0; s < ns; ++s) stage_len[b * ns + s] = 0;
                enc_len[b] = out_len[b] = norm_rows[b] = 0;
            }
            for (int b = 0; b < n; ++b) {
                const Step& st = steps[group[g0 + b]];
                PK_CHECK(st.slot > 0 && st.slot < static_cast<int>(m.pages.size()) * cuda::kernels::kSlotsPerPage &&
                             st.rows >= 0 && st.rows <= sh.sz.feat_rows && (!st.normalize || m.online_normalize),
                         kInvalidArgument, "batched step: bad slot {} or chunk of {} rows (shape holds {}){}", st.slot,
                         st.rows, sh.sz.feat_rows,
                         st.normalize && !m.online_normalize ? ", or normalisation asked of a model without it" : "");
            }
#pragma omp parallel for schedule(static) if (n >= 64)
            for (int b = 0; b < n; ++b) {
                const Step& st = steps[group[g0 + b]];
                slot[b] = st.slot;
                int64_t v = st.rows;
                for (int s = 0; s < ns; ++s) {
                    v = enc.stage_size(v);
                    stage_len[b * ns + s] = static_cast<int>(v);
                }
                const int e = static_cast<int>(std::max<int64_t>(v - sh.sz.drop, 0));
                enc_len[b] = e;
                const bool truncate = m.sc.valid_out_len > 0 && (!st.keep_all_outputs || !m.att.chunked_limited);
                out_len[b] = truncate ? std::min(e, m.sc.valid_out_len) : e;
                norm_rows[b] = st.normalize ? st.rows : 0;
                const size_t used = static_cast<size_t>(st.rows * n_mels);
                std::memcpy(feats + b * item_floats, st.features, used * sizeof(float));
                std::memset(feats + b * item_floats + used, 0, (item_floats - used) * sizeof(float));
            }
            PK_CUDA_CHECK(cudaEventRecord(m.ev_start, m.cu->stream));
            bool decoded_in_graph = m.decode_in_graph;
            if (decoded_in_graph) {
                try {
                    cuda::run_graph(*m.cu, key | (1u << 16), [&] { m.queue_step(sh, io, true); });
                } catch (const Error&) {
                    // Drivers that cannot capture the cooperative decode kernel: decode after the graph.
                    (void)cudaGetLastError();
                    m.decode_in_graph = decoded_in_graph = false;
                }
            }
            if (!decoded_in_graph) {
                cuda::run_graph(*m.cu, key, [&] { m.queue_step(sh, io, false); });
                PK_CUDA_CHECK(cudaEventRecord(m.ev_mid, m.cu->stream));
                const ItemInts<const int> dev(static_cast<const int*>(io.dev_in), B, ns);
                m.queue_decode(sh, io, dev.slot, dev.out_len);
            }
            PK_CUDA_CHECK(cudaEventRecord(m.ev_end, m.cu->stream));
            cuda::synchronize(*m.cu);
            float gpu_ms = 0;
            PK_CUDA_CHECK(cudaEventElapsedTime(&gpu_ms, m.ev_start, m.ev_end));
            m.timing.gpu_ms += gpu_ms;
            if (!decoded_in_graph) {
                float decode_ms = 0;
                PK_CUDA_CHECK(cudaEventElapsedTime(&decode_ms, m.ev_mid, m.ev_end));
                m.timing.decode_ms += decode_ms;
            }
            ++m.timing.batches;
            PK_CHECK(*io.host_error == 0, kInternal, "GPU greedy decode failed (code {})", *io.host_error);
            Tensor encoded_host;
            for (int b = 0; b < n && !encoded_host.defined(); ++b)
                if (steps[group[g0 + b]].want_encoded) encoded_host = io.encoded.to(Device{});
            const int* counts = io.host_out;
            const int* tok = io.host_out + B;
            const int64_t M = io.max_tokens;
            for (int b = 0; b < n; ++b) {
                const Step& st = steps[group[g0 + b]];
                Output& o = out[group[g0 + b]];
                o.frames = out_len[b];
                if (st.want_encoded)
                    o.encoded = encoded_host.slice0(b, b + 1).reshape({sh.sz.t, encoded_host.dim(2)}).slice0(0, out_len[b]).clone();
                cuda::append_device_tokens(tok, counts[b], b, B, static_cast<int>(M), st.frames_decoded, o.tokens);
            }
        }
    }
    m.timing.total_ms += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t_start).count();
}

StreamBatchEngine::Timing StreamBatchEngine::take_timing() {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    Timing t = impl_->timing;
    impl_->timing = Timing{};
    return t;
}

void StreamBatchEngine::add_host_timing(double cut_ms, double commit_ms) {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    impl_->timing.cut_ms += cut_ms;
    impl_->timing.commit_ms += commit_ms;
}

#else  // !PARAKEET_WITH_CUDA

struct StreamBatchEngine::Impl {};
StreamBatchEngine::StreamBatchEngine(std::shared_ptr<const Model>, const StreamingConfig&, int, int, Precision) {
    PK_THROW(kUnsupported, "batched streaming: this build has no CUDA backend");
}
StreamBatchEngine::~StreamBatchEngine() = default;
int StreamBatchEngine::acquire() { return -1; }
void StreamBatchEngine::release(int) {}
void StreamBatchEngine::reset(int) {}
void StreamBatchEngine::set_debug_layers(int) {}
void StreamBatchEngine::set_small_step_rows(int) {}
void StreamBatchEngine::set_attention_by_channel(bool) {}
void StreamBatchEngine::step(const std::vector<Step>&, std::vector<Output>&) {}
StreamBatchEngine::Timing StreamBatchEngine::take_timing() { return {}; }
void StreamBatchEngine::add_host_timing(double, double) {}
size_t StreamBatchEngine::slot_bytes() const { return 0; }
int StreamBatchEngine::slots_allocated() const { return 0; }

#endif

}  // namespace parakeet
