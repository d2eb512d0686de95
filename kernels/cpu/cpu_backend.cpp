#include "kernels/cpu/cpu_backend.h"

#include <cstring>

#include "common/error.h"
#include "common/memory_probe.h"
#include "kernels/common/batch_check.h"
#include "kernels/cpu/elementwise.h"
#include "kernels/cpu/quant_rows.h"
#include "tensor/activation_quant.h"

namespace pagedllm {

CpuBackend::CpuBackend(const KvGeometry& kv, int n_threads) : kv_pool_(kv), thread_pool_(n_threads) {}

std::unique_ptr<Backend> make_cpu_backend(const KvGeometry& kv, int n_threads) {
  return std::make_unique<CpuBackend>(kv, n_threads);
}

BandwidthPeak CpuBackend::peak_bandwidth() {
  if (peak_.gb_per_s <= 0.0) {
    const MemoryBandwidth measured = cpu_memory_bandwidth(thread_pool_);
    peak_.gb_per_s = measured.gb_per_s;
    peak_.source = measured.from_cache ? "streaming-read probe, cached" : "streaming-read probe";
  }
  return peak_;
}

ComputePeak CpuBackend::peak_compute() {
  if (compute_peak_.gflop_per_s <= 0.0) {
    const FmaThroughput measured = cpu_compute_peak(thread_pool_);
    compute_peak_.gflop_per_s = measured.gflop_per_s;
    compute_peak_.source = fmt::format("probe: {}{}", measured.method, measured.from_cache ? ", cached" : "");
  }
  return compute_peak_;
}

const ForwardBatch& CpuBackend::batch() const {
  if (batch_ == nullptr) fail("internal: a CPU op that reads the batch ran before begin_batch");
  return *batch_;
}

void CpuBackend::begin_batch(const ForwardBatch& batch, const AttentionParams&) {
  check_forward_batch(batch, kv_pool_.geometry());
  batch_ = &batch;
  seq_attention_.clear();
  for (const SeqView& s : batch.seqs) {
    seq_attention_.push_back(SeqAttention{s.first_row, s.n_new, s.context_length, s.block_table.data(),
                                          static_cast<int32_t>(s.block_table.size())});
  }
}

float* CpuBackend::buffer(int slot, int64_t n) {
  if (slot < 0 || n < 0) fail("internal: buffer slot {} of {} floats", slot, n);
  if (static_cast<size_t>(slot) >= buffers_.size()) buffers_.resize(static_cast<size_t>(slot) + 1);
  std::vector<float>& storage = buffers_[static_cast<size_t>(slot)];
  if (storage.size() < static_cast<size_t>(n)) storage.resize(static_cast<size_t>(n));
  return storage.data();
}

void CpuBackend::embed(const WeightMatrix& table, float* out) {
  const ForwardBatch& b = batch();
  embedding_lookup(table, b.tokens.data(), b.n_tokens(), out);
}

void CpuBackend::rms_norm(const float* x, const float* gain, float* out, int64_t n_rows, int64_t n, float eps) {
  pagedllm::rms_norm(x, gain, out, n_rows, n, eps);
}

void CpuBackend::add_rms_norm(float* x, const float* delta, const float* gain, float* out, int64_t n_rows,
                              int64_t n, float eps) {
  add_in_place(x, delta, n_rows * n);
  pagedllm::rms_norm(x, gain, out, n_rows, n, eps);
}

void CpuBackend::rms_norm_logit_rows(const float* x, const float* gain, float* out, int64_t n, float eps) {
  const ForwardBatch& b = batch();
  for (size_t i = 0; i < b.logit_rows.size(); ++i) {
    pagedllm::rms_norm(x + static_cast<int64_t>(b.logit_rows[i]) * n, gain, out + static_cast<int64_t>(i) * n, 1, n,
                       eps);
  }
}

void CpuBackend::matmul(std::span<const WeightMatrix* const> weights, const float* x, int64_t n_rows,
                        std::span<float* const> y) {
  if (weights.size() != y.size()) fail("internal: {} matrices for {} outputs", weights.size(), y.size());
  for (size_t i = 0; i < weights.size(); ++i) {
    pagedllm::matmul(*weights[i], x, n_rows, y[i], thread_pool_, matmul_scratch_);
  }
}

void CpuBackend::add_bias(float* x, const float* bias, int64_t n_rows, int64_t n) {
  pagedllm::add_bias(x, bias, n_rows, n);
}

void CpuBackend::rope(float* q, float* k, int n_head, int n_head_kv, int head_dim, const RopeParams& params,
                      const float* freq_factors) {
  const ForwardBatch& b = batch();
  pagedllm::rope(q, b.positions.data(), b.n_tokens(), n_head, head_dim, params, freq_factors);
  pagedllm::rope(k, b.positions.data(), b.n_tokens(), n_head_kv, head_dim, params, freq_factors);
}

void CpuBackend::write_kv(int layer, const float* k, const float* v) {
  kv_pool_.write(layer, k, v, batch().slot_mapping);
}

AttentionArgs CpuBackend::attention_args(int layer, const float* q, float* out, const AttentionParams& params) const {
  AttentionArgs args;
  args.q = q;
  args.out = out;
  args.k_pool = kv_pool_.k_data(layer);
  args.v_pool = kv_pool_.v_data(layer);
  args.dtype = kv_pool_.dtype();
  args.n_head = params.n_head;
  args.n_head_kv = params.n_head_kv;
  args.head_dim = params.head_dim;
  args.block_size = kv_pool_.block_size();
  args.scale = params.scale;
  args.window = params.window;
  args.seqs = seq_attention_;
  return args;
}

void CpuBackend::attention(int layer, float* q, float* out, const AttentionParams& params) {
  const ForwardBatch& b = batch();
  const int64_t count = static_cast<int64_t>(b.n_tokens()) * params.n_head * params.head_dim;
  if (kv_pool_.dtype() == KvDtype::F16) {
    for (int64_t i = 0; i < count; ++i) q[i] = round_through_fp16(q[i]);
  } else if (kv_dtype_is_quantized(kv_pool_.dtype())) {
    // Every head's query row is whole blocks (the pool checked head_dim), so the rows end to end are one long row.
    round_row_through_q8_0(q, static_cast<int>(count));
  }
  paged_attention(attention_args(layer, q, out, params), thread_pool_);
}

void CpuBackend::attention_reference(int layer, const float* q, float* out, const AttentionParams& params) {
  batch();
  naive_attention(attention_args(layer, q, out, params));
}

void CpuBackend::swiglu(float* gate, const float* up, int64_t n) { pagedllm::swiglu(gate, up, n); }

void CpuBackend::geglu(float* gate, const float* up, int64_t n) { pagedllm::geglu(gate, up, n); }

void CpuBackend::scale(float* x, float factor, int64_t n) { scale_in_place(x, factor, n); }

void CpuBackend::add(float* x, const float* y, int64_t n) { add_in_place(x, y, n); }

void CpuBackend::read_to_host(const float* x, int64_t n, float* host) {
  if (n > 0 && x != host) std::memcpy(host, x, static_cast<size_t>(n) * sizeof(float));
}

}  // namespace pagedllm
