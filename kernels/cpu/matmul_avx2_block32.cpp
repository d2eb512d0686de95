// AVX2 kernels for the weight formats of 32-element blocks: Q4_0, Q4_1, Q5_0, Q5_1 and (with VNNI) Q8_0.
//
// One order of operations for every output, whichever kernel computes it, so that a result does not depend on how
// many activation rows came with it (a prompt token's logits equal the ones a one-token step would give, bit for
// bit) nor on the thread count:
//   acc = 0;  for each block b in order:  acc = fma(f32(Σ q_w·q_a), d_w·d_a, acc)   [with a min: acc = fma(m_w, s_a, acc)]
// The integer sum is exact. The weights enter it as unsigned "raw" bytes (a nibble, a nibble with its fifth bit, or
// a Q8_0 value + 128), because the dot-product instruction multiplies unsigned by signed bytes; a format whose
// value is raw − offset subtracts offset · Σ q_a, the activation block's sum, from the integer.
//
// Two kernels keep that order:
// - the row kernel, for a few activation rows (decode): 8 weight rows at a time; each block's products for the 8
//   rows are reduced across lanes so that lane j holds row j, and the epilogue runs on 8 rows at once;
// - the panel kernel, for many activation rows (prefill): 8 weight rows are first unpacked once into a panel in
//   which each 32-byte vector holds 4 consecutive elements of all 8 rows. One broadcast of 4 activation bytes then
//   feeds the 8 rows in one instruction, and the panel (a few KiB to tens of KiB, in L1/L2) serves every activation
//   row of the chunk, so unpacking costs nothing per activation row and no horizontal sums are needed at all.
#include "kernels/cpu/matmul_kernels.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <algorithm>
#include <cstring>
#include <vector>

#include "kernels/cpu/matmul_avx2_common.h"
#include "tensor/float16.h"
#include "tensor/quant_blocks.h"

namespace pagedllm::matmul_detail {
namespace {

// ---------------------------------------------------------------- formats

// raw(block): the 32 weights as unsigned bytes in element order; value = d · (raw − kOffset) (+ m with a min).
struct Q4_0Raw {
  using WeightBlock = BlockQ4_0;
  using ActivationBlock = BlockQ8_0;
  static constexpr int kOffset = 8;
  static constexpr bool kHasMin = false;
  static __m256i raw(const BlockQ4_0& w) { return unpack_nibbles(w.qs); }
};

struct Q4_1Raw {
  using WeightBlock = BlockQ4_1;
  using ActivationBlock = BlockQ8_1;
  static constexpr int kOffset = 0;
  static constexpr bool kHasMin = true;
  static __m256i raw(const BlockQ4_1& w) { return unpack_nibbles(w.qs); }
};

template <typename Block>
__m256i five_bit_raw(const Block& w) {
  const __m256i fifth_bits = _mm256_and_si256(spread_bits_to_bytes(q5_high_bits(w.qh)), _mm256_set1_epi8(16));
  return _mm256_or_si256(unpack_nibbles(w.qs), fifth_bits);
}

struct Q5_0Raw {
  using WeightBlock = BlockQ5_0;
  using ActivationBlock = BlockQ8_0;
  static constexpr int kOffset = 16;
  static constexpr bool kHasMin = false;
  static __m256i raw(const BlockQ5_0& w) { return five_bit_raw(w); }
};

struct Q5_1Raw {
  using WeightBlock = BlockQ5_1;
  using ActivationBlock = BlockQ8_1;
  static constexpr int kOffset = 0;
  static constexpr bool kHasMin = true;
  static __m256i raw(const BlockQ5_1& w) { return five_bit_raw(w); }
};

// Raw bytes up to 255: only with VNNI, where no int16 intermediate can saturate (see simd_block32_row_kernel).
struct Q8_0Raw {
  using WeightBlock = BlockQ8_0;
  using ActivationBlock = BlockQ8_0;
  static constexpr int kOffset = 128;
  static constexpr bool kHasMin = false;
  static __m256i raw(const BlockQ8_0& w) { return _mm256_xor_si256(load_32_bytes(w.qs), _mm256_set1_epi8(-128)); }
};

// ---------------------------------------------------------------- the shared epilogue

// One activation row as the kernels read it.
template <typename Format>
struct ActivationRow {
  const typename Format::ActivationBlock* blocks;  // [K / 32]
  const float* scales;                             // [K / 32] d_a
  const int32_t* block_sums;                       // [K / 32] Σ q_a (formats with an offset)
  const float* scaled_sums;                        // [K / 32] s_a = f16(d_a · Σ q_a) (formats with a min)

  ActivationRow() = default;
  ActivationRow(const MatmulProblem& problem, int64_t m) {
    const int64_t n_blocks = problem.n_cols / 32;
    blocks = reinterpret_cast<const typename Format::ActivationBlock*>(problem.activations +
                                                                      m * problem.activation_row_bytes);
    scales = problem.activation_scales + m * n_blocks;
    block_sums = Format::kOffset != 0 ? problem.activation_block_sums + m * n_blocks : nullptr;
    scaled_sums = Format::kHasMin ? problem.activation_sums + m * n_blocks : nullptr;
  }
};

// acc (lane j: weight row j) after block b; raw_products lane j = Σ raw_w·q_a of row j. Both kernels end every
// block here, which is what makes their results identical.
template <typename Format>
__m256 add_block(__m256 acc, __m256i raw_products, const ActivationRow<Format>& a, int64_t b, __m256 weight_scales,
                 __m256 weight_mins) {
  __m256i products = raw_products;
  if constexpr (Format::kOffset != 0) {
    products = _mm256_sub_epi32(products, _mm256_set1_epi32(Format::kOffset * a.block_sums[b]));
  }
  acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(products), _mm256_mul_ps(weight_scales, _mm256_set1_ps(a.scales[b])), acc);
  if constexpr (Format::kHasMin) acc = _mm256_fmadd_ps(weight_mins, _mm256_set1_ps(a.scaled_sums[b]), acc);
  return acc;
}

// ---------------------------------------------------------------- the row kernel (few activation rows)

// The f16 field of block b of 8 weight rows, as f32 lanes.
template <typename WeightBlock, typename Field>
__m256 gather_halves(const WeightBlock* const rows[8], int64_t b, Field field) {
  return _mm256_cvtph_ps(_mm_setr_epi16(
      static_cast<short>(rows[0][b].*field), static_cast<short>(rows[1][b].*field),
      static_cast<short>(rows[2][b].*field), static_cast<short>(rows[3][b].*field),
      static_cast<short>(rows[4][b].*field), static_cast<short>(rows[5][b].*field),
      static_cast<short>(rows[6][b].*field), static_cast<short>(rows[7][b].*field)));
}

// Weight rows n .. n + n_valid - 1 (n_valid <= 8) against activation rows m .. m + kRows - 1.
template <typename Format, int kRows>
void row_tile(const MatmulProblem& problem, int64_t n, int n_valid, int64_t m) {
  using WeightBlock = typename Format::WeightBlock;
  const int64_t n_blocks = problem.n_cols / 32;
  const WeightBlock* rows[8];  // [8][n_blocks]; missing rows repeat the last one and are not stored
  for (int j = 0; j < 8; ++j) {
    rows[j] = reinterpret_cast<const WeightBlock*>(problem.weights +
                                                   (n + std::min(j, n_valid - 1)) * problem.weight_row_bytes);
  }
  ActivationRow<Format> activations[kRows];
  for (int r = 0; r < kRows; ++r) activations[r] = ActivationRow<Format>(problem, m + r);
  __m256 acc[kRows];
  for (int r = 0; r < kRows; ++r) acc[r] = _mm256_setzero_ps();
  for (int64_t b = 0; b < n_blocks; ++b) {
    __m256i raw[8];
    for (int j = 0; j < 8; ++j) raw[j] = Format::raw(rows[j][b]);
    const __m256 weight_scales = gather_halves(rows, b, &WeightBlock::d);
    __m256 weight_mins = _mm256_setzero_ps();
    if constexpr (Format::kHasMin) weight_mins = gather_halves(rows, b, &WeightBlock::m);
    for (int r = 0; r < kRows; ++r) {
      const __m256i a = load_32_bytes(activations[r].blocks[b].qs);
      __m256i products[8];
      for (int j = 0; j < 8; ++j) products[j] = dot_u8_i8(raw[j], a);
      acc[r] = add_block(acc[r], sum_lanes_of_each(products), activations[r], b, weight_scales, weight_mins);
    }
  }
  for (int r = 0; r < kRows; ++r) store_rows(problem.output + (m + r) * problem.n_rows + n, acc[r], n_valid);
}

// ---------------------------------------------------------------- the panel kernel (many activation rows)

// Block b of 8 weight rows, interleaved: chunk c holds elements 4c..4c+3 of row 0, then of row 1, ... row 7.
struct alignas(32) Block32Panel {
  uint32_t chunks[8][8];  // [chunk, row] 4 raw bytes each
  float scales[8];        // [row] d_w
  float mins[8];          // [row] m_w (formats with a min)
};

template <typename Format>
void build_panel(const MatmulProblem& problem, int64_t n, int n_valid, Block32Panel* panel /* [K / 32] */) {
  using WeightBlock = typename Format::WeightBlock;
  const int64_t n_blocks = problem.n_cols / 32;
  for (int j = 0; j < 8; ++j) {
    const auto* row = reinterpret_cast<const WeightBlock*>(
        problem.weights + (n + std::min(j, n_valid - 1)) * problem.weight_row_bytes);
    for (int64_t b = 0; b < n_blocks; ++b) {
      alignas(32) uint32_t lanes[8];  // [chunk]
      _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), Format::raw(row[b]));
      for (int c = 0; c < 8; ++c) panel[b].chunks[c][j] = lanes[c];
      panel[b].scales[j] = fp16_to_f32(row[b].d);
      if constexpr (Format::kHasMin) {
        panel[b].mins[j] = fp16_to_f32(row[b].m);
      } else {
        panel[b].mins[j] = 0.0f;
      }
    }
  }
}

template <typename Format, int kRows>
void panel_tile(const MatmulProblem& problem, const Block32Panel* panel, int64_t n, int n_valid, int64_t m) {
  const int64_t n_blocks = problem.n_cols / 32;
  ActivationRow<Format> activations[kRows];
  for (int r = 0; r < kRows; ++r) activations[r] = ActivationRow<Format>(problem, m + r);
  __m256 acc[kRows];
  for (int r = 0; r < kRows; ++r) acc[r] = _mm256_setzero_ps();
  for (int64_t b = 0; b < n_blocks; ++b) {
    const Block32Panel& block = panel[b];
    // Two partial sums per row halve the dependency chain of the dot products.
    __m256i even[kRows], odd[kRows];
    for (int r = 0; r < kRows; ++r) even[r] = odd[r] = _mm256_setzero_si256();
    for (int c = 0; c < 8; c += 2) {
      const __m256i q0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(block.chunks[c]));
      const __m256i q1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(block.chunks[c + 1]));
      for (int r = 0; r < kRows; ++r) {
        const int8_t* a = activations[r].blocks[b].qs + 4 * c;
        even[r] = accumulate_u8_i8(even[r], q0, broadcast_4_bytes(a));
        odd[r] = accumulate_u8_i8(odd[r], q1, broadcast_4_bytes(a + 4));
      }
    }
    const __m256 weight_scales = _mm256_load_ps(block.scales);
    const __m256 weight_mins = _mm256_load_ps(block.mins);
    for (int r = 0; r < kRows; ++r) {
      acc[r] = add_block(acc[r], _mm256_add_epi32(even[r], odd[r]), activations[r], b, weight_scales, weight_mins);
    }
  }
  for (int r = 0; r < kRows; ++r) store_rows(problem.output + (m + r) * problem.n_rows + n, acc[r], n_valid);
}

// The row and panel kernels of one format, for quantized_row_range.
template <typename Format>
struct Block32Kernels {
  using PanelBlock = Block32Panel;
  static constexpr int64_t kBlockElements = 32;
  template <int kRows>
  static void rows(const MatmulProblem& problem, int64_t n, int n_valid, int64_t m) {
    row_tile<Format, kRows>(problem, n, n_valid, m);
  }
  static void build(const MatmulProblem& problem, int64_t n, int n_valid, Block32Panel* panel) {
    build_panel<Format>(problem, n, n_valid, panel);
  }
  template <int kRows>
  static void panel_rows(const MatmulProblem& problem, const Block32Panel* panel, int64_t n, int n_valid, int64_t m) {
    panel_tile<Format, kRows>(problem, panel, n, n_valid, m);
  }
};

#if !PAGEDLLM_MATMUL_HAS_VNNI
// ---------------------------------------------------------------- Q8_0 without VNNI

// Q8_0 raw bytes reach 255, which maddubs would saturate; without VNNI, Q8_0 weights keep the sign trick: |q_w| as
// the unsigned operand and the activations given the weight's signs, one weight row against up to 4 activation
// rows, four blocks folded into one vector by two rounds of hadd. Its order of operations is its own, used for
// every activation row count alike.
struct SignedQ8Tile {
  static constexpr int kWeightRows = 1;
  template <int kW, int kRows>
  static void run(const MatmulProblem& problem, int64_t n, int64_t m, float* out /* [1, kRows] */) {
    static_assert(kW == 1);
    const int64_t n_blocks = problem.n_cols / 32;
    const auto* weights = reinterpret_cast<const BlockQ8_0*>(problem.weights + n * problem.weight_row_bytes);
    const BlockQ8_0* activations[kRows];  // [kRows][n_blocks]
    const float* scales[kRows];           // [kRows][n_blocks]
    __m256 accumulators[kRows];
    for (int r = 0; r < kRows; ++r) {
      activations[r] = reinterpret_cast<const BlockQ8_0*>(problem.activations + (m + r) * problem.activation_row_bytes);
      scales[r] = problem.activation_scales + (m + r) * n_blocks;
      accumulators[r] = _mm256_setzero_ps();
    }
    const auto products = [](__m256i w, const BlockQ8_0& a) {
      return dot_u8_i8(_mm256_sign_epi8(w, w), _mm256_sign_epi8(load_32_bytes(a.qs), w));
    };
    int64_t b = 0;
    for (; b + 4 <= n_blocks; b += 4) {
      const BlockQ8_0* w = weights + b;
      const __m256i w0 = load_32_bytes(w[0].qs), w1 = load_32_bytes(w[1].qs), w2 = load_32_bytes(w[2].qs),
                    w3 = load_32_bytes(w[3].qs);
      const __m128 four_scales = _mm_cvtph_ps(_mm_setr_epi16(static_cast<short>(w[0].d), static_cast<short>(w[1].d),
                                                             static_cast<short>(w[2].d), static_cast<short>(w[3].d),
                                                             0, 0, 0, 0));
      const __m256 weight_scales = _mm256_set_m128(four_scales, four_scales);
      for (int r = 0; r < kRows; ++r) {
        const BlockQ8_0* a = activations[r] + b;
        // [b0, b1, b2, b3 | b0, b1, b2, b3]: low and high halves of each block's sums.
        const __m256i folded = _mm256_hadd_epi32(_mm256_hadd_epi32(products(w0, a[0]), products(w1, a[1])),
                                                 _mm256_hadd_epi32(products(w2, a[2]), products(w3, a[3])));
        const __m256 scale =
            _mm256_mul_ps(weight_scales, _mm256_broadcast_ps(reinterpret_cast<const __m128*>(scales[r] + b)));
        accumulators[r] = _mm256_fmadd_ps(scale, _mm256_cvtepi32_ps(folded), accumulators[r]);
      }
    }
    for (; b < n_blocks; ++b) {  // K / 32 not a multiple of 4
      const __m256i w = load_32_bytes(weights[b].qs);
      const float weight_scale = fp16_to_f32(weights[b].d);
      for (int r = 0; r < kRows; ++r) {
        const __m256 sums = _mm256_cvtepi32_ps(products(w, activations[r][b]));
        accumulators[r] = _mm256_fmadd_ps(_mm256_set1_ps(weight_scale * scales[r][b]), sums, accumulators[r]);
      }
    }
    for (int r = 0; r < kRows; ++r) out[r] = horizontal_sum(accumulators[r]);
  }
};

#endif  // no VNNI

}  // namespace

RowRangeKernel simd_block32_row_kernel(GgmlType weight_type) {
  switch (weight_type) {
    case GgmlType::Q4_0: return quantized_row_range<Block32Kernels<Q4_0Raw>>;
    case GgmlType::Q4_1: return quantized_row_range<Block32Kernels<Q4_1Raw>>;
    case GgmlType::Q5_0: return quantized_row_range<Block32Kernels<Q5_0Raw>>;
    case GgmlType::Q5_1: return quantized_row_range<Block32Kernels<Q5_1Raw>>;
    case GgmlType::Q8_0:
#if PAGEDLLM_MATMUL_HAS_VNNI
      return quantized_row_range<Block32Kernels<Q8_0Raw>>;
#else
      return run_row_range<SignedQ8Tile>;
#endif
    default: return nullptr;
  }
}

}  // namespace pagedllm::matmul_detail

#else  // no AVX2

namespace pagedllm::matmul_detail {
RowRangeKernel simd_block32_row_kernel(GgmlType) { return nullptr; }
}  // namespace pagedllm::matmul_detail

#endif
