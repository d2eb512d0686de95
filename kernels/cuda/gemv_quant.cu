// Fused dequantize-dot matrix-vector products for decode (and any batch of up to kMaxGemvRows rows): the weights
// are read once, in their GGUF block format, and never expanded in memory. Memory bound, so each warp streams one
// weight row with wide loads and keeps every activation row's sum in registers.
//
// The numerics are the CPU kernels' (kernels/cpu/matmul_scalar.cpp): the activations are first converted to the
// format llama.cpp pairs with the weight type (Q8_0, Q8_1, Q8_K, or f32 rounded through f16/bf16; the conversion
// uses the shared tensor/activation_quant.h), each block's integer dot product is exact, and each block is
// scaled with the same f32 expression as on the CPU. Only the order in which the per-block floats are summed
// differs (a warp-wide tree instead of a loop).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <type_traits>

#include "common/error.h"
#include "tensor/activation_quant.h"
#include "tensor/float16.h"
#include "tensor/quant_blocks.h"
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_ops.h"

namespace pagedllm::cuda {

namespace {

constexpr int kWarpsPerBlock = 4;  // one output row per warp
constexpr int kThreads = kWarpsPerBlock * 32;
constexpr int kMaxTargets = 3;

struct GemvTarget {
  const uint8_t* weights;  // [n_rows, row_bytes]
  size_t row_bytes;
  float* y;                // [M, n_rows]
  int64_t n_rows;
};

struct GemvParams {
  GemvTarget targets[kMaxTargets];
  int64_t row_end[kMaxTargets];  // cumulative output rows: target t owns [row_end[t-1], row_end[t])
  int n_targets;
  int64_t n_cols;                // K
  int64_t M;                     // activation rows, <= the kernel's kM
  const uint8_t* activations;    // [M, activation_row_bytes]
  size_t activation_row_bytes;
};

// The target and row of a warp's global row; false past the last row (the whole warp returns together).
__device__ __forceinline__ bool locate_row(const GemvParams& p, int64_t global_row, GemvTarget& target,
                                           int64_t& row) {
  int64_t begin = 0;
  for (int t = 0; t < kMaxTargets; ++t) {
    if (t >= p.n_targets) break;
    if (global_row < p.row_end[t]) {
      target = p.targets[t];
      row = global_row - begin;
      return true;
    }
    begin = p.row_end[t];
  }
  return false;
}

// Lane m stores the (warp-reduced) sum of activation row m.
template <int kM>
__device__ __forceinline__ void store_sums(const GemvTarget& target, int64_t row, int64_t M, float (&acc)[kM]) {
  const int lane = threadIdx.x % 32;
#pragma unroll
  for (int m = 0; m < kM; ++m) {
    const float total = warp_sum(acc[m]);
    if (lane == m && m < M) target.y[m * target.n_rows + row] = total;
  }
}

// ---------------------------------------------------------------- float weights (F32, F16, BF16)

template <GgmlType kType>
__device__ __forceinline__ float round_activation(float x) {
  if constexpr (kType == GgmlType::F16) {
    return round_through_fp16(x);
  } else if constexpr (kType == GgmlType::BF16) {
    return round_through_bf16(x);
  } else {
    return x;
  }
}

__device__ __forceinline__ void unpack_f16x2(uint32_t bits, float& low, float& high) {
  low = fp16_to_f32(static_cast<uint16_t>(bits & 0xffffu));
  high = fp16_to_f32(static_cast<uint16_t>(bits >> 16));
}

// Eight consecutive weights from a 16-byte aligned address.
template <GgmlType kType>
__device__ __forceinline__ void load_weights8(const uint8_t* row, int64_t k, float (&w)[8]) {
  if constexpr (kType == GgmlType::F32) {
    const float4* source = reinterpret_cast<const float4*>(row) + k / 4;
    const float4 a = __ldg(source), b = __ldg(source + 1);
    w[0] = a.x, w[1] = a.y, w[2] = a.z, w[3] = a.w, w[4] = b.x, w[5] = b.y, w[6] = b.z, w[7] = b.w;
  } else {
    const uint4 raw = __ldg(reinterpret_cast<const uint4*>(row) + k / 8);
    const uint32_t words[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      if constexpr (kType == GgmlType::F16) {
        unpack_f16x2(words[i], w[2 * i], w[2 * i + 1]);
      } else {
        w[2 * i] = bits_to_f32(words[i] << 16);
        w[2 * i + 1] = bits_to_f32(words[i] & 0xffff0000u);
      }
    }
  }
}

// activations: x itself, [M, K] f32 (the rounding to the weight's format happens here, in registers).
template <GgmlType kType, int kM>
__global__ void __launch_bounds__(kThreads) gemv_float_kernel(GemvParams p) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  GemvTarget target;
  int64_t n = 0;
  if (!locate_row(p, static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + warp, target, n)) return;
  const uint8_t* row = target.weights + n * target.row_bytes;
  const float* x = reinterpret_cast<const float*>(p.activations);  // [M, K]
  const int64_t K = p.n_cols;
  float acc[kM];
#pragma unroll
  for (int m = 0; m < kM; ++m) acc[m] = 0.0f;

  if (K % 8 == 0) {
#pragma unroll 4
    for (int64_t k = lane * 8; k < K; k += 32 * 8) {
      float w[8];
      load_weights8<kType>(row, k, w);
#pragma unroll
      for (int m = 0; m < kM; ++m) {
        if (m < p.M) {
          const float4* source = reinterpret_cast<const float4*>(x + m * K + k);
          const float4 a = __ldg(source), b = __ldg(source + 1);
          const float xs[8] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w};
#pragma unroll
          for (int i = 0; i < 8; ++i) acc[m] += w[i] * round_activation<kType>(xs[i]);
        }
      }
    }
  } else {
    for (int64_t k = lane; k < K; k += 32) {
      const float w = load_float_weight<kType>(row, k);
#pragma unroll
      for (int m = 0; m < kM; ++m) {
        if (m < p.M) acc[m] += w * round_activation<kType>(x[m * K + k]);
      }
    }
  }
  store_sums<kM>(target, n, p.M, acc);
}

// ---------------------------------------------------------------- 32-element blocks (Q4_0, Q4_1, Q8_0)

// A 32-bit word from a 2-byte aligned address (the block structs are only 2-byte aligned).
__device__ __forceinline__ int load_int_2aligned(const uint8_t* address) {
  const auto* halves = reinterpret_cast<const uint16_t*>(address);
  return static_cast<int>(static_cast<uint32_t>(halves[0]) | (static_cast<uint32_t>(halves[1]) << 16));
}
__device__ __forceinline__ uint16_t load_u16(const uint8_t* address) {
  return *reinterpret_cast<const uint16_t*>(address);
}

// Each unpacks one weight block into registers, then dots it with an activation block (dp4a on 4 bytes at a
// time). Offsets are those of the structs in quant_blocks.h.
struct Q4_0Weights {
  static constexpr int kBlockBytes = sizeof(BlockQ4_0);
  static constexpr int kActivationBlockBytes = sizeof(BlockQ8_0);
  float d;
  int low[4], high[4];  // elements 4i..4i+3 and 16+4i..16+4i+3, one per byte (0..15)
  __device__ void load(const uint8_t* w) {
    d = fp16_to_f32(load_u16(w));
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int word = load_int_2aligned(w + 2 + 4 * i);
      low[i] = word & 0x0F0F0F0F;
      high[i] = (word >> 4) & 0x0F0F0F0F;
    }
  }
  __device__ float dot(const uint8_t* a) const {
    int sum = 0, activation_sum = 0;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int a_low = load_int_2aligned(a + 2 + 4 * i);
      const int a_high = load_int_2aligned(a + 2 + 16 + 4 * i);
      sum = __dp4a(low[i], a_low, sum);
      sum = __dp4a(high[i], a_high, sum);
      activation_sum = __dp4a(0x01010101, a_low, activation_sum);
      activation_sum = __dp4a(0x01010101, a_high, activation_sum);
    }
    sum -= 8 * activation_sum;  // Σ (q - 8)·a
    return static_cast<float>(sum) * d * fp16_to_f32(load_u16(a));
  }
};

struct Q4_1Weights {
  static constexpr int kBlockBytes = sizeof(BlockQ4_1);
  static constexpr int kActivationBlockBytes = sizeof(BlockQ8_1);
  float d, m;
  int low[4], high[4];
  __device__ void load(const uint8_t* w) {
    d = fp16_to_f32(load_u16(w));
    m = fp16_to_f32(load_u16(w + 2));
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int word = load_int_2aligned(w + 4 + 4 * i);
      low[i] = word & 0x0F0F0F0F;
      high[i] = (word >> 4) & 0x0F0F0F0F;
    }
  }
  __device__ float dot(const uint8_t* a) const {
    int sum = 0;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      sum = __dp4a(low[i], load_int_2aligned(a + 4 + 4 * i), sum);
      sum = __dp4a(high[i], load_int_2aligned(a + 4 + 16 + 4 * i), sum);
    }
    // Σ (q·d + m)·a = d·Σq·a + m·Σa, with Σa = s stored in the activation block.
    return d * fp16_to_f32(load_u16(a)) * static_cast<float>(sum) + m * fp16_to_f32(load_u16(a + 2));
  }
};

struct Q8_0Weights {
  static constexpr int kBlockBytes = sizeof(BlockQ8_0);
  static constexpr int kActivationBlockBytes = sizeof(BlockQ8_0);
  float d;
  int q[8];
  __device__ void load(const uint8_t* w) {
    d = fp16_to_f32(load_u16(w));
#pragma unroll
    for (int i = 0; i < 8; ++i) q[i] = load_int_2aligned(w + 2 + 4 * i);
  }
  __device__ float dot(const uint8_t* a) const {
    int sum = 0;
#pragma unroll
    for (int i = 0; i < 8; ++i) sum = __dp4a(q[i], load_int_2aligned(a + 2 + 4 * i), sum);
    return static_cast<float>(sum) * d * fp16_to_f32(load_u16(a));
  }
};

// One lane per block; lanes stride over the row's blocks.
template <typename Weights, int kM>
__global__ void __launch_bounds__(kThreads) gemv_block32_kernel(GemvParams p) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  GemvTarget target;
  int64_t n = 0;
  if (!locate_row(p, static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + warp, target, n)) return;
  const uint8_t* row = target.weights + n * target.row_bytes;
  const int64_t n_blocks = p.n_cols / 32;
  float acc[kM];
#pragma unroll
  for (int m = 0; m < kM; ++m) acc[m] = 0.0f;
#pragma unroll 2
  for (int64_t b = lane; b < n_blocks; b += 32) {
    Weights weights;
    weights.load(row + b * Weights::kBlockBytes);
#pragma unroll
    for (int m = 0; m < kM; ++m) {
      if (m < p.M) {
        acc[m] += weights.dot(p.activations + m * p.activation_row_bytes + b * Weights::kActivationBlockBytes);
      }
    }
  }
  store_sums<kM>(target, n, p.M, acc);
}

// ---------------------------------------------------------------- K-quants (Q4_K, Q6_K) with Q8_K activations

// Byte offsets inside BlockQ8_K: f32 d, int8 qs[256], int16 bsums[16].
constexpr int kQ8KScaleOffset = 0;
constexpr int kQ8KQuantsOffset = 4;
constexpr int kQ8KSumsOffset = 4 + 256;

// Eight lanes per super-block, one 32-element sub-block each; the eight integer partials are summed exactly with
// shuffles before the f32 scaling, which is therefore the CPU's expression on the CPU's integers.
template <int kM>
__global__ void __launch_bounds__(kThreads) gemv_q4_k_kernel(GemvParams p) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  GemvTarget target;
  int64_t n = 0;
  if (!locate_row(p, static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + warp, target, n)) return;
  const uint8_t* row = target.weights + n * target.row_bytes;
  const int64_t n_super = p.n_cols / 256;
  const int sub_block = lane % 8;
  const int slot = lane / 8;  // four super-blocks per warp step
  float acc[kM];
#pragma unroll
  for (int m = 0; m < kM; ++m) acc[m] = 0.0f;

  for (int64_t base = 0; base < n_super; base += 4) {
    const int64_t b = base + slot;
    const bool valid = b < n_super;
    float d = 0.0f, dmin = 0.0f;
    int scale = 0, min = 0;
    int q[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    if (valid) {
      const uint8_t* w = row + b * static_cast<int64_t>(sizeof(BlockQ4_K));
      d = fp16_to_f32(load_u16(w));
      dmin = fp16_to_f32(load_u16(w + 2));
      q4_k_scale_min(w + 4, sub_block, scale, min);
      // qs at offset 16: sub-block 2c in the low nibbles of bytes 32c..32c+31, sub-block 2c+1 in the high ones.
      const uint4* quants = reinterpret_cast<const uint4*>(w + 16 + 32 * (sub_block / 2));
      const uint4 first = __ldg(quants), second = __ldg(quants + 1);
      const int shift = 4 * (sub_block % 2);
      const uint32_t words[8] = {first.x, first.y, first.z, first.w, second.x, second.y, second.z, second.w};
#pragma unroll
      for (int i = 0; i < 8; ++i) q[i] = static_cast<int>((words[i] >> shift) & 0x0F0F0F0Fu);
    }
#pragma unroll
    for (int m = 0; m < kM; ++m) {
      if (m < p.M) {
        int sum = 0, activation_sum = 0;
        float activation_scale = 0.0f;
        if (valid) {
          const uint8_t* a = p.activations + m * p.activation_row_bytes + b * static_cast<int64_t>(sizeof(BlockQ8_K));
          const int* quants = reinterpret_cast<const int*>(a + kQ8KQuantsOffset + 32 * sub_block);
#pragma unroll
          for (int i = 0; i < 8; ++i) sum = __dp4a(q[i], quants[i], sum);
          const auto* sums = reinterpret_cast<const int16_t*>(a + kQ8KSumsOffset);
          activation_sum = sums[2 * sub_block] + sums[2 * sub_block + 1];
          activation_scale = *reinterpret_cast<const float*>(a + kQ8KScaleOffset);
        }
        int scaled_sum = scale * sum;
        int min_sum = min * activation_sum;
#pragma unroll
        for (int offset = 1; offset < 8; offset <<= 1) {
          scaled_sum += __shfl_xor_sync(kFullWarpMask, scaled_sum, offset);
          min_sum += __shfl_xor_sync(kFullWarpMask, min_sum, offset);
        }
        if (valid && sub_block == 0) {
          acc[m] += activation_scale * (d * static_cast<float>(scaled_sum) - dmin * static_cast<float>(min_sum));
        }
      }
    }
  }
  store_sums<kM>(target, n, p.M, acc);
}

// Sixteen lanes per super-block, one 16-element scale group each.
template <int kM>
__global__ void __launch_bounds__(kThreads) gemv_q6_k_kernel(GemvParams p) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  GemvTarget target;
  int64_t n = 0;
  if (!locate_row(p, static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + warp, target, n)) return;
  const uint8_t* row = target.weights + n * target.row_bytes;
  const int64_t n_super = p.n_cols / 256;
  const int group = lane % 16;  // scale group s: elements 16s..16s+15
  const int slot = lane / 16;   // two super-blocks per warp step
  const int half = group / 8, quarter = (group % 8) / 2, first = 16 * (group % 2);
  float acc[kM];
#pragma unroll
  for (int m = 0; m < kM; ++m) acc[m] = 0.0f;

  for (int64_t base = 0; base < n_super; base += 2) {
    const int64_t b = base + slot;
    const bool valid = b < n_super;
    float d = 0.0f;
    int scale = 0;
    int q[4] = {0, 0, 0, 0};
    if (valid) {
      // BlockQ6_K: ql[128] at 0, qh[64] at 128, int8 scales[16] at 192, f16 d at 208.
      const uint8_t* w = row + b * static_cast<int64_t>(sizeof(BlockQ6_K));
      const uint8_t* low_bytes = w + 64 * half + 32 * (quarter % 2) + first;
      const uint8_t* high_bytes = w + 128 + 32 * half + first;
      scale = static_cast<int8_t>(w[192 + group]);
      d = fp16_to_f32(load_u16(w + 208));
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const uint32_t low_word = static_cast<uint32_t>(load_int_2aligned(low_bytes + 4 * i));
        const uint32_t high_word = static_cast<uint32_t>(load_int_2aligned(high_bytes + 4 * i));
        const uint32_t low4 = quarter < 2 ? (low_word & 0x0F0F0F0Fu) : ((low_word >> 4) & 0x0F0F0F0Fu);
        const uint32_t high2 = ((high_word >> (2 * quarter)) & 0x03030303u) << 4;
        q[i] = static_cast<int>(__vsub4(low4 | high2, 0x20202020u));  // q - 32 per byte, in -32..31
      }
    }
#pragma unroll
    for (int m = 0; m < kM; ++m) {
      if (m < p.M) {
        int sum = 0;
        float activation_scale = 0.0f;
        if (valid) {
          const uint8_t* a = p.activations + m * p.activation_row_bytes + b * static_cast<int64_t>(sizeof(BlockQ8_K));
          const int* quants = reinterpret_cast<const int*>(a + kQ8KQuantsOffset + 16 * group);
#pragma unroll
          for (int i = 0; i < 4; ++i) sum = __dp4a(q[i], quants[i], sum);
          activation_scale = *reinterpret_cast<const float*>(a + kQ8KScaleOffset);
        }
        int scaled_sum = scale * sum;
#pragma unroll
        for (int offset = 1; offset < 16; offset <<= 1) scaled_sum += __shfl_xor_sync(kFullWarpMask, scaled_sum, offset);
        if (valid && group == 0) acc[m] += activation_scale * d * static_cast<float>(scaled_sum);
      }
    }
  }
  store_sums<kM>(target, n, p.M, acc);
}

// ---------------------------------------------------------------- activation conversion

// One thread per 32-element block, through the shared quantizers (bit-identical to the CPU's).
// x: [M, K]; out: [M, K / 32] blocks.
template <typename Block>
__global__ void quantize_block32_kernel(const float* x, int64_t M, int64_t K, uint8_t* out) {
  const int64_t n_blocks = K / 32;
  const int64_t index = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (index >= M * n_blocks) return;
  const int64_t m = index / n_blocks, b = index % n_blocks;
  Block& block = reinterpret_cast<Block*>(out + m * n_blocks * static_cast<int64_t>(sizeof(Block)))[b];
  if constexpr (std::is_same_v<Block, BlockQ8_0>) {
    quantize_block_q8_0(x + m * K + 32 * b, block);
  } else {
    quantize_block_q8_1(x + m * K + 32 * b, block);
  }
}

// One warp per 256-element block, eight elements per lane. The same result as quantize_block_q8_k: the element of
// largest magnitude (the first one on ties) maps to -127, q = min(127, round_even(x * -127 / that element)).
__global__ void quantize_q8_k_kernel(const float* x, int64_t M, int64_t K, uint8_t* out) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t n_blocks = K / 256;
  const int64_t index = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + warp;
  if (index >= M * n_blocks) return;
  const int64_t m = index / n_blocks, b = index % n_blocks;
  const float4* source = reinterpret_cast<const float4*>(x + m * K + 256 * b + 8 * lane);
  const float4 first = source[0], second = source[1];
  const float values[8] = {first.x, first.y, first.z, first.w, second.x, second.y, second.z, second.w};
  float best_magnitude = 0.0f, best_value = 0.0f;
  int best_index = 1 << 30;
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    const float magnitude = absolute_value(values[i]);
    if (magnitude > best_magnitude) {
      best_magnitude = magnitude;
      best_value = values[i];
      best_index = 8 * lane + i;
    }
  }
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) {
    const float other_magnitude = __shfl_xor_sync(kFullWarpMask, best_magnitude, offset);
    const float other_value = __shfl_xor_sync(kFullWarpMask, best_value, offset);
    const int other_index = __shfl_xor_sync(kFullWarpMask, best_index, offset);
    if (other_magnitude > best_magnitude || (other_magnitude == best_magnitude && other_index < best_index)) {
      best_magnitude = other_magnitude;
      best_value = other_value;
      best_index = other_index;
    }
  }
  uint8_t* block = out + m * n_blocks * static_cast<int64_t>(sizeof(BlockQ8_K)) + b * static_cast<int64_t>(sizeof(BlockQ8_K));
  int quants[8];
  float inverse = 0.0f;
  if (best_magnitude != 0.0f) inverse = -127.0f / best_value;
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    const int q = best_magnitude != 0.0f ? round_to_nearest_int(inverse * values[i]) : 0;
    quants[i] = q < 127 ? q : 127;
  }
  uint32_t packed[2] = {0, 0};
#pragma unroll
  for (int i = 0; i < 8; ++i) packed[i / 4] |= (static_cast<uint32_t>(quants[i]) & 0xffu) << (8 * (i % 4));
  auto* quant_words = reinterpret_cast<uint32_t*>(block + kQ8KQuantsOffset + 8 * lane);
  quant_words[0] = packed[0];
  quant_words[1] = packed[1];
  int partial = 0;
#pragma unroll
  for (int i = 0; i < 8; ++i) partial += quants[i];
  partial += __shfl_xor_sync(kFullWarpMask, partial, 1);  // 16 elements = lanes 2j and 2j + 1
  if (lane % 2 == 0) reinterpret_cast<int16_t*>(block + kQ8KSumsOffset)[lane / 2] = static_cast<int16_t>(partial);
  if (lane == 0) *reinterpret_cast<float*>(block + kQ8KScaleOffset) = best_magnitude != 0.0f ? 1.0f / inverse : 0.0f;
}

// ---------------------------------------------------------------- dispatch helpers

template <int kValue>
using IntTag = std::integral_constant<int, kValue>;

template <typename Function>
void with_row_bound(int64_t M, Function&& function) {
  if (M <= 1) function(IntTag<1>{});
  else if (M <= 2) function(IntTag<2>{});
  else if (M <= 4) function(IntTag<4>{});
  else function(IntTag<8>{});
}

GgmlType activation_format(GgmlType weight_type) {
  switch (weight_type) {
    case GgmlType::Q4_0: case GgmlType::Q8_0: return GgmlType::Q8_0;
    case GgmlType::Q4_1: return GgmlType::Q8_1;
    case GgmlType::Q4_K: case GgmlType::Q6_K: return GgmlType::Q8_K;
    default: return GgmlType::F32;
  }
}

}  // namespace

bool gemv_supports(GgmlType type) {
  switch (type) {
    case GgmlType::F32: case GgmlType::F16: case GgmlType::BF16:
    case GgmlType::Q4_0: case GgmlType::Q4_1: case GgmlType::Q8_0:
    case GgmlType::Q4_K: case GgmlType::Q6_K:
      return true;
    default:
      return false;
  }
}

size_t gemv_activation_row_bytes(GgmlType weight_type, int64_t K) {
  switch (activation_format(weight_type)) {
    case GgmlType::Q8_0: return static_cast<size_t>(K / 32) * sizeof(BlockQ8_0);
    case GgmlType::Q8_1: return static_cast<size_t>(K / 32) * sizeof(BlockQ8_1);
    case GgmlType::Q8_K: return static_cast<size_t>(K / 256) * sizeof(BlockQ8_K);
    default: return static_cast<size_t>(K) * sizeof(float);
  }
}

void convert_activations_for_gemv(GgmlType weight_type, const float* x, int64_t M, int64_t K, void* out,
                                  cudaStream_t stream) {
  auto* destination = static_cast<uint8_t*>(out);
  switch (activation_format(weight_type)) {
    case GgmlType::Q8_0: {
      const auto grid = static_cast<unsigned>(ceil_div(M * (K / 32), kThreads));
      quantize_block32_kernel<BlockQ8_0><<<grid, kThreads, 0, stream>>>(x, M, K, destination);
      break;
    }
    case GgmlType::Q8_1: {
      const auto grid = static_cast<unsigned>(ceil_div(M * (K / 32), kThreads));
      quantize_block32_kernel<BlockQ8_1><<<grid, kThreads, 0, stream>>>(x, M, K, destination);
      break;
    }
    case GgmlType::Q8_K: {
      const auto grid = static_cast<unsigned>(ceil_div(M * (K / 256), kWarpsPerBlock));
      quantize_q8_k_kernel<<<grid, kThreads, 0, stream>>>(x, M, K, destination);
      break;
    }
    default:
      return;  // float weights read x itself
  }
  PAGEDLLM_CUDA_CHECK_LAUNCH("quantize activations");
}

void gemv(const DeviceMatrix* weights, float* const* outputs, int count, const void* activations, int64_t M,
          cudaStream_t stream) {
  if (count < 1 || count > kMaxTargets) fail("internal: gemv takes 1 to {} matrices, not {}", kMaxTargets, count);
  if (M < 1 || M > kMaxGemvRows) fail("internal: gemv takes 1 to {} activation rows, not {}", kMaxGemvRows, M);
  const GgmlType type = weights[0].type;
  if (!gemv_supports(type)) fail("internal: no GEMV kernel for {} weights", type_name(type));
  GemvParams p{};
  int64_t total_rows = 0;
  for (int t = 0; t < count; ++t) {
    if (weights[t].type != type || weights[t].n_cols != weights[0].n_cols) {
      fail("internal: gemv matrices must share type and width");
    }
    p.targets[t] = GemvTarget{weights[t].data, weights[t].row_bytes, outputs[t], weights[t].n_rows};
    total_rows += weights[t].n_rows;
    p.row_end[t] = total_rows;
  }
  p.n_targets = count;
  p.n_cols = weights[0].n_cols;
  p.M = M;
  p.activations = static_cast<const uint8_t*>(activations);
  p.activation_row_bytes = gemv_activation_row_bytes(type, p.n_cols);
  if (total_rows == 0) return;
  const auto grid = static_cast<unsigned>(ceil_div(total_rows, kWarpsPerBlock));

  with_row_bound(M, [&](auto bound) {
    constexpr int kM = decltype(bound)::value;
    switch (type) {
      case GgmlType::F32: gemv_float_kernel<GgmlType::F32, kM><<<grid, kThreads, 0, stream>>>(p); break;
      case GgmlType::F16: gemv_float_kernel<GgmlType::F16, kM><<<grid, kThreads, 0, stream>>>(p); break;
      case GgmlType::BF16: gemv_float_kernel<GgmlType::BF16, kM><<<grid, kThreads, 0, stream>>>(p); break;
      case GgmlType::Q4_0: gemv_block32_kernel<Q4_0Weights, kM><<<grid, kThreads, 0, stream>>>(p); break;
      case GgmlType::Q4_1: gemv_block32_kernel<Q4_1Weights, kM><<<grid, kThreads, 0, stream>>>(p); break;
      case GgmlType::Q8_0: gemv_block32_kernel<Q8_0Weights, kM><<<grid, kThreads, 0, stream>>>(p); break;
      case GgmlType::Q4_K: gemv_q4_k_kernel<kM><<<grid, kThreads, 0, stream>>>(p); break;
      case GgmlType::Q6_K: gemv_q6_k_kernel<kM><<<grid, kThreads, 0, stream>>>(p); break;
      default: break;
    }
  });
  PAGEDLLM_CUDA_CHECK_LAUNCH("gemv");
}

}  // namespace pagedllm::cuda
