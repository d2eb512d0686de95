// The attention oracle: for each sequence and query head, the full [n_new, context_length] score matrix with the
// causal mask (and the sliding window's), a max-subtracted softmax per row, then probabilities times V. Deliberately the textbook order of
// operations and nothing shared with the tiled kernel but the argument checks and the element loads, so that the
// two agree only if both are right. Sums run in double: over thousands of keys a float sum drifts by a few 1e-6,
// and the oracle's own drift would eat most of the 1e-5 the tiled kernel is held to.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/cpu/attention.h"
#include "kernels/cpu/attention_checks.h"
#include "tensor/float16.h"
#include "tensor/quant_blocks.h"

namespace pagedllm {

namespace {

// One element of a pool: [num_blocks * block_size, n_head_kv, head_dim] viewed flat. A quantized pool's element is
// found through its head row's blocks and decoded from the block's scale and its own level, one element at a time.
float load(const AttentionArgs& a, const void* pool, size_t index) {
  if (a.dtype == KvDtype::F16) return fp16_to_f32(static_cast<const uint16_t*>(pool)[index]);
  if (a.dtype == KvDtype::F32) return static_cast<const float*>(pool)[index];
  const size_t head_dim = static_cast<size_t>(a.head_dim);
  const size_t row_bytes = kv_row_bytes(a.dtype, a.head_dim);
  const size_t row = index / head_dim;      // slot * n_head_kv + head: rows lie one after another
  const size_t element = index % head_dim;  // within the head's row
  const auto* bytes = static_cast<const uint8_t*>(pool) + row * row_bytes;
  const size_t j = element % 32;
  if (a.dtype == KvDtype::Q8_0) {
    const auto* block = reinterpret_cast<const BlockQ8_0*>(bytes) + element / 32;
    return static_cast<float>(block->qs[j]) * fp16_to_f32(block->d);
  }
  const auto* block = reinterpret_cast<const BlockQ4_0*>(bytes) + element / 32;
  const int level = j < 16 ? (block->qs[j] & 0xF) : (block->qs[j - 16] >> 4);
  return static_cast<float>(level - 8) * fp16_to_f32(block->d);
}

}  // namespace

void naive_attention(const AttentionArgs& a) {
  check_attention_args(a);
  const int group = a.n_head / a.n_head_kv;
  const size_t head_dim = static_cast<size_t>(a.head_dim);
  const size_t slot_stride = static_cast<size_t>(a.n_head_kv) * head_dim;  // elements per slot
  std::vector<double> scores;    // [n_new, context_length] of one sequence and head
  std::vector<double> weighted;  // [head_dim] one output row

  for (const SeqAttention& s : a.seqs) {
    const size_t n_new = static_cast<size_t>(s.n_new);
    const size_t context = static_cast<size_t>(s.context_length);
    const size_t first_position = context - n_new;
    auto slot_of = [&](size_t position) {
      const int32_t block = s.block_table[position / static_cast<size_t>(a.block_size)];
      return static_cast<size_t>(block) * static_cast<size_t>(a.block_size) +
             position % static_cast<size_t>(a.block_size);
    };
    scores.assign(n_new * context, 0.0);
    for (int h = 0; h < a.n_head; ++h) {
      const size_t kv_head = static_cast<size_t>(h / group);
      for (size_t i = 0; i < n_new; ++i) {
        const float* q = a.q + (static_cast<size_t>(s.first_row) + i) * static_cast<size_t>(a.n_head) * head_dim +
                         static_cast<size_t>(h) * head_dim;  // [head_dim]
        double* row = &scores[i * context];                     // [context_length]
        // Positions before `oldest` are outside the row's sliding window (none without one).
        const size_t position = first_position + i;
        const size_t window = static_cast<size_t>(a.window);
        const size_t oldest = a.window > 0 && position + 1 > window ? position + 1 - window : 0;
        for (size_t j = 0; j < context; ++j) {
          if (j > position || j < oldest) {
            row[j] = -std::numeric_limits<double>::infinity();
            continue;
          }
          const size_t base = slot_of(j) * slot_stride + kv_head * head_dim;
          double dot = 0.0;
          for (size_t d = 0; d < head_dim; ++d) dot += double(q[d]) * load(a, a.k_pool, base + d);
          row[j] = dot * a.scale;
        }
        double max = -std::numeric_limits<double>::infinity();
        for (size_t j = 0; j < context; ++j) max = std::max(max, row[j]);
        double sum = 0.0;
        for (size_t j = 0; j < context; ++j) {
          row[j] = std::exp(row[j] - max);
          sum += row[j];
        }
        for (size_t j = 0; j < context; ++j) row[j] /= sum;
      }
      for (size_t i = 0; i < n_new; ++i) {
        float* out = a.out + (static_cast<size_t>(s.first_row) + i) * static_cast<size_t>(a.n_head) * head_dim +
                     static_cast<size_t>(h) * head_dim;  // [head_dim]
        weighted.assign(head_dim, 0.0);
        for (size_t j = 0; j <= first_position + i; ++j) {
          const double p = scores[i * context + j];
          if (p == 0.0) continue;  // masked (outside the window): its block may not be live
          const size_t base = slot_of(j) * slot_stride + kv_head * head_dim;
          for (size_t d = 0; d < head_dim; ++d) weighted[d] += p * load(a, a.v_pool, base + d);
        }
        for (size_t d = 0; d < head_dim; ++d) out[d] = static_cast<float>(weighted[d]);
      }
    }
  }
}

}  // namespace pagedllm
