// Regression tests for what a hostile-input and fault probe found in the commands: a context too big for memory,
// batch outputs that are devices, FIFOs, the input itself, or already being written, a batch stopped by a signal,
// the whole-cache limit reported as such, and piped chat framing and exit status.
#include <doctest/doctest.h>

#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli_runner.h"
#include "temp_dir.h"
#include "required_files.h"

namespace fs = std::filesystem;
using pagedllm::test::TempDir;
using nlohmann::json;
using pagedllm::test::run_pagedllm;
using pagedllm::test::shell_quote;

namespace {

const std::string kStories = pagedllm::test::kStoriesPath;


void write_file(const fs::path& path, const std::string& text) { std::ofstream(path, std::ios::binary) << text; }

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

std::vector<json> records_of(const std::string& text) {
  std::vector<json> records;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) records.push_back(json::parse(line));
  return records;
}

// `count` requests of `tokens` greedy tokens each.
std::string requests(int count, int tokens) {
  std::string text;
  for (int i = 0; i < count; ++i) {
    text += "{\"id\": " + std::to_string(i) + ", \"prompt\": \"Once upon a time " + std::to_string(i) +
            "\", \"max_tokens\": " + std::to_string(tokens) + ", \"temperature\": 0}\n";
  }
  return text;
}

std::string batch_args(const fs::path& in, const std::string& out) {
  return "batch -m " + shell_quote(kStories) + " -t 1 --stats none --progress off -i " + shell_quote(in.string()) +
         " -o " + shell_quote(out);
}

// Starts pagedllm with `args` in the background; returns its pid.
pid_t spawn(const std::string& args, const fs::path& err) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    const std::string command = "exec " + shell_quote(PAGEDLLM_BINARY) + " " + args + " >/dev/null 2>" +
                                shell_quote(err.string());
    ::execl("/bin/sh", "sh", "-c", command.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  return pid;
}

// Waits until `path` holds at least `lines` lines (or the process ended); true when it does.
bool wait_for_lines(const fs::path& path, size_t lines, pid_t pid) {
  for (int i = 0; i < 2000; ++i) {
    const std::string text = read_file(path);
    if (static_cast<size_t>(std::count(text.begin(), text.end(), '\n')) >= lines) return true;
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

}  // namespace

TEST_CASE("run: a context too large for the machine's memory fails before allocating, naming -c") {
  const auto r = run_pagedllm("run -m " + shell_quote(kStories) + " -p hi -c 2000000000");
  CHECK(r.exit_code == 1);
  CHECK_MESSAGE(r.err.find("-c") != std::string::npos, r.err);
  CHECK_MESSAGE(r.err.find("available") != std::string::npos, r.err);
}

TEST_CASE("run and batch share one sampling validation: top_k -1 is refused by both, 0 (off) accepted by both") {
  const auto run_bad = run_pagedllm("run -m " + shell_quote(kStories) + " -p hi -n 2 --top-k -1");
  CHECK(run_bad.exit_code == 1);
  CHECK_MESSAGE(run_bad.err.find("top_k") != std::string::npos, run_bad.err);
  const auto run_off = run_pagedllm("run -m " + shell_quote(kStories) + " -p hi -n 2 --top-k 0");
  CHECK_MESSAGE(run_off.exit_code == 0, run_off.err);
  TempDir dir;
  write_file(dir / "in.jsonl", "{\"id\": 1, \"prompt\": \"hi\", \"max_tokens\": 2, \"top_k\": -1}\n"
                               "{\"id\": 2, \"prompt\": \"hi\", \"max_tokens\": 2, \"top_k\": 0}\n");
  const auto batch_run = run_pagedllm(batch_args(dir / "in.jsonl", (dir / "out.jsonl").string()));
  CHECK(batch_run.exit_code == 0);  // a bad line is its own error record, not the end of the run
  const std::vector<json> records = records_of(read_file(dir / "out.jsonl"));
  REQUIRE(records.size() == 2);
  CHECK(records[0].contains("error"));
  CHECK_MESSAGE(records[0].dump().find("top_k") != std::string::npos, records[0].dump());
  CHECK_MESSAGE(!records[1].contains("error"), records[1].dump());
  const auto batch_flag_bad = run_pagedllm(batch_args(dir / "in.jsonl", (dir / "flag.jsonl").string()) + " --top-k -1");
  CHECK(batch_flag_bad.exit_code == 1);
  CHECK_MESSAGE(batch_flag_bad.err.find("top_k") != std::string::npos, batch_flag_bad.err);
}

TEST_CASE("batch: an output that is the input file is refused, under any name, and the input is untouched") {
  TempDir dir;
  const fs::path in = dir / "requests.jsonl";
  const std::string text = requests(2, 4);
  write_file(in, text);
  fs::create_symlink(in, dir / "alias.jsonl");
  for (const fs::path& out : {in, dir / "alias.jsonl"}) {
    CAPTURE(out.string());
    const auto r = run_pagedllm(batch_args(in, out.string()));
    CHECK(r.exit_code == 1);
    CHECK_MESSAGE(r.err.find("is the input file") != std::string::npos, r.err);
    CHECK(read_file(in) == text);
  }
  // The .partial file being the input is refused too.
  const fs::path partial_in = dir / "results.jsonl.partial";
  write_file(partial_in, text);
  const auto r = run_pagedllm(batch_args(partial_in, (dir / "results.jsonl").string()));
  CHECK(r.exit_code == 1);
  CHECK_MESSAGE(r.err.find("is the input file") != std::string::npos, r.err);
  CHECK(read_file(partial_in) == text);
}

TEST_CASE("batch: devices and FIFOs are written directly, never replaced by a renamed file") {
  TempDir dir;
  const fs::path in = dir / "requests.jsonl";
  write_file(in, requests(3, 4));
  struct stat before {};
  REQUIRE(::stat("/dev/null", &before) == 0);
  const auto null_run = run_pagedllm(batch_args(in, "/dev/null"));
  CHECK_MESSAGE(null_run.exit_code == 0, null_run.err);
  struct stat after {};
  REQUIRE(::stat("/dev/null", &after) == 0);
  CHECK(S_ISCHR(after.st_mode));
  CHECK(after.st_ino == before.st_ino);
  CHECK_FALSE(fs::exists("/dev/null.partial"));

  // /dev/full: the write fails, with a clear error, and the device stays a device.
  const auto full_run = run_pagedllm(batch_args(in, "/dev/full"));
  CHECK(full_run.exit_code == 1);
  CHECK_MESSAGE(full_run.err.find("/dev/full") != std::string::npos, full_run.err);
  struct stat full {};
  REQUIRE(::stat("/dev/full", &full) == 0);
  CHECK(S_ISCHR(full.st_mode));

  // A FIFO gets every record, in input order, and is still a FIFO afterwards.
  const fs::path fifo = dir / "results.fifo";
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  std::string received;
  std::thread reader([&] { received = read_file(fifo); });
  const auto fifo_run = run_pagedllm(batch_args(in, fifo.string()));
  reader.join();
  CHECK_MESSAGE(fifo_run.exit_code == 0, fifo_run.err);
  const std::vector<json> records = records_of(received);
  REQUIRE(records.size() == 3);
  for (int i = 0; i < 3; ++i) CHECK(records[static_cast<size_t>(i)]["id"] == i);
  CHECK(fs::is_fifo(fifo));

  // --resume needs a regular output.
  const auto resume_run = run_pagedllm(batch_args(in, "/dev/null") + " --resume");
  CHECK(resume_run.exit_code == 1);
  CHECK_MESSAGE(resume_run.err.find("--resume") != std::string::npos, resume_run.err);
}

TEST_CASE("batch: a second run on an output being written is refused, and the first run's file comes out whole") {
  TempDir dir;
  const fs::path in = dir / "requests.jsonl";
  write_file(in, requests(400, 24));
  const fs::path out = dir / "results.jsonl";
  const pid_t first = spawn(batch_args(in, out.string()), dir / "first.err");
  REQUIRE_MESSAGE(wait_for_lines(dir / "results.jsonl.partial", 1, first), read_file(dir / "first.err"));
  for (const std::string& extra : {std::string(), std::string(" --resume")}) {
    const auto second = run_pagedllm(batch_args(in, out.string()) + extra);
    CHECK(second.exit_code == 1);
    CHECK_MESSAGE(second.err.find("another pagedllm batch is writing") != std::string::npos, second.err);
  }
  int status = 0;
  REQUIRE(::waitpid(first, &status, 0) == first);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  const std::vector<json> records = records_of(read_file(out));
  REQUIRE(records.size() == 400);
  for (int i = 0; i < 400; ++i) CHECK(records[static_cast<size_t>(i)]["id"] == i);
}

TEST_CASE("batch: SIGINT and SIGTERM stop the run, say where the results are, and --resume finishes the same file") {
  TempDir dir;
  const fs::path in = dir / "requests.jsonl";
  write_file(in, requests(400, 24));
  // The uninterrupted result, to compare with.
  const auto whole = run_pagedllm(batch_args(in, (dir / "whole.jsonl").string()));
  REQUIRE_MESSAGE(whole.exit_code == 0, whole.err);
  for (const int signal : {SIGINT, SIGTERM}) {
    CAPTURE(signal);
    const fs::path out = dir / ("stopped" + std::to_string(signal) + ".jsonl");
    const fs::path err = dir / "stopped.err";
    const pid_t pid = spawn(batch_args(in, out.string()), err);
    REQUIRE_MESSAGE(wait_for_lines(fs::path(out.string() + ".partial"), 1, pid), read_file(err));
    ::kill(pid, signal);
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    REQUIRE(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 128 + signal);
    const std::string message = read_file(err);
    CHECK_MESSAGE(message.find("interrupted by") != std::string::npos, message);
    CHECK_MESSAGE(message.find(".partial") != std::string::npos, message);
    CHECK_MESSAGE(message.find("--resume") != std::string::npos, message);
    CHECK_FALSE(fs::exists(out));
    const auto resumed = run_pagedllm(batch_args(in, out.string()) + " --resume");
    REQUIRE_MESSAGE(resumed.exit_code == 0, resumed.err);
    // Same records (latencies aside), in the same order.
    const std::vector<json> a = records_of(read_file(out)), b = records_of(read_file(dir / "whole.jsonl"));
    REQUIRE(a.size() == b.size());
    for (size_t i = 0; i < a.size(); ++i) CHECK(a[i]["completions"] == b[i]["completions"]);
  }
}

TEST_CASE("batch: a request that fills a KV cache smaller than its context ends as kv_cache_full, with a warning") {
  TempDir dir;
  const fs::path in = dir / "requests.jsonl";
  // stories260K stores 640 bytes of K/V per token (F16): 30 KiB holds 3 blocks of 16 = 48 tokens, the context 256.
  write_file(in, "{\"id\": 0, \"prompt\": \"Once upon a time\", \"max_tokens\": 100, \"temperature\": 0}\n");
  const auto r = run_pagedllm(batch_args(in, (dir / "out.jsonl").string()) + " -c 256 --kv-mem 30K --ignore-eos");
  REQUIRE_MESSAGE(r.exit_code == 0, r.err);
  const std::vector<json> records = records_of(read_file(dir / "out.jsonl"));
  REQUIRE(records.size() == 1);
  const json& completion = records[0]["completions"][0];
  CHECK(completion["finish_reason"] == "kv_cache_full");
  CHECK(completion["tokens"].size() + records[0]["prompt_tokens"].get<size_t>() == 48);
  CHECK_MESSAGE(r.err.find("warning:") != std::string::npos, r.err);
  CHECK_MESSAGE(r.err.find("kv_cache_full") != std::string::npos, r.err);
}

TEST_CASE("chat --json: one JSON object per line for every input, answers with newlines included; exit 1 on failures") {
  // A template whose answers are likely to hold newlines is not needed: the framing must hold whatever the text.
  const std::string script = "Hello\n/stats\n/bogus\nTell me a story.\n";
  const auto r = run_pagedllm("chat -m " + shell_quote(kStories) + " --temp 0 -n 40 -c 256 --no-history --json",
                              script);
  CHECK(r.exit_code == 1);  // /bogus failed
  CHECK_MESSAGE(r.err.find("1 input failed") != std::string::npos, r.err);
  std::vector<json> lines;
  std::istringstream out(r.out);
  for (std::string line; std::getline(out, line);) {
    INFO("line: " << line);
    REQUIRE_NOTHROW(lines.push_back(json::parse(line)));
  }
  REQUIRE(lines.size() == 4);  // one per input, however many newlines the answers hold
  CHECK(lines[0]["role"] == "assistant");
  CHECK(lines[0]["tokens"].get<int>() > 0);
  CHECK(lines[1]["command"] == "/stats");
  CHECK(lines[1]["output"].get<std::string>().find("this turn:") != std::string::npos);
  CHECK(lines[2]["error"].get<std::string>().find("/bogus") != std::string::npos);
  CHECK(lines[3]["role"] == "assistant");
  CHECK(lines[3]["reused_tokens"].get<int>() > 0);  // the second turn reused the first from the cache

  // Every input failing: exit 1, and stdout still frames each failure.
  const auto all_bad = run_pagedllm("chat -m " + shell_quote(kStories) + " --no-history --json", "/bogus\n/nope\n");
  CHECK(all_bad.exit_code == 1);
  CHECK(records_of(all_bad.out).size() == 2);
}

// Kilobytes. AddressSanitizer's shadow memory and freed-memory quarantine add about 50 MB to every command.
#if PAGEDLLM_ADDRESS_SANITIZER
constexpr long kCpuCommandMaxRssKb = 160 * 1024;
#else
constexpr long kCpuCommandMaxRssKb = 100 * 1024;
#endif

namespace {

struct PeakMemory {
  int wait_status = -1;
  long max_rss_kb = 0;
};

// Runs pagedllm with args (output discarded) and reports how it ended and its peak resident memory.
PeakMemory peak_memory_of(const std::string& args) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    const std::string command = "exec " + shell_quote(PAGEDLLM_BINARY) + " " + args + " >/dev/null 2>&1";
    ::execl("/bin/sh", "sh", "-c", command.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  PeakMemory result;
  struct rusage usage {};
  if (::wait4(pid, &result.wait_status, 0, &usage) == pid) result.max_rss_kb = usage.ru_maxrss;
  return result;
}

void check_small_and_successful(const std::string& args) {
  CAPTURE(args);
  const PeakMemory run = peak_memory_of(args);
  CHECK(WIFEXITED(run.wait_status));
  CHECK(WEXITSTATUS(run.wait_status) == 0);
  CHECK(run.max_rss_kb > 0);
  CHECK(run.max_rss_kb < kCpuCommandMaxRssKb);
}

}  // namespace

TEST_CASE("run: a long context's K/V pool costs memory only as tokens fill it") {
  // -c 500000 sizes a ~305 MB pool for stories260K; a 4-token run writes a few blocks of it. The pool used to be
  // written in full before the first token (475 MB resident here, 1.3 GB for -c 2000000).
  check_small_and_successful("run -m " + shell_quote(kStories) + " -p hello -n 4 -c 500000 --device cpu --stats none");
}

TEST_CASE("commands that never use a GPU do not pay for loading the CUDA libraries") {
  // Loading cuBLAS costs about 200 MB of memory at once; a CPU-only command stays far below that.
  for (const std::string& args : {"tokenize -m " + shell_quote(kStories) + " -p hello",
                                  "info -m " + shell_quote(kStories),
                                  "run -m " + shell_quote(kStories) + " -p hello -n 4 --device cpu --stats none"}) {
    check_small_and_successful(args);
  }
}
