#pragma once
// Everything one forward call needs, built by the engine and read by the backends. Paging reaches the kernels only
// through `slot_mapping` (where each new token's K/V is written) and each sequence's block table (what attention
// reads).
#include <cstdint>
#include <span>
#include <vector>

namespace pagedllm {

struct SeqView {
  int32_t seq_id = 0;
  int32_t first_row = 0;       // index of the sequence's first new token in BatchInput::tokens
  int32_t n_new = 0;           // new tokens this step (prompt chunk, or 1 when decoding)
  int32_t context_length = 0;  // tokens in the cache after this step, the new ones included
  std::span<const int32_t> block_table;  // [ceil(context_length / block_size)] physical block ids
};

struct BatchInput {
  std::vector<int32_t> tokens;        // [n_tokens] new tokens of all sequences, back to back
  std::vector<int32_t> positions;     // [n_tokens]
  std::vector<int32_t> slot_mapping;  // [n_tokens] block_id * block_size + offset of each new token's K/V
  std::vector<SeqView> seqs;          // [n_seqs]
  std::vector<int32_t> logit_rows;    // [n_logits] rows of `tokens` whose logits are wanted

  int32_t n_tokens() const { return static_cast<int32_t>(tokens.size()); }
  void clear() {
    tokens.clear();
    positions.clear();
    slot_mapping.clear();
    seqs.clear();
    logit_rows.clear();
  }
};

}  // namespace pagedllm
