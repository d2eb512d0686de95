#include "engine/cpu_backend.h"

#include <cmath>

#include "common/error.h"
#include "engine/rope_config.h"
#include "tensor/activation_quant.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/elementwise.h"

namespace pagedllm {

namespace {


KvShape kv_shape(const ModelConfig& c) {
  return KvShape{static_cast<int>(c.n_layer), static_cast<int>(c.n_head_kv), static_cast<int>(c.head_dim)};
}

}  // namespace

CpuBackend::CpuBackend(const ModelConfig& config, const LlamaWeights& weights, int num_blocks, int block_size,
                       KvDtype kv_dtype, int n_threads)
    : config_(config),
      weights_(weights),
      kv_pool_(kv_shape(config), num_blocks, block_size, kv_dtype),
      thread_pool_(n_threads),
      rope_(rope_params_for(config)),
      attention_scale_(1.0f / std::sqrt(static_cast<float>(config.head_dim))) {}

void CpuBackend::ensure_capacity(int64_t n) {
  if (n <= capacity_) return;
  const ModelConfig& c = config_;
  x_.resize(static_cast<size_t>(n * c.n_embd));
  h_.resize(static_cast<size_t>(n * c.n_embd));
  q_.resize(static_cast<size_t>(n * c.q_dim()));
  k_.resize(static_cast<size_t>(n * c.kv_dim()));
  v_.resize(static_cast<size_t>(n * c.kv_dim()));
  attn_.resize(static_cast<size_t>(n * c.q_dim()));
  proj_.resize(static_cast<size_t>(n * c.n_embd));
  gate_.resize(static_cast<size_t>(n * c.n_ff));
  up_.resize(static_cast<size_t>(n * c.n_ff));
  final_.resize(static_cast<size_t>(n * c.n_embd));
  capacity_ = n;
}

void CpuBackend::matmul(const WeightMatrix& w, const float* x, int64_t n_rows, float* y) {
  pagedllm::matmul(w, x, n_rows, y, thread_pool_, matmul_scratch_);
}

void CpuBackend::forward(const BatchInput& batch, float* logits) {
  const ModelConfig& c = config_;
  const int64_t n = batch.n_tokens();
  if (n == 0) return;
  ensure_capacity(n);
  const int64_t n_embd = c.n_embd;

  seq_attention_.clear();
  for (const SeqView& s : batch.seqs) {
    seq_attention_.push_back(SeqAttention{s.first_row, s.n_new, s.context_length, s.block_table.data(),
                                         static_cast<int32_t>(s.block_table.size())});
  }

  embedding_lookup(weights_.token_embd, batch.tokens.data(), n, x_.data());

  for (size_t layer_index = 0; layer_index < weights_.layers.size(); ++layer_index) {
    const LlamaLayerWeights& l = weights_.layers[layer_index];
    const int layer = static_cast<int>(layer_index);

    // Attention sublayer.
    rms_norm(x_.data(), l.attn_norm, h_.data(), n, n_embd, c.rms_eps);
    matmul(l.attn_q, h_.data(), n, q_.data());
    matmul(l.attn_k, h_.data(), n, k_.data());
    matmul(l.attn_v, h_.data(), n, v_.data());
    if (l.bias_q != nullptr) add_bias(q_.data(), l.bias_q, n, c.q_dim());
    if (l.bias_k != nullptr) add_bias(k_.data(), l.bias_k, n, c.kv_dim());
    if (l.bias_v != nullptr) add_bias(v_.data(), l.bias_v, n, c.kv_dim());
    rope(q_.data(), batch.positions.data(), n, c.n_head, c.head_dim, rope_, weights_.rope_freqs);
    rope(k_.data(), batch.positions.data(), n, c.n_head_kv, c.head_dim, rope_, weights_.rope_freqs);
    kv_pool_.write(layer, k_.data(), v_.data(), batch.slot_mapping);
    if (kv_pool_.dtype() == KvDtype::F16) {
      // With an F16 cache llama.cpp forms q.k from q rounded to F16 (the dot product's operand type); doing the
      // same keeps our logits within a few hundredths of its, where f32 q drifts by tenths on SmolLM2.
      for (int64_t i = 0; i < n * c.q_dim(); ++i) q_[static_cast<size_t>(i)] = round_through_fp16(q_[static_cast<size_t>(i)]);
    }

    AttentionArgs args;
    args.q = q_.data();
    args.out = attn_.data();
    args.k_pool = kv_pool_.k_data(layer);
    args.v_pool = kv_pool_.v_data(layer);
    args.dtype = kv_pool_.dtype();
    args.n_head = static_cast<int>(c.n_head);
    args.n_head_kv = static_cast<int>(c.n_head_kv);
    args.head_dim = static_cast<int>(c.head_dim);
    args.block_size = kv_pool_.block_size();
    args.scale = attention_scale_;
    args.seqs = seq_attention_;
    paged_attention(args, thread_pool_);

    matmul(l.attn_output, attn_.data(), n, proj_.data());
    if (l.bias_output != nullptr) add_bias(proj_.data(), l.bias_output, n, n_embd);
    add_in_place(x_.data(), proj_.data(), n * n_embd);

    // Feed-forward sublayer (SwiGLU).
    rms_norm(x_.data(), l.ffn_norm, h_.data(), n, n_embd, c.rms_eps);
    matmul(l.ffn_gate, h_.data(), n, gate_.data());
    matmul(l.ffn_up, h_.data(), n, up_.data());
    swiglu(gate_.data(), up_.data(), n * c.n_ff);
    matmul(l.ffn_down, gate_.data(), n, proj_.data());
    add_in_place(x_.data(), proj_.data(), n * n_embd);
  }

  // Only the rows whose logits are wanted go through the final norm and the vocabulary projection.
  const auto n_logits = static_cast<int64_t>(batch.logit_rows.size());
  if (n_logits == 0) return;
  for (int64_t i = 0; i < n_logits; ++i) {
    const int32_t row = batch.logit_rows[static_cast<size_t>(i)];
    if (row < 0 || row >= n) fail("internal: logit row {} outside the batch of {} tokens", row, n);
    rms_norm(x_.data() + row * n_embd, weights_.output_norm, final_.data() + i * n_embd, 1, n_embd, c.rms_eps);
  }
  matmul(weights_.output, final_.data(), n_logits, logits);
}

}  // namespace pagedllm
