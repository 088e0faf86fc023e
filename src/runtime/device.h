// Everything needed to run a model on one device from one thread: the execution context, and on CUDA the CUDA
// context (stream, cuBLAS, weight cache) and the device-side greedy decoder.
#pragma once

#include <map>
#include <memory>
#include <tuple>
#include <vector>

#include "core/context.h"
#include "decoding/greedy.h"
#include "runtime/model.h"

namespace parakeet {

// "fp32", "tf32", "fp16", "bf16" -> Precision; throws kInvalidArgument otherwise.
Precision parse_precision(const std::string& name);
const char* precision_name(Precision p);

class DeviceRunner {
public:
    // Throws kUnsupported for CUDA in a build without it, or when no GPU is present.
    DeviceRunner(std::shared_ptr<const Model> model, Device device, Precision precision, int n_threads);

    const ExecContext& ctx() const { return ctx_; }
    bool is_cuda() const { return ctx_.device.type == DeviceType::kCUDA; }

    // Greedy decoding of fproj [B, T, joint_hidden] (on ctx().device): item b's first lengths[b] frames, from and
    // into states[b]; tokens[b] appended.
    void decode(const Tensor& fproj, const std::vector<int>& lengths, std::vector<DecoderState>& states,
                std::vector<std::vector<Token>>& tokens) const;
    // The encoder on one item's features [F, n_mels] (any device). On CUDA through a graph captured for this
    // (F, attention context): the first call runs eagerly (sizing buffers, uploading weights), the second captures,
    // later ones replay; inputs the capture cannot take fall back to eager runs. Elsewhere eager. Returns
    // [1, T, D] on the device, valid until the next call with the same F; lengths = {T}.
    Tensor encode(const Tensor& features, std::vector<int>& lengths, const AttentionContext& att) const;
    // Waits for queued device work (timing).
    void synchronize() const;

private:
    std::shared_ptr<const Model> model_;
    ExecContext ctx_;
    std::shared_ptr<void> cuda_;     // cuda::CudaContext
    std::shared_ptr<void> decoder_;  // cuda::GreedyDecoder
    GreedyOptions greedy_;
    struct CapturedEncoder {
        Tensor in, out;
        int length = 0;
        int runs = 0;
        bool eager_only = false;
    };
    mutable std::map<std::tuple<int64_t, int, int, bool>, CapturedEncoder> captured_;
};

}  // namespace parakeet
