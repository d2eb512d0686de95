#pragma once
// Whole-row conversions between f32 and IEEE binary16, for the K/V pools: eight at a time with F16C when the build
// targets it, else element by element through tensor/float16.h (the same bits either way).
#include <cstdint>

#include "tensor/float16.h"

#if defined(__F16C__) && defined(__AVX__)
#include <immintrin.h>
#endif

namespace pagedllm {

inline void f16_row_to_f32(const uint16_t* source, float* destination, int n) {  // [n] -> [n]
  int i = 0;
#if defined(__F16C__) && defined(__AVX__)
  for (; i + 8 <= n; i += 8) {
    const __m128i halves = _mm_loadu_si128(reinterpret_cast<const __m128i*>(source + i));
    _mm256_storeu_ps(destination + i, _mm256_cvtph_ps(halves));
  }
#endif
  for (; i < n; ++i) destination[i] = fp16_to_f32(source[i]);
}

inline void f32_row_to_f16(const float* source, uint16_t* destination, int n) {  // [n] -> [n]
  int i = 0;
#if defined(__F16C__) && defined(__AVX__)
  for (; i + 8 <= n; i += 8) {
    const __m128i halves = _mm256_cvtps_ph(_mm256_loadu_ps(source + i), _MM_FROUND_TO_NEAREST_INT);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(destination + i), halves);
  }
#endif
  for (; i < n; ++i) destination[i] = f32_to_fp16(source[i]);
}

}  // namespace pagedllm
