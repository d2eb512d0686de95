#pragma once
// The online softmax (Milakov & Gimelshein; FlashAttention) as scalar steps both the CPU and CUDA attention kernels
// call, so the CPU tests exercise the exact arithmetic the GPU runs.
//
// A row of attention keeps a running maximum m, a running sum l = sum_j exp(s_j - m) and an UNNORMALISED output
// o = sum_j exp(s_j - m) * v_j. When a tile of scores raises the maximum, the old l and o are rescaled by
// exp(m_old - m_new); at the end out = o / l. Two partial results over disjoint key ranges (flash-decoding splits)
// merge the same way. m = -inf means "no key seen yet" and is handled explicitly, because exp(-inf - -inf) is NaN.
#include <math.h>

#include "tensor/float16.h"

namespace pagedllm {

struct SoftmaxState {
  float max;  // running maximum score, -INFINITY before the first key
  float sum;  // sum of exp(score - max) over the keys seen
};

PAGEDLLM_HD inline SoftmaxState softmax_state_empty() { return SoftmaxState{-INFINITY, 0.0f}; }

// Raises the running maximum to include a tile whose largest score is `tile_max` and returns the factor by which
// the caller must scale its output accumulator (the sum is scaled here). The caller then adds, for each score s of
// the tile, p = exp(s - state.max) to state.sum and p * v to the accumulator. A tile of only masked scores
// (tile_max = -inf) changes nothing and returns 1.
PAGEDLLM_HD inline float softmax_rescale(SoftmaxState& state, float tile_max) {
  if (tile_max <= state.max) return 1.0f;
  const float factor = state.max == -INFINITY ? 0.0f : expf(state.max - tile_max);
  state.max = tile_max;
  state.sum *= factor;
  return factor;
}

// The factors that bring two partial results to a common maximum.
struct SoftmaxMerge {
  float scale_a;
  float scale_b;
};

// Merges partial b into partial a: afterwards a describes both key ranges, and the caller forms
// o_a = o_a * scale_a + o_b * scale_b. An empty partial (max = -inf) contributes nothing.
PAGEDLLM_HD inline SoftmaxMerge softmax_merge(SoftmaxState& a, const SoftmaxState& b) {
  const float max = a.max > b.max ? a.max : b.max;
  if (max == -INFINITY) return SoftmaxMerge{0.0f, 0.0f};
  const float scale_a = a.max == -INFINITY ? 0.0f : expf(a.max - max);
  const float scale_b = b.max == -INFINITY ? 0.0f : expf(b.max - max);
  a.sum = a.sum * scale_a + b.sum * scale_b;
  a.max = max;
  return SoftmaxMerge{scale_a, scale_b};
}

// The factor that turns the accumulator into the attention output: 1 / sum (0 for a row that saw no key, which
// the causal contract never produces but which must not divide by zero).
PAGEDLLM_HD inline float softmax_normalizer(const SoftmaxState& state) {
  return state.sum > 0.0f ? 1.0f / state.sum : 0.0f;
}

}  // namespace pagedllm
