#pragma once
// The paged KV cache's bookkeeping: which physical block holds which part of which sequence. Host-side only; the
// K/V pools themselves live on the backend (engine/kv_pool.h for the CPU) and are addressed through the slots and
// block tables this class hands out.
//
// A physical slot is `block_id * block_size + offset`. A sequence's block table maps its logical block i (tokens
// i*block_size .. i*block_size + block_size - 1) to a physical block. Blocks are reference counted: `fork` shares
// every block of a sequence; the first append into a shared, partly filled last block copies that block
// (copy-on-write) and records the copy for the backend. Only the last block of a sequence is ever partly filled.
//
// Prefix caching (optional, constructor flag): every FULL block whose token ids were reported through
// `commit_tokens` is registered under a hash of its tokens chained with the previous block's hash. A new sequence
// whose prompt starts with registered blocks attaches them (`match_prefix`) instead of recomputing them. Blocks
// whose count drops to zero keep their registration and stay reusable until a fresh block is needed; the least
// recently freed one is evicted first.
//
// Not thread-safe: one owner (the engine's scheduling thread) calls it.
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

namespace pagedllm {

using SeqId = int32_t;

// A block the backend must copy before the next forward (kernels/backend.h). Only named here: the header stays
// free of the kernels' types, so that rooms above the engine can include it.
struct BlockCopy;

struct CacheStats {
  int block_size = 0;
  int blocks_total = 0;
  int blocks_used = 0;         // held by at least one sequence
  int blocks_free = 0;         // available for allocation (includes blocks_cached)
  int blocks_cached = 0;       // free but still holding a registered prefix block (evicted LRU when needed)
  int blocks_shared = 0;       // held by more than one sequence
  int peak_blocks_used = 0;
  int sequences = 0;
  int64_t tokens_stored = 0;   // physical: filled slots of used blocks (a shared prompt counts once)
  int64_t tokens_logical = 0;  // sum of every sequence's context length (a shared prompt counts per sequence)
  int64_t slots_wasted = 0;    // allocated slots of used blocks holding no token
  int64_t cow_copies = 0;      // copy-on-write block copies so far
  int64_t prefix_queries = 0;  // full prompt blocks looked up by match_prefix
  int64_t prefix_hits = 0;     // of those, blocks found and reused
  int64_t prefix_hit_tokens = 0;

  double waste_percent() const {
    const int64_t allocated = static_cast<int64_t>(blocks_used) * block_size;
    return allocated == 0 ? 0.0 : 100.0 * static_cast<double>(slots_wasted) / static_cast<double>(allocated);
  }
  double prefix_hit_rate() const {
    return prefix_queries == 0 ? 0.0 : static_cast<double>(prefix_hits) / static_cast<double>(prefix_queries);
  }
};

class KvCacheManager {
 public:
  // Throws pagedllm::Error when num_blocks < 1 or block_size < 1.
  KvCacheManager(int num_blocks, int block_size, bool prefix_caching = false);
  ~KvCacheManager();
  KvCacheManager(const KvCacheManager&) = delete;
  KvCacheManager& operator=(const KvCacheManager&) = delete;

  SeqId create_sequence();

  // Physical slots for the next `n_new_tokens` positions of `seq`, allocating blocks as needed and first copying a
  // shared, partly filled last block (copy-on-write, recorded for take_pending_copies). nullopt when not enough
  // blocks are free; then nothing has changed (the scheduler preempts, the cache never fails).
  std::optional<std::vector<int32_t>> append_slots(SeqId seq, int n_new_tokens);

  // Blocks `append_slots(seq, n_new_tokens)` would take from the free pool (new blocks plus a CoW copy).
  int blocks_needed(SeqId seq, int n_new_tokens) const;
  bool can_append(SeqId seq, int n_new_tokens) const { return blocks_needed(seq, n_new_tokens) <= free_blocks(); }
  // Blocks a fresh sequence of `n_tokens` tokens occupies.
  int blocks_for_tokens(int n_tokens) const { return (n_tokens + block_size_ - 1) / block_size_; }

  // A new sequence sharing every block (and the stored length) of `parent`.
  SeqId fork(SeqId parent);
  // Drops the sequence; blocks whose count reaches zero become free (registered prefix blocks stay reusable).
  void release(SeqId seq);
  // Shortens `seq` to its first `n_tokens` positions (a chat rewinding to the part of its conversation that did not
  // change). Blocks wholly past the new end lose this sequence's reference; the kept part of the new last block stays
  // valid and the next append overwrites the dropped slots, after copying the block first when it is shared or
  // registered in the prefix cache (both must stay as they are). Throws std::invalid_argument when n_tokens is
  // outside 0..context_length(seq). With prefix caching, a cut inside a block whose ids or chained hash the registry
  // no longer knows (a twin of an already registered block) keeps working, but what the sequence fills afterwards is
  // never offered for reuse.
  void truncate(SeqId seq, int n_tokens);

  std::span<const int32_t> block_table(SeqId seq) const;  // [n_blocks] physical block per logical block
  int context_length(SeqId seq) const;                    // tokens stored for the sequence
  bool has_sequence(SeqId seq) const { return sequences_.count(seq) != 0; }

  // The CoW copies recorded since the last call, in execution order (a later copy may overwrite an earlier one's
  // source).
  std::vector<BlockCopy> take_pending_copies();

  // Prefix caching. `seq` must be empty (just created). Attaches the longest run of registered full blocks that
  // begins `prompt_tokens`, always leaving at least the last prompt token to compute (its logits are needed), and
  // returns the number of tokens attached (a multiple of block_size; 0 when caching is off or nothing matches).
  int match_prefix(SeqId seq, std::span<const int32_t> prompt_tokens);
  // Reports the token ids at positions committed_length(seq) .. + token_ids.size() - 1, which must already have
  // slots. Call it AFTER the forward that wrote their K/V: a block becomes visible to match_prefix as soon as it is
  // full of committed tokens. A no-op (beyond bookkeeping) when prefix caching is off.
  void commit_tokens(SeqId seq, std::span<const int32_t> token_ids);
  int committed_length(SeqId seq) const;

  int free_blocks() const { return static_cast<int>(free_list_.size()) + cached_count_; }
  int num_blocks() const { return num_blocks_; }
  int block_size() const { return block_size_; }
  bool prefix_caching() const { return prefix_caching_; }
  int ref_count(int32_t block) const { return ref_count_.at(static_cast<size_t>(block)); }
  CacheStats stats() const;

  // Empty when every invariant holds, else a description of the first violation. For tests; O(blocks + tables).
  std::string check_invariants() const;

 private:
  struct Sequence {
    std::vector<int32_t> blocks;   // [n_blocks] the block table
    int n_tokens = 0;              // positions with slots
    int n_committed = 0;           // positions whose token ids were reported
    uint64_t chain_hash = 0;       // hash of the last registered-or-hashed full block (0 before the first)
    std::vector<int32_t> partial;  // [n_committed % block_size] committed ids of the block being filled
  };

  Sequence& sequence(SeqId seq);
  const Sequence& sequence(SeqId seq) const;
  int32_t allocate_block();        // caller has checked free_blocks() > 0
  void drop_reference(int32_t block);
  bool must_copy_before_write(int32_t block) const;  // shared, or registered in the prefix cache
  void attach_cached(int32_t block);  // a registered block with ref 0 leaves the LRU list
  void register_full_block(int32_t block, uint64_t parent_hash, std::span<const int32_t> tokens, uint64_t hash);
  int32_t find_registered(uint64_t hash, uint64_t parent_hash, std::span<const int32_t> tokens) const;
  void lru_push_back(int32_t block);
  void lru_unlink(int32_t block);

  int num_blocks_;
  int block_size_;
  bool prefix_caching_;
  SeqId next_id_ = 0;
  std::unordered_map<SeqId, Sequence> sequences_;
  std::vector<int32_t> ref_count_;   // [num_blocks]
  std::vector<int32_t> free_list_;   // unregistered free blocks, used as a stack
  std::vector<BlockCopy> pending_copies_;

  // Prefix cache registry.
  static constexpr int32_t kNone = -1;
  std::unordered_map<uint64_t, int32_t> hash_to_block_;
  std::vector<uint8_t> registered_;        // [num_blocks] 1 when the block is in hash_to_block_
  std::vector<uint64_t> block_hash_;       // [num_blocks] its chained hash
  std::vector<uint64_t> block_parent_hash_;// [num_blocks] the previous block's chained hash
  std::vector<int32_t> block_tokens_;      // [num_blocks, block_size] its token ids (checked on match: no collisions)
  // LRU list of free registered blocks, intrusive over block ids: head = least recently freed.
  std::vector<int32_t> lru_prev_, lru_next_;  // [num_blocks]
  int32_t lru_head_ = kNone, lru_tail_ = kNone;
  int cached_count_ = 0;

  int64_t cow_copies_ = 0;
  int64_t prefix_queries_ = 0, prefix_hits_ = 0, prefix_hit_tokens_ = 0;
  int peak_blocks_used_ = 0;
  int blocks_used_ = 0;
};

}  // namespace pagedllm
