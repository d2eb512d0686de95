// AVX2 kernels for the K-quant weight formats Q4_K, Q5_K and Q6_K (super-blocks of 256 elements, Q8_K activations).
//
// As for the 32-element formats (matmul_avx2_block32.cpp), every output follows one order of operations whichever
// kernel computes it, so decode and prefill agree to the bit. Per super-block b, two exact integers per row:
//   products   = Σ_g scale_g · Σ_{k in g} raw_k · q_a,k       (groups g of 32 elements for Q4_K/Q5_K, 16 for Q6_K)
//   correction = Σ_{16-element groups h} c_h · bsum_h         (c_h: the group's min for Q4_K/Q5_K, its scale for Q6_K)
// then  Q4_K/Q5_K: acc = fma(f32(products), d·d_a, acc);  acc = fnmadd(f32(correction), dmin·d_a, acc)
//       Q6_K:      acc = fma(f32(products − 32 · correction), d·d_a, acc)      (its values are raw − 32)
// The row kernel (decode) forms each row's integers in 8 lanes and reduces them across lanes; the panel kernel
// (prefill) interleaves 8 weight rows so that one broadcast of 4 activation bytes feeds all 8 rows.
#include "kernels/cpu/matmul_kernels.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <algorithm>
#include <type_traits>
#include <vector>

#include "kernels/cpu/matmul_avx2_common.h"
#include "tensor/float16.h"
#include "tensor/quant_blocks.h"

namespace pagedllm::matmul_detail {
namespace {

// One super-block unpacked: 8 vectors of 32 raw (unsigned) values in element order, and the per-16-element scale
// and correction coefficients.
struct UnpackedSuperBlock {
  __m256i raw[8];             // elements 32i .. 32i + 31
  alignas(32) int16_t scales[16];       // [16-element group] scale_g
  alignas(32) int16_t corrections[16];  // [16-element group] c_h
};

// Shift every byte left by `count` (negative: right), within the byte: 16-bit shifts move bits across bytes, but
// callers mask the single bit they want, which comes from the same byte whichever way it moves.
__m256i shift_bytes(__m256i v, int count) {
  return count >= 0 ? _mm256_sll_epi16(v, _mm_cvtsi32_si128(count)) : _mm256_srl_epi16(v, _mm_cvtsi32_si128(-count));
}

// Q4_K / Q5_K: y = d·sc_s·q − dmin·m_s for sub-block s of 32 elements.
template <bool kFiveBits>
struct Q4KRaw {
  using WeightBlock = std::conditional_t<kFiveBits, BlockQ5_K, BlockQ4_K>;
  static constexpr bool kHasMin = true;
  static constexpr int kChunksPerScale = 8;  // one scale per 32 elements
  // Sub-blocks 2·pair (the low nibbles of 32 bytes) and 2·pair + 1 (their high nibbles), with their fifth bits.
  static void raw_pair(const WeightBlock& w, int pair, __m256i& low, __m256i& high) {
    const __m256i low_nibbles = _mm256_set1_epi8(0x0F);
    const __m256i packed = load_32_bytes(w.qs + 32 * pair);
    low = _mm256_and_si256(packed, low_nibbles);
    high = _mm256_and_si256(_mm256_srli_epi16(packed, 4), low_nibbles);
    if constexpr (kFiveBits) {
      const __m256i high_bits = load_32_bytes(w.qh);
      const __m256i fifth = _mm256_set1_epi8(16);
      // Bit (2·pair) of qh[l] for the first sub-block, bit (2·pair + 1) for the second, moved to bit 4.
      low = _mm256_or_si256(low, _mm256_and_si256(shift_bytes(high_bits, 4 - 2 * pair), fifth));
      high = _mm256_or_si256(high, _mm256_and_si256(shift_bytes(high_bits, 3 - 2 * pair), fifth));
    }
  }
  static void scales_and_mins(const WeightBlock& w, uint64_t& scales, uint64_t& mins) {
    const Q4KScalesMins unpacked = q4_k_unpack_scales_mins(w.scales);
    scales = unpacked.scales_0_3 | (static_cast<uint64_t>(unpacked.scales_4_7) << 32);  // byte s: sub-block s
    mins = unpacked.mins_0_3 | (static_cast<uint64_t>(unpacked.mins_4_7) << 32);
  }
  static void unpack(const WeightBlock& w, UnpackedSuperBlock& out) {
    uint64_t scales, mins;
    scales_and_mins(w, scales, mins);
    for (int s = 0; s < 8; ++s) {
      out.scales[2 * s] = out.scales[2 * s + 1] = static_cast<int16_t>((scales >> (8 * s)) & 0xFF);
      out.corrections[2 * s] = out.corrections[2 * s + 1] = static_cast<int16_t>((mins >> (8 * s)) & 0xFF);
    }
    for (int pair = 0; pair < 4; ++pair) raw_pair(w, pair, out.raw[2 * pair], out.raw[2 * pair + 1]);
  }
  // The row kernel's integers (see the top of the file) of one weight row, in 8 partial sums each.
  static void row_integers(const WeightBlock& w, const BlockQ8_K& a, __m256i& products, __m256i& corrections) {
    uint64_t scales, mins;
    scales_and_mins(w, scales, mins);
    // Each min applies to two groups of 16 (the bsums granularity): bytes m0 m0 m1 m1 ... widened to int16.
    const __m128i min_bytes = _mm_cvtsi64_si128(static_cast<long long>(mins));
    const __m256i mins_per_group = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(min_bytes, min_bytes));
    corrections = _mm256_madd_epi16(mins_per_group, load_32_bytes(a.bsums));
    __m256i sum = _mm256_setzero_si256();
    for (int pair = 0; pair < 4; ++pair) {
      __m256i low, high;
      raw_pair(w, pair, low, high);
      const __m256i scale_low = _mm256_set1_epi16(static_cast<short>((scales >> (16 * pair)) & 0xFF));
      const __m256i scale_high = _mm256_set1_epi16(static_cast<short>((scales >> (16 * pair + 8)) & 0xFF));
      const int8_t* q = a.qs + 64 * pair;
      sum = _mm256_add_epi32(sum, _mm256_madd_epi16(_mm256_maddubs_epi16(low, load_32_bytes(q)), scale_low));
      sum = _mm256_add_epi32(sum, _mm256_madd_epi16(_mm256_maddubs_epi16(high, load_32_bytes(q + 32)), scale_high));
    }
    products = sum;
  }
  static float min_scale(const WeightBlock& w) { return fp16_to_f32(w.dmin); }
};

// Q6_K: q = (low4 | high2 << 4) − 32 with a signed 8-bit scale per 16 elements.
struct Q6KRaw {
  using WeightBlock = BlockQ6_K;
  static constexpr bool kHasMin = false;
  static constexpr int kChunksPerScale = 4;  // one scale per 16 elements
  // Elements 128·half + 32·g + l for g = 0..3: low nibble of ql (g < 2) or high nibble (g >= 2), bits 2g..2g+1
  // of qh.
  static void raw_half(const BlockQ6_K& w, int half, __m256i* raw /* [4] */) {
    const __m256i low_nibbles = _mm256_set1_epi8(0x0F);
    const __m256i high_pair = _mm256_set1_epi8(0x30);
    const __m256i high = load_32_bytes(w.qh + 32 * half);
    const __m256i low_first = load_32_bytes(w.ql + 64 * half);
    const __m256i low_second = load_32_bytes(w.ql + 64 * half + 32);
    raw[0] = _mm256_or_si256(_mm256_and_si256(low_first, low_nibbles),
                             _mm256_and_si256(_mm256_slli_epi16(high, 4), high_pair));
    raw[1] = _mm256_or_si256(_mm256_and_si256(low_second, low_nibbles),
                             _mm256_and_si256(_mm256_slli_epi16(high, 2), high_pair));
    raw[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(low_first, 4), low_nibbles),
                             _mm256_and_si256(high, high_pair));
    raw[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(low_second, 4), low_nibbles),
                             _mm256_and_si256(_mm256_srli_epi16(high, 2), high_pair));
  }
  static void unpack(const BlockQ6_K& w, UnpackedSuperBlock& out) {
    for (int g = 0; g < 16; ++g) out.scales[g] = out.corrections[g] = w.scales[g];
    for (int half = 0; half < 2; ++half) raw_half(w, half, out.raw + 4 * half);
  }
  static void row_integers(const BlockQ6_K& w, const BlockQ8_K& a, __m256i& products, __m256i& corrections) {
    const __m256i scales_per_group =
        _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w.scales)));
    corrections = _mm256_madd_epi16(scales_per_group, load_32_bytes(a.bsums));
    __m256i sum = _mm256_setzero_si256();
    for (int half = 0; half < 2; ++half) {
      __m256i raw[4];
      raw_half(w, half, raw);
      for (int g = 0; g < 4; ++g) {
        const int group = 8 * half + 2 * g;  // of 16 elements; maddubs puts group in int16 lanes 0..7, group + 1 above
        const __m256i scales = _mm256_set_m128i(_mm_set1_epi16(w.scales[group + 1]), _mm_set1_epi16(w.scales[group]));
        const __m256i pair_sums = _mm256_maddubs_epi16(raw[g], load_32_bytes(a.qs + 128 * half + 32 * g));
        sum = _mm256_add_epi32(sum, _mm256_madd_epi16(pair_sums, scales));
      }
    }
    products = sum;
  }
  static float min_scale(const BlockQ6_K&) { return 0.0f; }
};

// acc (lane j: weight row j) after super-block b, from the rows' two integers (see the top of the file).
template <typename Format>
__m256 add_super_block(__m256 acc, __m256i products, __m256i corrections, const BlockQ8_K& a, __m256 weight_scales,
                       __m256 weight_min_scales) {
  const __m256 activation_scale = _mm256_set1_ps(a.d);
  if constexpr (Format::kHasMin) {
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(products), _mm256_mul_ps(weight_scales, activation_scale), acc);
    return _mm256_fnmadd_ps(_mm256_cvtepi32_ps(corrections), _mm256_mul_ps(weight_min_scales, activation_scale),
                            acc);
  } else {
    const __m256i offset_products = _mm256_sub_epi32(products, _mm256_slli_epi32(corrections, 5));
    return _mm256_fmadd_ps(_mm256_cvtepi32_ps(offset_products), _mm256_mul_ps(weight_scales, activation_scale), acc);
  }
}

const BlockQ8_K* activation_row(const MatmulProblem& problem, int64_t m) {
  return reinterpret_cast<const BlockQ8_K*>(problem.activations + m * problem.activation_row_bytes);
}

// ---------------------------------------------------------------- the row kernel (few activation rows)

// Weight rows n .. n + n_valid - 1 (n_valid <= 8) against activation rows m .. m + kRows - 1. Each super-block is
// unpacked once per activation row: the row kernel serves fewer than kPanelMinRows of them.
template <typename Format, int kRows>
void row_tile(const MatmulProblem& problem, int64_t n, int n_valid, int64_t m) {
  using WeightBlock = typename Format::WeightBlock;
  const int64_t n_blocks = problem.n_cols / 256;
  const WeightBlock* rows[8];  // [8][n_blocks]; missing rows repeat the last one and are not stored
  for (int j = 0; j < 8; ++j) {
    rows[j] = reinterpret_cast<const WeightBlock*>(problem.weights +
                                                   (n + std::min(j, n_valid - 1)) * problem.weight_row_bytes);
  }
  __m256 acc[kRows];
  for (int r = 0; r < kRows; ++r) acc[r] = _mm256_setzero_ps();
  for (int64_t b = 0; b < n_blocks; ++b) {
    alignas(32) float scales[8], min_scales[8];  // [row]
    for (int j = 0; j < 8; ++j) {
      scales[j] = fp16_to_f32(rows[j][b].d);
      min_scales[j] = Format::min_scale(rows[j][b]);
    }
    for (int r = 0; r < kRows; ++r) {
      const BlockQ8_K& a = activation_row(problem, m + r)[b];
      __m256i products[8], corrections[8];  // [row], 8 partial sums each
      for (int j = 0; j < 8; ++j) Format::row_integers(rows[j][b], a, products[j], corrections[j]);
      acc[r] = add_super_block<Format>(acc[r], sum_lanes_of_each(products), sum_lanes_of_each(corrections), a,
                                       _mm256_load_ps(scales), _mm256_load_ps(min_scales));
    }
  }
  for (int r = 0; r < kRows; ++r) store_rows(problem.output + (m + r) * problem.n_rows + n, acc[r], n_valid);
}

// ---------------------------------------------------------------- the panel kernel (many activation rows)

// Super-block b of 8 weight rows, interleaved: chunk c holds elements 4c..4c+3 of row 0, then of row 1, ... row 7.
struct alignas(32) KPanelBlock {
  uint32_t chunks[64][8];             // [chunk, row] 4 raw bytes each
  int32_t scales[16][8];              // [scale group, row] (groups of kChunksPerScale chunks)
  uint32_t correction_pairs[8][8];    // [pair p, row]: c_{2p} | c_{2p+1} << 16 as int16
  float weight_scales[8];             // [row] d
  float weight_min_scales[8];         // [row] dmin (formats with a min)
};

template <typename Format>
void build_panel(const MatmulProblem& problem, int64_t n, int n_valid, KPanelBlock* panel /* [K / 256] */) {
  using WeightBlock = typename Format::WeightBlock;
  const int64_t n_blocks = problem.n_cols / 256;
  constexpr int kGroups = 64 / Format::kChunksPerScale;
  for (int j = 0; j < 8; ++j) {
    const auto* row = reinterpret_cast<const WeightBlock*>(
        problem.weights + (n + std::min(j, n_valid - 1)) * problem.weight_row_bytes);
    for (int64_t b = 0; b < n_blocks; ++b) {
      KPanelBlock& out = panel[b];
      UnpackedSuperBlock w;
      Format::unpack(row[b], w);
      for (int i = 0; i < 8; ++i) {
        alignas(32) uint32_t lanes[8];  // chunks 8i .. 8i + 7
        _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), w.raw[i]);
        for (int c = 0; c < 8; ++c) out.chunks[8 * i + c][j] = lanes[c];
      }
      // Scale group s covers chunks s·kChunksPerScale...: elements 16·(s·kChunksPerScale / 4) on.
      for (int s = 0; s < kGroups; ++s) out.scales[s][j] = w.scales[s * Format::kChunksPerScale / 4];
      for (int p = 0; p < 8; ++p) {
        out.correction_pairs[p][j] = static_cast<uint16_t>(w.corrections[2 * p]) |
                                     (static_cast<uint32_t>(static_cast<uint16_t>(w.corrections[2 * p + 1])) << 16);
      }
      out.weight_scales[j] = fp16_to_f32(row[b].d);
      out.weight_min_scales[j] = Format::min_scale(row[b]);
    }
  }
}

template <typename Format, int kRows>
void panel_tile(const MatmulProblem& problem, const KPanelBlock* panel, int64_t n, int n_valid, int64_t m) {
  const int64_t n_blocks = problem.n_cols / 256;
  constexpr int kGroups = 64 / Format::kChunksPerScale;
  const BlockQ8_K* activations[kRows];  // [kRows][n_blocks]
  __m256 acc[kRows];
  for (int r = 0; r < kRows; ++r) {
    activations[r] = activation_row(problem, m + r);
    acc[r] = _mm256_setzero_ps();
  }
  for (int64_t b = 0; b < n_blocks; ++b) {
    const KPanelBlock& block = panel[b];
    __m256i products[kRows];
    for (int r = 0; r < kRows; ++r) products[r] = _mm256_setzero_si256();
    for (int s = 0; s < kGroups; ++s) {
      // Two partial sums per row halve the dependency chain of the dot products.
      __m256i even[kRows], odd[kRows];
      for (int r = 0; r < kRows; ++r) even[r] = odd[r] = _mm256_setzero_si256();
      for (int c = s * Format::kChunksPerScale; c < (s + 1) * Format::kChunksPerScale; c += 2) {
        const __m256i q0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(block.chunks[c]));
        const __m256i q1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(block.chunks[c + 1]));
        for (int r = 0; r < kRows; ++r) {
          const int8_t* a = activations[r][b].qs + 4 * c;
          even[r] = accumulate_u8_i8(even[r], q0, broadcast_4_bytes(a));
          odd[r] = accumulate_u8_i8(odd[r], q1, broadcast_4_bytes(a + 4));
        }
      }
      const __m256i scales = _mm256_load_si256(reinterpret_cast<const __m256i*>(block.scales[s]));
      for (int r = 0; r < kRows; ++r) {
        products[r] = _mm256_add_epi32(products[r], _mm256_mullo_epi32(_mm256_add_epi32(even[r], odd[r]), scales));
      }
    }
    const __m256 weight_scales = _mm256_load_ps(block.weight_scales);
    const __m256 weight_min_scales = _mm256_load_ps(block.weight_min_scales);
    for (int r = 0; r < kRows; ++r) {
      const BlockQ8_K& a = activations[r][b];
      __m256i corrections = _mm256_setzero_si256();
      for (int p = 0; p < 8; ++p) {
        const __m256i coefficients = _mm256_load_si256(reinterpret_cast<const __m256i*>(block.correction_pairs[p]));
        corrections = _mm256_add_epi32(
            corrections, _mm256_madd_epi16(coefficients, broadcast_4_bytes(reinterpret_cast<const int8_t*>(a.bsums + 2 * p))));
      }
      acc[r] = add_super_block<Format>(acc[r], products[r], corrections, a, weight_scales, weight_min_scales);
    }
  }
  for (int r = 0; r < kRows; ++r) store_rows(problem.output + (m + r) * problem.n_rows + n, acc[r], n_valid);
}

// The row and panel kernels of one format, for quantized_row_range.
template <typename Format>
struct KQuantKernels {
  using PanelBlock = KPanelBlock;
  static constexpr int64_t kBlockElements = 256;
  template <int kRows>
  static void rows(const MatmulProblem& problem, int64_t n, int n_valid, int64_t m) {
    row_tile<Format, kRows>(problem, n, n_valid, m);
  }
  static void build(const MatmulProblem& problem, int64_t n, int n_valid, PanelBlock* panel) {
    build_panel<Format>(problem, n, n_valid, panel);
  }
  template <int kRows>
  static void panel_rows(const MatmulProblem& problem, const PanelBlock* panel, int64_t n, int n_valid, int64_t m) {
    panel_tile<Format, kRows>(problem, panel, n, n_valid, m);
  }
};

}  // namespace

RowRangeKernel simd_kquant_row_kernel(GgmlType weight_type) {
  switch (weight_type) {
    case GgmlType::Q4_K: return quantized_row_range<KQuantKernels<Q4KRaw<false>>>;
    case GgmlType::Q5_K: return quantized_row_range<KQuantKernels<Q4KRaw<true>>>;
    case GgmlType::Q6_K: return quantized_row_range<KQuantKernels<Q6KRaw>>;
    default: return nullptr;
  }
}

}  // namespace pagedllm::matmul_detail

#else  // no AVX2

namespace pagedllm::matmul_detail {
RowRangeKernel simd_kquant_row_kernel(GgmlType) { return nullptr; }
}  // namespace pagedllm::matmul_detail

#endif
