#include "model_loader/model_config.h"

#include <cmath>
#include <cstdint>
#include <utility>

#include <fmt/format.h>

#include "common/error.h"
#include "model_loader/gguf.h"

namespace pagedllm {
namespace {

// The supported families, each checked against llama.cpp on a synthetic model of its exact layout
// (tests/golden/*-synthetic.json). Qwen2 and Qwen2.5 files carry q/k/v biases; llama.cpp's loader accepts a qwen2
// file without them, so they are required by none. Every family falls back to ChatML, as llama.cpp does for a file
// without a template. Gemma 3 is checked on the real 270M file: its converter already adds the 1 of Gemma's
// (1 + w) RMSNorm gains to the stored weights, so its norms are applied as written, like every other family's. Every
// sixth layer is global and the others see a window of attention.sliding_window keys, with RoPE base 10000; its
// turns end with <end_of_turn>, and a file without a template gets the built-in Gemma turn format.
constexpr ArchitectureTraits kArchitectures[] = {
    // name     rope layout       qkv bias required  qk norm  rope_freqs  fallback template
    {"llama", RopeLayout::Norm, false, false, true, "chatml"},
    {"qwen2", RopeLayout::Neox, false, false, false, "chatml"},
    {"qwen3", RopeLayout::Neox, false, true, false, "chatml"},
    //                                                                       activation  embedding x sqrt(n_embd)
    //                                                                       post norms  window pattern  local base
    {"gemma3", RopeLayout::Neox, false, true, false, "gemma", FfnActivation::GeluTanh, true, true, 6, 10000.0f},
};

// Per-layer arrays (a GGUF may store a hyper-parameter once per layer) are accepted when every layer has the same value, since this engine keeps
// one shape for all layers.
int64_t read_uniform_uint(const GgufFile& file, const std::string& key, int64_t n_layer, int64_t fallback) {
  const GgufValue* v = file.find(key);
  if (v == nullptr) return fallback;
  if (v->type != GgufValueType::ARRAY) return static_cast<int64_t>(file.get_uint(key));
  auto values = file.find_int_array(key);
  if (!values || values->empty()) fail("{}: metadata key '{}' is an empty array", file.path(), key);
  if (static_cast<int64_t>(values->size()) != n_layer) {
    fail("{}: metadata key '{}' has {} entries, expected one per layer ({})", file.path(), key, values->size(),
         n_layer);
  }
  for (int64_t x : *values) {
    if (x != values->front()) {
      fail("{}: metadata key '{}' varies across layers, which pagedllm does not support", file.path(), key);
    }
  }
  return values->front();
}

// A float the forward pass divides by, takes the root, power or logarithm of: it must be finite (also once narrowed
// to the 32 bits it is used as) and positive, or zero where zero means "not set". A NaN, an infinity or a wrong sign
// makes every logit NaN, and generation would "succeed" with empty text. (llama.cpp does not check these.)
float checked_float(const GgufFile& file, const std::string& key, double value, bool zero_allowed) {
  const auto narrowed = static_cast<float>(value);
  const bool in_range = zero_allowed ? value >= 0 : (value > 0 && narrowed > 0);
  if (!std::isfinite(value) || !std::isfinite(narrowed) || !in_range) {
    // As written in the file: an f32 value prints as the float it is (-1e-05, not -9.999999747378752e-06).
    const std::string written = static_cast<double>(narrowed) == value ? fmt::format("{}", narrowed)
                                                                         : fmt::format("{}", value);
    fail("{}: metadata key '{}' is {}, expected a finite {} number", file.path(), key, written,
         zero_allowed ? "non-negative" : "positive");
  }
  return narrowed;
}

}  // namespace

const ArchitectureTraits* find_architecture(std::string_view architecture) {
  for (const ArchitectureTraits& traits : kArchitectures) {
    if (traits.name == architecture) return &traits;
  }
  return nullptr;
}

std::string supported_architecture_list() {
  std::string list;
  for (const ArchitectureTraits& traits : kArchitectures) {
    if (!list.empty()) list += ", ";
    list += traits.name;
  }
  return list;
}

ModelConfig read_model_config(const GgufFile& file) {
  ModelConfig c;
  const std::string& path = file.path();
  auto arch = file.find_string("general.architecture");
  if (!arch) fail("{}: metadata key 'general.architecture' is missing", path);
  c.architecture = *arch;
  c.traits = find_architecture(c.architecture);
  if (c.traits == nullptr) {
    fail("{}: unsupported architecture '{}' (supported: {})", path, c.architecture, supported_architecture_list());
  }
  const std::string p = c.architecture + ".";
  c.name = file.find_string("general.name").value_or("");
  c.n_ctx_train = static_cast<int64_t>(file.get_uint(p + "context_length"));
  c.n_embd = static_cast<int64_t>(file.get_uint(p + "embedding_length"));
  c.n_layer = static_cast<int64_t>(file.get_uint(p + "block_count"));
  if (c.n_layer <= 0 || c.n_layer > 512) fail("{}: {}block_count is {} (must be 1..512)", path, p, c.n_layer);
  c.n_ff = read_uniform_uint(file, p + "feed_forward_length", c.n_layer, 0);
  c.n_head = read_uniform_uint(file, p + "attention.head_count", c.n_layer, 0);
  c.n_head_kv = read_uniform_uint(file, p + "attention.head_count_kv", c.n_layer, c.n_head);
  if (c.n_embd <= 0) fail("{}: {}embedding_length is {}", path, p, c.n_embd);
  if (c.n_ctx_train <= 0) fail("{}: {}context_length is {} (must be positive)", path, p, c.n_ctx_train);
  if (c.n_head <= 0) fail("{}: {}attention.head_count is missing or 0", path, p);
  if (c.n_head_kv <= 0 || c.n_head % c.n_head_kv != 0) {
    fail("{}: n_head_kv {} must be positive and divide n_head {}", path, c.n_head_kv, c.n_head);
  }
  if (c.n_ff <= 0) fail("{}: {}feed_forward_length is missing or 0", path, p);
  if (!file.has(p + "attention.key_length") && c.n_embd % c.n_head != 0) {
    fail("{}: {}embedding_length {} is not a multiple of attention.head_count {}", path, p, c.n_embd, c.n_head);
  }
  const int64_t default_head_dim = c.n_embd / c.n_head;
  c.head_dim = static_cast<int64_t>(file.find_uint(p + "attention.key_length").value_or(default_head_dim));
  const auto value_length = static_cast<int64_t>(file.find_uint(p + "attention.value_length").value_or(c.head_dim));
  if (value_length != c.head_dim) {
    fail("{}: key_length {} != value_length {} is not supported", path, c.head_dim, value_length);
  }
  if (c.head_dim <= 0 || c.head_dim % 2 != 0) fail("{}: head_dim {} must be positive and even", path, c.head_dim);
  // Limits far above any real model keep every derived size (q_dim, kv_dim, KV bytes per token) inside int64.
  constexpr int64_t kMaxDimension = int64_t{1} << 20;
  for (const auto& [what, value] : {std::pair<const char*, int64_t>{"embedding_length", c.n_embd},
                                    {"feed_forward_length", c.n_ff},
                                    {"attention.head_count", c.n_head},
                                    {"head_dim (attention.key_length)", c.head_dim}}) {
    if (value > kMaxDimension) fail("{}: {}{} is {} (at most {})", path, p, what, value, kMaxDimension);
  }
  if (c.n_ctx_train > INT32_MAX) fail("{}: {}context_length is {} (at most {})", path, p, c.n_ctx_train, INT32_MAX);
  c.n_rot = static_cast<int64_t>(file.find_uint(p + "rope.dimension_count").value_or(c.head_dim));
  if (c.n_rot != c.head_dim) {
    fail("{}: rope.dimension_count {} must equal head_dim {} for {}", path, c.n_rot, c.head_dim, c.architecture);
  }
  auto eps = file.find_float(p + "attention.layer_norm_rms_epsilon");
  if (!eps) fail("{}: required metadata key '{}attention.layer_norm_rms_epsilon' is missing", path, p);
  c.rms_eps = checked_float(file, p + "attention.layer_norm_rms_epsilon", *eps, false);
  c.rope_freq_base = checked_float(file, p + "rope.freq_base", file.find_float(p + "rope.freq_base").value_or(10000.0),
                                   false);
  c.rope_layout = c.traits->rope_layout;

  const std::string scaling = file.find_string(p + "rope.scaling.type").value_or("linear");
  std::string factor_key = p + "rope.scaling.factor";
  auto factor = file.find_float(factor_key);
  if (!factor) {
    factor_key = p + "rope.scale_linear";
    factor = file.find_float(factor_key);
  }
  if (scaling == "none") {
    c.rope_scaling = RopeScaling::None;
  } else if (scaling == "linear" || scaling == "yarn") {
    const double f = factor ? checked_float(file, factor_key, *factor, true) : 0.0;
    c.rope_freq_scale = f == 0.0 ? 1.0f : static_cast<float>(1.0 / f);
    if (!std::isfinite(c.rope_freq_scale)) {
      fail("{}: metadata key '{}' is {}, too small: the frequency scale 1 / factor does not fit a 32-bit float",
           path, factor_key, f);
    }
    c.rope_scaling = scaling == "yarn" ? RopeScaling::Yarn
                                       : (c.rope_freq_scale == 1.0f ? RopeScaling::None : RopeScaling::Linear);
  } else {
    fail("{}: unsupported {}rope.scaling.type '{}' (supported: none, linear, yarn)", path, p, scaling);
  }
  c.rope_attn_factor = checked_float(file, p + "rope.scaling.attn_factor",
                                     file.find_float(p + "rope.scaling.attn_factor").value_or(1.0), false);
  c.rope_original_context =
      static_cast<int64_t>(file.find_uint(p + "rope.scaling.original_context_length").value_or(c.n_ctx_train));

  if (file.find_uint(p + "expert_count").value_or(0) > 0) {
    fail("{}: mixture-of-experts {} models are not supported", path, c.architecture);
  }

  const GgufTensorInfo* embd = file.find_tensor("token_embd.weight");
  if (embd == nullptr) fail("{}: tensor 'token_embd.weight' is missing", path);
  // The vocabulary size comes from this tensor's shape, so the shape must be [n_embd, n_vocab], as llama.cpp's converter writes it.
  if (embd->ne[0] != c.n_embd || embd->ne[1] <= 0 || embd->ne[2] != 1 || embd->ne[3] != 1) {
    fail("{}: tensor 'token_embd.weight' has shape {}, expected [n_embd = {}, n_vocab]", path, embd->shape_string(),
         c.n_embd);
  }
  c.n_vocab = embd->ne[1];
  c.tied_embeddings = file.find_tensor("output.weight") == nullptr;
  c.has_rope_freqs = c.traits->rope_freqs && file.find_tensor("rope_freqs.weight") != nullptr;
  c.has_qkv_bias = file.find_tensor("blk.0.attn_q.bias") != nullptr;
  c.has_qk_norm = c.traits->qk_norm;
  c.ffn_activation = c.traits->ffn_activation;
  c.has_post_norms = c.traits->post_norms;
  // In f32, as the reference applies it (Hugging Face rounds the factor to the weights' dtype first).
  c.embedding_scale = c.traits->embedding_scaled ? std::sqrt(static_cast<float>(c.n_embd)) : 1.0f;
  // Gemma 3 scales queries by 1 / sqrt(query_pre_attn_scalar), which GGUF files do not carry: it equals head_dim
  // for every size except the 27B (62 layers), trained with n_embd / n_head.
  c.attention_scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  if (c.architecture == "gemma3" && c.n_layer == 62) {
    c.attention_scale = 1.0f / std::sqrt(static_cast<float>(c.n_embd / c.n_head));
  }
  if (c.traits->sliding_window_pattern > 0) {
    c.sliding_window = static_cast<int64_t>(file.find_uint(p + "attention.sliding_window").value_or(0));
    if (c.sliding_window > INT32_MAX) {
      fail("{}: {}attention.sliding_window is {} (at most {})", path, p, c.sliding_window, INT32_MAX);
    }
    c.sliding_window_pattern = c.traits->sliding_window_pattern;
    c.rope_freq_base_swa = checked_float(
        file, p + "rope.freq_base_swa",
        file.find_float(p + "rope.freq_base_swa").value_or(c.traits->sliding_window_rope_base), false);
  }
  return c;
}

}  // namespace pagedllm
