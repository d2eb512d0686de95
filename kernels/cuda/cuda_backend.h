#pragma once
// The operations contract (kernels/backend.h) on an NVIDIA GPU, with the kernels of kernels/cuda.
//
// The weights are uploaded once, each matrix in its GGUF format (quantized blocks stay quantized), and found again
// by the host views the forward names them with. The K/V pools live in device memory, f16,
// [n_layer][K, V][num_blocks, block_size, n_head_kv, head_dim]; the cache manager stays on the host and only slot
// mappings and block tables cross over: begin_batch uploads every input of a forward in one copy, and only the
// wanted logits rows (or, with sample, only the sampled tokens) come back.
//
// Declared in every build; without CUDA compiled in, make_cuda_backend throws pagedllm::Error.
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "common/gpu_device.h"
#include "kernels/backend.h"

namespace pagedllm {

// One logits row's sampling on the device: temperature <= 0 is greedy; otherwise top_k (<= 0 off) -> top_p (>= 1
// off) -> min_p (<= 0 off) -> temperature, drawn with `uniform` in [0, 1) from the caller's RNG. Penalties are not
// applied on the device.
struct GpuSamplingSettings {
  float temperature = 0.0f;
  int32_t top_k = 0;
  float top_p = 1.0f;
  float min_p = 0.0f;
  float uniform = 0.0f;
};

class CudaBackend : public Backend {
 public:
  CudaBackend(const KvGeometry& kv, const WeightSet& weights, const CudaBackendOptions& options = {});
  ~CudaBackend() override;
  CudaBackend(const CudaBackend&) = delete;
  CudaBackend& operator=(const CudaBackend&) = delete;

  std::string name() const override { return "cuda"; }
  const KvGeometry& kv_geometry() const override;
  uint64_t kv_pool_bytes() const override;
  BandwidthPeak peak_bandwidth() override;
  ComputePeak peak_compute() override;

  void begin_batch(const ForwardBatch& batch, const AttentionParams& attention) override;
  float* buffer(int slot, int64_t n) override;
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
  void synchronize() override;

  // One token per row of `logits` ([settings.size(), n_vocab] in device memory, e.g. the forward's logits buffer),
  // sampled on the device; only the tokens come back. tokens: [settings.size()] host.
  void sample(const float* logits, int64_t n_vocab, std::span<const GpuSamplingSettings> settings, int32_t* tokens);

  const GpuDeviceInfo& device_info() const;
  uint64_t weight_bytes() const;  // device memory taken by the uploaded weights
  // One slot's K and V rows of a layer, widened to f32 (for tests). k_out, v_out: [n_head_kv, head_dim].
  void read_kv(int layer, int32_t slot, float* k_out, float* v_out) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace pagedllm
