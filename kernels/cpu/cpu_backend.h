#pragma once
// The operations contract (kernels/backend.h) on the CPU: weights used in place from the mmapped file (quantized
// blocks dequantized inside the dot products), K/V in a KvPool, the tiled attention kernels, a thread pool.
#include <cstdint>
#include <memory>
#include <vector>

#include "common/thread_pool.h"
#include "kernels/backend.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/kv_pool.h"
#include "kernels/cpu/matmul.h"

namespace pagedllm {

class CpuBackend : public Backend {
 public:
  CpuBackend(const KvGeometry& kv, int n_threads);

  std::string name() const override { return "cpu"; }
  const KvGeometry& kv_geometry() const override { return kv_pool_.geometry(); }
  uint64_t kv_pool_bytes() const override { return kv_pool_.size_bytes(); }
  BandwidthPeak peak_bandwidth() override;
  ComputePeak peak_compute() override;

  void begin_batch(const ForwardBatch& batch, const AttentionParams& attention) override;
  float* buffer(int slot, int64_t n) override;
  void copy_blocks(std::span<const BlockCopy> copies) override { kv_pool_.apply_copies(copies); }
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
  void synchronize() override {}

  const KvPool& kv_pool() const { return kv_pool_; }
  ThreadPool& thread_pool() { return thread_pool_; }

 private:
  const ForwardBatch& batch() const;
  AttentionArgs attention_args(int layer, const float* q, float* out, const AttentionParams& params) const;

  KvPool kv_pool_;
  ThreadPool thread_pool_;
  MatmulScratch matmul_scratch_;
  const ForwardBatch* batch_ = nullptr;
  std::vector<SeqAttention> seq_attention_;       // [n_seqs] the batch's sequences as the attention kernel takes them
  std::vector<std::vector<float>> buffers_;       // by slot
  BandwidthPeak peak_;
  ComputePeak compute_peak_;
};

}  // namespace pagedllm
