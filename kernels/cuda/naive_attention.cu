// The attention baseline on the device: for each sequence the full [n_head, n_new, context_length] score matrix in
// device memory, a textbook softmax per row, then probabilities times V — three passes over memory, the cost the
// tiled kernels avoid. Benchmarks compare against it; tests check it against the CPU oracle.
#include <algorithm>

#include "common/error.h"
#include "tensor/float16.h"
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_ops.h"

namespace pagedllm::cuda {

namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ int64_t slot_element(const AttentionLaunch& a, const int32_t* table, int position,
                                                int kv_head) {
  const int64_t block = table[position / a.block_size];
  const int64_t slot = block * a.block_size + position % a.block_size;
  return (slot * a.n_head_kv + kv_head) * a.head_dim;
}

// grid (ceil(context / kThreads), n_new, n_head). scores: [n_head, n_new, context]
__global__ void naive_scores_kernel(AttentionLaunch a, DeviceSeq s, float* scores) {
  const int j = blockIdx.x * kThreads + threadIdx.x;
  const int i = blockIdx.y, h = blockIdx.z;
  if (j >= s.context_length) return;
  const int position = s.context_length - s.n_new + i;
  float* destination = scores + (static_cast<int64_t>(h) * s.n_new + i) * s.context_length + j;
  if (j > position || (a.window > 0 && j <= position - a.window)) {  // the future, or before the sliding window
    *destination = -INFINITY;
    return;
  }
  const int kv_head = h / (a.n_head / a.n_head_kv);
  const float* q = a.q + ((static_cast<int64_t>(s.first_row) + i) * a.n_head + h) * a.head_dim;
  const uint16_t* k = a.k_pool + slot_element(a, a.block_tables + s.table_offset, j, kv_head);
  float dot = 0.0f;
  for (int d = 0; d < a.head_dim; ++d) dot += q[d] * fp16_to_f32(k[d]);
  *destination = dot * a.scale;
}

__device__ float block_reduce(float value, bool is_max) {
  __shared__ float partials[kThreads / 32];
  value = is_max ? warp_max(value) : warp_sum(value);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) partials[warp] = value;
  __syncthreads();
  float total = is_max ? -INFINITY : 0.0f;
  for (int w = 0; w < kThreads / 32; ++w) total = is_max ? fmaxf(total, partials[w]) : total + partials[w];
  __syncthreads();
  return total;
}

// One CTA per score row: max, exp, sum, divide.
__global__ void naive_softmax_kernel(float* scores, int context) {
  float* row = scores + static_cast<int64_t>(blockIdx.x) * context;
  float max = -INFINITY;
  for (int j = threadIdx.x; j < context; j += kThreads) max = fmaxf(max, row[j]);
  max = block_reduce(max, true);
  float sum = 0.0f;
  for (int j = threadIdx.x; j < context; j += kThreads) {
    const float e = expf(row[j] - max);
    row[j] = e;
    sum += e;
  }
  sum = block_reduce(sum, false);
  for (int j = threadIdx.x; j < context; j += kThreads) row[j] /= sum;
}

// grid (n_new, n_head): out row = Σ_j p_j V_j, threads over dims.
__global__ void naive_pv_kernel(AttentionLaunch a, DeviceSeq s, const float* scores) {
  const int i = blockIdx.x, h = blockIdx.y;
  const int position = s.context_length - s.n_new + i;
  const int kv_head = h / (a.n_head / a.n_head_kv);
  const float* p = scores + (static_cast<int64_t>(h) * s.n_new + i) * s.context_length;
  const int32_t* table = a.block_tables + s.table_offset;
  float* out = a.out + ((static_cast<int64_t>(s.first_row) + i) * a.n_head + h) * a.head_dim;
  for (int d = threadIdx.x; d < a.head_dim; d += kThreads) {
    float sum = 0.0f;
    for (int j = a.window > 0 ? max(0, position - a.window + 1) : 0; j <= position; ++j) sum += p[j] * fp16_to_f32(a.v_pool[slot_element(a, table, j, kv_head) + d]);
    out[d] = sum;
  }
}

}  // namespace

size_t naive_attention_scores_bytes(const DeviceSeq* host_seqs, int n_seqs, int n_head) {
  size_t largest = 0;
  for (int i = 0; i < n_seqs; ++i) {
    largest = std::max(largest, static_cast<size_t>(host_seqs[i].n_new) * static_cast<size_t>(host_seqs[i].context_length));
  }
  return largest * static_cast<size_t>(n_head) * sizeof(float);
}

void naive_attention(const AttentionLaunch& args, const DeviceSeq* host_seqs, int n_seqs, float* scores,
                     cudaStream_t stream) {
  for (int i = 0; i < n_seqs; ++i) {
    const DeviceSeq& s = host_seqs[i];
    if (s.n_new <= 0) continue;
    // Launch with the sequence's own view: its device copy is not needed.
    const dim3 score_grid(static_cast<unsigned>(ceil_div(s.context_length, kThreads)), static_cast<unsigned>(s.n_new),
                          static_cast<unsigned>(args.n_head));
    naive_scores_kernel<<<score_grid, kThreads, 0, stream>>>(args, s, scores);
    PAGEDLLM_CUDA_CHECK_LAUNCH("naive_scores_kernel");
    naive_softmax_kernel<<<static_cast<unsigned>(s.n_new * args.n_head), kThreads, 0, stream>>>(scores,
                                                                                               s.context_length);
    PAGEDLLM_CUDA_CHECK_LAUNCH("naive_softmax_kernel");
    naive_pv_kernel<<<dim3(static_cast<unsigned>(s.n_new), static_cast<unsigned>(args.n_head)), kThreads, 0,
                      stream>>>(args, s, scores);
    PAGEDLLM_CUDA_CHECK_LAUNCH("naive_pv_kernel");
  }
}

}  // namespace pagedllm::cuda
