// The paged KV cache: block bookkeeping (allocation, fork, copy-on-write, release, exhaustion, prefix caching) and
// the CPU K/V pool that stores what the bookkeeping addresses.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <random>
#include <set>
#include <vector>

#include "common/error.h"
#include "engine/kv_cache.h"
#include "kernels/cpu/kv_pool.h"
#include "tensor/float16.h"
#include "tensor/quant_blocks.h"

using namespace pagedllm;

namespace {

// What a slot must be according to the block table: the contract every caller relies on.
int32_t expected_slot(const KvCacheManager& cache, SeqId seq, int position) {
  const auto table = cache.block_table(seq);
  return table[static_cast<size_t>(position / cache.block_size())] * cache.block_size() +
         position % cache.block_size();
}

std::vector<int32_t> iota_tokens(int n, int first = 100) {
  std::vector<int32_t> tokens(static_cast<size_t>(n));
  std::iota(tokens.begin(), tokens.end(), first);
  return tokens;
}

}  // namespace

TEST_CASE("append hands out slots through the block table and allocates a block at each boundary") {
  KvCacheManager cache(8, 4);
  const SeqId seq = cache.create_sequence();
  CHECK(cache.context_length(seq) == 0);
  CHECK(cache.block_table(seq).empty());

  auto first = cache.append_slots(seq, 3);
  REQUIRE(first.has_value());
  CHECK(first->size() == 3);
  CHECK(cache.block_table(seq).size() == 1);
  CHECK(cache.free_blocks() == 7);

  // 3 + 6 = 9 tokens cross two boundaries: blocks for positions 0-3, 4-7 and 8.
  auto second = cache.append_slots(seq, 6);
  REQUIRE(second.has_value());
  CHECK(cache.block_table(seq).size() == 3);
  CHECK(cache.context_length(seq) == 9);
  CHECK(cache.free_blocks() == 5);

  std::vector<int32_t> all = *first;
  all.insert(all.end(), second->begin(), second->end());
  for (int position = 0; position < 9; ++position)
    CHECK(all[static_cast<size_t>(position)] == expected_slot(cache, seq, position));
  CHECK(std::set<int32_t>(all.begin(), all.end()).size() == all.size());  // no slot handed out twice

  const CacheStats stats = cache.stats();
  CHECK(stats.blocks_used == 3);
  CHECK(stats.tokens_stored == 9);
  CHECK(stats.slots_wasted == 3);  // the last block holds 1 of 4
  CHECK(stats.peak_blocks_used == 3);
  CHECK(cache.check_invariants() == "");

  auto none = cache.append_slots(seq, 0);
  REQUIRE(none.has_value());
  CHECK(none->empty());
  CHECK(cache.block_table(seq).size() == 3);
}

TEST_CASE("fork shares every block and copy-on-write copies only the shared partial last block") {
  KvCacheManager cache(8, 4);
  const SeqId parent = cache.create_sequence();
  REQUIRE(cache.append_slots(parent, 6));  // blocks: full, half full
  const std::vector<int32_t> parent_table(cache.block_table(parent).begin(), cache.block_table(parent).end());

  const SeqId child = cache.fork(parent);
  CHECK(cache.context_length(child) == 6);
  CHECK(std::ranges::equal(cache.block_table(child), parent_table));
  for (int32_t block : parent_table) CHECK(cache.ref_count(block) == 2);
  CHECK(cache.stats().blocks_shared == 2);
  CHECK(cache.stats().tokens_stored == 6);  // the shared prompt counts once
  CHECK(cache.stats().tokens_logical == 12);
  CHECK(cache.free_blocks() == 6);
  CHECK(cache.check_invariants() == "");

  SUBCASE("the child's first append copies the partial block, once") {
    CHECK(cache.blocks_needed(child, 1) == 1);
    auto slot = cache.append_slots(child, 1);
    REQUIRE(slot.has_value());
    const auto copies = cache.take_pending_copies();
    REQUIRE(copies.size() == 1);
    CHECK(copies[0].src == parent_table[1]);
    CHECK(copies[0].dst == cache.block_table(child)[1]);
    CHECK(copies[0].dst != parent_table[1]);
    CHECK(cache.block_table(child)[0] == parent_table[0]);  // the full block stays shared
    CHECK(cache.ref_count(parent_table[0]) == 2);
    CHECK(cache.ref_count(parent_table[1]) == 1);  // the old block lost the child's reference
    CHECK((*slot)[0] == copies[0].dst * 4 + 2);
    CHECK(cache.stats().cow_copies == 1);
    CHECK(cache.take_pending_copies().empty());

    // Now private on both sides: no more copies.
    REQUIRE(cache.append_slots(child, 1));
    REQUIRE(cache.append_slots(parent, 1));
    CHECK(cache.take_pending_copies().empty());
    CHECK(cache.stats().cow_copies == 1);
    CHECK(cache.block_table(parent)[1] == parent_table[1]);
  }

  SUBCASE("a shared FULL last block is never copied: the next token opens a new block") {
    REQUIRE(cache.append_slots(parent, 2));  // parent's copy-on-write, now 8 tokens in two full blocks
    CHECK(cache.take_pending_copies().size() == 1);
    const SeqId grandchild = cache.fork(parent);
    CHECK(cache.blocks_needed(grandchild, 1) == 1);
    REQUIRE(cache.append_slots(grandchild, 1));
    CHECK(cache.take_pending_copies().empty());
    CHECK(cache.stats().cow_copies == 1);
  }

  SUBCASE("releasing returns blocks only when their last holder leaves") {
    cache.release(parent);
    CHECK_FALSE(cache.has_sequence(parent));
    for (int32_t block : parent_table) CHECK(cache.ref_count(block) == 1);
    CHECK(cache.free_blocks() == 6);
    cache.release(child);
    CHECK(cache.free_blocks() == 8);
    CHECK(cache.stats().blocks_used == 0);
  }
  CHECK(cache.check_invariants() == "");
}

TEST_CASE("running out of blocks returns nullopt and changes nothing") {
  KvCacheManager cache(4, 4);
  const SeqId a = cache.create_sequence();
  REQUIRE(cache.append_slots(a, 10));  // 3 blocks, last one half full
  const SeqId b = cache.fork(a);

  auto snapshot = [&] {
    return std::tuple(std::vector<int32_t>(cache.block_table(a).begin(), cache.block_table(a).end()),
                      std::vector<int32_t>(cache.block_table(b).begin(), cache.block_table(b).end()),
                      cache.context_length(a), cache.context_length(b), cache.free_blocks(), cache.stats().cow_copies);
  };
  const auto before = snapshot();

  CHECK(cache.free_blocks() == 1);
  CHECK(cache.blocks_needed(a, 3) == 2);  // a CoW copy of the shared half-full block, one block for position 12
  CHECK_FALSE(cache.can_append(a, 3));
  CHECK_FALSE(cache.append_slots(a, 3).has_value());
  CHECK(snapshot() == before);
  CHECK(cache.take_pending_copies().empty());

  // The CoW copy alone fits: exactly the last free block.
  REQUIRE(cache.append_slots(a, 1));
  CHECK(cache.free_blocks() == 0);
  CHECK_FALSE(cache.append_slots(b, 3).has_value());  // b's block is now private with room for 2, not 3
  REQUIRE(cache.append_slots(b, 2));
  CHECK_FALSE(cache.append_slots(b, 1).has_value());
  CHECK(cache.check_invariants() == "");
  cache.release(a);
  cache.release(b);
  CHECK(cache.free_blocks() == 4);
  CHECK(cache.check_invariants() == "");
}

TEST_CASE("bad construction is a clear error, unknown sequences a logic error") {
  CHECK_THROWS_AS(KvCacheManager(0, 16), Error);
  CHECK_THROWS_AS(KvCacheManager(16, 0), Error);
  KvCacheManager cache(4, 4);
  CHECK_THROWS_AS(cache.append_slots(42, 1), std::invalid_argument);
  CHECK_THROWS_AS(cache.release(42), std::invalid_argument);
  const SeqId seq = cache.create_sequence();
  CHECK_THROWS_AS(cache.append_slots(seq, -1), std::invalid_argument);
  REQUIRE(cache.append_slots(seq, 2));
  CHECK_THROWS_AS(cache.commit_tokens(seq, iota_tokens(3)), std::logic_error);  // only 2 have slots
}

TEST_CASE("prefix cache: committed full blocks are reused by later prompts that start with them") {
  KvCacheManager cache(16, 4, /*prefix_caching=*/true);
  const std::vector<int32_t> prompt = iota_tokens(10);  // 2 full blocks + 2 tokens

  const SeqId first = cache.create_sequence();
  CHECK(cache.match_prefix(first, prompt) == 0);  // empty cache
  REQUIRE(cache.append_slots(first, 10));
  cache.commit_tokens(first, prompt);
  const std::vector<int32_t> first_table(cache.block_table(first).begin(), cache.block_table(first).end());

  SUBCASE("a live sequence's blocks are shared directly") {
    const SeqId second = cache.create_sequence();
    CHECK(cache.match_prefix(second, prompt) == 8);
    CHECK(cache.context_length(second) == 8);
    CHECK(cache.block_table(second)[0] == first_table[0]);
    CHECK(cache.block_table(second)[1] == first_table[1]);
    CHECK(cache.ref_count(first_table[0]) == 2);
    REQUIRE(cache.append_slots(second, 2));
    CHECK(cache.take_pending_copies().empty());  // the matched blocks are full: nothing to copy
  }

  SUBCASE("released blocks stay reusable, and count as free") {
    cache.release(first);
    CHECK(cache.free_blocks() == 16);
    CHECK(cache.stats().blocks_cached == 2);  // the partial third block is not cached
    const SeqId second = cache.create_sequence();
    CHECK(cache.match_prefix(second, prompt) == 8);
    CHECK(cache.block_table(second)[0] == first_table[0]);
    CHECK(cache.stats().blocks_cached == 0);
    CHECK(cache.free_blocks() == 14);
  }

  SUBCASE("the last prompt token is always left to compute") {
    const std::vector<int32_t> exact(prompt.begin(), prompt.begin() + 8);  // exactly two blocks
    const SeqId second = cache.create_sequence();
    CHECK(cache.match_prefix(second, exact) == 4);
  }

  SUBCASE("a different first block misses everything after it: the hash is chained") {
    std::vector<int32_t> changed = prompt;
    changed[0] = 7;  // block 1 has the same tokens but a different predecessor
    const SeqId second = cache.create_sequence();
    CHECK(cache.match_prefix(second, changed) == 0);
    std::vector<int32_t> diverging = prompt;
    diverging[5] = 7;
    const SeqId third = cache.create_sequence();
    CHECK(cache.match_prefix(third, diverging) == 4);
  }

  SUBCASE("an equal block after a different (cached) predecessor is not reused: its K/V depend on the prefix") {
    // Register [A][C] next to the cached [A][B]... from `prompt`, then ask for [A'][B]: A' = C's tokens.
    std::vector<int32_t> other = iota_tokens(9, 500);  // blocks X, Y + 1
    const SeqId second = cache.create_sequence();
    REQUIRE(cache.append_slots(second, 9));
    cache.commit_tokens(second, other);
    std::vector<int32_t> mixed(other.begin(), other.begin() + 4);       // X (cached, first block)
    mixed.insert(mixed.end(), prompt.begin() + 4, prompt.begin() + 8);  // B (cached, but after A, not X)
    mixed.push_back(1);
    const SeqId third = cache.create_sequence();
    CHECK(cache.match_prefix(third, mixed) == 4);
  }

  SUBCASE("hits and queries are counted in blocks") {
    const SeqId second = cache.create_sequence();
    cache.match_prefix(second, prompt);
    const CacheStats stats = cache.stats();
    CHECK(stats.prefix_queries == 4);  // 2 for the first (missing) lookup, 2 for this one
    CHECK(stats.prefix_hits == 2);
    CHECK(stats.prefix_hit_tokens == 8);
  }

  SUBCASE("match_prefix needs an empty sequence") {
    CHECK_THROWS_AS(cache.match_prefix(first, prompt), std::logic_error);
  }
  CHECK(cache.check_invariants() == "");
}

TEST_CASE("prefix cache: equal blocks after different beginnings are different entries (the hash is chained)") {
  // Prompts [A, C] and [B, C]: their second blocks hold the same tokens but follow different first blocks, so
  // their K/V differ. Both must be registered and found again, each only after its own beginning.
  KvCacheManager cache(16, 4, /*prefix_caching=*/true);
  const std::vector<int32_t> a = {1, 2, 3, 4}, b = {5, 6, 7, 8}, c = {9, 10, 11, 12};
  auto prompt = [&](const std::vector<int32_t>& head, int last) {
    std::vector<int32_t> p = head;
    p.insert(p.end(), c.begin(), c.end());
    p.push_back(last);
    return p;
  };
  for (const auto* head : {&a, &b}) {
    const SeqId seq = cache.create_sequence();
    const std::vector<int32_t> tokens = prompt(*head, 0);
    REQUIRE(cache.append_slots(seq, static_cast<int>(tokens.size())));
    cache.commit_tokens(seq, tokens);
    cache.release(seq);
  }
  for (const auto* head : {&a, &b}) {
    const SeqId seq = cache.create_sequence();
    CHECK(cache.match_prefix(seq, prompt(*head, 77)) == 8);  // both blocks, for either beginning
    cache.release(seq);
  }
  // A beginning never seen matches nothing, even though its second block's tokens are known.
  const SeqId other = cache.create_sequence();
  CHECK(cache.match_prefix(other, prompt({13, 14, 15, 16}, 77)) == 0);
  CHECK(cache.check_invariants() == "");
}

TEST_CASE("prefix cache off: nothing is registered or matched") {
  KvCacheManager cache(8, 4, /*prefix_caching=*/false);
  const auto prompt = iota_tokens(9);
  const SeqId first = cache.create_sequence();
  REQUIRE(cache.append_slots(first, 9));
  cache.commit_tokens(first, prompt);
  CHECK(cache.committed_length(first) == 9);
  cache.release(first);
  CHECK(cache.stats().blocks_cached == 0);
  const SeqId second = cache.create_sequence();
  CHECK(cache.match_prefix(second, prompt) == 0);
  CHECK(cache.check_invariants() == "");
}

TEST_CASE("prefix cache eviction takes the least recently freed block, tail of a prompt first") {
  KvCacheManager cache(4, 2, /*prefix_caching=*/true);
  const std::vector<int32_t> old_prompt = {1, 2, 3, 4, 5};  // two full blocks + 1
  const SeqId a = cache.create_sequence();
  REQUIRE(cache.append_slots(a, 5));
  cache.commit_tokens(a, old_prompt);
  const int32_t head_block = cache.block_table(a)[0];
  cache.release(a);
  CHECK(cache.stats().blocks_cached == 2);
  CHECK(cache.free_blocks() == 4);

  // Three fresh blocks: two plain free ones, then one eviction, which must take the prompt's tail block.
  const SeqId b = cache.create_sequence();
  REQUIRE(cache.append_slots(b, 6));
  CHECK(cache.stats().blocks_cached == 1);
  CHECK(std::ranges::find(cache.block_table(b), head_block) == cache.block_table(b).end());
  cache.release(b);

  const SeqId c = cache.create_sequence();
  REQUIRE(cache.match_prefix(c, old_prompt) == 2);  // only the head block survived
  CHECK(cache.block_table(c)[0] == head_block);

  // Everything in use: the evicted entry must not be matchable and a full cache refuses more.
  REQUIRE(cache.append_slots(c, 5));  // 7 tokens -> 4 blocks
  CHECK(cache.free_blocks() == 0);
  const SeqId d = cache.create_sequence();
  CHECK(cache.match_prefix(d, std::vector<int32_t>{9, 9, 9}) == 0);
  CHECK_FALSE(cache.append_slots(d, 1).has_value());
  CHECK(cache.check_invariants() == "");
}

TEST_CASE("random operations (with truncation) keep every invariant, every sequence reads back its own tokens, nothing leaks") {
  // A simulated pool holds, at each slot, a hash of the token there and every token before it: like real K/V, a
  // slot's content depends on the whole prefix. CoW copies move whole blocks, as the backend does. After every
  // step, each sequence read through its block table must see exactly its own values: that checks slots,
  // sharing, copy-on-write and prefix reuse (including the chained block hash) together.
  for (const bool prefix_caching : {false, true}) {
    for (const int block_size : {1, 3, 16}) {
      CAPTURE(prefix_caching);
      CAPTURE(block_size);
      const int num_blocks = 64;
      KvCacheManager cache(num_blocks, block_size, prefix_caching);
      std::vector<int64_t> pool(static_cast<size_t>(num_blocks * block_size), -1);  // [num_blocks * block_size]
      std::map<SeqId, std::vector<int32_t>> truth;                                 // tokens each sequence holds
      std::mt19937 rng(1234u + static_cast<unsigned>(block_size) + (prefix_caching ? 99u : 0u));
      auto uniform = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
      // A few shared prompt heads so that the prefix cache has something to find, built from two block patterns so
      // that equal blocks follow different predecessors (what the chained hash must tell apart).
      std::vector<std::vector<int32_t>> heads;
      for (int h = 0; h < 4; ++h) {
        std::vector<int32_t> head;
        for (int b = uniform(1, 4); b > 0; --b) {
          const auto pattern = iota_tokens(block_size, uniform(0, 1) * 1000);
          head.insert(head.end(), pattern.begin(), pattern.end());
        }
        head.resize(head.size() + static_cast<size_t>(uniform(0, 5)), 7);
        heads.push_back(head);
      }

      // The value of each position of `tokens`: a rolling hash of the prefix.
      auto prefix_values = [](const std::vector<int32_t>& tokens) {
        std::vector<int64_t> values;
        int64_t h = 17;
        for (int32_t t : tokens) values.push_back(h = (h * 1000003 + t) % 2147483647);
        return values;
      };
      // Writes the last slots.size() values of `all_tokens` (the sequence after the append) and commits them.
      auto write = [&](SeqId seq, const std::vector<int32_t>& slots, const std::vector<int32_t>& all_tokens) {
        for (const BlockCopy& copy : cache.take_pending_copies())
          std::copy_n(pool.begin() + copy.src * block_size, block_size, pool.begin() + copy.dst * block_size);
        const auto values = prefix_values(all_tokens);
        const size_t first = all_tokens.size() - slots.size();
        for (size_t i = 0; i < slots.size(); ++i) pool[static_cast<size_t>(slots[i])] = values[first + i];
        cache.commit_tokens(seq, std::span<const int32_t>(all_tokens).subspan(first));
      };

      int appends_refused = 0, prefix_tokens_reused = 0;
      for (int step = 0; step < 3000; ++step) {
        const int action = uniform(0, 10);
        if (action <= 1 || truth.empty()) {  // a new request, maybe with a known head
          const SeqId seq = cache.create_sequence();
          std::vector<int32_t> prompt = heads[static_cast<size_t>(uniform(0, 3))];
          prompt.resize(static_cast<size_t>(uniform(1, static_cast<int>(prompt.size()))) + 2, 7);
          const int matched = cache.match_prefix(seq, prompt);
          REQUIRE(matched < static_cast<int>(prompt.size()));
          prefix_tokens_reused += matched;
          std::span<const int32_t> rest(prompt.begin() + matched, prompt.end());
          auto slots = cache.append_slots(seq, static_cast<int>(rest.size()));
          if (!slots) {
            ++appends_refused;
            cache.release(seq);
          } else {
            write(seq, *slots, prompt);
            truth[seq] = prompt;
          }
        } else if (action <= 5) {  // decode or a prompt chunk
          auto it = std::next(truth.begin(), uniform(0, static_cast<int>(truth.size()) - 1));
          const int n = action == 5 ? uniform(1, 3 * block_size) : 1;
          const bool fits = cache.can_append(it->first, n);
          auto slots = cache.append_slots(it->first, n);
          REQUIRE(fits == slots.has_value());
          if (!slots) {
            ++appends_refused;
            continue;
          }
          for (int i = 0; i < n; ++i) it->second.push_back(uniform(0, 50000));
          write(it->first, *slots, it->second);
        } else if (action <= 7) {  // parallel sample
          auto it = std::next(truth.begin(), uniform(0, static_cast<int>(truth.size()) - 1));
          truth[cache.fork(it->first)] = it->second;
        } else if (action <= 9) {  // finish or preempt
          auto it = std::next(truth.begin(), uniform(0, static_cast<int>(truth.size()) - 1));
          cache.release(it->first);
          truth.erase(it);
        } else {  // a chat rewinding part of its history
          auto it = std::next(truth.begin(), uniform(0, static_cast<int>(truth.size()) - 1));
          const int keep = uniform(0, static_cast<int>(it->second.size()));
          cache.truncate(it->first, keep);
          it->second.resize(static_cast<size_t>(keep));
        }
        REQUIRE(cache.check_invariants() == "");
        for (const auto& [seq, tokens] : truth) {
          REQUIRE(cache.context_length(seq) == static_cast<int>(tokens.size()));
          const auto values = prefix_values(tokens);
          for (int position = 0; position < static_cast<int>(tokens.size()); ++position)
            REQUIRE(pool[static_cast<size_t>(expected_slot(cache, seq, position))] == values[static_cast<size_t>(position)]);
        }
      }
      // The run must have exercised the interesting paths.
      CHECK(appends_refused > 0);
      if (block_size > 1) CHECK(cache.stats().cow_copies > 0);  // with 1-token blocks no block is ever partial
      CHECK(cache.stats().peak_blocks_used == num_blocks);
      if (prefix_caching && block_size > 1) CHECK(prefix_tokens_reused > 0);
      for (const auto& [seq, tokens] : truth) cache.release(seq);
      CHECK(cache.free_blocks() == num_blocks);
      CHECK(cache.stats().blocks_used == 0);
      CHECK(cache.check_invariants() == "");
    }
  }
}

// ------------------------------------------------------------------------------------------------ the pool

TEST_CASE("KvPool writes through the slot mapping, widens F16 exactly, and copies blocks on every layer") {
  const int row = 2 * 8;
  for (const KvDtype dtype : {KvDtype::F32, KvDtype::F16}) {
    CAPTURE(kv_dtype_name(dtype));
    const KvGeometry shape{3, 2, 8, 5, 4, dtype};  // 3 layers, 2 KV heads of 8, 5 blocks of 4
    KvPool pool(shape);
    CHECK(pool.size_bytes() == shape.block_bytes() * 5);
    CHECK(pool.size_bytes() == kv_row_bytes(dtype, 2 * 3 * 5 * 4 * row));

    std::mt19937 rng(7);
    std::normal_distribution<float> normal(0.0f, 2.0f);
    std::vector<float> k(static_cast<size_t>(3 * row)), v(k.size());  // [3 tokens, n_head_kv, head_dim]
    for (auto& x : k) x = normal(rng);
    for (auto& x : v) x = normal(rng);
    const std::vector<int32_t> slots = {17, 2, 8};
    pool.write(1, k.data(), v.data(), slots);

    auto stored = [&](float x) { return dtype == KvDtype::F32 ? x : fp16_to_f32(f32_to_fp16(x)); };
    std::vector<float> read(static_cast<size_t>(row));  // [n_head_kv, head_dim]
    for (size_t t = 0; t < slots.size(); ++t) {
      pool.read_k(1, slots[t], read.data());
      for (int i = 0; i < row; ++i) CHECK(read[static_cast<size_t>(i)] == stored(k[t * static_cast<size_t>(row) + static_cast<size_t>(i)]));
      pool.read_v(1, slots[t], read.data());
      for (int i = 0; i < row; ++i) CHECK(read[static_cast<size_t>(i)] == stored(v[t * static_cast<size_t>(row) + static_cast<size_t>(i)]));
      pool.read_k(0, slots[t], read.data());  // other layers untouched
      CHECK(read[0] == 0.0f);
    }

    // Slot 8 is in block 2: copy it to block 3 and find it at slot 12, on the layer that holds it.
    pool.write(2, k.data(), v.data(), slots);
    pool.apply_copies(std::vector<BlockCopy>{{2, 3}});
    for (const int layer : {1, 2}) {
      pool.read_v(layer, 12, read.data());
      for (int i = 0; i < row; ++i) CHECK(read[static_cast<size_t>(i)] == stored(v[2 * static_cast<size_t>(row) + static_cast<size_t>(i)]));
    }
    CHECK_THROWS_AS(pool.write(0, k.data(), v.data(), std::vector<int32_t>{20}), std::out_of_range);
    CHECK_THROWS_AS(pool.copy_block(0, 5), std::out_of_range);
  }
}

// Q8_0 / Q4_0 written by ggml's rules, decoded with the plain formulas: the reference a quantized pool must match.
float q8_0_element(const float* x /* [32] */, int j) {
  float amax = 0.0f;
  for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(x[i]));
  const float d = fp16_to_f32(f32_to_fp16(amax / 127.0f));
  const float inverse = amax != 0.0f ? 127.0f / amax : 0.0f;
  return static_cast<float>(std::nearbyint(x[j] * inverse)) * d;
}
float q4_0_element(const float* x /* [32] */, int j) {
  float amax = 0.0f, signed_max = 0.0f;
  for (int i = 0; i < 32; ++i) {
    if (std::fabs(x[i]) > amax) {
      amax = std::fabs(x[i]);
      signed_max = x[i];
    }
  }
  const float d = signed_max / -8.0f;
  const float inverse = d != 0.0f ? 1.0f / d : 0.0f;
  const int level = std::min(15, static_cast<int>(std::floor(x[j] * inverse + 8.5f)));
  return static_cast<float>(level - 8) * fp16_to_f32(f32_to_fp16(d));
}

TEST_CASE("a quantized KvPool stores each head's row as blocks of 32, decodes them exactly, and copies blocks") {
  for (const KvDtype dtype : {KvDtype::Q8_0, KvDtype::Q4_0}) {
    CAPTURE(kv_dtype_name(dtype));
    const int n_head_kv = 3, head_dim = 96, row = n_head_kv * head_dim;  // three blocks per head: odd on purpose
    const KvGeometry shape{2, n_head_kv, head_dim, 6, 5, dtype};       // 2 layers, 6 blocks of 5
    KvPool pool(shape);
    const size_t block_bytes = dtype == KvDtype::Q8_0 ? sizeof(BlockQ8_0) : sizeof(BlockQ4_0);
    CHECK(kv_row_bytes(dtype, head_dim) == 3 * block_bytes);
    CHECK(pool.size_bytes() == static_cast<size_t>(2 * 2 * 6 * 5 * n_head_kv * 3) * block_bytes);
    CHECK(pool.size_bytes() == shape.block_bytes() * 6);

    std::mt19937 rng(11);
    std::normal_distribution<float> normal(0.0f, 3.0f);
    std::vector<float> k(static_cast<size_t>(4 * row)), v(k.size());  // [4 tokens, n_head_kv, head_dim]
    for (auto& x : k) x = normal(rng);
    for (auto& x : v) x = normal(rng);
    k[5] = 0.0f;                                        // a zero among others
    std::fill(v.begin() + 32, v.begin() + 64, 0.0f);    // an all-zero block: scale 0, decodes to 0
    const std::vector<int32_t> slots = {29, 0, 7, 13};
    pool.write(1, k.data(), v.data(), slots);

    auto expected = [&](const std::vector<float>& x, size_t t, int i) {
      const float* block = x.data() + t * static_cast<size_t>(row) + static_cast<size_t>(i / 32 * 32);
      return dtype == KvDtype::Q8_0 ? q8_0_element(block, i % 32) : q4_0_element(block, i % 32);
    };
    std::vector<float> read(static_cast<size_t>(row));  // [n_head_kv, head_dim]
    double worst_k = 0;
    for (size_t t = 0; t < slots.size(); ++t) {
      pool.read_k(1, slots[t], read.data());
      for (int i = 0; i < row; ++i) {
        CHECK(read[static_cast<size_t>(i)] == expected(k, t, i));
        worst_k = std::max(worst_k, double(std::fabs(read[static_cast<size_t>(i)] - k[t * row + static_cast<size_t>(i)])));
      }
      pool.read_v(1, slots[t], read.data());
      for (int i = 0; i < row; ++i) CHECK(read[static_cast<size_t>(i)] == expected(v, t, i));
    }
    pool.read_v(1, slots[0], read.data());
    for (int i = 32; i < 64; ++i) CHECK(read[static_cast<size_t>(i)] == 0.0f);
    // The rounding is what the format allows: half a step of amax/127 (Q8_0), about one of amax/8 (Q4_0).
    CHECK(worst_k < (dtype == KvDtype::Q8_0 ? 0.1 : 2.5));

    // Slot 7 is block 1, offset 2: copy block 1 to block 4 (every layer) and find the same bytes at slot 22.
    pool.apply_copies(std::vector<BlockCopy>{{1, 4}});
    std::vector<float> copied(read.size());
    pool.read_k(1, 7, read.data());
    pool.read_k(1, 22, copied.data());
    CHECK(read == copied);
    pool.read_v(1, 7, read.data());
    pool.read_v(1, 22, copied.data());
    CHECK(read == copied);
  }
  // A head that is not a whole number of blocks cannot be stored.
  CHECK_THROWS_WITH_AS(KvPool(KvGeometry{1, 2, 48, 2, 4, KvDtype::Q8_0}), doctest::Contains("head_dim 48"), Error);
  CHECK_THROWS_WITH_AS(KvPool(KvGeometry{1, 2, 8, 2, 4, KvDtype::Q4_0}), doctest::Contains("head_dim 8"), Error);
}

TEST_CASE("the block budget helper and bad pool shapes") {
  const KvGeometry shape{30, 3, 64, 0, 16, KvDtype::F16};  // SmolLM2-135M
  const size_t per_block = shape.block_bytes();
  CHECK(per_block == 2u * 30 * 16 * 3 * 64 * 2);
  CHECK(kv_blocks_for_budget(per_block * 10 + per_block / 2, shape) == 10);
  CHECK(kv_blocks_for_budget(per_block - 1, shape) == 0);
  KvGeometry f32 = shape;
  f32.dtype = KvDtype::F32;
  CHECK(kv_blocks_for_budget(per_block * 10, f32) == 5);
  // Q8_0 is 34 bytes per 32 elements, Q4_0 18: 17/32 and 9/32 of F16's bytes, so that many more blocks fit.
  KvGeometry q8 = shape, q4 = shape;
  q8.dtype = KvDtype::Q8_0;
  q4.dtype = KvDtype::Q4_0;
  CHECK(q8.block_bytes() * 32 == per_block * 17);
  CHECK(q4.block_bytes() * 32 == per_block * 9);
  CHECK(kv_blocks_for_budget(per_block * 17, q8) == 32);
  CHECK(kv_blocks_for_budget(per_block * 9, q4) == 32);
  CHECK_THROWS_AS(KvPool(KvGeometry{0, 3, 64, 4, 16, KvDtype::F16}), Error);
  CHECK_THROWS_AS(KvPool(KvGeometry{30, 3, 64, 0, 16, KvDtype::F16}), Error);
}
