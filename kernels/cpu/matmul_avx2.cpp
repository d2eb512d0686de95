// AVX2 tiles for the CPU matmul: integer dot products of 32 weights with 32 activations per instruction pair
// (one instruction with AVX-VNNI), f32 FMAs for float weights. Each tile computes a weight row (two for float
// weights) against up to kMaxTileRows activation rows, so a weight block is loaded and unpacked once for all.
// Built empty when the compiler does not target AVX2 (simd_row_kernel then returns nullptr).
#include "kernels/cpu/matmul_kernels.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>

#include <type_traits>

#include "tensor/float16.h"
#include "tensor/quant_blocks.h"

namespace pagedllm::matmul_detail {
namespace {

// ---------------------------------------------------------------- helpers

float horizontal_sum(__m128 v) {
  v = _mm_add_ps(v, _mm_movehl_ps(v, v));
  v = _mm_add_ss(v, _mm_movehdup_ps(v));
  return _mm_cvtss_f32(v);
}

float horizontal_sum(__m256 v) {
  return horizontal_sum(_mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1)));
}

// Σ of four adjacent u8·i8 products into each of 8 int32 lanes. Without VNNI the intermediate int16 pair sums
// cannot saturate here: the unsigned operands are at most 128 (|q| of a Q8_0 weight) and |a| <= 127.
__m256i dot_u8_i8(__m256i unsigned_bytes, __m256i signed_bytes) {
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
  return _mm256_dpbusd_epi32(_mm256_setzero_si256(), unsigned_bytes, signed_bytes);
#elif defined(__AVXVNNI__)
  return _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), unsigned_bytes, signed_bytes);
#else
  return _mm256_madd_epi16(_mm256_maddubs_epi16(unsigned_bytes, signed_bytes), _mm256_set1_epi16(1));
#endif
}

// 16 bytes of packed nibbles -> 32 bytes: low nibbles (elements 0..15) then high nibbles (elements 16..31).
__m256i unpack_nibbles(const uint8_t* packed /* [16] */) {
  const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(packed));
  const __m256i both = _mm256_set_m128i(_mm_srli_epi16(bytes, 4), bytes);
  return _mm256_and_si256(both, _mm256_set1_epi8(0x0F));
}

// Bit j of `bits` -> byte j = 0xFF when set, 0 when clear.
__m256i spread_bits_to_bytes(uint32_t bits) {
  // Byte j gets the byte of `bits` that holds bit j (shuffles work per 128-bit lane; the word is in both lanes).
  const __m256i byte_of_bit = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0);
  const __m256i spread = _mm256_shuffle_epi8(_mm256_set1_epi32(static_cast<int>(bits)), byte_of_bit);
  // Set every bit except bit (j % 8); the byte is all ones exactly when that bit was set.
  const __m256i all_but_bit = _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe);
  return _mm256_cmpeq_epi8(_mm256_or_si256(spread, all_but_bit), _mm256_set1_epi8(-1));
}

__m256i load_32_bytes(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }

// ---------------------------------------------------------------- 32-element blocks

// A weight block made ready for the integer dot product: `magnitude` holds unsigned bytes, `sign` the signs to
// give the activations (the sign trick turns i8·i8 into the u8·i8 the instruction wants). For the unsigned
// formats (Q4_1, Q5_1) `sign` is unused.
struct PreparedBlock {
  __m256i magnitude;
  __m256i sign;
};

struct Q4_0Format {
  using WeightBlock = BlockQ4_0;
  using ActivationBlock = BlockQ8_0;
  static constexpr bool kSigned = true;
  static constexpr bool kHasMin = false;
  static PreparedBlock prepare(const BlockQ4_0& w) {
    const __m256i q = _mm256_sub_epi8(unpack_nibbles(w.qs), _mm256_set1_epi8(8));
    return {_mm256_sign_epi8(q, q), q};
  }
};

struct Q4_1Format {
  using WeightBlock = BlockQ4_1;
  using ActivationBlock = BlockQ8_1;
  static constexpr bool kSigned = false;
  static constexpr bool kHasMin = true;
  static PreparedBlock prepare(const BlockQ4_1& w) { return {unpack_nibbles(w.qs), _mm256_setzero_si256()}; }
};

struct Q5_0Format {
  using WeightBlock = BlockQ5_0;
  using ActivationBlock = BlockQ8_0;
  static constexpr bool kSigned = true;
  static constexpr bool kHasMin = false;
  static PreparedBlock prepare(const BlockQ5_0& w) {
    // q − 16 in two's complement: a clear fifth bit means nibble − 16 = nibble | 0xF0, a set one leaves the nibble.
    const __m256i high = _mm256_andnot_si256(spread_bits_to_bytes(q5_high_bits(w.qh)), _mm256_set1_epi8(-16));
    const __m256i q = _mm256_or_si256(unpack_nibbles(w.qs), high);
    return {_mm256_sign_epi8(q, q), q};
  }
};

struct Q5_1Format {
  using WeightBlock = BlockQ5_1;
  using ActivationBlock = BlockQ8_1;
  static constexpr bool kSigned = false;
  static constexpr bool kHasMin = true;
  static PreparedBlock prepare(const BlockQ5_1& w) {
    const __m256i high = _mm256_and_si256(spread_bits_to_bytes(q5_high_bits(w.qh)), _mm256_set1_epi8(16));
    return {_mm256_or_si256(unpack_nibbles(w.qs), high), _mm256_setzero_si256()};
  }
};

struct Q8_0Format {
  using WeightBlock = BlockQ8_0;
  using ActivationBlock = BlockQ8_0;
  static constexpr bool kSigned = true;
  static constexpr bool kHasMin = false;
  static PreparedBlock prepare(const BlockQ8_0& w) {
    const __m256i q = load_32_bytes(w.qs);
    return {_mm256_sign_epi8(q, q), q};
  }
};

// Σ q_w·q_a of one block pair, as 8 int32 partial sums.
template <typename Format>
__m256i block_products(const PreparedBlock& w, const typename Format::ActivationBlock& a) {
  __m256i activations = load_32_bytes(a.qs);
  if constexpr (Format::kSigned) activations = _mm256_sign_epi8(activations, w.sign);
  return dot_u8_i8(w.magnitude, activations);
}

// Four f16 fields (block scales or mins) -> [v0, v1, v2, v3, v0, v1, v2, v3].
__m256 widen_4_halves_twice(uint16_t v0, uint16_t v1, uint16_t v2, uint16_t v3) {
  const __m128 four = _mm_cvtph_ps(_mm_setr_epi16(static_cast<short>(v0), static_cast<short>(v1),
                                                  static_cast<short>(v2), static_cast<short>(v3), 0, 0, 0, 0));
  return _mm256_set_m128(four, four);
}

// Σ_b d_w·d_a·(Σ q·a) (+ m_w·s_a for the formats with a min), with the activation scales and sums pre-widened to
// f32. Blocks go in groups of four: two rounds of hadd fold their integer sums into one vector
// [b0, b1, b2, b3 | b0, b1, b2, b3] (low and high halves of each block), so one conversion and one FMA against
// the four scale products serve four blocks, and the FMA chain is a quarter as long.
template <typename Format>
struct Block32Tile {
  static constexpr int kWeightRows = 1;
  template <int kW, int kRows>
  static void run(const MatmulProblem& problem, int64_t n, int64_t m, float* out /* [1, kRows] */) {
    static_assert(kW == 1);
    using WeightBlock = typename Format::WeightBlock;
    using ActivationBlock = typename Format::ActivationBlock;
    const int64_t n_blocks = problem.n_cols / 32;
    const auto* weights = reinterpret_cast<const WeightBlock*>(problem.weights + n * problem.weight_row_bytes);
    const ActivationBlock* activations[kRows];  // [kRows][n_blocks]
    const float* scales[kRows];                 // [kRows][n_blocks]
    const float* sums[kRows];                   // [kRows][n_blocks]
    __m256 accumulators[kRows];
    __m128 min_terms[kRows];
    for (int r = 0; r < kRows; ++r) {
      activations[r] = reinterpret_cast<const ActivationBlock*>(problem.activations +
                                                                 (m + r) * problem.activation_row_bytes);
      scales[r] = problem.activation_scales + (m + r) * n_blocks;
      sums[r] = Format::kHasMin ? problem.activation_sums + (m + r) * n_blocks : nullptr;
      accumulators[r] = _mm256_setzero_ps();
      min_terms[r] = _mm_setzero_ps();
    }
    int64_t b = 0;
    for (; b + 4 <= n_blocks; b += 4) {
      const WeightBlock* w = weights + b;
      const PreparedBlock w0 = Format::prepare(w[0]), w1 = Format::prepare(w[1]), w2 = Format::prepare(w[2]),
                          w3 = Format::prepare(w[3]);
      const __m256 weight_scales = widen_4_halves_twice(w[0].d, w[1].d, w[2].d, w[3].d);
      __m128 weight_mins = _mm_setzero_ps();
      if constexpr (Format::kHasMin) {
        weight_mins = _mm256_castps256_ps128(widen_4_halves_twice(w[0].m, w[1].m, w[2].m, w[3].m));
      }
      for (int r = 0; r < kRows; ++r) {
        const ActivationBlock* a = activations[r] + b;
        const __m256i products = _mm256_hadd_epi32(
            _mm256_hadd_epi32(block_products<Format>(w0, a[0]), block_products<Format>(w1, a[1])),
            _mm256_hadd_epi32(block_products<Format>(w2, a[2]), block_products<Format>(w3, a[3])));
        const __m256 scale =
            _mm256_mul_ps(weight_scales, _mm256_broadcast_ps(reinterpret_cast<const __m128*>(scales[r] + b)));
        accumulators[r] = _mm256_fmadd_ps(scale, _mm256_cvtepi32_ps(products), accumulators[r]);
        if constexpr (Format::kHasMin) min_terms[r] = _mm_fmadd_ps(weight_mins, _mm_loadu_ps(sums[r] + b), min_terms[r]);
      }
    }
    for (; b < n_blocks; ++b) {  // K / 32 not a multiple of 4
      const PreparedBlock w = Format::prepare(weights[b]);
      const float weight_scale = fp16_to_f32(weights[b].d);
      for (int r = 0; r < kRows; ++r) {
        const __m256 products = _mm256_cvtepi32_ps(block_products<Format>(w, activations[r][b]));
        accumulators[r] = _mm256_fmadd_ps(_mm256_set1_ps(weight_scale * scales[r][b]), products, accumulators[r]);
        if constexpr (Format::kHasMin) {
          min_terms[r] = _mm_add_ss(min_terms[r], _mm_set_ss(fp16_to_f32(weights[b].m) * sums[r][b]));
        }
      }
    }
    for (int r = 0; r < kRows; ++r) {
      out[r] = horizontal_sum(accumulators[r]) + horizontal_sum(min_terms[r]);
    }
  }
};

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
    case GgmlType::Q4_0: return run_row_range<Block32Tile<Q4_0Format>>;
    case GgmlType::Q4_1: return run_row_range<Block32Tile<Q4_1Format>>;
    case GgmlType::Q5_0: return run_row_range<Block32Tile<Q5_0Format>>;
    case GgmlType::Q5_1: return run_row_range<Block32Tile<Q5_1Format>>;
    case GgmlType::Q8_0: return run_row_range<Block32Tile<Q8_0Format>>;
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
