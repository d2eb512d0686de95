// `pagedllm chat` driven through a pipe, as a script would: one user turn or /command per line, answers on stdout,
// a status line per answer and every message about bad input on stderr, and the conversation kept in the KV cache.
#include <doctest/doctest.h>

#include "required_files.h"

#include <filesystem>
#include <fstream>
#include <regex>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "model_loader/gguf.h"
#include "model_loader/gguf_writer.h"
#include "tests/cli_runner.h"

using pagedllm::test::run_pagedllm;
using pagedllm::test::shell_quote;
using pagedllm::test::slurp;

namespace {

const std::string kStories = PAGEDLLM_SHARED_DIR "/models/stories260K.gguf";
const std::string kSmol = PAGEDLLM_SOURCE_DIR "/models/SmolLM2-135M-Instruct.Q4_1.gguf";

struct TurnLine {
  int prompt = 0, reused = 0, prefilled = 0;
};

// The "this turn:" lines that /stats prints.
std::vector<TurnLine> turn_lines(const std::string& text) {
  static const std::regex pattern(
      R"(this turn: prompt (\d+) tokens = (\d+) reused from the KV cache \+ (\d+) prefilled)");
  std::vector<TurnLine> lines;
  for (auto it = std::sregex_iterator(text.begin(), text.end(), pattern); it != std::sregex_iterator(); ++it) {
    lines.push_back({std::stoi((*it)[1]), std::stoi((*it)[2]), std::stoi((*it)[3])});
  }
  return lines;
}

std::vector<int> cached_counts(const std::string& text) {
  static const std::regex pattern(R"(conversation: \d+ messages, (\d+) tokens in the KV cache)");
  std::vector<int> counts;
  for (auto it = std::sregex_iterator(text.begin(), text.end(), pattern); it != std::sregex_iterator(); ++it) {
    counts.push_back(std::stoi((*it)[1]));
  }
  return counts;
}

// Status lines after answers: "[N tokens, ... | prompt P tokens: R reused, F prefilled ...]".
int status_lines(const std::string& text) {
  static const std::regex pattern(R"(\[\d+ tokens, [0-9.]+ tokens/s \| KV \d+/\d+ blocks \| prompt \d+ tokens: )");
  return static_cast<int>(std::distance(std::sregex_iterator(text.begin(), text.end(), pattern),
                                        std::sregex_iterator()));
}

std::filesystem::path scratch_dir(const std::string& name) {
  const auto dir = std::filesystem::temp_directory_path() / ("pagedllm-chat-" + std::to_string(::getpid()) + name);
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

}  // namespace

TEST_CASE("a scripted SmolLM2 conversation: answers, /stats shows the reuse, a bad /set is reported, /exit ends") {
  pagedllm::test::require_smollm2();
  const std::string script =
      "What is the capital of France?\n"
      "/stats\n"
      "And of Germany?\n"
      "/stats\n"
      "/set temp abc\n"
      "/set top_p 7\n"
      "/set temp 0.5\n"
      "/bogus\n"
      "\n"
      "/exit\n"
      "This line comes after /exit and is never answered.\n";
  const auto r = run_pagedllm("chat -m " + shell_quote(kSmol) + " --temp 0 -n 16 --no-history", script);
  // Three inputs failed (two bad /set, one unknown command): the session goes on, and the exit status says so.
  REQUIRE_MESSAGE(r.exit_code == 1, r.err);
  CHECK(r.err.find("error: 3 inputs failed") != std::string::npos);
  INFO("stdout: " << r.out << "\nstderr: " << r.err);

  // Two answers, then nothing after /exit.
  CHECK(status_lines(r.err) == 2);
  const auto first_line_end = r.out.find('\n');
  REQUIRE(first_line_end != std::string::npos);
  CHECK(first_line_end > 0);  // the first answer is on the first line
  CHECK(r.out.find("this turn:") > first_line_end);

  const std::vector<TurnLine> turns = turn_lines(r.out);
  const std::vector<int> cached = cached_counts(r.out);
  REQUIRE(turns.size() == 2);
  REQUIRE(cached.size() == 2);
  CHECK(turns[0].reused == 0);
  CHECK(turns[0].prefilled == turns[0].prompt);
  // The second turn reuses the whole first exchange from the cache and prefills only the new turn.
  CHECK(turns[1].reused == cached[0]);
  CHECK(turns[1].prefilled == turns[1].prompt - turns[1].reused);
  CHECK(turns[1].prefilled < turns[1].prompt / 2);
  CHECK(r.out.find("bandwidth:") != std::string::npos);

  CHECK(r.err.find("/set temp 'abc': not a number") != std::string::npos);
  CHECK(r.err.find("top_p") != std::string::npos);
  CHECK(r.out.find("temp = 0.5") != std::string::npos);
  CHECK(r.err.find("unknown command /bogus") != std::string::npos);
}

TEST_CASE("stories260K without a template: chatml fallback notice, -sys, multi-line input, /save, /load, /regen") {
  const auto dir = scratch_dir("-stories");
  const std::string saved = (dir / "conversation.json").string();
  const std::string bad = (dir / "bad.json").string();
  { std::ofstream(bad) << "{\"messages\": [{\"role\": \"user\"}]}"; }
  const std::string script =
      "\"\"\"\n"
      "Once upon a time\n"
      "there was a cat\n"
      "\"\"\"\n"
      "The dog \\\n"
      "ran away.\n"
      "/regen\n"
      "/save " + saved + "\n"
      "/load " + bad + "\n"
      "/load " + (dir / "missing.json").string() + "\n"
      "/reset\n"
      "/load " + saved + "\n"
      "//slash at the start\n"
      "/stats\n";  // ends without /exit: the end of input quits too
  const auto r = run_pagedllm("chat -m " + shell_quote(kStories) + " -sys 'You tell stories.' --temp 0 -n 8 -c 256 "
                              "--no-history", script);
  // Two /load inputs failed (a bad file, a missing one): the session goes on, and the exit status says so.
  REQUIRE_MESSAGE(r.exit_code == 1, r.err);
  CHECK(r.err.find("error: 2 inputs failed") != std::string::npos);
  INFO("stdout: " << r.out << "\nstderr: " << r.err);
  CHECK(r.err.find("notice: the model file has no chat template; using the built-in chatml format") !=
        std::string::npos);
  CHECK(status_lines(r.err) == 4);  // two turns, /regen, and the turn after /load

  const auto conversation = nlohmann::json::parse(slurp(saved));
  const auto& messages = conversation["messages"];
  REQUIRE(messages.size() == 5);
  CHECK(messages[0]["role"] == "system");
  CHECK(messages[0]["content"] == "You tell stories.");
  CHECK(messages[1]["content"] == "Once upon a time\nthere was a cat");
  CHECK(messages[3]["content"] == "The dog \nran away.");
  CHECK(messages[4]["role"] == "assistant");

  CHECK(r.err.find(bad + ": message 1 needs a string \"content\"") != std::string::npos);
  CHECK(r.err.find("missing.json: cannot open") != std::string::npos);
  CHECK(r.out.find("loaded 5 messages") != std::string::npos);
  // The cache still held the conversation that was saved and loaded again, so the next turn reuses it.
  const std::vector<TurnLine> turns = turn_lines(r.out);
  REQUIRE(turns.size() == 1);
  CHECK(turns[0].reused > 0);
  std::filesystem::remove_all(dir);
}

TEST_CASE("chat refuses bad flags with one clear message") {
  auto r = run_pagedllm("chat -m " + shell_quote(kStories) + " --chat-template nosuch", "");
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("--chat-template 'nosuch' is not a built-in template") != std::string::npos);
  CHECK(r.err.find("chatml") != std::string::npos);

  r = run_pagedllm("chat -m " + shell_quote(kStories) + " -n 0", "");
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("-n 0") != std::string::npos);

  r = run_pagedllm("chat -m " + shell_quote(kStories) + " -sysf /nonexistent/system.txt", "");
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("/nonexistent/system.txt") != std::string::npos);

  r = run_pagedllm("chat --help", "");
  CHECK(r.exit_code == 0);
  CHECK(r.out.find("-sys") != std::string::npos);
  CHECK(r.out.find("--chat-template") != std::string::npos);

  r = run_pagedllm("chat --no-such-flag", "");
  CHECK(r.exit_code != 0);
}

TEST_CASE("a built-in template chosen with --chat-template replaces the model's, without a notice") {
  const auto r = run_pagedllm("chat -m " + shell_quote(kStories) + " --chat-template zephyr --temp 0 -n 4 "
                              "--no-history", "Hello\n");
  REQUIRE_MESSAGE(r.exit_code == 0, r.err);
  CHECK(r.err.find("notice:") == std::string::npos);
  CHECK(status_lines(r.err) == 1);
}

TEST_CASE("a model whose chat template the interpreter rejects falls back to chatml with a clear notice") {
  // stories260K, copied with a chat template that does not parse.
  const auto dir = scratch_dir("-bad-template");
  const std::string path = (dir / "bad-template.gguf").string();
  {
    auto source = pagedllm::GgufFile::open(kStories);
    pagedllm::GgufWriter writer(source->version());
    for (const auto& [key, value] : source->metadata()) writer.set(key, value);
    writer.set_string("tokenizer.chat_template", "{% for message in messages %}{{ message.content }}");
    for (const pagedllm::GgufTensorInfo& t : source->tensors()) {
      writer.add_tensor(t.name, std::vector<int64_t>(t.ne, t.ne + t.n_dims), t.type,
                        std::span<const uint8_t>(t.data, t.n_bytes));
    }
    writer.write_file(path);
  }
  const auto r = run_pagedllm("chat -m " + shell_quote(path) + " --temp 0 -n 4 --no-history", "Hello\n");
  REQUIRE_MESSAGE(r.exit_code == 0, r.err);
  INFO("stderr: " << r.err);
  CHECK(r.err.find("notice: the model's chat template cannot be used (template syntax error") != std::string::npos);
  CHECK(r.err.find("using the built-in chatml format") != std::string::npos);
  CHECK(status_lines(r.err) == 1);
  std::filesystem::remove_all(dir);
}

TEST_CASE("/system TEXT sets the system prompt of the next answer, /system shows it, /system - removes it") {
  const auto dir = scratch_dir("-system");
  const std::string with_system = (dir / "with_system.json").string(), without = (dir / "without.json").string();
  const std::string script =
      "Hello\n"
      "/system You are a pirate.\n"
      "/system\n"
      "Hi again\n"
      "/stats\n"
      "/save " + with_system + "\n"
      "/system -\n"
      "/system\n"
      "Bye\n"
      "/stats\n"
      "/save " + without + "\n";
  const auto r = run_pagedllm("chat -m " + shell_quote(kStories) + " --temp 0 -n 8 -c 256 --no-history", script);
  REQUIRE_MESSAGE(r.exit_code == 0, r.err);
  INFO("stdout: " << r.out << "\nstderr: " << r.err);
  CHECK(r.out.find("\nYou are a pirate.\n") != std::string::npos);  // /system shows it
  CHECK(r.out.find("(no system prompt)") != std::string::npos);     // ... and, once removed, that there is none

  // Each answer's prompt is the conversation up to its question, as `pagedllm template` renders it and
  // `pagedllm tokenize` counts it: with the system message first, then without it.
  auto prompt_tokens = [&](const std::string& saved, bool expect_system) {
    nlohmann::json messages = nlohmann::json::parse(slurp(saved))["messages"];
    REQUIRE(messages.size() >= 2);
    CHECK((messages[0]["role"] == "system" && messages[0]["content"] == "You are a pirate.") == expect_system);
    for (size_t i = 1; i < messages.size(); ++i) CHECK(messages[i]["role"] != "system");
    messages.erase(messages.size() - 1);  // the answer itself
    const std::string conversation = (dir / "conversation.json").string(), prompt = (dir / "prompt.txt").string();
    std::ofstream(conversation) << messages.dump();
    const auto rendered = run_pagedllm("template -m " + shell_quote(kStories) + " --add-generation-prompt --messages " +
                                       shell_quote(conversation));
    REQUIRE_MESSAGE(rendered.exit_code == 0, rendered.err);
    std::ofstream(prompt, std::ios::binary) << rendered.out;
    const auto tokens = run_pagedllm("tokenize -m " + shell_quote(kStories) + " --ids --special -f " + shell_quote(prompt));
    REQUIRE_MESSAGE(tokens.exit_code == 0, tokens.err);
    return static_cast<int>(nlohmann::json::parse(tokens.out).size());
  };
  const std::vector<TurnLine> turns = turn_lines(r.out);
  REQUIRE(turns.size() == 2);
  CHECK(turns[0].prompt == prompt_tokens(with_system, true));
  CHECK(turns[1].prompt == prompt_tokens(without, false));
  std::filesystem::remove_all(dir);
}
