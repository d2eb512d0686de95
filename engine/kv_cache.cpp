#include "engine/kv_cache.h"

#include <algorithm>
#include <stdexcept>

#include <fmt/format.h>

#include "common/error.h"
#include "kernels/backend.h"

namespace pagedllm {

namespace {

// splitmix64's finalizer: a cheap mix whose output bits all depend on all input bits.
uint64_t mix64(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

// Chained so that a block's identity includes everything before it: equal hashes mean equal prefixes (up to
// 64-bit collisions, and matches compare the tokens too).
uint64_t hash_block(uint64_t parent_hash, std::span<const int32_t> tokens) {
  uint64_t h = mix64(parent_hash + 0x9e3779b97f4a7c15ULL);
  for (int32_t token : tokens) h = mix64(h ^ static_cast<uint32_t>(token));
  // 0 means "no parent"; keep real hashes away from it.
  return h == 0 ? 1 : h;
}

}  // namespace

KvCacheManager::KvCacheManager(int num_blocks, int block_size, bool prefix_caching)
    : num_blocks_(num_blocks), block_size_(block_size), prefix_caching_(prefix_caching) {
  if (num_blocks < 1) fail("KV cache: the number of blocks must be at least 1, got {}", num_blocks);
  if (block_size < 1) fail("KV cache: the block size must be at least 1, got {}", block_size);
  const auto n = static_cast<size_t>(num_blocks);
  ref_count_.assign(n, 0);
  // A stack popping the lowest ids first keeps early allocations compact and predictable in tests.
  free_list_.resize(n);
  for (int32_t i = 0; i < num_blocks; ++i) free_list_[n - 1 - static_cast<size_t>(i)] = i;
  if (prefix_caching_) {
    registered_.assign(n, 0);
    block_hash_.assign(n, 0);
    block_parent_hash_.assign(n, 0);
    block_tokens_.assign(n * static_cast<size_t>(block_size), 0);
    lru_prev_.assign(n, kNone);
    lru_next_.assign(n, kNone);
  }
}

KvCacheManager::~KvCacheManager() = default;

SeqId KvCacheManager::create_sequence() {
  const SeqId id = next_id_++;
  sequences_.emplace(id, Sequence{});
  return id;
}

KvCacheManager::Sequence& KvCacheManager::sequence(SeqId seq) {
  auto it = sequences_.find(seq);
  if (it == sequences_.end()) throw std::invalid_argument(fmt::format("KV cache: unknown sequence {}", seq));
  return it->second;
}

const KvCacheManager::Sequence& KvCacheManager::sequence(SeqId seq) const {
  auto it = sequences_.find(seq);
  if (it == sequences_.end()) throw std::invalid_argument(fmt::format("KV cache: unknown sequence {}", seq));
  return it->second;
}

// ------------------------------------------------------------------------------------------------ allocation

void KvCacheManager::lru_push_back(int32_t block) {
  const auto b = static_cast<size_t>(block);
  lru_prev_[b] = lru_tail_;
  lru_next_[b] = kNone;
  if (lru_tail_ != kNone) lru_next_[static_cast<size_t>(lru_tail_)] = block;
  else lru_head_ = block;
  lru_tail_ = block;
  ++cached_count_;
}

void KvCacheManager::lru_unlink(int32_t block) {
  const auto b = static_cast<size_t>(block);
  const int32_t prev = lru_prev_[b], next = lru_next_[b];
  if (prev != kNone) lru_next_[static_cast<size_t>(prev)] = next;
  else lru_head_ = next;
  if (next != kNone) lru_prev_[static_cast<size_t>(next)] = prev;
  else lru_tail_ = prev;
  lru_prev_[b] = lru_next_[b] = kNone;
  --cached_count_;
}

int32_t KvCacheManager::allocate_block() {
  int32_t block;
  if (!free_list_.empty()) {
    block = free_list_.back();
    free_list_.pop_back();
  } else {
    // Plain free blocks are gone: evict the least recently freed cached prefix block.
    block = lru_head_;
    if (block == kNone) throw std::logic_error("KV cache: allocate_block called with no free block");
    lru_unlink(block);
    hash_to_block_.erase(block_hash_[static_cast<size_t>(block)]);
    registered_[static_cast<size_t>(block)] = 0;
  }
  ref_count_[static_cast<size_t>(block)] = 1;
  ++blocks_used_;
  peak_blocks_used_ = std::max(peak_blocks_used_, blocks_used_);
  return block;
}

void KvCacheManager::attach_cached(int32_t block) {
  auto& ref = ref_count_[static_cast<size_t>(block)];
  if (ref == 0) {
    lru_unlink(block);
    ++blocks_used_;
    peak_blocks_used_ = std::max(peak_blocks_used_, blocks_used_);
  }
  ++ref;
}

void KvCacheManager::drop_reference(int32_t block) {
  auto& ref = ref_count_[static_cast<size_t>(block)];
  if (ref <= 0) throw std::logic_error(fmt::format("KV cache: block {} released more often than held", block));
  if (--ref > 0) return;
  --blocks_used_;
  if (prefix_caching_ && registered_[static_cast<size_t>(block)]) lru_push_back(block);
  else free_list_.push_back(block);
}

int KvCacheManager::blocks_needed(SeqId seq, int n_new_tokens) const {
  const Sequence& s = sequence(seq);
  if (n_new_tokens <= 0) return 0;
  const int held = static_cast<int>(s.blocks.size());
  const int fresh = std::max(0, blocks_for_tokens(s.n_tokens + n_new_tokens) - held);
  const bool last_partly_filled = s.n_tokens < held * block_size_;
  const bool copy_on_write = last_partly_filled && must_copy_before_write(s.blocks.back());
  return fresh + (copy_on_write ? 1 : 0);
}

bool KvCacheManager::must_copy_before_write(int32_t block) const {
  // Registered blocks are full and immutable; only truncate() can leave one as a partly filled last block.
  const auto b = static_cast<size_t>(block);
  return ref_count_[b] > 1 || (prefix_caching_ && registered_[b]);
}

std::optional<std::vector<int32_t>> KvCacheManager::append_slots(SeqId seq, int n_new_tokens) {
  if (n_new_tokens < 0) throw std::invalid_argument("KV cache: append_slots with a negative token count");
  Sequence& s = sequence(seq);
  if (blocks_needed(seq, n_new_tokens) > free_blocks()) return std::nullopt;
  if (n_new_tokens == 0) return std::vector<int32_t>{};

  const int held = static_cast<int>(s.blocks.size());
  if (s.n_tokens < held * block_size_) {
    int32_t& last = s.blocks.back();
    if (must_copy_before_write(last)) {
      // Another sequence still reads this block's filled slots: write into a private copy instead.
      const int32_t copy = allocate_block();
      pending_copies_.push_back({last, copy});
      drop_reference(last);
      last = copy;
      ++cow_copies_;
    }
  }
  const int target_blocks = blocks_for_tokens(s.n_tokens + n_new_tokens);
  while (static_cast<int>(s.blocks.size()) < target_blocks) s.blocks.push_back(allocate_block());

  std::vector<int32_t> slots(static_cast<size_t>(n_new_tokens));  // [n_new_tokens]
  for (int i = 0; i < n_new_tokens; ++i) {
    const int position = s.n_tokens + i;
    const int32_t block = s.blocks[static_cast<size_t>(position / block_size_)];
    slots[static_cast<size_t>(i)] = block * block_size_ + position % block_size_;
  }
  s.n_tokens += n_new_tokens;
  return slots;
}

SeqId KvCacheManager::fork(SeqId parent) {
  Sequence copy = sequence(parent);
  for (int32_t block : copy.blocks) ++ref_count_[static_cast<size_t>(block)];
  const SeqId id = next_id_++;
  sequences_.emplace(id, std::move(copy));
  return id;
}

void KvCacheManager::release(SeqId seq) {
  auto it = sequences_.find(seq);
  if (it == sequences_.end()) throw std::invalid_argument(fmt::format("KV cache: unknown sequence {}", seq));
  // Last block first: the LRU then evicts a cached prompt from its tail, and its head (the part other prompts most
  // likely share) survives longest. Evicting a head block would make every block after it unreachable.
  const std::vector<int32_t>& blocks = it->second.blocks;
  for (auto block = blocks.rbegin(); block != blocks.rend(); ++block) drop_reference(*block);
  sequences_.erase(it);
}

void KvCacheManager::truncate(SeqId seq, int n_tokens) {
  Sequence& s = sequence(seq);
  if (n_tokens < 0 || n_tokens > s.n_tokens) {
    throw std::invalid_argument(fmt::format("KV cache: truncate sequence {} to {} tokens, but it holds {}", seq,
                                            n_tokens, s.n_tokens));
  }
  const auto kept_blocks = static_cast<size_t>(blocks_for_tokens(n_tokens));
  // Last block first, as in release(): the LRU then evicts cached tails before the heads they depend on.
  while (s.blocks.size() > kept_blocks) {
    drop_reference(s.blocks.back());
    s.blocks.pop_back();
  }
  s.n_tokens = n_tokens;
  if (n_tokens >= s.n_committed) return;  // only uncommitted slots were cut: the hash chain is unchanged

  const int full_blocks = n_tokens / block_size_;
  const int in_last = n_tokens % block_size_;
  const int committed_full_blocks = s.n_committed / block_size_;
  s.n_committed = n_tokens;
  if (!prefix_caching_) return;

  // The chained hash of the last kept full block and the ids of the kept part of the next block, from what this
  // sequence or the registry still knows; -1 stands for an id that is lost (never a real token, so blocks filled
  // after it never match a prompt).
  bool chain_known = true;
  uint64_t chain_hash = 0;
  if (full_blocks > 0) {
    const auto b = static_cast<size_t>(s.blocks[static_cast<size_t>(full_blocks - 1)]);
    if (registered_[b]) chain_hash = block_hash_[b];
    else chain_known = false;
  }
  std::vector<int32_t> partial(static_cast<size_t>(in_last), -1);  // [in_last]
  if (full_blocks == committed_full_blocks) {
    // The cut lies inside the block that was being filled: its ids are still here.
    std::copy_n(s.partial.begin(), in_last, partial.begin());
  } else if (in_last > 0) {
    const auto b = static_cast<size_t>(s.blocks[static_cast<size_t>(full_blocks)]);
    if (registered_[b]) std::copy_n(&block_tokens_[b * static_cast<size_t>(block_size_)], in_last, partial.begin());
  }
  if (!chain_known) {
    const int32_t lost = -1;
    chain_hash = hash_block(0, std::span<const int32_t>(&lost, 1));
  }
  s.chain_hash = chain_hash;
  s.partial = std::move(partial);
}

std::span<const int32_t> KvCacheManager::block_table(SeqId seq) const { return sequence(seq).blocks; }
int KvCacheManager::context_length(SeqId seq) const { return sequence(seq).n_tokens; }
int KvCacheManager::committed_length(SeqId seq) const { return sequence(seq).n_committed; }

std::vector<BlockCopy> KvCacheManager::take_pending_copies() {
  std::vector<BlockCopy> copies;
  copies.swap(pending_copies_);
  return copies;
}

// ------------------------------------------------------------------------------------------------ prefix cache

int32_t KvCacheManager::find_registered(uint64_t hash, uint64_t parent_hash, std::span<const int32_t> tokens) const {
  auto it = hash_to_block_.find(hash);
  if (it == hash_to_block_.end()) return kNone;
  const auto b = static_cast<size_t>(it->second);
  if (block_parent_hash_[b] != parent_hash) return kNone;
  const int32_t* stored = &block_tokens_[b * static_cast<size_t>(block_size_)];
  if (!std::equal(tokens.begin(), tokens.end(), stored)) return kNone;
  return it->second;
}

void KvCacheManager::register_full_block(int32_t block, uint64_t parent_hash, std::span<const int32_t> tokens,
                                         uint64_t hash) {
  const auto b = static_cast<size_t>(block);
  // One block per content: a second copy of a known prefix (computed twice by sequences running side by side)
  // stays private and is freed normally. A block already registered (it came from the cache) keeps its entry.
  if (registered_[b] || hash_to_block_.count(hash) != 0) return;
  hash_to_block_.emplace(hash, block);
  registered_[b] = 1;
  block_hash_[b] = hash;
  block_parent_hash_[b] = parent_hash;
  std::copy(tokens.begin(), tokens.end(), &block_tokens_[b * static_cast<size_t>(block_size_)]);
}

int KvCacheManager::match_prefix(SeqId seq, std::span<const int32_t> prompt_tokens) {
  Sequence& s = sequence(seq);
  if (!s.blocks.empty() || s.n_tokens != 0)
    throw std::logic_error(fmt::format("KV cache: match_prefix on sequence {} that already holds tokens", seq));
  if (!prefix_caching_ || prompt_tokens.empty()) return 0;

  // The last prompt token is always computed so that its logits exist.
  const int candidates = static_cast<int>((prompt_tokens.size() - 1) / static_cast<size_t>(block_size_));
  prefix_queries_ += candidates;
  uint64_t parent = 0;
  for (int i = 0; i < candidates; ++i) {
    const auto tokens = prompt_tokens.subspan(static_cast<size_t>(i) * static_cast<size_t>(block_size_),
                                              static_cast<size_t>(block_size_));
    const uint64_t hash = hash_block(parent, tokens);
    const int32_t block = find_registered(hash, parent, tokens);
    if (block == kNone) break;
    attach_cached(block);
    s.blocks.push_back(block);
    parent = hash;
  }
  const int matched = static_cast<int>(s.blocks.size()) * block_size_;
  s.n_tokens = s.n_committed = matched;
  s.chain_hash = parent;
  prefix_hits_ += static_cast<int64_t>(s.blocks.size());
  prefix_hit_tokens_ += matched;
  return matched;
}

void KvCacheManager::commit_tokens(SeqId seq, std::span<const int32_t> token_ids) {
  Sequence& s = sequence(seq);
  if (s.n_committed + static_cast<int64_t>(token_ids.size()) > s.n_tokens)
    throw std::logic_error(fmt::format("KV cache: sequence {} commits {} tokens past its {} stored", seq,
                                       s.n_committed + static_cast<int64_t>(token_ids.size()), s.n_tokens));
  if (!prefix_caching_) {
    s.n_committed += static_cast<int>(token_ids.size());
    return;
  }
  for (int32_t token : token_ids) {
    s.partial.push_back(token);
    ++s.n_committed;
    if (static_cast<int>(s.partial.size()) < block_size_) continue;
    const int32_t block = s.blocks[static_cast<size_t>((s.n_committed - 1) / block_size_)];
    const uint64_t hash = hash_block(s.chain_hash, s.partial);
    register_full_block(block, s.chain_hash, s.partial, hash);
    s.chain_hash = hash;
    s.partial.clear();
  }
}

// ------------------------------------------------------------------------------------------------ observation

CacheStats KvCacheManager::stats() const {
  CacheStats st;
  st.block_size = block_size_;
  st.blocks_total = num_blocks_;
  st.blocks_used = blocks_used_;
  st.blocks_free = free_blocks();
  st.blocks_cached = cached_count_;
  st.peak_blocks_used = peak_blocks_used_;
  st.sequences = static_cast<int>(sequences_.size());
  st.cow_copies = cow_copies_;
  st.prefix_queries = prefix_queries_;
  st.prefix_hits = prefix_hits_;
  st.prefix_hit_tokens = prefix_hit_tokens_;
  for (size_t b = 0; b < ref_count_.size(); ++b)
    if (ref_count_[b] > 1) ++st.blocks_shared;

  // A shared block holds as many tokens as its fullest holder wrote into it.
  std::vector<int32_t> filled(static_cast<size_t>(num_blocks_), 0);  // [num_blocks]
  for (const auto& [id, s] : sequences_) {
    st.tokens_logical += s.n_tokens;
    for (size_t i = 0; i < s.blocks.size(); ++i) {
      const int in_block = std::min(block_size_, s.n_tokens - static_cast<int>(i) * block_size_);
      auto& f = filled[static_cast<size_t>(s.blocks[i])];
      f = std::max(f, in_block);
    }
  }
  for (int32_t f : filled) st.tokens_stored += f;
  st.slots_wasted = static_cast<int64_t>(blocks_used_) * block_size_ - st.tokens_stored;
  return st;
}

std::string KvCacheManager::check_invariants() const {
  const auto n = static_cast<size_t>(num_blocks_);
  std::vector<int32_t> holders(n, 0);  // [num_blocks] table entries naming each block
  for (const auto& [id, s] : sequences_) {
    if (static_cast<int>(s.blocks.size()) != blocks_for_tokens(s.n_tokens))
      return fmt::format("sequence {} holds {} blocks for {} tokens", id, s.blocks.size(), s.n_tokens);
    if (s.n_committed > s.n_tokens)
      return fmt::format("sequence {} committed {} of {} tokens", id, s.n_committed, s.n_tokens);
    if (prefix_caching_ && static_cast<int>(s.partial.size()) != s.n_committed % block_size_)
      return fmt::format("sequence {} keeps {} partial ids for {} committed", id, s.partial.size(), s.n_committed);
    for (int32_t block : s.blocks) {
      if (block < 0 || block >= num_blocks_) return fmt::format("sequence {} names block {}", id, block);
      ++holders[static_cast<size_t>(block)];
    }
  }
  int used = 0;
  for (size_t b = 0; b < n; ++b) {
    if (ref_count_[b] != holders[b])
      return fmt::format("block {} has ref count {} but {} table entries", b, ref_count_[b], holders[b]);
    if (ref_count_[b] > 0) ++used;
  }
  if (used != blocks_used_) return fmt::format("{} blocks held but blocks_used says {}", used, blocks_used_);

  std::vector<uint8_t> seen(n, 0);  // [num_blocks] 1 when found on a free list
  for (int32_t block : free_list_) {
    const auto b = static_cast<size_t>(block);
    if (ref_count_[b] != 0) return fmt::format("free block {} has ref count {}", b, ref_count_[b]);
    if (seen[b]++) return fmt::format("block {} is on the free list twice", b);
    if (prefix_caching_ && registered_[b]) return fmt::format("plain free block {} is still registered", b);
  }
  int cached = 0;
  if (prefix_caching_) {
    int32_t prev = kNone;
    for (int32_t block = lru_head_; block != kNone; block = lru_next_[static_cast<size_t>(block)]) {
      const auto b = static_cast<size_t>(block);
      if (lru_prev_[b] != prev) return fmt::format("LRU list broken at block {}", b);
      if (ref_count_[b] != 0) return fmt::format("cached block {} has ref count {}", b, ref_count_[b]);
      if (!registered_[b]) return fmt::format("cached block {} is not registered", b);
      if (seen[b]++) return fmt::format("block {} is free twice", b);
      if (++cached > num_blocks_) return "LRU list has a cycle";
      prev = block;
    }
    if (prev != lru_tail_) return "LRU tail does not end the list";
    for (const auto& [hash, block] : hash_to_block_) {
      const auto b = static_cast<size_t>(block);
      if (!registered_[b] || block_hash_[b] != hash) return fmt::format("hash entry for block {} is stale", b);
    }
    size_t registered_count = 0;
    for (size_t b = 0; b < n; ++b) registered_count += registered_[b];
    if (registered_count != hash_to_block_.size())
      return fmt::format("{} blocks registered but {} hash entries", registered_count, hash_to_block_.size());
  }
  if (cached != cached_count_) return fmt::format("{} cached blocks counted as {}", cached, cached_count_);
  if (static_cast<int>(free_list_.size()) + cached + used != num_blocks_)
    return fmt::format("free {} + cached {} + used {} != total {}", free_list_.size(), cached, used, num_blocks_);
  return {};
}

}  // namespace pagedllm
