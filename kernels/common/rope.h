#pragma once
// RoPE angles exactly as ggml's rope op forms them, shared by the CPU and CUDA kernels: theta starts at
// the position and is multiplied by base^(-2/n_rot) once per pair, divided by the optional frequency factor,
// scaled linearly or blended YaRN-style, and cos/sin carry the attention factor.
#include <math.h>  // fmaf, cosf, sinf: builtins on both sides (std:: versions are host-only)

#include <cmath>

#include "tensor/float16.h"

namespace pagedllm {

struct RopeParams {
  int n_rot = 0;              // rotated dimensions per head (== head_dim for llama)
  float freq_base = 10000.0f;
  float freq_scale = 1.0f;    // 1 / linear scaling factor
  float attn_factor = 1.0f;
  float ext_factor = 0.0f;    // 1 for YaRN, else 0
  float yarn_low = 0.0f;      // YaRN correction dims (pair-index space)
  float yarn_high = 0.0f;
  bool neox = false;          // pairs (i, i + n_rot/2) instead of (2i, 2i+1)
};

// The YaRN correction range for `n_rot` dims trained at `n_ctx_orig` (ggml_rope_yarn_corr_dims with beta 32/1).
inline void rope_yarn_corr_dims(int n_rot, int n_ctx_orig, float freq_base, float* low, float* high) {
  const float pi = 3.14159265358979323846f;
  auto corr_dim = [&](float beta) {
    return n_rot * std::log(static_cast<float>(n_ctx_orig) / (beta * 2.0f * pi)) / (2.0f * std::log(freq_base));
  };
  const float start = std::floor(corr_dim(32.0f));
  const float end = std::ceil(corr_dim(1.0f));
  *low = start > 0.0f ? start : 0.0f;
  *high = end < static_cast<float>(n_rot - 1) ? end : static_cast<float>(n_rot - 1);
}

// cos/sin for pair index `pair` given the running theta (position * base^(-2*pair/n_rot), before frequency
// factors). `freq_factor` is 1 when the model has no rope_freqs tensor.
PAGEDLLM_HD inline void rope_cos_sin(const RopeParams& p, float theta_extrap, float freq_factor, int pair,
                                     float* cos_out, float* sin_out) {
  theta_extrap = theta_extrap / freq_factor;
  const float theta_interp = p.freq_scale * theta_extrap;
  float theta = theta_interp;
  float mscale = p.attn_factor;
  if (p.ext_factor != 0.0f) {
    float y = (static_cast<float>(pair) - p.yarn_low) / fmaxf(0.001f, p.yarn_high - p.yarn_low);
    y = fminf(1.0f, fmaxf(0.0f, y));
    const float ramp_mix = (1.0f - y) * p.ext_factor;
    // One explicit fused multiply-add: left to the compilers, nvcc contracts a*b + c*d into an FMA and the host
    // compiler does not, and theta (thousands of radians at long positions) then differs by an ulp between them.
    theta = fmaf(theta_extrap, ramp_mix, theta_interp * (1.0f - ramp_mix));
    mscale *= 1.0f + 0.1f * logf(1.0f / p.freq_scale);
  }
  *cos_out = cosf(theta) * mscale;
  *sin_out = sinf(theta) * mscale;
}

// Rotates one pair in place, with explicit FMAs for the same reason as the blend above.
PAGEDLLM_HD inline void rope_rotate(float* x0, float* x1, float cos_theta, float sin_theta) {
  const float a = *x0, b = *x1;
  *x0 = fmaf(a, cos_theta, -(b * sin_theta));
  *x1 = fmaf(a, sin_theta, b * cos_theta);
}

}  // namespace pagedllm
