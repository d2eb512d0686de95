#pragma once
// The inner loops of the CPU attention kernel over one block of keys, for one query row: scores (q·k), their
// exponentials, and the probability-weighted sum of V. AVX-512 when the build targets it, else AVX2 with FMA, else
// plain loops; every path computes the same quantities, the vector ones with a polynomial exp (within 2 ulp of
// expf over the range attention needs).
#include <cmath>
#include <cstddef>

#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
#include <immintrin.h>
#endif

// GCC 12's AVX-512 headers start some intrinsics from an "undefined" register, which its flow analysis then reports
// as possibly uninitialised once inlined here (fixed in later GCC); the values are always defined.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

namespace pagedllm::attention_simd {

#if defined(__AVX512F__)
// e^x for x <= 0 (scores minus their running maximum); below -87.3 the result is 0 (f32 underflow) as expf's is.
inline __m512 exp_nonpositive(__m512 x) {
  const __m512 lower = _mm512_set1_ps(-87.3365447f);
  const __mmask16 underflow = _mm512_cmp_ps_mask(x, lower, _CMP_LT_OQ);
  x = _mm512_max_ps(x, lower);
  // x = n ln2 + r with |r| <= ln2 / 2; ln2 split in two (0.693359375 - 2.12194440e-4) so that n ln2 is exact.
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  // e^r by its Taylor polynomial to degree 7 (error below 1e-8 relative on the range).
  __m512 p = _mm512_set1_ps(1.0f / 5040.0f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  return _mm512_maskz_mov_ps(static_cast<__mmask16>(~underflow), _mm512_scalef_ps(p, n));
}
#elif defined(__AVX2__) && defined(__FMA__)
inline __m256 exp_nonpositive(__m256 x) {
  const __m256 lower = _mm256_set1_ps(-87.3365447f);
  const __m256 underflow = _mm256_cmp_ps(x, lower, _CMP_LT_OQ);
  x = _mm256_max_ps(x, lower);
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.0f / 5040.0f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  // 2^n through the exponent field (n >= -126 here, so the result is a normal float).
  const __m256i exponent = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_andnot_ps(underflow, _mm256_mul_ps(p, _mm256_castsi256_ps(exponent)));
}
#endif

// scores[j] = scale * q · k_j for j < n_keys. q: [head_dim]; k_j at k + j * k_stride. Returns the largest score.
inline float score_keys(const float* q, const float* k, size_t k_stride, int n_keys, int head_dim, float scale,
                        float* scores) {
  float best = -INFINITY;
  for (int j = 0; j < n_keys; ++j) {
    const float* row = k + static_cast<size_t>(j) * k_stride;
    int d = 0;
    float sum = 0.0f;
#if defined(__AVX512F__)
    // Only for heads of 16 or more: below that the zeroed registers and the 16-lane reduction cost more per key
    // than the dot product itself (head_dim 8 ran at 3/4 of the 8-lane speed).
    if (head_dim >= 16) {
      __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
      for (; d + 32 <= head_dim; d += 32) {
        acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(q + d), _mm512_loadu_ps(row + d), acc0);
        acc1 = _mm512_fmadd_ps(_mm512_loadu_ps(q + d + 16), _mm512_loadu_ps(row + d + 16), acc1);
      }
      for (; d + 16 <= head_dim; d += 16) acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(q + d), _mm512_loadu_ps(row + d), acc0);
      sum = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
    }
#endif
#if defined(__AVX2__) && defined(__FMA__)
    if (head_dim - d >= 8) {
      __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
      for (; d + 16 <= head_dim; d += 16) {
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + d), _mm256_loadu_ps(row + d), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(q + d + 8), _mm256_loadu_ps(row + d + 8), acc1);
      }
      for (; d + 8 <= head_dim; d += 8) acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + d), _mm256_loadu_ps(row + d), acc0);
      const __m256 acc = _mm256_add_ps(acc0, acc1);
      __m128 half = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
      half = _mm_add_ps(half, _mm_movehl_ps(half, half));
      half = _mm_add_ss(half, _mm_movehdup_ps(half));
      sum += _mm_cvtss_f32(half);
    }
#endif
    for (; d < head_dim; ++d) sum += q[d] * row[d];
    scores[j] = sum * scale;
    best = std::fmax(best, scores[j]);
  }
  return best;
}

// p_j = e^(scores[j] - max) in place for j < n; returns their sum.
inline float exponentiate(float* scores, int n, float max) {
  int j = 0;
  float sum = 0.0f;
#if defined(__AVX512F__)
  const __m512 m = _mm512_set1_ps(max);
  __m512 total = _mm512_setzero_ps();
  for (; j + 16 <= n; j += 16) {
    const __m512 p = exp_nonpositive(_mm512_sub_ps(_mm512_loadu_ps(scores + j), m));
    _mm512_storeu_ps(scores + j, p);
    total = _mm512_add_ps(total, p);
  }
  if (j < n) {
    const __mmask16 mask = static_cast<__mmask16>((1u << (n - j)) - 1);
    const __m512 p = _mm512_maskz_mov_ps(mask, exp_nonpositive(_mm512_sub_ps(_mm512_maskz_loadu_ps(mask, scores + j), m)));
    _mm512_mask_storeu_ps(scores + j, mask, p);
    total = _mm512_add_ps(total, p);
    j = n;
  }
  sum = _mm512_reduce_add_ps(total);
#elif defined(__AVX2__) && defined(__FMA__)
  const __m256 m = _mm256_set1_ps(max);
  __m256 total = _mm256_setzero_ps();
  for (; j + 8 <= n; j += 8) {
    const __m256 p = exp_nonpositive(_mm256_sub_ps(_mm256_loadu_ps(scores + j), m));
    _mm256_storeu_ps(scores + j, p);
    total = _mm256_add_ps(total, p);
  }
  float lanes[8];
  _mm256_storeu_ps(lanes, total);
  for (float v : lanes) sum += v;
#endif
  for (; j < n; ++j) {
    scores[j] = std::exp(scores[j] - max);
    sum += scores[j];
  }
  return sum;
}

// out[d] = Σ_j p[j] · v_j[d] for d < head_dim. v_j at v + j * v_stride.
inline void weighted_sum(const float* p, const float* v, size_t v_stride, int n, int head_dim, float* out) {
  int d = 0;
#if defined(__AVX512F__)
  for (; d + 64 <= head_dim; d += 64) {
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps(), a2 = _mm512_setzero_ps(), a3 = _mm512_setzero_ps();
    for (int j = 0; j < n; ++j) {
      const __m512 w = _mm512_set1_ps(p[j]);
      const float* row = v + static_cast<size_t>(j) * v_stride + d;
      a0 = _mm512_fmadd_ps(w, _mm512_loadu_ps(row), a0);
      a1 = _mm512_fmadd_ps(w, _mm512_loadu_ps(row + 16), a1);
      a2 = _mm512_fmadd_ps(w, _mm512_loadu_ps(row + 32), a2);
      a3 = _mm512_fmadd_ps(w, _mm512_loadu_ps(row + 48), a3);
    }
    _mm512_storeu_ps(out + d, a0);
    _mm512_storeu_ps(out + d + 16, a1);
    _mm512_storeu_ps(out + d + 32, a2);
    _mm512_storeu_ps(out + d + 48, a3);
  }
  for (; d + 16 <= head_dim; d += 16) {
    __m512 a = _mm512_setzero_ps();
    for (int j = 0; j < n; ++j) {
      a = _mm512_fmadd_ps(_mm512_set1_ps(p[j]), _mm512_loadu_ps(v + static_cast<size_t>(j) * v_stride + d), a);
    }
    _mm512_storeu_ps(out + d, a);
  }
#elif defined(__AVX2__) && defined(__FMA__)
  for (; d + 32 <= head_dim; d += 32) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
    for (int j = 0; j < n; ++j) {
      const __m256 w = _mm256_set1_ps(p[j]);
      const float* row = v + static_cast<size_t>(j) * v_stride + d;
      a0 = _mm256_fmadd_ps(w, _mm256_loadu_ps(row), a0);
      a1 = _mm256_fmadd_ps(w, _mm256_loadu_ps(row + 8), a1);
      a2 = _mm256_fmadd_ps(w, _mm256_loadu_ps(row + 16), a2);
      a3 = _mm256_fmadd_ps(w, _mm256_loadu_ps(row + 24), a3);
    }
    _mm256_storeu_ps(out + d, a0);
    _mm256_storeu_ps(out + d + 8, a1);
    _mm256_storeu_ps(out + d + 16, a2);
    _mm256_storeu_ps(out + d + 24, a3);
  }
#endif
#if defined(__AVX2__) && defined(__FMA__)
  // What the wider loops leave in steps of 8 (all of a head of 8; the last 8 of 24, 40 ...), a row at a time.
  for (; d + 8 <= head_dim; d += 8) {
    __m256 a = _mm256_setzero_ps();
    for (int j = 0; j < n; ++j) {
      a = _mm256_fmadd_ps(_mm256_set1_ps(p[j]), _mm256_loadu_ps(v + static_cast<size_t>(j) * v_stride + d), a);
    }
    _mm256_storeu_ps(out + d, a);
  }
#endif
  for (; d < head_dim; ++d) {
    float a = 0.0f;
    for (int j = 0; j < n; ++j) a += p[j] * v[static_cast<size_t>(j) * v_stride + static_cast<size_t>(d)];
    out[d] = a;
  }
}

}  // namespace pagedllm::attention_simd

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
