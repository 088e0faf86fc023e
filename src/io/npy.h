// NumPy .npy files (format versions 1.0, 2.0 and 3.0), for fixtures and tensor dumps.
//
// dtype mapping (descr <-> DType): <f4 kF32, <f8 kF64, <f2 kF16, <i8 kI64, <i4 kI32, <i2 kI16,
// |i1 kI8, |u1 kU8, |b1 kBool. Big-endian descrs (">f4", ...) are read and byte-swapped; "=" means
// native (little-endian here). Other dtypes (unsigned wider than 8 bits, complex, strings, objects)
// throw kUnsupported. bfloat16 has no .npy form: writing a kBF16 tensor throws kUnsupported.
// Only C order: fortran_order True throws kUnsupported.
//
// Errors: a missing/unreadable file is kIo; bad magic, an unparsable header, or a file shorter or
// longer than its header declares is kFormat. Messages name the file.
#pragma once

#include <cstddef>
#include <string>

#include "core/tensor.h"

namespace parakeet {

// Reads a .npy file into a new CPU tensor (a scalar file gives a rank-0 tensor with one element).
Tensor read_npy(const std::string& path);

// Parses .npy bytes held in memory; `name` is used in error messages.
Tensor parse_npy(const void* data, size_t size, const std::string& name = "<memory>");

// Writes a CPU tensor as .npy (version 1.0, or 2.0 when the header does not fit 1.0), the same
// bytes numpy.save writes: header padded with spaces to a multiple of 64 bytes, ending in '\n'.
void write_npy(const std::string& path, const Tensor& tensor);

// The bytes write_npy writes.
std::string serialize_npy(const Tensor& tensor);

}  // namespace parakeet
