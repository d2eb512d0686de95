// stories260K's known answer, read from ../shared/models/README.md (not copied here): greedy decoding from BOS
// produces the listed ids and text, and the first step's top logits have the listed values.
#include <doctest/doctest.h>

#include <algorithm>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "engine/engine.h"
#include "engine/model.h"

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

TEST_CASE("stories260K: greedy decoding from BOS reproduces the README's ids, text and first-step logits") {
  const KnownAnswer answer = read_known_answer();
  auto model = pagedllm::Model::load(PAGEDLLM_SHARED_DIR "/models/stories260K.gguf");
  pagedllm::EngineConfig config;
  config.n_ctx = 256;
  config.n_threads = 1;
  pagedllm::Engine engine(*model, config);
  const pagedllm::SeqId seq = engine.cache().create_sequence();
  const int32_t bos = model->tokenizer->bos_id();
  REQUIRE(bos == 1);
  pagedllm::Engine::Work work{seq, std::span<const int32_t>(&bos, 1), true};
  std::span<const float> logits = engine.step(std::span(&work, 1));
  for (const auto& [id, value] : answer.top_logits) {
    CHECK(logits[static_cast<size_t>(id)] == doctest::Approx(value).epsilon(1e-4));
  }

  std::vector<int32_t> generated;
  std::string text;
  pagedllm::StreamingDetokenizer detokenizer(*model->tokenizer);
  while (text.size() < answer.text.size() + 16 && generated.size() < 200) {
    const auto next = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    generated.push_back(next);
    text += detokenizer.push(next);
    pagedllm::Engine::Work decode{seq, std::span<const int32_t>(&generated.back(), 1), true};
    logits = engine.step(std::span(&decode, 1));
  }
  text += detokenizer.flush();
  REQUIRE(generated.size() >= answer.ids.size());
  CHECK(std::vector<int32_t>(generated.begin(), generated.begin() + static_cast<long>(answer.ids.size())) == answer.ids);
  CHECK(text.substr(0, answer.text.size()) == answer.text);
}
