#pragma once
// Host-side planning of the CUDA attention launches: which CTA covers which query tokens, heads and key blocks.
// Plain C++ (C++17, no CUDA headers) so that the CPU tests check the plans in every build, CUDA or not; the
// kernels (flash_attention.cu, paged_attention.cu) only execute what these functions decide.
//
// Prefill (a sequence with more than one new token) runs the flash kernel: one CTA per (tile of query tokens,
// chunk of the KV group's query heads, KV head). Decode (one new token) runs the paged kernel: one CTA per
// (sequence, chunk of heads, KV head, split of the block table); a long context whose CTAs alone cannot fill the
// device is split across several CTAs (flash-decoding) and a merge kernel combines their partial results.
#include <algorithm>
#include <cstdint>
#include <vector>

namespace pagedllm::cuda {

// A sequence of the batch as the attention kernels see it (uploaded as is).
struct DeviceSeq {
  int32_t first_row;       // first query row in q / out
  int32_t n_new;           // query rows: the sequence's last n_new positions
  int32_t context_length;  // positions in the cache, the new ones included
  int32_t table_offset;    // its block table starts at block_tables[table_offset]
};

// One CTA of prefill attention: query tokens [token_begin, token_begin + tokens_per_tile) of a sequence (fewer at
// its end), for query heads [head_begin, head_begin + heads_per_tile) of the KV group (kv head = blockIdx.y).
struct FlashTile {
  int32_t seq;
  int32_t token_begin;
  int32_t head_begin;
  int32_t unused;
};

// One CTA of decode attention (kv head = blockIdx.y): the last new token of `seq`, query heads [head_begin,
// head_begin + heads_per_item) of the group, over logical blocks [block_begin, block_end). partial < 0: write the
// output; else write unnormalised partial number `partial` for the merge.
struct DecodeWork {
  int32_t seq;
  int32_t block_begin;
  int32_t block_end;
  int32_t partial;
  int32_t head_begin;
  int32_t unused;
};

// Merges partials [partial_first, partial_first + n_splits) of a split decode into its output row (all heads).
struct DecodeMerge {
  int32_t seq;
  int32_t partial_first;
  int32_t n_splits;
  int32_t unused;
};

// ---------------------------------------------------------------- prefill

// The tensor-core kernel covers these head dims; any other (up to kFlashGenericMaxHeadDim) runs the generic one.
inline bool flash_uses_mma(int head_dim) { return head_dim == 64 || head_dim == 128; }
constexpr int kFlashMmaRows = 64;       // 4 warps x 16 query rows (one m16 MMA tile each)
constexpr int kFlashGenericRows = 16;   // 4 warps x 4 rows
constexpr int kFlashGenericMaxHeadDim = 256;
inline int flash_kernel_rows(int head_dim) { return flash_uses_mma(head_dim) ? kFlashMmaRows : kFlashGenericRows; }

// Rows of a tile are (token, head) pairs, token-major, so that every query head of the group reads each K/V tile
// the CTA loads: all of the group when it fits, in chunks when the group is larger than the tile.
struct FlashTileShape {
  int heads_per_tile;
  int tokens_per_tile;
};
inline FlashTileShape flash_tile_shape(int group, int max_rows) {
  const int heads = std::max(1, std::min(group, max_rows));
  return FlashTileShape{heads, std::max(1, max_rows / heads)};
}

// Tiles for every sequence with more than one new token, the most expensive first (causal tiles late in a long
// prompt attend to the most keys; starting them first keeps them from finishing last).
inline void plan_flash_tiles(const std::vector<DeviceSeq>& seqs, int group, FlashTileShape shape,
                             std::vector<FlashTile>& tiles) {
  tiles.clear();
  struct Costed {
    FlashTile tile;
    int64_t cost;
  };
  std::vector<Costed> costed;
  for (size_t i = 0; i < seqs.size(); ++i) {
    const DeviceSeq& s = seqs[i];
    if (s.n_new < 2) continue;
    const int first_new_position = s.context_length - s.n_new;
    for (int token_begin = 0; token_begin < s.n_new; token_begin += shape.tokens_per_tile) {
      const int token_end = std::min(s.n_new, token_begin + shape.tokens_per_tile);
      for (int head_begin = 0; head_begin < group; head_begin += shape.heads_per_tile) {
        const int heads = std::min(shape.heads_per_tile, group - head_begin);
        const int64_t cost = static_cast<int64_t>(token_end - token_begin) * heads * (first_new_position + token_end);
        costed.push_back(Costed{FlashTile{static_cast<int32_t>(i), token_begin, head_begin, 0}, cost});
      }
    }
  }
  std::stable_sort(costed.begin(), costed.end(), [](const Costed& a, const Costed& b) { return a.cost > b.cost; });
  tiles.reserve(costed.size());
  for (const Costed& c : costed) tiles.push_back(c.tile);
}

// ---------------------------------------------------------------- decode

constexpr int kDecodeMaxHeadsPerItem = 16;
constexpr int kDecodeMaxHeadDim = 256;

struct DecodePlanParams {
  int block_size = 16;
  int n_head_kv = 1;
  int group = 1;                 // query heads per KV head
  int target_ctas = 264;         // CTAs that keep the device busy (2 per multiprocessor)
  int min_keys_per_split = 256;  // a split covers at least this many positions: the merge stays cheap
  int max_splits = 64;
};

struct DecodePlan {
  std::vector<DecodeWork> work;
  std::vector<DecodeMerge> merges;
  int n_partials = 0;
  int heads_per_item = 1;
};

// Splits of one decode: enough CTAs to fill the device when the batch alone does not, never a split shorter than
// min_keys_per_split positions (nor than one block), at most max_splits.
inline int decode_splits(int context_length, int n_blocks, int64_t base_ctas, const DecodePlanParams& p) {
  const int64_t wanted = std::max<int64_t>(1, (p.target_ctas + base_ctas - 1) / std::max<int64_t>(1, base_ctas));
  const int by_length = std::max(1, context_length / std::max(1, p.min_keys_per_split));
  return static_cast<int>(std::max<int64_t>(
      1, std::min<int64_t>({wanted, static_cast<int64_t>(by_length), static_cast<int64_t>(n_blocks),
                            static_cast<int64_t>(p.max_splits)})));
}

// Work for every sequence with exactly one new token. Split ranges are contiguous, cover the table exactly and
// differ in length by at most one block.
inline void plan_decode(const std::vector<DeviceSeq>& seqs, const DecodePlanParams& p, DecodePlan& plan) {
  plan.work.clear();
  plan.merges.clear();
  plan.n_partials = 0;
  plan.heads_per_item = std::max(1, std::min(p.group, kDecodeMaxHeadsPerItem));
  const int head_chunks = (p.group + plan.heads_per_item - 1) / plan.heads_per_item;
  int64_t n_decode = 0;
  for (const DeviceSeq& s : seqs) n_decode += s.n_new == 1 ? 1 : 0;
  const int64_t base_ctas = n_decode * p.n_head_kv * head_chunks;
  for (size_t i = 0; i < seqs.size(); ++i) {
    const DeviceSeq& s = seqs[i];
    if (s.n_new != 1) continue;
    const int seq = static_cast<int>(i);
    const int n_blocks = (s.context_length + p.block_size - 1) / p.block_size;
    const int splits = decode_splits(s.context_length, n_blocks, base_ctas, p);
    if (splits == 1) {
      for (int head_begin = 0; head_begin < p.group; head_begin += plan.heads_per_item)
        plan.work.push_back(DecodeWork{seq, 0, n_blocks, -1, head_begin, 0});
      continue;
    }
    plan.merges.push_back(DecodeMerge{seq, plan.n_partials, splits, 0});
    for (int split = 0; split < splits; ++split) {
      const int begin = static_cast<int>(static_cast<int64_t>(n_blocks) * split / splits);
      const int end = static_cast<int>(static_cast<int64_t>(n_blocks) * (split + 1) / splits);
      for (int head_begin = 0; head_begin < p.group; head_begin += plan.heads_per_item)
        plan.work.push_back(DecodeWork{seq, begin, end, plan.n_partials + split, head_begin, 0});
    }
    plan.n_partials += splits;
  }
  // Longest ranges first, for the same reason as the prefill tiles.
  std::stable_sort(plan.work.begin(), plan.work.end(), [](const DecodeWork& a, const DecodeWork& b) {
    return a.block_end - a.block_begin > b.block_end - b.block_begin;
  });
}

// The decode kernel instantiations: heads per CTA rounded up to 4, 8 or 16, and head_dim dims per lane rounded up
// to 1, 2, 4 or 8 (head_dim <= 256).
inline int decode_heads_bound(int heads_per_item) { return heads_per_item <= 4 ? 4 : heads_per_item <= 8 ? 8 : 16; }
inline int decode_dims_per_lane(int head_dim) {
  return head_dim <= 32 ? 1 : head_dim <= 64 ? 2 : head_dim <= 128 ? 4 : 8;
}

}  // namespace pagedllm::cuda
