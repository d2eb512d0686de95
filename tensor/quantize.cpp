#include "tensor/quantize.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "common/error.h"
#include "tensor/activation_quant.h"
#include "tensor/quant_blocks.h"

namespace pagedllm {
namespace {

// round(value) clamped to [low, high]; clamping first keeps huge or non-finite ratios well defined.
int quantize_level(float value, int low, int high) {
  if (!(value >= static_cast<float>(low))) return low;  // also catches NaN
  if (value > static_cast<float>(high)) return high;
  return std::clamp(round_to_nearest_int(value), low, high);
}

// The signed value of largest magnitude (the first one on ties), the anchor of the symmetric formats.
float signed_max_magnitude(const float* x, int n) {
  float signed_max = 0.0f;
  for (int i = 0; i < n; ++i) {
    if (std::fabs(x[i]) > std::fabs(signed_max)) signed_max = x[i];
  }
  return signed_max;
}

// ---------------------------------------------------------------- legacy 32-element blocks

// Symmetric 2^bits levels: the largest magnitude maps to the most negative level (-8 or -16) so it is exact, the
// opposite extreme may clip by one step. q is computed against the f16-rounded scale the reader will use.
template <typename Block, int kBits>
void quantize_symmetric_block(const float* x, Block& block) {
  constexpr int kOffset = 1 << (kBits - 1);
  const float signed_max = signed_max_magnitude(x, 32);
  block.d = f32_to_fp16(signed_max / -static_cast<float>(kOffset));
  const float d = fp16_to_f32(block.d);
  const float inverse = d != 0.0f ? 1.0f / d : 0.0f;
  uint32_t high_bits = 0;
  std::memset(block.qs, 0, sizeof block.qs);
  for (int j = 0; j < 32; ++j) {
    const int q = quantize_level(x[j] * inverse + static_cast<float>(kOffset), 0, 2 * kOffset - 1);
    block.qs[j % 16] |= static_cast<uint8_t>((q & 0xF) << (j < 16 ? 0 : 4));
    high_bits |= static_cast<uint32_t>(q >> 4) << j;
  }
  if constexpr (kBits == 5) {
    for (int i = 0; i < 4; ++i) block.qh[i] = static_cast<uint8_t>(high_bits >> (8 * i));
  }
}

// Asymmetric: [min, max] split into 2^bits - 1 steps, y = q · d + m.
template <typename Block, int kBits>
void quantize_min_max_block(const float* x, Block& block) {
  constexpr int kMaxLevel = (1 << kBits) - 1;
  const auto [low, high] = std::minmax_element(x, x + 32);
  block.d = f32_to_fp16((*high - *low) / static_cast<float>(kMaxLevel));
  block.m = f32_to_fp16(*low);
  const float d = fp16_to_f32(block.d);
  const float m = fp16_to_f32(block.m);
  const float inverse = d != 0.0f ? 1.0f / d : 0.0f;
  uint32_t high_bits = 0;
  std::memset(block.qs, 0, sizeof block.qs);
  for (int j = 0; j < 32; ++j) {
    const int q = quantize_level((x[j] - m) * inverse, 0, kMaxLevel);
    block.qs[j % 16] |= static_cast<uint8_t>((q & 0xF) << (j < 16 ? 0 : 4));
    high_bits |= static_cast<uint32_t>(q >> 4) << j;
  }
  if constexpr (kBits == 5) {
    for (int i = 0; i < 4; ++i) block.qh[i] = static_cast<uint8_t>(high_bits >> (8 * i));
  }
}

// Weights in Q8_0 use the activation formula (amax / 127); the two readers are the same.
void quantize_q8_0_block(const float* x, BlockQ8_0& block) { quantize_block_q8_0(x, block); }

// ---------------------------------------------------------------- K-quants

// x ≈ scale · q − min with q in [0, max_level] and min >= 0 (the K-quant formats cannot shift upwards).
struct ScaleMin {
  float scale = 0.0f;
  float min = 0.0f;
};

float scale_min_error(const float* x, int n, int max_level, ScaleMin fit) {
  const float inverse = fit.scale != 0.0f ? 1.0f / fit.scale : 0.0f;
  float error = 0.0f;
  for (int i = 0; i < n; ++i) {
    const int q = quantize_level((x[i] + fit.min) * inverse, 0, max_level);
    const float difference = fit.scale * static_cast<float>(q) - fit.min - x[i];
    error += difference * difference;
  }
  return error;
}

// Tries a few step counts around max_level across [min(0, x), max(x)], refits scale and offset by least squares
// for the levels each one picks, and keeps the fit with the smallest squared error.
ScaleMin fit_scale_min(const float* x, int n, int max_level) {
  const float low = std::min(0.0f, *std::min_element(x, x + n));
  const float high = *std::max_element(x, x + n);
  ScaleMin best{0.0f, -low};
  if (!(high > low)) return best;
  best.scale = (high - low) / static_cast<float>(max_level);
  float best_error = scale_min_error(x, n, max_level, best);
  for (int step = -4; step <= 8; ++step) {
    const float scale = (high - low) / (static_cast<float>(max_level) + 0.25f * static_cast<float>(step));
    // Levels for this candidate, then the (scale, offset) that fit them best.
    double sum_q = 0, sum_qq = 0, sum_x = 0, sum_xq = 0;
    for (int i = 0; i < n; ++i) {
      const double q = quantize_level((x[i] - low) / scale, 0, max_level);
      sum_q += q;
      sum_qq += q * q;
      sum_x += x[i];
      sum_xq += x[i] * q;
    }
    const double determinant = n * sum_qq - sum_q * sum_q;
    if (determinant <= 0) continue;
    double fitted_scale = (n * sum_xq - sum_q * sum_x) / determinant;
    double offset = (sum_x - fitted_scale * sum_q) / n;
    if (offset > 0) {  // min must stay >= 0: pin the offset at zero and refit the scale alone
      offset = 0;
      fitted_scale = sum_xq / sum_qq;
    }
    if (!(fitted_scale > 0)) continue;
    const ScaleMin candidate{static_cast<float>(fitted_scale), static_cast<float>(-offset)};
    const float error = scale_min_error(x, n, max_level, candidate);
    if (error < best_error) {
      best_error = error;
      best = candidate;
    }
  }
  return best;
}

// Q4_K / Q5_K: 8 sub-blocks of 32, each with a six-bit scale and min relative to the f16 super-block d and dmin.
template <typename Block, int kBits>
void quantize_q4_k_like_block(const float* x, Block& block) {
  constexpr int kMaxLevel = (1 << kBits) - 1;
  ScaleMin fits[8];
  float max_scale = 0.0f, max_min = 0.0f;
  for (int b = 0; b < 8; ++b) {
    fits[b] = fit_scale_min(x + 32 * b, 32, kMaxLevel);
    max_scale = std::max(max_scale, fits[b].scale);
    max_min = std::max(max_min, fits[b].min);
  }
  const float d = max_scale / 63.0f;
  const float dmin = max_min / 63.0f;
  block.d = f32_to_fp16(d);
  block.dmin = f32_to_fp16(dmin);
  int scale_q[8], min_q[8];
  for (int b = 0; b < 8; ++b) {
    scale_q[b] = d > 0.0f ? quantize_level(fits[b].scale / d, 0, 63) : 0;
    min_q[b] = dmin > 0.0f ? quantize_level(fits[b].min / dmin, 0, 63) : 0;
  }
  std::memset(block.scales, 0, sizeof block.scales);
  for (int b = 0; b < 8; ++b) {
    if (b < 4) {
      block.scales[b] |= static_cast<uint8_t>(scale_q[b]);
      block.scales[b + 4] |= static_cast<uint8_t>(min_q[b]);
    } else {
      block.scales[b + 4] = static_cast<uint8_t>((scale_q[b] & 0xF) | ((min_q[b] & 0xF) << 4));
      block.scales[b - 4] |= static_cast<uint8_t>((scale_q[b] >> 4) << 6);
      block.scales[b] |= static_cast<uint8_t>((min_q[b] >> 4) << 6);
    }
  }
  // Final levels against the scales exactly as the reader reconstructs them.
  const float stored_d = fp16_to_f32(block.d);
  const float stored_dmin = fp16_to_f32(block.dmin);
  std::memset(block.qs, 0, sizeof block.qs);
  if constexpr (kBits == 5) std::memset(block.qh, 0, sizeof block.qh);
  for (int b = 0; b < 8; ++b) {
    const float scale = stored_d * static_cast<float>(scale_q[b]);
    const float min = stored_dmin * static_cast<float>(min_q[b]);
    const float inverse = scale != 0.0f ? 1.0f / scale : 0.0f;
    for (int l = 0; l < 32; ++l) {
      const int q = quantize_level((x[32 * b + l] + min) * inverse, 0, kMaxLevel);
      block.qs[32 * (b / 2) + l] |= static_cast<uint8_t>((q & 0xF) << (4 * (b % 2)));
      if constexpr (kBits == 5) block.qh[l] |= static_cast<uint8_t>((q >> 4) << b);
    }
  }
}

// Symmetric fit of 16 values to q in [-32, 31]: either the largest magnitude lands exactly on -32 (the other
// sign may clip at 31) or nothing clips (amax / 31); each refit by least squares, best error wins.
float fit_q6_scale(const float* x) {
  const float signed_max = signed_max_magnitude(x, 16);
  if (signed_max == 0.0f) return 0.0f;
  const float candidates[2] = {signed_max / -32.0f, std::fabs(signed_max) / 31.0f};
  float best_scale = candidates[0];
  float best_error = INFINITY;
  for (float scale : candidates) {
    for (int refit = 0; refit < 2; ++refit) {
      double sum_qq = 0, sum_xq = 0;
      float error = 0.0f;
      for (int i = 0; i < 16; ++i) {
        const int q = quantize_level(x[i] / scale, -32, 31);
        const float difference = scale * static_cast<float>(q) - x[i];
        error += difference * difference;
        sum_qq += static_cast<double>(q) * q;
        sum_xq += static_cast<double>(x[i]) * q;
      }
      if (error < best_error) {
        best_error = error;
        best_scale = scale;
      }
      if (sum_qq == 0) break;
      scale = static_cast<float>(sum_xq / sum_qq);
    }
  }
  return best_scale;
}

void quantize_q6_k_block(const float* x, BlockQ6_K& block) {
  float scales[16];
  float max_scale = 0.0f;
  for (int s = 0; s < 16; ++s) {
    scales[s] = fit_q6_scale(x + 16 * s);
    max_scale = std::max(max_scale, std::fabs(scales[s]));
  }
  const float d = max_scale / 127.0f;
  block.d = f32_to_fp16(d);
  const float stored_d = fp16_to_f32(block.d);
  std::memset(block.ql, 0, sizeof block.ql);
  std::memset(block.qh, 0, sizeof block.qh);
  for (int s = 0; s < 16; ++s) {
    const int scale_q = d > 0.0f ? quantize_level(scales[s] / d, -128, 127) : 0;
    block.scales[s] = static_cast<int8_t>(scale_q);
    const float scale = stored_d * static_cast<float>(scale_q);
    const float inverse = scale != 0.0f ? 1.0f / scale : 0.0f;
    for (int i = 0; i < 16; ++i) {
      const int e = 16 * s + i;
      const int q = quantize_level(x[e] * inverse, -32, 31) + 32;  // stored 0..63
      const int half = e / 128, group = (e % 128) / 32, l = e % 32;
      block.ql[64 * half + 32 * (group % 2) + l] |= static_cast<uint8_t>((q & 0xF) << (group < 2 ? 0 : 4));
      block.qh[32 * half + l] |= static_cast<uint8_t>((q >> 4) << (2 * group));
    }
  }
}

template <typename Block, typename QuantizeBlock>
void quantize_blocks(const float* src, void* dst, int64_t n, QuantizeBlock quantize_block) {
  Block* blocks = static_cast<Block*>(dst);  // [n / Block::kSize]
  for (int64_t i = 0; i < n / Block::kSize; ++i) quantize_block(src + i * Block::kSize, blocks[i]);
}

}  // namespace

bool can_quantize(GgmlType type) {
  switch (type) {
    case GgmlType::F32: case GgmlType::F16: case GgmlType::BF16: case GgmlType::Q4_0: case GgmlType::Q4_1:
    case GgmlType::Q5_0: case GgmlType::Q5_1: case GgmlType::Q8_0: case GgmlType::Q8_1: case GgmlType::Q4_K:
    case GgmlType::Q5_K: case GgmlType::Q6_K: case GgmlType::Q8_K:
      return true;
    default:
      return false;
  }
}

size_t quantize_row(GgmlType type, const float* src, void* dst, int64_t n) {
  const TypeTraits& traits = type_traits(type);
  if (!can_quantize(type)) fail("no quantizer for tensor type {}", traits.name);
  if (n < 0 || n % traits.block_size != 0) {
    fail("cannot quantize {} elements to {}: not a multiple of its block size {}", n, traits.name,
         traits.block_size);
  }
  switch (type) {
    case GgmlType::F32:
      std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
      break;
    case GgmlType::F16: {
      uint16_t* halves = static_cast<uint16_t*>(dst);  // [n]
      for (int64_t i = 0; i < n; ++i) halves[i] = f32_to_fp16(src[i]);
      break;
    }
    case GgmlType::BF16: {
      uint16_t* values = static_cast<uint16_t*>(dst);  // [n]
      for (int64_t i = 0; i < n; ++i) values[i] = f32_to_bf16(src[i]);
      break;
    }
    case GgmlType::Q4_0: quantize_blocks<BlockQ4_0>(src, dst, n, quantize_symmetric_block<BlockQ4_0, 4>); break;
    case GgmlType::Q5_0: quantize_blocks<BlockQ5_0>(src, dst, n, quantize_symmetric_block<BlockQ5_0, 5>); break;
    case GgmlType::Q4_1: quantize_blocks<BlockQ4_1>(src, dst, n, quantize_min_max_block<BlockQ4_1, 4>); break;
    case GgmlType::Q5_1: quantize_blocks<BlockQ5_1>(src, dst, n, quantize_min_max_block<BlockQ5_1, 5>); break;
    case GgmlType::Q8_0: quantize_blocks<BlockQ8_0>(src, dst, n, quantize_q8_0_block); break;
    case GgmlType::Q8_1:
      quantize_blocks<BlockQ8_1>(src, dst, n, [](const float* x, BlockQ8_1& b) { quantize_block_q8_1(x, b); });
      break;
    case GgmlType::Q8_K:
      quantize_blocks<BlockQ8_K>(src, dst, n, [](const float* x, BlockQ8_K& b) { quantize_block_q8_k(x, b); });
      break;
    case GgmlType::Q4_K: quantize_blocks<BlockQ4_K>(src, dst, n, quantize_q4_k_like_block<BlockQ4_K, 4>); break;
    case GgmlType::Q5_K: quantize_blocks<BlockQ5_K>(src, dst, n, quantize_q4_k_like_block<BlockQ5_K, 5>); break;
    case GgmlType::Q6_K: quantize_blocks<BlockQ6_K>(src, dst, n, quantize_q6_k_block); break;
    default: fail("no quantizer for tensor type {}", traits.name);
  }
  return row_bytes(type, n);
}

}  // namespace pagedllm
