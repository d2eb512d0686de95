#pragma once
// Views of a model's tensors inside the mmapped GGUF file, checked against the config's shapes. Every supported
// architecture has llama's layout plus what its traits add (q/k norms, gemma's post-sublayer norms). Matrices stay in their GGUF block formats;
// only the small 1-D vectors (norm gains, biases, rope factors) are held as f32.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "tensor/weight_matrix.h"
#include "model_loader/model_config.h"

namespace pagedllm {

class GgufFile;

struct LlamaLayerWeights {
  const float* attn_norm = nullptr;  // [n_embd]
  WeightMatrix attn_q;               // [n_head*head_dim rows, n_embd cols]
  WeightMatrix attn_k;               // [n_head_kv*head_dim, n_embd]
  WeightMatrix attn_v;               // [n_head_kv*head_dim, n_embd]
  WeightMatrix attn_output;          // [n_embd, n_head*head_dim]
  const float* bias_q = nullptr;     // [n_head*head_dim] optional
  const float* bias_k = nullptr;     // [n_head_kv*head_dim] optional
  const float* bias_v = nullptr;     // [n_head_kv*head_dim] optional
  const float* bias_output = nullptr;// [n_embd] optional
  const float* attn_q_norm = nullptr;// [head_dim] per-head RMSNorm gain of q (qwen3), else null
  const float* attn_k_norm = nullptr;// [head_dim] per-head RMSNorm gain of k (qwen3), else null
  const float* post_attention_norm = nullptr;  // [n_embd] RMSNorm gain of the attention output (gemma), else null
  const float* ffn_norm = nullptr;   // [n_embd]
  WeightMatrix ffn_gate;             // [n_ff, n_embd]
  WeightMatrix ffn_up;               // [n_ff, n_embd]
  WeightMatrix ffn_down;             // [n_embd, n_ff]
  const float* post_ffw_norm = nullptr;  // [n_embd] RMSNorm gain of the feed-forward output (gemma), else null
};

struct LlamaWeights {
  WeightMatrix token_embd;           // [n_vocab rows, n_embd cols]
  WeightMatrix output;               // [n_vocab, n_embd]; token_embd when tied
  const float* output_norm = nullptr;// [n_embd]
  const float* output_bias = nullptr;// [n_vocab] optional (llama.cpp's qwen2 loader accepts output.bias)
  const float* rope_freqs = nullptr; // [n_rot/2] optional
  std::vector<LlamaLayerWeights> layers;
  // Bytes of weights one forward step reads: every matrix once plus the vectors (the embedding lookup reads only
  // a few rows, so it is not counted).
  uint64_t bytes_per_step = 0;
  uint64_t matrix_bytes = 0;  // all matrices as stored, token_embd included once
  std::vector<std::unique_ptr<std::vector<float>>> owned;  // f32 copies of vectors stored as F16/BF16
};

// Checks every tensor's presence, shape and type against `config`; errors name the tensor and what was expected.
LlamaWeights load_llama_weights(const GgufFile& file, const ModelConfig& config);

}  // namespace pagedllm
