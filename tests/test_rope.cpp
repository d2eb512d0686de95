// The RoPE angle math that the CPU and CUDA kernels share (kernels/common/rope.h). The YaRN blend of the
// extrapolated and interpolated angle is written as one explicit fused multiply-add so that nvcc (which contracts
// a*b + c*d into an FMA on its own) and the host compiler (which does not) compute the same theta; at long
// positions theta is thousands of radians, where one ulp moves cos and sin visibly. This pins that expression:
// rewritten as a plain a*b + c*d, the host results change and this test fails.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>

#include "kernels/common/rope.h"

using namespace pagedllm;

namespace {

uint32_t bits(float x) {
  uint32_t b;
  std::memcpy(&b, &x, sizeof b);
  return b;
}

}  // namespace

TEST_CASE("YaRN angles: the blend is one fused multiply-add, bit for bit, out to 16k positions") {
  RopeParams p;
  p.n_rot = 128;
  p.freq_base = 10000.0f;
  p.freq_scale = 1.0f / 8.0f;  // 8x context extension
  p.ext_factor = 1.0f;
  rope_yarn_corr_dims(p.n_rot, 4096, p.freq_base, &p.yarn_low, &p.yarn_high);
  REQUIRE(p.yarn_high > p.yarn_low);
  const float theta_scale = std::pow(p.freq_base, -2.0f / static_cast<float>(p.n_rot));
  int blended_pairs = 0;
  int fma_matters = 0;  // angles where the unfused expression would give other bits
  for (int position = 0; position <= 16384; position += 97) {
    float theta_extrap = static_cast<float>(position);
    for (int pair = 0; pair < p.n_rot / 2; ++pair) {
      float c = 0, s = 0;
      rope_cos_sin(p, theta_extrap, 1.0f, pair, &c, &s);
      // The expected value, spelled out here with the FMA explicit.
      float y = (static_cast<float>(pair) - p.yarn_low) / std::fmax(0.001f, p.yarn_high - p.yarn_low);
      y = std::fmin(1.0f, std::fmax(0.0f, y));
      const float ramp_mix = (1.0f - y) * p.ext_factor;
      const float theta_interp = p.freq_scale * theta_extrap;
      const float theta = std::fma(theta_extrap, ramp_mix, theta_interp * (1.0f - ramp_mix));
      const float mscale = p.attn_factor * (1.0f + 0.1f * std::log(1.0f / p.freq_scale));
      CHECK(bits(c) == bits(std::cos(theta) * mscale));
      CHECK(bits(s) == bits(std::sin(theta) * mscale));
      if (ramp_mix > 0.0f && ramp_mix < 1.0f) ++blended_pairs;
      // A product rounded on its own before the add: what an uncontracted a*b + c*d computes.
      volatile float product = theta_extrap * ramp_mix;
      if (bits(product + theta_interp * (1.0f - ramp_mix)) != bits(theta)) ++fma_matters;
      theta_extrap *= theta_scale;
    }
  }
  CHECK(blended_pairs > 100);
  CHECK(fma_matters > 10);  // the check above can tell the two expressions apart
}

TEST_CASE("rotation of a pair uses explicit FMAs, bit for bit") {
  const float pairs[][2] = {{1.0f, 0.0f}, {0.3f, -1.7f}, {123.456f, 0.001f}, {-5.5f, 2.25f}};
  for (const auto& pair : pairs) {
    for (float angle = -3.0f; angle <= 3.0f; angle += 0.37f) {
      float x0 = pair[0], x1 = pair[1];
      const float c = std::cos(angle), s = std::sin(angle);
      rope_rotate(&x0, &x1, c, s);
      CHECK(bits(x0) == bits(std::fma(pair[0], c, -(pair[1] * s))));
      CHECK(bits(x1) == bits(std::fma(pair[0], s, pair[1] * c)));
    }
  }
}
