// End-to-end checks of the CPU forward against llama.cpp: tests/golden/*.json hold, for real models and several
// prompts, llama.cpp's prompt tokens and 40 greedy steps with the top-5 logits of each (scripts/gen_golden.py).
// Families without a small real model (qwen2, qwen3) are checked on synthetic models in their exact layout, with
// random weights, norm gains and biases, so that every path of the forward shows in the logits; the test rebuilds
// such a model with the project's writer from the preset the golden file names and checks that it is byte for byte
// the file llama.cpp ran (FNV-1a 64) before comparing.
//
// Tolerance, per model: |ours - theirs| <= max(0.02 + 0.002 * |theirs|, 2 * reference_spread), where
// reference_spread (written by the generator) is the largest top-5 logit difference between llama.cpp's own two
// CPU attention paths (plain and flash) fed the same tokens. Both sides quantize activations to the same Q8 formats
// and store K/V as F16, so on stories260K (F32 weights) the differences are summation order only (< 0.01) and the
// fixed term rules. SmolLM2 is far more sensitive to F16 rounding inside attention: llama.cpp's two paths differ by
// up to ~0.3 there and even change its top token, so an independent kernel is held to the same scale.
// Greedy tokens must be identical at every step except near-ties, where llama.cpp's top-2 margin is below twice
// the disagreement of its own two attention paths at that very step; those are counted and reported, and at least
// four of every five steps must be checked exactly (two of every three for Gemma 3 270M, the most sensitive model
// here: 87 exact and 33 near-ties measured with llama-cpp-python 0.3.36). Its residual
// stream runs to the thousands, and llama.cpp's two paths differ by up to 1.7 on its logits (tests/golden/gemma-*).
// Its third prompt is longer than the 512-position sliding window, so the local layers' masks cut keys off.
#include <doctest/doctest.h>

#include "required_files.h"
#include "synthetic_golden.h"
#include "temp_dir.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/model.h"
#include "engine/model_runner.h"
#include "engine/scheduler.h"

namespace {

constexpr float kLogitAbsTolerance = 0.02f;
constexpr float kLogitRelTolerance = 0.002f;

std::vector<std::filesystem::path> golden_files() {
  std::vector<std::filesystem::path> files;
  for (const auto& entry : std::filesystem::directory_iterator(PAGEDLLM_SOURCE_DIR "/tests/golden")) {
    if (entry.path().extension() == ".json") files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());
  return files;
}

// The model file a golden file was made from; a synthetic one is written into `scratch` first.
std::string model_path(const nlohmann::json& golden, const pagedllm::test::TempDir& scratch) {
  const std::string file = golden.at("model");
  if (golden.at("model_location") == "synthetic") {
    const std::vector<uint8_t> bytes = pagedllm::test::synthetic_golden_model(golden);
    const std::string path = (scratch / (file + ".gguf")).string();
    std::ofstream out(path, std::ios::binary);
    out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    REQUIRE(out.good());
    return path;
  }
  if (golden.at("model_location") == "shared") return std::string(PAGEDLLM_SHARED_DIR) + "/models/" + file;
  return std::string(PAGEDLLM_SOURCE_DIR) + "/models/" + file;
}

// Collects the logits of every generated step.
class LogitsSink : public pagedllm::TokenSink {
 public:
  void on_logits(pagedllm::RequestId, int, int32_t, std::span<const float> logits) override {
    steps.emplace_back(logits.begin(), logits.end());
  }
  void on_finish(pagedllm::RequestResult finished) override { result = std::move(finished); }

  std::vector<std::vector<float>> steps;
  pagedllm::RequestResult result;
};

// Our logits after `prompt` and after each of `forced` in turn: [forced.size(), n_vocab].
std::vector<std::vector<float>> teacher_forced_logits(const pagedllm::Model& model, const std::vector<int32_t>& prompt,
                                                      const std::vector<int32_t>& forced, int n_ctx) {
  pagedllm::RunnerConfig config;
  config.n_ctx = n_ctx;
  config.n_threads = 2;
  pagedllm::ModelRunner runner(model, config);
  pagedllm::Scheduler scheduler(runner, model.tokenizer.get(), pagedllm::SchedulerConfig{});
  pagedllm::GenerationRequest request;
  request.prompt = prompt;
  request.forced_tokens = forced;
  request.max_tokens = static_cast<int>(forced.size());
  request.logits = pagedllm::LogitsWanted::Generated;
  LogitsSink sink;
  scheduler.submit(std::move(request), &sink);
  scheduler.run_until_idle();
  REQUIRE_MESSAGE(sink.result.error.empty(), sink.result.error);
  return sink.steps;
}

}  // namespace

TEST_CASE("greedy tokens and top-5 logits match llama.cpp's golden files") {
  const auto files = golden_files();
  // Both references must be there: a lost golden file would otherwise silently shrink what this test checks.
  std::vector<std::string> names;
  for (const auto& file : files) names.push_back(file.filename().string());
  for (const char* expected : {"stories260K.json", "smollm2-135m-instruct-q4_1.json", "qwen2-tiny-synthetic.json",
                               "qwen3-tiny-synthetic.json", "gemma-3-270m-q4_k_m.json"}) {
    CHECK_MESSAGE(std::find(names.begin(), names.end(), expected) != names.end(),
                  "tests/golden/" << expected << " is missing (scripts/gen_golden.py writes it)");
  }
  for (const auto& file : files) {
    std::ifstream in(file);
    const nlohmann::json golden = nlohmann::json::parse(in);
    const pagedllm::test::TempDir scratch("pagedllm_golden");
    const std::string path = model_path(golden, scratch);
    pagedllm::test::require_file(path, pagedllm::test::how_to_get_model(golden.at("model").get<std::string>()));
    INFO("golden file " << file.filename().string() << " (" << golden.at("reference").get<std::string>() << ")");
    auto model = pagedllm::Model::load(path);
    const auto n_vocab = static_cast<size_t>(model->config.n_vocab);
    float worst_difference = 0;
    const float spread = golden.value("reference_spread", 0.0f);
    int near_ties = 0, exact_steps = 0;
    for (const auto& test_case : golden.at("cases")) {
      const std::string prompt = test_case.at("prompt");
      INFO("prompt: \"" << prompt << "\"");
      const std::vector<int32_t> expected_prompt = test_case.at("prompt_tokens");
      CHECK(model->tokenizer->encode(prompt, true, true) == expected_prompt);

      // Teacher forcing: after the prompt, the inputs are llama.cpp's own greedy tokens, so one early difference
      // cannot cascade; the logits of every step come back through the sink.
      std::vector<int32_t> forced;
      for (const auto& step : test_case.at("steps")) forced.push_back(step.at("token").get<int32_t>());
      const std::vector<std::vector<float>> step_logits =
          teacher_forced_logits(*model, expected_prompt, forced, golden.value("n_ctx", 512));
      REQUIRE(step_logits.size() == forced.size());
      int step_index = 0;
      for (const auto& step : test_case.at("steps")) {
        INFO("step " << step_index);
        const std::vector<float>& logits = step_logits[static_cast<size_t>(step_index)];
        REQUIRE(logits.size() == n_vocab);
        const auto ours = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
        const int32_t theirs = step.at("token");
        const auto& top5 = step.at("top5");
        auto tolerance = [&](float expected) {
          return std::max(kLogitAbsTolerance + kLogitRelTolerance * std::fabs(expected), 2.0f * spread);
        };
        const float margin = top5.at(0).at(1).get<float>() - top5.at(1).at(1).get<float>();
        const float step_spread = step.value("flash_attn_spread", 0.0f);
        if (margin < kLogitAbsTolerance + 2.0f * step_spread) {
          ++near_ties;  // llama.cpp's own attention paths could pick either: no token check
        } else {
          CHECK(ours == theirs);
          ++exact_steps;
        }
        for (const auto& pair : top5) {
          const int32_t id = pair.at(0);
          const float expected = pair.at(1);
          const float difference = std::fabs(logits[static_cast<size_t>(id)] - expected);
          worst_difference = std::max(worst_difference, difference);
          CHECK_MESSAGE(difference <= tolerance(expected),
                        "token " << id << ": ours " << logits[static_cast<size_t>(id)] << ", llama.cpp " << expected);
        }
        ++step_index;
      }
      CHECK(step_index >= 32);
    }
    MESSAGE(file.filename().string() << ": largest top-5 logit difference " << worst_difference
            << " (llama.cpp's own plain-vs-flash spread " << spread << "); greedy token checked and equal at "
            << exact_steps << " steps, " << near_ties << " near-ties exempt");
    // Four exact steps per near-tie, two for Gemma 3 (see the top of the file: its logits are the noisiest here).
    const int exact_per_near_tie = file.filename().string().rfind("gemma-3", 0) == 0 ? 2 : 4;
    CHECK(exact_steps >= exact_per_near_tie * near_ties);
  }
}
