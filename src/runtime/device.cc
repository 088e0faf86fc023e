#include "runtime/device.h"

#include "ops/dispatch.h"
#if PARAKEET_WITH_CUDA
#include "backends/cuda/context.h"
#include "backends/cuda/greedy_decode.h"
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
                decoder_ = std::make_shared<cuda::GreedyDecoder>(*cu, c, model_->weights());
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

void DeviceRunner::synchronize() const {
    if (is_cuda()) PK_CUDA_OP(cuda::synchronize(*static_cast<cuda::CudaContext*>(cuda_.get())));
}

}  // namespace parakeet
