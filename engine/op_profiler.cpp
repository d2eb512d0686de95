#include "engine/op_profiler.h"

#include <algorithm>

#include "tensor/kv_dtype.h"

namespace pagedllm {

ProfilingBackend::ProfilingBackend(std::unique_ptr<Backend> inner,
                                   std::unordered_map<const void*, std::string> matrix_names)
    : inner_(std::move(inner)), matrix_names_(std::move(matrix_names)) {}

template <typename Body>
void ProfilingBackend::timed(const std::string& op, double bytes, double flops, Body&& body) {
  const auto start = std::chrono::steady_clock::now();
  body();
  inner_->synchronize();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::vector<OpProfileRow>& rows = decoding_ ? profile_.decode : profile_.prefill;
  auto it = std::find_if(rows.begin(), rows.end(), [&](const OpProfileRow& r) { return r.op == op; });
  if (it == rows.end()) {
    rows.push_back(OpProfileRow{op});
    it = rows.end() - 1;
  }
  it->calls += 1;
  it->seconds += seconds;
  it->bytes += bytes;
  it->flops += flops;
}

void ProfilingBackend::begin_batch(const ForwardBatch& batch, const AttentionParams& attention) {
  batch_ = &batch;
  decoding_ = std::all_of(batch.seqs.begin(), batch.seqs.end(), [](const SeqView& s) { return s.n_new == 1; });
  (decoding_ ? profile_.decode_forwards : profile_.prefill_forwards) += 1;
  timed("begin batch (inputs, plans)", 12.0 * batch.n_tokens(), 0, [&] { inner_->begin_batch(batch, attention); });
}

void ProfilingBackend::copy_blocks(std::span<const BlockCopy> copies) {
  const double bytes = 2.0 * static_cast<double>(inner_->kv_geometry().block_bytes()) * copies.size();
  timed("copy-on-write block copies", bytes, 0, [&] { inner_->copy_blocks(copies); });
}

void ProfilingBackend::embed(const WeightMatrix& table, float* out) {
  const double n = batch_ != nullptr ? batch_->n_tokens() : 0;
  const double bytes = n * (static_cast<double>(row_bytes(table.type, table.n_cols)) + 4.0 * table.n_cols);
  timed("embedding", bytes, 0, [&] { inner_->embed(table, out); });
}

void ProfilingBackend::rms_norm(const float* x, const float* gain, float* out, int64_t n_rows, int64_t n, float eps) {
  timed("rms_norm", 8.0 * n_rows * n + 4.0 * n, 4.0 * n_rows * n, [&] { inner_->rms_norm(x, gain, out, n_rows, n, eps); });
}

void ProfilingBackend::add_rms_norm(float* x, const float* delta, const float* gain, float* out, int64_t n_rows,
                                    int64_t n, float eps) {
  timed("add + rms_norm", 16.0 * n_rows * n + 4.0 * n, 5.0 * n_rows * n,
        [&] { inner_->add_rms_norm(x, delta, gain, out, n_rows, n, eps); });
}

void ProfilingBackend::rms_norm_logit_rows(const float* x, const float* gain, float* out, int64_t n, float eps) {
  const double rows = batch_ != nullptr ? static_cast<double>(batch_->logit_rows.size()) : 0;
  timed("rms_norm (logit rows)", 8.0 * rows * n + 4.0 * n, 4.0 * rows * n,
        [&] { inner_->rms_norm_logit_rows(x, gain, out, n, eps); });
}

void ProfilingBackend::matmul(std::span<const WeightMatrix* const> weights, const float* x, int64_t n_rows,
                              std::span<float* const> y) {
  double bytes = 4.0 * static_cast<double>(n_rows) * static_cast<double>(weights.front()->n_cols);
  double flops = 0;
  for (const WeightMatrix* w : weights) {
    bytes += static_cast<double>(weight_matrix_bytes(*w)) + 4.0 * static_cast<double>(n_rows) * w->n_rows;
    flops += 2.0 * static_cast<double>(n_rows) * static_cast<double>(w->n_rows) * static_cast<double>(w->n_cols);
  }
  std::string name = "matmul ";
  for (size_t i = 0; i < weights.size(); ++i) {
    if (i > 0) name += '+';
    auto it = matrix_names_.find(weights[i]->data);
    name += it != matrix_names_.end() ? it->second : std::string("?");
  }
  timed(name, bytes, flops, [&] { inner_->matmul(weights, x, n_rows, y); });
}

void ProfilingBackend::add_bias(float* x, const float* bias, int64_t n_rows, int64_t n) {
  timed("add bias", 8.0 * n_rows * n, static_cast<double>(n_rows) * n, [&] { inner_->add_bias(x, bias, n_rows, n); });
}

void ProfilingBackend::rope(float* q, float* k, int n_head, int n_head_kv, int head_dim, const RopeParams& params,
                            const float* freq_factors) {
  const double n = batch_ != nullptr ? batch_->n_tokens() : 0;
  const double elements = n * (n_head + n_head_kv) * head_dim;
  timed("rope", 8.0 * elements, 3.0 * elements,
        [&] { inner_->rope(q, k, n_head, n_head_kv, head_dim, params, freq_factors); });
}

void ProfilingBackend::write_kv(int layer, const float* k, const float* v) {
  const KvGeometry& g = inner_->kv_geometry();
  const double n = batch_ != nullptr ? batch_->n_tokens() : 0;
  const double elements = 2.0 * n * g.n_head_kv * g.head_dim;
  const double stored_bytes_per_element = static_cast<double>(kv_row_bytes(g.dtype, g.head_dim)) / g.head_dim;
  timed("write K/V", elements * (4.0 + stored_bytes_per_element), 0,
        [&] { inner_->write_kv(layer, k, v); });
}

void ProfilingBackend::attention(int layer, float* q, float* out, const AttentionParams& params) {
  const KvGeometry& g = inner_->kv_geometry();
  double kv_rows = 0, keys_seen = 0;
  if (batch_ != nullptr) {
    for (const SeqView& s : batch_->seqs) {
      kv_rows += s.context_length;
      const double first = static_cast<double>(s.context_length - s.n_new) + 1.0;
      keys_seen += (first + s.context_length) * s.n_new / 2.0;
    }
  }
  const double n = batch_ != nullptr ? batch_->n_tokens() : 0;
  const double bytes = 2.0 * kv_rows * static_cast<double>(g.slot_bytes()) +
                       8.0 * n * params.n_head * params.head_dim;
  const double flops = 4.0 * params.n_head * params.head_dim * keys_seen;
  timed("attention", bytes, flops, [&] { inner_->attention(layer, q, out, params); });
}

void ProfilingBackend::attention_reference(int layer, const float* q, float* out, const AttentionParams& params) {
  timed("attention (reference)", 0, 0, [&] { inner_->attention_reference(layer, q, out, params); });
}

void ProfilingBackend::swiglu(float* gate, const float* up, int64_t n) {
  timed("swiglu", 12.0 * n, 6.0 * n, [&] { inner_->swiglu(gate, up, n); });
}

void ProfilingBackend::geglu(float* gate, const float* up, int64_t n) {
  timed("geglu", 12.0 * n, 12.0 * n, [&] { inner_->geglu(gate, up, n); });
}

void ProfilingBackend::scale(float* x, float factor, int64_t n) {
  timed("scale", 8.0 * n, static_cast<double>(n), [&] { inner_->scale(x, factor, n); });
}

void ProfilingBackend::add(float* x, const float* y, int64_t n) {
  timed("add", 12.0 * n, static_cast<double>(n), [&] { inner_->add(x, y, n); });
}

void ProfilingBackend::read_to_host(const float* x, int64_t n, float* host) {
  timed("logits to host", 8.0 * n, 0, [&] { inner_->read_to_host(x, n, host); });
}

}  // namespace pagedllm
