// `pagedllm run` as a user sees it: generation, --parallel sharing, statistics, one clear error per bad input, and
// what README.md promises of its flags (--chat/--system, -n -1, $PAGEDLLM_MODEL, --kv-type, --no-bos,
// --no-parse-special, the cached bandwidth probe, the default pool size).
#include <doctest/doctest.h>

#include "required_files.h"

#include <filesystem>
#include <fstream>
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

// ---------------------------------------------------------------------------------------------- README's promises

namespace {

using pagedllm::test::run_pagedllm_env;

struct Scratch {
  std::filesystem::path path;
  explicit Scratch(const std::string& name)
      : path(std::filesystem::temp_directory_path() / ("pagedllm-run-" + std::to_string(::getpid()) + "-" + name)) {
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~Scratch() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  std::string operator/(const std::string& name) const { return (path / name).string(); }
};

// The statistics of a run (--stats json), REQUIREd to succeed.
nlohmann::json run_stats(const std::string& args) {
  const auto r = run_pagedllm("run " + args + " --stats json");
  REQUIRE_MESSAGE(r.exit_code == 0, r.err);
  return last_json_line(r.err);
}

// How many tokens `pagedllm tokenize` makes of the text in `path` (with BOS unless flags say --no-bos).
size_t token_count(const std::string& model, const std::string& text_flag, const std::string& flags = "") {
  const auto r = run_pagedllm("tokenize -m " + shell_quote(model) + " --ids " + text_flag + " " + flags);
  REQUIRE_MESSAGE(r.exit_code == 0, r.err);
  return nlohmann::json::parse(r.out).size();
}

nlohmann::json model_config(const std::string& model) {
  const auto r = run_pagedllm("info -m " + shell_quote(model) + " --json");
  REQUIRE_MESSAGE(r.exit_code == 0, r.err);
  return nlohmann::json::parse(r.out)["config"];
}

}  // namespace

TEST_CASE("run --chat: the prompt is the model's chat template rendering one user turn, after --system when given") {
  pagedllm::test::require_smollm2();
  Scratch dir("chat");
  const std::string question = "What is the capital of France?", system = "Answer in one word.";
  // What `pagedllm template` renders and `pagedllm tokenize` makes of the same conversation.
  auto rendered_tokens = [&](const nlohmann::json& messages) {
    const std::string conversation = dir / "conversation.json", prompt = dir / "prompt.txt";
    std::ofstream(conversation) << messages.dump();
    const auto r = run_pagedllm("template -m " + shell_quote(kSmol) + " --add-generation-prompt --messages " +
                                shell_quote(conversation));
    REQUIRE_MESSAGE(r.exit_code == 0, r.err);
    std::ofstream(prompt, std::ios::binary) << r.out;
    return token_count(kSmol, "-f " + shell_quote(prompt), "--special");
  };
  const size_t user_only = rendered_tokens({{{"role", "user"}, {"content", question}}});
  const size_t with_system =
      rendered_tokens({{{"role", "system"}, {"content", system}}, {{"role", "user"}, {"content", question}}});
  REQUIRE(user_only != with_system);

  const std::string base = "-m " + shell_quote(kSmol) + " --chat -p " + shell_quote(question) + " --temp 0 -t 2 -c 128";
  CHECK(run_stats(base + " -n 1")["time"]["prompt_tokens"] == user_only);
  // -n -1 lets the answer run to its end-of-turn token: a one-word answer ends well before the context.
  const auto answered = run_stats(base + " -n -1 --system " + shell_quote(system));
  CHECK(answered["time"]["prompt_tokens"] == with_system);
  CHECK(answered["samples"][0]["finish_reason"] == "stop");
  CHECK(answered["samples"][0]["tokens"].get<size_t>() + with_system < 128);
}

TEST_CASE("run -n -1 generates until the context is full") {
  // More than the default -n of 256 fits in this context; stories260K with --ignore-eos never ends on its own.
  const int context = 300;
  const auto stats = run_stats("-m " + shell_quote(kStories) + " -p 'Once upon a time' -n -1 --ignore-eos --temp 0 "
                               "-t 1 -c " + std::to_string(context));
  const int prompt = stats["time"]["prompt_tokens"];
  CHECK(stats["samples"][0]["finish_reason"] == "context");
  CHECK(stats["samples"][0]["tokens"] == context - prompt);
  CHECK(context - prompt > 256);
}

TEST_CASE("run without -m uses $PAGEDLLM_MODEL") {
  const std::string args = "run -p 'Once upon a time' -n 12 --temp 0 -t 1 --stats none";
  const auto named = run_pagedllm(args + " -m " + shell_quote(kStories));
  REQUIRE_MESSAGE(named.exit_code == 0, named.err);
  const auto from_env = run_pagedllm_env("PAGEDLLM_MODEL=" + shell_quote(kStories), args);
  REQUIRE_MESSAGE(from_env.exit_code == 0, from_env.err);
  CHECK(from_env.out == named.out);
  // A missing file named there is the error, not a fallback to the default model.
  const auto missing = run_pagedllm_env("PAGEDLLM_MODEL=/nonexistent/from-env.gguf", args);
  CHECK(missing.exit_code == 1);
  CHECK(missing.err.find("/nonexistent/from-env.gguf") != std::string::npos);
}

TEST_CASE("run --kv-type f32 stores twice the K/V bytes per token of f16") {
  const std::string base = "-m " + shell_quote(kStories) + " -p 'Once upon a time' -n 4 --temp 0 -t 1 -c 128";
  const auto f16 = run_stats(base);
  const auto f32 = run_stats(base + " --kv-type f32");
  // K and V rows of every layer: n_head_kv x head_dim elements of 2 (f16) or 4 (f32) bytes.
  const auto config = model_config(kStories);
  const int64_t elements = 2 * config["n_layer"].get<int64_t>() * config["n_head_kv"].get<int64_t>() *
                           config["head_dim"].get<int64_t>();
  CHECK(f16["bandwidth"]["kv_bytes_per_token"] == 2 * elements);
  CHECK(f32["bandwidth"]["kv_bytes_per_token"] == 4 * elements);
  CHECK(f32["cache"]["blocks_total"] == f16["cache"]["blocks_total"]);
  CHECK(f32["cache"]["kv_pool_bytes"] == 2 * f16["cache"]["kv_pool_bytes"].get<int64_t>());
}

TEST_CASE("run --no-bos: one prompt token fewer") {
  const std::string prompt = "Once upon a time";
  const std::string base = "-m " + shell_quote(kStories) + " -p " + shell_quote(prompt) + " -n 1 -t 1";
  const size_t with_bos = token_count(kStories, "-p " + shell_quote(prompt));
  CHECK(run_stats(base)["time"]["prompt_tokens"] == with_bos);
  CHECK(run_stats(base + " --no-bos")["time"]["prompt_tokens"] == with_bos - 1);
}

TEST_CASE("run --no-parse-special: control-token text in the prompt is tokenized as plain text") {
  // "</s>" is stories260K's end-of-sequence token written out.
  const std::string prompt = "Hello</s>world";
  const std::string base = "-m " + shell_quote(kStories) + " -p " + shell_quote(prompt) + " -n 1 -t 1";
  const size_t special = token_count(kStories, "-p " + shell_quote(prompt), "--special");
  const size_t plain = token_count(kStories, "-p " + shell_quote(prompt));
  REQUIRE(plain > special);
  CHECK(run_stats(base)["time"]["prompt_tokens"] == special);
  CHECK(run_stats(base + " --no-parse-special")["time"]["prompt_tokens"] == plain);
}

TEST_CASE("run measures the machine's bandwidth once and caches it in ~/.cache/pagedllm/cpu_bandwidth.json") {
  Scratch home("home");
  const std::string env = "-u XDG_CACHE_HOME HOME=" + shell_quote(home.path.string());
  const std::string args = "run -m " + shell_quote(kStories) + " -p hi -n 2 -t 1 --device cpu --stats json";
  const std::string cache = home / ".cache/pagedllm/cpu_bandwidth.json";

  const auto first = run_pagedllm_env(env, args);
  REQUIRE_MESSAGE(first.exit_code == 0, first.err);
  const auto measured = last_json_line(first.err)["bandwidth"];
  CHECK(measured["peak_source"] == "streaming-read probe");
  REQUIRE(std::filesystem::exists(cache));
  // The file keeps what was measured (one entry: this machine, this thread count).
  const auto stored = nlohmann::json::parse(pagedllm::test::slurp(cache));
  REQUIRE(stored.is_object());
  REQUIRE(stored.size() == 1);
  CHECK(stored.begin().value().get<double>() == measured["peak_gb_s"].get<double>());

  const auto second = run_pagedllm_env(env, args);
  REQUIRE_MESSAGE(second.exit_code == 0, second.err);
  const auto reused = last_json_line(second.err)["bandwidth"];
  CHECK(reused["peak_source"] == "streaming-read probe, cached");
  CHECK(reused["peak_gb_s"].get<double>() == measured["peak_gb_s"].get<double>());
}

TEST_CASE("run without --kv-mem: a pool of one full context per --parallel sample plus a spare block each") {
  const auto config = model_config(kStories);
  const int64_t block_bytes = 16 * 2 * 2 * config["n_layer"].get<int64_t>() * config["n_head_kv"].get<int64_t>() *
                              config["head_dim"].get<int64_t>();  // 16 tokens of f16 K and V
  auto blocks_per_context = [](int64_t n_ctx) { return (n_ctx + 15) / 16; };
  const std::string base = "-m " + shell_quote(kStories) + " -p 'Once upon a time' -n 1 -t 1";

  const auto three = run_stats(base + " -c 100 --parallel 3");
  CHECK(three["cache"]["blocks_total"] == 3 * (blocks_per_context(100) + 1));
  CHECK(three["cache"]["kv_pool_bytes"] == 3 * (blocks_per_context(100) + 1) * block_bytes);
  // Without -c the context is the model's own.
  const auto own_context = run_stats(base);
  CHECK(own_context["cache"]["blocks_total"] == blocks_per_context(config["context_length"].get<int64_t>()) + 1);
}
