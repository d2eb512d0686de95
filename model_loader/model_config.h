#pragma once
// Hyper-parameters of a model, read from GGUF metadata with llama.cpp's defaults for absent keys. Everything the
// forward pass needs to know about the shape lives here. The supported architectures (families) are one table,
// `architecture_traits`: what sets one family apart from another is written there and nowhere else.
#include <cstdint>
#include <string>
#include <string_view>

namespace pagedllm {

class GgufFile;

enum class RopeLayout { Norm, Neox };  // Norm: pairs (2i, 2i+1); Neox: pairs (i, i + n_rot/2)
enum class RopeScaling { None, Linear, Yarn };
enum class FfnActivation { Silu, GeluTanh };  // gate = act(gate) * up: SwiGLU (llama, qwen) or GeGLU (gemma)

// What one supported architecture (`general.architecture`) adds to the shared decoder: every family is a pre-norm
// transformer with RMSNorm, RoPE, grouped-query attention and a gated feed-forward, run by the one forward.
struct ArchitectureTraits {
  std::string_view name;        // "llama", "qwen2", "qwen3", "gemma3"
  RopeLayout rope_layout;       // llama's converter permutes Q/K rows for Norm; the others keep the native Neox order
  bool qkv_bias_required;       // blk.N.attn_{q,k,v}.bias must be present (otherwise they are optional)
  bool qk_norm;                 // blk.N.attn_{q,k}_norm.weight [head_dim]: RMSNorm of each head before RoPE
  bool rope_freqs;              // rope_freqs.weight (Llama 3 frequency factors) is read when present
  std::string_view fallback_chat_template;  // built-in template used when the file has none (or an unusable one)
  // Gemma's additions; llama, qwen2 and qwen3 have none of them.
  FfnActivation ffn_activation = FfnActivation::Silu;
  bool embedding_scaled = false;  // the embedding rows are multiplied by sqrt(n_embd) before the first layer
  bool post_norms = false;        // blk.N.post_attention_norm / post_ffw_norm: RMSNorm of each sublayer's output
  // Sliding-window layers: with a pattern P > 0 and a file that sets attention.sliding_window, layer i attends
  // only to the last `sliding_window` positions unless (i + 1) % P == 0 (a global layer). 0: every layer global.
  int sliding_window_pattern = 0;
  // RoPE base of the sliding-window layers when the file does not set rope.freq_base_swa (the global layers use
  // rope.freq_base with the file's scaling; the local ones are never scaled).
  float sliding_window_rope_base = 10000.0f;
};

// The traits of `architecture`, or nullptr when it is not supported.
const ArchitectureTraits* find_architecture(std::string_view architecture);
// "llama, qwen2, qwen3": the supported architectures, for messages and help texts.
std::string supported_architecture_list();

struct ModelConfig {
  std::string architecture;  // "llama", "qwen2", "qwen3" or "gemma3"
  const ArchitectureTraits* traits = nullptr;  // of `architecture`; never null once read
  std::string name;          // general.name, informational
  int64_t n_vocab = 0;       // rows of token_embd.weight
  int64_t n_embd = 0;
  int64_t n_layer = 0;
  int64_t n_head = 0;
  int64_t n_head_kv = 0;
  int64_t head_dim = 0;
  int64_t n_ff = 0;
  int64_t n_ctx_train = 0;
  int64_t n_rot = 0;
  float rms_eps = 1e-5f;
  RopeLayout rope_layout = RopeLayout::Norm;
  float rope_freq_base = 10000.0f;
  RopeScaling rope_scaling = RopeScaling::None;
  float rope_freq_scale = 1.0f;   // 1 / scaling factor
  float rope_attn_factor = 1.0f;
  int64_t rope_original_context = 0;  // YaRN
  bool has_rope_freqs = false;        // rope_freqs.weight (Llama 3 frequency factors)
  bool tied_embeddings = false;       // output.weight absent
  bool has_qkv_bias = false;          // blk.0.attn_q.bias present (then every layer has q, k and v biases)
  bool has_qk_norm = false;           // per-head q/k RMSNorm (qwen3, gemma3)
  FfnActivation ffn_activation = FfnActivation::Silu;
  float embedding_scale = 1.0f;       // the embedding rows are multiplied by this (gemma: sqrt(n_embd))
  bool has_post_norms = false;        // RMSNorm of each sublayer's output before the residual add (gemma)
  float attention_scale = 0.0f;       // applied to q.k: 1 / sqrt(head_dim), or what the family trained with
  int64_t sliding_window = 0;         // keys a sliding-window layer sees (the query's own included); 0: none
  int sliding_window_pattern = 0;     // see ArchitectureTraits; 0 with sliding_window > 0: every layer windowed
  float rope_freq_base_swa = 10000.0f;  // RoPE base of the sliding-window layers

  // Keys a query of `layer` attends to at most (itself included), 0 for a global layer.
  int64_t layer_window(int64_t layer) const {
    if (sliding_window <= 0) return 0;
    if (sliding_window_pattern > 0 && (layer + 1) % sliding_window_pattern == 0) return 0;
    return sliding_window;
  }
  // The largest window of any layer, 0 when some layer is global (its keys are then never out of reach).
  int64_t window_of_every_layer() const {
    int64_t widest = 0;
    for (int64_t layer = 0; layer < n_layer; ++layer) {
      const int64_t w = layer_window(layer);
      if (w == 0) return 0;
      widest = widest > w ? widest : w;
    }
    return widest;
  }

  int64_t n_gqa() const { return n_head / n_head_kv; }
  int64_t kv_dim() const { return n_head_kv * head_dim; }   // elements of K (or V) per token per layer
  int64_t q_dim() const { return n_head * head_dim; }
  // Bytes of K plus V per token across all layers for a KV element of `kv_element_bytes`.
  int64_t kv_bytes_per_token(int kv_element_bytes) const { return 2 * n_layer * kv_dim() * kv_element_bytes; }
};

// Reads and checks the config; an unsupported architecture is an Error listing the supported ones.
ModelConfig read_model_config(const GgufFile& file);

}  // namespace pagedllm
