// Dequantization on the device: embedding rows to f32, and weight rows to f16 for the cuBLAS prefill products.
// Each quantized block is expanded by the shared dequantize_block (tensor/quant_blocks.h), the very
// function the CPU path runs, so the two agree bit for bit.
#include <cuda_fp16.h>

#include "common/error.h"
#include "tensor/float16.h"
#include "kernels/cuda/block_dispatch.cuh"
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_ops.h"

namespace pagedllm::cuda {

namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ float load_float_element(GgmlType type, const uint8_t* row, int64_t k) {
  if (type == GgmlType::F32) return reinterpret_cast<const float*>(row)[k];
  const uint16_t bits = reinterpret_cast<const uint16_t*>(row)[k];
  return type == GgmlType::F16 ? fp16_to_f32(bits) : bf16_to_f32(bits);
}

// One thread per (row, block). out: [n, n_cols].
template <typename Block>
__global__ void embedding_blocks_kernel(const uint8_t* data, size_t row_bytes, const int32_t* ids, int64_t n,
                                        int64_t blocks_per_row, float* out, int64_t n_cols) {
  const int64_t index = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (index >= n * blocks_per_row) return;
  const int64_t i = index / blocks_per_row;
  const int64_t b = index % blocks_per_row;
  const auto* row = reinterpret_cast<const Block*>(data + static_cast<size_t>(ids[i]) * row_bytes);
  dequantize_block(row[b], out + i * n_cols + b * Block::kSize);
}

// One thread per element. out: [n, n_cols].
__global__ void embedding_float_kernel(GgmlType type, const uint8_t* data, size_t row_bytes, const int32_t* ids,
                                       int64_t n, int64_t n_cols, float* out) {
  const int64_t index = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (index >= n * n_cols) return;
  const int64_t i = index / n_cols;
  const int64_t k = index % n_cols;
  out[index] = load_float_element(type, data + static_cast<size_t>(ids[i]) * row_bytes, k);
}

// One thread per (row, block) of rows [row_begin, row_end). out: [row_end - row_begin, n_cols] f16.
template <typename Block>
__global__ void dequantize_f16_blocks_kernel(const uint8_t* data, size_t row_bytes, int64_t row_begin,
                                             int64_t n_rows, int64_t blocks_per_row, int64_t n_cols, __half* out) {
  const int64_t index = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (index >= n_rows * blocks_per_row) return;
  const int64_t r = index / blocks_per_row;
  const int64_t b = index % blocks_per_row;
  const auto* row = reinterpret_cast<const Block*>(data + static_cast<size_t>(row_begin + r) * row_bytes);
  float values[Block::kSize];
  dequantize_block(row[b], values);
  __half2* destination = reinterpret_cast<__half2*>(out + r * n_cols + b * Block::kSize);
#pragma unroll
  for (int j = 0; j < Block::kSize; j += 2) destination[j / 2] = __floats2half2_rn(values[j], values[j + 1]);
}

__global__ void dequantize_f16_float_kernel(GgmlType type, const uint8_t* data, size_t row_bytes, int64_t row_begin,
                                            int64_t n_rows, int64_t n_cols, __half* out) {
  const int64_t index = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (index >= n_rows * n_cols) return;
  const int64_t r = index / n_cols;
  const int64_t k = index % n_cols;
  out[index] = __float2half_rn(load_float_element(type, data + static_cast<size_t>(row_begin + r) * row_bytes, k));
}

int grid_for(int64_t work) { return static_cast<int>(ceil_div(work, kThreads)); }

}  // namespace

bool can_dequantize_on_device(GgmlType type) {
  if (type == GgmlType::F32 || type == GgmlType::F16 || type == GgmlType::BF16) return true;
  return dispatch_quant_block(type, [](auto) {});
}

void embedding_lookup(const DeviceMatrix& w, const int32_t* ids, int64_t n, float* out, cudaStream_t stream) {
  if (n <= 0) return;
  if (w.type == GgmlType::F32 || w.type == GgmlType::F16 || w.type == GgmlType::BF16) {
    embedding_float_kernel<<<grid_for(n * w.n_cols), kThreads, 0, stream>>>(w.type, w.data, w.row_bytes, ids, n,
                                                                            w.n_cols, out);
    PAGEDLLM_CUDA_CHECK_LAUNCH("embedding_float_kernel");
    return;
  }
  const bool known = dispatch_quant_block(w.type, [&](auto tag) {
    using Block = decltype(tag);
    const int64_t blocks_per_row = w.n_cols / Block::kSize;
    embedding_blocks_kernel<Block><<<grid_for(n * blocks_per_row), kThreads, 0, stream>>>(
        w.data, w.row_bytes, ids, n, blocks_per_row, out, w.n_cols);
    PAGEDLLM_CUDA_CHECK_LAUNCH("embedding_blocks_kernel");
  });
  if (!known) fail("embedding: weights of type {} cannot be read on the GPU", type_name(w.type));
}

void dequantize_rows_f16(const DeviceMatrix& w, int64_t row_begin, int64_t row_end, uint16_t* out,
                         cudaStream_t stream) {
  const int64_t n_rows = row_end - row_begin;
  if (n_rows <= 0) return;
  __half* destination = reinterpret_cast<__half*>(out);
  if (w.type == GgmlType::F32 || w.type == GgmlType::F16 || w.type == GgmlType::BF16) {
    dequantize_f16_float_kernel<<<grid_for(n_rows * w.n_cols), kThreads, 0, stream>>>(
        w.type, w.data, w.row_bytes, row_begin, n_rows, w.n_cols, destination);
    PAGEDLLM_CUDA_CHECK_LAUNCH("dequantize_f16_float_kernel");
    return;
  }
  const bool known = dispatch_quant_block(w.type, [&](auto tag) {
    using Block = decltype(tag);
    const int64_t blocks_per_row = w.n_cols / Block::kSize;
    dequantize_f16_blocks_kernel<Block><<<grid_for(n_rows * blocks_per_row), kThreads, 0, stream>>>(
        w.data, w.row_bytes, row_begin, n_rows, blocks_per_row, w.n_cols, destination);
    PAGEDLLM_CUDA_CHECK_LAUNCH("dequantize_f16_blocks_kernel");
  });
  if (!known) fail("matmul: weights of type {} cannot be dequantized on the GPU", type_name(w.type));
}

}  // namespace pagedllm::cuda
