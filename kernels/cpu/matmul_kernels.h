#pragma once
// Internal to the CPU matmul: the prepared problem one thread works on, and the loop that walks output rows and
// activation-row tiles. The per-type kernels live in matmul_scalar.cpp (portable) and matmul_avx2.cpp.
#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "tensor/tensor_types.h"

namespace pagedllm::matmul_detail {

struct MatmulProblem {
  const uint8_t* weights;          // [N, weight_row_bytes]
  size_t weight_row_bytes;
  int64_t n_cols;                  // K
  int64_t n_rows;                  // N
  const uint8_t* activations;      // [M, activation_row_bytes] in activation_type(weight type)
  size_t activation_row_bytes;
  const float* activation_scales;  // [M, K / 32] (Q8_0 / Q8_1 activations, else null)
  const float* activation_sums;    // [M, K / 32] (Q8_1 activations, else null)
  const int32_t* activation_block_sums;  // [M, K / 32] Σ q of each block (Q8_0 activations, else null)
  int64_t n_activation_rows;       // M
  float* output;                   // [M, N]
};

// Computes output[m][n] for every m and n_begin <= n < n_end.
using RowRangeKernel = void (*)(const MatmulProblem& problem, int64_t n_begin, int64_t n_end);

// Always available for every computable type.
RowRangeKernel scalar_row_kernel(GgmlType weight_type);
// nullptr when this build has no SIMD kernel for the type.
RowRangeKernel simd_row_kernel(GgmlType weight_type);
// The SIMD kernels of the 32-element block formats (matmul_avx2_block32.cpp); nullptr for other types.
RowRangeKernel simd_block32_row_kernel(GgmlType weight_type);
// The SIMD kernels of Q4_K, Q5_K and Q6_K (matmul_avx2_kquants.cpp); nullptr for other types.
RowRangeKernel simd_kquant_row_kernel(GgmlType weight_type);
const char* simd_name();

// Activation rows a kernel sweeps per weight row before moving on: the chunk stays in L2 (about 1 MiB) while each
// weight row, loaded once from memory, is reused from L1 for every row of the chunk.
constexpr size_t kActivationChunkBytes = size_t{1} << 20;
// Activation rows one tile call computes together, sharing each weight block it loads and unpacks.
constexpr int kMaxTileRows = 4;

// Rows [chunk_begin, chunk_end) of the activations against weight rows [n, n + kWeightRows), in tiles of
// kMaxTileRows activation rows and a remainder of 3, 2 or 1.
template <typename Tile, int kWeightRows>
void sweep_activation_rows(const MatmulProblem& problem, int64_t n, int64_t chunk_begin, int64_t chunk_end) {
  float out[kWeightRows * kMaxTileRows];  // [kWeightRows, rows of the tile]
  const auto store = [&](int64_t m, int rows) {
    for (int w = 0; w < kWeightRows; ++w) {
      for (int r = 0; r < rows; ++r) problem.output[(m + r) * problem.n_rows + n + w] = out[w * rows + r];
    }
  };
  int64_t m = chunk_begin;
  for (; m + kMaxTileRows <= chunk_end; m += kMaxTileRows) {
    Tile::template run<kWeightRows, kMaxTileRows>(problem, n, m, out);
    store(m, kMaxTileRows);
  }
  switch (chunk_end - m) {
    case 3: Tile::template run<kWeightRows, 3>(problem, n, m, out); store(m, 3); break;
    case 2: Tile::template run<kWeightRows, 2>(problem, n, m, out); store(m, 2); break;
    case 1: Tile::template run<kWeightRows, 1>(problem, n, m, out); store(m, 1); break;
    default: break;
  }
}

// The loop every kernel shares. Tile::run<W, R>(problem, n, m, out) computes out[w * R + r] = activation row m + r
// · weight row n + w for w < W, r < R; W is Tile::kWeightRows (weight rows that share each activation load) or 1
// for the last rows of the range.
template <typename Tile>
void run_row_range(const MatmulProblem& problem, int64_t n_begin, int64_t n_end) {
  constexpr int kWeightRows = Tile::kWeightRows;
  const int64_t rows_per_chunk =
      std::max<int64_t>(kMaxTileRows, static_cast<int64_t>(kActivationChunkBytes / problem.activation_row_bytes));
  for (int64_t chunk_begin = 0; chunk_begin < problem.n_activation_rows; chunk_begin += rows_per_chunk) {
    const int64_t chunk_end = std::min(problem.n_activation_rows, chunk_begin + rows_per_chunk);
    int64_t n = n_begin;
    for (; n + kWeightRows <= n_end; n += kWeightRows) {
      sweep_activation_rows<Tile, kWeightRows>(problem, n, chunk_begin, chunk_end);
    }
    if constexpr (kWeightRows > 1) {
      for (; n < n_end; ++n) sweep_activation_rows<Tile, 1>(problem, n, chunk_begin, chunk_end);
    }
  }
}

}  // namespace pagedllm::matmul_detail
