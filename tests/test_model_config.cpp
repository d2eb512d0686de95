// read_model_config on writer-made files: the derived shape (GQA/MQA/MHA), llama.cpp's defaults for absent keys,
// per-layer array forms, rope scaling, tied embeddings, each family's traits (llama, qwen2, qwen3, gemma3), and one clear
// Error per bad or missing key.
#include <doctest/doctest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "required_files.h"

#include "common/error.h"
#include "model_loader/gguf.h"
#include "model_loader/gguf_writer.h"
#include "model_loader/model_config.h"
#include "model_loader/model_weights.h"
#include "model_loader/synthetic_model.h"

using namespace pagedllm;

namespace {

SyntheticModelSpec micro_spec() {
  SyntheticModelSpec s;
  s.name = "micro";
  s.n_vocab = 260;
  s.n_embd = 32;
  s.n_layer = 2;
  s.n_head = 4;
  s.n_head_kv = 2;
  s.n_ff = 64;
  s.n_ctx = 128;
  return s;
}

// Builds the micro model, lets `change` edit its writer, and reads the config back.
ModelConfig config_after(const std::function<void(GgufWriter&)>& change, const SyntheticModelSpec& spec = micro_spec()) {
  GgufWriter w = synthetic_model_writer(spec);
  change(w);
  const std::vector<uint8_t> image = w.to_bytes();
  const auto file = GgufFile::from_memory(image, "config.gguf");
  return read_model_config(*file);
}

void expect_config_error(const std::function<void(GgufWriter&)>& change, const std::vector<std::string>& expected) {
  try {
    config_after(change);
    FAIL_CHECK("read_model_config accepted the file");
  } catch (const Error& e) {
    const std::string message = e.what();
    CAPTURE(message);
    CHECK_MESSAGE(message.find("config.gguf") != std::string::npos, "message does not name the file");
    for (const std::string& part : expected) {
      CHECK_MESSAGE(message.find(part) != std::string::npos, "message lacks '" << part << "'");
    }
  }
}

}  // namespace

TEST_CASE("the derived shape for MHA, GQA and MQA") {
  struct Shape {
    int64_t n_head, n_head_kv;
  };
  for (Shape shape : {Shape{4, 4}, Shape{4, 2}, Shape{8, 1}}) {
    CAPTURE(shape.n_head);
    CAPTURE(shape.n_head_kv);
    SyntheticModelSpec spec = micro_spec();
    spec.n_head = shape.n_head;
    spec.n_head_kv = shape.n_head_kv;
    const ModelConfig c = config_after([](GgufWriter&) {}, spec);
    CHECK(c.architecture == "llama");
    CHECK(c.name == "synthetic-micro");
    CHECK(c.n_vocab == 260);
    CHECK(c.n_embd == 32);
    CHECK(c.n_layer == 2);
    CHECK(c.n_ff == 64);
    CHECK(c.n_ctx_train == 128);
    CHECK(c.n_head == shape.n_head);
    CHECK(c.n_head_kv == shape.n_head_kv);
    CHECK(c.head_dim == 32 / shape.n_head);
    CHECK(c.n_rot == c.head_dim);
    CHECK(c.n_gqa() == shape.n_head / shape.n_head_kv);
    CHECK(c.q_dim() == 32);
    CHECK(c.kv_dim() == shape.n_head_kv * (32 / shape.n_head));
    // K and V, every layer, F16: 2 * 2 layers * kv_dim * 2 bytes.
    CHECK(c.kv_bytes_per_token(2) == 2 * 2 * c.kv_dim() * 2);
    CHECK(c.rms_eps == doctest::Approx(1e-5));
    CHECK(c.rope_layout == RopeLayout::Norm);
    CHECK(c.rope_scaling == RopeScaling::None);
    CHECK(c.rope_freq_scale == 1.0f);
    CHECK_FALSE(c.tied_embeddings);
    CHECK_FALSE(c.has_rope_freqs);
  }
}

TEST_CASE("absent optional keys take llama.cpp's defaults") {
  const ModelConfig c = config_after([](GgufWriter& w) {
    CHECK(w.remove("llama.attention.head_count_kv"));
    CHECK(w.remove("llama.rope.freq_base"));
    CHECK(w.remove("llama.rope.dimension_count"));
  });
  CHECK(c.n_head_kv == c.n_head);  // MHA
  CHECK(c.rope_freq_base == 10000.0f);
  CHECK(c.n_rot == c.head_dim);
  CHECK(c.rope_attn_factor == 1.0f);
  CHECK(c.rope_original_context == c.n_ctx_train);
}

TEST_CASE("explicit key_length and a head count stored as i32 are accepted") {
  const ModelConfig c = config_after([](GgufWriter& w) {
    w.set("llama.attention.head_count", gguf_value::i32(4));
    w.set_u32("llama.attention.key_length", 8);
    w.set_u32("llama.attention.value_length", 8);
  });
  CHECK(c.n_head == 4);
  CHECK(c.head_dim == 8);
}

TEST_CASE("per-layer array forms are accepted when uniform and rejected otherwise") {
  const int32_t uniform[] = {64, 64};
  CHECK(config_after([&](GgufWriter& w) { w.set("llama.feed_forward_length", gguf_value::i32_array(uniform)); })
            .n_ff == 64);
  const int32_t kv_heads[] = {2, 2};
  CHECK(config_after([&](GgufWriter& w) { w.set("llama.attention.head_count_kv", gguf_value::i32_array(kv_heads)); })
            .n_head_kv == 2);
  const int32_t varying[] = {64, 128};
  expect_config_error([&](GgufWriter& w) { w.set("llama.feed_forward_length", gguf_value::i32_array(varying)); },
                      {"llama.feed_forward_length", "varies across layers"});
  const int32_t three[] = {64, 64, 64};
  expect_config_error([&](GgufWriter& w) { w.set("llama.feed_forward_length", gguf_value::i32_array(three)); },
                      {"llama.feed_forward_length", "3 entries", "one per layer (2)"});
  expect_config_error([&](GgufWriter& w) { w.set("llama.feed_forward_length", gguf_value::string_array({"64", "64"})); },
                      {"llama.feed_forward_length", "expected an array of integers"});
}

TEST_CASE("rope scaling: linear, the legacy key, yarn, none") {
  const ModelConfig linear = config_after([](GgufWriter& w) {
    w.set_string("llama.rope.scaling.type", "linear");
    w.set_f32("llama.rope.scaling.factor", 4.0f);
  });
  CHECK(linear.rope_scaling == RopeScaling::Linear);
  CHECK(linear.rope_freq_scale == 0.25f);
  const ModelConfig legacy = config_after([](GgufWriter& w) { w.set_f32("llama.rope.scale_linear", 2.0f); });
  CHECK(legacy.rope_scaling == RopeScaling::Linear);
  CHECK(legacy.rope_freq_scale == 0.5f);
  const ModelConfig yarn = config_after([](GgufWriter& w) {
    w.set_string("llama.rope.scaling.type", "yarn");
    w.set_f32("llama.rope.scaling.factor", 8.0f);
    w.set_u32("llama.rope.scaling.original_context_length", 64);
    w.set_f32("llama.rope.scaling.attn_factor", 1.5f);
  });
  CHECK(yarn.rope_scaling == RopeScaling::Yarn);
  CHECK(yarn.rope_freq_scale == 0.125f);
  CHECK(yarn.rope_original_context == 64);
  CHECK(yarn.rope_attn_factor == 1.5f);
  const ModelConfig none = config_after([](GgufWriter& w) {
    w.set_string("llama.rope.scaling.type", "none");
    w.set_f32("llama.rope.scaling.factor", 4.0f);
  });
  CHECK(none.rope_scaling == RopeScaling::None);
  CHECK(none.rope_freq_scale == 1.0f);
  const ModelConfig zero = config_after([](GgufWriter& w) { w.set_f32("llama.rope.scaling.factor", 0.0f); });
  CHECK(zero.rope_scaling == RopeScaling::None);
}

TEST_CASE("tied embeddings and rope_freqs are detected from the tensors present") {
  SyntheticModelSpec spec = micro_spec();
  spec.tied_embeddings = true;
  const ModelConfig tied = config_after(
      [](GgufWriter& w) { w.add_tensor_f32("rope_freqs.weight", {4}, std::vector<float>{1, 1, 1, 1}); }, spec);
  CHECK(tied.tied_embeddings);
  CHECK(tied.has_rope_freqs);
}

TEST_CASE("an unsupported architecture is an Error listing the supported ones") {
  expect_config_error([](GgufWriter& w) { w.set_string("general.architecture", "gpt2"); },
                      {"unsupported architecture 'gpt2'", "supported: llama, qwen2, qwen3, gemma3)"});
  expect_config_error([](GgufWriter& w) { w.set_string("general.architecture", "mistral3"); },
                      {"'mistral3'", "supported: llama, qwen2, qwen3, gemma3)"});
  // A family this engine does not run is refused even when its keys look like a supported one's.
  expect_config_error([](GgufWriter& w) { w.set_string("general.architecture", "qwen2moe"); },
                      {"unsupported architecture 'qwen2moe'", "supported: llama, qwen2, qwen3, gemma3)"});
  expect_config_error([](GgufWriter& w) { w.remove("general.architecture"); }, {"'general.architecture'", "missing"});
  expect_config_error([](GgufWriter& w) { w.set_u32("general.architecture", 1); },
                      {"general.architecture", "expected string"});
}

TEST_CASE("each missing required key is named") {
  for (const char* key : {"llama.context_length", "llama.embedding_length", "llama.block_count",
                          "llama.attention.layer_norm_rms_epsilon", "llama.attention.head_count",
                          "llama.feed_forward_length"}) {
    CAPTURE(key);
    expect_config_error([&](GgufWriter& w) { REQUIRE(w.remove(key)); }, {std::string(key).substr(6)});
  }
}

TEST_CASE("bad values are Errors naming the key") {
  expect_config_error([](GgufWriter& w) { w.set_string("llama.context_length", "2048"); },
                      {"llama.context_length", "has type string"});
  expect_config_error([](GgufWriter& w) { w.set_f32("llama.embedding_length", 32.0f); },
                      {"llama.embedding_length", "has type f32"});
  expect_config_error([](GgufWriter& w) { w.set("llama.block_count", gguf_value::i32(-1)); }, {"llama.block_count"});
  expect_config_error([](GgufWriter& w) { w.set_u32("llama.block_count", 0); }, {"block_count is 0"});
  expect_config_error([](GgufWriter& w) { w.set_u32("llama.block_count", 100000); }, {"block_count is 100000"});
  expect_config_error([](GgufWriter& w) { w.set_u32("llama.context_length", 0); }, {"context_length is 0"});
  expect_config_error([](GgufWriter& w) { w.set_u32("llama.embedding_length", 0); }, {"embedding_length is 0"});
  expect_config_error([](GgufWriter& w) { w.set_u32("llama.attention.head_count", 0); }, {"head_count"});
  expect_config_error([](GgufWriter& w) { w.set_u32("llama.attention.head_count_kv", 3); },
                      {"n_head_kv 3", "n_head 4"});
  expect_config_error([](GgufWriter& w) { w.set_u32("llama.attention.head_count_kv", 8); }, {"n_head_kv 8"});
  expect_config_error([](GgufWriter& w) { w.set_u32("llama.attention.head_count", 6); },
                      {"embedding_length 32 is not a multiple of attention.head_count 6"});
  expect_config_error([](GgufWriter& w) { w.set_u32("llama.feed_forward_length", 0); }, {"feed_forward_length"});
  expect_config_error([](GgufWriter& w) { w.set_u32("llama.rope.dimension_count", 4); },
                      {"rope.dimension_count 4", "head_dim 8"});
  expect_config_error([](GgufWriter& w) { w.set_u32("llama.attention.value_length", 4); },
                      {"key_length 8 != value_length 4"});
  expect_config_error([](GgufWriter& w) { w.set_u32("llama.attention.key_length", 7); }, {"head_dim 7"});
  expect_config_error([](GgufWriter& w) { w.set_string("llama.rope.scaling.type", "longrope"); },
                      {"rope.scaling.type 'longrope'", "supported: none, linear, yarn"});
  expect_config_error([](GgufWriter& w) { w.set_u32("llama.expert_count", 8); }, {"mixture-of-experts"});
  expect_config_error([](GgufWriter& w) { w.set_u32("llama.attention.layer_norm_rms_epsilon", 1); },
                      {"layer_norm_rms_epsilon", "expected f32"});
}

TEST_CASE("float values the forward pass divides by, roots or raises must be finite and positive, named with their value") {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  const std::string eps = "llama.attention.layer_norm_rms_epsilon";
  expect_config_error([&](GgufWriter& w) { w.set_f32(eps, nan); }, {"'" + eps + "' is nan", "finite positive"});
  expect_config_error([&](GgufWriter& w) { w.set_f32(eps, -1e-5f); }, {"'" + eps + "' is -1", "finite positive"});
  expect_config_error([&](GgufWriter& w) { w.set_f32(eps, 0.0f); }, {"'" + eps + "' is 0"});
  expect_config_error([&](GgufWriter& w) { w.set_f32(eps, inf); }, {"'" + eps + "' is inf"});
  // An f64 value that is finite but not as the f32 the kernels use.
  expect_config_error([&](GgufWriter& w) { w.set(eps, gguf_value::f64(1e300)); }, {"'" + eps + "' is 1e+300"});
  const std::string base = "llama.rope.freq_base";
  expect_config_error([&](GgufWriter& w) { w.set_f32(base, 0.0f); }, {"'" + base + "' is 0", "finite positive"});
  expect_config_error([&](GgufWriter& w) { w.set_f32(base, -10000.0f); }, {"'" + base + "' is -10000"});
  expect_config_error([&](GgufWriter& w) { w.set_f32(base, nan); }, {"'" + base + "' is nan"});
  const std::string factor = "llama.rope.scaling.factor";
  expect_config_error([&](GgufWriter& w) { w.set_f32(factor, nan); }, {"'" + factor + "' is nan", "non-negative"});
  expect_config_error([&](GgufWriter& w) { w.set_f32(factor, -4.0f); }, {"'" + factor + "' is -4"});
  expect_config_error([&](GgufWriter& w) { w.set_f32(factor, 1e-40f); }, {"'" + factor + "'", "1 / factor"});
  expect_config_error([&](GgufWriter& w) { w.set_f32("llama.rope.scale_linear", nan); },
                      {"'llama.rope.scale_linear' is nan"});
  expect_config_error([&](GgufWriter& w) {
    w.set_string("llama.rope.scaling.type", "yarn");
    w.set_f32(factor, inf);
  }, {"'" + factor + "' is inf"});
  const std::string attn_factor = "llama.rope.scaling.attn_factor";
  expect_config_error([&](GgufWriter& w) { w.set_f32(attn_factor, nan); }, {"'" + attn_factor + "' is nan"});
  expect_config_error([&](GgufWriter& w) { w.set_f32(attn_factor, 0.0f); }, {"'" + attn_factor + "' is 0"});
  // The values real models use still load.
  const ModelConfig fine = config_after([&](GgufWriter& w) {
    w.set_f32(eps, 1e-6f);
    w.set_f32(base, 500000.0f);
    w.set_f32(factor, 8.0f);
  });
  CHECK(fine.rms_eps == 1e-6f);
  CHECK(fine.rope_freq_base == 500000.0f);
  CHECK(fine.rope_freq_scale == 0.125f);
}

TEST_CASE("absurd sizes are rejected before derived sizes could overflow int64") {
  // kv_bytes_per_token = 2 * n_layer * n_head_kv * head_dim * bytes: a head_dim of 2^61 would overflow it.
  expect_config_error([](GgufWriter& w) {
    w.set("llama.attention.key_length", gguf_value::u64(uint64_t{1} << 61));
    w.remove("llama.rope.dimension_count");
  }, {"head_dim (attention.key_length) is 2305843009213693952"});
  expect_config_error([](GgufWriter& w) { w.set("llama.feed_forward_length", gguf_value::u64(uint64_t{1} << 40)); },
                      {"feed_forward_length is 1099511627776"});
  expect_config_error([](GgufWriter& w) { w.set("llama.context_length", gguf_value::u64(uint64_t{1} << 40)); },
                      {"context_length is 1099511627776"});
  expect_config_error([](GgufWriter& w) { w.set("llama.context_length", gguf_value::u64(~uint64_t{0})); },
                      {"context_length is -1"});
}

TEST_CASE("token_embd.weight must exist with shape [n_embd, n_vocab]") {
  auto metadata_only = [](const std::function<void(GgufWriter&)>& add_tensors) {
    const GgufWriter full = synthetic_model_writer(micro_spec());
    GgufWriter w;
    for (const auto& [key, value] : full.metadata()) w.set(key, value);
    add_tensors(w);
    return w.to_bytes();
  };
  const auto no_embd = metadata_only([](GgufWriter&) {});
  CHECK_THROWS_WITH_AS(read_model_config(*GgufFile::from_memory(no_embd, "no_embd.gguf")),
                       doctest::Contains("no_embd.gguf: tensor 'token_embd.weight' is missing"), Error);
  const auto wrong = metadata_only([](GgufWriter& w) {
    w.add_tensor_f32("token_embd.weight", {16, 260}, std::vector<float>(16 * 260));
  });
  CHECK_THROWS_WITH_AS(read_model_config(*GgufFile::from_memory(wrong, "wrong.gguf")),
                       doctest::Contains("'token_embd.weight' has shape [16, 260], expected [n_embd = 32"), Error);
  const auto ok = metadata_only([](GgufWriter& w) {
    w.add_tensor_f32("token_embd.weight", {32, 300}, std::vector<float>(32 * 300));
  });
  CHECK(read_model_config(*GgufFile::from_memory(ok, "ok.gguf")).n_vocab == 300);
}

namespace {

// The micro llama model relabelled as `architecture`: every llama.* key moved to the new prefix, tensors unchanged.
GgufWriter relabelled_micro(const std::string& architecture) {
  GgufWriter w = synthetic_model_writer(micro_spec());
  const auto metadata = w.metadata();
  for (const auto& [key, value] : metadata) {
    if (key.rfind("llama.", 0) != 0) continue;
    w.remove(key);
    w.set(architecture + key.substr(5), value);
  }
  w.set_string("general.architecture", architecture);
  return w;
}

}  // namespace

TEST_CASE("each family reads with its traits: rope layout, q/k/v biases, per-head q/k norm") {
  const ModelConfig llama = config_after([](GgufWriter&) {});
  CHECK(llama.traits == find_architecture("llama"));
  CHECK(llama.rope_layout == RopeLayout::Norm);
  CHECK_FALSE(llama.has_qkv_bias);
  CHECK_FALSE(llama.has_qk_norm);

  const std::vector<uint8_t> qwen2_image = build_synthetic_gguf(synthetic_spec("qwen2-tiny"));
  const auto qwen2_file = GgufFile::from_memory(qwen2_image, "qwen2.gguf");
  const ModelConfig qwen2 = read_model_config(*qwen2_file);
  CHECK(qwen2.architecture == "qwen2");
  CHECK(qwen2.rope_layout == RopeLayout::Neox);
  CHECK(qwen2.has_qkv_bias);
  CHECK_FALSE(qwen2.has_qk_norm);
  CHECK(qwen2.rms_eps == 1e-6f);
  const LlamaWeights qwen2_weights = load_llama_weights(*qwen2_file, qwen2);
  for (const LlamaLayerWeights& l : qwen2_weights.layers) {
    CHECK(l.bias_q != nullptr);
    CHECK(l.bias_k != nullptr);
    CHECK(l.bias_v != nullptr);
    CHECK(l.attn_q_norm == nullptr);
  }

  const std::vector<uint8_t> qwen3_image = build_synthetic_gguf(synthetic_spec("qwen3-tiny"));
  const auto qwen3_file = GgufFile::from_memory(qwen3_image, "qwen3.gguf");
  const ModelConfig qwen3 = read_model_config(*qwen3_file);
  CHECK(qwen3.architecture == "qwen3");
  CHECK(qwen3.rope_layout == RopeLayout::Neox);
  CHECK_FALSE(qwen3.has_qkv_bias);
  CHECK(qwen3.has_qk_norm);
  // Qwen3's heads are wider than its embedding: head_dim comes from key_length, not n_embd / n_head.
  CHECK(qwen3.n_embd == 192);
  CHECK(qwen3.head_dim == 64);
  CHECK(qwen3.q_dim() == 256);
  CHECK(qwen3.tied_embeddings);
  const LlamaWeights qwen3_weights = load_llama_weights(*qwen3_file, qwen3);
  for (const LlamaLayerWeights& l : qwen3_weights.layers) {
    CHECK(l.attn_q_norm != nullptr);
    CHECK(l.attn_k_norm != nullptr);
    CHECK(l.bias_q == nullptr);
  }
  // Every family falls back to a template the project has built in.
  for (const char* name : {"llama", "qwen2", "qwen3"}) {
    REQUIRE(find_architecture(name) != nullptr);
    CHECK(find_architecture(name)->fallback_chat_template == "chatml");
  }
  CHECK(supported_architecture_list() == "llama, qwen2, qwen3, gemma3");
  CHECK(find_architecture("gemma3")->fallback_chat_template == "gemma");
}

TEST_CASE("a qwen3 file without its q/k norm gains is an Error naming the tensor; a qwen2 one without biases loads") {
  GgufWriter qwen3 = relabelled_micro("qwen3");
  const std::vector<uint8_t> qwen3_image = qwen3.to_bytes();
  const auto qwen3_file = GgufFile::from_memory(qwen3_image, "qwen3.gguf");
  const ModelConfig config = read_model_config(*qwen3_file);
  CHECK(config.has_qk_norm);
  try {
    load_llama_weights(*qwen3_file, config);
    FAIL_CHECK("a qwen3 file without attn_q_norm loaded");
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find("'blk.0.attn_q_norm.weight' is missing") != std::string::npos);
  }
  // llama.cpp's qwen2 loader takes the q/k/v biases as optional, and so does this one.
  GgufWriter qwen2 = relabelled_micro("qwen2");
  const std::vector<uint8_t> qwen2_image = qwen2.to_bytes();
  const auto qwen2_file = GgufFile::from_memory(qwen2_image, "qwen2.gguf");
  const ModelConfig qwen2_config = read_model_config(*qwen2_file);
  CHECK_FALSE(qwen2_config.has_qkv_bias);
  CHECK(qwen2_config.rope_layout == RopeLayout::Neox);
  CHECK(load_llama_weights(*qwen2_file, qwen2_config).layers.size() == 2);
}

TEST_CASE("gemma3: every sixth layer global, the others windowed with RoPE base 10000; post-norms required") {
  GgufWriter w = relabelled_micro("gemma3");
  w.set_u32("gemma3.block_count", 2);
  w.set_u32("gemma3.attention.sliding_window", 8);
  for (int layer = 0; layer < 2; ++layer) {
    w.add_tensor_f32("blk." + std::to_string(layer) + ".attn_q_norm.weight", {8}, std::vector<float>(8, 1.0f));
    w.add_tensor_f32("blk." + std::to_string(layer) + ".attn_k_norm.weight", {8}, std::vector<float>(8, 1.0f));
  }
  const std::vector<uint8_t> image = w.to_bytes();
  const auto file = GgufFile::from_memory(image, "gemma3.gguf");
  const ModelConfig c = read_model_config(*file);
  CHECK(c.architecture == "gemma3");
  CHECK(c.rope_layout == RopeLayout::Neox);
  CHECK(c.ffn_activation == FfnActivation::GeluTanh);
  CHECK(c.embedding_scale == doctest::Approx(std::sqrt(32.0f)));
  CHECK(c.attention_scale == doctest::Approx(1.0f / std::sqrt(8.0f)));
  CHECK(c.has_post_norms);
  CHECK(c.sliding_window == 8);
  CHECK(c.rope_freq_base_swa == 10000.0f);
  CHECK(c.layer_window(0) == 8);
  CHECK(c.layer_window(4) == 8);
  CHECK(c.layer_window(5) == 0);  // (5 + 1) % 6 == 0: global
  CHECK(c.layer_window(11) == 0);
  // With only two layers both are windowed, so every layer's window is 8.
  CHECK(c.window_of_every_layer() == 8);
  // The post-sublayer norms are part of the family: a file without them names the missing tensor.
  CHECK_THROWS_WITH_AS(load_llama_weights(*file, c), doctest::Contains("'blk.0.post_attention_norm.weight' is missing"),
                       Error);

  // rope.freq_base_swa overrides the local base; no attention.sliding_window means no window at all.
  GgufWriter v = relabelled_micro("gemma3");
  v.set_f32("gemma3.rope.freq_base_swa", 5000.0f);
  const std::vector<uint8_t> image2 = v.to_bytes();
  const ModelConfig c2 = read_model_config(*GgufFile::from_memory(image2, "gemma3b.gguf"));
  CHECK(c2.rope_freq_base_swa == 5000.0f);
  CHECK(c2.sliding_window == 0);
  CHECK(c2.layer_window(0) == 0);
  CHECK(c2.window_of_every_layer() == 0);
}

TEST_CASE("gemma3: the real 270M file's config (MQA, head_dim 256 from key_length, window 512)") {
  test::require_gemma3();
  const auto file = GgufFile::open(test::kGemma3Path);
  const ModelConfig c = read_model_config(*file);
  CHECK(c.n_layer == 18);
  CHECK(c.n_head == 4);
  CHECK(c.n_head_kv == 1);
  CHECK(c.head_dim == 256);  // n_embd / n_head would be 160
  CHECK(c.n_embd == 640);
  CHECK(c.sliding_window == 512);
  CHECK(c.rope_freq_base == 1000000.0f);
  CHECK(c.rope_freq_base_swa == 10000.0f);
  CHECK(c.attention_scale == doctest::Approx(1.0f / 16.0f));
  CHECK(c.tied_embeddings);
  int global = 0;
  for (int64_t layer = 0; layer < c.n_layer; ++layer) global += c.layer_window(layer) == 0 ? 1 : 0;
  CHECK(global == 3);  // layers 5, 11 and 17
  const LlamaWeights w = load_llama_weights(*file, c);
  for (const LlamaLayerWeights& l : w.layers) {
    CHECK(l.post_attention_norm != nullptr);
    CHECK(l.post_ffw_norm != nullptr);
    CHECK(l.attn_q_norm != nullptr);
  }
}
