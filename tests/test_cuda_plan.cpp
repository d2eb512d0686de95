// The host-side planning of the CUDA attention launches (kernels/cuda/attention_plan.h), checked on the CPU in
// every build: prefill tiles cover every (query token, query head) of every prefill sequence exactly once and
// never exceed a kernel's rows; decode work covers every decode sequence's block table exactly once per head,
// with splits that are contiguous, ordered, merged in order, and used only when the batch cannot fill the device.
#include <doctest/doctest.h>

#include <map>
#include <string>
#include <random>
#include <set>
#include <tuple>
#include <vector>

#include "common/error.h"
#include "engine/devices.h"
#include "kernels/cuda/attention_plan.h"
#include "kernels/cuda/device_info.h"

using namespace pagedllm::cuda;

namespace {

std::vector<DeviceSeq> random_batch(std::mt19937& rng, int n_seqs, int max_context, int table_stride) {
  std::vector<DeviceSeq> seqs;
  int row = 0;
  for (int i = 0; i < n_seqs; ++i) {
    const int context = std::uniform_int_distribution<int>(1, max_context)(rng);
    int n_new = 1;
    switch (std::uniform_int_distribution<int>(0, 3)(rng)) {
      case 0: n_new = context; break;                                                      // whole prompt
      case 1: n_new = std::uniform_int_distribution<int>(1, context)(rng); break;          // cached prefix
      case 2: n_new = 0; break;                                                            // idle
      default: n_new = 1; break;                                                           // decode
    }
    seqs.push_back(DeviceSeq{row, n_new, context, i * table_stride});
    row += n_new;
  }
  return seqs;
}

}  // namespace

TEST_CASE("flash tile shapes fit the kernel and keep whole GQA groups together when they fit") {
  for (int max_rows : {kFlashMmaRows, kFlashGenericRows}) {
    for (int group = 1; group <= 96; ++group) {
      const FlashTileShape shape = flash_tile_shape(group, max_rows);
      CHECK(shape.heads_per_tile >= 1);
      CHECK(shape.tokens_per_tile >= 1);
      CHECK(shape.heads_per_tile * shape.tokens_per_tile <= max_rows);
      if (group <= max_rows) {
        CHECK(shape.heads_per_tile == group);
        CHECK(shape.tokens_per_tile == max_rows / group);
      } else {
        CHECK(shape.heads_per_tile == max_rows);
      }
    }
  }
  CHECK(flash_uses_mma(64));
  CHECK(flash_uses_mma(128));
  CHECK_FALSE(flash_uses_mma(8));
  CHECK_FALSE(flash_uses_mma(96));
  CHECK(flash_kernel_rows(128) == kFlashMmaRows);
  CHECK(flash_kernel_rows(8) == kFlashGenericRows);
}

TEST_CASE("flash tiles cover every prefill row exactly once, most expensive first") {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 200; ++trial) {
    const int group = std::uniform_int_distribution<int>(1, 20)(rng);
    const int max_rows = trial % 2 == 0 ? kFlashMmaRows : kFlashGenericRows;
    const FlashTileShape shape = flash_tile_shape(group, max_rows);
    const std::vector<DeviceSeq> seqs = random_batch(rng, std::uniform_int_distribution<int>(1, 6)(rng), 300, 64);
    std::vector<FlashTile> tiles;
    plan_flash_tiles(seqs, group, shape, tiles);

    std::map<std::tuple<int, int, int>, int> covered;  // (seq, token, head) -> times
    int64_t previous_cost = INT64_MAX;
    for (const FlashTile& t : tiles) {
      REQUIRE(t.seq >= 0);
      REQUIRE(t.seq < static_cast<int>(seqs.size()));
      const DeviceSeq& s = seqs[static_cast<size_t>(t.seq)];
      CHECK(s.n_new >= 2);  // decode rows belong to the paged kernel
      CHECK(t.token_begin % shape.tokens_per_tile == 0);
      CHECK(t.head_begin % shape.heads_per_tile == 0);
      const int token_end = std::min(s.n_new, t.token_begin + shape.tokens_per_tile);
      const int heads = std::min(shape.heads_per_tile, group - t.head_begin);
      CHECK(heads >= 1);
      const int64_t cost = static_cast<int64_t>(token_end - t.token_begin) * heads *
                           (s.context_length - s.n_new + token_end);
      CHECK(cost <= previous_cost);
      previous_cost = cost;
      for (int token = t.token_begin; token < token_end; ++token)
        for (int head = t.head_begin; head < t.head_begin + heads; ++head) ++covered[{t.seq, token, head}];
    }
    for (size_t i = 0; i < seqs.size(); ++i) {
      if (seqs[i].n_new < 2) continue;
      for (int token = 0; token < seqs[i].n_new; ++token) {
        for (int head = 0; head < group; ++head) {
          const int times = covered[std::make_tuple(static_cast<int>(i), token, head)];
          CHECK_MESSAGE(times == 1, "seq " << i << " token " << token << " head " << head);
        }
      }
    }
    int64_t expected_rows = 0;
    for (const DeviceSeq& s : seqs) expected_rows += s.n_new >= 2 ? static_cast<int64_t>(s.n_new) * group : 0;
    CHECK(static_cast<int64_t>(covered.size()) == expected_rows);
  }
}

TEST_CASE("decode splits: none for short contexts or a full device, more for long contexts on an idle one") {
  DecodePlanParams p;
  p.block_size = 16;
  p.target_ctas = 264;
  p.min_keys_per_split = 256;
  p.max_splits = 64;
  // One sequence, 8 KV heads: 8 CTAs cannot fill 264, so a 4k context splits into 16 (4096 / 256).
  CHECK(decode_splits(4096, 256, 8, p) == 16);
  // Short context: never shorter than min_keys_per_split.
  CHECK(decode_splits(300, 19, 8, p) == 1);
  CHECK(decode_splits(511, 32, 8, p) == 1);
  CHECK(decode_splits(512, 32, 8, p) == 2);
  // A batch that already fills the device does not split.
  CHECK(decode_splits(16384, 1024, 264, p) == 1);
  CHECK(decode_splits(16384, 1024, 300, p) == 1);
  // Capped by the wanted CTAs, by the blocks, and by max_splits.
  CHECK(decode_splits(16384, 1024, 132, p) == 2);
  CHECK(decode_splits(1 << 20, 65536, 1, p) == 64);
  p.min_keys_per_split = 1;
  CHECK(decode_splits(40, 3, 1, p) == 3);  // not more splits than blocks
}

TEST_CASE("decode work covers every decode sequence's blocks once per head chunk, splits merge in order") {
  std::mt19937 rng(11);
  for (int trial = 0; trial < 300; ++trial) {
    DecodePlanParams p;
    p.block_size = trial % 3 == 0 ? 16 : trial % 3 == 1 ? 32 : 7;
    p.n_head_kv = std::uniform_int_distribution<int>(1, 8)(rng);
    p.group = std::uniform_int_distribution<int>(1, 40)(rng);
    p.target_ctas = std::uniform_int_distribution<int>(1, 300)(rng);
    p.min_keys_per_split = std::uniform_int_distribution<int>(1, 512)(rng);
    p.max_splits = std::uniform_int_distribution<int>(1, 64)(rng);
    const std::vector<DeviceSeq> seqs = random_batch(rng, std::uniform_int_distribution<int>(1, 8)(rng), 5000, 512);
    DecodePlan plan;
    plan_decode(seqs, p, plan);

    CHECK(plan.heads_per_item >= 1);
    CHECK(plan.heads_per_item <= kDecodeMaxHeadsPerItem);
    CHECK(plan.heads_per_item == std::min(p.group, kDecodeMaxHeadsPerItem));
    std::map<std::pair<int, int>, std::vector<std::pair<int, int>>> ranges;  // (seq, head_begin) -> ranges
    std::map<int, std::pair<int, int>> partial_owner;                          // partial -> (seq, block_begin)
    std::set<std::pair<int, int>> partial_heads;                               // (partial, head_begin)
    int previous_length = INT32_MAX;
    for (const DecodeWork& w : plan.work) {
      REQUIRE(w.seq >= 0);
      REQUIRE(w.seq < static_cast<int>(seqs.size()));
      CHECK(seqs[static_cast<size_t>(w.seq)].n_new == 1);
      CHECK(w.head_begin % plan.heads_per_item == 0);
      CHECK(w.head_begin < p.group);
      CHECK(w.block_begin < w.block_end);
      CHECK(w.block_end - w.block_begin <= previous_length);  // longest first
      previous_length = w.block_end - w.block_begin;
      ranges[{w.seq, w.head_begin}].emplace_back(w.block_begin, w.block_end);
      if (w.partial >= 0) {
        CHECK(w.partial < plan.n_partials);
        auto [it, inserted] = partial_owner.emplace(w.partial, std::make_pair(w.seq, w.block_begin));
        if (!inserted) CHECK(it->second == std::make_pair(w.seq, w.block_begin));  // same split for every head chunk
        CHECK(partial_heads.insert({w.partial, w.head_begin}).second);
      }
    }
    int64_t base = 0;
    for (const DeviceSeq& s : seqs) base += s.n_new == 1 ? 1 : 0;
    base *= static_cast<int64_t>(p.n_head_kv) * ((p.group + plan.heads_per_item - 1) / plan.heads_per_item);
    for (size_t i = 0; i < seqs.size(); ++i) {
      const DeviceSeq& s = seqs[i];
      if (s.n_new != 1) continue;
      const int n_blocks = (s.context_length + p.block_size - 1) / p.block_size;
      const int splits = decode_splits(s.context_length, n_blocks, base, p);
      for (int head_begin = 0; head_begin < p.group; head_begin += plan.heads_per_item) {
        auto found = ranges.find({static_cast<int>(i), head_begin});
        REQUIRE(found != ranges.end());
        std::vector<std::pair<int, int>> r = found->second;
        std::sort(r.begin(), r.end());
        CHECK(static_cast<int>(r.size()) == splits);
        int expected_begin = 0;
        for (const auto& [begin, end] : r) {
          CHECK(begin == expected_begin);
          // Balanced: lengths differ by at most one block.
          CHECK(end - begin >= n_blocks / splits);
          CHECK(end - begin <= (n_blocks + splits - 1) / splits);
          expected_begin = end;
        }
        CHECK(expected_begin == n_blocks);
      }
    }
    // Every split decode has one merge whose partials are consecutive and in block order.
    int merged_partials = 0;
    for (const DecodeMerge& m : plan.merges) {
      CHECK(m.n_splits >= 2);
      int previous_begin = -1;
      for (int split = 0; split < m.n_splits; ++split) {
        auto owner = partial_owner.find(m.partial_first + split);
        REQUIRE(owner != partial_owner.end());
        CHECK(owner->second.first == m.seq);
        CHECK(owner->second.second > previous_begin);
        previous_begin = owner->second.second;
      }
      merged_partials += m.n_splits;
    }
    CHECK(merged_partials == plan.n_partials);
  }
}

TEST_CASE("decode kernel bounds round up to an instantiated size") {
  for (int heads = 1; heads <= kDecodeMaxHeadsPerItem; ++heads) {
    const int bound = decode_heads_bound(heads);
    CHECK(bound >= heads);
    CHECK((bound == 4 || bound == 8 || bound == 16));
  }
  for (int head_dim = 1; head_dim <= kDecodeMaxHeadDim; ++head_dim) {
    const int dims = decode_dims_per_lane(head_dim);
    CHECK(32 * dims >= head_dim);
    CHECK((dims == 1 || dims == 2 || dims == 4 || dims == 8));
  }
}

TEST_CASE("--device: cpu always; cuda only with a device (else a clear error); auto picks cuda when present") {
  CHECK(pagedllm::resolve_device("cpu") == pagedllm::DeviceKind::Cpu);
  CHECK_THROWS_WITH_AS(pagedllm::resolve_device("gpu"), doctest::Contains("--device 'gpu'"), pagedllm::Error);
  std::string why;
  const bool present = !pagedllm::query_cuda_devices(why).empty();
  CHECK(pagedllm::cuda_device_available() == present);
  if (present) {
    CHECK(pagedllm::resolve_device("cuda") == pagedllm::DeviceKind::Cuda);
    CHECK(pagedllm::resolve_device("auto") == pagedllm::DeviceKind::Cuda);
  } else {
    CHECK_THROWS_WITH_AS(pagedllm::resolve_device("cuda"), doctest::Contains("no CUDA device found"), pagedllm::Error);
    CHECK(pagedllm::resolve_device("auto") == pagedllm::DeviceKind::Cpu);
    CHECK_FALSE(why.empty());
  }
}
