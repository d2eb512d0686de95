// The tiled paged-attention kernel against the naive oracle (full score matrix), on random shapes and batches that
// mix prefill (with and without a cached prefix) and decode, for every pool dtype (F32, F16, and the quantized Q8_0
// and Q4_0, whose oracle decodes each element from its block on its own); plus the online-softmax steps the kernels
// share with CUDA.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>
#include <stdexcept>
#include <vector>

#include "common/thread_pool.h"
#include "tensor/activation_quant.h"
#include "tensor/float16.h"
#include "tensor/quant_blocks.h"
#include "kernels/common/online_softmax.h"
#include "kernels/cpu/attention.h"

using namespace pagedllm;

namespace {

struct SeqSpec {
  int context_length;
  int n_new;
};

struct Shape {
  int n_head;
  int n_head_kv;
  int head_dim;
  int block_size;
  KvDtype dtype;
};

// A batch laid out like the engine lays it out: blocks scattered over a pool larger than needed, every slot the
// sequences do not own (free blocks, the tail of partly filled last blocks) filled with NaN so that reading one
// poisons the output.
struct Problem {
  Shape shape;
  std::vector<SeqSpec> specs;
  std::vector<float> q;                  // [n_tokens, n_head, head_dim]
  std::vector<uint16_t> k_f16, v_f16;    // [num_blocks, block_size, n_head_kv, head_dim]
  std::vector<float> k_f32, v_f32;       // [num_blocks, block_size, n_head_kv, head_dim]
  std::vector<uint8_t> k_q, v_q;         // [num_blocks, block_size, n_head_kv, head_dim / 32] blocks (quantized)
  std::vector<std::vector<int32_t>> tables;
  std::vector<SeqAttention> seqs;
  int n_tokens = 0;

  Problem(const Shape& s, std::vector<SeqSpec> seq_specs, uint32_t seed, float q_scale = 1.0f)
      : shape(s), specs(std::move(seq_specs)) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    int blocks_needed = 0;
    for (const SeqSpec& spec : specs) {
      blocks_needed += (spec.context_length + s.block_size - 1) / s.block_size;
      n_tokens += spec.n_new;
    }
    const int num_blocks = blocks_needed + 3;
    std::vector<int32_t> physical(static_cast<size_t>(num_blocks));
    std::iota(physical.begin(), physical.end(), 0);
    std::shuffle(physical.begin(), physical.end(), rng);

    const size_t slot = static_cast<size_t>(s.n_head_kv) * static_cast<size_t>(s.head_dim);
    const size_t pool_elements = static_cast<size_t>(num_blocks) * static_cast<size_t>(s.block_size) * slot;
    k_f32.assign(pool_elements, NAN);
    v_f32.assign(pool_elements, NAN);
    size_t next_block = 0;
    int first_row = 0;
    tables.resize(specs.size());
    for (size_t i = 0; i < specs.size(); ++i) {
      const SeqSpec& spec = specs[i];
      const int n_blocks = (spec.context_length + s.block_size - 1) / s.block_size;
      for (int b = 0; b < n_blocks; ++b) tables[i].push_back(physical[next_block++]);
      for (int position = 0; position < spec.context_length; ++position) {
        const size_t base = (static_cast<size_t>(tables[i][static_cast<size_t>(position / s.block_size)]) *
                                 static_cast<size_t>(s.block_size) +
                             static_cast<size_t>(position % s.block_size)) * slot;
        for (size_t e = 0; e < slot; ++e) {
          k_f32[base + e] = normal(rng);
          v_f32[base + e] = normal(rng);
        }
      }
      seqs.push_back(SeqAttention{first_row, spec.n_new, spec.context_length, tables[i].data(), n_blocks});
      first_row += spec.n_new;
    }
    // The F16 problem is the F32 one rounded, and the F32 pool then holds the rounded values too, so both
    // dtypes describe the same numbers.
    k_f16.resize(pool_elements);
    v_f16.resize(pool_elements);
    for (size_t e = 0; e < pool_elements; ++e) {
      k_f16[e] = f32_to_fp16(k_f32[e]);
      v_f16[e] = f32_to_fp16(v_f32[e]);
      if (s.dtype == KvDtype::F16) {
        k_f32[e] = fp16_to_f32(k_f16[e]);
        v_f32[e] = fp16_to_f32(v_f16[e]);
      }
    }
    if (kv_dtype_is_quantized(s.dtype)) quantize_pools();
    q.resize(static_cast<size_t>(n_tokens) * static_cast<size_t>(s.n_head) * static_cast<size_t>(s.head_dim));
    for (float& x : q) x = normal(rng) * q_scale;
  }

  // Every 32 elements of the F32 pools become one block (a NaN block, one whose scale is NaN, where the slot is
  // not owned), and the F32 pools then hold the decoded values.
  void quantize_pools() {
    const size_t n_blocks = k_f32.size() / 32;
    const size_t block_bytes = kv_row_bytes(shape.dtype, 32);
    k_q.assign(n_blocks * block_bytes, 0);
    v_q.assign(n_blocks * block_bytes, 0);
    for (auto [source, destination] : {std::pair{&k_f32, &k_q}, std::pair{&v_f32, &v_q}}) {
      for (size_t b = 0; b < n_blocks; ++b) {
        float* x = source->data() + 32 * b;
        uint8_t* bytes = destination->data() + b * block_bytes;
        if (std::isnan(x[0])) {
          const uint16_t nan = 0x7E00;
          std::memcpy(bytes, &nan, sizeof nan);  // d comes first in both layouts
          continue;
        }
        if (shape.dtype == KvDtype::Q8_0) {
          BlockQ8_0 block;
          quantize_block_q8_0(x, block);
          std::memcpy(bytes, &block, sizeof block);
          dequantize_block(block, x);
        } else {
          BlockQ4_0 block;
          quantize_block_q4_0(x, block);
          std::memcpy(bytes, &block, sizeof block);
          dequantize_block(block, x);
        }
      }
    }
  }

  AttentionArgs args(float* out, KvDtype dtype) const {
    AttentionArgs a;
    a.q = q.data();
    a.out = out;
    a.dtype = dtype;
    a.k_pool = dtype == KvDtype::F16 ? static_cast<const void*>(k_f16.data()) : k_f32.data();
    a.v_pool = dtype == KvDtype::F16 ? static_cast<const void*>(v_f16.data()) : v_f32.data();
    if (kv_dtype_is_quantized(dtype)) {
      a.k_pool = k_q.data();
      a.v_pool = v_q.data();
    }
    a.n_head = shape.n_head;
    a.n_head_kv = shape.n_head_kv;
    a.head_dim = shape.head_dim;
    a.block_size = shape.block_size;
    a.scale = 1.0f / std::sqrt(static_cast<float>(shape.head_dim));
    a.seqs = seqs;
    return a;
  }
  size_t out_size() const { return q.size(); }
};

// The worst error of the tiled result relative to the oracle. Each output row (one token, one head) is a convex
// combination of V rows, so its error is measured against the row's largest magnitude: an element that happens to
// cancel to ~0 is not held to a relative bound its inputs cannot support.
double worst_relative_error(const std::vector<float>& tiled, const std::vector<float>& oracle, int head_dim) {
  double worst = 0.0;
  for (size_t row = 0; row < oracle.size(); row += static_cast<size_t>(head_dim)) {
    double magnitude = 0.0;
    for (int d = 0; d < head_dim; ++d) magnitude = std::max(magnitude, std::fabs(double(oracle[row + static_cast<size_t>(d)])));
    for (int d = 0; d < head_dim; ++d) {
      const double error = std::fabs(double(tiled[row + static_cast<size_t>(d)]) - double(oracle[row + static_cast<size_t>(d)]));
      if (!std::isfinite(tiled[row + static_cast<size_t>(d)])) return INFINITY;
      worst = std::max(worst, error / std::max(magnitude, 1e-30));
    }
  }
  return worst;
}

constexpr double kTolerance = 1e-5;

// Runs the oracle and the tiled kernel (on 1 and on 4 threads) and returns the worst relative error.
double compare(const Problem& problem, ThreadPool& pool) {
  std::vector<float> oracle(problem.out_size(), NAN), tiled(problem.out_size(), NAN);
  naive_attention(problem.args(oracle.data(), problem.shape.dtype));
  for (float x : oracle) REQUIRE(std::isfinite(x));  // the oracle itself must not touch a NaN slot
  paged_attention(problem.args(tiled.data(), problem.shape.dtype), pool);
  return worst_relative_error(tiled, oracle, problem.shape.head_dim);
}

}  // namespace

TEST_CASE("tiled attention matches the naive oracle on mixed prefill/decode batches of every shape") {
  ThreadPool single(1), four(4);
  uint32_t seed = 1;
  double worst = 0.0;
  for (const KvDtype dtype : {KvDtype::F32, KvDtype::F16, KvDtype::Q8_0, KvDtype::Q4_0}) {
    // The quantized types need whole blocks of 32: one, three (odd) and four per head.
    const std::vector<int> head_dims = kv_dtype_is_quantized(dtype) ? std::vector<int>{32, 96, 128}
                                                                     : std::vector<int>{8, 64, 128};
    for (const int head_dim : head_dims) {
      for (const int block_size : {1, 16, 32}) {
        // MHA, GQA 4:1, MQA.
        for (const auto& [n_head, n_head_kv] : {std::pair{4, 4}, std::pair{8, 2}, std::pair{4, 1}}) {
          const Shape shape{n_head, n_head_kv, head_dim, block_size, dtype};
          CAPTURE(kv_dtype_name(dtype));
          CAPTURE(head_dim);
          CAPTURE(block_size);
          CAPTURE(shape.n_head);  // the shape's copies: clang 14 cannot capture structured bindings
          CAPTURE(shape.n_head_kv);
          // A fresh prompt, a prompt chunk after a cached prefix, decodes of 1 token, of a partly filled block, of
          // a long context (split across threads), and a chunk ending mid-block.
          const Problem problem(shape, {{45, 45}, {97, 30}, {1, 1}, {35, 1}, {1500, 1}, {70, 7}}, seed++);
          ThreadPool& pool = seed % 2 == 0 ? single : four;
          const double error = compare(problem, pool);
          CHECK(error <= kTolerance);
          worst = std::max(worst, error);
        }
      }
    }
  }
  MESSAGE("worst relative error over the shape sweep: " << worst);
}

TEST_CASE("sliding window: tiled matches the oracle, never reads blocks before every row's window, and masks") {
  ThreadPool single(1), four(4);
  uint32_t seed = 500;
  double worst = 0.0;
  for (const KvDtype dtype : {KvDtype::F32, KvDtype::F16}) {
    for (const int block_size : {1, 16, 32}) {
      for (const int window : {1, 7, 16, 40, 512}) {
        // MQA with head_dim 256 (gemma3 270M) and GQA; prefill across the window edge, a chunk after a prefix,
        // decodes far past the window (split across threads) and inside it.
        const Shape shape = block_size == 16 ? Shape{4, 1, 256, block_size, dtype}
                                             : Shape{8, 2, 64, block_size, dtype};
        CAPTURE(kv_dtype_name(dtype));
        CAPTURE(block_size);
        CAPTURE(window);
        Problem problem(shape, {{100, 100}, {300, 37}, {1500, 1}, {5, 1}, {70, 7}}, seed++);
        // Blocks wholly before the oldest position any new row sees get a NaN-filled spare block in the table:
        // reading one would poison the output (the cache manager may have given such blocks back).
        const int32_t spare = [&] {
          std::vector<bool> used(problem.k_f32.size() / (static_cast<size_t>(block_size) * shape.n_head_kv *
                                                          static_cast<size_t>(shape.head_dim)), false);
          for (const auto& table : problem.tables)
            for (int32_t b : table) used[static_cast<size_t>(b)] = true;
          return static_cast<int32_t>(std::find(used.begin(), used.end(), false) - used.begin());
        }();
        int poisoned = 0;
        for (size_t i = 0; i < problem.specs.size(); ++i) {
          const int first_new = problem.specs[i].context_length - problem.specs[i].n_new;
          const int oldest = std::max(0, first_new - window + 1);
          for (int b = 0; (b + 1) * block_size <= oldest; ++b, ++poisoned) problem.tables[i][static_cast<size_t>(b)] = spare;
        }
        std::vector<float> oracle(problem.out_size(), NAN), tiled(problem.out_size(), NAN);
        std::vector<float> unwindowed(problem.out_size(), NAN);
        AttentionArgs oracle_args = problem.args(oracle.data(), dtype);
        oracle_args.window = window;
        naive_attention(oracle_args);
        for (float x : oracle) REQUIRE(std::isfinite(x));
        AttentionArgs tiled_args = problem.args(tiled.data(), dtype);
        tiled_args.window = window;
        paged_attention(tiled_args, seed % 2 == 0 ? single : four);
        const double error = worst_relative_error(tiled, oracle, shape.head_dim);
        CHECK(error <= kTolerance);
        worst = std::max(worst, error);
        if (window < 100) {
          CHECK(poisoned > 0);
        } else if (window >= 1500) {
          // A window wider than every context is plain causal attention.
          naive_attention(problem.args(unwindowed.data(), dtype));
          CHECK(worst_relative_error(oracle, unwindowed, shape.head_dim) <= kTolerance);
        }
      }
    }
  }
  MESSAGE("worst relative error with sliding windows: " << worst);
}

TEST_CASE("sliding window: a window of 1 returns each row's own V, a narrower window changes the result") {
  ThreadPool pool(2);
  const Shape shape{4, 1, 64, 16, KvDtype::F32};
  const Problem problem(shape, {{60, 60}}, 901);
  std::vector<float> own(problem.out_size(), NAN), narrow(problem.out_size(), NAN), full(problem.out_size(), NAN);
  AttentionArgs args = problem.args(own.data(), KvDtype::F32);
  args.window = 1;
  paged_attention(args, pool);
  const size_t slot = static_cast<size_t>(shape.n_head_kv) * static_cast<size_t>(shape.head_dim);
  for (int position = 0; position < 60; ++position) {
    const size_t base = (static_cast<size_t>(problem.tables[0][static_cast<size_t>(position / 16)]) * 16 +
                         static_cast<size_t>(position % 16)) * slot;
    for (int h = 0; h < shape.n_head; ++h) {
      for (int d = 0; d < shape.head_dim; ++d) {
        const size_t out = (static_cast<size_t>(position) * shape.n_head + static_cast<size_t>(h)) * 64 +
                           static_cast<size_t>(d);
        CHECK(own[out] == doctest::Approx(problem.v_f32[base + static_cast<size_t>(d)]).epsilon(1e-6));
      }
    }
  }
  AttentionArgs narrow_args = problem.args(narrow.data(), KvDtype::F32);
  narrow_args.window = 20;
  paged_attention(narrow_args, pool);
  paged_attention(problem.args(full.data(), KvDtype::F32), pool);
  // Rows 0..19 see the same keys either way; row 59 sees 20 of its 60.
  const size_t row_size = static_cast<size_t>(shape.n_head) * 64;
  CHECK(std::equal(narrow.begin(), narrow.begin() + static_cast<std::ptrdiff_t>(20 * row_size), full.begin()));
  CHECK(worst_relative_error(std::vector<float>(narrow.end() - static_cast<std::ptrdiff_t>(row_size), narrow.end()),
                             std::vector<float>(full.end() - static_cast<std::ptrdiff_t>(row_size), full.end()), 64) >
        0.01);
}

TEST_CASE("long contexts: a 4k prefill and 4k decodes, split across threads, match the oracle") {
  ThreadPool four(4), two(2);
  for (const KvDtype dtype : {KvDtype::F32, KvDtype::F16, KvDtype::Q8_0, KvDtype::Q4_0}) {
    CAPTURE(kv_dtype_name(dtype));
    // The oracle decodes a quantized element at a time, which over a 4k prefill's 8M score pairs would cost more
    // than the rest of the suite: the quantized types take the decodes here (the sweep above covers their prefill).
    const bool quantized = kv_dtype_is_quantized(dtype);
    // A 4096-token prompt, GQA.
    double prefill_error = 0, chunk_error = 0;
    if (!quantized) {
      const Problem prefill(Shape{2, 1, 64, 16, dtype}, {{4096, 4096}}, 77);
      prefill_error = compare(prefill, four);
      CHECK(prefill_error <= kTolerance);
    }
    // Decodes at 4096 and 4000 (partly filled last block), MQA and MHA: long enough for flash-decoding splits.
    const Problem mqa(Shape{8, 1, 128, 32, dtype}, {{4096, 1}, {4000, 1}}, 78);
    const double mqa_error = compare(mqa, four);
    CHECK(mqa_error <= kTolerance);
    const Problem mha(Shape{2, 2, 64, 16, dtype}, {{4000, 1}}, 79);
    const double mha_error = compare(mha, two);
    CHECK(mha_error <= kTolerance);
    // A chunk of 512 after a cached prefix of 3584, with a decode beside it.
    if (!quantized) {
      const Problem chunk(Shape{4, 4, 64, 32, dtype}, {{4096, 512}, {3000, 1}}, 80);
      chunk_error = compare(chunk, four);
      CHECK(chunk_error <= kTolerance);
    }
    MESSAGE("worst relative errors (" << kv_dtype_name(dtype) << "): prefill " << prefill_error << ", decode MQA "
                                      << mqa_error << ", decode MHA " << mha_error << ", chunk " << chunk_error);
  }
}

TEST_CASE("peaked scores (large q) exercise the running-max rescaling") {
  // With |q| ~ 8 the softmax is dominated by a few keys, found in later blocks, so the running max moves often.
  ThreadPool four(4);
  for (const int block_size : {1, 16}) {
    const Problem problem(Shape{4, 2, 64, block_size, KvDtype::F32}, {{300, 300}, {900, 1}}, 90, 8.0f);
    CHECK(compare(problem, four) <= kTolerance);
  }
}

TEST_CASE("results do not depend on the thread count, and sequences without new tokens are left alone") {
  const Problem problem(Shape{6, 3, 64, 16, KvDtype::F16}, {{700, 1}, {64, 64}, {20, 0}, {2100, 1}}, 5);
  std::vector<float> reference(problem.out_size(), 0.0f);
  ThreadPool single(1);
  paged_attention(problem.args(reference.data(), KvDtype::F16), single);
  for (const int threads : {2, 3, 7}) {
    ThreadPool pool(threads);
    std::vector<float> out(problem.out_size(), 0.0f);
    paged_attention(problem.args(out.data(), KvDtype::F16), pool);
    CAPTURE(threads);
    // Splits change the summation order, so equality is within rounding, not bitwise.
    CHECK(worst_relative_error(out, reference, 64) <= kTolerance);
  }
}

TEST_CASE("contract violations are reported, not read out of bounds") {
  const Problem problem(Shape{4, 2, 8, 4, KvDtype::F32}, {{10, 2}}, 3);
  std::vector<float> out(problem.out_size());
  ThreadPool pool(1);
  SUBCASE("n_head not a multiple of n_head_kv") {
    AttentionArgs a = problem.args(out.data(), KvDtype::F32);
    a.n_head_kv = 3;
    CHECK_THROWS_AS(paged_attention(a, pool), std::invalid_argument);
    CHECK_THROWS_AS(naive_attention(a), std::invalid_argument);
  }
  SUBCASE("a block table too short for the context") {
    std::vector<SeqAttention> seqs(problem.seqs.begin(), problem.seqs.end());
    seqs[0].n_blocks = 2;  // 10 positions need 3 blocks of 4
    AttentionArgs a = problem.args(out.data(), KvDtype::F32);
    a.seqs = seqs;
    CHECK_THROWS_AS(paged_attention(a, pool), std::invalid_argument);
  }
  SUBCASE("more new tokens than the context") {
    std::vector<SeqAttention> seqs(problem.seqs.begin(), problem.seqs.end());
    seqs[0].n_new = 11;
    AttentionArgs a = problem.args(out.data(), KvDtype::F32);
    a.seqs = seqs;
    CHECK_THROWS_AS(paged_attention(a, pool), std::invalid_argument);
  }
}

// ------------------------------------------------------------------------------------------------ online softmax

namespace {

// Softmax-weighted sum of `values` under `scores`, computed directly in double.
double direct_weighted_sum(const std::vector<float>& scores, const std::vector<float>& values) {
  double max = -INFINITY, sum = 0.0, weighted = 0.0;
  for (float s : scores) max = std::max(max, double(s));
  for (size_t j = 0; j < scores.size(); ++j) {
    const double p = std::exp(double(scores[j]) - max);
    sum += p;
    weighted += p * values[j];
  }
  return weighted / sum;
}

// Folds scores[begin, end) into state/accumulator in tiles of `tile`, the way the kernels do.
void fold(const std::vector<float>& scores, const std::vector<float>& values, size_t begin, size_t end, size_t tile,
          SoftmaxState& state, float& accumulator) {
  for (size_t t = begin; t < end; t += tile) {
    const size_t t_end = std::min(end, t + tile);
    float tile_max = -INFINITY;
    for (size_t j = t; j < t_end; ++j) tile_max = std::max(tile_max, scores[j]);
    accumulator *= softmax_rescale(state, tile_max);
    for (size_t j = t; j < t_end; ++j) {
      const float p = std::exp(scores[j] - state.max);
      state.sum += p;
      accumulator += p * values[j];
    }
  }
}

}  // namespace

TEST_CASE("online softmax: tiled folding and merging partials equal the direct softmax") {
  std::mt19937 rng(11);
  std::normal_distribution<float> normal(0.0f, 4.0f);
  std::vector<float> scores(1000), values(1000);
  for (float& s : scores) s = normal(rng);
  for (float& v : values) v = normal(rng);
  // Rising scores force a rescale at nearly every tile.
  std::sort(scores.begin(), scores.begin() + 300);
  const double expected = direct_weighted_sum(scores, values);

  for (const size_t tile : {size_t{1}, size_t{7}, size_t{64}, size_t{1000}}) {
    SoftmaxState state = softmax_state_empty();
    float accumulator = 0.0f;
    fold(scores, values, 0, scores.size(), tile, state, accumulator);
    CHECK(accumulator * softmax_normalizer(state) == doctest::Approx(expected).epsilon(1e-5));
  }

  // Three partials over disjoint ranges merged in a different order than they cover the keys.
  const size_t cuts[] = {0, 123, 700, 1000};
  SoftmaxState parts[3];
  float accumulators[3];
  for (int p = 0; p < 3; ++p) {
    parts[p] = softmax_state_empty();
    accumulators[p] = 0.0f;
    fold(scores, values, cuts[p], cuts[p + 1], 16, parts[p], accumulators[p]);
  }
  SoftmaxState merged = softmax_state_empty();
  float output = 0.0f;
  for (const int p : {2, 0, 1}) {
    const SoftmaxMerge factors = softmax_merge(merged, parts[p]);
    output = output * factors.scale_a + accumulators[p] * factors.scale_b;
  }
  CHECK(output * softmax_normalizer(merged) == doctest::Approx(expected).epsilon(1e-5));
}

TEST_CASE("online softmax: empty states and fully masked tiles change nothing and never produce NaN") {
  SoftmaxState state = softmax_state_empty();
  CHECK(softmax_rescale(state, -INFINITY) == 1.0f);
  CHECK(state.max == -INFINITY);
  CHECK(softmax_normalizer(state) == 0.0f);

  SoftmaxState empty = softmax_state_empty();
  SoftmaxMerge both_empty = softmax_merge(empty, softmax_state_empty());
  CHECK(both_empty.scale_a == 0.0f);
  CHECK(both_empty.scale_b == 0.0f);
  CHECK(empty.sum == 0.0f);

  // First real tile: the old (empty) accumulator is discarded with factor 0.
  CHECK(softmax_rescale(state, 2.0f) == 0.0f);
  state.sum += 1.0f;  // one key at the max
  CHECK(softmax_rescale(state, 1.0f) == 1.0f);  // a lower tile keeps the max
  const SoftmaxMerge with_empty = softmax_merge(state, softmax_state_empty());
  CHECK(with_empty.scale_a == 1.0f);
  CHECK(with_empty.scale_b == 0.0f);
  CHECK(state.sum == 1.0f);
  CHECK(state.max == 2.0f);
}
