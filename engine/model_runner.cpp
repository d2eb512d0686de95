#include "engine/model_runner.h"

#include <algorithm>
#include <chrono>
#include <unordered_map>

#include "common/error.h"
#include "common/system_memory.h"
#include "common/thread_pool.h"
#include "engine/llama_forward.h"
#include "engine/op_profiler.h"
#include "kernels/backend.h"

namespace pagedllm {

namespace {

std::unique_ptr<Backend> make_backend(DeviceKind kind, const Model& model, const KvGeometry& kv, int n_threads) {
  if (kind == DeviceKind::Cuda) {
    require_cuda_device();
    return make_cuda_backend(kv, forward_weight_set(model.config, model.weights));
  }
  return make_cpu_backend(kv, n_threads);
}

std::string mib(uint64_t bytes) { return fmt::format("{:.1f} MiB", static_cast<double>(bytes) / (1024.0 * 1024.0)); }

}  // namespace

int context_length_for(const ModelConfig& model, int requested_n_ctx) {
  if (requested_n_ctx > 0) return requested_n_ctx;
  return static_cast<int>(std::clamp<int64_t>(model.n_ctx_train, 1, int64_t{1} << 20));
}

ModelRunner::ModelRunner(const Model& model, const RunnerConfig& config) : model_(model), config_(config) {
  const ModelConfig& c = model.config;
  if (config.block_size < 1 || config.block_size > 1024) {
    fail("--block-size {} is out of range (1..1024)", config.block_size);
  }
  if (config.n_ctx < 0) fail("-c {} must be positive (or 0 for the model's training context)", config.n_ctx);
  n_ctx_ = context_length_for(c, config.n_ctx);
  n_threads_ = config.n_threads > 0 ? config.n_threads : default_thread_count();
  if (c.head_dim % kv_dtype_block_elements(config.kv_dtype) != 0) {
    fail("--kv-type {} stores each K/V row in blocks of {} elements, but this model's heads have {} (head_dim); "
         "use f16 or f32", kv_dtype_name(config.kv_dtype), kv_dtype_block_elements(config.kv_dtype), c.head_dim);
  }

  KvGeometry kv;
  kv.n_layer = static_cast<int>(c.n_layer);
  kv.n_head_kv = static_cast<int>(c.n_head_kv);
  kv.head_dim = static_cast<int>(c.head_dim);
  kv.block_size = config.block_size;
  kv.dtype = config.kv_dtype;
  // A K and a V row per layer and KV head, in the pool's real bytes (a quantized row is its blocks, scales included).
  kv_bytes_per_token_ = 2 * static_cast<uint64_t>(c.n_layer) * kv.slot_bytes();
  const uint64_t block_bytes = kv.block_bytes();
  const int64_t blocks_per_context = (static_cast<int64_t>(n_ctx_) + config.block_size - 1) / config.block_size;
  int64_t num_blocks = 0;
  if (config.kv_mem_bytes > 0) {
    num_blocks = kv_blocks_for_budget(config.kv_mem_bytes, kv);
    if (num_blocks < 1) {
      fail("--kv-mem {} bytes cannot hold a single KV block ({} bytes for {} tokens of this model)",
           config.kv_mem_bytes, block_bytes, config.block_size);
    }
  } else if (config.default_kv_cap_bytes > 0) {
    // Room for every hinted sequence at full context (whole blocks each), within the cap, but never less than one
    // context.
    const uint64_t wanted = static_cast<uint64_t>(blocks_per_context) *
                            static_cast<uint64_t>(std::max(1, config.n_seq_hint)) * block_bytes;
    const uint64_t floor = static_cast<uint64_t>(n_ctx_ + 2 * config.block_size) * kv_bytes_per_token_;
    num_blocks = kv_blocks_for_budget(std::max(floor, std::min(wanted, config.default_kv_cap_bytes)), kv);
  } else {
    // Room for every hinted sequence at full context, plus one spare block each for a copy-on-write.
    num_blocks = (blocks_per_context + 1) * std::max(1, config.n_seq_hint);
  }
  // Checked before anything is allocated: a huge -c must fail naming the flag, not in an allocator.
  const auto pool_bytes = static_cast<uint64_t>(num_blocks) * block_bytes;
  const char* asked_by = config.kv_mem_bytes > 0 ? "--kv-mem" : "-c (the context) times the sequences it holds";
  if (num_blocks > INT32_MAX / std::max(1, config.block_size)) {
    fail("the KV cache would need {} blocks of {} tokens, more than a cache can address; lower {}", num_blocks,
         config.block_size, asked_by);
  }
  if (config.device == DeviceKind::Cpu) {
    const uint64_t available = available_memory_bytes();
    if (available > 0 && pool_bytes > available) {
      fail("the KV cache would take {} ({} blocks of {} tokens; context {} tokens) but only {} of memory is "
           "available; lower {}", mib(pool_bytes), num_blocks, config.block_size, n_ctx_, mib(available), asked_by);
    }
  }
  kv.num_blocks = static_cast<int>(num_blocks);
  backend_ = make_backend(config.device, model, kv, n_threads_);
  if (config.profile) {
    std::unordered_map<const void*, std::string> names;
    const LlamaWeights& w = model.weights;
    names[w.output.data] = "output";
    for (const LlamaLayerWeights& l : w.layers) {
      names[l.attn_q.data] = "attn_q";
      names[l.attn_k.data] = "attn_k";
      names[l.attn_v.data] = "attn_v";
      names[l.attn_output.data] = "attn_output";
      names[l.ffn_gate.data] = "ffn_gate";
      names[l.ffn_up.data] = "ffn_up";
      names[l.ffn_down.data] = "ffn_down";
    }
    auto profiling = std::make_unique<ProfilingBackend>(std::move(backend_), std::move(names));
    profile_ = &profiling->profile();
    backend_ = std::move(profiling);
  }
}

ModelRunner::~ModelRunner() = default;

std::string ModelRunner::backend_name() const { return backend_->name(); }
const OpProfile* ModelRunner::profile() const { return profile_; }
uint64_t ModelRunner::kv_pool_bytes() const { return backend_->kv_pool_bytes(); }

MachinePeaks ModelRunner::peaks(bool with_compute) {
  MachinePeaks p;
  const BandwidthPeak bandwidth = backend_->peak_bandwidth();
  p.bandwidth_gb_s = bandwidth.gb_per_s;
  p.bandwidth_source = bandwidth.source;
  if (with_compute) {
    const ComputePeak compute = backend_->peak_compute();
    p.compute_gflop_s = compute.gflop_per_s;
    p.compute_source = compute.source;
  }
  return p;
}

int ModelRunner::num_blocks() const { return backend_->kv_geometry().num_blocks; }
int ModelRunner::block_size() const { return backend_->kv_geometry().block_size; }

std::span<const float> ModelRunner::run(const ForwardBatch& batch, const std::vector<BlockCopy>& copies) {
  const auto start = std::chrono::steady_clock::now();
  if (!copies.empty()) backend_->copy_blocks(copies);
  logits_.resize(batch.logit_rows.size() * static_cast<size_t>(model_.config.n_vocab));
  llama_forward(*backend_, model_.config, model_.weights, batch, logits_.data());

  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  bool all_single = true;
  uint64_t kv_layer_tokens_read = 0;  // over the layers, the cached positions each one's attention reads
  const ModelConfig& c = model_.config;
  for (const SeqView& s : batch.seqs) {
    all_single = all_single && s.n_new == 1;
    for (int64_t layer = 0; layer < c.n_layer; ++layer) {
      // A sliding-window layer reads the last `window` positions only.
      const int64_t window = c.layer_window(layer);
      kv_layer_tokens_read += static_cast<uint64_t>(window > 0 ? std::min<int64_t>(s.context_length, window)
                                                               : s.context_length);
    }
  }
  const uint64_t kv_bytes_read = kv_layer_tokens_read * (kv_bytes_per_token_ / static_cast<uint64_t>(c.n_layer));
  counters_.forwards += 1;
  const double flops = forward_flops(model_.config, batch).total();
  if (all_single) {
    counters_.decode_flops += flops;
    counters_.decode_tokens += batch.n_tokens();
    counters_.decode_steps += 1;
    counters_.decode_seconds += seconds;
    counters_.decode_weight_bytes += model_.weights.bytes_per_step;
    counters_.decode_kv_bytes += kv_bytes_read;
  } else {
    counters_.prefill_flops += flops;
    counters_.prefill_bytes += model_.weights.bytes_per_step + kv_bytes_read;
    counters_.prefill_kv_bytes += kv_bytes_read;
    counters_.prefill_tokens += batch.n_tokens();
    counters_.prefill_seconds += seconds;
  }
  return logits_;
}

}  // namespace pagedllm
