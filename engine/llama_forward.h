#pragma once
// The decoder forward, written once against the operations contract (kernels/backend.h): the same layer loop runs on
// the CPU and on a GPU for every supported family (llama, qwen2, qwen3, gemma3). A family's differences arrive as
// data: the RoPE layout, activation, embedding scale and per-layer windows in the config, optional biases, q/k norm
// gains and post-sublayer norms in the weights (null when the file has none).
#include <cstdint>

#include "kernels/backend.h"
#include "kernels/common/rope.h"
#include "model_loader/model_config.h"
#include "model_loader/model_weights.h"

namespace pagedllm {

// The RoPE parameters every backend derives from a model's config (layout, base, linear or YaRN scaling).
RopeParams rope_params_for(const ModelConfig& config);

// Every matrix and vector the forward names, for backends that keep their own copies.
WeightSet forward_weight_set(const ModelConfig& config, const LlamaWeights& weights);

// The arithmetic of one forward, counted from the shapes: multiply-adds count as two operations.
struct ForwardFlops {
  double matmul = 0;     // every weight matrix against every token (the vocabulary projection only for logit rows)
  double attention = 0;  // q·k and p·v of every new token against the keys it sees (causal)
  double total() const { return matmul + attention; }
};
ForwardFlops forward_flops(const ModelConfig& config, const ForwardBatch& batch);

// One forward of `batch` on `backend`: the new tokens' K/V are written through the slot mapping, every sequence
// attends over its block table, and the logits of batch.logit_rows are computed. Returns them in backend memory,
// [logit_rows.size(), n_vocab] (valid until the next forward), and copies them to `host_logits` unless it is null.
// The backend holds the K/V pools and executes; this only sequences the ops.
const float* llama_forward(Backend& backend, const ModelConfig& config, const LlamaWeights& weights,
                           const ForwardBatch& batch, float* host_logits);

}  // namespace pagedllm
