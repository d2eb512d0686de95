#pragma once
// The model runner: owns the KvCacheManager and the backend, and turns "these sequences advance by these tokens"
// into one batched forward (slot mapping, block tables, copy-on-write copies, logits). What runs when is the
// caller's decision (`run`'s loop, the batch scheduler, the chat session); the engine never chooses.
#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "engine/backend.h"
#include "engine/backend_factory.h"
#include "engine/batch.h"
#include "engine/kv_cache.h"
#include "engine/model.h"
#include "tensor/kv_dtype.h"

namespace pagedllm {

struct EngineConfig {
  int block_size = 16;
  uint64_t kv_mem_bytes = 0;  // K/V pool budget; 0: room for n_ctx tokens in each of `n_seq_hint` sequences
  int n_ctx = 0;              // most tokens one sequence may hold; 0: the model's training context
  int n_seq_hint = 1;         // sequences expected at once (sizes the default budget)
  int n_threads = 0;          // 0: every core
  KvDtype kv_dtype = KvDtype::F16;
  bool prefix_cache = false;
  DeviceKind device = DeviceKind::Cpu;  // the CLI resolves --device (default: cuda when a device is present)
};

// Running totals, split by the kind of step: a step whose every sequence advances by one token is a decode step,
// any other is a prefill step.
struct EngineCounters {
  int64_t prefill_tokens = 0;
  double prefill_seconds = 0;
  int64_t decode_tokens = 0;
  int64_t decode_steps = 0;
  double decode_seconds = 0;
  uint64_t decode_weight_bytes = 0;  // weights read by decode steps (once per step)
  uint64_t decode_kv_bytes = 0;      // K/V read by decode steps (every cached token of every sequence)
  int64_t forwards = 0;
};

class Engine {
 public:
  struct Work {
    SeqId seq;
    std::span<const int32_t> tokens;  // the sequence's next tokens to compute (positions continue its context)
    bool want_logits;                 // logits of its last token
  };

  // Sizes the K/V pools from the config; throws pagedllm::Error when the budget cannot hold one block.
  Engine(const Model& model, const EngineConfig& config);
  ~Engine();

  const Model& model() const { return model_; }
  const EngineConfig& config() const { return config_; }
  int n_ctx() const { return n_ctx_; }
  KvCacheManager& cache() { return *cache_; }
  const KvCacheManager& cache() const { return *cache_; }
  Backend& backend() { return *backend_; }
  const EngineCounters& counters() const { return counters_; }
  uint64_t kv_bytes_per_token() const { return kv_bytes_per_token_; }
  int n_threads() const { return n_threads_; }

  // Blocks `work` would take from the free pool; the caller checks this fits before calling step().
  int blocks_needed(std::span<const Work> work) const;
  // One forward: appends slots for every work item (the caller has made sure they fit), runs pending CoW copies
  // and the forward, registers the new tokens with the prefix cache. Returns logits [n_wanted, n_vocab] in work
  // order of the items with want_logits, valid until the next step.
  std::span<const float> step(std::span<const Work> work);

 private:
  const Model& model_;
  EngineConfig config_;
  int n_ctx_ = 0;
  int n_threads_ = 0;
  uint64_t kv_bytes_per_token_ = 0;
  std::unique_ptr<KvCacheManager> cache_;
  std::unique_ptr<Backend> backend_;
  BatchInput batch_;
  std::vector<float> logits_;  // [n_wanted, n_vocab]
  EngineCounters counters_;
};

}  // namespace pagedllm
