// Writes into the paged K/V pools on the device: the new tokens' rows through the slot mapping, and whole-block
// copies for copy-on-write.
#include <algorithm>

#include "tensor/float16.h"
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_ops.h"

namespace pagedllm::cuda {

namespace {

constexpr int kThreads = 256;

// One thread per element of K (and the same element of V). k, v: [n_tokens, slot_elements];
// pools: [slots, slot_elements] f16.
__global__ void kv_write_kernel(const float* k, const float* v, const int32_t* slot_mapping, int64_t n_tokens,
                                int64_t slot_elements, uint16_t* k_pool, uint16_t* v_pool) {
  const int64_t index = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (index >= n_tokens * slot_elements) return;
  const int64_t token = index / slot_elements;
  const int64_t element = index % slot_elements;
  const int64_t destination = static_cast<int64_t>(slot_mapping[token]) * slot_elements + element;
  k_pool[destination] = f32_to_fp16(k[index]);
  v_pool[destination] = f32_to_fp16(v[index]);
}

// blockIdx.y: the pool. Copies `units` elements of type Unit (16-byte words when everything is aligned, else
// bytes) strided over the x dimension.
template <typename Unit>
__global__ void copy_block_kernel(uint8_t* pools, size_t pool_bytes, size_t block_bytes, int32_t src, int32_t dst) {
  uint8_t* pool = pools + static_cast<size_t>(blockIdx.y) * pool_bytes;
  const Unit* from = reinterpret_cast<const Unit*>(pool + static_cast<size_t>(src) * block_bytes);
  Unit* to = reinterpret_cast<Unit*>(pool + static_cast<size_t>(dst) * block_bytes);
  const size_t units = block_bytes / sizeof(Unit);
  for (size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < units;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    to[i] = from[i];
  }
}

}  // namespace

void kv_write(const float* k, const float* v, const int32_t* slot_mapping, int64_t n_tokens, int64_t slot_elements,
              uint16_t* k_pool, uint16_t* v_pool, cudaStream_t stream) {
  if (n_tokens <= 0) return;
  const auto grid = static_cast<unsigned>(ceil_div(n_tokens * slot_elements, kThreads));
  kv_write_kernel<<<grid, kThreads, 0, stream>>>(k, v, slot_mapping, n_tokens, slot_elements, k_pool, v_pool);
  PAGEDLLM_CUDA_CHECK_LAUNCH("kv_write_kernel");
}

void copy_kv_block(uint8_t* pools, int n_pools, size_t pool_bytes, size_t block_bytes, int32_t src, int32_t dst,
                   cudaStream_t stream) {
  if (n_pools <= 0 || block_bytes == 0 || src == dst) return;
  const bool aligned = block_bytes % 16 == 0 && pool_bytes % 16 == 0 && reinterpret_cast<uintptr_t>(pools) % 16 == 0;
  const size_t units = aligned ? block_bytes / 16 : block_bytes;
  const auto grid_x = static_cast<unsigned>(std::min<int64_t>(ceil_div(static_cast<int64_t>(units), kThreads), 64));
  const dim3 grid(grid_x, static_cast<unsigned>(n_pools));
  if (aligned) {
    copy_block_kernel<uint4><<<grid, kThreads, 0, stream>>>(pools, pool_bytes, block_bytes, src, dst);
  } else {
    copy_block_kernel<uint8_t><<<grid, kThreads, 0, stream>>>(pools, pool_bytes, block_bytes, src, dst);
  }
  PAGEDLLM_CUDA_CHECK_LAUNCH("copy_block_kernel");
}

}  // namespace pagedllm::cuda
