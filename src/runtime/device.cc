#include "runtime/device.h"

#include "ops/dispatch.h"
#include "ops/ops.h"
#if PARAKEET_WITH_CUDA
#include "backends/cuda/context.h"
#include "backends/cuda/greedy_decode.h"
#include <cuda_runtime.h>
#endif

namespace parakeet {

Precision parse_precision(const std::string& name) {
    if (name == "fp32") return Precision::kF32;
    if (name == "tf32") return Precision::kTF32;
    if (name == "fp16") return Precision::kF16;
    if (name == "bf16") return Precision::kBF16;
    PK_THROW(kInvalidArgument, "bad precision '{}' (expected fp32, tf32, fp16 or bf16)", name);
}

const char* precision_name(Precision p) {
    switch (p) {
        case Precision::kF32: return "fp32";
        case Precision::kTF32: return "tf32";
        case Precision::kF16: return "fp16";
        case Precision::kBF16: return "bf16";
    }
    return "?";
}

DeviceRunner::DeviceRunner(std::shared_ptr<const Model> model, Device device, Precision precision, int n_threads)
    : model_(std::move(model)) {
    const ModelConfig& c = model_->config();
    greedy_ = {c.blank_id(), c.is_tdt() ? c.decoding.durations : std::vector<int>{}, c.decoding.max_symbols};
    ctx_.device = device;
    ctx_.n_threads = n_threads;
    switch (device.type) {
        case DeviceType::kCPU:
            PK_CHECK(precision == Precision::kF32, kInvalidArgument, "the CPU backend computes in fp32 only");
            set_cpu_threads(n_threads);
            return;
        case DeviceType::kCUDA: {
            PK_CUDA_OP({
                PK_CHECK(cuda::device_count() > device.index, kUnsupported, "no CUDA device {} on this machine",
                         device.index);
                cuda::ContextOptions o;
                o.device_index = device.index;
                std::shared_ptr<cuda::CudaContext> cu = cuda::create_context(o);
                ctx_ = cuda::exec_context(*cu, precision);
                ctx_.n_threads = n_threads;
                decoder_ = std::make_shared<cuda::GreedyDecoder>(*cu, c, model_->weights(), precision);
                cuda_ = cu;
            });
            return;
        }
    }
}

void DeviceRunner::decode(const Tensor& fproj, const std::vector<int>& lengths, std::vector<DecoderState>& states,
                          std::vector<std::vector<Token>>& tokens) const {
    const int batch = static_cast<int>(lengths.size());
    tokens.resize(batch);
    states.resize(batch);
    switch (ctx_.device.type) {
        case DeviceType::kCPU: {
            const int64_t t = fproj.dim(1), j = fproj.dim(2);
            for (int b = 0; b < batch; ++b)
                greedy_decode(model_->predictor(), model_->joint(), greedy_, fproj.data<float>() + b * t * j,
                              lengths[b], states[b], tokens[b]);
            return;
        }
        case DeviceType::kCUDA:
            PK_CUDA_OP(static_cast<const cuda::GreedyDecoder*>(decoder_.get())
                           ->decode(*static_cast<cuda::CudaContext*>(cuda_.get()), fproj.data<float>(), fproj.dim(1),
                                    lengths.data(), batch, states, tokens));
            return;
    }
}

Tensor DeviceRunner::encode(const Tensor& features, std::vector<int>& lengths, const AttentionContext& att) const {
    const FastConformerEncoder& enc = model_->encoder();
    if (!is_cuda()) return enc.forward(ctx_, {features}, lengths, att);
#if PARAKEET_WITH_CUDA
    auto& cuda_ctx = *static_cast<cuda::CudaContext*>(cuda_.get());
    const int64_t rows = features.dim(0);
    CapturedEncoder& e = captured_[std::make_tuple(rows, att.left, att.right, att.chunked_limited)];
    if (e.eager_only) return enc.forward(ctx_, {features}, lengths, att);
    if (!e.in.defined()) e.in = Tensor::empty(features.shape(), DType::kF32, ctx_.device);
    ops::copy_(ctx_, e.in, features);
    if (e.runs++ == 0) {
        // Eager first run: uploads weights and positional rows, grows the workspace, fixes the output's shape.
        Tensor y = enc.forward(ctx_, {e.in}, lengths, att);
        e.out = Tensor::empty(y.shape(), DType::kF32, ctx_.device);
        ops::copy_(ctx_, e.out, y);
        e.length = lengths[0];
        return e.out;
    }
    // Graph keys of this runner's context: the top bit marks the encoder's, the rest hashes (F, context).
    const uint64_t key = (uint64_t{1} << 63) | (static_cast<uint64_t>(rows) << 24) |
                         (static_cast<uint64_t>(att.left + 1) & 0xfff) << 12 |
                         (static_cast<uint64_t>(att.right + 1) & 0x7ff) << 1 | (att.chunked_limited ? 1 : 0);
    try {
        cuda::run_graph(cuda_ctx, key, [&] {
            std::vector<int> l;
            Tensor y = enc.forward(ctx_, {e.in}, l, att);
            ops::copy_(ctx_, e.out, y);
        });
    } catch (const Error&) {
        // Something in this forward cannot be captured: run it eagerly from now on (clearing the capture's error).
        (void)cudaGetLastError();
        e.eager_only = true;
        return enc.forward(ctx_, {features}, lengths, att);
    }
    lengths = {e.length};
    return e.out;
#else
    return enc.forward(ctx_, {features}, lengths, att);
#endif
}

void DeviceRunner::synchronize() const {
    if (is_cuda()) PK_CUDA_OP(cuda::synchronize(*static_cast<cuda::CudaContext*>(cuda_.get())));
}

}  // namespace parakeet
