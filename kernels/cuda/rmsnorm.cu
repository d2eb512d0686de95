// RMSNorm on the device: one CTA per row. The sum of squares is accumulated in double, as the CPU kernel (and
// ggml) does, and the scale is formed with the same correctly rounded f32 operations, so both sides compute the
// same normalisation up to the order of the double additions.
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_ops.h"

namespace pagedllm::cuda {

namespace {

constexpr int kThreads = 256;

// Sum over the CTA; every thread gets the result.
__device__ double block_sum(double value) {
  __shared__ double warp_sums[kThreads / 32];
  value = warp_sum_double(value);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) warp_sums[warp] = value;
  __syncthreads();
  double total = 0.0;
#pragma unroll
  for (int w = 0; w < kThreads / 32; ++w) total += warp_sums[w];
  __syncthreads();  // the caller may run block_sum again
  return total;
}

__device__ void normalize_row(const float* row, const float* gain, float* destination, int64_t n, float eps) {
  double sum = 0.0;
  for (int64_t i = threadIdx.x; i < n; i += kThreads) sum += static_cast<double>(row[i]) * row[i];
  sum = block_sum(sum);
  const float mean = static_cast<float>(sum / static_cast<double>(n));
  const float scale = 1.0f / sqrtf(mean + eps);
  for (int64_t i = threadIdx.x; i < n; i += kThreads) destination[i] = row[i] * scale * gain[i];
}

// x, out: [n_rows, n]
__global__ void rms_norm_kernel(const float* x, const float* gain, float* out, int64_t n, float eps) {
  const int64_t r = blockIdx.x;
  normalize_row(x + r * n, gain, out + r * n, n, eps);
}

// x += y, then out = norm(x). Each thread normalises the elements it added, so no barrier is needed between.
__global__ void add_rms_norm_kernel(float* x, const float* y, const float* gain, float* out, int64_t n, float eps) {
  const int64_t r = blockIdx.x;
  float* row = x + r * n;
  const float* addend = y + r * n;
  for (int64_t i = threadIdx.x; i < n; i += kThreads) row[i] += addend[i];
  normalize_row(row, gain, out + r * n, n, eps);
}

// out[i] = norm(x[rows[i]])
__global__ void rms_norm_rows_kernel(const float* x, const int32_t* rows, const float* gain, float* out, int64_t n,
                                     float eps) {
  const int64_t i = blockIdx.x;
  normalize_row(x + static_cast<int64_t>(rows[i]) * n, gain, out + i * n, n, eps);
}

}  // namespace

void rms_norm(const float* x, const float* gain, float* out, int64_t n_rows, int64_t n, float eps,
              cudaStream_t stream) {
  if (n_rows <= 0) return;
  rms_norm_kernel<<<static_cast<unsigned>(n_rows), kThreads, 0, stream>>>(x, gain, out, n, eps);
  PAGEDLLM_CUDA_CHECK_LAUNCH("rms_norm_kernel");
}

void add_rms_norm(float* x, const float* y, const float* gain, float* out, int64_t n_rows, int64_t n, float eps,
                  cudaStream_t stream) {
  if (n_rows <= 0) return;
  add_rms_norm_kernel<<<static_cast<unsigned>(n_rows), kThreads, 0, stream>>>(x, y, gain, out, n, eps);
  PAGEDLLM_CUDA_CHECK_LAUNCH("add_rms_norm_kernel");
}

void rms_norm_rows(const float* x, const int32_t* rows, int64_t n_out, const float* gain, float* out, int64_t n,
                   float eps, cudaStream_t stream) {
  if (n_out <= 0) return;
  rms_norm_rows_kernel<<<static_cast<unsigned>(n_out), kThreads, 0, stream>>>(x, rows, gain, out, n, eps);
  PAGEDLLM_CUDA_CHECK_LAUNCH("rms_norm_rows_kernel");
}

}  // namespace pagedllm::cuda
