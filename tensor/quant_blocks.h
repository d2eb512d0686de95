#pragma once
// The ggml block formats as C structs, and the dequantization of one block of each, laid out byte for byte as ggml stores them.
//
// The CPU kernels, the CUDA kernels and model_loader's dequantize_row all use these functions, so a test of the
// CPU path also proves the element math the GPU runs. Each is evaluated in f32 in ggml's order; where ggml's
// formula is a multiply followed by an add (`q·d + m`, `(d·sc)·q − dmin·m`), the compilers ggml ships with fuse
// it into one FMA (gcc -march=native on x86, nvcc by default), so we call fmaf explicitly: host and device then
// agree bit for bit whatever the build flags.
#include <math.h>  // fmaf: a builtin on both sides (not std::fma, which device code lacks)

#include <cstdint>

#include "tensor/float16.h"
#include "tensor/tensor_types.h"

namespace pagedllm {

// All fp16 fields are raw IEEE binary16 bits; use fp16_to_f32.
struct BlockQ4_0 {
  static constexpr int kSize = 32;
  uint16_t d;
  uint8_t qs[16];  // element j in the low nibble of qs[j], element j + 16 in the high nibble
};
struct BlockQ4_1 {
  static constexpr int kSize = 32;
  uint16_t d;
  uint16_t m;
  uint8_t qs[16];
};
struct BlockQ5_0 {
  static constexpr int kSize = 32;
  uint16_t d;
  uint8_t qh[4];   // bit e of the little-endian u32 is the fifth bit of element e
  uint8_t qs[16];
};
struct BlockQ5_1 {
  static constexpr int kSize = 32;
  uint16_t d;
  uint16_t m;
  uint8_t qh[4];
  uint8_t qs[16];
};
struct BlockQ8_0 {
  static constexpr int kSize = 32;
  uint16_t d;
  int8_t qs[32];
};
// Activation format for Q4_1/Q5_1 dot products: `s` = d · Σqs lets the weight's min term skip the element loop.
struct BlockQ8_1 {
  static constexpr int kSize = 32;
  uint16_t d;
  uint16_t s;
  int8_t qs[32];
};
struct BlockQ2_K {
  static constexpr int kSize = 256;
  uint8_t scales[16];  // per 16 elements: low nibble scale, high nibble min
  uint8_t qs[64];
  uint16_t d;
  uint16_t dmin;
};
struct BlockQ3_K {
  static constexpr int kSize = 256;
  uint8_t hmask[32];
  uint8_t qs[64];
  uint8_t scales[12];  // 16 six-bit signed scales, packed (see q3_k_scale)
  uint16_t d;
};
struct BlockQ4_K {
  static constexpr int kSize = 256;
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[12];  // 8 six-bit scales and 8 six-bit mins, packed (see q4_k_scale_min)
  uint8_t qs[128];
};
struct BlockQ5_K {
  static constexpr int kSize = 256;
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[12];
  uint8_t qh[32];
  uint8_t qs[128];
};
struct BlockQ6_K {
  static constexpr int kSize = 256;
  uint8_t ql[128];
  uint8_t qh[64];
  int8_t scales[16];
  uint16_t d;
};
// Activation format for K-quant dot products; note the f32 scale.
struct BlockQ8_K {
  static constexpr int kSize = 256;
  float d;
  int8_t qs[256];
  int16_t bsums[16];  // sums of each 16 consecutive qs
};

static_assert(sizeof(BlockQ4_0) == 18);
static_assert(sizeof(BlockQ4_1) == 20);
static_assert(sizeof(BlockQ5_0) == 22);
static_assert(sizeof(BlockQ5_1) == 24);
static_assert(sizeof(BlockQ8_0) == 34);
static_assert(sizeof(BlockQ8_1) == 36);
static_assert(sizeof(BlockQ2_K) == 84);
static_assert(sizeof(BlockQ3_K) == 110);
static_assert(sizeof(BlockQ4_K) == 144);
static_assert(sizeof(BlockQ5_K) == 176);
static_assert(sizeof(BlockQ6_K) == 210);
static_assert(sizeof(BlockQ8_K) == 292);

// ---------------------------------------------------------------- packed sub-block scales

// Q4_K/Q5_K: six-bit scale and min of sub-block `sub_block` (0..7, 32 elements each) from the 12 packed bytes.
// Bytes 0-3 hold sc0-3 and the top bits of sc4-7, bytes 4-7 m0-3 and the top bits of m4-7, bytes 8-11 the low
// nibbles of sc4-7 (low) and m4-7 (high).
PAGEDLLM_HD inline void q4_k_scale_min(const uint8_t* scales, int sub_block, int& scale, int& min) {
  if (sub_block < 4) {
    scale = scales[sub_block] & 63;
    min = scales[sub_block + 4] & 63;
  } else {
    scale = (scales[sub_block + 4] & 0xF) | ((scales[sub_block - 4] >> 6) << 4);
    min = (scales[sub_block + 4] >> 4) | ((scales[sub_block] >> 6) << 4);
  }
}

// Q4_K/Q5_K: all eight scales and mins at once, one byte per sub-block (byte b of a word = sub-block b or b + 4):
// the same values as q4_k_scale_min, with word operations instead of per-sub-block byte picking.
struct Q4KScalesMins {
  uint32_t scales_0_3;
  uint32_t scales_4_7;
  uint32_t mins_0_3;
  uint32_t mins_4_7;
};

PAGEDLLM_HD inline Q4KScalesMins q4_k_unpack_scales_mins(const uint8_t* scales /* [12] */) {
  const auto word = [scales](int i) {
    return static_cast<uint32_t>(scales[4 * i]) | (static_cast<uint32_t>(scales[4 * i + 1]) << 8) |
           (static_cast<uint32_t>(scales[4 * i + 2]) << 16) | (static_cast<uint32_t>(scales[4 * i + 3]) << 24);
  };
  const uint32_t first = word(0), second = word(1), third = word(2);
  return {first & 0x3f3f3f3fu, (third & 0x0f0f0f0fu) | (((first >> 6) & 0x03030303u) << 4), second & 0x3f3f3f3fu,
          ((third >> 4) & 0x0f0f0f0fu) | (((second >> 6) & 0x03030303u) << 4)};
}

// Q3_K: signed scale (-32..31) of sub-block `sub_block` (0..15, 16 elements each).
PAGEDLLM_HD inline int q3_k_scale(const uint8_t* scales, int sub_block) {
  const int low4 = sub_block < 8 ? (scales[sub_block] & 0xF) : (scales[sub_block - 8] >> 4);
  const int high2 = (scales[8 + (sub_block % 4)] >> (2 * (sub_block / 4))) & 3;
  return (low4 | (high2 << 4)) - 32;
}

// Q5_0/Q5_1: the 32 fifth bits as one little-endian word, whatever the host byte order.
PAGEDLLM_HD inline uint32_t q5_high_bits(const uint8_t* qh) {
  return static_cast<uint32_t>(qh[0]) | (static_cast<uint32_t>(qh[1]) << 8) | (static_cast<uint32_t>(qh[2]) << 16) |
         (static_cast<uint32_t>(qh[3]) << 24);
}

// ---------------------------------------------------------------- one block -> floats

PAGEDLLM_HD inline void dequantize_block(const BlockQ4_0& block, float* out /* [32] */) {
  const float d = fp16_to_f32(block.d);
  for (int j = 0; j < 16; ++j) {
    out[j] = static_cast<float>((block.qs[j] & 0xF) - 8) * d;
    out[j + 16] = static_cast<float>((block.qs[j] >> 4) - 8) * d;
  }
}

PAGEDLLM_HD inline void dequantize_block(const BlockQ4_1& block, float* out /* [32] */) {
  const float d = fp16_to_f32(block.d);
  const float m = fp16_to_f32(block.m);
  for (int j = 0; j < 16; ++j) {
    out[j] = fmaf(static_cast<float>(block.qs[j] & 0xF), d, m);
    out[j + 16] = fmaf(static_cast<float>(block.qs[j] >> 4), d, m);
  }
}

PAGEDLLM_HD inline void dequantize_block(const BlockQ5_0& block, float* out /* [32] */) {
  const float d = fp16_to_f32(block.d);
  const uint32_t high = q5_high_bits(block.qh);
  for (int j = 0; j < 16; ++j) {
    const int low_q = (block.qs[j] & 0xF) | static_cast<int>(((high >> j) & 1u) << 4);
    const int high_q = (block.qs[j] >> 4) | static_cast<int>(((high >> (j + 16)) & 1u) << 4);
    out[j] = static_cast<float>(low_q - 16) * d;
    out[j + 16] = static_cast<float>(high_q - 16) * d;
  }
}

PAGEDLLM_HD inline void dequantize_block(const BlockQ5_1& block, float* out /* [32] */) {
  const float d = fp16_to_f32(block.d);
  const float m = fp16_to_f32(block.m);
  const uint32_t high = q5_high_bits(block.qh);
  for (int j = 0; j < 16; ++j) {
    const int low_q = (block.qs[j] & 0xF) | static_cast<int>(((high >> j) & 1u) << 4);
    const int high_q = (block.qs[j] >> 4) | static_cast<int>(((high >> (j + 16)) & 1u) << 4);
    out[j] = fmaf(static_cast<float>(low_q), d, m);
    out[j + 16] = fmaf(static_cast<float>(high_q), d, m);
  }
}

PAGEDLLM_HD inline void dequantize_block(const BlockQ8_0& block, float* out /* [32] */) {
  const float d = fp16_to_f32(block.d);
  for (int j = 0; j < 32; ++j) out[j] = static_cast<float>(block.qs[j]) * d;
}

PAGEDLLM_HD inline void dequantize_block(const BlockQ8_1& block, float* out /* [32] */) {
  const float d = fp16_to_f32(block.d);
  for (int j = 0; j < 32; ++j) out[j] = static_cast<float>(block.qs[j]) * d;
}

PAGEDLLM_HD inline void dequantize_block(const BlockQ2_K& block, float* out /* [256] */) {
  const float d = fp16_to_f32(block.d);
  const float dmin = fp16_to_f32(block.dmin);
  // Element e: half n = e / 128 uses qs[32n .. 32n + 32); within it, group j = (e % 128) / 32 is bit pair j.
  for (int e = 0; e < 256; e += 16) {
    const int half = e / 128;
    const int shift = 2 * ((e % 128) / 32);
    const int scale_byte = block.scales[e / 16];
    const float scale = d * static_cast<float>(scale_byte & 0xF);
    const float min = dmin * static_cast<float>(scale_byte >> 4);
    for (int i = 0; i < 16; ++i) {
      const int t = (e % 32) + i;
      const int q = (block.qs[32 * half + t] >> shift) & 3;
      out[e + i] = fmaf(scale, static_cast<float>(q), -min);
    }
  }
}

PAGEDLLM_HD inline void dequantize_block(const BlockQ3_K& block, float* out /* [256] */) {
  const float d = fp16_to_f32(block.d);
  for (int e = 0; e < 256; e += 16) {
    const int half = e / 128;
    const int group = (e % 128) / 32;
    const float scale = d * static_cast<float>(q3_k_scale(block.scales, e / 16));
    for (int i = 0; i < 16; ++i) {
      const int t = (e % 32) + i;
      const int low2 = (block.qs[32 * half + t] >> (2 * group)) & 3;
      const int high_bit = (block.hmask[t] >> (4 * half + group)) & 1;
      out[e + i] = scale * static_cast<float>(low2 - (high_bit ? 0 : 4));
    }
  }
}

PAGEDLLM_HD inline void dequantize_block(const BlockQ4_K& block, float* out /* [256] */) {
  const float d = fp16_to_f32(block.d);
  const float dmin = fp16_to_f32(block.dmin);
  // Each 32-byte group of qs holds 64 elements: sub-block 2c in the low nibbles, sub-block 2c + 1 in the high.
  for (int sub_block = 0; sub_block < 8; ++sub_block) {
    int scale_q = 0, min_q = 0;
    q4_k_scale_min(block.scales, sub_block, scale_q, min_q);
    const float scale = d * static_cast<float>(scale_q);
    const float min = dmin * static_cast<float>(min_q);
    const uint8_t* qs = block.qs + 32 * (sub_block / 2);
    const int shift = 4 * (sub_block % 2);
    for (int l = 0; l < 32; ++l) {
      out[32 * sub_block + l] = fmaf(scale, static_cast<float>((qs[l] >> shift) & 0xF), -min);
    }
  }
}

PAGEDLLM_HD inline void dequantize_block(const BlockQ5_K& block, float* out /* [256] */) {
  const float d = fp16_to_f32(block.d);
  const float dmin = fp16_to_f32(block.dmin);
  for (int sub_block = 0; sub_block < 8; ++sub_block) {
    int scale_q = 0, min_q = 0;
    q4_k_scale_min(block.scales, sub_block, scale_q, min_q);
    const float scale = d * static_cast<float>(scale_q);
    const float min = dmin * static_cast<float>(min_q);
    const uint8_t* qs = block.qs + 32 * (sub_block / 2);
    const int shift = 4 * (sub_block % 2);
    for (int l = 0; l < 32; ++l) {
      const int q = ((qs[l] >> shift) & 0xF) + 16 * ((block.qh[l] >> sub_block) & 1);
      out[32 * sub_block + l] = fmaf(scale, static_cast<float>(q), -min);
    }
  }
}

PAGEDLLM_HD inline void dequantize_block(const BlockQ6_K& block, float* out /* [256] */) {
  const float d = fp16_to_f32(block.d);
  for (int e = 0; e < 256; e += 16) {
    const int half = e / 128;
    const int group = (e % 128) / 32;
    const float scale = d * static_cast<float>(block.scales[e / 16]);
    for (int i = 0; i < 16; ++i) {
      const int l = (e % 32) + i;
      const int low_byte = block.ql[64 * half + 32 * (group % 2) + l];
      const int low4 = group < 2 ? (low_byte & 0xF) : (low_byte >> 4);
      const int high2 = (block.qh[32 * half + l] >> (2 * group)) & 3;
      out[e + i] = scale * static_cast<float>((low4 | (high2 << 4)) - 32);
    }
  }
}

PAGEDLLM_HD inline void dequantize_block(const BlockQ8_K& block, float* out /* [256] */) {
  for (int j = 0; j < 256; ++j) out[j] = block.d * static_cast<float>(block.qs[j]);
}

// Element k of a row of float weights (F32 as is, F16 or BF16 widened): the one scalar load every float matmul
// path shares, so the CPU tails and the CUDA kernels cannot disagree about a format.
template <GgmlType kType>
PAGEDLLM_HD inline float load_float_weight(const uint8_t* row, int64_t k) {
  static_assert(kType == GgmlType::F32 || kType == GgmlType::F16 || kType == GgmlType::BF16);
  if constexpr (kType == GgmlType::F32) {
    return reinterpret_cast<const float*>(row)[k];
  } else if constexpr (kType == GgmlType::F16) {
    return fp16_to_f32(reinterpret_cast<const uint16_t*>(row)[k]);
  } else {
    return bf16_to_f32(reinterpret_cast<const uint16_t*>(row)[k]);
  }
}

}  // namespace pagedllm
