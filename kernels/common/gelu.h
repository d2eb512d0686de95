#pragma once
// GELU in its tanh form, as one scalar step both the CPU and CUDA backends call (Gemma's gated feed-forward).
//
// The reference CPU implementation does not evaluate the formula per element: it rounds the input to f16 and reads
// a table of the function's f16 values, with the tails cut at |x| >= 10 (0 below, x above). The same rounding of
// the input and of the result is applied here, computed rather than tabulated, so the activations match to the
// last f16 bit instead of drifting by up to half an f16 ulp per element.
#include <math.h>

#include "tensor/activation_quant.h"

namespace pagedllm {

PAGEDLLM_HD inline float gelu_tanh(float x) {
  if (x <= -10.0f) return 0.0f;
  if (x >= 10.0f) return x;
  const float h = round_through_fp16(x);
  constexpr float kSqrt2OverPi = 0.79788456080286535588f;
  constexpr float kCubic = 0.044715f;
  const float g = 0.5f * h * (1.0f + tanhf(kSqrt2OverPi * h * (1.0f + kCubic * h * h)));
  return round_through_fp16(g);
}

}  // namespace pagedllm
