#pragma once
// Whole rows of a GGUF tensor -> f32, for every type with can_compute. Used for embedding
// lookups, tests and tools; the matrix products never dequantize a whole weight matrix.
#include <cstdint>

#include "tensor/tensor_types.h"

namespace pagedllm {

// src holds row_bytes(type, n) bytes; dst receives n floats. n must be a multiple of the type's block size.
// Throws Error for a type that cannot be computed (IQ*, TQ*, integer types) or a bad n.
// Q8_1 is accepted too although it is only an activation format (y = d · q), so tests can undo it.
void dequantize_row(GgmlType type, const void* src, float* dst, int64_t n);

}  // namespace pagedllm
