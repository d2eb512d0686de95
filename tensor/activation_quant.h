#pragma once
// Quantization of activations into the formats the weight types are multiplied against (ggml's vec_dot_type of each weight type):
// Q4_0/Q5_0/Q8_0 weights take Q8_0 activations, Q4_1/Q5_1 take Q8_1, K-quants take Q8_K, F16 weights take
// activations rounded to F16 and BF16 weights activations rounded to BF16.
//
// The formulas follow llama.cpp's CPU path on x86 (the build our logits are compared with), including its
// round-half-to-even, so both engines see the same integer activations. Shared by the CPU and CUDA kernels.
#include <cstdint>

#include "tensor/float16.h"
#include "tensor/quant_blocks.h"

namespace pagedllm {

PAGEDLLM_HD inline float absolute_value(float value) { return bits_to_f32(f32_to_bits(value) & 0x7fffffffu); }

PAGEDLLM_HD inline float max_absolute_value(const float* x, int n) {
  float result = 0.0f;
  for (int i = 0; i < n; ++i) {
    const float magnitude = absolute_value(x[i]);
    result = magnitude > result ? magnitude : result;
  }
  return result;
}

// x[32] -> Q8_0: d = amax / 127 (stored as f16), q = round_even(x · 127 / amax). The inverse uses the f32 amax,
// not the rounded d, as ggml's AVX2 quantizer does.
PAGEDLLM_HD inline void quantize_block_q8_0(const float* x /* [32] */, BlockQ8_0& out) {
  const float amax = max_absolute_value(x, 32);
  out.d = f32_to_fp16(amax / 127.0f);
  const float inverse = amax != 0.0f ? 127.0f / amax : 0.0f;
  for (int j = 0; j < 32; ++j) out.qs[j] = static_cast<int8_t>(round_to_nearest_int(x[j] * inverse));
}

// x[32] -> Q4_0, as llama.cpp's CPU path stores K/V rows of that type: the signed value of largest magnitude (the
// first on ties) maps to level 0, d = max / -8 (f32, stored as f16), and each q = min(15, floor(x / d + 8.5)), the
// inverse taken from the f32 d. (The weight quantizer in quantize.h rounds against the f16 d instead; K/V rows are
// written at run time by this rule so that both engines hold the same nibbles.)
PAGEDLLM_HD inline void quantize_block_q4_0(const float* x /* [32] */, BlockQ4_0& out) {
  float amax = 0.0f;
  float signed_max = 0.0f;
  for (int j = 0; j < 32; ++j) {
    const float magnitude = absolute_value(x[j]);
    if (magnitude > amax) {
      amax = magnitude;
      signed_max = x[j];
    }
  }
  const float d = signed_max / -8.0f;
  const float inverse = d != 0.0f ? 1.0f / d : 0.0f;
  out.d = f32_to_fp16(d);
  auto level = [inverse](float value) {
    const float shifted = value * inverse + 8.5f;  // in [0.5, 16.5] for finite input
    if (!(shifted >= 0.0f)) return 0;               // NaN: a defined level rather than an undefined conversion
    return shifted >= 15.0f ? 15 : static_cast<int>(shifted);
  };
  for (int j = 0; j < 16; ++j) {
    out.qs[j] = static_cast<uint8_t>(level(x[j]) | (level(x[j + 16]) << 4));
  }
}

// x[32] -> Q8_1: as Q8_0, plus s = f16(d · Σq) with the unrounded f32 d.
PAGEDLLM_HD inline void quantize_block_q8_1(const float* x /* [32] */, BlockQ8_1& out) {
  const float amax = max_absolute_value(x, 32);
  const float d = amax / 127.0f;
  const float inverse = amax != 0.0f ? 127.0f / amax : 0.0f;
  int sum = 0;
  for (int j = 0; j < 32; ++j) {
    const int q = round_to_nearest_int(x[j] * inverse);
    out.qs[j] = static_cast<int8_t>(q);
    sum += q;
  }
  out.d = f32_to_fp16(d);
  out.s = f32_to_fp16(d * static_cast<float>(sum));
}

// x[256] -> Q8_K: the signed value of largest magnitude maps to -127 (iscale = -127 / max), q = min(127,
// round_even(iscale · x)), d = 1 / iscale (f32), plus the 16-element sums the K-quant min terms need.
PAGEDLLM_HD inline void quantize_block_q8_k(const float* x /* [256] */, BlockQ8_K& out) {
  float amax = 0.0f;
  float signed_max = 0.0f;
  for (int j = 0; j < 256; ++j) {
    const float magnitude = absolute_value(x[j]);
    if (magnitude > amax) {
      amax = magnitude;
      signed_max = x[j];
    }
  }
  if (amax == 0.0f) {
    out.d = 0.0f;
    for (int j = 0; j < 256; ++j) out.qs[j] = 0;
    for (int j = 0; j < 16; ++j) out.bsums[j] = 0;
    return;
  }
  const float inverse = -127.0f / signed_max;
  for (int j = 0; j < 256; ++j) {
    const int q = round_to_nearest_int(inverse * x[j]);
    out.qs[j] = static_cast<int8_t>(q < 127 ? q : 127);
  }
  for (int group = 0; group < 16; ++group) {
    int sum = 0;
    for (int i = 0; i < 16; ++i) sum += out.qs[16 * group + i];
    out.bsums[group] = static_cast<int16_t>(sum);
  }
  out.d = 1.0f / inverse;
}

// F16/BF16 weights are multiplied with activations rounded to the same format; we keep the rounded values in f32
// (exactly representable) so the dot products need no second conversion.
PAGEDLLM_HD inline float round_through_fp16(float value) { return fp16_to_f32(f32_to_fp16(value)); }
PAGEDLLM_HD inline float round_through_bf16(float value) { return bf16_to_f32(f32_to_bf16(value)); }

}  // namespace pagedllm
