// The .nemo model archive: tar (plain or gzip) -> model_config.yaml + model_weights.ckpt
// (torch.save zip, read with a safe unpickler) -> named tensors, plus the other members (tokenizer
// files) as bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace parakeet {

// Tensors of a torch.save state_dict checkpoint.
struct Checkpoint {
    std::vector<std::string> tensor_names;  // state_dict order
    std::map<std::string, Tensor> tensors;  // contiguous CPU tensors, dtype as stored
    bool views = false;  // every tensor is a view into the checkpoint bytes (no copy)
};

struct NemoArchive {
    std::string path;         // as given to open_nemo (or the name given to the memory variant)
    std::string config_yaml;  // model_config.yaml, verbatim
    std::vector<std::string> tensor_names;  // state_dict (pickle) order
    // Contiguous CPU tensors by state_dict key, dtype as stored. Read-only: views into the
    // archive's bytes (writing through them faults for a mapped file), or owned copies. They keep
    // the archive bytes alive.
    std::map<std::string, Tensor> tensors;
    // Every regular member except model_weights.ckpt and members over kNemoMaxMemberBytes, by name
    // without the leading "./" (e.g. "5ce2..._tokenizer.model"): raw bytes. model_config.yaml is
    // here too.
    std::map<std::string, std::string> members;
    // True when every tensor is a view into the archive bytes (uncompressed tar; aligned,
    // contiguous storages), i.e. the weights were neither read nor copied.
    bool weights_mapped = false;
};

// Members (other than the weights) larger than this are left out of NemoArchive::members.
inline constexpr uint64_t kNemoMaxMemberBytes = uint64_t{256} << 20;

// Opens a .nemo file: maps it, reads its tar directory, maps the weights in place when the tar is
// uncompressed (reads them into memory when gzip-compressed) and unpickles the state_dict safely
// (see io/pickle.h). Throws parakeet::Error with a one-line message naming the file and member:
//   kIo: missing, unreadable, or a directory;
//   kFormat: empty, not a tar ("not a .nemo archive (neither tar nor gzip-compressed tar)"),
//   truncated,
//     no model_config.yaml, no model_weights.ckpt, a corrupt zip or pickle, a forbidden pickle
//     global, a storage past the end of its record ("storage '<key>' of tensor '<name>' points past
//     the end of its record"), a shape whose element count overflows int64;
//   kUnsupported: a big-endian checkpoint, compressed zip entries, unsupported pickle opcodes.
// Thread-safe (no shared state); the result is independent of other calls.
NemoArchive open_nemo(const std::string& path);

// As open_nemo, over archive bytes in memory (tests, fuzzing). `name` stands for the path in
// messages. Tensors view `bytes` (kept alive by them) where open_nemo would map the file.
NemoArchive open_nemo_from_memory(std::vector<uint8_t> bytes, const std::string& name = "<memory>");

// Reads the tensors of a torch.save zip checkpoint in bytes [data, data + size): finds the
// "<prefix>/data.pkl" record, requires byte order "little", unpickles it and builds the tensors,
// checking every storage against its record. Contiguous tensors whose data is aligned for their
// dtype view the bytes (`owner` keeps them alive); others are copied, honouring strides and storage
// offsets. `context` prefixes error messages.
Checkpoint read_torch_checkpoint(const uint8_t* data, size_t size, std::shared_ptr<void> owner,
                                 const std::string& context);

}  // namespace parakeet
