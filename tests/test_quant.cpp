// Tensor-type math: f16/bf16 conversions on their edge cases, dequantization of hand-built blocks of every
// computable type against ggml's dequantization formulas, written out independently in the test, and quantize -> dequantize round trips within each
// format's error bound.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "common/error.h"
#include "tensor/activation_quant.h"
#include "tensor/float16.h"
#include "tensor/quant_blocks.h"
#include "tensor/dequantize.h"
#include "tensor/quantize.h"

using namespace pagedllm;

namespace {

uint32_t bits_of(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  return bits;
}
float float_of(uint32_t bits) {
  float value;
  std::memcpy(&value, &bits, sizeof value);
  return value;
}

// Dequantizes one block given as raw bytes.
template <typename Block>
std::vector<float> dequantize_one(GgmlType type, const Block& block) {
  std::vector<float> out(Block::kSize);
  dequantize_row(type, &block, out.data(), Block::kSize);
  return out;
}

std::vector<float> gaussian_row(int64_t n, uint32_t seed, float sigma = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, sigma);
  std::vector<float> row(static_cast<size_t>(n));
  for (float& v : row) v = normal(rng);
  return row;
}

std::vector<float> round_trip(GgmlType type, const std::vector<float>& row) {
  std::vector<uint8_t> packed(row_bytes(type, static_cast<int64_t>(row.size())));
  CHECK(quantize_row(type, row.data(), packed.data(), static_cast<int64_t>(row.size())) == packed.size());
  std::vector<float> out(row.size());
  dequantize_row(type, packed.data(), out.data(), static_cast<int64_t>(row.size()));
  return out;
}

float max_abs(const float* x, int n) {
  float result = 0.0f;
  for (int i = 0; i < n; ++i) result = std::max(result, std::fabs(x[i]));
  return result;
}

double rms_error(const std::vector<float>& a, const std::vector<float>& b) {
  double sum = 0;
  for (size_t i = 0; i < a.size(); ++i) sum += (static_cast<double>(a[i]) - b[i]) * (static_cast<double>(a[i]) - b[i]);
  return std::sqrt(sum / static_cast<double>(a.size()));
}

}  // namespace

// ---------------------------------------------------------------- f16 / bf16

TEST_CASE("fp16 -> f32 decodes zeros, normals, subnormals, infinities and NaNs exactly") {
  CHECK(bits_of(fp16_to_f32_portable(0x0000)) == 0x00000000u);
  CHECK(bits_of(fp16_to_f32_portable(0x8000)) == 0x80000000u);  // -0 keeps its sign
  CHECK(fp16_to_f32_portable(0x3C00) == 1.0f);
  CHECK(fp16_to_f32_portable(0xC000) == -2.0f);
  CHECK(fp16_to_f32_portable(0x3555) == 0.333251953125f);
  CHECK(fp16_to_f32_portable(0x7BFF) == 65504.0f);                  // largest finite
  CHECK(fp16_to_f32_portable(0x0400) == std::ldexp(1.0f, -14));     // smallest normal
  CHECK(fp16_to_f32_portable(0x0001) == std::ldexp(1.0f, -24));     // smallest subnormal
  CHECK(fp16_to_f32_portable(0x03FF) == std::ldexp(1023.0f, -24));  // largest subnormal
  CHECK(fp16_to_f32_portable(0x8001) == -std::ldexp(1.0f, -24));
  CHECK(fp16_to_f32_portable(0x7C00) == std::numeric_limits<float>::infinity());
  CHECK(fp16_to_f32_portable(0xFC00) == -std::numeric_limits<float>::infinity());
  CHECK(bits_of(fp16_to_f32_portable(0x7E00)) == 0x7FC00000u);  // quiet NaN, payload moved up
  CHECK(bits_of(fp16_to_f32_portable(0xFD01)) == 0xFFE02000u);  // signalling NaN: sign and payload kept, quieted
}

TEST_CASE("f32 -> fp16 rounds to nearest even, overflows to inf and produces subnormals") {
  const float one = 1.0f;
  CHECK(f32_to_fp16_portable(one) == 0x3C00);
  CHECK(f32_to_fp16_portable(-0.0f) == 0x8000);
  CHECK(f32_to_fp16_portable(1.0f + std::ldexp(1.0f, -11)) == 0x3C00);                         // tie -> even
  CHECK(f32_to_fp16_portable(1.0f + 3 * std::ldexp(1.0f, -11)) == 0x3C02);                     // tie -> even
  CHECK(f32_to_fp16_portable(1.0f + std::ldexp(1.0f, -11) + std::ldexp(1.0f, -20)) == 0x3C01);  // above the tie
  CHECK(f32_to_fp16_portable(65504.0f) == 0x7BFF);
  CHECK(f32_to_fp16_portable(65519.0f) == 0x7BFF);
  CHECK(f32_to_fp16_portable(65520.0f) == 0x7C00);  // the tie above 65504 rounds to the even "65536" = inf
  CHECK(f32_to_fp16_portable(1e10f) == 0x7C00);
  CHECK(f32_to_fp16_portable(-1e10f) == 0xFC00);
  CHECK(f32_to_fp16_portable(std::numeric_limits<float>::infinity()) == 0x7C00);
  CHECK(f32_to_fp16_portable(std::ldexp(1.0f, -24)) == 0x0001);
  CHECK(f32_to_fp16_portable(std::ldexp(1.0f, -25)) == 0x0000);                   // tie between 0 and 2^-24
  CHECK(f32_to_fp16_portable(std::ldexp(1.0f, -25) * 1.0000001f) == 0x0001);      // just above the tie
  CHECK(f32_to_fp16_portable(std::ldexp(3.0f, -25)) == 0x0002);                   // tie between 1 and 2 units
  CHECK(f32_to_fp16_portable(std::ldexp(1.0f, -14) - std::ldexp(1.0f, -25)) == 0x0400);  // rounds up to normal
  CHECK(f32_to_fp16_portable(std::ldexp(1.0f, -30)) == 0x0000);
  CHECK(f32_to_fp16_portable(-std::ldexp(5.0f, -24)) == 0x8005);
  CHECK(f32_to_fp16_portable(float_of(0x7FC00000u)) == 0x7E00);
  CHECK(f32_to_fp16_portable(float_of(0xFF800001u)) == 0xFE00);  // signalling NaN comes back quiet, sign kept
}

TEST_CASE("every fp16 value survives f16 -> f32 -> f16, and the fast paths match the portable code") {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const uint16_t half = static_cast<uint16_t>(h);
    const bool is_nan = (half & 0x7C00) == 0x7C00 && (half & 0x03FF) != 0;
    const uint16_t back = f32_to_fp16_portable(fp16_to_f32_portable(half));
    if (is_nan) {
      CHECK(back == (half | 0x0200));  // quieted, payload and sign kept
    } else {
      CHECK(back == half);
    }
    CHECK(bits_of(fp16_to_f32(half)) == bits_of(fp16_to_f32_portable(half)));
  }
  std::mt19937 rng(7);
  for (int i = 0; i < 2000000; ++i) {
    const uint32_t bits = rng();
    CHECK(f32_to_fp16(float_of(bits)) == f32_to_fp16_portable(float_of(bits)));
  }
}

TEST_CASE("bf16 conversions round to nearest even and keep NaNs quiet") {
  CHECK(f32_to_bf16(1.0f) == 0x3F80);
  CHECK(f32_to_bf16(1.0f + std::ldexp(1.0f, -8)) == 0x3F80);                         // tie -> even
  CHECK(f32_to_bf16(1.0f + 3 * std::ldexp(1.0f, -8)) == 0x3F82);                     // tie -> even
  CHECK(f32_to_bf16(1.0f + std::ldexp(1.0f, -8) + std::ldexp(1.0f, -20)) == 0x3F81);  // above the tie
  CHECK(f32_to_bf16(-2.0f) == 0xC000);
  CHECK(f32_to_bf16(-std::numeric_limits<float>::infinity()) == 0xFF80);
  CHECK(f32_to_bf16(std::numeric_limits<float>::max()) == 0x7F80);  // rounds up to inf
  CHECK(f32_to_bf16(float_of(0x7F800001u)) == 0x7FC0);               // lowest-payload NaN must not become inf
  CHECK(f32_to_bf16(float_of(0xFFC12345u)) == 0xFFC1);
  CHECK(bf16_to_f32(0x4049) == 3.140625f);
  CHECK(bf16_to_f32(0x0001) == float_of(0x00010000u));  // subnormal
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const uint16_t value = static_cast<uint16_t>(h);
    if ((value & 0x7F80) == 0x7F80 && (value & 0x7F) != 0) continue;  // NaNs checked above
    CHECK(f32_to_bf16(bf16_to_f32(value)) == value);
  }
}

TEST_CASE("round_to_nearest_int rounds half to even like ggml's nearest_int") {
  CHECK(round_to_nearest_int(2.5f) == 2);
  CHECK(round_to_nearest_int(3.5f) == 4);
  CHECK(round_to_nearest_int(-2.5f) == -2);
  CHECK(round_to_nearest_int(-0.5f) == 0);
  CHECK(round_to_nearest_int(1.49f) == 1);
  CHECK(round_to_nearest_int(-127.4f) == -127);
  CHECK(round_to_nearest_int(126.6f) == 127);
}

// ---------------------------------------------------------------- hand-built blocks

TEST_CASE("float rows dequantize to their values") {
  const float values[4] = {1.5f, -0.0f, 3.0e-40f, -65504.0f};
  std::vector<float> out(4);
  dequantize_row(GgmlType::F32, values, out.data(), 4);
  for (int i = 0; i < 4; ++i) CHECK(bits_of(out[i]) == bits_of(values[i]));

  const uint16_t halves[4] = {0x3C00, 0xC400, 0x0001, 0x7BFF};  // 1, -4, 2^-24, 65504
  dequantize_row(GgmlType::F16, halves, out.data(), 4);
  CHECK(out[0] == 1.0f);
  CHECK(out[1] == -4.0f);
  CHECK(out[2] == std::ldexp(1.0f, -24));
  CHECK(out[3] == 65504.0f);

  const uint16_t brains[4] = {0x3F80, 0xC0A0, 0x4049, 0x0000};  // 1, -5, 3.140625, 0
  dequantize_row(GgmlType::BF16, brains, out.data(), 4);
  CHECK(out[0] == 1.0f);
  CHECK(out[1] == -5.0f);
  CHECK(out[2] == 3.140625f);
  CHECK(out[3] == 0.0f);
}

TEST_CASE("Q4_0 and Q4_1: element j in the low nibble of byte j, element j + 16 in the high nibble") {
  BlockQ4_0 q4_0{};
  q4_0.d = 0x3800;  // 0.5
  for (int j = 0; j < 16; ++j) q4_0.qs[j] = static_cast<uint8_t>(j | ((15 - j) << 4));
  auto y = dequantize_one(GgmlType::Q4_0, q4_0);
  CHECK(y[0] == -4.0f);   // (0 - 8) * 0.5
  CHECK(y[15] == 3.5f);   // (15 - 8) * 0.5
  CHECK(y[16] == 3.5f);   // high nibble of byte 0 is 15
  CHECK(y[31] == -4.0f);  // high nibble of byte 15 is 0
  for (int j = 0; j < 16; ++j) {
    CHECK(y[j] == (j - 8) * 0.5f);
    CHECK(y[j + 16] == (15 - j - 8) * 0.5f);
  }

  BlockQ4_1 q4_1{};
  q4_1.d = 0x3400;  // 0.25
  q4_1.m = 0xBE00;  // -1.5
  for (int j = 0; j < 16; ++j) q4_1.qs[j] = static_cast<uint8_t>(j | ((15 - j) << 4));
  y = dequantize_one(GgmlType::Q4_1, q4_1);
  CHECK(y[0] == -1.5f);
  CHECK(y[16] == 2.25f);  // 15 * 0.25 - 1.5
  for (int j = 0; j < 16; ++j) {
    CHECK(y[j] == j * 0.25f - 1.5f);
    CHECK(y[j + 16] == (15 - j) * 0.25f - 1.5f);
  }
}

TEST_CASE("Q5_0 and Q5_1: bit e of the little-endian qh word is the fifth bit of element e") {
  const uint32_t fifth_bits = 0xA5A5F00Fu;
  BlockQ5_0 q5_0{};
  q5_0.d = 0x4000;  // 2
  std::memcpy(q5_0.qh, &fifth_bits, 4);  // the tests run on little-endian hosts
  for (int j = 0; j < 16; ++j) q5_0.qs[j] = static_cast<uint8_t>(((3 * j) & 0xF) | (((j + 5) & 0xF) << 4));
  auto y = dequantize_one(GgmlType::Q5_0, q5_0);
  CHECK(y[0] == (0 + 16 - 16) * 2.0f);         // nibble 0, bit 0 set
  CHECK(y[4] == (12 + 0 - 16) * 2.0f);         // nibble 12, bit 4 clear
  CHECK(y[31] == (((15 + 5) & 0xF) + 16 - 16) * 2.0f);  // bit 31 set
  for (int e = 0; e < 32; ++e) {
    const int j = e % 16;
    const int nibble = e < 16 ? (3 * j) & 0xF : (j + 5) & 0xF;
    const int q = nibble + 16 * static_cast<int>((fifth_bits >> e) & 1);
    CHECK(y[e] == (q - 16) * 2.0f);
  }

  BlockQ5_1 q5_1{};
  q5_1.d = 0x3800;  // 0.5
  q5_1.m = 0x4200;  // 3
  std::memcpy(q5_1.qh, &fifth_bits, 4);
  std::memcpy(q5_1.qs, q5_0.qs, 16);
  y = dequantize_one(GgmlType::Q5_1, q5_1);
  for (int e = 0; e < 32; ++e) {
    const int j = e % 16;
    const int nibble = e < 16 ? (3 * j) & 0xF : (j + 5) & 0xF;
    const int q = nibble + 16 * static_cast<int>((fifth_bits >> e) & 1);
    CHECK(y[e] == q * 0.5f + 3.0f);
  }
}

TEST_CASE("Q8_0, Q8_1 and Q8_K: y = d * q") {
  BlockQ8_0 q8_0{};
  q8_0.d = 0x3000;  // 0.125
  for (int j = 0; j < 32; ++j) q8_0.qs[j] = static_cast<int8_t>(8 * j - 128);
  auto y = dequantize_one(GgmlType::Q8_0, q8_0);
  CHECK(y[0] == -16.0f);
  CHECK(y[31] == 15.0f);
  for (int j = 0; j < 32; ++j) CHECK(y[j] == (8 * j - 128) * 0.125f);

  BlockQ8_1 q8_1{};
  q8_1.d = 0xC000;  // -2
  q8_1.s = 0x7BFF;  // not used by dequantization
  for (int j = 0; j < 32; ++j) q8_1.qs[j] = static_cast<int8_t>(j - 16);
  y = dequantize_one(GgmlType::Q8_1, q8_1);
  for (int j = 0; j < 32; ++j) CHECK(y[j] == (j - 16) * -2.0f);

  BlockQ8_K q8_k{};
  q8_k.d = 0.1f;  // f32 scale, not f16
  for (int j = 0; j < 256; ++j) q8_k.qs[j] = static_cast<int8_t>(j - 128);
  y = dequantize_one(GgmlType::Q8_K, q8_k);
  for (int j = 0; j < 256; ++j) CHECK(y[j] == 0.1f * static_cast<float>(j - 128));
}

// The K-quant tests pack chosen small integers into the K-quant super-block layout and expect
// d·sc·q − dmin·m, with values chosen so every product is exact in f32.

TEST_CASE("Q2_K: 2-bit values, 4-bit scale and min per 16 elements") {
  BlockQ2_K block{};
  block.d = 0x3800;     // 0.5
  block.dmin = 0x3400;  // 0.25
  for (int s = 0; s < 16; ++s) block.scales[s] = static_cast<uint8_t>(s | ((15 - s) << 4));
  int q[256];
  for (int e = 0; e < 256; ++e) {
    q[e] = (e * 7 + e / 16) % 4;
    const int n = e / 128, j = (e % 128) / 32, t = e % 32;
    block.qs[32 * n + t] |= static_cast<uint8_t>(q[e] << (2 * j));
  }
  const auto y = dequantize_one(GgmlType::Q2_K, block);
  // Element 37: n = 0, j = 1, t = 5, sub-block 2 (scale 2, min 13), q = (259 + 2) % 4 = 1.
  CHECK(y[37] == 0.5f * 2 * 1 - 0.25f * 13);
  for (int e = 0; e < 256; ++e) {
    const int s = e / 16;
    CHECK(y[e] == 0.5f * s * q[e] - 0.25f * (15 - s));
  }
}

TEST_CASE("Q3_K: 2 low bits + an inverted high bit (q in -4..3), 6-bit signed scales") {
  BlockQ3_K block{};
  block.d = 0x3800;  // 0.5
  int scale[16];
  for (int s = 0; s < 16; ++s) {
    scale[s] = 4 * s - 32;  // -32 .. 28
    const int stored = scale[s] + 32;
    if (s < 8) block.scales[s] |= static_cast<uint8_t>(stored & 0xF);
    else block.scales[s - 8] |= static_cast<uint8_t>((stored & 0xF) << 4);
    block.scales[8 + s % 4] |= static_cast<uint8_t>((stored >> 4) << (2 * (s / 4)));
  }
  int q[256];
  for (int e = 0; e < 256; ++e) {
    q[e] = (e * 5 + 3) % 8 - 4;  // -4..3
    const int n = e / 128, j = (e % 128) / 32, t = e % 32;
    const int low2 = (q[e] + 4) & 3;
    const int high = q[e] >= 0 ? 1 : 0;  // set bit: no -4 offset
    block.qs[32 * n + t] |= static_cast<uint8_t>(low2 << (2 * j));
    block.hmask[t] |= static_cast<uint8_t>(high << (4 * n + j));
  }
  const auto y = dequantize_one(GgmlType::Q3_K, block);
  CHECK(y[0] == 0.5f * -32 * -1);  // q[0] = 3 - 4
  for (int e = 0; e < 256; ++e) CHECK(y[e] == 0.5f * scale[e / 16] * q[e]);
}

namespace {
// Packs eight 6-bit scales and mins the way Q4_K/Q5_K store them in 12 bytes: scales 0-3 and mins 0-3 whole in
// bytes 0-3 and 4-7; scales and mins 4-7 as a low nibble in bytes 8-11 and their top two bits in bits 6-7 of
// bytes 0-7.
void pack_k4_scales(const int* scales, const int* mins, uint8_t* out /* [12] */) {
  std::memset(out, 0, 12);
  for (int b = 0; b < 4; ++b) {
    out[b] = static_cast<uint8_t>(scales[b] | ((scales[b + 4] >> 4) << 6));
    out[b + 4] = static_cast<uint8_t>(mins[b] | ((mins[b + 4] >> 4) << 6));
    out[b + 8] = static_cast<uint8_t>((scales[b + 4] & 0xF) | ((mins[b + 4] & 0xF) << 4));
  }
}
}  // namespace

TEST_CASE("Q4_K and Q5_K: 6-bit scales and mins per 32 elements, nibbles in 64-element groups") {
  const int scales[8] = {1, 63, 17, 40, 33, 62, 5, 48};
  const int mins[8] = {0, 7, 63, 21, 50, 3, 36, 16};
  BlockQ4_K q4{};
  q4.d = 0x3800;     // 0.5
  q4.dmin = 0x3400;  // 0.25
  pack_k4_scales(scales, mins, q4.scales);
  int q[256];
  for (int e = 0; e < 256; ++e) {
    q[e] = (e * 11 + 5) % 16;
    const int c = e / 64, l = e % 32;
    q4.qs[32 * c + l] |= static_cast<uint8_t>(q[e] << ((e % 64) < 32 ? 0 : 4));
  }
  auto y = dequantize_one(GgmlType::Q4_K, q4);
  // Element 200: sub-block 6 (scale 5, min 36), q = (2205) % 16 = 13.
  CHECK(y[200] == 0.5f * 5 * 13 - 0.25f * 36);
  for (int e = 0; e < 256; ++e) CHECK(y[e] == 0.5f * scales[e / 32] * q[e] - 0.25f * mins[e / 32]);

  BlockQ5_K q5{};
  q5.d = 0x3800;
  q5.dmin = 0x3400;
  std::memcpy(q5.scales, q4.scales, 12);
  std::memcpy(q5.qs, q4.qs, 128);
  for (int e = 0; e < 256; ++e) {
    const int fifth = (e * 3 + e / 32) % 2;
    q5.qh[e % 32] |= static_cast<uint8_t>(fifth << (e / 32));
  }
  y = dequantize_one(GgmlType::Q5_K, q5);
  for (int e = 0; e < 256; ++e) {
    const int q5_value = q[e] + 16 * ((e * 3 + e / 32) % 2);
    CHECK(y[e] == 0.5f * scales[e / 32] * q5_value - 0.25f * mins[e / 32]);
  }
}

TEST_CASE("unpacking all Q4_K scales and mins at once agrees with the per-sub-block unpacking") {
  std::mt19937 rng(8);
  for (int trial = 0; trial < 20000; ++trial) {
    uint8_t packed[12];
    for (uint8_t& byte : packed) byte = static_cast<uint8_t>(rng());
    const Q4KScalesMins all = q4_k_unpack_scales_mins(packed);
    for (int b = 0; b < 8; ++b) {
      int scale = 0, min = 0;
      q4_k_scale_min(packed, b, scale, min);
      const int shift = 8 * (b % 4);
      CHECK(static_cast<int>(((b < 4 ? all.scales_0_3 : all.scales_4_7) >> shift) & 0xFF) == scale);
      CHECK(static_cast<int>(((b < 4 ? all.mins_0_3 : all.mins_4_7) >> shift) & 0xFF) == min);
    }
  }
}

TEST_CASE("Q6_K: 4 low bits in ql, 2 high bits in qh, q in -32..31, signed 8-bit scale per 16") {
  BlockQ6_K block{};
  block.d = 0x3400;  // 0.25
  for (int s = 0; s < 16; ++s) block.scales[s] = static_cast<int8_t>(s % 2 ? -128 + s : 127 - s);
  int q[256];
  for (int e = 0; e < 256; ++e) {
    q[e] = (e * 13 + 7) % 64 - 32;
    const int stored = q[e] + 32;
    const int n = e / 128, g = (e % 128) / 32, l = e % 32;
    block.ql[64 * n + 32 * (g % 2) + l] |= static_cast<uint8_t>((stored & 0xF) << (g < 2 ? 0 : 4));
    block.qh[32 * n + l] |= static_cast<uint8_t>((stored >> 4) << (2 * g));
  }
  const auto y = dequantize_one(GgmlType::Q6_K, block);
  CHECK(y[0] == 0.25f * 127 * (7 - 32));
  for (int e = 0; e < 256; ++e) CHECK(y[e] == 0.25f * block.scales[e / 16] * q[e]);
}

TEST_CASE("dequantize_row rejects types it cannot compute and lengths that split a block") {
  std::vector<uint8_t> bytes(1024);
  std::vector<float> out(256);
  CHECK_THROWS_AS(dequantize_row(GgmlType::IQ2_XXS, bytes.data(), out.data(), 256), Error);
  CHECK_THROWS_AS(dequantize_row(GgmlType::I32, bytes.data(), out.data(), 4), Error);
  CHECK_THROWS_AS(dequantize_row(GgmlType::Q4_0, bytes.data(), out.data(), 33), Error);
  CHECK_THROWS_AS(dequantize_row(GgmlType::Q6_K, bytes.data(), out.data(), 128), Error);
  CHECK_THROWS_AS(quantize_row(GgmlType::Q2_K, out.data(), bytes.data(), 256), Error);
  CHECK_THROWS_AS(quantize_row(GgmlType::Q8_0, out.data(), bytes.data(), 48), Error);
}

// ---------------------------------------------------------------- round trips

TEST_CASE("quantize -> dequantize stays within each format's error bound") {
  constexpr int64_t n = 4096;
  const auto x = gaussian_row(n, 1234, 0.02f);  // weight-like magnitudes
  const float eps16 = std::ldexp(1.0f, -11);      // relative rounding of an f16 scale

  SUBCASE("F16 and BF16: one rounding of each value") {
    const auto f16 = round_trip(GgmlType::F16, x);
    const auto bf16 = round_trip(GgmlType::BF16, x);
    for (int64_t i = 0; i < n; ++i) {
      CHECK(std::fabs(f16[i] - x[i]) <= std::fabs(x[i]) * eps16 + std::ldexp(1.0f, -25));
      CHECK(std::fabs(bf16[i] - x[i]) <= std::fabs(x[i]) * std::ldexp(1.0f, -8));
    }
  }
  SUBCASE("Q8_0, Q8_1, Q8_K: half a step of amax/127 (plus the f16 rounding of d)") {
    const auto q8_0 = round_trip(GgmlType::Q8_0, x);
    const auto q8_1 = round_trip(GgmlType::Q8_1, x);
    for (int64_t b = 0; b < n / 32; ++b) {
      const float amax = max_abs(x.data() + 32 * b, 32);
      const float bound = amax / 127.0f * 0.5f * 1.0001f + amax * eps16;
      for (int64_t i = 32 * b; i < 32 * b + 32; ++i) {
        CHECK(std::fabs(q8_0[i] - x[i]) <= bound);
        CHECK(std::fabs(q8_1[i] - x[i]) <= bound);
      }
    }
    const auto q8_k = round_trip(GgmlType::Q8_K, x);
    for (int64_t b = 0; b < n / 256; ++b) {
      const float amax = max_abs(x.data() + 256 * b, 256);
      for (int64_t i = 256 * b; i < 256 * b + 256; ++i) {
        CHECK(std::fabs(q8_k[i] - x[i]) <= amax / 127.0f * 0.5f * 1.0001f);
      }
    }
  }
  SUBCASE("Q4_0 and Q5_0: at most one step (the extreme opposite the anchor may clip), RMS about step/sqrt(12)") {
    for (const auto& type_levels : {std::pair{GgmlType::Q4_0, 8.0f}, std::pair{GgmlType::Q5_0, 16.0f}}) {
      const auto [type, levels] = type_levels;
      const std::string_view name = type_name(type);  // clang 14 cannot capture a structured binding
      CAPTURE(name);
      const auto y = round_trip(type, x);
      double step_sum = 0;
      for (int64_t b = 0; b < n / 32; ++b) {
        const float step = max_abs(x.data() + 32 * b, 32) / levels;
        step_sum += step;
        for (int64_t i = 32 * b; i < 32 * b + 32; ++i) CHECK(std::fabs(y[i] - x[i]) <= step * (1.0f + 4 * eps16));
      }
      CHECK(rms_error(y, x) <= 0.35 * step_sum / (n / 32));
    }
  }
  SUBCASE("Q4_1 and Q5_1: half a step of (max - min) / levels, plus the f16 rounding of d and m") {
    for (const auto& type_levels : {std::pair{GgmlType::Q4_1, 15.0f}, std::pair{GgmlType::Q5_1, 31.0f}}) {
      const auto [type, levels] = type_levels;
      const std::string_view name = type_name(type);  // clang 14 cannot capture a structured binding
      CAPTURE(name);
      const auto y = round_trip(type, x);
      for (int64_t b = 0; b < n / 32; ++b) {
        const auto [low, high] = std::minmax_element(x.begin() + 32 * b, x.begin() + 32 * b + 32);
        const float step = (*high - *low) / levels;
        const float bound = step * 0.5f + (std::fabs(*low) + levels * step) * 2 * eps16;
        for (int64_t i = 32 * b; i < 32 * b + 32; ++i) CHECK(std::fabs(y[i] - x[i]) <= bound);
      }
    }
  }
  SUBCASE("Q4_K, Q5_K, Q6_K: RMS error near the ideal step/sqrt(12) of their bit widths") {
    // A uniform quantizer with step s has RMS error s/sqrt(12). The ideal steps: each 32-element sub-block's range
    // [min(0, min), max] over 15 or 31 steps (Q4_K, Q5_K), each 16-element sub-block's [-amax, amax] over 63 steps
    // (Q6_K). The formats lose a little to their 6- or 8-bit scales and gain a little from the search.
    double q4_sq = 0, q5_sq = 0, q6_sq = 0;
    for (int64_t b = 0; b < n / 32; ++b) {
      const auto [low, high] = std::minmax_element(x.begin() + 32 * b, x.begin() + 32 * b + 32);
      const double range = *high - std::min(0.0f, *low);
      q4_sq += std::pow(range / 15, 2) / 12;
      q5_sq += std::pow(range / 31, 2) / 12;
    }
    for (int64_t s = 0; s < n / 16; ++s) q6_sq += std::pow(2.0 * max_abs(x.data() + 16 * s, 16) / 63, 2) / 12;
    const double ideal_q4 = std::sqrt(q4_sq / (n / 32));
    const double ideal_q5 = std::sqrt(q5_sq / (n / 32));
    const double ideal_q6 = std::sqrt(q6_sq / (n / 16));
    const auto q4_k = round_trip(GgmlType::Q4_K, x);
    const auto q5_k = round_trip(GgmlType::Q5_K, x);
    const auto q6_k = round_trip(GgmlType::Q6_K, x);
    MESSAGE("RMS error / ideal: Q4_K " << rms_error(q4_k, x) / ideal_q4 << ", Q5_K " << rms_error(q5_k, x) / ideal_q5
                                        << ", Q6_K " << rms_error(q6_k, x) / ideal_q6);
    CHECK(rms_error(q4_k, x) <= 1.1 * ideal_q4);
    CHECK(rms_error(q5_k, x) <= 1.1 * ideal_q5);
    CHECK(rms_error(q6_k, x) <= 1.1 * ideal_q6);
    // The scale/min search must beat Q4_1's plain min/max at the same 4 bits despite its coarser scales.
    CHECK(rms_error(q4_k, x) < rms_error(round_trip(GgmlType::Q4_1, x), x));
    // No element is off by more than one step of its sub-block.
    for (int64_t b = 0; b < n / 32; ++b) {
      const auto [low, high] = std::minmax_element(x.begin() + 32 * b, x.begin() + 32 * b + 32);
      const float range = *high - std::min(0.0f, *low);
      for (int64_t i = 32 * b; i < 32 * b + 32; ++i) {
        CHECK(std::fabs(q4_k[i] - x[i]) <= range / 15);
        CHECK(std::fabs(q5_k[i] - x[i]) <= range / 31);
      }
    }
    for (int64_t s = 0; s < n / 16; ++s) {
      const float amax = max_abs(x.data() + 16 * s, 16);
      for (int64_t i = 16 * s; i < 16 * s + 16; ++i) CHECK(std::fabs(q6_k[i] - x[i]) <= amax / 31);
    }
  }
  SUBCASE("Q8_1 stores s = d * sum(q)") {
    std::vector<BlockQ8_1> blocks(n / 32);
    quantize_row(GgmlType::Q8_1, x.data(), blocks.data(), n);
    for (const BlockQ8_1& block : blocks) {
      int sum = 0;
      for (int8_t q : block.qs) sum += q;
      const float d = fp16_to_f32(block.d);
      CHECK(fp16_to_f32(block.s) == doctest::Approx(d * static_cast<float>(sum)).epsilon(2 * eps16).scale(1e-6));
    }
  }
}

TEST_CASE("special rows: zeros stay zero, constants stay constant, outliers stay exact") {
  const GgmlType types[] = {GgmlType::F16, GgmlType::BF16, GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0,
                            GgmlType::Q5_1, GgmlType::Q8_0, GgmlType::Q8_1, GgmlType::Q4_K, GgmlType::Q5_K,
                            GgmlType::Q6_K, GgmlType::Q8_K};
  const std::vector<float> zeros(512, 0.0f);
  std::vector<float> outlier = gaussian_row(512, 99, 0.01f);
  outlier[77] = 8.0f;  // a power of two: every symmetric format represents its block's anchor exactly
  for (GgmlType type : types) {
    CAPTURE(type_name(type));
    for (float v : round_trip(type, zeros)) CHECK(v == 0.0f);
    const auto y = round_trip(type, outlier);
    CHECK(std::fabs(y[77] - 8.0f) <= 8.0f * std::ldexp(1.0f, -8));
  }
  const std::vector<float> negative_constant(256, -0.75f);
  for (GgmlType type : {GgmlType::Q4_1, GgmlType::Q5_1, GgmlType::Q4_K, GgmlType::Q8_0, GgmlType::Q6_K}) {
    CAPTURE(type_name(type));
    for (float v : round_trip(type, negative_constant)) CHECK(v == doctest::Approx(-0.75f).epsilon(1e-3));
  }
}

// An x whose f32 product with `inverse` is exactly the tie `target` + 0.5 although the exact product lies above
// it: rounding the f32 product gives the even neighbour, a fused multiply-add would give the odd one.
float find_rounded_tie(float inverse, float target) {
  float x = (target + 0.5f) / inverse;
  for (int i = 0; i < 64; ++i) x = std::nextafter(x, 0.0f);
  for (int i = 0; i < 128; ++i, x = std::nextafter(x, 1e9f)) {
    const float product = x * inverse;
    if (product == target + 0.5f && static_cast<double>(x) * inverse > target + 0.5) return x;
  }
  return 0.0f;
}

TEST_CASE("activation quantizers round the f32 product, ties to even, even when an FMA could fuse it") {
  // Q8_K: iscale = -127 / -10 = 12.7.
  const float x = find_rounded_tie(12.7f, 46.0f);
  REQUIRE(x != 0.0f);
  float block[256] = {};
  block[0] = -10.0f;
  block[1] = x;
  BlockQ8_K q8_k;
  quantize_block_q8_k(block, q8_k);
  CHECK(q8_k.qs[0] == -127);
  CHECK(q8_k.qs[1] == 46);  // 46.5 -> even
  // Q8_0: inverse = 127 / 10.
  BlockQ8_0 q8_0;
  quantize_block_q8_0(block, q8_0);
  CHECK(q8_0.qs[1] == 46);
}

TEST_CASE("activation quantizers follow llama.cpp's x86 formulas") {
  float x[256];
  for (int i = 0; i < 256; ++i) x[i] = static_cast<float>(i % 32) - 10.0f;  // amax 21 per 32, -10 the min
  BlockQ8_0 q8_0;
  quantize_block_q8_0(x, q8_0);
  CHECK(q8_0.d == f32_to_fp16(21.0f / 127.0f));
  CHECK(q8_0.qs[31] == 127);
  CHECK(q8_0.qs[0] == round_to_nearest_int(-10.0f * 127.0f / 21.0f));
  BlockQ8_K q8_k;
  x[5] = -30.0f;  // the signed max is negative: it maps to -127 and d = -30 / 127 ... as 1 / iscale
  quantize_block_q8_k(x, q8_k);
  CHECK(q8_k.qs[5] == -127);
  CHECK(q8_k.d == 1.0f / (-127.0f / -30.0f));
  CHECK(q8_k.qs[31] == round_to_nearest_int(21.0f * 127.0f / 30.0f));
  int first_sum = 0;
  for (int i = 0; i < 16; ++i) first_sum += q8_k.qs[i];
  CHECK(q8_k.bsums[0] == first_sum);
}
