// The family-specific paths of the one forward on the CPU, beyond what the golden files show: the per-head q/k norm
// runs the rms_norm op in place, an optional output.bias (which llama.cpp's qwen2 loader accepts) is added to the
// logits, and the family's tensors really change the result (a forward that skipped them would not).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <vector>

#include "direct_runner.h"
#include "engine/model.h"
#include "kernels/backend.h"
#include "model_loader/gguf.h"
#include "model_loader/gguf_writer.h"
#include "model_loader/model_config.h"
#include "model_loader/model_weights.h"
#include "model_loader/synthetic_model.h"

using namespace pagedllm;

namespace {

// A model held in memory from a writer image (the image must outlive it).
std::unique_ptr<Model> model_from(const std::vector<uint8_t>& image) {
  auto model = std::make_unique<Model>();
  model->file = GgufFile::from_memory(image, "family.gguf");
  model->config = read_model_config(*model->file);
  model->weights = load_llama_weights(*model->file, model->config);
  return model;
}

// Logits of the last token after a 12-token prompt and after each of 4 decode steps: [5, n_vocab] flattened.
std::vector<float> logits_of(const Model& model) {
  RunnerConfig config;
  config.n_ctx = 64;
  config.n_threads = 2;
  test::DirectRunner engine(model, config);
  const SeqId seq = engine.create_sequence();
  std::vector<int32_t> tokens;
  for (int i = 0; i < 16; ++i) tokens.push_back(5 + (i * 53) % static_cast<int>(model.config.n_vocab - 5));
  std::vector<float> all;
  test::DirectWork prompt{seq, std::span<const int32_t>(tokens.data(), 12), true};
  std::span<const float> logits = engine.step(std::span(&prompt, 1));
  all.insert(all.end(), logits.begin(), logits.end());
  for (size_t i = 12; i < tokens.size(); ++i) {
    test::DirectWork decode{seq, std::span<const int32_t>(&tokens[i], 1), true};
    logits = engine.step(std::span(&decode, 1));
    all.insert(all.end(), logits.begin(), logits.end());
  }
  return all;
}

float max_difference(const std::vector<float>& a, const std::vector<float>& b) {
  REQUIRE(a.size() == b.size());
  float worst = 0;
  for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::fabs(a[i] - b[i]));
  return worst;
}

}  // namespace

TEST_CASE("rms_norm in place (out == x) equals the out-of-place result, as the per-head q/k norm uses it") {
  KvGeometry kv;
  kv.n_layer = 1;
  kv.n_head_kv = 1;
  kv.head_dim = 64;
  kv.num_blocks = 1;
  kv.block_size = 16;
  auto backend = make_cpu_backend(kv, 1);
  const int64_t rows = 6, n = 64;  // [n_tokens * n_head, head_dim]
  std::vector<float> x(static_cast<size_t>(rows * n)), gain(static_cast<size_t>(n));
  for (size_t i = 0; i < x.size(); ++i) x[i] = std::sin(0.37f * static_cast<float>(i)) * (1.0f + float(i % 7));
  for (size_t i = 0; i < gain.size(); ++i) gain[i] = 0.5f + 0.01f * static_cast<float>(i);
  std::vector<float> separate(x.size());
  backend->rms_norm(x.data(), gain.data(), separate.data(), rows, n, 1e-6f);
  backend->rms_norm(x.data(), gain.data(), x.data(), rows, n, 1e-6f);
  CHECK(x == separate);
}

TEST_CASE("output.bias is added to every logit row") {
  const SyntheticModelSpec spec = synthetic_spec("qwen2-tiny");
  const std::vector<uint8_t> plain_image = build_synthetic_gguf(spec);
  GgufWriter with_bias = synthetic_model_writer(spec);
  std::vector<float> bias(static_cast<size_t>(spec.n_vocab));  // [n_vocab]
  for (size_t i = 0; i < bias.size(); ++i) bias[i] = 0.25f * static_cast<float>(static_cast<int>(i % 9) - 4);
  with_bias.add_tensor_f32("output.bias", {spec.n_vocab}, bias);
  const std::vector<uint8_t> bias_image = with_bias.to_bytes();

  const auto plain = model_from(plain_image);
  const auto biased = model_from(bias_image);
  REQUIRE(biased->weights.output_bias != nullptr);
  const std::vector<float> without = logits_of(*plain);
  const std::vector<float> with = logits_of(*biased);
  REQUIRE(with.size() == without.size());
  float worst = 0;
  for (size_t i = 0; i < with.size(); ++i) {
    worst = std::max(worst, std::fabs(with[i] - without[i] - bias[i % bias.size()]));
  }
  CHECK(worst < 1e-4f);
}

TEST_CASE("the family tensors change the logits: qwen2's biases, qwen3's q/k norm gains") {
  // qwen2: the same weights with the biases zeroed give other logits.
  const SyntheticModelSpec qwen2 = synthetic_spec("qwen2-tiny");
  const std::vector<uint8_t> qwen2_image = build_synthetic_gguf(qwen2);
  SyntheticModelSpec qwen2_no_bias = qwen2;
  qwen2_no_bias.bias_stddev = 0.0f;
  const std::vector<uint8_t> qwen2_no_bias_image = build_synthetic_gguf(qwen2_no_bias);
  CHECK(max_difference(logits_of(*model_from(qwen2_image)), logits_of(*model_from(qwen2_no_bias_image))) > 0.05f);

  // qwen3: scaling a q norm gain by 2 scales that head's q (and its scores); scaling a k norm gain likewise.
  const SyntheticModelSpec qwen3 = synthetic_spec("qwen3-tiny");
  const std::vector<uint8_t> qwen3_image = build_synthetic_gguf(qwen3);
  const auto reference = model_from(qwen3_image);
  const std::vector<float> base = logits_of(*reference);
  for (const char* tensor : {"blk.1.attn_q_norm.weight", "blk.0.attn_k_norm.weight"}) {
    CAPTURE(tensor);
    std::vector<uint8_t> changed = qwen3_image;
    const auto file = GgufFile::from_memory(changed, "changed.gguf");
    const GgufTensorInfo* info = file->find_tensor(tensor);
    REQUIRE(info != nullptr);
    const size_t offset = static_cast<size_t>(info->data - changed.data());
    for (int64_t i = 0; i < info->n_elements(); ++i) {
      float g;
      std::memcpy(&g, changed.data() + offset + static_cast<size_t>(i) * 4, 4);
      g *= 2.0f;
      std::memcpy(changed.data() + offset + static_cast<size_t>(i) * 4, &g, 4);
    }
    CHECK(max_difference(logits_of(*model_from(changed)), base) > 0.05f);
  }
}
