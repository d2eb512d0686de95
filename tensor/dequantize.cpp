#include "tensor/dequantize.h"

#include <cstring>

#include "common/error.h"
#include "tensor/quant_blocks.h"

namespace pagedllm {
namespace {

template <typename Block>
void dequantize_blocks(const void* src, float* dst, int64_t n) {
  const Block* blocks = static_cast<const Block*>(src);  // [n / Block::kSize]
  const int64_t n_blocks = n / Block::kSize;
  for (int64_t i = 0; i < n_blocks; ++i) dequantize_block(blocks[i], dst + i * Block::kSize);
}

}  // namespace

void dequantize_row(GgmlType type, const void* src, float* dst, int64_t n) {
  const TypeTraits& traits = type_traits(type);
  if (!traits.can_compute && type != GgmlType::Q8_1) fail("cannot dequantize tensor type {}", traits.name);
  if (n < 0 || n % traits.block_size != 0) {
    fail("cannot dequantize {} elements of type {}: not a multiple of its block size {}", n, traits.name,
         traits.block_size);
  }
  switch (type) {
    case GgmlType::F32:
      std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
      return;
    case GgmlType::F16: {
      const uint16_t* halves = static_cast<const uint16_t*>(src);  // [n]
      for (int64_t i = 0; i < n; ++i) dst[i] = fp16_to_f32(halves[i]);
      return;
    }
    case GgmlType::BF16: {
      const uint16_t* values = static_cast<const uint16_t*>(src);  // [n]
      for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(values[i]);
      return;
    }
    case GgmlType::Q4_0: return dequantize_blocks<BlockQ4_0>(src, dst, n);
    case GgmlType::Q4_1: return dequantize_blocks<BlockQ4_1>(src, dst, n);
    case GgmlType::Q5_0: return dequantize_blocks<BlockQ5_0>(src, dst, n);
    case GgmlType::Q5_1: return dequantize_blocks<BlockQ5_1>(src, dst, n);
    case GgmlType::Q8_0: return dequantize_blocks<BlockQ8_0>(src, dst, n);
    case GgmlType::Q8_1: return dequantize_blocks<BlockQ8_1>(src, dst, n);
    case GgmlType::Q2_K: return dequantize_blocks<BlockQ2_K>(src, dst, n);
    case GgmlType::Q3_K: return dequantize_blocks<BlockQ3_K>(src, dst, n);
    case GgmlType::Q4_K: return dequantize_blocks<BlockQ4_K>(src, dst, n);
    case GgmlType::Q5_K: return dequantize_blocks<BlockQ5_K>(src, dst, n);
    case GgmlType::Q6_K: return dequantize_blocks<BlockQ6_K>(src, dst, n);
    case GgmlType::Q8_K: return dequantize_blocks<BlockQ8_K>(src, dst, n);
    default: break;
  }
  fail("cannot dequantize tensor type {}", traits.name);
}

}  // namespace pagedllm
