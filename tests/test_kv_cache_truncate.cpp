// KvCacheManager::truncate, which a chat uses to rewind its sequence to the unchanged part of the conversation:
// blocks past the cut are released, the kept part of the last block is overwritten in place when it is private,
// copied first when it is shared or registered in the prefix cache, and prefix caching goes on working after it.
#include <doctest/doctest.h>

#include <numeric>
#include <stdexcept>
#include <vector>

#include "engine/kv_cache.h"
#include "kernels/backend.h"

using namespace pagedllm;

namespace {

std::vector<int32_t> iota_tokens(int n, int first) {
  std::vector<int32_t> tokens(static_cast<size_t>(n));  // [n]
  std::iota(tokens.begin(), tokens.end(), first);
  return tokens;
}

// Appends and commits `tokens` to `seq`; returns their slots.
std::vector<int32_t> write(KvCacheManager& cache, SeqId seq, const std::vector<int32_t>& tokens) {
  auto slots = cache.append_slots(seq, static_cast<int>(tokens.size()));
  REQUIRE(slots.has_value());
  cache.commit_tokens(seq, tokens);
  return *slots;
}

}  // namespace

TEST_CASE("truncate releases the blocks past the cut and the next append continues at the cut") {
  KvCacheManager cache(8, 4);
  const SeqId seq = cache.create_sequence();
  write(cache, seq, iota_tokens(10, 100));  // positions 0..9: three blocks
  const std::vector<int32_t> table_before(cache.block_table(seq).begin(), cache.block_table(seq).end());
  REQUIRE(table_before.size() == 3);
  CHECK(cache.free_blocks() == 5);

  cache.truncate(seq, 6);  // keeps blocks 0 and 1 (positions 0..3, 4..5)
  CHECK(cache.context_length(seq) == 6);
  CHECK(cache.committed_length(seq) == 6);
  CHECK(cache.block_table(seq).size() == 2);
  CHECK(cache.free_blocks() == 6);
  CHECK(cache.check_invariants() == "");

  // A private block is overwritten in place: position 6 is slot 2 of the same physical block.
  const std::vector<int32_t> slots = write(cache, seq, iota_tokens(3, 500));
  CHECK(slots[0] == table_before[1] * 4 + 2);
  CHECK(cache.take_pending_copies().empty());
  CHECK(cache.context_length(seq) == 9);
  CHECK(cache.check_invariants() == "");

  cache.truncate(seq, 0);
  CHECK(cache.block_table(seq).empty());
  CHECK(cache.free_blocks() == 8);
  CHECK(cache.check_invariants() == "");
  cache.truncate(seq, 0);  // a no-op, not an error
  CHECK(cache.context_length(seq) == 0);
}

TEST_CASE("truncate outside 0..context_length is refused and changes nothing") {
  KvCacheManager cache(4, 4);
  const SeqId seq = cache.create_sequence();
  write(cache, seq, iota_tokens(5, 1));
  CHECK_THROWS_AS(cache.truncate(seq, 6), std::invalid_argument);
  CHECK_THROWS_AS(cache.truncate(seq, -1), std::invalid_argument);
  CHECK_THROWS_AS(cache.truncate(seq + 99, 0), std::invalid_argument);
  CHECK(cache.context_length(seq) == 5);
  CHECK(cache.check_invariants() == "");
}

TEST_CASE("a cut inside a block shared with a fork copies that block before writing, leaving the parent intact") {
  KvCacheManager cache(8, 4);
  const SeqId parent = cache.create_sequence();
  write(cache, parent, iota_tokens(8, 10));  // two full blocks
  const SeqId child = cache.fork(parent);
  const int32_t shared_block = cache.block_table(parent)[1];
  cache.truncate(child, 6);
  CHECK(cache.ref_count(shared_block) == 2);  // the child still reads positions 4..5 from it

  const std::vector<int32_t> slots = write(cache, child, {77});
  const std::vector<BlockCopy> copies = cache.take_pending_copies();
  REQUIRE(copies.size() == 1);
  CHECK(copies[0].src == shared_block);
  CHECK(copies[0].dst == cache.block_table(child)[1]);
  CHECK(slots[0] == copies[0].dst * 4 + 2);
  CHECK(cache.block_table(parent)[1] == shared_block);
  CHECK(cache.ref_count(shared_block) == 1);
  CHECK(cache.check_invariants() == "");
}

TEST_CASE("with prefix caching a cut into a registered block keeps it cached and the new tail registers correctly") {
  KvCacheManager cache(16, 4, /*prefix_caching=*/true);
  const SeqId seq = cache.create_sequence();
  const std::vector<int32_t> original = iota_tokens(12, 100);  // three full blocks, all registered
  write(cache, seq, original);
  const int32_t registered_block = cache.block_table(seq)[1];

  cache.truncate(seq, 6);  // inside block 1
  CHECK(cache.check_invariants() == "");
  // Writing position 6 must not touch the registered block: it is copied first.
  const std::vector<int32_t> rewritten = {900, 901, 902, 903, 904, 905};  // positions 6..11
  CHECK(cache.blocks_needed(seq, 1) == 1);
  write(cache, seq, rewritten);
  const std::vector<BlockCopy> copies = cache.take_pending_copies();
  REQUIRE(copies.size() == 1);
  CHECK(copies[0].src == registered_block);
  CHECK(cache.block_table(seq)[1] != registered_block);
  CHECK(cache.check_invariants() == "");

  // The original prompt still finds its three blocks... (the third was dropped by the cut but stays cached)
  std::vector<int32_t> original_prompt = original;
  original_prompt.push_back(1);
  const SeqId again = cache.create_sequence();
  CHECK(cache.match_prefix(again, original_prompt) == 12);
  CHECK(cache.block_table(again)[1] == registered_block);

  // ...and the rewritten conversation finds the blocks filled after the cut, so the chain hash and the kept ids of
  // the cut block were restored right.
  std::vector<int32_t> rewritten_prompt(original.begin(), original.begin() + 6);
  rewritten_prompt.insert(rewritten_prompt.end(), rewritten.begin(), rewritten.end());
  rewritten_prompt.push_back(1);
  const SeqId other = cache.create_sequence();
  CHECK(cache.match_prefix(other, rewritten_prompt) == 12);
  CHECK(cache.block_table(other)[1] == cache.block_table(seq)[1]);
  CHECK(cache.block_table(other)[2] == cache.block_table(seq)[2]);
  CHECK(cache.check_invariants() == "");
}

TEST_CASE("with prefix caching a cut inside the block being filled keeps its committed ids") {
  KvCacheManager cache(16, 4, /*prefix_caching=*/true);
  const SeqId seq = cache.create_sequence();
  write(cache, seq, iota_tokens(7, 100));  // block 0 full, block 1 holds 3
  cache.truncate(seq, 5);
  write(cache, seq, {50, 51, 52});  // block 1 = 104, 50, 51, 52
  CHECK(cache.check_invariants() == "");
  std::vector<int32_t> prompt = {100, 101, 102, 103, 104, 50, 51, 52, 7};
  const SeqId other = cache.create_sequence();
  CHECK(cache.match_prefix(other, prompt) == 8);
}
