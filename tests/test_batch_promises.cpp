// What README.md promises about `pagedllm batch`, one promise per test case, each checked on stories260K against
// expectations worked out from the request files the test writes, from other fields of the same output, from a
// second run with other flags, or from the model's shape: the progress display, the summary (--stats json and
// text), the record fields, atomic output when the process is killed, every form of "stop", and the default size
// of the K/V pool.
#include <doctest/doctest.h>

#include "required_files.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "tests/cli_runner.h"

namespace fs = std::filesystem;
using nlohmann::json;
using pagedllm::test::CommandResult;
using pagedllm::test::run_pagedllm;
using pagedllm::test::shell_quote;
using pagedllm::test::run_until_lines_then_signal;
using pagedllm::test::slurp;

namespace {

const std::string kModel = pagedllm::test::kStoriesPath;
// One thread: runs compute bit-identical logits, so greedy results and the schedule repeat exactly.
const std::string kCommon = "-m " + shell_quote(kModel) + " -t 1";
constexpr int kBlockSize = 16;  // the default --block-size

struct TempDir {
  fs::path path;
  explicit TempDir(const std::string& name) {
    path = fs::temp_directory_path() / ("pagedllm_batch_promises_" + std::to_string(::getpid()) + "_" + name);
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string operator/(const std::string& name) const { return (path / name).string(); }
};

void write_file(const std::string& path, const std::string& text) { std::ofstream(path, std::ios::binary) << text; }

std::string jsonl(const std::vector<json>& requests) {
  std::string text;
  for (const json& r : requests) text += r.dump() + "\n";
  return text;
}

std::vector<json> read_records(const std::string& path) {
  std::vector<json> records;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) records.push_back(json::parse(line));
  return records;
}

// `batch` on stories260K with a 256-token context unless `extra` gives -c; stderr and stdout are captured.
CommandResult batch(const std::string& input, const std::string& output, const std::string& extra) {
  const std::string context = extra.find("-c ") == std::string::npos ? " -c 256" : "";
  return run_pagedllm("batch " + kCommon + context + " -i " + shell_quote(input) + " -o " + shell_quote(output) + " " +
                      extra);
}

// The tokens `pagedllm tokenize` makes of a prompt (with BOS, as batch adds it).
std::vector<int> tokenize(const std::string& text) {
  const CommandResult r = run_pagedllm("tokenize -m " + shell_quote(kModel) + " --ids -p " + shell_quote(text));
  REQUIRE_MESSAGE(r.exit_code == 0, r.err);
  return json::parse(r.out).get<std::vector<int>>();
}

int64_t f16_block_bytes() {
  const int64_t per_token = pagedllm::test::kv_bytes_per_token(kModel, 2);
  REQUIRE(per_token > 0);
  return per_token * kBlockSize;
}

struct ProgressDraw {
  int done = 0, total = 0;
  double tokens_per_s = 0;
  int kv_percent = 0, running = 0, waiting = 0;
  bool full_bar = false;
  size_t end = 0;  // offset just past the drawn text and its padding
};

// Every drawing of the progress line in `text` (each starts with a carriage return).
std::vector<ProgressDraw> progress_draws(const std::string& text) {
  static const std::regex pattern(
      R"(\r\[([#.]{24})\] (\d+)/(\d+) requests  ([0-9.]+) tokens/s  KV (\d+)%  running (\d+)  waiting (\d+) *)");
  std::vector<ProgressDraw> draws;
  for (auto it = std::sregex_iterator(text.begin(), text.end(), pattern); it != std::sregex_iterator(); ++it) {
    const std::smatch& m = *it;
    ProgressDraw d;
    d.full_bar = m[1].str() == std::string(24, '#');
    d.done = std::stoi(m[2]);
    d.total = std::stoi(m[3]);
    d.tokens_per_s = std::stod(m[4]);
    d.kv_percent = std::stoi(m[5]);
    d.running = std::stoi(m[6]);
    d.waiting = std::stoi(m[7]);
    d.end = static_cast<size_t>(m.position(0) + m.length(0));
    draws.push_back(d);
  }
  return draws;
}

const std::vector<std::string> kShortPrompts = {"Once upon a time", "The little dog", "Lily went", "Tom said",
                                                "Mom was",          "The sun",        "A big cat", "Ben had"};

}  // namespace

TEST_CASE("batch --progress: on (and auto at a terminal) shows done/total, tokens/s, KV %, running/waiting and "
          "ends its line; off and auto on a pipe show nothing") {
  TempDir dir("progress");
  // Five short prompts (one block each), at most two running, in a pool of exactly ten blocks.
  std::vector<json> requests;
  for (int i = 0; i < 5; ++i) {
    requests.push_back({{"id", i}, {"prompt", kShortPrompts[static_cast<size_t>(i)]}, {"max_tokens", 30},
                        {"temperature", 0}});
  }
  write_file(dir / "in.jsonl", jsonl(requests));
  const std::string flags = "--max-seqs 2 --kv-mem " + std::to_string(10 * f16_block_bytes());

  const CommandResult on = batch(dir / "in.jsonl", dir / "on.jsonl", flags + " --progress on --stats json");
  REQUIRE_MESSAGE(on.exit_code == 0, on.err);
  for (const json& r : read_records(dir / "on.jsonl")) REQUIRE(r["prompt_tokens"].get<int>() < kBlockSize);
  const std::vector<ProgressDraw> draws = progress_draws(on.err);
  INFO("stderr: " << on.err);
  REQUIRE(draws.size() >= 2);
  for (const ProgressDraw& d : draws) {
    CHECK(d.total == 5);
    CHECK(d.running <= 2);
    CHECK(d.done + d.running + d.waiting == 5);  // one sequence per request here
    CHECK(d.kv_percent <= 100);
    CHECK(d.tokens_per_s > 0);
  }
  // The bar draws at once, after the first step: two requests admitted, holding one block each of the ten.
  CHECK(draws.front().done == 0);
  CHECK(draws.front().running == 2);
  CHECK(draws.front().waiting == 3);
  CHECK(draws.front().kv_percent == 100 * 2 / 10);
  // The last drawing is the end state, with the summary's throughput, and the line is ended before the summary.
  const ProgressDraw& last = draws.back();
  CHECK(last.done == 5);
  CHECK(last.full_bar);
  CHECK(last.running == 0);
  CHECK(last.waiting == 0);
  const json summary = pagedllm::test::last_json_object(on.err);
  REQUIRE(summary.is_object());
  CHECK(std::fabs(last.tokens_per_s - summary["generated_tokens_per_s"].get<double>()) <= 0.05 + 1e-9);
  REQUIRE(last.end < on.err.size());
  CHECK(on.err[last.end] == '\n');

  // Off, and auto when stderr is a file: no progress at all.
  for (const std::string mode : {"--progress off", ""}) {
    CAPTURE(mode);
    const CommandResult quiet = batch(dir / "in.jsonl", dir / "quiet.jsonl", flags + " --stats none " + mode);
    REQUIRE_MESSAGE(quiet.exit_code == 0, quiet.err);
    CHECK(quiet.err.find('\r') == std::string::npos);
    CHECK(quiet.err.find("requests") == std::string::npos);
    CHECK(quiet.err.empty());
  }

  // auto when stderr is a terminal: script(1) runs the command in a pseudo-terminal and copies what it shows.
  pagedllm::test::require_program("script", "it comes with util-linux (apt-get install bsdutils)");
  const std::string command = shell_quote(PAGEDLLM_BINARY) + " batch " + kCommon + " -c 256 -i " +
                              shell_quote(dir / "in.jsonl") + " -o " + shell_quote(dir / "tty.jsonl") + " " + flags +
                              " --stats none";
  const std::string screen_path = dir / "screen.txt";
  const int status = std::system(("script -qec " + shell_quote(command) + " /dev/null </dev/null >" +
                                  shell_quote(screen_path) + " 2>&1").c_str());
  REQUIRE(WIFEXITED(status));
  REQUIRE(WEXITSTATUS(status) == 0);
  const std::string screen = slurp(screen_path);
  INFO("terminal: " << screen);
  const std::vector<ProgressDraw> tty_draws = progress_draws(screen);
  REQUIRE(!tty_draws.empty());
  CHECK(tty_draws.back().done == 5);
  CHECK(tty_draws.back().total == 5);
  // The terminal turns the final newline into CR LF.
  CHECK(screen.substr(tty_draws.back().end) == "\r\n");
}

TEST_CASE("batch --stats json: the summary's counts, throughput, waste, sharing, copies, prefix hits and preemptions "
          "follow from the input; --stats text states the same numbers") {
  TempDir dir("summary");
  // Four samples of one prompt (they share its blocks; its partly filled last block is copied on write), three
  // prompts that begin with the same two blocks and more (the prefix cache), and a line that is not JSON.
  const std::string shared_beginning =
      "Once upon a time, there was a little girl named Lily. She loved to play outside in the sun with her dog. ";
  const std::vector<std::string> names = {"Tom", "Sue", "Max"};
  std::vector<json> requests = {{{"id", "fork"}, {"prompt", "The little dog ran"}, {"n", 4}, {"max_tokens", 12},
                                 {"temperature", 0}}};
  for (size_t i = 0; i < names.size(); ++i) {
    requests.push_back({{"id", "prefix" + std::to_string(i)}, {"prompt", shared_beginning + names[i] + " said"},
                        {"max_tokens", 10}, {"temperature", 0}});
  }
  write_file(dir / "in.jsonl", jsonl(requests) + "this line is not JSON\n");

  const CommandResult run = batch(dir / "in.jsonl", dir / "out.jsonl", "--progress off --stats json");
  REQUIRE_MESSAGE(run.exit_code == 0, run.err);
  const json s = pagedllm::test::last_json_object(run.err);
  REQUIRE_MESSAGE(s.is_object(), run.err);
  const std::vector<json> records = read_records(dir / "out.jsonl");
  REQUIRE(records.size() == 5);
  INFO("summary: " << s.dump());

  // Requests: four ran, one could not.
  CHECK(s["requests"] == 5);
  CHECK(s["ok"] == 4);
  CHECK(s["errors"] == 1);
  CHECK(s["resumed"] == 0);
  // Tokens: the records' sums; throughput: those over the seconds.
  int64_t prompt_tokens = 0, completion_tokens = 0;
  for (const json& r : records) {
    prompt_tokens += r["prompt_tokens"].get<int64_t>();
    completion_tokens += r["completion_tokens"].get<int64_t>();
  }
  CHECK(s["prompt_tokens"] == prompt_tokens);
  CHECK(s["generated_tokens"] == completion_tokens);
  const double seconds = s["seconds"].get<double>();
  REQUIRE(seconds > 0);
  CHECK(s["generated_tokens_per_s"].get<double>() == doctest::Approx(completion_tokens / seconds).epsilon(1e-9));
  CHECK(s["total_tokens_per_s"].get<double>() ==
        doctest::Approx((prompt_tokens + completion_tokens) / seconds).epsilon(1e-9));

  const json& kv = s["kv"];
  // Copy-on-write: the fork's last prompt block is partly filled and held by four samples: the first three writers
  // copy it, the last finds itself its only holder.
  const int fork_prompt = records[0]["prompt_tokens"].get<int>();
  REQUIRE(fork_prompt % kBlockSize != 0);
  CHECK(kv["cow_copies"] == 3);
  CHECK(kv["peak_shared_blocks"].get<int>() >= 1);
  CHECK(kv["sharing_saved_percent"].get<double>() > 0);
  CHECK(kv["sharing_saved_percent"].get<double>() < 100);
  // Prefix cache: the second and third of the shared-beginning prompts find every full block of the tokens all
  // three have in common (the last prompt token is always computed, so a block holding it is not looked up).
  std::vector<std::vector<int>> prompts;
  for (const std::string& name : names) prompts.push_back(tokenize(shared_beginning + name + " said"));
  size_t common = 0;
  while (common < prompts[0].size() && common < prompts[1].size() && common < prompts[2].size() &&
         prompts[0][common] == prompts[1][common] && prompts[0][common] == prompts[2][common]) {
    ++common;
  }
  const int64_t common_blocks = static_cast<int64_t>(common / kBlockSize);
  REQUIRE(common_blocks >= 2);
  for (const auto& p : prompts) REQUIRE(static_cast<int64_t>((p.size() - 1) / kBlockSize) >= common_blocks);
  CHECK(records[1]["prompt_tokens"] == prompts[0].size());
  CHECK(kv["prefix_hits"] == 2 * common_blocks);
  CHECK(kv["prefix_queries"].get<int64_t>() >= kv["prefix_hits"].get<int64_t>());
  CHECK(kv["prefix_hit_rate"].get<double>() ==
        doctest::Approx(kv["prefix_hits"].get<double>() / kv["prefix_queries"].get<double>()));
  // Peaks: the four samples ran at once, and at most all seven sequences; every block held counts.
  CHECK(kv["peak_running_sequences"].get<int>() >= 4);
  CHECK(kv["peak_running_sequences"].get<int>() <= 7);
  CHECK(kv["peak_blocks"].get<int>() <= kv["blocks_total"].get<int>());
  CHECK(kv["peak_percent"].get<double>() ==
        doctest::Approx(100.0 * kv["peak_blocks"].get<double>() / kv["blocks_total"].get<double>()));
  int64_t longest_prefix_request = 0;  // blocks the longest shared-beginning request holds at its end
  for (size_t i = 1; i < records.size() - 1; ++i) {
    longest_prefix_request = std::max<int64_t>(
        longest_prefix_request,
        (records[i]["prompt_tokens"].get<int64_t>() + records[i]["completion_tokens"].get<int64_t>() - 1 +
         kBlockSize - 1) / kBlockSize);
  }
  CHECK(kv["peak_blocks"].get<int64_t>() >= longest_prefix_request);
  CHECK(kv["waste_percent"].get<double>() > 0);
  CHECK(kv["preemptions"] == 0);  // a roomy pool
  CHECK(kv["preempted_tokens"] == 0);

  SUBCASE("without sharing there is nothing saved, copied or hit; the contiguous layout wastes more") {
    // The three prompts alone, prefix cache off: every sequence stores its own tokens.
    write_file(dir / "alone.jsonl", jsonl({requests[1], requests[2], requests[3]}));
    const CommandResult alone = batch(dir / "alone.jsonl", dir / "alone_out.jsonl",
                                      "--progress off --stats json --prefix-cache off");
    REQUIRE_MESSAGE(alone.exit_code == 0, alone.err);
    const json a = pagedllm::test::last_json_object(alone.err)["kv"];
    CHECK(a["sharing_saved_percent"] == 0.0);
    CHECK(a["cow_copies"] == 0);
    CHECK(a["prefix_queries"] == 0);
    CHECK(a["prefix_hits"] == 0);
    CHECK(a["peak_shared_blocks"] == 0);
    // Each sequence reserving its whole context leaves far more slots empty than blocks taken as needed.
    const CommandResult contiguous = batch(dir / "in.jsonl", dir / "contiguous_out.jsonl",
                                           "--progress off --stats json --kv-layout contiguous");
    REQUIRE_MESSAGE(contiguous.exit_code == 0, contiguous.err);
    CHECK(pagedllm::test::last_json_object(contiguous.err)["kv"]["waste_percent"].get<double>() >
          kv["waste_percent"].get<double>());
  }

  SUBCASE("resumed requests count, a tiny --kv-mem preempts, and only what ran counts as generated") {
    // The same file plus three longer requests, resumed: the four finished ones are copied, the bad line fails
    // again, and three sequences growing to three blocks each cannot all fit in five blocks.
    std::vector<json> more = requests;
    for (int i = 0; i < 3; ++i) {
      more.push_back({{"id", "new" + std::to_string(i)}, {"prompt", kShortPrompts[static_cast<size_t>(i)]},
                      {"max_tokens", 40}, {"temperature", 0}});
    }
    write_file(dir / "more.jsonl", jsonl(more) + "this line is not JSON\n");
    const CommandResult resumed =
        batch(dir / "more.jsonl", dir / "out.jsonl",
              "--progress off --stats json --resume --kv-mem " + std::to_string(5 * f16_block_bytes()));
    REQUIRE_MESSAGE(resumed.exit_code == 0, resumed.err);
    const json r = pagedllm::test::last_json_object(resumed.err);
    INFO("resumed summary: " << r.dump());
    CHECK(r["requests"] == 8);
    CHECK(r["resumed"] == 4);
    CHECK(r["errors"] == 1);
    CHECK(r["ok"] == 3);
    CHECK(r["ok"].get<int>() + r["errors"].get<int>() + r["resumed"].get<int>() == r["requests"].get<int>());
    CHECK(r["kv"]["preemptions"].get<int>() > 0);
    CHECK(r["kv"]["preempted_tokens"].get<int>() > 0);
    int64_t generated = 0;
    for (const json& record : read_records(dir / "out.jsonl")) {
      if (!record.contains("error") && record["id"].get<std::string>().rfind("new", 0) == 0) {
        generated += record["completion_tokens"].get<int64_t>();
      }
    }
    CHECK(generated > 0);
    CHECK(r["generated_tokens"] == generated);
  }

  SUBCASE("--stats text states the same numbers") {
    const CommandResult text = batch(dir / "in.jsonl", dir / "text_out.jsonl", "--progress off --stats text");
    REQUIRE_MESSAGE(text.exit_code == 0, text.err);
    INFO("text: " << text.err);
    std::smatch m;
    REQUIRE(std::regex_search(text.err, m, std::regex(R"(requests:  (\d+) \((\d+) ok, (\d+) errors, (\d+) resumed\))")));
    CHECK(std::stoi(m[1]) == s["requests"].get<int>());
    CHECK(std::stoi(m[2]) == s["ok"].get<int>());
    CHECK(std::stoi(m[3]) == s["errors"].get<int>());
    CHECK(std::stoi(m[4]) == s["resumed"].get<int>());
    REQUIRE(std::regex_search(text.err, m, std::regex(R"(tokens:    prompt (\d+), generated (\d+); ([0-9.]+) generated )"
                                                      R"(tokens/s, ([0-9.]+) tokens/s in all)")));
    CHECK(std::stoll(m[1]) == prompt_tokens);
    CHECK(std::stoll(m[2]) == completion_tokens);
    // Both rates come from the same seconds: their ratio is that of the token counts (to the printed precision).
    const double generated_rate = std::stod(m[3]), total_rate = std::stod(m[4]);
    REQUIRE(generated_rate > 0);
    CHECK(std::fabs(total_rate * completion_tokens - generated_rate * (prompt_tokens + completion_tokens)) <=
          0.05 * static_cast<double>(2 * completion_tokens + prompt_tokens));
    REQUIRE(std::regex_search(text.err, m, std::regex(R"(kv:        paged layout, (\d+) blocks of (\d+) tokens .*; peak )"
                                                      R"((\d+) blocks \(([0-9.]+)%\), peak (\d+) sequences at once; )"
                                                      R"(waste ([0-9.]+)%)")));
    CHECK(std::stoi(m[1]) == kv["blocks_total"].get<int>());
    CHECK(std::stoi(m[2]) == kBlockSize);
    CHECK(std::stoi(m[3]) == kv["peak_blocks"].get<int>());
    CHECK(std::fabs(std::stod(m[4]) - kv["peak_percent"].get<double>()) <= 0.05 + 1e-9);
    CHECK(std::stoi(m[5]) == kv["peak_running_sequences"].get<int>());
    CHECK(std::fabs(std::stod(m[6]) - kv["waste_percent"].get<double>()) <= 0.005 + 1e-9);
    REQUIRE(std::regex_search(text.err, m, std::regex(R"(sharing:   saved ([0-9.]+)% .*; peak shared blocks (\d+); )"
                                                      R"(copy-on-write copies (\d+))")));
    CHECK(std::fabs(std::stod(m[1]) - kv["sharing_saved_percent"].get<double>()) <= 0.05 + 1e-9);
    CHECK(std::stoi(m[2]) == kv["peak_shared_blocks"].get<int>());
    CHECK(std::stoi(m[3]) == kv["cow_copies"].get<int>());
    REQUIRE(std::regex_search(text.err, m, std::regex(R"(prefix:    (\d+) of (\d+) prompt blocks reused \(([0-9.]+)%\))")));
    CHECK(std::stoi(m[1]) == kv["prefix_hits"].get<int>());
    CHECK(std::stoi(m[2]) == kv["prefix_queries"].get<int>());
    CHECK(std::fabs(std::stod(m[3]) - 100 * kv["prefix_hit_rate"].get<double>()) <= 0.05 + 1e-9);
    REQUIRE(std::regex_search(text.err, m, std::regex(R"(preempted: (\d+) times \((\d+) K/V rows)")));
    CHECK(std::stoi(m[1]) == kv["preemptions"].get<int>());
    CHECK(std::stoi(m[2]) == kv["preempted_tokens"].get<int>());
  }
}

TEST_CASE("batch records: completions[].index, prompt_tokens, completion_tokens, queue_s and preemptions") {
  TempDir dir("records");
  // A request with three seeded samples, then four greedy ones.
  std::vector<json> requests = {{{"id", "three"}, {"prompt", kShortPrompts[0]}, {"n", 3}, {"max_tokens", 8},
                                 {"temperature", 0.9}, {"seed", 5}}};
  for (int i = 1; i <= 4; ++i) {
    requests.push_back({{"id", "greedy" + std::to_string(i)}, {"prompt", kShortPrompts[static_cast<size_t>(i)]},
                        {"max_tokens", 40}, {"temperature", 0}});
  }
  write_file(dir / "in.jsonl", jsonl(requests));

  const CommandResult roomy = batch(dir / "in.jsonl", dir / "roomy.jsonl", "--progress off --stats none");
  REQUIRE_MESSAGE(roomy.exit_code == 0, roomy.err);
  const std::vector<json> records = read_records(dir / "roomy.jsonl");
  REQUIRE(records.size() == requests.size());
  for (size_t i = 0; i < records.size(); ++i) {
    const json& r = records[i];
    CAPTURE(r.dump());
    const json& completions = r["completions"];
    REQUIRE(completions.size() == static_cast<size_t>(requests[i].value("n", 1)));
    int64_t tokens = 0;
    for (size_t k = 0; k < completions.size(); ++k) {
      CHECK(completions[k]["index"] == k);
      tokens += static_cast<int64_t>(completions[k]["tokens"].size());
    }
    CHECK(r["completion_tokens"] == tokens);
    CHECK(r["prompt_tokens"] == tokenize(requests[i]["prompt"].get<std::string>()).size());
    CHECK(r["preemptions"] == 0);
    CHECK(r["queue_s"].get<double>() >= 0);
    CHECK(r["queue_s"].get<double>() <= r["latency_s"].get<double>());
  }

  // Under a pool of five blocks the greedy requests (three blocks each at their end) preempt one another; each
  // preemption is counted on the request that suffered it.
  const CommandResult tight = batch(dir / "in.jsonl", dir / "tight.jsonl",
                                    "--progress off --stats json --kv-mem " + std::to_string(5 * f16_block_bytes()));
  REQUIRE_MESSAGE(tight.exit_code == 0, tight.err);
  int64_t preemptions = 0, most = 0;
  for (const json& r : read_records(dir / "tight.jsonl")) {
    preemptions += r["preemptions"].get<int64_t>();
    most = std::max(most, r["preemptions"].get<int64_t>());
  }
  CHECK(most > 0);
  CHECK(preemptions == pagedllm::test::last_json_object(tight.err)["kv"]["preemptions"]);

  // One sequence at a time: request i waits at least until request i-1 has finished. All were submitted before the
  // first one was admitted, so request i was submitted at most queue_s[0] after request i-1.
  const CommandResult serial = batch(dir / "in.jsonl", dir / "serial.jsonl", "--progress off --stats none --max-seqs 1");
  REQUIRE_MESSAGE(serial.exit_code == 0, serial.err);
  const std::vector<json> one_by_one = read_records(dir / "serial.jsonl");
  REQUIRE(one_by_one.size() == requests.size());
  const double first_queue = one_by_one[0]["queue_s"].get<double>();
  CHECK(first_queue < one_by_one[0]["latency_s"].get<double>());
  for (size_t i = 1; i < one_by_one.size(); ++i) {
    CAPTURE(i);
    CHECK(one_by_one[i]["queue_s"].get<double>() + first_queue + 1e-9 >= one_by_one[i - 1]["latency_s"].get<double>());
  }
}

TEST_CASE("batch output is atomic under a real interruption: killed mid-run (SIGKILL, SIGTERM), only whole records "
          "in RESULTS.partial, no RESULTS, and --resume gives what an uninterrupted run gives") {
  TempDir dir("interrupt");
  // One sequence at a time, 200 tokens each: records trickle out for about a second.
  std::vector<json> requests;
  for (int i = 0; i < 40; ++i) {
    requests.push_back({{"id", i}, {"prompt", kShortPrompts[static_cast<size_t>(i) % kShortPrompts.size()]},
                        {"max_tokens", 200}, {"temperature", 0}});
  }
  write_file(dir / "in.jsonl", jsonl(requests));
  const std::string flags = "--max-seqs 1 --progress off --stats none";
  REQUIRE(batch(dir / "in.jsonl", dir / "reference.jsonl", flags).exit_code == 0);
  // Everything but the timings, which differ from run to run.
  auto without_timings = [](std::vector<json> records) {
    for (json& r : records) {
      r.erase("latency_s");
      r.erase("queue_s");
    }
    return records;
  };
  const std::vector<json> reference = without_timings(read_records(dir / "reference.jsonl"));
  REQUIRE(reference.size() == requests.size());

  for (const int signal_number : {SIGKILL, SIGTERM}) {
    CAPTURE(signal_number);
    const std::string output = dir / ("out" + std::to_string(signal_number) + ".jsonl");
    const std::string partial = output + ".partial";
    std::vector<std::string> args = {PAGEDLLM_BINARY, "batch", "-m", kModel, "-t", "1", "-c", "256",
                                     "-i", dir / "in.jsonl", "-o", output, "--max-seqs", "1",
                                     "--progress", "off", "--stats", "none"};
    // Signalled once three records are out.
    const int status = run_until_lines_then_signal(args, partial, 3, signal_number);
    // SIGKILL ends it at once; SIGTERM may also be caught and end it after the current step with 128 + signal.
    const bool killed = WIFSIGNALED(status) && WTERMSIG(status) == signal_number;
    const bool stopped = signal_number != SIGKILL && WIFEXITED(status) && WEXITSTATUS(status) == 128 + signal_number;
    REQUIRE_MESSAGE((killed || stopped), "the batch did not end by the signal (wait status " << status << ")");

    CHECK_FALSE(fs::exists(output));
    const std::string text = slurp(partial);
    REQUIRE(!text.empty());
    CHECK(text.back() == '\n');
    std::vector<json> partial_records;
    std::istringstream lines(text);
    for (std::string line; std::getline(lines, line);) {
      const json record = json::parse(line, nullptr, /*allow_exceptions=*/false);
      CAPTURE(line);
      REQUIRE(record.is_object());
      for (const char* key : {"id", "line", "completions", "prompt_tokens", "completion_tokens", "latency_s", "queue_s",
                              "preemptions"}) {
        CHECK(record.contains(key));
      }
      partial_records.push_back(record);
    }
    CHECK(partial_records.size() >= 3);
    CHECK(partial_records.size() < requests.size());

    const CommandResult resumed = batch(dir / "in.jsonl", output, flags + " --resume");
    REQUIRE_MESSAGE(resumed.exit_code == 0, resumed.err);
    CHECK_FALSE(fs::exists(partial));
    const std::vector<json> records = read_records(output);
    CHECK(without_timings(records) == reference);
    // The records the killed run finished were copied, not generated again.
    for (const json& before : partial_records) {
      const json& after = records.at(before["id"].get<size_t>());
      CHECK(after["latency_s"] == before["latency_s"]);
    }
  }
}

TEST_CASE("batch stop: a string, a list, a match spanning tokens and one that never occurs; the text is cut before "
          "the match with finish_reason stop") {
  TempDir dir("stop");
  const json plain = {{"id", "plain"}, {"prompt", "Once upon a time"}, {"max_tokens", 40}, {"temperature", 0}};
  write_file(dir / "plain.jsonl", jsonl({plain}));
  REQUIRE(batch(dir / "plain.jsonl", dir / "plain_out.jsonl", "--progress off --stats none").exit_code == 0);
  const std::string full = read_records(dir / "plain_out.jsonl").at(0)["completions"][0]["text"];
  CAPTURE(full);
  // Stop strings taken from the text at a third and at two thirds of the way.
  const size_t third = full.find(' ', full.size() / 3), two_thirds = full.find(' ', 2 * full.size() / 3);
  REQUIRE(third != std::string::npos);
  REQUIRE(two_thirds != std::string::npos);
  REQUIRE(two_thirds > third + 4);
  const std::string early = full.substr(third + 1, 3), late = full.substr(two_thirds + 1, 3);
  // A SentencePiece piece holds a space only at its start, so text running across a space after a letter spans
  // at least two tokens.
  REQUIRE(full[two_thirds - 1] != ' ');
  const std::string spanning = full.substr(two_thirds - 2, 5);
  const std::string never = "qqzzxx";
  REQUIRE(full.find(never) == std::string::npos);

  struct Case {
    std::string id;
    json stop;
    size_t cut;  // where the text must end; npos: not cut
  };
  const std::vector<Case> cases = {
      {"string", early, full.find(early)},
      {"list", json::array({never, late, early}), std::min(full.find(late), full.find(early))},
      {"later of a list", json::array({late}), full.find(late)},
      {"spanning", spanning, full.find(spanning)},
      {"never", never, std::string::npos},
  };
  std::vector<json> requests;
  for (const Case& c : cases) {
    json r = plain;
    r["id"] = c.id;
    r["stop"] = c.stop;
    requests.push_back(r);
  }
  write_file(dir / "stop.jsonl", jsonl(requests));
  const CommandResult run = batch(dir / "stop.jsonl", dir / "stop_out.jsonl", "--progress off --stats none");
  REQUIRE_MESSAGE(run.exit_code == 0, run.err);
  const std::vector<json> records = read_records(dir / "stop_out.jsonl");
  REQUIRE(records.size() == cases.size());
  for (size_t i = 0; i < cases.size(); ++i) {
    CAPTURE(cases[i].id);
    CAPTURE(cases[i].stop.dump());
    const json& completion = records[i]["completions"][0];
    if (cases[i].cut == std::string::npos) {
      CHECK(completion["finish_reason"] == "length");
      CHECK(completion["text"] == full);
    } else {
      CHECK(completion["finish_reason"] == "stop");
      CHECK(completion["text"] == full.substr(0, cases[i].cut));
    }
  }
}

TEST_CASE("batch without --kv-mem: a pool of --max-seqs full contexts, capped at 256 MiB, never less than one "
          "context") {
  TempDir dir("kv_default");
  write_file(dir / "in.jsonl", jsonl({{{"id", 1}, {"prompt", "Once upon a time"}, {"max_tokens", 2}}}));
  const int64_t block_bytes = f16_block_bytes();
  const int64_t cap = int64_t{256} << 20;
  auto pool = [&](const std::string& flags) {
    const CommandResult r = batch(dir / "in.jsonl", dir / "out.jsonl", "--progress off --stats json " + flags);
    REQUIRE_MESSAGE(r.exit_code == 0, r.err);
    const json kv = pagedllm::test::last_json_object(r.err)["kv"];
    CHECK(kv["pool_bytes"].get<int64_t>() == kv["blocks_total"].get<int64_t>() * block_bytes);
    return kv["blocks_total"].get<int64_t>();
  };
  auto blocks_per_context = [](int64_t n_ctx) { return (n_ctx + kBlockSize - 1) / kBlockSize; };
  // Room for every sequence at its full context, also when the context is not a whole number of blocks.
  CHECK(pool("-c 256 --max-seqs 4") == 4 * blocks_per_context(256));
  CHECK(pool("-c 100 --max-seqs 4") >= 4 * blocks_per_context(100));
  CHECK(pool("-c 100 --max-seqs 4") * block_bytes <= cap);
  // 1000 contexts of 512 tokens would take more than 256 MiB: the cap holds.
  REQUIRE(1000 * 512 * block_bytes / kBlockSize > cap);
  CHECK(pool("-c 512 --max-seqs 1000") == cap / block_bytes);
  // One context larger than the cap: the pool still holds it (a spare block or two allowed).
  const int64_t huge_context = cap / (block_bytes / kBlockSize) + 1000;
  const int64_t one_context = pool("-c " + std::to_string(huge_context) + " --max-seqs 1");
  CHECK(one_context >= blocks_per_context(huge_context));
  CHECK(one_context <= blocks_per_context(huge_context) + 2);
}
