#pragma once
// The checks every backend runs on a batch before reading through it: the kernels index pools and block tables
// with these numbers, so a wrong one would read or write outside memory rather than fail.
#include <cstdint>

#include "common/error.h"
#include "kernels/backend.h"

namespace pagedllm {

inline void check_forward_batch(const ForwardBatch& batch, const KvGeometry& kv) {
  const int64_t n = batch.n_tokens();
  if (static_cast<int64_t>(batch.positions.size()) != n || static_cast<int64_t>(batch.slot_mapping.size()) != n) {
    fail("internal: a batch of {} tokens with {} positions and {} slots", n, batch.positions.size(),
         batch.slot_mapping.size());
  }
  const int64_t total_slots = static_cast<int64_t>(kv.num_blocks) * kv.block_size;
  for (const int32_t slot : batch.slot_mapping) {
    if (slot < 0 || slot >= total_slots) fail("internal: slot {} outside the pool of {} slots", slot, total_slots);
  }
  for (const int32_t row : batch.logit_rows) {
    if (row < 0 || row >= n) fail("internal: logit row {} outside the batch of {} tokens", row, n);
  }
  int64_t rows_covered = 0;
  for (const SeqView& s : batch.seqs) {
    const int64_t needed_blocks = (static_cast<int64_t>(s.context_length) + kv.block_size - 1) / kv.block_size;
    if (s.n_new < 1 || s.n_new > s.context_length || s.first_row != rows_covered ||
        static_cast<int64_t>(s.block_table.size()) < needed_blocks) {
      fail("internal: a sequence breaks the attention contract (rows {}+{} of {}, context {}, {} blocks)", s.first_row,
           s.n_new, n, s.context_length, s.block_table.size());
    }
    for (int64_t b = 0; b < needed_blocks; ++b) {
      const int32_t block = s.block_table[static_cast<size_t>(b)];
      if (block < 0 || block >= kv.num_blocks) fail("internal: block {} outside the pool of {}", block, kv.num_blocks);
    }
    rows_covered += s.n_new;
  }
  if (rows_covered != n) fail("internal: the sequences cover {} of the batch's {} tokens", rows_covered, n);
}

}  // namespace pagedllm
