// `pagedllm batch` split over several processes: --stable-records (runs that compare byte for byte), --shard I/N and
// the job-scheduler variables that choose it, --resume of a shard, and `batch merge`. The binary runs on stories260K
// with one thread; every expected output is an unsharded run made in the same test.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli_runner.h"
#include "required_files.h"

namespace fs = std::filesystem;
using nlohmann::json;
using pagedllm::test::CommandResult;
using pagedllm::test::run_pagedllm_env;
using pagedllm::test::shell_quote;
using pagedllm::test::slurp;

namespace {

const std::string kModel = pagedllm::test::kStoriesPath;

// The variables that choose a shard, unset: the tests say which ones a run sees, whatever runs the suite.
const std::string kNoSchedulerEnv =
    "-u SLURM_ARRAY_TASK_ID -u SLURM_ARRAY_TASK_COUNT -u SLURM_ARRAY_TASK_MIN -u SLURM_ARRAY_TASK_MAX "
    "-u SLURM_ARRAY_TASK_STEP -u JOB_COMPLETION_INDEX";

struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::temp_directory_path() / ("pagedllm_shards_" + std::to_string(::getpid()) + "_" +
                                        std::to_string(std::chrono::steady_clock::now().time_since_epoch().count()));
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string operator/(const std::string& name) const { return (path / name).string(); }
};

void write_file(const std::string& path, const std::string& text) { std::ofstream(path, std::ios::binary) << text; }

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// `pagedllm batch` on stories260K, one thread, quiet; `env` as run_pagedllm_env takes it (after the scheduler
// variables are unset).
CommandResult batch(const std::string& input, const std::string& output, const std::string& extra = "",
                    const std::string& env = "") {
  return run_pagedllm_env(kNoSchedulerEnv + (env.empty() ? "" : " " + env),
                          "batch -m " + shell_quote(kModel) + " -t 1 -c 256 --progress off --stats none -i " +
                              shell_quote(input) + " -o " + shell_quote(output) + " " + extra);
}

// Requests of every kind a record can come from: greedy prompts of several lengths, a seeded sampled one, n = 2, a
// conversation, a bad line and a blank line (which is no request).
std::string mixed_requests(int count) {
  const std::vector<std::string> prompts = {"Once upon a time", "The little dog", "Lily and Ben went to the park",
                                            "Tom was sad because his toy was broken", "Mom said", "The sun was hot"};
  std::string text;
  for (int i = 0; i < count; ++i) {
    std::string id = "r";
    id += std::to_string(i);
    json r = {{"id", id}, {"prompt", prompts[static_cast<size_t>(i) % prompts.size()]},
              {"max_tokens", 6 + i % 5}, {"temperature", 0}};
    if (i % 7 == 3) r = {{"id", i}, {"prompt", "A cat"}, {"temperature", 0.9}, {"seed", 100 + i}, {"max_tokens", 8}};
    if (i % 7 == 5) r["n"] = 2;
    if (i % 11 == 6) {
      r.erase("prompt");
      r["messages"] = json::array({{{"role", "user"}, {"content", "Tell me a story"}}});
    }
    if (i == 4) text += "\n";
    text += i == 8 ? std::string("{\"id\": \"broken\", \"prompt\": ") : r.dump();
    text += '\n';
  }
  return text;
}

}  // namespace

TEST_CASE("batch --stable-records: no latency_s, queue_s or preemptions; two runs scheduled differently write the "
          "same bytes") {
  TempDir dir;
  write_file(dir / "in.jsonl", mixed_requests(12));
  const CommandResult a = batch(dir / "in.jsonl", dir / "a.jsonl", "--stable-records");
  REQUIRE_MESSAGE(a.exit_code == 0, a.err);
  const CommandResult b = batch(dir / "in.jsonl", dir / "b.jsonl", "--stable-records --max-seqs 1 --kv-layout contiguous");
  REQUIRE_MESSAGE(b.exit_code == 0, b.err);
  const std::string text = slurp(dir / "a.jsonl");
  CHECK(text == slurp(dir / "b.jsonl"));
  const std::vector<std::string> records = lines_of(text);
  REQUIRE(records.size() == 12);
  for (const std::string& line : records) {
    const json record = json::parse(line);
    CHECK(record.contains("id"));
    CHECK(record.contains("completions"));
    CHECK_FALSE(record.contains("latency_s"));
    CHECK_FALSE(record.contains("queue_s"));
    CHECK_FALSE(record.contains("preemptions"));
  }
  // Without the flag the fields are there, and everything else is the same.
  const CommandResult timed = batch(dir / "in.jsonl", dir / "timed.jsonl");
  REQUIRE_MESSAGE(timed.exit_code == 0, timed.err);
  const std::vector<std::string> timed_records = lines_of(slurp(dir / "timed.jsonl"));
  REQUIRE(timed_records.size() == records.size());
  for (size_t i = 0; i < records.size(); ++i) {
    json record = json::parse(timed_records[i]);
    if (!record.contains("error")) {
      CHECK(record.contains("latency_s"));
      CHECK(record.contains("queue_s"));
      CHECK(record.contains("preemptions"));
    }
    for (const char* field : {"latency_s", "queue_s", "preemptions"}) record.erase(field);
    CHECK(record == json::parse(records[i]));
  }
}
