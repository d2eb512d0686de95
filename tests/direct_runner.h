#pragma once
// Drives a ModelRunner by hand with a KvCacheManager of its own: the forward under test without the scheduler's
// planning, for tests that compose batches themselves or need a path independent of the scheduler.
#include <span>
#include <stdexcept>
#include <vector>

#include "engine/kv_cache.h"
#include "engine/model.h"
#include "engine/model_runner.h"
#include "kernels/backend.h"

namespace pagedllm::test {

struct DirectWork {
  SeqId seq;
  std::span<const int32_t> tokens;  // the sequence's next tokens (positions continue its context)
  bool want_logits;                 // logits of its last token
};

class DirectRunner {
 public:
  DirectRunner(const Model& model, const RunnerConfig& config, bool prefix_cache = false)
      : runner_(model, config), cache_(runner_.num_blocks(), runner_.block_size(), prefix_cache) {}

  SeqId create_sequence() { return cache_.create_sequence(); }
  KvCacheManager& cache() { return cache_; }
  ModelRunner& runner() { return runner_; }

  // One forward of every work item; logits [n_wanted, n_vocab] in work order, valid until the next call.
  std::span<const float> step(std::span<const DirectWork> work) {
    batch_.clear();
    for (const DirectWork& w : work) {
      const int first_position = cache_.context_length(w.seq);
      const auto slots = cache_.append_slots(w.seq, static_cast<int>(w.tokens.size()));
      if (!slots) throw std::runtime_error("DirectRunner: the KV cache is full");
      SeqView view;
      view.first_row = batch_.n_tokens();
      view.n_new = static_cast<int32_t>(w.tokens.size());
      view.context_length = first_position + view.n_new;
      for (size_t i = 0; i < w.tokens.size(); ++i) {
        batch_.tokens.push_back(w.tokens[i]);
        batch_.positions.push_back(first_position + static_cast<int32_t>(i));
        batch_.slot_mapping.push_back((*slots)[i]);
      }
      if (w.want_logits) batch_.logit_rows.push_back(batch_.n_tokens() - 1);
      batch_.seqs.push_back(view);
    }
    for (size_t i = 0; i < work.size(); ++i) batch_.seqs[i].block_table = cache_.block_table(work[i].seq);
    const std::span<const float> logits = runner_.run(batch_, cache_.take_pending_copies());
    for (const DirectWork& w : work) cache_.commit_tokens(w.seq, w.tokens);
    return logits;
  }

 private:
  ModelRunner runner_;
  KvCacheManager cache_;
  ForwardBatch batch_;
};

// A RunnerConfig whose K/V pools hold exactly `num_blocks` blocks of `block_size` tokens for `model`.
inline RunnerConfig runner_config_with_blocks(const Model& model, int num_blocks, int block_size, int n_ctx,
                                              int n_threads, KvDtype dtype = KvDtype::F16) {
  const ModelConfig& c = model.config;
  KvGeometry shape;
  shape.n_layer = static_cast<int>(c.n_layer);
  shape.n_head_kv = static_cast<int>(c.n_head_kv);
  shape.head_dim = static_cast<int>(c.head_dim);
  shape.block_size = block_size;
  shape.dtype = dtype;
  RunnerConfig config;
  config.block_size = block_size;
  config.kv_mem_bytes = shape.block_bytes() * static_cast<size_t>(num_blocks);
  config.n_ctx = n_ctx;
  config.n_threads = n_threads;
  config.kv_dtype = dtype;
  return config;
}

}  // namespace pagedllm::test
