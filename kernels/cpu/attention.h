#pragma once
// Attention over the paged K/V pools, on the CPU.
//
// Every sequence in the call contributes `n_new` query rows (its LAST n_new positions,
// context_length - n_new .. context_length - 1); row r attends causally to the positions <= its own. The new
// tokens' K/V are already in the pools (written through the slot mapping before the call). Query head h reads
// KV head h / (n_head / n_head_kv): MHA, GQA and MQA are one path. With a sliding window W, row r sees only the
// positions after its own minus W; blocks wholly before every row's window are not read at all.
//
// `paged_attention` is the tiled kernel: a work item is one KV head of one sequence together with a tile of query
// rows, so all the query heads sharing that KV head (the GQA group) consume each K/V block in one pass. Key tiles
// are the cache blocks, folded in with an online softmax (kernels/common/online_softmax.h), so no score matrix
// larger than [rows, block_size] exists. Prefill skips blocks wholly in the causal future; decode of a long
// context splits the block table across threads (flash-decoding) and merges the partial results.
//
// `naive_attention` materialises each head's full score row; it exists as the test oracle and benchmark baseline.
#include <cstdint>
#include <span>

#include "tensor/kv_dtype.h"

namespace pagedllm {

class ThreadPool;

struct SeqAttention {
  int32_t first_row = 0;       // the sequence's first query row in q / out
  int32_t n_new = 0;           // query rows of this sequence
  int32_t context_length = 0;  // positions in the cache, the new ones included
  const int32_t* block_table = nullptr;  // [n_blocks] physical block of each logical block
  int32_t n_blocks = 0;        // >= ceil(context_length / block_size)
};

struct AttentionArgs {
  const float* q = nullptr;  // [n_tokens, n_head, head_dim]
  float* out = nullptr;      // [n_tokens, n_head, head_dim]
  const void* k_pool = nullptr;  // [num_blocks, block_size, n_head_kv, head_dim] of dtype
  const void* v_pool = nullptr;  // [num_blocks, block_size, n_head_kv, head_dim] of dtype
  KvDtype dtype = KvDtype::F16;
  int n_head = 0;
  int n_head_kv = 0;
  int head_dim = 0;
  int block_size = 0;
  float scale = 1.0f;  // applied to q.k, usually 1 / sqrt(head_dim)
  int window = 0;      // > 0: row at position p sees positions p - window + 1 .. p only (sliding window)
  std::span<const SeqAttention> seqs;
};

// Throws std::invalid_argument when the arguments break the contract above (a bug in the caller, not user input).
void paged_attention(const AttentionArgs& args, ThreadPool& pool);
void naive_attention(const AttentionArgs& args);

}  // namespace pagedllm
