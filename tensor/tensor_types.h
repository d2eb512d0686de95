#pragma once
// ggml tensor types as stored in GGUF: ids, block sizes and bytes per block (ggml's type traits).
// The table knows every id llama.cpp accepts so that `info` can describe any file; `can_compute` says which ones
// this engine can dequantize and multiply.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

namespace pagedllm {

enum class GgmlType : uint32_t {
  F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q8_1 = 9,
  Q2_K = 10, Q3_K = 11, Q4_K = 12, Q5_K = 13, Q6_K = 14, Q8_K = 15,
  IQ2_XXS = 16, IQ2_XS = 17, IQ3_XXS = 18, IQ1_S = 19, IQ4_NL = 20, IQ3_S = 21, IQ2_S = 22, IQ4_XS = 23,
  I8 = 24, I16 = 25, I32 = 26, I64 = 27, F64 = 28, IQ1_M = 29, BF16 = 30, TQ1_0 = 34, TQ2_0 = 35,
};

constexpr int kQK_K = 256;  // elements in a K-quant super-block

struct TypeTraits {
  GgmlType type;
  std::string_view name;
  int block_size;      // elements per block
  int bytes_per_block;
  bool can_compute;    // dequantize_row and the CPU dot products support it
};

// nullptr when `id` is not a type llama.cpp accepts (removed ids, ids past the end).
const TypeTraits* find_type_traits(uint32_t id);
const TypeTraits& type_traits(GgmlType type);
inline std::string_view type_name(GgmlType type) { return type_traits(type).name; }
std::optional<GgmlType> type_from_name(std::string_view name);  // case-insensitive, e.g. "q4_k"

// Bytes of one row of `n_elements` (must be a multiple of the block size).
inline size_t row_bytes(GgmlType type, int64_t n_elements) {
  const TypeTraits& t = type_traits(type);
  return static_cast<size_t>(n_elements / t.block_size) * static_cast<size_t>(t.bytes_per_block);
}

}  // namespace pagedllm
