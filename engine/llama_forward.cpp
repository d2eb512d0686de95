#include "engine/llama_forward.h"

#include <algorithm>
#include <cmath>

namespace pagedllm {

RopeParams rope_params_for(const ModelConfig& c) {
  RopeParams p;
  p.n_rot = static_cast<int>(c.n_rot);
  p.freq_base = c.rope_freq_base;
  p.freq_scale = c.rope_freq_scale;
  p.attn_factor = c.rope_attn_factor;
  p.neox = c.rope_layout == RopeLayout::Neox;
  if (c.rope_scaling == RopeScaling::Yarn) {
    p.ext_factor = 1.0f;
    rope_yarn_corr_dims(p.n_rot, static_cast<int>(c.rope_original_context), p.freq_base, &p.yarn_low, &p.yarn_high);
  }
  return p;
}

WeightSet forward_weight_set(const ModelConfig& c, const LlamaWeights& w) {
  WeightSet set;
  set.matrices.push_back(w.token_embd);
  set.matrices.push_back(w.output);
  auto vector = [&](const float* data, int64_t size) {
    if (data != nullptr) set.vectors.push_back({data, size});
  };
  vector(w.output_norm, c.n_embd);
  vector(w.output_bias, c.n_vocab);
  vector(w.rope_freqs, c.n_rot / 2);
  for (const LlamaLayerWeights& l : w.layers) {
    for (const WeightMatrix* m : {&l.attn_q, &l.attn_k, &l.attn_v, &l.attn_output, &l.ffn_gate, &l.ffn_up,
                                  &l.ffn_down}) {
      set.matrices.push_back(*m);
    }
    vector(l.attn_norm, c.n_embd);
    vector(l.ffn_norm, c.n_embd);
    vector(l.bias_q, c.q_dim());
    vector(l.bias_k, c.kv_dim());
    vector(l.bias_v, c.kv_dim());
    vector(l.bias_output, c.n_embd);
    vector(l.attn_q_norm, c.head_dim);
    vector(l.attn_k_norm, c.head_dim);
    vector(l.post_attention_norm, c.n_embd);
    vector(l.post_ffw_norm, c.n_embd);
  }
  return set;
}

ForwardFlops forward_flops(const ModelConfig& c, const ForwardBatch& batch) {
  const double layer_weights = static_cast<double>(2 * c.q_dim() * c.n_embd + 2 * c.kv_dim() * c.n_embd +
                                                   3 * c.n_embd * c.n_ff);
  ForwardFlops flops;
  flops.matmul = 2.0 * static_cast<double>(batch.n_tokens()) * layer_weights * static_cast<double>(c.n_layer) +
                 2.0 * static_cast<double>(batch.logit_rows.size()) * static_cast<double>(c.n_vocab * c.n_embd);
  double attention_keys = 0;  // over the layers and the batch's new tokens, the keys each attends to
  for (int64_t layer = 0; layer < c.n_layer; ++layer) {
    const int64_t window = c.layer_window(layer);
    for (const SeqView& s : batch.seqs) {
      // Position p sees p + 1 keys, or at most `window` of them in a sliding-window layer.
      for (int64_t p = s.context_length - s.n_new; p < s.context_length; ++p) {
        attention_keys += static_cast<double>(window > 0 ? std::min(p + 1, window) : p + 1);
      }
    }
  }
  flops.attention = 4.0 * static_cast<double>(c.n_head * c.head_dim) * attention_keys;
  return flops;
}

namespace {

// The forward's buffers in backend memory, by slot number.
enum Buffer : int { kX, kH, kQ, kK, kV, kAttn, kProj, kGate, kUp, kFinal, kLogits };

}  // namespace

const float* llama_forward(Backend& backend, const ModelConfig& c, const LlamaWeights& w, const ForwardBatch& batch,
                           float* host_logits) {
  const int64_t n = batch.n_tokens();
  if (n == 0) return nullptr;
  const int64_t n_embd = c.n_embd;
  const auto n_logits = static_cast<int64_t>(batch.logit_rows.size());
  float* x = backend.buffer(kX, n * n_embd);             // [n, n_embd] the residual stream
  float* h = backend.buffer(kH, n * n_embd);             // [n, n_embd] a sublayer's normalized input
  float* q = backend.buffer(kQ, n * c.q_dim());          // [n, n_head, head_dim]
  float* k = backend.buffer(kK, n * c.kv_dim());         // [n, n_head_kv, head_dim]
  float* v = backend.buffer(kV, n * c.kv_dim());         // [n, n_head_kv, head_dim]
  float* attn = backend.buffer(kAttn, n * c.q_dim());    // [n, n_head, head_dim]
  float* proj = backend.buffer(kProj, n * n_embd);       // [n, n_embd] a sublayer's output
  float* gate = backend.buffer(kGate, n * c.n_ff);       // [n, n_ff]
  float* up = backend.buffer(kUp, n * c.n_ff);           // [n, n_ff]

  const RopeParams rope = rope_params_for(c);
  // Sliding-window layers rotate with their own base and no context scaling (gemma3's local layers).
  RopeParams rope_local = rope;
  rope_local.freq_base = c.rope_freq_base_swa;
  rope_local.freq_scale = 1.0f;
  rope_local.attn_factor = 1.0f;
  rope_local.ext_factor = 0.0f;
  AttentionParams attention;
  attention.n_head = static_cast<int>(c.n_head);
  attention.n_head_kv = static_cast<int>(c.n_head_kv);
  attention.head_dim = static_cast<int>(c.head_dim);
  attention.scale = c.attention_scale;
  backend.begin_batch(batch, attention);

  backend.embed(w.token_embd, x);
  if (c.embedding_scale != 1.0f) backend.scale(x, c.embedding_scale, n * n_embd);
  backend.rms_norm(x, w.layers.front().attn_norm, h, n, n_embd, c.rms_eps);
  for (size_t layer_index = 0; layer_index < w.layers.size(); ++layer_index) {
    const LlamaLayerWeights& l = w.layers[layer_index];
    const int layer = static_cast<int>(layer_index);
    attention.window = static_cast<int>(c.layer_window(layer));
    const RopeParams& layer_rope = attention.window > 0 ? rope_local : rope;

    // Attention sublayer; h holds its normalized input.
    const WeightMatrix* qkv[] = {&l.attn_q, &l.attn_k, &l.attn_v};
    float* const qkv_out[] = {q, k, v};
    backend.matmul(qkv, h, n, qkv_out);
    if (l.bias_q != nullptr) backend.add_bias(q, l.bias_q, n, c.q_dim());
    if (l.bias_k != nullptr) backend.add_bias(k, l.bias_k, n, c.kv_dim());
    if (l.bias_v != nullptr) backend.add_bias(v, l.bias_v, n, c.kv_dim());
    // qwen3: each head of q and k is RMS-normalized on its own before RoPE, so the norm runs over rows of head_dim
    // (q as [n * n_head, head_dim], k as [n * n_head_kv, head_dim]), in place. v is not normalized.
    if (l.attn_q_norm != nullptr) backend.rms_norm(q, l.attn_q_norm, q, n * c.n_head, c.head_dim, c.rms_eps);
    if (l.attn_k_norm != nullptr) backend.rms_norm(k, l.attn_k_norm, k, n * c.n_head_kv, c.head_dim, c.rms_eps);
    backend.rope(q, k, attention.n_head, attention.n_head_kv, attention.head_dim, layer_rope, w.rope_freqs);
    backend.write_kv(layer, k, v);
    backend.attention(layer, q, attn, attention);
    const WeightMatrix* output[] = {&l.attn_output};
    backend.matmul(output, attn, n, std::span<float* const>(&proj, 1));
    if (l.bias_output != nullptr) backend.add_bias(proj, l.bias_output, n, n_embd);
    // gemma: the sublayer's output is normalized again before it joins the residual stream (in place).
    if (l.post_attention_norm != nullptr) backend.rms_norm(proj, l.post_attention_norm, proj, n, n_embd, c.rms_eps);
    backend.add_rms_norm(x, proj, l.ffn_norm, h, n, n_embd, c.rms_eps);

    // Feed-forward sublayer (SwiGLU, or GeGLU for gemma); h holds its normalized input.
    const WeightMatrix* gate_up[] = {&l.ffn_gate, &l.ffn_up};
    float* const gate_up_out[] = {gate, up};
    backend.matmul(gate_up, h, n, gate_up_out);
    if (c.ffn_activation == FfnActivation::GeluTanh) {
      backend.geglu(gate, up, n * c.n_ff);
    } else {
      backend.swiglu(gate, up, n * c.n_ff);
    }
    const WeightMatrix* down[] = {&l.ffn_down};
    backend.matmul(down, gate, n, std::span<float* const>(&proj, 1));
    if (l.post_ffw_norm != nullptr) backend.rms_norm(proj, l.post_ffw_norm, proj, n, n_embd, c.rms_eps);
    if (layer_index + 1 < w.layers.size()) {
      backend.add_rms_norm(x, proj, w.layers[layer_index + 1].attn_norm, h, n, n_embd, c.rms_eps);
    } else {
      backend.add(x, proj, n * n_embd);
    }
  }
  if (n_logits == 0) return nullptr;

  // Only the rows whose logits are wanted go through the final norm and the vocabulary projection.
  float* final_rows = backend.buffer(kFinal, n_logits * n_embd);    // [n_logits, n_embd]
  float* logit_rows = backend.buffer(kLogits, n_logits * c.n_vocab);  // [n_logits, n_vocab]
  backend.rms_norm_logit_rows(x, w.output_norm, final_rows, n_embd, c.rms_eps);
  const WeightMatrix* vocabulary[] = {&w.output};
  backend.matmul(vocabulary, final_rows, n_logits, std::span<float* const>(&logit_rows, 1));
  if (w.output_bias != nullptr) backend.add_bias(logit_rows, w.output_bias, n_logits, c.n_vocab);
  if (host_logits != nullptr) backend.read_to_host(logit_rows, n_logits * c.n_vocab, host_logits);
  return logit_rows;
}

}  // namespace pagedllm
