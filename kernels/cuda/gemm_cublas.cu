// Prefill products through cuBLAS: y[M, N] = x[M, K] · W[N, K]ᵀ with FP32 accumulation on the tensor cores.
// F16 and BF16 weights are used as stored with the activations rounded to the same format (what the CPU kernels
// multiply too); F32 weights run a plain FP32 GEMM (no TF32); quantized weights are dequantized to f16 in tiles of
// rows (at most kWeightTileBytes at a time, so a 1 GB vocabulary matrix needs no 1 GB scratch) and multiplied
// with f16 activations that carry the CPU's 8-bit activation rounding.
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <type_traits>

#include "common/error.h"
#include "tensor/activation_quant.h"
#include "tensor/quant_blocks.h"
#include "kernels/cuda/cublas_library.h"
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_ops.h"

namespace pagedllm::cuda {

namespace {

constexpr int kThreads = 256;

__global__ void convert_to_f16_kernel(const float* x, int64_t n, __half* out) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) out[i] = __float2half_rn(x[i]);
}

__global__ void convert_to_bf16_kernel(const float* x, int64_t n, __nv_bfloat16* out) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) out[i] = __float2bfloat16_rn(x[i]);
}

// Quantized weights: the activations first take the round trip through the 8-bit format the CPU multiplies that
// weight type with (quantize with the shared tensor/activation_quant.h, dequantize with the shared
// dequantize_block), then go to f16. The products then see the CPU's activation values (up to the f16 rounding of
// d·q), which keeps prefill logits close to the CPU's. One thread per block. x: [M, K]; out: [M, K] f16.
template <typename Block>
__global__ void round_through_q8_kernel(const float* x, int64_t n_blocks, __half* out) {
  const int64_t b = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (b >= n_blocks) return;
  const float* source = x + b * Block::kSize;
  Block block;
  if constexpr (std::is_same_v<Block, BlockQ8_0>) {
    quantize_block_q8_0(source, block);
  } else if constexpr (std::is_same_v<Block, BlockQ8_1>) {
    quantize_block_q8_1(source, block);
  } else {
    quantize_block_q8_k(source, block);
  }
  float values[Block::kSize];
  dequantize_block(block, values);
  for (int j = 0; j < Block::kSize; ++j) out[b * Block::kSize + j] = __float2half_rn(values[j]);
}

// The CPU's activation format for a weight type (kernels/cpu/matmul.cpp's activation_type).
enum class ActivationFormat { Q8_0, Q8_1, Q8_K, F16 };
ActivationFormat activation_format(GgmlType type) {
  switch (type) {
    case GgmlType::Q4_0: case GgmlType::Q5_0: case GgmlType::Q8_0: return ActivationFormat::Q8_0;
    case GgmlType::Q4_1: case GgmlType::Q5_1: return ActivationFormat::Q8_1;
    case GgmlType::Q2_K: case GgmlType::Q3_K: case GgmlType::Q4_K: case GgmlType::Q5_K: case GgmlType::Q6_K:
    case GgmlType::Q8_K:
      return ActivationFormat::Q8_K;
    default: return ActivationFormat::F16;
  }
}

const char* cublas_status_name(cublasStatus_t status) {
  switch (status) {
    case CUBLAS_STATUS_SUCCESS: return "success";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "not initialized";
    case CUBLAS_STATUS_ALLOC_FAILED: return "allocation failed";
    case CUBLAS_STATUS_INVALID_VALUE: return "invalid value";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "architecture mismatch";
    case CUBLAS_STATUS_MAPPING_ERROR: return "mapping error";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "execution failed";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "internal error";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "not supported";
    default: return "unknown status";
  }
}

void check_cublas(cublasStatus_t status, const char* what) {
  if (status != CUBLAS_STATUS_SUCCESS) fail("cuBLAS error in {}: {}", what, cublas_status_name(status));
}

// Column-major view: W (row-major [N, K]) is the K x N matrix A with lda = K, taken transposed; x (row-major
// [M, K]) is the K x M matrix B with ldb = K; y (row-major [M, N]) is the N x M matrix C with ldc = N.
void gemm_ex(cublasHandle_t handle, int64_t n_rows, int64_t M, int64_t K, const void* weights, cudaDataType type,
             const void* x, float* y, int64_t ldc) {
  const float alpha = 1.0f, beta = 0.0f;
  check_cublas(cublas_library().gemm_ex(handle, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(n_rows), static_cast<int>(M),
                            static_cast<int>(K), &alpha, weights, type, static_cast<int>(K), x, type,
                            static_cast<int>(K), &beta, y, CUDA_R_32F, static_cast<int>(ldc), CUBLAS_COMPUTE_32F,
                            CUBLAS_GEMM_DEFAULT),
               "cublasGemmEx");
}

}  // namespace

void gemm_cublas(const DeviceMatrix& w, const float* x, int64_t M, float* y, const MatmulWorkspace& workspace,
                 cudaStream_t stream) {
  if (M <= 0 || w.n_rows <= 0) return;
  const int64_t K = w.n_cols, N = w.n_rows;
  if (K > INT32_MAX || N > INT32_MAX || M > INT32_MAX) fail("matmul: {} x {} x {} is too large for cuBLAS", M, N, K);
  check_cublas(cublas_library().set_stream(workspace.cublas, stream), "cublasSetStream");
  if (w.type == GgmlType::F32) {
    gemm_ex(workspace.cublas, N, M, K, w.data, CUDA_R_32F, x, y, N);
    return;
  }
  const size_t activation_bytes = static_cast<size_t>(M) * static_cast<size_t>(K) * 2;
  if (activation_bytes > workspace.activation_bytes) {
    fail("internal: matmul activation scratch of {} bytes, {} needed", workspace.activation_bytes, activation_bytes);
  }
  const auto grid = static_cast<unsigned>(ceil_div(M * K, kThreads));
  if (w.type == GgmlType::BF16) {
    auto* converted = static_cast<__nv_bfloat16*>(workspace.activations);
    convert_to_bf16_kernel<<<grid, kThreads, 0, stream>>>(x, M * K, converted);
    PAGEDLLM_CUDA_CHECK_LAUNCH("convert_to_bf16_kernel");
    gemm_ex(workspace.cublas, N, M, K, w.data, CUDA_R_16BF, converted, y, N);
    return;
  }
  auto* converted = static_cast<__half*>(workspace.activations);
  switch (activation_format(w.type)) {
    case ActivationFormat::Q8_0:
      round_through_q8_kernel<BlockQ8_0><<<static_cast<unsigned>(ceil_div(M * K / 32, kThreads)), kThreads, 0,
                                           stream>>>(x, M * K / 32, converted);
      break;
    case ActivationFormat::Q8_1:
      round_through_q8_kernel<BlockQ8_1><<<static_cast<unsigned>(ceil_div(M * K / 32, kThreads)), kThreads, 0,
                                           stream>>>(x, M * K / 32, converted);
      break;
    case ActivationFormat::Q8_K:
      round_through_q8_kernel<BlockQ8_K><<<static_cast<unsigned>(ceil_div(M * K / 256, kThreads)), kThreads, 0,
                                           stream>>>(x, M * K / 256, converted);
      break;
    case ActivationFormat::F16:
      convert_to_f16_kernel<<<grid, kThreads, 0, stream>>>(x, M * K, converted);
      break;
  }
  PAGEDLLM_CUDA_CHECK_LAUNCH("convert activations");
  if (w.type == GgmlType::F16) {
    gemm_ex(workspace.cublas, N, M, K, w.data, CUDA_R_16F, converted, y, N);
    return;
  }
  const int64_t tile_rows = std::min<int64_t>(
      N, std::max<int64_t>(1, static_cast<int64_t>(workspace.weight_tile_bytes / (static_cast<size_t>(K) * 2))));
  if (workspace.weight_tile == nullptr || static_cast<size_t>(tile_rows * K * 2) > workspace.weight_tile_bytes) {
    fail("internal: matmul weight tile scratch of {} bytes cannot hold one row of {} elements",
         workspace.weight_tile_bytes, K);
  }
  auto* tile = static_cast<uint16_t*>(workspace.weight_tile);
  for (int64_t row_begin = 0; row_begin < N; row_begin += tile_rows) {
    const int64_t rows = std::min(tile_rows, N - row_begin);
    dequantize_rows_f16(w, row_begin, row_begin + rows, tile, stream);
    // The tile is reused by the next iteration only after this GEMM: both are on `stream`, which orders them.
    gemm_ex(workspace.cublas, rows, M, K, tile, CUDA_R_16F, converted, y + row_begin, N);
  }
}

}  // namespace pagedllm::cuda
