#include "model_loader/model_weights.h"

#include <fmt/format.h>

#include "common/error.h"
#include "tensor/dequantize.h"
#include "model_loader/gguf.h"

namespace pagedllm {
namespace {

class WeightBinder {
 public:
  WeightBinder(const GgufFile& file, LlamaWeights& weights) : file_(file), weights_(weights) {}

  const GgufTensorInfo* find(const std::string& name, bool required) {
    const GgufTensorInfo* t = file_.find_tensor(name);
    if (t == nullptr && required) fail("{}: required tensor '{}' is missing", file_.path(), name);
    return t;
  }

  // A 2-D weight [n_cols, n_rows] in ggml order (n_cols contiguous).
  WeightMatrix matrix(const std::string& name, int64_t n_cols, int64_t n_rows) {
    const GgufTensorInfo* t = find(name, true);
    if (t->ne[0] != n_cols || t->ne[1] != n_rows || t->ne[2] != 1 || t->ne[3] != 1) {
      fail("{}: tensor '{}' has shape {}, expected [{}, {}]", file_.path(), name, t->shape_string(), n_cols, n_rows);
    }
    const TypeTraits& traits = type_traits(t->type);
    if (!traits.can_compute) {
      fail("{}: tensor '{}' has type {}, which pagedllm cannot compute with (supported: F32, F16, BF16, Q4_0, "
           "Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K)", file_.path(), name, traits.name);
    }
    return WeightMatrix{t->type, t->data, n_cols, n_rows};
  }

  // A 1-D vector of `n` elements as f32 (converted once when stored as F16/BF16).
  const float* vector(const std::string& name, int64_t n, bool required) {
    const GgufTensorInfo* t = find(name, required);
    if (t == nullptr) return nullptr;
    if (t->n_elements() != n || t->ne[0] != n) {
      fail("{}: tensor '{}' has shape {}, expected [{}]", file_.path(), name, t->shape_string(), n);
    }
    weights_.bytes_per_step += t->n_bytes;
    if (t->type == GgmlType::F32 && reinterpret_cast<uintptr_t>(t->data) % alignof(float) == 0) {
      return reinterpret_cast<const float*>(t->data);  // used in place from the mmap
    }
    if (!type_traits(t->type).can_compute) {
      fail("{}: tensor '{}' has type {}, expected F32", file_.path(), name, type_name(t->type));
    }
    auto copy = std::make_unique<std::vector<float>>(static_cast<size_t>(n));
    dequantize_row(t->type, t->data, copy->data(), n);
    weights_.owned.push_back(std::move(copy));
    return weights_.owned.back()->data();
  }

 private:
  const GgufFile& file_;
  LlamaWeights& weights_;
};


}  // namespace

LlamaWeights load_llama_weights(const GgufFile& file, const ModelConfig& c) {
  LlamaWeights w;
  WeightBinder bind(file, w);
  w.token_embd = bind.matrix("token_embd.weight", c.n_embd, c.n_vocab);
  w.output = c.tied_embeddings ? w.token_embd : bind.matrix("output.weight", c.n_embd, c.n_vocab);
  w.output_norm = bind.vector("output_norm.weight", c.n_embd, true);
  w.output_bias = bind.vector("output.bias", c.n_vocab, false);
  if (c.traits->rope_freqs) w.rope_freqs = bind.vector("rope_freqs.weight", c.n_rot / 2, false);
  w.matrix_bytes = weight_matrix_bytes(w.token_embd) + (c.tied_embeddings ? 0 : weight_matrix_bytes(w.output));
  w.bytes_per_step += weight_matrix_bytes(w.output);
  w.layers.resize(static_cast<size_t>(c.n_layer));
  for (int64_t i = 0; i < c.n_layer; ++i) {
    LlamaLayerWeights& l = w.layers[static_cast<size_t>(i)];
    const std::string p = fmt::format("blk.{}.", i);
    l.attn_norm = bind.vector(p + "attn_norm.weight", c.n_embd, true);
    l.attn_q = bind.matrix(p + "attn_q.weight", c.n_embd, c.q_dim());
    l.attn_k = bind.matrix(p + "attn_k.weight", c.n_embd, c.kv_dim());
    l.attn_v = bind.matrix(p + "attn_v.weight", c.n_embd, c.kv_dim());
    l.attn_output = bind.matrix(p + "attn_output.weight", c.q_dim(), c.n_embd);
    const bool bias_required = c.traits->qkv_bias_required;
    l.bias_q = bind.vector(p + "attn_q.bias", c.q_dim(), bias_required);
    l.bias_k = bind.vector(p + "attn_k.bias", c.kv_dim(), bias_required);
    l.bias_v = bind.vector(p + "attn_v.bias", c.kv_dim(), bias_required);
    if (c.has_qk_norm) {
      l.attn_q_norm = bind.vector(p + "attn_q_norm.weight", c.head_dim, true);
      l.attn_k_norm = bind.vector(p + "attn_k_norm.weight", c.head_dim, true);
    }
    l.bias_output = bind.vector(p + "attn_output.bias", c.n_embd, false);
    l.ffn_norm = bind.vector(p + "ffn_norm.weight", c.n_embd, true);
    l.ffn_gate = bind.matrix(p + "ffn_gate.weight", c.n_embd, c.n_ff);
    l.ffn_up = bind.matrix(p + "ffn_up.weight", c.n_embd, c.n_ff);
    l.ffn_down = bind.matrix(p + "ffn_down.weight", c.n_ff, c.n_embd);
    if (c.has_post_norms) {
      l.post_attention_norm = bind.vector(p + "post_attention_norm.weight", c.n_embd, true);
      l.post_ffw_norm = bind.vector(p + "post_ffw_norm.weight", c.n_embd, true);
    }
    for (const WeightMatrix* m : {&l.attn_q, &l.attn_k, &l.attn_v, &l.attn_output, &l.ffn_gate, &l.ffn_up,
                                  &l.ffn_down}) {
      w.matrix_bytes += weight_matrix_bytes(*m);
      w.bytes_per_step += weight_matrix_bytes(*m);
    }
  }
  return w;
}

}  // namespace pagedllm
