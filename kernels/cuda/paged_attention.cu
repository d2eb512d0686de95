// Decode attention on the device: one new token per sequence, attending to its whole context through the block
// table.
//
// One CTA per DecodeWork (a sequence's range of logical blocks, a chunk of the KV group's query heads) and KV head:
// every query head of the group reads each K/V row the CTA loads. The 4 warps take 32-key chunks of the range in
// turn; in a chunk, lane j scores key j against every head (q in shared memory, K streamed from the pool with
// 16-byte loads), the warp folds the chunk into per-head online-softmax states, then the warp walks the chunk's
// V rows together (each lane owns a few dims) to update its accumulators. The 4 warps' partial results are merged
// in shared memory with the shared softmax_merge. A split decode (several CTAs over one context: flash-decoding)
// writes unnormalised partials instead, and merge_partials_kernel folds them into the output.
#include <cuda_fp16.h>

#include "common/error.h"
#include "tensor/float16.h"
#include "kernels/common/online_softmax.h"
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_ops.h"

namespace pagedllm::cuda {

namespace {

constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr int kChunkKeys = 32;

// kDims consecutive f16 values -> f32; vector loads when `aligned`, else one at a time (only `valid` of them).
template <int kDims>
__device__ __forceinline__ void load_dims(const uint16_t* source, bool aligned, int valid, float (&out)[kDims]) {
  if (aligned && valid == kDims) {
    if constexpr (kDims == 8) {
      const uint4 raw = *reinterpret_cast<const uint4*>(source);
      const uint32_t words[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        out[2 * i] = fp16_to_f32(static_cast<uint16_t>(words[i] & 0xffffu));
        out[2 * i + 1] = fp16_to_f32(static_cast<uint16_t>(words[i] >> 16));
      }
      return;
    } else if constexpr (kDims == 4) {
      const uint2 raw = *reinterpret_cast<const uint2*>(source);
      out[0] = fp16_to_f32(static_cast<uint16_t>(raw.x & 0xffffu));
      out[1] = fp16_to_f32(static_cast<uint16_t>(raw.x >> 16));
      out[2] = fp16_to_f32(static_cast<uint16_t>(raw.y & 0xffffu));
      out[3] = fp16_to_f32(static_cast<uint16_t>(raw.y >> 16));
      return;
    } else if constexpr (kDims == 2) {
      const uint32_t raw = *reinterpret_cast<const uint32_t*>(source);
      out[0] = fp16_to_f32(static_cast<uint16_t>(raw & 0xffffu));
      out[1] = fp16_to_f32(static_cast<uint16_t>(raw >> 16));
      return;
    }
  }
#pragma unroll
  for (int i = 0; i < kDims; ++i) out[i] = i < valid ? fp16_to_f32(source[i]) : 0.0f;
}

// kMaxHeads: bound on the heads per CTA (4, 8, 16); kDimsPerLane: bound on head_dim / 32 (1, 2, 4, 8).
template <int kMaxHeads, int kDimsPerLane>
__global__ void __launch_bounds__(kThreads) paged_decode_kernel(AttentionLaunch a, const DecodeWork* work,
                                                                int heads_per_item, float* partials) {
  constexpr int kMaxHeadDim = 32 * kDimsPerLane;
  __shared__ __align__(16) float q_shared[kMaxHeads * kMaxHeadDim];    // [heads][head_dim]
  __shared__ __align__(16) float acc_shared[kMaxHeads * kMaxHeadDim];  // [heads][head_dim] merged accumulators
  __shared__ SoftmaxState merged[kMaxHeads];

  const DecodeWork item = work[blockIdx.x];
  const int kv_head = blockIdx.y;
  const DeviceSeq s = a.seqs[item.seq];
  const int head_dim = a.head_dim;
  const int group = a.n_head / a.n_head_kv;
  const int heads = min(heads_per_item, group - item.head_begin);
  const int first_head = kv_head * group + item.head_begin;
  const int64_t query = static_cast<int64_t>(s.first_row) + s.n_new - 1;
  const int32_t* table = a.block_tables + s.table_offset;
  const int64_t slot_stride = static_cast<int64_t>(a.n_head_kv) * head_dim;
  // With a sliding window the keys before context - window are skipped (their blocks may no longer be live).
  const int key_begin = max(item.block_begin * a.block_size, a.window > 0 ? s.context_length - a.window : 0);
  const int key_end = min(item.block_end * a.block_size, s.context_length);

  for (int i = threadIdx.x; i < kMaxHeads * head_dim; i += kThreads) {
    const int h = i / head_dim, d = i % head_dim;
    q_shared[i] = h < heads ? a.q[(query * a.n_head + first_head + h) * head_dim + d] : 0.0f;
    acc_shared[i] = 0.0f;
  }
  if (threadIdx.x < kMaxHeads) merged[threadIdx.x] = softmax_state_empty();
  __syncthreads();

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const bool k_vectors = head_dim % 8 == 0;  // 16-byte loads of K rows (rows are then 16-byte aligned)
  const int first_dim = lane * kDimsPerLane;
  const int lane_dims = max(0, min(kDimsPerLane, head_dim - first_dim));
  const bool v_aligned = head_dim % kDimsPerLane == 0;
  SoftmaxState state[kMaxHeads];
  float acc[kMaxHeads][kDimsPerLane];
#pragma unroll
  for (int h = 0; h < kMaxHeads; ++h) {
    state[h] = softmax_state_empty();
#pragma unroll
    for (int i = 0; i < kDimsPerLane; ++i) acc[h][i] = 0.0f;
  }

  for (int chunk = key_begin + warp * kChunkKeys; chunk < key_end; chunk += kWarps * kChunkKeys) {
    const int key = chunk + lane;
    const bool valid = key < key_end;
    int64_t row_offset = 0;  // element offset of this lane's key row for this KV head
    float score[kMaxHeads];
#pragma unroll
    for (int h = 0; h < kMaxHeads; ++h) score[h] = 0.0f;
    if (valid) {
      const int64_t block = table[key / a.block_size];
      row_offset = (block * a.block_size + key % a.block_size) * slot_stride + static_cast<int64_t>(kv_head) * head_dim;
      const uint16_t* k_row = a.k_pool + row_offset;
      if (k_vectors) {
        for (int d = 0; d < head_dim; d += 8) {
          float k[8];
          load_dims<8>(k_row + d, true, 8, k);
#pragma unroll
          for (int h = 0; h < kMaxHeads; ++h) {
            if (h < heads) {
              const float4 q0 = *reinterpret_cast<const float4*>(q_shared + h * head_dim + d);
              const float4 q1 = *reinterpret_cast<const float4*>(q_shared + h * head_dim + d + 4);
              score[h] += q0.x * k[0] + q0.y * k[1] + q0.z * k[2] + q0.w * k[3] + q1.x * k[4] + q1.y * k[5] +
                          q1.z * k[6] + q1.w * k[7];
            }
          }
        }
      } else {
        for (int d = 0; d < head_dim; ++d) {
          const float k = fp16_to_f32(k_row[d]);
#pragma unroll
          for (int h = 0; h < kMaxHeads; ++h) {
            if (h < heads) score[h] += q_shared[h * head_dim + d] * k;
          }
        }
      }
    }
    float p[kMaxHeads];
#pragma unroll
    for (int h = 0; h < kMaxHeads; ++h) {
      p[h] = 0.0f;
      if (h < heads) {
        const float value = valid ? score[h] * a.scale : -INFINITY;
        const float factor = softmax_rescale(state[h], warp_max(value));
        p[h] = valid ? expf(value - state[h].max) : 0.0f;
        state[h].sum += warp_sum(p[h]);
#pragma unroll
        for (int i = 0; i < kDimsPerLane; ++i) acc[h][i] *= factor;
      }
    }
    // P·V: the warp reads the chunk's V rows one at a time, each lane its dims.
    const int n_valid = min(kChunkKeys, key_end - chunk);
#pragma unroll 4
    for (int j = 0; j < n_valid; ++j) {
      const int64_t offset = __shfl_sync(kFullWarpMask, row_offset, j);
      float v[kDimsPerLane];
      load_dims<kDimsPerLane>(a.v_pool + offset + first_dim, v_aligned, lane_dims, v);
#pragma unroll
      for (int h = 0; h < kMaxHeads; ++h) {
        if (h < heads) {
          const float pj = __shfl_sync(kFullWarpMask, p[h], j);
#pragma unroll
          for (int i = 0; i < kDimsPerLane; ++i) acc[h][i] += pj * v[i];
        }
      }
    }
  }

  // Merge the warps' partial results, one warp at a time, into acc_shared / merged.
  for (int w = 0; w < kWarps; ++w) {
    if (warp == w) {
#pragma unroll
      for (int h = 0; h < kMaxHeads; ++h) {
        if (h < heads) {
          SoftmaxState total = merged[h];
          const SoftmaxMerge factors = softmax_merge(total, state[h]);
#pragma unroll
          for (int i = 0; i < kDimsPerLane; ++i) {
            if (i < lane_dims) {
              float& destination = acc_shared[h * head_dim + first_dim + i];
              destination = destination * factors.scale_a + acc[h][i] * factors.scale_b;
            }
          }
          __syncwarp();
          if (lane == 0) merged[h] = total;
          __syncwarp();
        }
      }
    }
    __syncthreads();
  }

  if (item.partial < 0) {
    for (int i = threadIdx.x; i < heads * head_dim; i += kThreads) {
      const int h = i / head_dim, d = i % head_dim;
      a.out[(query * a.n_head + first_head + h) * head_dim + d] = acc_shared[i] * softmax_normalizer(merged[h]);
    }
    return;
  }
  // [n_partials, n_head, head_dim + 2]: the unnormalised output, then max and sum.
  for (int i = threadIdx.x; i < heads * (head_dim + 2); i += kThreads) {
    const int h = i / (head_dim + 2), d = i % (head_dim + 2);
    float* partial = partials + (static_cast<int64_t>(item.partial) * a.n_head + first_head + h) * (head_dim + 2);
    partial[d] = d < head_dim ? acc_shared[h * head_dim + d] : d == head_dim ? merged[h].max : merged[h].sum;
  }
}

// One CTA per (merge, query head): folds the splits' partials with softmax_merge, in split order, exactly as the
// CPU's merge does.
__global__ void __launch_bounds__(kThreads) merge_partials_kernel(AttentionLaunch a, const DecodeMerge* merges,
                                                                  const float* partials) {
  const DecodeMerge m = merges[blockIdx.x];
  const int head = blockIdx.y;
  const DeviceSeq s = a.seqs[m.seq];
  const int head_dim = a.head_dim;
  const int64_t query = static_cast<int64_t>(s.first_row) + s.n_new - 1;
  for (int d = threadIdx.x; d < head_dim; d += kThreads) {
    SoftmaxState state = softmax_state_empty();
    float out = 0.0f;
    for (int split = 0; split < m.n_splits; ++split) {
      const float* partial =
          partials + (static_cast<int64_t>(m.partial_first + split) * a.n_head + head) * (head_dim + 2);
      const SoftmaxMerge factors = softmax_merge(state, SoftmaxState{partial[head_dim], partial[head_dim + 1]});
      out = out * factors.scale_a + partial[d] * factors.scale_b;
    }
    a.out[(query * a.n_head + head) * head_dim + d] = out * softmax_normalizer(state);
  }
}

template <int kMaxHeads, int kDimsPerLane>
void launch_decode(const AttentionLaunch& args, const DecodeWork* work, int n_work, int heads_per_item,
                   float* partials, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>(n_work), static_cast<unsigned>(args.n_head_kv));
  paged_decode_kernel<kMaxHeads, kDimsPerLane><<<grid, kThreads, 0, stream>>>(args, work, heads_per_item, partials);
  PAGEDLLM_CUDA_CHECK_LAUNCH("paged_decode_kernel");
}

template <int kMaxHeads>
void launch_decode_for_heads(const AttentionLaunch& args, const DecodeWork* work, int n_work, int heads_per_item,
                             float* partials, cudaStream_t stream) {
  switch (decode_dims_per_lane(args.head_dim)) {
    case 1: launch_decode<kMaxHeads, 1>(args, work, n_work, heads_per_item, partials, stream); break;
    case 2: launch_decode<kMaxHeads, 2>(args, work, n_work, heads_per_item, partials, stream); break;
    case 4: launch_decode<kMaxHeads, 4>(args, work, n_work, heads_per_item, partials, stream); break;
    default: launch_decode<kMaxHeads, 8>(args, work, n_work, heads_per_item, partials, stream); break;
  }
}

}  // namespace

void paged_decode_attention(const AttentionLaunch& args, const DecodeWork* work, int n_work, int heads_per_item,
                            const DecodeMerge* merges, int n_merges, float* partials, cudaStream_t stream) {
  if (n_work <= 0) return;
  if (args.head_dim < 1 || args.head_dim > kDecodeMaxHeadDim) {
    fail("attention: head_dim {} is not supported on the GPU (at most {})", args.head_dim, kDecodeMaxHeadDim);
  }
  if (heads_per_item < 1 || heads_per_item > kDecodeMaxHeadsPerItem) {
    fail("internal: {} heads per decode CTA (1..{})", heads_per_item, kDecodeMaxHeadsPerItem);
  }
  switch (decode_heads_bound(heads_per_item)) {
    case 4: launch_decode_for_heads<4>(args, work, n_work, heads_per_item, partials, stream); break;
    case 8: launch_decode_for_heads<8>(args, work, n_work, heads_per_item, partials, stream); break;
    default: launch_decode_for_heads<16>(args, work, n_work, heads_per_item, partials, stream); break;
  }
  if (n_merges > 0) {
    const dim3 grid(static_cast<unsigned>(n_merges), static_cast<unsigned>(args.n_head));
    merge_partials_kernel<<<grid, kThreads, 0, stream>>>(args, merges, partials);
    PAGEDLLM_CUDA_CHECK_LAUNCH("merge_partials_kernel");
  }
}

}  // namespace pagedllm::cuda
