#pragma once
// Bit-exact conversions between f32 and the 16-bit float formats stored in GGUF files (IEEE binary16 "F16" and
// bfloat16 "BF16"), and the round-to-nearest-even that the quantizers use: shared by the CPU and CUDA kernels.
//
// Everything here must compile as CUDA device code too, so it uses no std:: library functions, only <cstdint>
// types and compiler intrinsics.
#include <cstdint>

#include "common/host_device.h"

#if defined(__CUDACC__)
#include <cuda_fp16.h>
#endif

// F16C converts one half in a single instruction; the portable versions below give the same bits and stay
// available (and tested) on every machine.
#if defined(__F16C__) && !defined(__CUDACC__)
#include <immintrin.h>
#define PAGEDLLM_HAVE_F16C 1
#endif
#if defined(__SSE2__) && !defined(__CUDACC__)
#include <emmintrin.h>
#define PAGEDLLM_HAVE_SSE_ROUNDING 1
#endif

namespace pagedllm {

PAGEDLLM_HD inline float bits_to_f32(uint32_t bits) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(bits);
#else
  float value;
  __builtin_memcpy(&value, &bits, sizeof value);
  return value;
#endif
}

PAGEDLLM_HD inline uint32_t f32_to_bits(float value) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(value);
#else
  uint32_t bits;
  __builtin_memcpy(&bits, &value, sizeof bits);
  return bits;
#endif
}

// IEEE binary16 -> f32, exact for every input: subnormal halves become normal floats, inf stays inf and a NaN keeps
// its sign and payload (shifted into the top of the f32 mantissa) and comes back quiet, as F16C converts it.
PAGEDLLM_HD inline float fp16_to_f32_portable(uint16_t half) {
  const uint32_t sign = static_cast<uint32_t>(half & 0x8000u) << 16;
  const uint32_t exponent = (half >> 10) & 0x1fu;
  const uint32_t mantissa = half & 0x3ffu;
  if (exponent == 0x1f) {
    const uint32_t quiet_bit = mantissa != 0 ? 0x00400000u : 0u;
    return bits_to_f32(sign | 0x7f800000u | quiet_bit | (mantissa << 13));
  }
  if (exponent == 0) {
    // Zero or subnormal: mantissa * 2^-24 is exact in f32 (an integer below 2^10 times a power of two).
    const float magnitude = static_cast<float>(mantissa) * 5.9604644775390625e-8f;
    return bits_to_f32(sign | f32_to_bits(magnitude));
  }
  // Normal: rebias the exponent from 15 to 127.
  return bits_to_f32(sign | ((exponent + 112u) << 23) | (mantissa << 13));
}

// f32 -> IEEE binary16 with round-to-nearest-even, overflow to inf, subnormal results where they belong, and NaN
// kept a (quiet) NaN: the same bits as the F16C instruction with _MM_FROUND_TO_NEAREST_INT.
PAGEDLLM_HD inline uint16_t f32_to_fp16_portable(float value) {
  uint32_t bits = f32_to_bits(value);
  const uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
  bits &= 0x7fffffffu;
  if (bits >= 0x7f800000u) {  // inf or NaN
    const uint32_t nan_payload = bits > 0x7f800000u ? (0x200u | ((bits >> 13) & 0x3ffu)) : 0u;
    return static_cast<uint16_t>(sign | 0x7c00u | nan_payload);
  }
  if (bits >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // >= 65520 rounds past 65504 to inf
  if (bits < 0x38800000u) {
    // Below the smallest normal half (2^-14): adding 0.5 leaves the value in a binade whose ulp is 2^-24, the
    // half subnormal step, so the FPU does the round-to-nearest-even for us; the excess over 0.5 is the result.
    const float rounded = bits_to_f32(bits) + 0.5f;
    return static_cast<uint16_t>(sign | (f32_to_bits(rounded) - 0x3f000000u));
  }
  // Normal: rebias 127 -> 15 (adding 0xc8000000 subtracts 112 << 23 modulo 2^32) and round the 13 dropped bits to
  // nearest-even; a carry out of the mantissa correctly bumps the exponent.
  const uint32_t mantissa_odd = (bits >> 13) & 1u;
  bits += 0xc8000fffu + mantissa_odd;
  return static_cast<uint16_t>(sign | (bits >> 13));
}

PAGEDLLM_HD inline float fp16_to_f32(uint16_t half) {
#if defined(__CUDA_ARCH__)
  return __half2float(__ushort_as_half(half));
#elif defined(PAGEDLLM_HAVE_F16C)
  return _cvtsh_ss(half);
#else
  return fp16_to_f32_portable(half);
#endif
}

PAGEDLLM_HD inline uint16_t f32_to_fp16(float value) {
#if defined(__CUDA_ARCH__)
  return __half_as_ushort(__float2half_rn(value));
#elif defined(PAGEDLLM_HAVE_F16C)
  return static_cast<uint16_t>(_cvtss_sh(value, _MM_FROUND_TO_NEAREST_INT));
#else
  return f32_to_fp16_portable(value);
#endif
}

// bfloat16 is the top half of an f32, so widening is a shift.
PAGEDLLM_HD inline float bf16_to_f32(uint16_t bf16) { return bits_to_f32(static_cast<uint32_t>(bf16) << 16); }

// Round-to-nearest-even like ggml's GGML_FP32_TO_BF16: a NaN is truncated and forced quiet (bit 6 of the result)
// so that dropping its low payload bits can never turn it into inf.
PAGEDLLM_HD inline uint16_t f32_to_bf16(float value) {
  const uint32_t bits = f32_to_bits(value);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40u);
  return static_cast<uint16_t>((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
}

// Round to the nearest integer, ties to even, as ggml's nearest_int and its AVX2 quantizers do, so activation
// quantization matches llama.cpp's exactly (|value| < 2^22 there; larger values and NaN give some integer, never
// undefined behaviour). It must round the f32 value it is given: the add-a-magic-number trick ggml uses would let
// the compiler fuse a preceding multiply into an FMA (gcc -march=native does), rounding the exact product instead
// and turning ties such as x·(127/amax) = 46.5 into 47. A conversion instruction has no add to fuse.
PAGEDLLM_HD inline int32_t round_to_nearest_int(float value) {
#if defined(__CUDA_ARCH__)
  return __float2int_rn(value);
#elif defined(PAGEDLLM_HAVE_SSE_ROUNDING)
  return _mm_cvtss_si32(_mm_set_ss(value));  // the default MXCSR rounding: to nearest, ties to even
#else
  volatile float rounded_input = value;  // keeps the value a separately rounded f32
  const float shifted = rounded_input + 12582912.0f;
  return static_cast<int32_t>(f32_to_bits(shifted) & 0x007fffffu) - 0x00400000;
#endif
}

}  // namespace pagedllm
