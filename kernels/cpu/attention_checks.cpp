#include "kernels/cpu/attention_checks.h"

#include <stdexcept>
#include <string>

#include <fmt/format.h>

namespace pagedllm {

void check_attention_args(const AttentionArgs& a) {
  auto bad = [](const std::string& what) { throw std::invalid_argument("attention: " + what); };
  if (a.n_head < 1 || a.n_head_kv < 1 || a.head_dim < 1 || a.block_size < 1)
    bad(fmt::format("n_head {}, n_head_kv {}, head_dim {} and block_size {} must be positive", a.n_head,
                    a.n_head_kv, a.head_dim, a.block_size));
  if (a.head_dim % kv_dtype_block_elements(a.dtype) != 0)
    bad(fmt::format("head_dim {} is not a whole number of {} blocks", a.head_dim, kv_dtype_name(a.dtype)));
  if (a.n_head % a.n_head_kv != 0)
    bad(fmt::format("n_head {} is not a multiple of n_head_kv {}", a.n_head, a.n_head_kv));
  if (a.q == nullptr || a.out == nullptr || a.k_pool == nullptr || a.v_pool == nullptr) {
    if (!a.seqs.empty()) bad("null q, out or pool pointer");
  }
  for (size_t i = 0; i < a.seqs.size(); ++i) {
    const SeqAttention& s = a.seqs[i];
    if (s.first_row < 0 || s.n_new < 0 || s.n_new > s.context_length)
      bad(fmt::format("sequence {}: first_row {}, n_new {}, context_length {} are inconsistent", i, s.first_row,
                      s.n_new, s.context_length));
    const int64_t blocks_needed = (static_cast<int64_t>(s.context_length) + a.block_size - 1) / a.block_size;
    if (s.n_blocks < blocks_needed || (blocks_needed > 0 && s.block_table == nullptr))
      bad(fmt::format("sequence {}: {} blocks cannot hold {} positions", i, s.n_blocks, s.context_length));
  }
}

}  // namespace pagedllm
