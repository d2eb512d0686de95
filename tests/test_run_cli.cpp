// `pagedllm run` as a user sees it: generation, --parallel sharing, statistics, and one clear error per bad input.
#include <doctest/doctest.h>

#include "required_files.h"

#include <filesystem>
#include <set>
#include <string>

#include <nlohmann/json.hpp>

#include "tests/cli_runner.h"

using pagedllm::test::run_pagedllm;
using pagedllm::test::shell_quote;

namespace {

const std::string kStories = PAGEDLLM_SHARED_DIR "/models/stories260K.gguf";
const std::string kSmol = PAGEDLLM_SOURCE_DIR "/models/SmolLM2-135M-Instruct.Q4_1.gguf";

nlohmann::json last_json_line(const std::string& text) {
  const auto end = text.find_last_not_of('\n');
  const auto begin = text.rfind('\n', end);
  return nlohmann::json::parse(text.substr(begin == std::string::npos ? 0 : begin + 1, end - begin));
}

int count_lines_starting_with(const std::string& text, const std::string& prefix) {
  int count = 0;
  size_t pos = 0;
  while ((pos = text.find(prefix, pos)) != std::string::npos) {
    if (pos == 0 || text[pos - 1] == '\n') ++count;
    pos += prefix.size();
  }
  return count;
}

}  // namespace

TEST_CASE("run on stories260K streams the greedy story and prints the three groups of statistics") {
  const auto r = run_pagedllm("run -m " + shell_quote(kStories) + " -p '' --temp 0 -n 24 -t 1");
  REQUIRE_MESSAGE(r.exit_code == 0, r.err);
  CHECK(r.out.rfind(" Once upon a time", 0) == 0);
  CHECK(r.err.find("time:") != std::string::npos);
  CHECK(r.err.find("cache:") != std::string::npos);
  CHECK(r.err.find("bandwidth:") != std::string::npos);
  CHECK(r.err.find("% of") != std::string::npos);
}

TEST_CASE("run --stats json reports token counts that match -n") {
  const auto r = run_pagedllm("run -m " + shell_quote(kStories) + " -p 'Once upon a time' --temp 0 -n 10 "
                              "--ignore-eos --stats json -t 1");
  REQUIRE_MESSAGE(r.exit_code == 0, r.err);
  const auto stats = last_json_line(r.err);
  CHECK(stats["time"]["generated_tokens"] == 10);
  CHECK(stats["cache"]["block_size"] == 16);
  CHECK(stats["bandwidth"]["bytes_per_generated_token"].get<double>() > 0);
}

TEST_CASE("--parallel 4 shares the prompt's blocks: stored once, at most 4 copy-on-write copies") {
  pagedllm::test::require_smollm2();
  const std::string model = kSmol;
  // About 100 prompt tokens whose last block is partly filled, so each sample's first token forces a copy.
  std::string prompt;
  for (int i = 0; i < 9; ++i) prompt += "The quick brown fox jumps over the lazy dog. ";
  const std::string base = "run -m " + shell_quote(model) + " -p " + shell_quote(prompt) +
                           " -n 8 --ignore-eos --parallel 4 --stats json -t 2 -c 512";

  const auto greedy = run_pagedllm(base + " --temp 0");
  REQUIRE_MESSAGE(greedy.exit_code == 0, greedy.err);
  const auto stats = last_json_line(greedy.err);
  const int64_t n_prompt = stats["time"]["prompt_tokens"];
  const int64_t block_size = stats["cache"]["block_size"];
  const int64_t prompt_full_blocks = n_prompt / block_size;
  CHECK(n_prompt >= 60);
  // Full prompt blocks are shared by all four samples; the partial last block was copied at most once per sample.
  CHECK(stats["cache"]["blocks_shared"].get<int64_t>() >= prompt_full_blocks);
  // A partly filled last prompt block is written by all four samples: the first three writers copy it, the last
  // one finds itself the only holder and writes in place. A full last block needs no copy at all.
  CHECK(stats["cache"]["cow_copies"].get<int64_t>() <= 4);
  CHECK(stats["cache"]["cow_copies"].get<int64_t>() == (n_prompt % block_size != 0 ? 3 : 0));
  // Physically the prompt is stored once: far fewer tokens than 4 separate copies would take.
  CHECK(stats["cache"]["tokens_stored"].get<int64_t>() < 2 * n_prompt);
  // Each sample's K/V holds the prompt and every generated token but the last (sampled, never fed back).
  CHECK(stats["cache"]["tokens_logical"].get<int64_t>() == 4 * (n_prompt + 8 - 1));
  CHECK(count_lines_starting_with(greedy.out, "--- sample ") == 4);
  // Under greedy decoding all four samples are the same text.
  const auto first = greedy.out.find("---\n");
  const std::string sample_text = greedy.out.substr(first + 4, greedy.out.find("\n--- sample 2") - first - 4);
  size_t same = 0;
  for (size_t pos = 0; (pos = greedy.out.find("---\n" + sample_text + "\n", pos)) != std::string::npos; ++pos) ++same;
  CHECK(same == 4);

  const auto sampled = run_pagedllm(base + " --temp 1.5 --top-k 0 --top-p 1 --min-p 0 -s 7");
  REQUIRE_MESSAGE(sampled.exit_code == 0, sampled.err);
  std::set<std::string> texts;
  size_t pos = 0;
  while ((pos = sampled.out.find("---\n", pos)) != std::string::npos) {
    pos += 4;
    texts.insert(sampled.out.substr(pos, sampled.out.find("\n--- sample", pos) - pos));
  }
  CHECK(texts.size() >= 3);  // four draws at high temperature differ (identical texts would mean shared RNG)
}

TEST_CASE("bad input to run: one clear error and a non-zero exit each") {
  struct Case {
    std::string args;
    std::string expected;
  };
  std::string long_prompt;
  for (int i = 0; i < 200; ++i) long_prompt += "Once upon a time there was a dog. ";
  const Case cases[] = {
      {"run -m /nonexistent/model.gguf -p hi", "cannot open model file"},
      {"run -m " + shell_quote(kStories) + " -p " + shell_quote(long_prompt) + " -c 64", "context"},
      {"run -m " + shell_quote(kStories) + " -p hello --kv-mem 1K", "--kv-mem"},
      {"run -m " + shell_quote(kStories) + " -p hello -n 0", "-n 0"},
      {"run -m " + shell_quote(kStories) + " -p hello --no-such-flag", "no-such-flag"},
      {"run -m " + shell_quote(kStories) + " -p hello --kv-mem lots", "--kv-mem"},
      {"run -m " + shell_quote(kStories) + " -p hello --top-p 2", "top"},
      {"run -m " + shell_quote(PAGEDLLM_SHARED_DIR "/models/README.md") + " -p hi", "magic"},
  };
  for (const Case& c : cases) {
    INFO("args: " << c.args);
    const auto r = run_pagedllm(c.args);
    CHECK(r.exit_code != 0);
    CHECK(r.exit_code < 128);  // an error exit, not a signal
    CHECK_MESSAGE(r.err.find(c.expected) != std::string::npos, "stderr: " << r.err);
  }
}
