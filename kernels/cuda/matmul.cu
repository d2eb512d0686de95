// Chooses the product kernel: the fused GEMV (llama.cpp's activation formats, the CPU's numerics, weights read
// once in their block format) for small batches, cuBLAS on tensor cores for prefill-sized ones.
#include <algorithm>

#include "common/error.h"
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_ops.h"

namespace pagedllm::cuda {

size_t matmul_activation_bytes(int64_t max_rows, int64_t max_cols) {
  // GEMV activations take at most 292/256 bytes per element (Q8_K); cuBLAS activations 2 (f16/bf16).
  const int64_t rows = std::max<int64_t>(max_rows, kMaxGemvRows);
  return static_cast<size_t>(rows) * static_cast<size_t>(max_cols) * 2 + 256;
}

namespace {

bool is_float_type(GgmlType type) {
  return type == GgmlType::F32 || type == GgmlType::F16 || type == GgmlType::BF16;
}

void run_gemv(const DeviceMatrix* weights, float* const* outputs, int count, const float* x, int64_t M,
              const MatmulWorkspace& workspace, cudaStream_t stream) {
  const GgmlType type = weights[0].type;
  const void* activations = x;
  if (!is_float_type(type)) {
    const size_t needed = static_cast<size_t>(M) * gemv_activation_row_bytes(type, weights[0].n_cols);
    if (needed > workspace.activation_bytes) {
      fail("internal: matmul activation scratch of {} bytes, {} needed", workspace.activation_bytes, needed);
    }
    convert_activations_for_gemv(type, x, M, weights[0].n_cols, workspace.activations, stream);
    activations = workspace.activations;
  }
  gemv(weights, outputs, count, activations, M, stream);
}

}  // namespace

void matmul(const DeviceMatrix* weights, float* const* outputs, int count, const float* x, int64_t M,
            const MatmulWorkspace& workspace, int gemv_max_rows, cudaStream_t stream) {
  if (M <= 0 || count <= 0) return;
  const int64_t gemv_rows = std::min<int64_t>(gemv_max_rows, kMaxGemvRows);
  bool shared_format = true;
  for (int i = 1; i < count; ++i) {
    shared_format = shared_format && weights[i].type == weights[0].type && weights[i].n_cols == weights[0].n_cols;
  }
  if (M <= gemv_rows && shared_format && gemv_supports(weights[0].type)) {
    run_gemv(weights, outputs, count, x, M, workspace, stream);
    return;
  }
  for (int i = 0; i < count; ++i) {
    if (M <= gemv_rows && gemv_supports(weights[i].type)) {
      run_gemv(&weights[i], &outputs[i], 1, x, M, workspace, stream);
    } else {
      gemm_cublas(weights[i], x, M, outputs[i], workspace, stream);
    }
  }
}

}  // namespace pagedllm::cuda
