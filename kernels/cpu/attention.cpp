// The tiled paged-attention kernel (see attention.h for the contract).
//
// Work is cut into items, each one KV head of one sequence with a tile of its query rows and a range of its
// blocks. An item's rows are every (token, query head) pair of the tile whose query head reads that KV head, so
// one pass over the blocks serves the whole GQA group. Items go to threads dynamically, largest first, because
// causal prefill tiles differ in cost. A decode item costing more than a fair share of the call is split into
// block ranges (flash-decoding); the splits leave unnormalised partial results that a second pass merges with
// their max/sum.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <vector>

#include "common/thread_pool.h"
#include "kernels/common/online_softmax.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/attention_checks.h"
#include "kernels/cpu/attention_simd.h"
#include "kernels/cpu/f16_rows.h"
#include "kernels/cpu/quant_rows.h"

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#endif

namespace pagedllm {

namespace {

// Rows (token x query head pairs) a prefill tile aims for: enough to reuse each loaded K/V block many times,
// few enough that the accumulators [rows, head_dim] stay in L1/L2.
constexpr int kPrefillTileRows = 32;
// A decode split covers at least this many positions, so the merge stays cheap next to the work it divides.
constexpr int kMinSplitPositions = 256;

struct WorkItem {
  int32_t seq;          // index into args.seqs
  int32_t kv_head;
  int32_t token_begin;  // the tile's new tokens, [token_begin, token_end) counted within the sequence's n_new
  int32_t token_end;
  int32_t block_begin;  // logical blocks [block_begin, block_end) to visit
  int32_t block_end;
  int32_t partial;      // -1: write the output; else index of this split's partial result
  int64_t cost;         // rows x positions, for ordering
};

// A split decode (sequence, KV head): its partials are partial_first .. partial_first + n_splits - 1.
struct MergeGroup {
  int32_t seq;
  int32_t kv_head;
  int32_t partial_first;
  int32_t n_splits;
};

// Per-thread buffers, grown to the largest shape seen and then reused: no allocation in steady state.
struct Scratch {
  std::vector<float> k_tile;        // [block_size, head_dim] a block's K rows of one KV head, as f32
  std::vector<float> v_tile;        // [block_size, head_dim]
  std::vector<float> scores;        // [block_size] one row's scores for the current block
  std::vector<float> block_sum;     // [head_dim] one row's probability-weighted V over the current block
  std::vector<float> accumulators;  // [rows, head_dim] unnormalised outputs
  std::vector<SoftmaxState> states; // [rows]
};

class TiledAttention {
 public:
  explicit TiledAttention(const AttentionArgs& args)
      : a_(args),
        group_(args.n_head / args.n_head_kv),
        head_dim_(args.head_dim),
        slot_stride_(static_cast<size_t>(args.n_head_kv) * static_cast<size_t>(args.head_dim)),
        row_bytes_(kv_row_bytes(args.dtype, args.head_dim)),
        slot_bytes_(static_cast<size_t>(args.n_head_kv) * row_bytes_) {}

  // Runs one item with this thread's scratch; partials: [n_partials, group, head_dim + 2].
  void run(const WorkItem& item, Scratch& scratch, float* partials) const {
    const SeqAttention& s = a_.seqs[static_cast<size_t>(item.seq)];
    const int n_tokens = item.token_end - item.token_begin;
    const int rows = n_tokens * group_;
    const size_t hd = static_cast<size_t>(head_dim_);
    const size_t bs = static_cast<size_t>(a_.block_size);
    grow(scratch.k_tile, bs * hd);
    grow(scratch.v_tile, bs * hd);
    grow(scratch.scores, bs);
    grow(scratch.block_sum, hd);
    grow(scratch.accumulators, static_cast<size_t>(rows) * hd);
    if (scratch.states.size() < static_cast<size_t>(rows)) scratch.states.resize(static_cast<size_t>(rows));
    float* acc = scratch.accumulators.data();  // [rows, head_dim], row = token_in_tile * group + head_in_group
    std::fill(acc, acc + static_cast<size_t>(rows) * hd, 0.0f);
    SoftmaxState* states = scratch.states.data();  // [rows]
    for (int r = 0; r < rows; ++r) states[r] = softmax_state_empty();

    const int first_new_position = s.context_length - s.n_new;
    for (int block = item.block_begin; block < item.block_end; ++block) {
      const int block_start = block * a_.block_size;
      const int n_keys = std::min(a_.block_size, s.context_length - block_start);
      const float* k_rows;  // [n_keys, k_stride]
      const float* v_rows;
      size_t k_stride;
      load_block(s.block_table[block], item.kv_head, n_keys, scratch, k_rows, v_rows, k_stride);

      for (int t = 0; t < n_tokens; ++t) {
        const int position = first_new_position + item.token_begin + t;
        // Keys of this block at positions <= the token's own and, with a sliding window, after position - window:
        // the block's keys [oldest, visible).
        const int visible = std::min(n_keys, position - block_start + 1);
        const int oldest = a_.window > 0 ? std::max(0, position - a_.window + 1 - block_start) : 0;
        if (visible - oldest <= 0) continue;
        const size_t skipped = static_cast<size_t>(oldest) * k_stride;
        for (int g = 0; g < group_; ++g) {
          const int row = t * group_ + g;
          const int head = item.kv_head * group_ + g;
          const float* q = a_.q + (static_cast<size_t>(s.first_row) + static_cast<size_t>(item.token_begin + t)) *
                                      static_cast<size_t>(a_.n_head) * hd +
                           static_cast<size_t>(head) * hd;  // [head_dim]
          float* scores = scratch.scores.data();         // [visible - oldest]
          const int n_seen = visible - oldest;
          const float tile_max = attention_simd::score_keys(q, k_rows + skipped, k_stride, n_seen, head_dim_,
                                                            a_.scale, scores);
          SoftmaxState& state = states[row];
          const float factor = softmax_rescale(state, tile_max);
          // The block's contribution is summed on its own and then added: thousands of keys then make a chain of
          // n / block_size additions into the accumulator instead of n (a 4k prefill's error against the oracle
          // drops from ~5e-6 to ~1e-6 relative).
          state.sum += attention_simd::exponentiate(scores, n_seen, state.max);
          float* block_sum = scratch.block_sum.data();  // [head_dim]
          attention_simd::weighted_sum(scores, v_rows + skipped, k_stride, n_seen, head_dim_, block_sum);
          float* acc_row = acc + static_cast<size_t>(row) * hd;
          for (int d = 0; d < head_dim_; ++d) acc_row[d] = acc_row[d] * factor + block_sum[d];
        }
      }
    }

    if (item.partial >= 0) {
      // [group, head_dim + 2]: the unnormalised output, then max and sum.
      float* partial = partials + static_cast<size_t>(item.partial) * static_cast<size_t>(group_) * (hd + 2);
      for (int g = 0; g < group_; ++g) {
        float* destination = partial + static_cast<size_t>(g) * (hd + 2);
        std::memcpy(destination, acc + static_cast<size_t>(g) * hd, hd * sizeof(float));
        destination[hd] = states[g].max;
        destination[hd + 1] = states[g].sum;
      }
      return;
    }
    for (int t = 0; t < n_tokens; ++t) {
      for (int g = 0; g < group_; ++g) {
        const int row = t * group_ + g;
        const int head = item.kv_head * group_ + g;
        float* out = a_.out + (static_cast<size_t>(s.first_row) + static_cast<size_t>(item.token_begin + t)) *
                                  static_cast<size_t>(a_.n_head) * hd +
                     static_cast<size_t>(head) * hd;  // [head_dim]
        const float normalizer = softmax_normalizer(states[row]);
        const float* acc_row = acc + static_cast<size_t>(row) * hd;
        for (size_t d = 0; d < hd; ++d) out[d] = acc_row[d] * normalizer;
      }
    }
  }

  // Folds a split decode's partials into its output rows (one token, `group` heads).
  void merge(const MergeGroup& m, const float* partials) const {
    const SeqAttention& s = a_.seqs[static_cast<size_t>(m.seq)];
    const size_t hd = static_cast<size_t>(head_dim_);
    const size_t token_row = static_cast<size_t>(s.first_row) + static_cast<size_t>(s.n_new - 1);
    for (int g = 0; g < group_; ++g) {
      const int head = m.kv_head * group_ + g;
      float* out = a_.out + token_row * static_cast<size_t>(a_.n_head) * hd + static_cast<size_t>(head) * hd;
      std::fill(out, out + hd, 0.0f);
      SoftmaxState state = softmax_state_empty();
      for (int split = 0; split < m.n_splits; ++split) {
        const float* partial = partials +
                               (static_cast<size_t>(m.partial_first + split) * static_cast<size_t>(group_) +
                                static_cast<size_t>(g)) * (hd + 2);
        const SoftmaxMerge factors = softmax_merge(state, SoftmaxState{partial[hd], partial[hd + 1]});
        for (size_t d = 0; d < hd; ++d) out[d] = out[d] * factors.scale_a + partial[d] * factors.scale_b;
      }
      const float normalizer = softmax_normalizer(state);
      for (size_t d = 0; d < hd; ++d) out[d] *= normalizer;
    }
  }

 private:
  static void grow(std::vector<float>& buffer, size_t size) {
    if (buffer.size() < size) buffer.resize(size);
  }

  // Points k_rows / v_rows at the block's rows for one KV head: straight into an F32 pool (rows strided by the
  // slot), or into the scratch tiles after widening F16 or dequantizing Q8_0 / Q4_0. A tile is one cache block of
  // one head (block_size x head_dim f32, a few KiB), so the widened rows stay in L1 for every query row that reads
  // them, and the pool is read in its stored width: a quantized cache moves a quarter or an eighth of F32's bytes.
  void load_block(int32_t physical_block, int kv_head, int n_keys, Scratch& scratch, const float*& k_rows,
                  const float*& v_rows, size_t& stride) const {
    const size_t first_byte = static_cast<size_t>(physical_block) * static_cast<size_t>(a_.block_size) * slot_bytes_ +
                              static_cast<size_t>(kv_head) * row_bytes_;
    const auto* k_bytes = static_cast<const uint8_t*>(a_.k_pool) + first_byte;  // key j's row at j * slot_bytes_
    const auto* v_bytes = static_cast<const uint8_t*>(a_.v_pool) + first_byte;
    if (a_.dtype == KvDtype::F32) {
      k_rows = reinterpret_cast<const float*>(k_bytes);
      v_rows = reinterpret_cast<const float*>(v_bytes);
      stride = slot_stride_;
      return;
    }
    const size_t hd = static_cast<size_t>(head_dim_);
    float* k_tile = scratch.k_tile.data();  // [n_keys, head_dim]
    float* v_tile = scratch.v_tile.data();
    for (int j = 0; j < n_keys; ++j) {
      const uint8_t* k_row = k_bytes + static_cast<size_t>(j) * slot_bytes_;
      const uint8_t* v_row = v_bytes + static_cast<size_t>(j) * slot_bytes_;
      float* k_out = k_tile + static_cast<size_t>(j) * hd;
      float* v_out = v_tile + static_cast<size_t>(j) * hd;
      switch (a_.dtype) {
        case KvDtype::F16:
          f16_row_to_f32(reinterpret_cast<const uint16_t*>(k_row), k_out, head_dim_);
          f16_row_to_f32(reinterpret_cast<const uint16_t*>(v_row), v_out, head_dim_);
          break;
        case KvDtype::Q8_0:
          q8_0_row_to_f32(reinterpret_cast<const BlockQ8_0*>(k_row), k_out, head_dim_);
          q8_0_row_to_f32(reinterpret_cast<const BlockQ8_0*>(v_row), v_out, head_dim_);
          break;
        case KvDtype::Q4_0:
          q4_0_row_to_f32(reinterpret_cast<const BlockQ4_0*>(k_row), k_out, head_dim_);
          q4_0_row_to_f32(reinterpret_cast<const BlockQ4_0*>(v_row), v_out, head_dim_);
          break;
        case KvDtype::F32:
          break;
      }
    }
    k_rows = k_tile;
    v_rows = v_tile;
    stride = hd;
  }

  const AttentionArgs& a_;
  const int group_;
  const int head_dim_;
  const size_t slot_stride_;  // elements per slot: n_head_kv * head_dim
  const size_t row_bytes_;    // bytes of one head's row in the pool's type
  const size_t slot_bytes_;   // bytes per slot: n_head_kv * row_bytes_
};

// Builds the items (and split bookkeeping) for one call into the reused vectors.
void plan(const AttentionArgs& a, int n_threads, std::vector<WorkItem>& items, std::vector<MergeGroup>& merges,
          int32_t& n_partials) {
  items.clear();
  merges.clear();
  n_partials = 0;
  const int group = a.n_head / a.n_head_kv;
  const int tile_tokens = std::max(1, kPrefillTileRows / group);
  auto blocks_through = [&](int position) { return position / a.block_size + 1; };  // blocks covering 0..position
  // The first block holding a key that the row at `position` sees: with a sliding window the blocks before it are
  // never loaded (the cache may already have given them back).
  auto first_block_seen = [&](int position) {
    return a.window > 0 ? std::max(0, position - a.window + 1) / a.block_size : 0;
  };

  // Flash-decoding: a decode item costing more than a fair share of the call (total / (2 * threads)) is split
  // into pieces of about that share, so one long context cannot keep a single thread busy while the others
  // idle. Pieces stay at least kMinSplitPositions long so the merge remains cheap next to the work it divides.
  int64_t total_cost = 0;  // positions x rows over all items, before splitting
  for (const SeqAttention& s : a.seqs) {
    for (int token_begin = 0; token_begin < s.n_new; token_begin += tile_tokens) {
      const int token_end = std::min(s.n_new, token_begin + tile_tokens);
      total_cost += static_cast<int64_t>(token_end - token_begin) * group *
                    (s.context_length - s.n_new + token_end) * a.n_head_kv;
    }
  }
  const int64_t fair_share = std::max<int64_t>(static_cast<int64_t>(kMinSplitPositions) * group,
                                               total_cost / (2 * static_cast<int64_t>(n_threads)));

  for (size_t index = 0; index < a.seqs.size(); ++index) {
    const SeqAttention& s = a.seqs[index];
    if (s.n_new == 0) continue;
    const int seq = static_cast<int>(index);
    const int first_new_position = s.context_length - s.n_new;
    if (s.n_new == 1) {
      const int n_blocks = blocks_through(s.context_length - 1);
      const int first_block = first_block_seen(s.context_length - 1);
      const int64_t cost = static_cast<int64_t>(group) * (s.context_length - first_block * a.block_size);
      const int64_t wanted = n_threads == 1 ? 1 : (cost + fair_share - 1) / fair_share;
      const int splits = static_cast<int>(std::clamp<int64_t>(wanted, 1, n_blocks - first_block));
      for (int kv_head = 0; kv_head < a.n_head_kv; ++kv_head) {
        if (splits == 1) {
          items.push_back({seq, kv_head, 0, 1, first_block, n_blocks, -1, cost});
          continue;
        }
        merges.push_back({seq, kv_head, n_partials, splits});
        const int span = n_blocks - first_block;
        for (int split = 0; split < splits; ++split) {
          const int begin = first_block + static_cast<int>(static_cast<int64_t>(span) * split / splits);
          const int end = first_block + static_cast<int>(static_cast<int64_t>(span) * (split + 1) / splits);
          items.push_back({seq, kv_head, 0, 1, begin, end, n_partials++,
                           static_cast<int64_t>(group) * (end - begin) * a.block_size});
        }
      }
      continue;
    }
    for (int token_begin = 0; token_begin < s.n_new; token_begin += tile_tokens) {
      const int token_end = std::min(s.n_new, token_begin + tile_tokens);
      // Causal skipping: blocks past the tile's last position are never loaded.
      const int n_blocks = blocks_through(first_new_position + token_end - 1);
      // ... and, with a window, blocks wholly before the tile's first row's window.
      const int first_block = first_block_seen(first_new_position + token_begin);
      const int64_t cost = static_cast<int64_t>(token_end - token_begin) * group *
                           (first_new_position + token_end - first_block * a.block_size);
      for (int kv_head = 0; kv_head < a.n_head_kv; ++kv_head)
        items.push_back({seq, kv_head, token_begin, token_end, first_block, n_blocks, -1, cost});
    }
  }
  // Largest first: with dynamic hand-out, the long causal tiles no longer finish last.
  std::stable_sort(items.begin(), items.end(), [](const WorkItem& x, const WorkItem& y) { return x.cost > y.cost; });
}

}  // namespace

void paged_attention(const AttentionArgs& args, ThreadPool& pool) {
  check_attention_args(args);
  // Owned by the calling thread and reused across calls.
  thread_local std::vector<WorkItem> items;
  thread_local std::vector<MergeGroup> merges;
  thread_local std::vector<float> partials;  // [n_partials, group, head_dim + 2]
  int32_t n_partials = 0;
  plan(args, pool.size(), items, merges, n_partials);
  if (items.empty()) return;
  const size_t partial_floats = static_cast<size_t>(n_partials) * static_cast<size_t>(args.n_head / args.n_head_kv) *
                                (static_cast<size_t>(args.head_dim) + 2);
  if (partials.size() < partial_floats) partials.resize(partial_floats);

  const TiledAttention kernel(args);
  const std::vector<WorkItem>& work = items;
  float* partial_data = partials.data();
  std::atomic<size_t> next_item{0};
  const int n_workers = static_cast<int>(std::min<size_t>(static_cast<size_t>(pool.size()), work.size()));
  pool.parallel_for(n_workers, [&](int64_t, int64_t, int) {
    thread_local Scratch scratch;
    for (size_t i = next_item.fetch_add(1, std::memory_order_relaxed); i < work.size();
         i = next_item.fetch_add(1, std::memory_order_relaxed))
      kernel.run(work[i], scratch, partial_data);
  });
  if (merges.empty()) return;
  const std::vector<MergeGroup>& groups = merges;
  pool.parallel_for(static_cast<int64_t>(groups.size()), [&](int64_t begin, int64_t end, int) {
    for (int64_t i = begin; i < end; ++i) kernel.merge(groups[static_cast<size_t>(i)], partial_data);
  });
}

}  // namespace pagedllm
