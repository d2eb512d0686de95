#pragma once
// The element type of the paged K/V pools. Shared by the engine (which sizes and fills the pools) and the kernels
// (which read them), so it lives below both.
//
// F16 and F32 store each element; Q8_0 and Q4_0 store a row (one token's K or V for one KV head, head_dim
// elements) as head_dim / 32 consecutive blocks of tensor/quant_blocks.h, so a quantized type needs a head_dim that
// is a multiple of 32.
#include <cstddef>
#include <optional>
#include <string_view>

#include "tensor/quant_blocks.h"

namespace pagedllm {

enum class KvDtype { F16, F32, Q8_0, Q4_0 };

inline constexpr bool kv_dtype_is_quantized(KvDtype dtype) {
  return dtype == KvDtype::Q8_0 || dtype == KvDtype::Q4_0;
}

// Elements a row must be a whole number of: the quantization block along head_dim, 1 for the float types.
inline constexpr int kv_dtype_block_elements(KvDtype dtype) { return kv_dtype_is_quantized(dtype) ? 32 : 1; }

// Bytes of one row of n elements (n a multiple of kv_dtype_block_elements).
inline constexpr size_t kv_row_bytes(KvDtype dtype, int n) {
  const auto count = static_cast<size_t>(n);
  switch (dtype) {
    case KvDtype::F16: return 2 * count;
    case KvDtype::F32: return 4 * count;
    case KvDtype::Q8_0: return count / 32 * sizeof(BlockQ8_0);
    case KvDtype::Q4_0: return count / 32 * sizeof(BlockQ4_0);
  }
  return 0;
}

inline constexpr std::string_view kv_dtype_name(KvDtype dtype) {
  switch (dtype) {
    case KvDtype::F16: return "f16";
    case KvDtype::F32: return "f32";
    case KvDtype::Q8_0: return "q8_0";
    case KvDtype::Q4_0: return "q4_0";
  }
  return "?";
}

// "f16", "f32", "q8_0", "q4_0" (the spellings of llama.cpp's -ctk / -ctv); nullopt for anything else.
inline std::optional<KvDtype> parse_kv_dtype(std::string_view name) {
  for (KvDtype dtype : {KvDtype::F16, KvDtype::F32, KvDtype::Q8_0, KvDtype::Q4_0}) {
    if (name == kv_dtype_name(dtype)) return dtype;
  }
  return std::nullopt;
}

// For help texts and messages.
inline constexpr const char* kKvDtypeNames = "f16, f32, q8_0, q4_0";

}  // namespace pagedllm
