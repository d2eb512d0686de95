#pragma once
// Internal to the AVX2 matmul kernels (matmul_avx2.cpp, matmul_avx2_block32.cpp): loads, horizontal sums, the
// u8·i8 dot product and the unpacking of packed quants. Only included where the compiler targets AVX2.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "kernels/cpu/matmul_kernels.h"

namespace pagedllm::matmul_detail {

// Whether the integer dot product is one instruction (AVX-512 VNNI or AVX-VNNI) with 32-bit accumulation, so no
// intermediate sum can saturate whatever the unsigned operand.
#if (defined(__AVX512VNNI__) && defined(__AVX512VL__)) || defined(__AVXVNNI__)
#define PAGEDLLM_MATMUL_HAS_VNNI 1
#else
#define PAGEDLLM_MATMUL_HAS_VNNI 0
#endif

inline float horizontal_sum(__m128 v) {
  v = _mm_add_ps(v, _mm_movehl_ps(v, v));
  v = _mm_add_ss(v, _mm_movehdup_ps(v));
  return _mm_cvtss_f32(v);
}

inline float horizontal_sum(__m256 v) {
  return horizontal_sum(_mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1)));
}

inline __m256i load_32_bytes(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }

// accumulator + Σ of four adjacent u8·i8 products in each of 8 int32 lanes. Without VNNI, maddubs first forms
// int16 pair sums, which saturate unless 2 · max(unsigned) · 128 <= 32767: callers keep the unsigned operand at
// most 127 there.
inline __m256i accumulate_u8_i8(__m256i accumulator, __m256i unsigned_bytes, __m256i signed_bytes) {
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
  return _mm256_dpbusd_epi32(accumulator, unsigned_bytes, signed_bytes);
#elif defined(__AVXVNNI__)
  return _mm256_dpbusd_avx_epi32(accumulator, unsigned_bytes, signed_bytes);
#else
  return _mm256_add_epi32(accumulator,
                          _mm256_madd_epi16(_mm256_maddubs_epi16(unsigned_bytes, signed_bytes), _mm256_set1_epi16(1)));
#endif
}

inline __m256i dot_u8_i8(__m256i unsigned_bytes, __m256i signed_bytes) {
  return accumulate_u8_i8(_mm256_setzero_si256(), unsigned_bytes, signed_bytes);
}

// 16 bytes of packed nibbles -> 32 bytes: low nibbles (elements 0..15) then high nibbles (elements 16..31).
inline __m256i unpack_nibbles(const uint8_t* packed /* [16] */) {
  const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(packed));
  const __m256i both = _mm256_set_m128i(_mm_srli_epi16(bytes, 4), bytes);
  return _mm256_and_si256(both, _mm256_set1_epi8(0x0F));
}

// Bit j of `bits` -> byte j = 0xFF when set, 0 when clear.
inline __m256i spread_bits_to_bytes(uint32_t bits) {
  // Byte j gets the byte of `bits` that holds bit j (shuffles work per 128-bit lane; the word is in both lanes).
  const __m256i byte_of_bit = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0);
  const __m256i spread = _mm256_shuffle_epi8(_mm256_set1_epi32(static_cast<int>(bits)), byte_of_bit);
  // Set every bit except bit (j % 8); the byte is all ones exactly when that bit was set.
  const __m256i all_but_bit = _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe);
  return _mm256_cmpeq_epi8(_mm256_or_si256(spread, all_but_bit), _mm256_set1_epi8(-1));
}

// ---------------------------------------------------------------- shared by the row and panel kernels

// From this many activation rows on, the kernels of the block formats build a panel of interleaved weight rows (an
// unpack and an interleave per weight block, paid once for all activation rows); below it their row kernels unpack
// each block once per activation row. Both give the same bits.
inline constexpr int64_t kPanelMinRows = 8;

// Lanes 0..n_valid-1 of `values` to out[0..n_valid-1].
inline void store_rows(float* out, __m256 values, int n_valid) {
  if (n_valid == 8) {
    _mm256_storeu_ps(out, values);
    return;
  }
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, values);
  std::copy_n(lanes, n_valid, out);
}

// Activation rows [begin, end) in tiles of up to 4 rows: tile(m, std::integral_constant<int, R>).
template <typename TileFn>
void for_each_tile(int64_t begin, int64_t end, TileFn&& tile) {
  int64_t m = begin;
  for (; m + 4 <= end; m += 4) tile(m, std::integral_constant<int, 4>{});
  switch (end - m) {
    case 3: tile(m, std::integral_constant<int, 3>{}); break;
    case 2: tile(m, std::integral_constant<int, 2>{}); break;
    case 1: tile(m, std::integral_constant<int, 1>{}); break;
    default: break;
  }
}

// Lane j of the result: the sum of the 8 lanes of v[j].
inline __m256i sum_lanes_of_each(const __m256i v[8]) {
  const __m256i h01 = _mm256_hadd_epi32(v[0], v[1]);    // per 128-bit half: pair sums of v0, v1
  const __m256i h23 = _mm256_hadd_epi32(v[2], v[3]);
  const __m256i h45 = _mm256_hadd_epi32(v[4], v[5]);
  const __m256i h67 = _mm256_hadd_epi32(v[6], v[7]);
  const __m256i h0123 = _mm256_hadd_epi32(h01, h23);  // [v0..v3 over lanes 0-3 | v0..v3 over lanes 4-7]
  const __m256i h4567 = _mm256_hadd_epi32(h45, h67);
  const __m256i low = _mm256_permute2x128_si256(h0123, h4567, 0x20);   // lanes 0-3 of v0..v7
  const __m256i high = _mm256_permute2x128_si256(h0123, h4567, 0x31);  // lanes 4-7 of v0..v7
  return _mm256_add_epi32(low, high);
}


inline __m256i broadcast_4_bytes(const int8_t* p) {
  int32_t word;
  std::memcpy(&word, p, 4);
  return _mm256_set1_epi32(word);
}

// The loop of the quantized kernel families (matmul_avx2_block32.cpp, matmul_avx2_kquants.cpp). Under
// kPanelMinRows activation rows, Kernels::rows<R> on groups of 8 weight rows; from there on, for each L2-sized chunk
// of activation rows, Kernels::build fills a panel for a group of 8 weight rows and Kernels::panel_rows<R> sweeps
// every tile of the chunk over it. Kernels also names its PanelBlock and kBlockElements (elements per weight block).
template <typename Kernels>
void quantized_row_range(const MatmulProblem& problem, int64_t n_begin, int64_t n_end) {
  const int64_t n_rows_total = problem.n_activation_rows;
  if (n_rows_total < kPanelMinRows) {
    for (int64_t n = n_begin; n < n_end; n += 8) {
      const int n_valid = static_cast<int>(std::min<int64_t>(8, n_end - n));
      for_each_tile(0, n_rows_total, [&](int64_t m, auto rows) {
        Kernels::template rows<decltype(rows)::value>(problem, n, n_valid, m);
      });
    }
    return;
  }
  // One panel per thread, reused across calls; it only grows.
  thread_local std::vector<typename Kernels::PanelBlock> panel;
  const size_t n_blocks = static_cast<size_t>(problem.n_cols / Kernels::kBlockElements);
  if (panel.size() < n_blocks) panel.resize(n_blocks);
  // Chunks of activation rows that stay in L2 while every panel of the range passes over them.
  const int64_t rows_per_chunk =
      std::max<int64_t>(kPanelMinRows, static_cast<int64_t>(kActivationChunkBytes / problem.activation_row_bytes));
  for (int64_t chunk_begin = 0; chunk_begin < n_rows_total; chunk_begin += rows_per_chunk) {
    const int64_t chunk_end = std::min(n_rows_total, chunk_begin + rows_per_chunk);
    for (int64_t n = n_begin; n < n_end; n += 8) {
      const int n_valid = static_cast<int>(std::min<int64_t>(8, n_end - n));
      Kernels::build(problem, n, n_valid, panel.data());
      for_each_tile(chunk_begin, chunk_end, [&](int64_t m, auto rows) {
        Kernels::template panel_rows<decltype(rows)::value>(problem, panel.data(), n, n_valid, m);
      });
    }
  }
}

}  // namespace pagedllm::matmul_detail
