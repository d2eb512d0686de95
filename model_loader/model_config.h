#pragma once
// Hyper-parameters of a `llama`-architecture model, read from GGUF metadata with llama.cpp's defaults
// for absent keys. Everything the forward pass needs to know about the shape lives here.
#include <cstdint>
#include <string>

namespace pagedllm {

class GgufFile;

enum class RopeLayout { Norm, Neox };  // Norm: pairs (2i, 2i+1); Neox: pairs (i, i + n_rot/2)
enum class RopeScaling { None, Linear, Yarn };

struct ModelConfig {
  std::string architecture;  // "llama"
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

  int64_t n_gqa() const { return n_head / n_head_kv; }
  int64_t kv_dim() const { return n_head_kv * head_dim; }   // elements of K (or V) per token per layer
  int64_t q_dim() const { return n_head * head_dim; }
  // Bytes of K plus V per token across all layers for a KV element of `kv_element_bytes`.
  int64_t kv_bytes_per_token(int kv_element_bytes) const { return 2 * n_layer * kv_dim() * kv_element_bytes; }
};

// Reads and checks the config; an unsupported architecture is an Error listing the supported ones.
ModelConfig read_model_config(const GgufFile& file);

}  // namespace pagedllm
