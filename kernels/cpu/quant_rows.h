#pragma once
// Whole-row conversions between f32 and the block formats a quantized K/V pool holds (Q8_0, Q4_0): a row of n
// elements (n a multiple of 32) is n / 32 consecutive blocks. Writing quantizes as llama.cpp's CPU path does when it
// stores K/V in these types (tensor/activation_quant.h), so the two caches hold the same bytes; reading widens eight
// elements at a time with AVX2 when the build targets it, else block by block through tensor/quant_blocks.h (the
// same values either way: each element is one int-to-float conversion and one multiply by the block's scale).
#include <cstdint>

#include "tensor/activation_quant.h"
#include "tensor/quant_blocks.h"

#if defined(__AVX2__)
#include <immintrin.h>
#endif

namespace pagedllm {

inline void f32_row_to_q8_0(const float* source, BlockQ8_0* destination, int n) {  // [n] -> [n / 32]
  for (int b = 0; b < n / 32; ++b) quantize_block_q8_0(source + 32 * b, destination[b]);
}

inline void f32_row_to_q4_0(const float* source, BlockQ4_0* destination, int n) {  // [n] -> [n / 32]
  for (int b = 0; b < n / 32; ++b) quantize_block_q4_0(source + 32 * b, destination[b]);
}

inline void q8_0_row_to_f32(const BlockQ8_0* source, float* destination, int n) {  // [n / 32] -> [n]
  for (int b = 0; b < n / 32; ++b) {
    const BlockQ8_0& block = source[b];
    float* out = destination + 32 * b;
#if defined(__AVX2__)
    const __m256 d = _mm256_set1_ps(fp16_to_f32(block.d));
    for (int k = 0; k < 4; ++k) {
      const __m128i bytes = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(block.qs + 8 * k));
      _mm256_storeu_ps(out + 8 * k, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(bytes)), d));
    }
#else
    dequantize_block(block, out);
#endif
  }
}

inline void q4_0_row_to_f32(const BlockQ4_0* source, float* destination, int n) {  // [n / 32] -> [n]
  for (int b = 0; b < n / 32; ++b) {
    const BlockQ4_0& block = source[b];
    float* out = destination + 32 * b;
#if defined(__AVX2__)
    const __m256 d = _mm256_set1_ps(fp16_to_f32(block.d));
    const __m256i offset = _mm256_set1_epi32(8);
    const __m128i packed = _mm_loadu_si128(reinterpret_cast<const __m128i*>(block.qs));  // [16]
    const __m128i nibble = _mm_set1_epi8(0x0F);
    const __m128i low = _mm_and_si128(packed, nibble);                       // elements 0..15
    const __m128i high = _mm_and_si128(_mm_srli_epi16(packed, 4), nibble);   // elements 16..31
    const __m128i parts[4] = {low, _mm_srli_si128(low, 8), high, _mm_srli_si128(high, 8)};
    for (int k = 0; k < 4; ++k) {
      const __m256i q = _mm256_sub_epi32(_mm256_cvtepu8_epi32(parts[k]), offset);
      _mm256_storeu_ps(out + 8 * k, _mm256_mul_ps(_mm256_cvtepi32_ps(q), d));
    }
#else
    dequantize_block(block, out);
#endif
  }
}

// x[n] replaced by its Q8_0 values (quantized, then decoded): what a query row becomes when llama.cpp scores it
// against a quantized K cache, which it does in integer dot products with the query quantized to Q8_0.
inline void round_row_through_q8_0(float* x, int n) {  // [n] in place
  for (int b = 0; b < n / 32; ++b) {
    BlockQ8_0 block;
    quantize_block_q8_0(x + 32 * b, block);
    dequantize_block(block, x + 32 * b);
  }
}

}  // namespace pagedllm
