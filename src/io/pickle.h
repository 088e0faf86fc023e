// A safe unpickler for PyTorch state_dict pickles (the data.pkl of a torch.save zip checkpoint).
//
// Nothing in the pickle is ever executed or imported. The only globals it may name are
//   collections.OrderedDict, torch._utils._rebuild_tensor_v2, torch._utils._rebuild_parameter and
//   torch.{Float,Double,Half,BFloat16,Long,Int,Short,Char,Byte,Bool}Storage;
// any other global (os.system, builtins.eval, torch.storage._load_from_bytes, ...) is an error.
// Opcodes: protocol 0-2 plus the harmless protocol 3/4 ones (FRAME, MEMOIZE, STACK_GLOBAL,
// SHORT_BINUNICODE, BINUNICODE8, BINBYTES*); object-building opcodes (INST, OBJ, NEWOBJ, ...),
// extension registry codes, out-of-band buffers and text PERSID are refused.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace parakeet {

// One tensor of the state_dict, as _rebuild_tensor_v2 would build it. Sizes and strides are in
// elements.
struct PickledTensor {
    std::string name;         // state_dict key, e.g. "encoder.layers.0.norm_ff.weight"
    std::string storage_key;  // persistent id of its storage: record "<prefix>/data/<storage_key>"
    DType dtype = DType::kF32;
    int64_t storage_offset = 0;
    Shape shape;
    std::vector<int64_t> strides;  // same rank as shape
};

struct PickledStorage {
    DType dtype = DType::kF32;
    int64_t numel = 0;  // elements, as declared by the pickle
};

struct StateDict {
    std::vector<PickledTensor> tensors;  // in pickle (state_dict) order
    std::map<std::string, PickledStorage>
        storages;  // by storage key; several tensors may share one
};

// Limits against hostile input (each is far above what a real checkpoint needs).
inline constexpr size_t kPickleMaxStack = size_t{1} << 22;    // values on the stack
inline constexpr size_t kPickleMaxMarks = 4096;               // nested MARKs
inline constexpr size_t kPickleMaxObjects = size_t{1} << 22;  // strings, tuples, lists, dicts built
inline constexpr size_t kPickleMaxMemo = size_t{1} << 22;     // memo entries

// Unpickles a state_dict from bytes [data, data + size). Checks that every tensor is well formed: a
// known dtype, shape and strides of one rank with no negative entries, an element count that fits
// in int64, and every element inside the storage's declared numel. One storage key always has one
// dtype and numel. `context` (e.g. "x.nemo: model_weights.ckpt") prefixes every error message.
// Throws parakeet::Error: kFormat for a forbidden global ("pickle refers to forbidden global
// 'os.system'"), a malformed or truncated pickle, or a top object that is not a dict of tensors;
// kUnsupported for opcodes outside the subset above. No recursion: the cost is linear in the input,
// within the limits above.
StateDict unpickle_state_dict(const uint8_t* data, size_t size, const std::string& context);

}  // namespace parakeet
