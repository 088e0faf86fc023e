#include "io/nemo_archive.h"

#include <cstring>

#include "core/error.h"
#include "io/mapped_file.h"
#include "io/pickle.h"
#include "io/tar_reader.h"
#include "io/zip_reader.h"

namespace parakeet {

namespace {

constexpr const char* kConfigMember = "model_config.yaml";
constexpr const char* kWeightsMember = "model_weights.ckpt";

bool is_contiguous(const PickledTensor& t) {
    int64_t expected = 1;
    for (size_t d = t.shape.size(); d-- > 0;) {
        if (t.shape[d] == 1) continue;
        if (t.strides[d] != expected) return false;
        expected *= t.shape[d];
    }
    return true;
}

// Copies the elements of a strided tensor into a new contiguous one. The unpickler has checked that
// every element index lies inside the storage.
Tensor gather(const uint8_t* storage, const PickledTensor& t) {
    Tensor out = Tensor::empty(t.shape, t.dtype);
    const size_t item = dtype_size(t.dtype);
    const int64_t numel = out.numel();
    auto* dst = static_cast<uint8_t*>(out.raw());
    const size_t rank = t.shape.size();
    std::vector<int64_t> index(rank, 0);
    int64_t src = t.storage_offset;
    for (int64_t n = 0; n < numel; ++n) {
        std::memcpy(dst + static_cast<size_t>(n) * item, storage + static_cast<size_t>(src) * item,
                    item);
        for (size_t d = rank; d-- > 0;) {
            if (++index[d] < t.shape[d]) {
                src += t.strides[d];
                break;
            }
            src -= (t.shape[d] - 1) * t.strides[d];
            index[d] = 0;
        }
    }
    return out;
}

NemoArchive open_nemo_bytes(const uint8_t* data, size_t size, const std::shared_ptr<void>& owner,
                            const std::string& path) {
    TarListing listing = read_tar(data, size, path, [](const TarMember& m) {
        if (m.name == kWeightsMember) return !m.data_offset.has_value();
        return m.size <= kNemoMaxMemberBytes;
    });

    NemoArchive archive;
    archive.path = path;
    TarMember* weights = nullptr;
    for (TarMember& m : listing.members) {
        if (m.name == kWeightsMember) {
            weights = &m;
        } else if (m.has_contents) {
            archive.members.emplace(m.name, std::move(m.contents));
        }
    }
    auto config = archive.members.find(kConfigMember);
    PK_CHECK(config != archive.members.end(), kFormat, "{}: no {} in the archive", path,
             kConfigMember);
    archive.config_yaml = config->second;
    PK_CHECK(weights != nullptr, kFormat, "{}: no {} in the archive", path, kWeightsMember);

    const std::string context = path + ": " + kWeightsMember;
    Checkpoint checkpoint;
    if (weights->data_offset) {
        checkpoint = read_torch_checkpoint(data + *weights->data_offset,
                                           static_cast<size_t>(weights->size), owner, context);
    } else {
        auto bytes = std::make_shared<std::string>(std::move(weights->contents));
        checkpoint = read_torch_checkpoint(reinterpret_cast<const uint8_t*>(bytes->data()),
                                           bytes->size(), bytes, context);
    }
    archive.tensor_names = std::move(checkpoint.tensor_names);
    archive.tensors = std::move(checkpoint.tensors);
    archive.weights_mapped = checkpoint.views && weights->data_offset.has_value();
    return archive;
}

}  // namespace

Checkpoint read_torch_checkpoint(const uint8_t* data, size_t size, std::shared_ptr<void> owner,
                                 const std::string& context) {
    ZipReader zip(data, size, context);

    const ZipEntry* pickle = nullptr;
    for (const ZipEntry& e : zip.entries()) {
        std::string_view name = e.name;
        if (name == "data.pkl" ||
            (name.size() > 9 && name.substr(name.size() - 9) == "/data.pkl")) {
            PK_CHECK(pickle == nullptr, kFormat, "{}: several data.pkl records ('{}' and '{}')",
                     context, printable(pickle ? pickle->name : ""), printable(e.name));
            pickle = &e;
        }
    }
    PK_CHECK(pickle != nullptr, kFormat, "{}: no data.pkl record (not a torch.save checkpoint)",
             context);
    const std::string prefix = pickle->name.substr(0, pickle->name.size() - 8);

    if (const ZipEntry* order = zip.find(prefix + "byteorder")) {
        std::string_view value = zip.read(*order);
        while (!value.empty() &&
               (value.back() == '\n' || value.back() == '\r' || value.back() == ' ')) {
            value.remove_suffix(1);
        }
        PK_CHECK(value == "little", kUnsupported,
                 "{}: byte order '{}' is not supported (only 'little')", context, printable(value));
    }

    StateDict state =
        unpickle_state_dict(zip.data(*pickle), static_cast<size_t>(pickle->size), context);

    // Copies are bounded so that hostile strides (e.g. a huge shape with stride 0) cannot demand
    // memory out of proportion to the checkpoint.
    const uint64_t copy_budget = 2 * static_cast<uint64_t>(size) + (uint64_t{64} << 20);
    uint64_t copied = 0;

    Checkpoint out;
    out.views = true;
    for (const PickledTensor& t : state.tensors) {
        const std::string name = printable(t.name);
        const std::string key = printable(t.storage_key);
        const PickledStorage& storage = state.storages.at(t.storage_key);
        const std::string record_name = prefix + "data/" + t.storage_key;
        const ZipEntry* record = zip.find(record_name);
        PK_CHECK(record != nullptr, kFormat, "{}: storage '{}' of tensor '{}' has no record '{}'",
                 context, key, name, printable(record_name));
        const size_t item = dtype_size(t.dtype);
        uint64_t storage_bytes = 0;
        PK_CHECK(
            !__builtin_mul_overflow(static_cast<uint64_t>(storage.numel), item, &storage_bytes) &&
                storage_bytes <= record->size,
            kFormat,
            "{}: storage '{}' of tensor '{}' points past the end of its record ({} x {} needs more "
            "than the {} bytes of '{}')",
            context, key, name, storage.numel, dtype_name(t.dtype), record->size,
            printable(record_name));
        const uint8_t* base = zip.data(*record);
        const uint8_t* first = base + static_cast<size_t>(t.storage_offset) * item;

        Tensor tensor;
        if (is_contiguous(t) && reinterpret_cast<uintptr_t>(first) % item == 0) {
            tensor = Tensor::view(const_cast<uint8_t*>(first), t.shape, t.dtype, owner);
        } else {
            uint64_t bytes = 0;
            PK_CHECK(!__builtin_mul_overflow(static_cast<uint64_t>(shape_numel(t.shape)), item,
                                             &bytes) &&
                         bytes <= copy_budget - copied,
                     kFormat,
                     "{}: tensor '{}' (shape {}, strides {}) would take the copied tensors "
                     "past {} bytes (overlapping strides?)",
                     context, name, shape_str(t.shape), shape_str(t.strides), copy_budget);
            copied += bytes;
            tensor = gather(base, t);
            out.views = false;
        }
        out.tensor_names.push_back(t.name);
        out.tensors.emplace(t.name, std::move(tensor));
    }
    return out;
}

NemoArchive open_nemo(const std::string& path) {
    std::shared_ptr<MappedFile> file = MappedFile::open(path);
    return open_nemo_bytes(file->data(), file->size(), file, path);
}

NemoArchive open_nemo_from_memory(std::vector<uint8_t> bytes, const std::string& name) {
    auto owned = std::make_shared<std::vector<uint8_t>>(std::move(bytes));
    return open_nemo_bytes(owned->data(), owned->size(), owned, name);
}

}  // namespace parakeet
