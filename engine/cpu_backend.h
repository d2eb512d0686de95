#pragma once
// The llama forward on the CPU: weights used in place from the mmap (quantized blocks dequantized inside the dot
// products), K/V in a KvPool, attention by the tiled kernels of kernels/cpu.
#include <cstdint>
#include <memory>
#include <vector>

#include "common/thread_pool.h"
#include "engine/backend.h"
#include "engine/kv_pool.h"
#include "model_loader/model_weights.h"
#include "kernels/common/rope.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/matmul.h"

namespace pagedllm {

class CpuBackend : public Backend {
 public:
  CpuBackend(const ModelConfig& config, const LlamaWeights& weights, int num_blocks, int block_size,
             KvDtype kv_dtype, int n_threads);

  std::string name() const override { return "cpu"; }
  void copy_blocks(std::span<const BlockCopy> copies) override { kv_pool_.apply_copies(copies); }
  void forward(const BatchInput& batch, float* logits) override;
  uint64_t kv_pool_bytes() const override { return kv_pool_.size_bytes(); }

  const KvPool& kv_pool() const { return kv_pool_; }
  ThreadPool& thread_pool() { return thread_pool_; }

 private:
  void ensure_capacity(int64_t n_tokens);
  void matmul(const WeightMatrix& w, const float* x, int64_t n_rows, float* y);

  const ModelConfig& config_;
  const LlamaWeights& weights_;
  KvPool kv_pool_;
  ThreadPool thread_pool_;
  MatmulScratch matmul_scratch_;
  RopeParams rope_;
  float attention_scale_;

  // Activations, grown to the largest batch seen and reused (no allocation per token).
  int64_t capacity_ = 0;
  std::vector<float> x_;         // [n_tokens, n_embd] residual stream
  std::vector<float> h_;         // [n_tokens, n_embd] normalized input of a sublayer
  std::vector<float> q_;         // [n_tokens, n_head, head_dim]
  std::vector<float> k_;         // [n_tokens, n_head_kv, head_dim]
  std::vector<float> v_;         // [n_tokens, n_head_kv, head_dim]
  std::vector<float> attn_;      // [n_tokens, n_head, head_dim]
  std::vector<float> proj_;      // [n_tokens, n_embd] output of attn_output / ffn_down
  std::vector<float> gate_;      // [n_tokens, n_ff]
  std::vector<float> up_;        // [n_tokens, n_ff]
  std::vector<float> final_;     // [n_logits, n_embd]
  std::vector<SeqAttention> seq_attention_;  // [n_seqs] the batch's sequences as the attention kernel takes them
};

}  // namespace pagedllm
