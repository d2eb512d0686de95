// stories260K's known answer, read from ../shared/models/README.md (not copied here): greedy decoding from BOS
// produces the listed ids and text, and the first step's top logits have the listed values.
#include <doctest/doctest.h>

#include <algorithm>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "engine/model.h"
#include "engine/model_runner.h"
#include "engine/scheduler.h"

namespace {

struct KnownAnswer {
  std::string text;
  std::vector<int32_t> ids;
  std::vector<std::pair<int32_t, float>> top_logits;
};

KnownAnswer read_known_answer() {
  std::ifstream in(PAGEDLLM_SHARED_DIR "/models/README.md");
  REQUIRE_MESSAGE(in, "cannot read " PAGEDLLM_SHARED_DIR "/models/README.md");
  std::stringstream buffer;
  buffer << in.rdbuf();
  const std::string readme = buffer.str();
  KnownAnswer answer;
  std::smatch match;
  REQUIRE(std::regex_search(readme, match, std::regex("\"( Once upon a time[^\"]*)\"")));
  answer.text = match[1];
  REQUIRE(std::regex_search(readme, match, std::regex("first generated ids are: ([0-9 ]+)")));
  std::istringstream ids(match[1].str());
  for (int32_t id; ids >> id;) answer.ids.push_back(id);
  const std::regex logit_pattern("id ([0-9]+) = ([0-9.]+)");
  for (auto it = std::sregex_iterator(readme.begin(), readme.end(), logit_pattern); it != std::sregex_iterator(); ++it) {
    answer.top_logits.emplace_back(std::stoi((*it)[1]), std::stof((*it)[2]));
  }
  REQUIRE(answer.ids.size() >= 8);
  REQUIRE(answer.top_logits.size() >= 3);
  return answer;
}

}  // namespace

// Keeps the text and the logits of the first generated token.
class KnownAnswerSink : public pagedllm::TokenSink {
 public:
  void on_text(pagedllm::RequestId, int, std::string_view piece) override { text += piece; }
  void on_logits(pagedllm::RequestId, int, int32_t position, std::span<const float> logits) override {
    if (position == 0) first_logits.assign(logits.begin(), logits.end());
  }
  void on_finish(pagedllm::RequestResult finished) override { result = std::move(finished); }

  std::string text;
  std::vector<float> first_logits;
  pagedllm::RequestResult result;
};

TEST_CASE("stories260K: greedy decoding from BOS reproduces the README's ids, text and first-step logits") {
  const KnownAnswer answer = read_known_answer();
  auto model = pagedllm::Model::load(PAGEDLLM_SHARED_DIR "/models/stories260K.gguf");
  pagedllm::RunnerConfig config;
  config.n_ctx = 256;
  config.n_threads = 1;
  pagedllm::ModelRunner runner(*model, config);
  pagedllm::Scheduler scheduler(runner, model->tokenizer.get(), pagedllm::SchedulerConfig{});
  const int32_t bos = model->tokenizer->bos_id();
  REQUIRE(bos == 1);
  pagedllm::GenerationRequest request;
  request.prompt = {bos};
  request.sampling.temperature = 0.0f;  // greedy: argmax, first maximum
  request.ignore_eos = true;            // the known answer does not stop at an end token
  request.max_tokens = 200;
  request.logits = pagedllm::LogitsWanted::Generated;
  KnownAnswerSink sink;
  scheduler.submit(std::move(request), &sink);
  scheduler.run_until_idle();
  REQUIRE(sink.result.error.empty());
  REQUIRE(sink.first_logits.size() == static_cast<size_t>(model->config.n_vocab));
  for (const auto& [id, value] : answer.top_logits) {
    CHECK(sink.first_logits[static_cast<size_t>(id)] == doctest::Approx(value).epsilon(1e-4));
  }
  const std::vector<int32_t>& generated = sink.result.completions.at(0).tokens;
  REQUIRE(generated.size() >= answer.ids.size());
  CHECK(std::vector<int32_t>(generated.begin(), generated.begin() + static_cast<long>(answer.ids.size())) == answer.ids);
  REQUIRE(sink.text.size() >= answer.text.size());
  CHECK(sink.text.substr(0, answer.text.size()) == answer.text);
}
