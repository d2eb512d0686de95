// Portable dot products of one weight row with one activation row, for every computable weight type. Integer sums
// per block, scaled once per block, as ggml's reference vec_dot functions do. These are compiled on every machine
// and are the reference the SIMD kernels are tested against.
#include "tensor/float16.h"
#include "tensor/quant_blocks.h"
#include "kernels/cpu/matmul_kernels.h"

namespace pagedllm::matmul_detail {
namespace {

// ---------------------------------------------------------------- one block pair -> float

float dot_block(const BlockQ4_0& w, const BlockQ8_0& a) {
  int sum = 0;
  for (int j = 0; j < 16; ++j) sum += ((w.qs[j] & 0xF) - 8) * a.qs[j] + ((w.qs[j] >> 4) - 8) * a.qs[j + 16];
  return static_cast<float>(sum) * fp16_to_f32(w.d) * fp16_to_f32(a.d);
}

float dot_block(const BlockQ4_1& w, const BlockQ8_1& a) {
  int sum = 0;
  for (int j = 0; j < 16; ++j) sum += (w.qs[j] & 0xF) * a.qs[j] + (w.qs[j] >> 4) * a.qs[j + 16];
  // Σ (q·d + m)·a = d·Σq·a + m·Σa, and Σa = s is stored with the activations.
  return fp16_to_f32(w.d) * fp16_to_f32(a.d) * static_cast<float>(sum) + fp16_to_f32(w.m) * fp16_to_f32(a.s);
}

float dot_block(const BlockQ5_0& w, const BlockQ8_0& a) {
  const uint32_t high = q5_high_bits(w.qh);
  int sum = 0;
  for (int j = 0; j < 16; ++j) {
    const int low_q = ((w.qs[j] & 0xF) | static_cast<int>(((high >> j) & 1u) << 4)) - 16;
    const int high_q = ((w.qs[j] >> 4) | static_cast<int>(((high >> (j + 16)) & 1u) << 4)) - 16;
    sum += low_q * a.qs[j] + high_q * a.qs[j + 16];
  }
  return static_cast<float>(sum) * fp16_to_f32(w.d) * fp16_to_f32(a.d);
}

float dot_block(const BlockQ5_1& w, const BlockQ8_1& a) {
  const uint32_t high = q5_high_bits(w.qh);
  int sum = 0;
  for (int j = 0; j < 16; ++j) {
    const int low_q = (w.qs[j] & 0xF) | static_cast<int>(((high >> j) & 1u) << 4);
    const int high_q = (w.qs[j] >> 4) | static_cast<int>(((high >> (j + 16)) & 1u) << 4);
    sum += low_q * a.qs[j] + high_q * a.qs[j + 16];
  }
  return fp16_to_f32(w.d) * fp16_to_f32(a.d) * static_cast<float>(sum) + fp16_to_f32(w.m) * fp16_to_f32(a.s);
}

float dot_block(const BlockQ8_0& w, const BlockQ8_0& a) {
  int sum = 0;
  for (int j = 0; j < 32; ++j) sum += w.qs[j] * a.qs[j];
  return static_cast<float>(sum) * fp16_to_f32(w.d) * fp16_to_f32(a.d);
}

// K-quants: y = d·sc·q − dmin·m per sub-block, so Σ y·a = d·Σ sc·(Σq·a) − dmin·Σ m·(Σa), with Σa from bsums.
float dot_block(const BlockQ2_K& w, const BlockQ8_K& a) {
  int scaled_sum = 0, min_sum = 0;
  for (int s = 0; s < 16; ++s) {
    const int half = s / 8, shift = 2 * ((s % 8) / 2), first = 16 * (s % 2);
    int sum = 0;
    for (int i = 0; i < 16; ++i) sum += ((w.qs[32 * half + first + i] >> shift) & 3) * a.qs[16 * s + i];
    scaled_sum += (w.scales[s] & 0xF) * sum;
    min_sum += (w.scales[s] >> 4) * a.bsums[s];
  }
  return a.d * (fp16_to_f32(w.d) * static_cast<float>(scaled_sum) - fp16_to_f32(w.dmin) * static_cast<float>(min_sum));
}

float dot_block(const BlockQ3_K& w, const BlockQ8_K& a) {
  int scaled_sum = 0;
  for (int s = 0; s < 16; ++s) {
    const int half = s / 8, group = (s % 8) / 2, first = 16 * (s % 2);
    int sum = 0;
    for (int i = 0; i < 16; ++i) {
      const int t = first + i;
      const int low2 = (w.qs[32 * half + t] >> (2 * group)) & 3;
      const int high_bit = (w.hmask[t] >> (4 * half + group)) & 1;
      sum += (low2 - (high_bit ? 0 : 4)) * a.qs[16 * s + i];
    }
    scaled_sum += q3_k_scale(w.scales, s) * sum;
  }
  return a.d * fp16_to_f32(w.d) * static_cast<float>(scaled_sum);
}

float dot_block(const BlockQ4_K& w, const BlockQ8_K& a) {
  int scaled_sum = 0, min_sum = 0;
  for (int b = 0; b < 8; ++b) {
    int scale = 0, min = 0;
    q4_k_scale_min(w.scales, b, scale, min);
    const uint8_t* qs = w.qs + 32 * (b / 2);
    const int shift = 4 * (b % 2);
    int sum = 0;
    for (int l = 0; l < 32; ++l) sum += ((qs[l] >> shift) & 0xF) * a.qs[32 * b + l];
    scaled_sum += scale * sum;
    min_sum += min * (a.bsums[2 * b] + a.bsums[2 * b + 1]);
  }
  return a.d * (fp16_to_f32(w.d) * static_cast<float>(scaled_sum) - fp16_to_f32(w.dmin) * static_cast<float>(min_sum));
}

float dot_block(const BlockQ5_K& w, const BlockQ8_K& a) {
  int scaled_sum = 0, min_sum = 0;
  for (int b = 0; b < 8; ++b) {
    int scale = 0, min = 0;
    q4_k_scale_min(w.scales, b, scale, min);
    const uint8_t* qs = w.qs + 32 * (b / 2);
    const int shift = 4 * (b % 2);
    int sum = 0;
    for (int l = 0; l < 32; ++l) {
      const int q = ((qs[l] >> shift) & 0xF) + 16 * ((w.qh[l] >> b) & 1);
      sum += q * a.qs[32 * b + l];
    }
    scaled_sum += scale * sum;
    min_sum += min * (a.bsums[2 * b] + a.bsums[2 * b + 1]);
  }
  return a.d * (fp16_to_f32(w.d) * static_cast<float>(scaled_sum) - fp16_to_f32(w.dmin) * static_cast<float>(min_sum));
}

float dot_block(const BlockQ6_K& w, const BlockQ8_K& a) {
  int scaled_sum = 0;
  for (int s = 0; s < 16; ++s) {
    const int half = s / 8, group = (s % 8) / 2, first = 16 * (s % 2);
    int sum = 0;
    for (int i = 0; i < 16; ++i) {
      const int l = first + i;
      const int low_byte = w.ql[64 * half + 32 * (group % 2) + l];
      const int low4 = group < 2 ? (low_byte & 0xF) : (low_byte >> 4);
      const int high2 = (w.qh[32 * half + l] >> (2 * group)) & 3;
      sum += ((low4 | (high2 << 4)) - 32) * a.qs[16 * s + i];
    }
    scaled_sum += w.scales[s] * sum;
  }
  return a.d * fp16_to_f32(w.d) * static_cast<float>(scaled_sum);
}

float dot_block(const BlockQ8_K& w, const BlockQ8_K& a) {
  int sum = 0;
  for (int j = 0; j < 256; ++j) sum += w.qs[j] * a.qs[j];
  return w.d * a.d * static_cast<float>(sum);
}

// ---------------------------------------------------------------- tiles

template <typename WeightBlock, typename ActivationBlock>
struct BlockTile {
  static constexpr int kWeightRows = 1;
  template <int kW, int kRows>
  static void run(const MatmulProblem& problem, int64_t n, int64_t m, float* out /* [kW, kRows] */) {
    const int64_t n_blocks = problem.n_cols / WeightBlock::kSize;
    for (int w = 0; w < kW; ++w) {
      const auto* weights =
          reinterpret_cast<const WeightBlock*>(problem.weights + (n + w) * problem.weight_row_bytes);  // [n_blocks]
      for (int r = 0; r < kRows; ++r) {
        const auto* activations = reinterpret_cast<const ActivationBlock*>(
            problem.activations + (m + r) * problem.activation_row_bytes);  // [n_blocks]
        float sum = 0.0f;
        for (int64_t b = 0; b < n_blocks; ++b) sum += dot_block(weights[b], activations[b]);
        out[w * kRows + r] = sum;
      }
    }
  }
};

// Float weights: F32 as is, F16/BF16 widened; activations are f32 (already rounded to the weight's format).
template <GgmlType kType>
struct FloatTile {
  static constexpr int kWeightRows = 1;
  template <int kW, int kRows>
  static void run(const MatmulProblem& problem, int64_t n, int64_t m, float* out /* [kW, kRows] */) {
    for (int w = 0; w < kW; ++w) {
      const uint8_t* weight_row = problem.weights + (n + w) * problem.weight_row_bytes;
      for (int r = 0; r < kRows; ++r) {
        const auto* activations = reinterpret_cast<const float*>(
            problem.activations + (m + r) * problem.activation_row_bytes);  // [K]
        float sum = 0.0f;
        for (int64_t k = 0; k < problem.n_cols; ++k) sum += load_float_weight<kType>(weight_row, k) * activations[k];
        out[w * kRows + r] = sum;
      }
    }
  }
};

}  // namespace

RowRangeKernel scalar_row_kernel(GgmlType weight_type) {
  switch (weight_type) {
    case GgmlType::F32: return run_row_range<FloatTile<GgmlType::F32>>;
    case GgmlType::F16: return run_row_range<FloatTile<GgmlType::F16>>;
    case GgmlType::BF16: return run_row_range<FloatTile<GgmlType::BF16>>;
    case GgmlType::Q4_0: return run_row_range<BlockTile<BlockQ4_0, BlockQ8_0>>;
    case GgmlType::Q4_1: return run_row_range<BlockTile<BlockQ4_1, BlockQ8_1>>;
    case GgmlType::Q5_0: return run_row_range<BlockTile<BlockQ5_0, BlockQ8_0>>;
    case GgmlType::Q5_1: return run_row_range<BlockTile<BlockQ5_1, BlockQ8_1>>;
    case GgmlType::Q8_0: return run_row_range<BlockTile<BlockQ8_0, BlockQ8_0>>;
    case GgmlType::Q2_K: return run_row_range<BlockTile<BlockQ2_K, BlockQ8_K>>;
    case GgmlType::Q3_K: return run_row_range<BlockTile<BlockQ3_K, BlockQ8_K>>;
    case GgmlType::Q4_K: return run_row_range<BlockTile<BlockQ4_K, BlockQ8_K>>;
    case GgmlType::Q5_K: return run_row_range<BlockTile<BlockQ5_K, BlockQ8_K>>;
    case GgmlType::Q6_K: return run_row_range<BlockTile<BlockQ6_K, BlockQ8_K>>;
    case GgmlType::Q8_K: return run_row_range<BlockTile<BlockQ8_K, BlockQ8_K>>;
    default: return nullptr;
  }
}

}  // namespace pagedllm::matmul_detail
