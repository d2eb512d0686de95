#pragma once
// Matrix products of GGUF weight matrices with f32 activations on the CPU: y = x · Wᵀ.
//
// Weights stay in their stored block format; each thread takes a range of output rows and computes its dot
// products block by block. The activations are first converted to the format llama.cpp multiplies each weight type
// with (its vec_dot_type: Q8_0, Q8_1, Q8_K, F16- or BF16-rounded, or plain F32), so our logits follow llama.cpp's
// numerics, and quantized products run on integers.
#include <cstdint>
#include <vector>

#include "common/thread_pool.h"
#include "tensor/tensor_types.h"
#include "tensor/weight_matrix.h"

namespace pagedllm {

// Reusable buffers of matmul: the converted activations. They only grow, so steady-state calls never allocate.
// One scratch per concurrent caller.
struct MatmulScratch {
  std::vector<uint8_t> activations;        // [M, row_bytes(activation_type, K)]
  std::vector<float> activation_scales;    // [M, K / 32] block scales d as f32 (Q8_0 / Q8_1 activations)
  std::vector<float> activation_sums;      // [M, K / 32] block sums s as f32 (Q8_1 activations)
  std::vector<int32_t> activation_block_sums;  // [M, K / 32] Σ q of each block (Q8_0 activations)
};

enum class MatmulKernel {
  Auto,    // the SIMD kernels this build has (AVX2 where the compiler targets it), scalar for the rest
  Scalar,  // the portable kernels only: always compiled, the reference the SIMD ones are tested against
};

// The format the activations are converted to for a weight type: F32, F16, BF16, Q8_0, Q8_1 or Q8_K.
GgmlType activation_type(GgmlType weight_type);

// Names the SIMD instruction set the Auto kernels use ("avx2", "avx2+vnni") or "scalar".
const char* matmul_simd_name();

// y[m][n] = Σ_k W[n][k] · x[m][k] for m < M, n < N.  x: [M, K] f32;  y: [M, N] f32 (must not alias x).
// Throws Error when the weight type cannot be computed or K is not a multiple of its block size.
void matmul(const WeightMatrix& w, const float* x, int64_t M, float* y, ThreadPool& pool, MatmulScratch& scratch,
            MatmulKernel kernel = MatmulKernel::Auto);

// Row i of out is row ids[i] of the matrix, dequantized.  out: [n, K] f32.  Throws Error for an id out of range.
void embedding_lookup(const WeightMatrix& w, const int32_t* ids, int64_t n, float* out);

}  // namespace pagedllm
