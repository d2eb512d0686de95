// Sliding-window attention through the whole engine, on the real Gemma 3 270M file with its window narrowed from 512
// to 24 positions (so that short prompts cross it and the test stays fast): the window changes the logits, and the
// prefix cache and forked samples stay exact with windows, as the cache keeps every block while the windowed
// layers read only the last positions of each.
#include <doctest/doctest.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "direct_runner.h"
#include "required_files.h"

#include "engine/model.h"
#include "engine/model_runner.h"
#include "engine/scheduler.h"

using namespace pagedllm;

namespace {

constexpr int kWindow = 24;
constexpr int kBlockSize = 8;

std::unique_ptr<Model> gemma_with_window(int64_t window) {
  test::require_gemma3();
  auto model = Model::load(test::kGemma3Path);
  REQUIRE(model->config.sliding_window == 512);
  model->config.sliding_window = window;
  return model;
}

GenerationRequest request(int64_t id, std::vector<int32_t> prompt, int max_tokens, float temperature, int n = 1,
                          uint64_t seed = 0) {
  GenerationRequest r;
  r.id = id;
  r.prompt = std::move(prompt);
  r.max_tokens = max_tokens;
  r.sampling.temperature = temperature;
  r.sampling.seed = seed;
  r.n = n;
  r.ignore_eos = true;
  return r;
}

struct Outcome {
  std::map<int64_t, RequestResult> results;
  CacheStats cache;
};

Outcome run_all(const Model& model, const std::vector<GenerationRequest>& requests, bool prefix_cache,
                int max_seqs = 1) {
  ModelRunner runner(model, test::runner_config_with_blocks(model, 96, kBlockSize, 256, 2));
  SchedulerConfig config;
  config.prefix_cache = prefix_cache;
  config.max_seqs = max_seqs;  // 1: a later request finds the earlier one's registered blocks
  Scheduler scheduler(runner, model.tokenizer.get(), config);
  for (const GenerationRequest& r : requests) scheduler.submit(r);
  Outcome out;
  while (scheduler.step()) {
    const std::string problem = scheduler.check_invariants();
    REQUIRE_MESSAGE(problem.empty(), problem);
    for (RequestResult& result : scheduler.take_finished()) out.results.emplace(result.id, std::move(result));
  }
  for (RequestResult& result : scheduler.take_finished()) out.results.emplace(result.id, std::move(result));
  out.cache = scheduler.cache().stats();
  REQUIRE(out.results.size() == requests.size());
  for (const auto& entry : out.results) REQUIRE_MESSAGE(entry.second.error.empty(), entry.second.error);
  return out;
}

std::vector<int32_t> tokens_of(const Outcome& outcome, int64_t id, size_t sample = 0) {
  return outcome.results.at(id).completions.at(sample).tokens;
}

// A prompt of about 60 tokens: more than twice the narrowed window.
std::vector<int32_t> long_prompt(const Model& model, const std::string& ending) {
  const std::string text =
      "On day 1 the traveller walked five miles to the old mill and saw a heron. On day 2 she crossed the stone "
      "bridge and counted three foxes near the birch wood. On day 3 the rain came and she stayed at the chapel" +
      ending;
  std::vector<int32_t> prompt = model.tokenizer->encode(text, true, false);
  REQUIRE(prompt.size() > 2 * kWindow);
  return prompt;
}

}  // namespace

TEST_CASE("a narrower window changes what Gemma generates past it, not before it") {
  const auto narrow = gemma_with_window(kWindow);
  const auto wide = gemma_with_window(512);
  const std::vector<int32_t> prompt = long_prompt(*narrow, ".");
  const std::vector<int32_t> short_prompt(prompt.begin(), prompt.begin() + kWindow - 8);
  // Within the window (prompt + 8 tokens < 24 positions) both see every key: identical greedy tokens.
  CHECK(tokens_of(run_all(*narrow, {request(0, short_prompt, 8, 0.0f)}, false), 0) ==
        tokens_of(run_all(*wide, {request(0, short_prompt, 8, 0.0f)}, false), 0));
  // Past it the local layers lose the prompt's beginning.
  CHECK(tokens_of(run_all(*narrow, {request(0, prompt, 12, 0.0f)}, false), 0) !=
        tokens_of(run_all(*wide, {request(0, prompt, 12, 0.0f)}, false), 0));
}

TEST_CASE("with a sliding window, prefix-cache hits and forked samples give exactly the uncached, unforked output") {
  const auto model = gemma_with_window(kWindow);
  // Two prompts sharing more than two windows' worth of blocks.
  const std::vector<GenerationRequest> requests = {request(0, long_prompt(*model, ". The next morning"), 10, 0.0f),
                                                   request(1, long_prompt(*model, " until the sun came out"), 10,
                                                           0.0f)};
  const Outcome off = run_all(*model, requests, false);
  const Outcome on = run_all(*model, requests, true);
  CHECK(off.cache.prefix_hits == 0);
  CHECK(on.cache.prefix_hits * kBlockSize >= 2 * kWindow);  // the second prompt reuses two windows of keys
  for (int64_t id : {0, 1}) CHECK(tokens_of(on, id) == tokens_of(off, id));

  // Three samples forked from one prompt (sharing its blocks, copy-on-write on the last) each equal the
  // single-sample request with the same seed.
  const std::vector<int32_t> prompt = long_prompt(*model, ".");
  const Outcome forked = run_all(*model, {request(0, prompt, 10, 0.9f, 3, 41)}, false, 3);
  for (int sample = 0; sample < 3; ++sample) {
    const Outcome single = run_all(*model, {request(0, prompt, 10, 0.9f, 1, 41 + static_cast<uint64_t>(sample))},
                                   false);
    CHECK_MESSAGE(tokens_of(forked, 0, static_cast<size_t>(sample)) == tokens_of(single, 0), "sample ", sample);
  }
}
