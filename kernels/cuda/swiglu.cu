// The elementwise sublayer pieces on the device: SwiGLU (the same silu formula as the CPU), GeGLU (the CPU's very
// gelu_tanh step), the residual add, the bias add, scaling, and the rounding of q to f16 before attention over an
// f16 cache.
#include "kernels/common/gelu.h"
#include "kernels/cuda/cuda_common.cuh"
#include "tensor/activation_quant.h"
#include "kernels/cuda/cuda_ops.h"

namespace pagedllm::cuda {

namespace {

constexpr int kThreads = 256;

__global__ void swiglu_kernel(float* gate, const float* up, int64_t n) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const float g = gate[i];
  gate[i] = g / (1.0f + expf(-g)) * up[i];
}

__global__ void geglu_kernel(float* gate, const float* up, int64_t n) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) gate[i] = gelu_tanh(gate[i]) * up[i];
}

__global__ void scale_kernel(float* x, float factor, int64_t n) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) x[i] *= factor;
}

__global__ void add_in_place_kernel(float* x, const float* y, int64_t n) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) x[i] += y[i];
}

// x: [n_rows, n]; bias: [n]
__global__ void add_bias_kernel(float* x, const float* bias, int64_t total, int64_t n) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < total) x[i] += bias[i % n];
}

__global__ void round_through_f16_kernel(float* x, int64_t n) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) x[i] = round_through_fp16(x[i]);
}

unsigned grid_for(int64_t n) { return static_cast<unsigned>(ceil_div(n, kThreads)); }

}  // namespace

void swiglu(float* gate, const float* up, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  swiglu_kernel<<<grid_for(n), kThreads, 0, stream>>>(gate, up, n);
  PAGEDLLM_CUDA_CHECK_LAUNCH("swiglu_kernel");
}

void geglu(float* gate, const float* up, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  geglu_kernel<<<grid_for(n), kThreads, 0, stream>>>(gate, up, n);
  PAGEDLLM_CUDA_CHECK_LAUNCH("geglu_kernel");
}

void scale(float* x, float factor, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  scale_kernel<<<grid_for(n), kThreads, 0, stream>>>(x, factor, n);
  PAGEDLLM_CUDA_CHECK_LAUNCH("scale_kernel");
}

void add_in_place(float* x, const float* y, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  add_in_place_kernel<<<grid_for(n), kThreads, 0, stream>>>(x, y, n);
  PAGEDLLM_CUDA_CHECK_LAUNCH("add_in_place_kernel");
}

void add_bias(float* x, const float* bias, int64_t n_rows, int64_t n, cudaStream_t stream) {
  if (n_rows <= 0 || n <= 0) return;
  add_bias_kernel<<<grid_for(n_rows * n), kThreads, 0, stream>>>(x, bias, n_rows * n, n);
  PAGEDLLM_CUDA_CHECK_LAUNCH("add_bias_kernel");
}

void round_through_f16(float* x, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  round_through_f16_kernel<<<grid_for(n), kThreads, 0, stream>>>(x, n);
  PAGEDLLM_CUDA_CHECK_LAUNCH("round_through_f16_kernel");
}

}  // namespace pagedllm::cuda
