// AVX2 tiles for the CPU matmul of K-quant and float weights: integer dot products of 32 weights with 32
// activations per instruction pair (one instruction with VNNI), f32 FMAs for float weights. Each tile computes a
// weight row (two for float weights) against up to kMaxTileRows activation rows, so a weight block is loaded and
// unpacked once for all. The 32-element block formats have their own kernels (matmul_avx2_block32.cpp).
// Built empty when the compiler does not target AVX2 (simd_row_kernel then returns nullptr).
#include "kernels/cpu/matmul_kernels.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>

#include <type_traits>

#include "kernels/cpu/matmul_avx2_common.h"
#include "tensor/float16.h"
#include "tensor/quant_blocks.h"

namespace pagedllm::matmul_detail {
namespace {

// ---------------------------------------------------------------- K-quants (256-element super-blocks)

// Σ over the 16 groups of 16 activations of weight_per_group[g] · bsums[g], as 8 int32 lanes.
__m256i weighted_group_sums(__m256i weight_per_group_i16, const BlockQ8_K& a) {
  return _mm256_madd_epi16(weight_per_group_i16, load_32_bytes(a.bsums));
}

// A vector of int16 with `low` in lanes 0..7 and `high` in lanes 8..15: after maddubs, lanes 0..7 come from bytes
// 0..15 of a 32-byte vector and lanes 8..15 from bytes 16..31.
__m256i int16_halves(int low, int high) {
  return _mm256_set_m128i(_mm_set1_epi16(static_cast<short>(high)), _mm_set1_epi16(static_cast<short>(low)));
}

// Q4_K / Q5_K: y = d·sc_b·q − dmin·m_b. The integer part Σ_b sc_b·(Σ q·a) accumulates in int32 lanes, the min
// part is Σ_b m_b·(Σ a) from the activation block sums.
template <bool kFiveBits>
struct Q4KTile {
  using WeightBlock = std::conditional_t<kFiveBits, BlockQ5_K, BlockQ4_K>;
  static constexpr int kWeightRows = 1;
  template <int kW, int kRows>
  static void run(const MatmulProblem& problem, int64_t n, int64_t m, float* out /* [1, kRows] */) {
    static_assert(kW == 1);
    const int64_t n_blocks = problem.n_cols / 256;
    const auto* weights = reinterpret_cast<const WeightBlock*>(problem.weights + n * problem.weight_row_bytes);
    const BlockQ8_K* activations[kRows];  // [kRows][n_blocks]
    __m256 accumulators[kRows];
    for (int r = 0; r < kRows; ++r) {
      activations[r] = reinterpret_cast<const BlockQ8_K*>(problem.activations +
                                                          (m + r) * problem.activation_row_bytes);
      accumulators[r] = _mm256_setzero_ps();
    }
    const __m256i low_nibbles = _mm256_set1_epi8(0x0F);
    for (int64_t b = 0; b < n_blocks; ++b) {
      const WeightBlock& w = weights[b];
      const Q4KScalesMins unpacked = q4_k_unpack_scales_mins(w.scales);
      const uint64_t scales = unpacked.scales_0_3 | (static_cast<uint64_t>(unpacked.scales_4_7) << 32);
      const uint64_t mins = unpacked.mins_0_3 | (static_cast<uint64_t>(unpacked.mins_4_7) << 32);
      // Each min applies to two groups of 16 (the bsums granularity): bytes m0 m0 m1 m1 ... widened to int16.
      const __m128i min_bytes = _mm_cvtsi64_si128(static_cast<long long>(mins));
      const __m256i mins_per_group = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(min_bytes, min_bytes));
      __m256i integer_sums[kRows];
      for (int r = 0; r < kRows; ++r) integer_sums[r] = _mm256_setzero_si256();
      __m256i high_bits;
      if constexpr (kFiveBits) high_bits = load_32_bytes(w.qh);
      for (int pair = 0; pair < 4; ++pair) {  // sub-blocks 2·pair (low nibbles) and 2·pair + 1 (high nibbles)
        const __m256i packed = load_32_bytes(w.qs + 32 * pair);
        __m256i q_low = _mm256_and_si256(packed, low_nibbles);
        __m256i q_high = _mm256_and_si256(_mm256_srli_epi16(packed, 4), low_nibbles);
        if constexpr (kFiveBits) {
          const __m256i fifth = _mm256_set1_epi8(16);
          // Bit (2·pair) of qh[l] for the first sub-block, bit (2·pair + 1) for the second, moved to bit 4.
          q_low = _mm256_or_si256(q_low, _mm256_and_si256(shift_left_bytes(high_bits, 4 - 2 * pair), fifth));
          q_high = _mm256_or_si256(q_high, _mm256_and_si256(shift_left_bytes(high_bits, 3 - 2 * pair), fifth));
        }
        const __m256i scale_low = _mm256_set1_epi16(static_cast<short>((scales >> (16 * pair)) & 0xFF));
        const __m256i scale_high = _mm256_set1_epi16(static_cast<short>((scales >> (16 * pair + 8)) & 0xFF));
        for (int r = 0; r < kRows; ++r) {
          const int8_t* a = activations[r][b].qs + 64 * pair;
          const __m256i low_products = _mm256_maddubs_epi16(q_low, load_32_bytes(a));
          const __m256i high_products = _mm256_maddubs_epi16(q_high, load_32_bytes(a + 32));
          integer_sums[r] = _mm256_add_epi32(integer_sums[r], _mm256_madd_epi16(low_products, scale_low));
          integer_sums[r] = _mm256_add_epi32(integer_sums[r], _mm256_madd_epi16(high_products, scale_high));
        }
      }
      const float d = fp16_to_f32(w.d);
      const float dmin = fp16_to_f32(w.dmin);
      for (int r = 0; r < kRows; ++r) {
        const BlockQ8_K& a = activations[r][b];
        const __m256 min_sums = _mm256_cvtepi32_ps(weighted_group_sums(mins_per_group, a));
        accumulators[r] = _mm256_fmadd_ps(_mm256_set1_ps(d * a.d), _mm256_cvtepi32_ps(integer_sums[r]),
                                          accumulators[r]);
        accumulators[r] = _mm256_fnmadd_ps(_mm256_set1_ps(dmin * a.d), min_sums, accumulators[r]);
      }
    }
    for (int r = 0; r < kRows; ++r) out[r] = horizontal_sum(accumulators[r]);
  }

  // Shift every byte left by `count` (negative: right), within the byte.
  static __m256i shift_left_bytes(__m256i v, int count) {
    // 16-bit shifts move bits across bytes, but callers mask the single bit they want, which is taken from the
    // same byte whichever way it moves.
    return count >= 0 ? _mm256_sll_epi16(v, _mm_cvtsi32_si128(count)) : _mm256_srl_epi16(v, _mm_cvtsi32_si128(-count));
  }
};

// Q6_K: q = (low4 | high2 << 4) − 32 with a signed 8-bit scale per 16 elements. The products use the unsigned
// q + 32 and subtract 32 · Σ_s sc_s · (Σ a) from the block sums afterwards.
struct Q6KTile {
  static constexpr int kWeightRows = 1;
  template <int kW, int kRows>
  static void run(const MatmulProblem& problem, int64_t n, int64_t m, float* out /* [1, kRows] */) {
    static_assert(kW == 1);
    const int64_t n_blocks = problem.n_cols / 256;
    const auto* weights = reinterpret_cast<const BlockQ6_K*>(problem.weights + n * problem.weight_row_bytes);
    const BlockQ8_K* activations[kRows];  // [kRows][n_blocks]
    __m256 accumulators[kRows];
    for (int r = 0; r < kRows; ++r) {
      activations[r] = reinterpret_cast<const BlockQ8_K*>(problem.activations +
                                                          (m + r) * problem.activation_row_bytes);
      accumulators[r] = _mm256_setzero_ps();
    }
    const __m256i low_nibbles = _mm256_set1_epi8(0x0F);
    const __m256i high_pair = _mm256_set1_epi8(0x30);
    for (int64_t b = 0; b < n_blocks; ++b) {
      const BlockQ6_K& w = weights[b];
      const __m256i scales_per_group =
          _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w.scales)));
      __m256i integer_sums[kRows];
      for (int r = 0; r < kRows; ++r) integer_sums[r] = _mm256_setzero_si256();
      for (int half = 0; half < 2; ++half) {
        const __m256i high = load_32_bytes(w.qh + 32 * half);
        const __m256i low_first = load_32_bytes(w.ql + 64 * half);
        const __m256i low_second = load_32_bytes(w.ql + 64 * half + 32);
        // Group g of this half: low nibble of ql (g < 2) or high nibble (g >= 2), bits 2g..2g+1 of qh.
        const __m256i q[4] = {
            _mm256_or_si256(_mm256_and_si256(low_first, low_nibbles),
                            _mm256_and_si256(_mm256_slli_epi16(high, 4), high_pair)),
            _mm256_or_si256(_mm256_and_si256(low_second, low_nibbles),
                            _mm256_and_si256(_mm256_slli_epi16(high, 2), high_pair)),
            _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(low_first, 4), low_nibbles),
                            _mm256_and_si256(high, high_pair)),
            _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(low_second, 4), low_nibbles),
                            _mm256_and_si256(_mm256_srli_epi16(high, 2), high_pair)),
        };
        for (int group = 0; group < 4; ++group) {
          const int sub_block = 8 * half + 2 * group;  // of 16 elements
          const __m256i scale = int16_halves(w.scales[sub_block], w.scales[sub_block + 1]);
          for (int r = 0; r < kRows; ++r) {
            const int8_t* a = activations[r][b].qs + 128 * half + 32 * group;
            const __m256i products = _mm256_maddubs_epi16(q[group], load_32_bytes(a));
            integer_sums[r] = _mm256_add_epi32(integer_sums[r], _mm256_madd_epi16(products, scale));
          }
        }
      }
      const float d = fp16_to_f32(w.d);
      for (int r = 0; r < kRows; ++r) {
        const BlockQ8_K& a = activations[r][b];
        const __m256i offset = _mm256_slli_epi32(weighted_group_sums(scales_per_group, a), 5);  // 32 · Σ sc·Σa
        const __m256 sums = _mm256_cvtepi32_ps(_mm256_sub_epi32(integer_sums[r], offset));
        accumulators[r] = _mm256_fmadd_ps(_mm256_set1_ps(d * a.d), sums, accumulators[r]);
      }
    }
    for (int r = 0; r < kRows; ++r) out[r] = horizontal_sum(accumulators[r]);
  }
};

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
    case GgmlType::Q4_K: return run_row_range<Q4KTile<false>>;
    case GgmlType::Q5_K: return run_row_range<Q4KTile<true>>;
    case GgmlType::Q6_K: return run_row_range<Q6KTile>;
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
