// RoPE on the device: one CTA per token rotates every query and key head of that token. The angles come from the
// shared rope_cos_sin (kernels/common/rope.h); theta advances by the same f32 multiplication chain as on the CPU
// (position, position * scale, position * scale^2, ...), computed by one thread, so the angles are the CPU's.
#include "kernels/common/rope.h"
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_ops.h"

namespace pagedllm::cuda {

namespace {

constexpr int kThreads = 128;

// q: [n_rows, n_head, head_dim]; k: [n_rows, n_head_kv, head_dim]. Dynamic shared memory: 3 * n_rot / 2 floats.
__global__ void rope_qk_kernel(float* q, float* k, const int32_t* positions, int n_head, int n_head_kv,
                               int head_dim, RopeParams params, float theta_scale, const float* freq_factors) {
  extern __shared__ float tables[];
  const int n_pairs = params.n_rot / 2;
  float* thetas = tables;              // [n_pairs]
  float* cos_table = tables + n_pairs;  // [n_pairs]
  float* sin_table = cos_table + n_pairs;
  const int64_t r = blockIdx.x;
  if (threadIdx.x == 0) {
    float theta = static_cast<float>(positions[r]);
    for (int i = 0; i < n_pairs; ++i) {
      thetas[i] = theta;
      theta *= theta_scale;
    }
  }
  __syncthreads();
  for (int i = threadIdx.x; i < n_pairs; i += blockDim.x) {
    const float factor = freq_factors != nullptr ? freq_factors[i] : 1.0f;
    rope_cos_sin(params, thetas[i], factor, i, &cos_table[i], &sin_table[i]);
  }
  __syncthreads();
  const int total = (n_head + n_head_kv) * n_pairs;
  for (int index = threadIdx.x; index < total; index += blockDim.x) {
    const int h = index / n_pairs;
    const int i = index % n_pairs;
    float* head = h < n_head ? q + (r * n_head + h) * head_dim
                             : k + (r * n_head_kv + (h - n_head)) * head_dim;  // [head_dim]
    if (params.neox) {
      rope_rotate(&head[i], &head[i + n_pairs], cos_table[i], sin_table[i]);
    } else {
      rope_rotate(&head[2 * i], &head[2 * i + 1], cos_table[i], sin_table[i]);
    }
  }
}

}  // namespace

void rope_qk(float* q, float* k, const int32_t* positions, int64_t n_rows, int n_head, int n_head_kv,
             int head_dim, const RopeParams& params, float theta_scale, const float* freq_factors,
             cudaStream_t stream) {
  if (n_rows <= 0 || params.n_rot < 2) return;
  const size_t shared_bytes = 3 * static_cast<size_t>(params.n_rot / 2) * sizeof(float);
  rope_qk_kernel<<<static_cast<unsigned>(n_rows), kThreads, shared_bytes, stream>>>(
      q, k, positions, n_head, n_head_kv, head_dim, params, theta_scale, freq_factors);
  PAGEDLLM_CUDA_CHECK_LAUNCH("rope_qk_kernel");
}

}  // namespace pagedllm::cuda
