#pragma once
// `run --profile`: where a token's time goes, op by op. A Backend that forwards every op to the real backend, waits
// for it to finish (so that a GPU's time lands on the op that spent it), and adds up per op and per phase
// (prefill, decode) the calls, the seconds, and the bytes and arithmetic the op needs at least (every weight and
// cached K/V row read once, every activation read and written once; multiply-adds counted as two operations).
#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "engine/op_profile.h"
#include "kernels/backend.h"

namespace pagedllm {

class ProfilingBackend : public Backend {
 public:
  // matrix_names: a name for each weight matrix (by its data pointer), so products are told apart ("attn_q",
  // "ffn_down", "output"); a product of several matrices is named after all of them.
  ProfilingBackend(std::unique_ptr<Backend> inner, std::unordered_map<const void*, std::string> matrix_names);

  const OpProfile& profile() const { return profile_; }

  std::string name() const override { return inner_->name(); }
  const KvGeometry& kv_geometry() const override { return inner_->kv_geometry(); }
  uint64_t kv_pool_bytes() const override { return inner_->kv_pool_bytes(); }
  BandwidthPeak peak_bandwidth() override { return inner_->peak_bandwidth(); }
  ComputePeak peak_compute() override { return inner_->peak_compute(); }

  void begin_batch(const ForwardBatch& batch, const AttentionParams& attention) override;
  float* buffer(int slot, int64_t n) override { return inner_->buffer(slot, n); }
  void copy_blocks(std::span<const BlockCopy> copies) override;
  void embed(const WeightMatrix& table, float* out) override;
  void rms_norm(const float* x, const float* gain, float* out, int64_t n_rows, int64_t n, float eps) override;
  void add_rms_norm(float* x, const float* delta, const float* gain, float* out, int64_t n_rows, int64_t n,
                    float eps) override;
  void rms_norm_logit_rows(const float* x, const float* gain, float* out, int64_t n, float eps) override;
  void matmul(std::span<const WeightMatrix* const> weights, const float* x, int64_t n_rows,
              std::span<float* const> y) override;
  void add_bias(float* x, const float* bias, int64_t n_rows, int64_t n) override;
  void rope(float* q, float* k, int n_head, int n_head_kv, int head_dim, const RopeParams& params,
            const float* freq_factors) override;
  void write_kv(int layer, const float* k, const float* v) override;
  void attention(int layer, float* q, float* out, const AttentionParams& params) override;
  void attention_reference(int layer, const float* q, float* out, const AttentionParams& params) override;
  void swiglu(float* gate, const float* up, int64_t n) override;
  void geglu(float* gate, const float* up, int64_t n) override;
  void scale(float* x, float factor, int64_t n) override;
  void add(float* x, const float* y, int64_t n) override;
  void read_to_host(const float* x, int64_t n, float* host) override;
  void synchronize() override { inner_->synchronize(); }

 private:
  // Times `body` (waiting for the device after it) and books it under `op`.
  template <typename Body>
  void timed(const std::string& op, double bytes, double flops, Body&& body);

  std::unique_ptr<Backend> inner_;
  std::unordered_map<const void*, std::string> matrix_names_;
  OpProfile profile_;
  const ForwardBatch* batch_ = nullptr;
  bool decoding_ = false;
};

}  // namespace pagedllm
