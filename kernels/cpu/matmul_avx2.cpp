// AVX2 tiles for the CPU matmul of float weights (f32 FMAs; two weight rows against up to kMaxTileRows activation
// rows, so each weight load serves all of them) and the dispatch to the kernels of the block formats:
// matmul_avx2_block32.cpp (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0) and matmul_avx2_kquants.cpp (Q4_K, Q5_K, Q6_K).
// Built empty when the compiler does not target AVX2 (simd_row_kernel then returns nullptr).
#include "kernels/cpu/matmul_kernels.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>

#include "kernels/cpu/matmul_avx2_common.h"
#include "tensor/float16.h"
#include "tensor/quant_blocks.h"

namespace pagedllm::matmul_detail {
namespace {

// ---------------------------------------------------------------- float weights

// 8 weights widened to f32.
template <GgmlType kType>
__m256 load_8_weights(const uint8_t* row, int64_t k) {
  if constexpr (kType == GgmlType::F32) {
    return _mm256_loadu_ps(reinterpret_cast<const float*>(row) + k);
  } else if constexpr (kType == GgmlType::F16) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 2 * k)));
  } else {  // BF16: the 16 bits are the top of an f32
    const __m256i widened = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 2 * k)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(widened, 16));
  }
}

// Two weight rows share every activation load (halving the L2 traffic of prefill), and each (weight row,
// activation row) pair keeps two accumulators to hide the FMA latency. Every pair runs the same operations
// whatever the tile shape, so results do not depend on tiling or thread count. The tail (K % 16) is scalar.
template <GgmlType kType>
struct FloatTile {
  static constexpr int kWeightRows = 2;
  template <int kW, int kRows>
  static void run(const MatmulProblem& problem, int64_t n, int64_t m, float* out /* [kW, kRows] */) {
    const int64_t n_cols = problem.n_cols;
    const uint8_t* weight_rows[kW];
    const float* activations[kRows];  // [kRows][K]
    __m256 first[kW][kRows], second[kW][kRows];
    for (int w = 0; w < kW; ++w) weight_rows[w] = problem.weights + (n + w) * problem.weight_row_bytes;
    for (int r = 0; r < kRows; ++r) {
      activations[r] = reinterpret_cast<const float*>(problem.activations + (m + r) * problem.activation_row_bytes);
      for (int w = 0; w < kW; ++w) {
        first[w][r] = _mm256_setzero_ps();
        second[w][r] = _mm256_setzero_ps();
      }
    }
    int64_t k = 0;
    for (; k + 16 <= n_cols; k += 16) {
      __m256 w0[kW], w1[kW];
      for (int w = 0; w < kW; ++w) {
        w0[w] = load_8_weights<kType>(weight_rows[w], k);
        w1[w] = load_8_weights<kType>(weight_rows[w], k + 8);
      }
      for (int r = 0; r < kRows; ++r) {
        const __m256 a0 = _mm256_loadu_ps(activations[r] + k);
        const __m256 a1 = _mm256_loadu_ps(activations[r] + k + 8);
        for (int w = 0; w < kW; ++w) {
          first[w][r] = _mm256_fmadd_ps(w0[w], a0, first[w][r]);
          second[w][r] = _mm256_fmadd_ps(w1[w], a1, second[w][r]);
        }
      }
    }
    for (int w = 0; w < kW; ++w) {
      for (int r = 0; r < kRows; ++r) {
        float sum = horizontal_sum(_mm256_add_ps(first[w][r], second[w][r]));
        for (int64_t tail = k; tail < n_cols; ++tail) {
          sum += load_float_weight<kType>(weight_rows[w], tail) * activations[r][tail];
        }
        out[w * kRows + r] = sum;
      }
    }
  }
};

}  // namespace

RowRangeKernel simd_row_kernel(GgmlType weight_type) {
  switch (weight_type) {
    case GgmlType::F32: return run_row_range<FloatTile<GgmlType::F32>>;
    case GgmlType::F16: return run_row_range<FloatTile<GgmlType::F16>>;
    case GgmlType::BF16: return run_row_range<FloatTile<GgmlType::BF16>>;
    case GgmlType::Q4_0: case GgmlType::Q4_1: case GgmlType::Q5_0: case GgmlType::Q5_1: case GgmlType::Q8_0:
      return simd_block32_row_kernel(weight_type);
    case GgmlType::Q4_K: case GgmlType::Q5_K: case GgmlType::Q6_K:
      return simd_kquant_row_kernel(weight_type);
    default: return nullptr;
  }
}

const char* simd_name() {
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
  return "avx2+avx512vnni";
#elif defined(__AVXVNNI__)
  return "avx2+avxvnni";
#else
  return "avx2";
#endif
}

}  // namespace pagedllm::matmul_detail

#else  // no AVX2: the scalar kernels serve every type

namespace pagedllm::matmul_detail {
RowRangeKernel simd_row_kernel(GgmlType) { return nullptr; }
const char* simd_name() { return "scalar"; }
}  // namespace pagedllm::matmul_detail

#endif
