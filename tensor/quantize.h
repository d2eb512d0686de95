#pragma once
// Reference quantizers: rows of f32 -> a GGUF tensor type. Plain round-to-nearest schemes (with a small scale/min
// search for the K-quants), not llama.cpp's importance-weighted ones: good enough for tests, synthetic benchmark
// models and the activation formats, not meant to produce release-quality model files.
#include <cstddef>
#include <cstdint>

#include "tensor/tensor_types.h"

namespace pagedllm {

// Types quantize_row accepts: F32 F16 BF16 Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q8_1 Q4_K Q5_K Q6_K Q8_K.
bool can_quantize(GgmlType type);

// Writes row_bytes(type, n) bytes to dst and returns that count. n must be a multiple of the block size.
// Throws Error for a type without a quantizer or a bad n.
size_t quantize_row(GgmlType type, const float* src /* [n] */, void* dst, int64_t n);

}  // namespace pagedllm
