// Sampling on the device, one CTA per logits row, so that only the chosen token crosses back to the host.
//
// Greedy is the first maximum (the CPU's argmax). Otherwise the filters of llama.cpp's chain become one threshold
// on the logits, found without sorting the vocabulary: every filter keeps exactly the logits at or above some
// value, so the CTA finds that value by radix selection over order-preserving 32-bit keys of the floats (4 passes
// of 8-bit digit histograms in shared memory):
//   top_k: the k-th largest logit;
//   top_p: the logit at which the mass of the larger-or-equal candidates (softmax over the top-k survivors) first
//          reaches p — the last element of the CPU's shortest sorted prefix;
//   min_p: max + ln(min_p).
// Ties at a threshold are all kept (the CPU keeps exactly k on a tie at the k-th place, lower ids first): the only
// divergence, and only on exactly equal logits. The draw then walks the survivors in id order with the host's
// uniform number: probabilities exp((l - max) / temperature), a block-wide prefix sum, and the first token whose
// cumulative weight passes uniform * total.
#include "common/error.h"
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_ops.h"

namespace pagedllm::cuda {

namespace {

constexpr int kThreads = 1024;
constexpr int kWarps = kThreads / 32;

// Larger floats get larger keys (negative floats: all bits flipped; positive: the sign bit set).
__device__ __forceinline__ uint32_t order_key(float value) {
  const uint32_t bits = __float_as_uint(value);
  return (bits & 0x80000000u) != 0 ? ~bits : (bits | 0x80000000u);
}

struct Scratch {
  float warp_floats[kWarps];
  int warp_ints[kWarps];
  int int_histogram[256];
  float mass_histogram[256];
  uint32_t prefix;
  uint32_t prefix_mask;
  int remaining;
  float mass_above;
  int chosen_index;
  int last_candidate;
};

__device__ float block_sum(float value, Scratch& scratch) {
  value = warp_sum(value);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) scratch.warp_floats[warp] = value;
  __syncthreads();
  float total = 0.0f;
  for (int w = 0; w < kWarps; ++w) total += scratch.warp_floats[w];
  __syncthreads();
  return total;
}

__device__ float block_max(float value, Scratch& scratch) {
  value = warp_max(value);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) scratch.warp_floats[warp] = value;
  __syncthreads();
  float total = -INFINITY;
  for (int w = 0; w < kWarps; ++w) total = fmaxf(total, scratch.warp_floats[w]);
  __syncthreads();
  return total;
}

// Exclusive prefix sum over the CTA in thread order.
__device__ float block_exclusive_scan(float value, Scratch& scratch) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  float inclusive = value;
#pragma unroll
  for (int offset = 1; offset < 32; offset <<= 1) {
    const float other = __shfl_up_sync(kFullWarpMask, inclusive, offset);
    if (lane >= offset) inclusive += other;
  }
  if (lane == 31) scratch.warp_floats[warp] = inclusive;
  __syncthreads();
  float warp_offset = 0.0f;
  for (int w = 0; w < warp; ++w) warp_offset += scratch.warp_floats[w];
  __syncthreads();
  return warp_offset + inclusive - value;
}

// The key of the k-th largest logit (1 <= k <= n).
__device__ uint32_t select_kth_largest(const float* logits, int64_t n, int k, Scratch& scratch) {
  if (threadIdx.x == 0) {
    scratch.prefix = 0;
    scratch.prefix_mask = 0;
    scratch.remaining = k;
  }
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (int d = threadIdx.x; d < 256; d += kThreads) scratch.int_histogram[d] = 0;
    __syncthreads();
    const uint32_t prefix = scratch.prefix, mask = scratch.prefix_mask;
    for (int64_t i = threadIdx.x; i < n; i += kThreads) {
      const uint32_t key = order_key(logits[i]);
      if ((key & mask) == prefix) atomicAdd(&scratch.int_histogram[(key >> shift) & 0xffu], 1);
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      int above = 0, digit = 0;
      for (int d = 255; d >= 0; --d) {
        if (above + scratch.int_histogram[d] >= scratch.remaining) {
          digit = d;
          break;
        }
        above += scratch.int_histogram[d];
      }
      scratch.remaining -= above;
      scratch.prefix |= static_cast<uint32_t>(digit) << shift;
      scratch.prefix_mask |= 0xffu << shift;
    }
    __syncthreads();
  }
  const uint32_t result = scratch.prefix;
  __syncthreads();  // every thread has read it before the scratch is reused
  return result;
}

// The key of the candidate (key >= floor_key) at which the mass exp(l - max) of the candidates at or above it first
// reaches `target_mass`.
__device__ uint32_t select_mass_threshold(const float* logits, int64_t n, float max, uint32_t floor_key,
                                          float target_mass, Scratch& scratch) {
  if (threadIdx.x == 0) {
    scratch.prefix = 0;
    scratch.prefix_mask = 0;
    scratch.mass_above = 0.0f;
  }
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (int d = threadIdx.x; d < 256; d += kThreads) scratch.mass_histogram[d] = 0.0f;
    __syncthreads();
    const uint32_t prefix = scratch.prefix, mask = scratch.prefix_mask;
    for (int64_t i = threadIdx.x; i < n; i += kThreads) {
      const uint32_t key = order_key(logits[i]);
      if (key >= floor_key && (key & mask) == prefix) {
        atomicAdd(&scratch.mass_histogram[(key >> shift) & 0xffu], expf(logits[i] - max));
      }
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      float above = scratch.mass_above;
      int digit = -1, last_nonempty = -1;
      for (int d = 255; d >= 0; --d) {
        const float mass = scratch.mass_histogram[d];
        if (mass <= 0.0f) continue;
        last_nonempty = d;
        if (above + mass >= target_mass) {
          digit = d;
          break;
        }
        above += mass;
      }
      if (digit < 0) {
        // Rounding left the target just out of reach: the smallest candidate closes the set.
        digit = last_nonempty < 0 ? 0 : last_nonempty;
        above -= last_nonempty < 0 ? 0.0f : scratch.mass_histogram[digit];
      }
      scratch.mass_above = above;
      scratch.prefix |= static_cast<uint32_t>(digit) << shift;
      scratch.prefix_mask |= 0xffu << shift;
    }
    __syncthreads();
  }
  const uint32_t result = scratch.prefix;
  __syncthreads();
  return result;
}

__global__ void __launch_bounds__(kThreads) sample_kernel(const float* all_logits, int64_t n_vocab,
                                                          const SamplingRow* rows, int32_t* tokens) {
  __shared__ Scratch scratch;
  const float* logits = all_logits + static_cast<int64_t>(blockIdx.x) * n_vocab;
  const SamplingRow settings = rows[blockIdx.x];

  if (settings.temperature <= 0.0f) {
    // The first maximum.
    float best = -INFINITY;
    int64_t best_index = n_vocab;
    for (int64_t i = threadIdx.x; i < n_vocab; i += kThreads) {
      const float value = logits[i];
      if (value > best || (value == best && i < best_index)) {
        best = value;
        best_index = i;
      }
    }
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) {
      const float other = __shfl_xor_sync(kFullWarpMask, best, offset);
      const int64_t other_index = __shfl_xor_sync(kFullWarpMask, best_index, offset);
      if (other > best || (other == best && other_index < best_index)) {
        best = other;
        best_index = other_index;
      }
    }
    __shared__ float warp_best[kWarps];
    __shared__ int64_t warp_index[kWarps];
    if (lane == 0) {
      warp_best[warp] = best;
      warp_index[warp] = best_index;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      for (int w = 0; w < kWarps; ++w) {
        if (warp_best[w] > best || (warp_best[w] == best && warp_index[w] < best_index)) {
          best = warp_best[w];
          best_index = warp_index[w];
        }
      }
      tokens[blockIdx.x] = static_cast<int32_t>(best_index < n_vocab ? best_index : 0);
    }
    return;
  }

  float max = -INFINITY;
  for (int64_t i = threadIdx.x; i < n_vocab; i += kThreads) max = fmaxf(max, logits[i]);
  max = block_max(max, scratch);

  uint32_t threshold = 0;  // keep logits whose key is >= threshold
  if (settings.top_k > 0 && settings.top_k < n_vocab) {
    threshold = select_kth_largest(logits, n_vocab, settings.top_k, scratch);
  }
  if (settings.top_p < 1.0f) {
    float mass = 0.0f;
    for (int64_t i = threadIdx.x; i < n_vocab; i += kThreads) {
      if (order_key(logits[i]) >= threshold) mass += expf(logits[i] - max);
    }
    mass = block_sum(mass, scratch);
    const uint32_t top_p_key = select_mass_threshold(logits, n_vocab, max, threshold, settings.top_p * mass, scratch);
    threshold = threshold > top_p_key ? threshold : top_p_key;
  }
  if (settings.min_p > 0.0f) {
    const uint32_t min_p_key = order_key(max + logf(settings.min_p));
    threshold = threshold > min_p_key ? threshold : min_p_key;
  }
  // Every filter keeps at least the maximum.
  const uint32_t max_key = order_key(max);
  threshold = threshold < max_key ? threshold : max_key;

  // The draw, in id order: thread t owns the contiguous ids [t * per_thread, (t + 1) * per_thread).
  const int64_t per_thread = (n_vocab + kThreads - 1) / kThreads;
  const int64_t begin = threadIdx.x * per_thread;
  const int64_t end = begin + per_thread < n_vocab ? begin + per_thread : n_vocab;
  const float inverse_temperature = 1.0f / settings.temperature;
  float local = 0.0f;
  int last_local = -1;
  for (int64_t i = begin; i < end; ++i) {
    if (order_key(logits[i]) >= threshold) {
      local += expf((logits[i] - max) * inverse_temperature);
      last_local = static_cast<int>(i);
    }
  }
  if (threadIdx.x == 0) {
    scratch.chosen_index = INT32_MAX;
    scratch.last_candidate = -1;
  }
  const float before = block_exclusive_scan(local, scratch);
  const float total = block_sum(local, scratch);  // also orders the initialisation above before the atomics
  if (last_local >= 0) atomicMax(&scratch.last_candidate, last_local);
  const float target = settings.uniform * total;
  if (local > 0.0f && target >= before && target < before + local) {
    float running = before;
    int chosen = last_local;  // when rounding keeps the running sum below the target, the chunk's last candidate
    for (int64_t i = begin; i < end; ++i) {
      if (order_key(logits[i]) < threshold) continue;
      running += expf((logits[i] - max) * inverse_temperature);
      if (target < running) {
        chosen = static_cast<int>(i);
        break;
      }
    }
    atomicMin(&scratch.chosen_index, chosen);
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    // Rounding can leave the target at or past the total: the last candidate then takes it.
    tokens[blockIdx.x] = scratch.chosen_index != INT32_MAX ? scratch.chosen_index : scratch.last_candidate;
  }
}

}  // namespace

void sample_tokens(const float* logits, int64_t n_rows, int64_t n_vocab, const SamplingRow* rows, int32_t* tokens,
                   cudaStream_t stream) {
  if (n_rows <= 0) return;
  if (n_vocab <= 0 || n_vocab > INT32_MAX) fail("sampling: a vocabulary of {} tokens", n_vocab);
  sample_kernel<<<static_cast<unsigned>(n_rows), kThreads, 0, stream>>>(logits, n_vocab, rows, tokens);
  PAGEDLLM_CUDA_CHECK_LAUNCH("sample_kernel");
}

}  // namespace pagedllm::cuda
