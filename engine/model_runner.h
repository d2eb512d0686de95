#pragma once
// The model runner: the backend (with its K/V pools) and the forward, executing the batches the scheduler builds.
// It allocates nothing in the cache and decides nothing: it reads the slot mapping, block tables and copy-on-write
// copies it is handed, runs the forward, returns the logits, and counts what it did.
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "engine/devices.h"
#include "engine/model.h"
#include "tensor/kv_dtype.h"

namespace pagedllm {

// The kernels' contract (kernels/backend.h), only named here so that the rooms above the engine need not see it.
class Backend;
struct BlockCopy;
struct ForwardBatch;
struct OpProfile;

struct RunnerConfig {
  int block_size = 16;
  // The K/V pool budget in bytes. 0: room for `n_seq_hint` sequences of a full context each (plus one spare block
  // each, for a copy-on-write), but no more than `default_kv_cap_bytes` when that is set (never less than one
  // full context).
  uint64_t kv_mem_bytes = 0;
  int n_seq_hint = 1;
  uint64_t default_kv_cap_bytes = 0;
  int n_ctx = 0;      // most tokens one sequence may hold; 0: the model's training context (at most 2^20)
  int n_threads = 0;  // 0: every core
  KvDtype kv_dtype = KvDtype::F16;
  DeviceKind device = DeviceKind::Cpu;  // the CLI resolves --device (default: cuda when a device is present)
  bool profile = false;  // time every op (engine/op_profiler.h); costs a device synchronisation per op
};

// The context a config gives a model: the requested one, else the training context capped at 2^20.
int context_length_for(const ModelConfig& model, int requested_n_ctx);

// Running totals, split by the kind of forward: one whose every sequence advances by one token is a decode step,
// any other a prefill step.
struct RunnerCounters {
  int64_t prefill_tokens = 0;
  double prefill_seconds = 0;
  int64_t decode_tokens = 0;
  int64_t decode_steps = 0;
  double decode_seconds = 0;
  uint64_t decode_weight_bytes = 0;  // weights read by decode steps (once per step)
  uint64_t decode_kv_bytes = 0;      // K/V read by decode steps (every cached token of every sequence)
  uint64_t prefill_bytes = 0;        // weights once per prefill step + the K/V each sequence's context holds
  uint64_t prefill_kv_bytes = 0;     // of those, the K/V
  double prefill_flops = 0;          // arithmetic of prefill steps (engine/llama_forward.h: forward_flops)
  double decode_flops = 0;
  int64_t forwards = 0;
};

// What the backend's memory and arithmetic can do at best, and how each figure was obtained (0: unknown).
struct MachinePeaks {
  double bandwidth_gb_s = 0;
  std::string bandwidth_source;
  double compute_gflop_s = 0;
  std::string compute_source;
};

class ModelRunner {
 public:
  // Sizes the K/V pools from the config and builds the backend. Throws pagedllm::Error naming the flag when the
  // budget cannot hold one block or the pools would not fit the memory available.
  ModelRunner(const Model& model, const RunnerConfig& config);
  ~ModelRunner();
  ModelRunner(const ModelRunner&) = delete;
  ModelRunner& operator=(const ModelRunner&) = delete;

  const Model& model() const { return model_; }
  const RunnerConfig& config() const { return config_; }
  int n_ctx() const { return n_ctx_; }
  int n_threads() const { return n_threads_; }
  int num_blocks() const;
  int block_size() const;
  uint64_t kv_bytes_per_token() const { return kv_bytes_per_token_; }
  Backend& backend() { return *backend_; }
  const Backend& backend() const { return *backend_; }
  const RunnerCounters& counters() const { return counters_; }
  std::string backend_name() const;
  uint64_t kv_pool_bytes() const;
  // The backend's peaks (a CPU measures them once and caches the figures); `with_compute` false skips the
  // compute probe.
  MachinePeaks peaks(bool with_compute = true);
  // The per-op profile, when the config asked for one; null otherwise.
  const OpProfile* profile() const;

  // Executes `copies`, then one forward of `batch`. Returns the logits of batch.logit_rows, [n_logits, n_vocab],
  // valid until the next call.
  std::span<const float> run(const ForwardBatch& batch, const std::vector<BlockCopy>& copies);

 private:
  const Model& model_;
  RunnerConfig config_;
  int n_ctx_ = 0;
  int n_threads_ = 0;
  uint64_t kv_bytes_per_token_ = 0;
  std::unique_ptr<Backend> backend_;
  const OpProfile* profile_ = nullptr;  // inside backend_ when profiling
  std::vector<float> logits_;  // [n_logits, n_vocab]
  RunnerCounters counters_;
};

}  // namespace pagedllm
