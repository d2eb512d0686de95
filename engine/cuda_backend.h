#pragma once
// The llama forward on an NVIDIA GPU: the same layer sequence and math as CpuBackend, with kernels/cuda.
//
// The weights are uploaded once, each matrix in its GGUF format (quantized blocks stay quantized). The K/V pools
// live in device memory, f16, [n_layer][K, V][num_blocks, block_size, n_head_kv, head_dim], sized by the engine's
// block count; the cache manager stays on the host and only slot mappings and block tables cross over. Each
// forward uploads its inputs in one copy and downloads only the wanted logits rows (or, with forward_sample, only
// the sampled tokens).
//
// Declared in every build; without CUDA compiled in, the constructor throws pagedllm::Error.
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "engine/backend.h"
#include "model_loader/model_weights.h"
#include "tensor/kv_dtype.h"
#include "kernels/cuda/device_info.h"

namespace pagedllm {

struct CudaBackendOptions {
  int device_index = 0;
  // Batches of up to this many tokens use the fused GEMV kernels (the CPU's numerics); larger ones cuBLAS. At most
  // 8; 0 sends every product to cuBLAS (tests use both).
  int gemv_max_rows = 8;
};

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
  // Throws pagedllm::Error when CUDA is not compiled in, the device is missing, the KV type is not f16, a weight
  // type cannot be computed on the GPU, or the device memory is too small (naming the sizes).
  CudaBackend(const ModelConfig& config, const LlamaWeights& weights, int num_blocks, int block_size,
              KvDtype kv_dtype, const CudaBackendOptions& options = {});
  ~CudaBackend() override;
  CudaBackend(const CudaBackend&) = delete;
  CudaBackend& operator=(const CudaBackend&) = delete;

  std::string name() const override { return "cuda"; }
  void copy_blocks(std::span<const BlockCopy> copies) override;
  void forward(const BatchInput& batch, float* logits) override;
  uint64_t kv_pool_bytes() const override;

  // The forward, then one token per logits row sampled on the device. settings, tokens: [logit_rows.size()].
  void forward_sample(const BatchInput& batch, std::span<const GpuSamplingSettings> settings, int32_t* tokens);

  const GpuDeviceInfo& device_info() const;
  double peak_bandwidth_gb_s() const { return device_info().peak_bandwidth_gb_s; }
  uint64_t weight_bytes() const;  // device memory taken by the uploaded weights
  // One slot's K and V rows of a layer, widened to f32 (for tests). k_out, v_out: [n_head_kv, head_dim].
  void read_kv(int layer, int32_t slot, float* k_out, float* v_out) const;
  void synchronize() const;  // waits for every queued kernel (timing)

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace pagedllm
