#include "engine/engine.h"

#include <algorithm>

#include "common/error.h"
#include "common/thread_pool.h"
#include "engine/cpu_backend.h"
#include "engine/kv_pool.h"

namespace pagedllm {

Engine::Engine(const Model& model, const EngineConfig& config) : model_(model), config_(config) {
  const ModelConfig& c = model.config;
  if (config.block_size < 1 || config.block_size > 1024) {
    fail("--block-size {} is out of range (1..1024)", config.block_size);
  }
  n_ctx_ = config.n_ctx > 0 ? config.n_ctx : static_cast<int>(std::min<int64_t>(c.n_ctx_train, 1 << 20));
  n_threads_ = config.n_threads > 0 ? config.n_threads : default_thread_count();
  const KvShape shape{static_cast<int>(c.n_layer), static_cast<int>(c.n_head_kv), static_cast<int>(c.head_dim)};
  kv_bytes_per_token_ = static_cast<uint64_t>(c.kv_bytes_per_token(static_cast<int>(kv_dtype_size(config.kv_dtype))));
  const uint64_t block_bytes = kv_bytes_per_block(shape, config.block_size, config.kv_dtype);
  int num_blocks = 0;
  if (config.kv_mem_bytes > 0) {
    num_blocks = kv_blocks_for_budget(config.kv_mem_bytes, shape, config.block_size, config.kv_dtype);
    if (num_blocks < 1) {
      fail("--kv-mem {} bytes cannot hold a single KV block ({} bytes for {} tokens of this model)",
           config.kv_mem_bytes, block_bytes, config.block_size);
    }
  } else {
    // Room for every hinted sequence at full context, plus one spare block each for a copy-on-write.
    const int64_t per_seq = (n_ctx_ + config.block_size - 1) / config.block_size + 1;
    num_blocks = static_cast<int>(std::min<int64_t>(per_seq * std::max(1, config.n_seq_hint), 1 << 30));
  }
  cache_ = std::make_unique<KvCacheManager>(num_blocks, config.block_size, config.prefix_cache);
  backend_ = make_backend(config.device, c, model.weights, num_blocks, config.block_size, config.kv_dtype, n_threads_);
}

Engine::~Engine() = default;

int Engine::blocks_needed(std::span<const Work> work) const {
  int total = 0;
  for (const Work& w : work) total += cache_->blocks_needed(w.seq, static_cast<int>(w.tokens.size()));
  return total;
}

std::span<const float> Engine::step(std::span<const Work> work) {
  const auto start = std::chrono::steady_clock::now();
  batch_.clear();
  bool all_single = true;
  uint64_t kv_tokens_read = 0;
  for (const Work& w : work) {
    if (w.tokens.empty()) fail("internal: a work item with no tokens");
    const int n_new = static_cast<int>(w.tokens.size());
    const int first_position = cache_->context_length(w.seq);
    if (first_position + n_new > n_ctx_) {
      fail("internal: sequence {} would grow to {} tokens, past the context of {}", w.seq, first_position + n_new,
           n_ctx_);
    }
    auto slots = cache_->append_slots(w.seq, n_new);
    if (!slots) fail("internal: the KV cache ran out of blocks inside a step the caller had checked");
    SeqView view;
    view.seq_id = w.seq;
    view.first_row = batch_.n_tokens();
    view.n_new = n_new;
    view.context_length = first_position + n_new;
    for (int i = 0; i < n_new; ++i) {
      batch_.tokens.push_back(w.tokens[static_cast<size_t>(i)]);
      batch_.positions.push_back(first_position + i);
      batch_.slot_mapping.push_back((*slots)[static_cast<size_t>(i)]);
    }
    if (w.want_logits) batch_.logit_rows.push_back(batch_.n_tokens() - 1);
    batch_.seqs.push_back(view);
    all_single = all_single && n_new == 1;
    kv_tokens_read += static_cast<uint64_t>(view.context_length);
  }
  // Block tables are read only after every append: an append can reallocate a table's storage.
  for (SeqView& view : batch_.seqs) view.block_table = cache_->block_table(view.seq_id);

  const std::vector<BlockCopy> copies = cache_->take_pending_copies();
  if (!copies.empty()) backend_->copy_blocks(copies);
  logits_.resize(batch_.logit_rows.size() * static_cast<size_t>(model_.config.n_vocab));
  backend_->forward(batch_, logits_.data());
  for (const Work& w : work) cache_->commit_tokens(w.seq, w.tokens);

  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  counters_.forwards += 1;
  if (all_single) {
    counters_.decode_tokens += batch_.n_tokens();
    counters_.decode_steps += 1;
    counters_.decode_seconds += seconds;
    counters_.decode_weight_bytes += model_.weights.bytes_per_step;
    counters_.decode_kv_bytes += kv_tokens_read * kv_bytes_per_token_;
  } else {
    counters_.prefill_tokens += batch_.n_tokens();
    counters_.prefill_seconds += seconds;
  }
  return logits_;
}

}  // namespace pagedllm
