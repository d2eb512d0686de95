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

#include "cli/batch_shards.h"
#include "common/error.h"
#include "cli_runner.h"
#include "temp_dir.h"
#include "required_files.h"

namespace fs = std::filesystem;
using pagedllm::test::TempDir;
using nlohmann::json;
using pagedllm::test::CommandResult;
using pagedllm::test::run_pagedllm_env;
using pagedllm::test::shell_quote;
using pagedllm::test::run_until_lines_then_signal;
using pagedllm::test::slurp;

namespace {

const std::string kModel = pagedllm::test::kStoriesPath;

// The variables that choose a shard, unset: the tests say which ones a run sees, whatever runs the suite.
const std::string kNoSchedulerEnv =
    "-u SLURM_ARRAY_TASK_ID -u SLURM_ARRAY_TASK_COUNT -u SLURM_ARRAY_TASK_MIN -u SLURM_ARRAY_TASK_MAX "
    "-u SLURM_ARRAY_TASK_STEP -u JOB_COMPLETION_INDEX";


// "stem<i>.jsonl" (appended piece by piece: GCC 12 warns about a false overlap in "s" + std::to_string(i)).
std::string numbered(const std::string& stem, int i) {
  std::string name = stem;
  name += std::to_string(i);
  name += ".jsonl";
  return name;
}

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

namespace {

// The shard header on a result file's first line ({} when there is none).
json header_of(const std::string& path) {
  const std::vector<std::string> lines = lines_of(slurp(path));
  if (lines.empty()) return json();
  const json first = json::parse(lines.front(), nullptr, /*allow_exceptions=*/false);
  return first.is_object() && first.contains("pagedllm_batch_shard") ? first["pagedllm_batch_shard"] : json();
}

// A shard file's records: every line after the header.
std::vector<std::string> records_after_header(const std::string& path) {
  std::vector<std::string> lines = lines_of(slurp(path));
  if (!lines.empty()) lines.erase(lines.begin());
  return lines;
}

CommandResult merge(const std::string& output, const std::vector<std::string>& shards) {
  std::string args = "batch merge -o " + shell_quote(output);
  for (const std::string& shard : shards) {
    args += ' ';
    args += shell_quote(shard);
  }
  return run_pagedllm_env(kNoSchedulerEnv, args);
}

// The lines of stderr that say "error:".
int error_lines(const std::string& err) {
  int count = 0;
  for (const std::string& line : lines_of(err)) count += line.starts_with("error:") ? 1 : 0;
  return count;
}

// The records without the fields that depend on the schedule.
std::vector<json> without_schedule(const std::string& text) {
  std::vector<json> records;
  for (const std::string& line : lines_of(text)) {
    json record = json::parse(line);
    for (const char* field : {"latency_s", "queue_s", "preemptions"}) record.erase(field);
    records.push_back(record);
  }
  return records;
}

}  // namespace

TEST_CASE("batch --resume without --shard: copied records keep their input line numbers, so a resumed run writes "
          "what an uninterrupted one writes") {
  TempDir dir;
  const std::string in = dir / "in.jsonl";
  write_file(in, mixed_requests(12));  // a blank line before request 4: line numbers and positions differ
  const CommandResult whole = batch(in, dir / "whole.jsonl", "--stable-records");
  REQUIRE_MESSAGE(whole.exit_code == 0, whole.err);
  const std::string expected = slurp(dir / "whole.jsonl");
  const std::vector<std::string> records = lines_of(expected);
  REQUIRE(records.size() == 12);
  CHECK(json::parse(records[6])["line"] == 8);
  // An interrupted run's .partial file: the first 8 records, in the order they were written.
  std::string partial;
  for (size_t i = 0; i < 8; ++i) partial += records[i] + "\n";
  const std::string output = dir / "out.jsonl";
  write_file(output + ".partial", partial);
  const CommandResult resumed = run_pagedllm_env(
      kNoSchedulerEnv, "batch -m " + shell_quote(kModel) + " -t 1 -c 256 --progress off --stats json -i " +
                           shell_quote(in) + " -o " + shell_quote(output) + " --stable-records --resume");
  REQUIRE_MESSAGE(resumed.exit_code == 0, resumed.err);
  CHECK(pagedllm::test::last_json_object(resumed.err)["resumed"] == 8);  // (the bad line is request 8, not among them)
  CHECK(slurp(output) == expected);
  // Resuming the finished output copies every record and writes the same bytes.
  const CommandResult again = batch(in, output, "--stable-records --resume");
  REQUIRE_MESSAGE(again.exit_code == 0, again.err);
  CHECK(slurp(output) == expected);
}

TEST_CASE("batch --shard I/3 three times, then batch merge: byte for byte what one unsharded run writes") {
  TempDir dir;
  const std::string in = dir / "in.jsonl";
  write_file(in, mixed_requests(20));  // 20 requests (one of them a bad line) on 21 lines
  const CommandResult whole = batch(in, dir / "whole.jsonl", "--stable-records");
  REQUIRE_MESSAGE(whole.exit_code == 0, whole.err);
  const std::string expected = slurp(dir / "whole.jsonl");
  const std::vector<std::string> expected_records = lines_of(expected);
  REQUIRE(expected_records.size() == 20);
  // Without --shard nothing changes: the first line is a record, not a header.
  CHECK(json::parse(expected_records.front()).contains("id"));
  CHECK(header_of(dir / "whole.jsonl").is_null());

  std::vector<std::string> concatenated;
  for (int i = 0; i < 3; ++i) {
    CAPTURE(i);
    const std::string shard = dir / numbered("shard", i);
    const CommandResult r = batch(in, shard, "--stable-records --shard " + std::to_string(i) + "/3");
    REQUIRE_MESSAGE(r.exit_code == 0, r.err);
    CHECK_MESSAGE(r.err.find("shard " + std::to_string(i) + "/3 (from --shard " + std::to_string(i) + "/3)") !=
                      std::string::npos, r.err);
    const json header = header_of(shard);
    REQUIRE(header.is_object());
    CHECK(header["shard"] == i);
    CHECK(header["shards"] == 3);
    CHECK(header["requests"] == 20);
    CHECK(header["first"] == 20 * i / 3);  // contiguous ranges: floor(I*M/N) .. floor((I+1)*M/N)
    CHECK(header["end"] == 20 * (i + 1) / 3);
    const std::vector<std::string> records = records_after_header(shard);
    CHECK(records.size() == static_cast<size_t>(20 * (i + 1) / 3 - 20 * i / 3));
    concatenated.insert(concatenated.end(), records.begin(), records.end());
  }
  CHECK(concatenated == expected_records);

  // Shards in any order on the command line.
  const CommandResult merged = merge(dir / "merged.jsonl", {dir / "shard2.jsonl", dir / "shard0.jsonl",
                                                            dir / "shard1.jsonl"});
  REQUIRE_MESSAGE(merged.exit_code == 0, merged.err);
  CHECK(slurp(dir / "merged.jsonl") == expected);
  CHECK_FALSE(fs::exists(dir / "merged.jsonl.partial"));
}

TEST_CASE("batch --shard: more shards than requests (empty shards merge too), and records with timings merge in order") {
  TempDir dir;
  const std::string in = dir / "in.jsonl";
  write_file(in, mixed_requests(3));
  const CommandResult whole = batch(in, dir / "whole.jsonl", "--stable-records");
  REQUIRE_MESSAGE(whole.exit_code == 0, whole.err);
  std::vector<std::string> shards;
  int empty = 0;
  for (int i = 0; i < 5; ++i) {
    shards.push_back(dir / numbered("s", i));
    const CommandResult r = batch(in, shards.back(), "--stable-records --shard " + std::to_string(i) + "/5");
    REQUIRE_MESSAGE(r.exit_code == 0, r.err);
    REQUIRE(header_of(shards.back()).is_object());
    if (records_after_header(shards.back()).empty()) {
      ++empty;
      CHECK_MESSAGE(r.err.find("none of the 3 requests") != std::string::npos, r.err);
    }
  }
  CHECK(empty == 2);
  const CommandResult merged = merge(dir / "merged.jsonl", shards);
  REQUIRE_MESSAGE(merged.exit_code == 0, merged.err);
  CHECK(slurp(dir / "merged.jsonl") == slurp(dir / "whole.jsonl"));

  // The default records (latency_s and the rest included) merge in input order too.
  write_file(in, mixed_requests(9));
  const CommandResult timed = batch(in, dir / "timed.jsonl");
  REQUIRE_MESSAGE(timed.exit_code == 0, timed.err);
  for (int i = 0; i < 2; ++i) {
    const CommandResult r = batch(in, dir / numbered("t", i), "--shard " + std::to_string(i) + "/2");
    REQUIRE_MESSAGE(r.exit_code == 0, r.err);
  }
  const CommandResult timed_merge = merge(dir / "timed_merged.jsonl", {dir / "t1.jsonl", dir / "t0.jsonl"});
  REQUIRE_MESSAGE(timed_merge.exit_code == 0, timed_merge.err);
  CHECK(without_schedule(slurp(dir / "timed_merged.jsonl")) == without_schedule(slurp(dir / "timed.jsonl")));
}

TEST_CASE("batch --shard --resume: a shard killed mid-run and resumed writes what the uninterrupted shard writes; a "
          "resume with other settings or as another shard is refused and leaves the .partial file as it was") {
  TempDir dir;
  const std::string in = dir / "in.jsonl";
  // One sequence at a time, 200 tokens each: records trickle out.
  std::string text;
  for (int i = 0; i < 60; ++i) {
    text += json({{"id", i}, {"prompt", i % 2 == 0 ? "Once upon a time" : "The little dog"}, {"max_tokens", 200},
                  {"temperature", 0}}).dump() + "\n";
  }
  write_file(in, text);
  const std::string flags = "--stable-records --max-seqs 1 --shard 1/3";
  const CommandResult reference = batch(in, dir / "reference.jsonl", flags);
  REQUIRE_MESSAGE(reference.exit_code == 0, reference.err);
  REQUIRE(records_after_header(dir / "reference.jsonl").size() == 20);

  const std::string output = dir / "shard1.jsonl";
  const std::string partial = output + ".partial";
  std::vector<std::string> args = {PAGEDLLM_BINARY, "batch", "-m", kModel, "-t", "1", "-c", "256", "-i", in,
                                   "-o", output, "--stable-records", "--max-seqs", "1", "--shard", "1/3",
                                   "--progress", "off", "--stats", "none"};
  // Killed (SIGKILL: no chance to tidy up) once the header and three records are out.
  const int status = run_until_lines_then_signal(args, partial, 4, SIGKILL);
  REQUIRE_MESSAGE((WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL), "wait status " << status);
  REQUIRE_FALSE(fs::exists(output));
  const std::string interrupted = slurp(partial);
  const std::vector<std::string> interrupted_lines = lines_of(interrupted);
  REQUIRE(interrupted_lines.size() >= 4);
  REQUIRE(interrupted_lines.size() < 21);
  CHECK(json::parse(interrupted_lines.front()).contains("pagedllm_batch_shard"));

  // Other settings, another shard of the same file, another split: refused, the .partial file untouched.
  for (const std::string& other : {std::string("--stable-records --max-seqs 1 --shard 1/3 -n 7"),
                                   std::string("--stable-records --max-seqs 1 --shard 1/3 -s 5"),
                                   std::string("--max-seqs 1 --shard 1/3"),
                                   std::string("--stable-records --max-seqs 1 --shard 0/3"),
                                   std::string("--stable-records --max-seqs 1 --shard 1/4")}) {
    CAPTURE(other);
    const CommandResult refused = batch(in, output, other + " --resume");
    CHECK(refused.exit_code == 1);
    CHECK(error_lines(refused.err) == 1);
    CHECK_MESSAGE(refused.err.find("--resume: " + partial) != std::string::npos, refused.err);
    CHECK(slurp(partial) == interrupted);
    CHECK_FALSE(fs::exists(output));
  }
  // The differences are named.
  CHECK(batch(in, output, "--stable-records --max-seqs 1 --shard 1/3 -n 7 --resume").err.find("max_tokens 256 vs 7") !=
        std::string::npos);
  CHECK(batch(in, output, "--stable-records --max-seqs 1 --shard 0/3 --resume").err.find("shard 1/3") !=
        std::string::npos);

  const CommandResult resumed = run_pagedllm_env(
      kNoSchedulerEnv, "batch -m " + shell_quote(kModel) + " -t 1 -c 256 --progress off --stats json -i " +
                           shell_quote(in) + " -o " + shell_quote(output) + " " + flags + " --resume");
  REQUIRE_MESSAGE(resumed.exit_code == 0, resumed.err);
  CHECK(slurp(output) == slurp(dir / "reference.jsonl"));
  CHECK_FALSE(fs::exists(partial));
  // The records the killed run finished were copied, not generated again.
  const json summary = pagedllm::test::last_json_object(resumed.err);
  CHECK(summary["resumed"] == interrupted_lines.size() - 1);
  // A resume of the finished shard copies everything and writes the same file.
  const CommandResult again = batch(in, output, flags + " --resume");
  REQUIRE_MESSAGE(again.exit_code == 0, again.err);
  CHECK(slurp(output) == slurp(dir / "reference.jsonl"));
}

TEST_CASE("batch merge refuses shards of another request file, other settings, a missing, duplicated or overlapping "
          "shard, a truncated or garbled shard, and an output that is an input; it names the file and writes nothing") {
  TempDir dir;
  const std::string in = dir / "in.jsonl";
  write_file(in, mixed_requests(12));
  std::vector<std::string> shards;
  for (int i = 0; i < 3; ++i) {
    shards.push_back(dir / numbered("s", i));
    const CommandResult r = batch(in, shards.back(), "--stable-records --shard " + std::to_string(i) + "/3");
    REQUIRE_MESSAGE(r.exit_code == 0, r.err);
  }
  // The good merge works (so every refusal below is the change's doing).
  REQUIRE(merge(dir / "good.jsonl", shards).exit_code == 0);

  // Shard 2 made from a request file that differs in one prompt, and with other settings.
  std::string other_text = mixed_requests(12);
  other_text.replace(other_text.find("Once upon a time"), 4, "ONCE");
  write_file(dir / "other.jsonl", other_text);
  REQUIRE(batch(dir / "other.jsonl", dir / "s2_other_input.jsonl", "--stable-records --shard 2/3").exit_code == 0);
  REQUIRE(batch(in, dir / "s2_n7.jsonl", "--stable-records --shard 2/3 -n 7").exit_code == 0);
  REQUIRE(batch(in, dir / "s2_seed.jsonl", "--stable-records --shard 2/3 -s 5").exit_code == 0);
  REQUIRE(batch(in, dir / "s2_timed.jsonl", "--shard 2/3").exit_code == 0);
  REQUIRE(batch(in, dir / "h0.jsonl", "--stable-records --shard 0/2").exit_code == 0);
  REQUIRE(batch(in, dir / "whole.jsonl", "--stable-records").exit_code == 0);
  fs::copy_file(shards[1], dir / "s1_copy.jsonl");
  // Damaged copies of shard 1.
  const std::string s1 = slurp(shards[1]);
  write_file(dir / "cut.jsonl", s1.substr(0, s1.size() - 10));                       // cut inside the last record
  write_file(dir / "short.jsonl", s1.substr(0, s1.rfind('\n', s1.size() - 2) + 1));  // the last record gone
  write_file(dir / "unended.jsonl", s1.substr(0, s1.size() - 1));                    // its last newline gone
  write_file(dir / "garbled.jsonl", s1.substr(0, s1.find('\n') + 1) + "not json\n" + s1.substr(s1.find('\n') + 1));
  std::string bad_header = s1;
  bad_header.replace(bad_header.find("\"first\":"), 9, "\"first\":1");
  write_file(dir / "bad_header.jsonl", bad_header);
  write_file(dir / "empty.jsonl", "");
  std::string reordered = s1;  // two records swapped
  {
    std::vector<std::string> lines = lines_of(s1);
    std::swap(lines[1], lines[2]);
    reordered.clear();
    for (const std::string& line : lines) reordered += line + "\n";
  }
  write_file(dir / "reordered.jsonl", reordered);

  struct Case {
    std::vector<std::string> shards;
    std::vector<std::string> says;  // each must be in the error message
    std::string output;             // "" -> dir/out.jsonl
  };
  const std::string s0 = shards[0], s2 = shards[2];
  const std::vector<Case> cases = {
      {{s0, shards[1], dir / "s2_other_input.jsonl"}, {"s2_other_input.jsonl", "different request files"}, ""},
      {{s0, shards[1], dir / "s2_n7.jsonl"}, {"s2_n7.jsonl", "different settings", "max_tokens 256 vs 7"}, ""},
      {{s0, shards[1], dir / "s2_seed.jsonl"}, {"s2_seed.jsonl", "different settings", "seed -1 vs 5"}, ""},
      {{s0, shards[1], dir / "s2_timed.jsonl"}, {"s2_timed.jsonl", "stable_records"}, ""},
      {{s0, s2}, {"1/3", "missing"}, ""},
      {{s0, shards[1], s2, dir / "s1_copy.jsonl"}, {"shard 1/3 is given twice", "s1_copy.jsonl"}, ""},
      {{s0, shards[1], shards[1], s2}, {"s1.jsonl is given twice"}, ""},
      {{dir / "h0.jsonl", shards[1], s2}, {"h0.jsonl", "different numbers of shards"}, ""},
      {{s0, dir / "cut.jsonl", s2}, {"cut.jsonl", "truncated"}, ""},
      {{s0, dir / "short.jsonl", s2}, {"short.jsonl", "incomplete"}, ""},
      {{s0, dir / "unended.jsonl", s2}, {"unended.jsonl", "cut off", "truncated"}, ""},
      {{s0, dir / "garbled.jsonl", s2}, {"garbled.jsonl", "line 2 is not a whole result record"}, ""},
      {{s0, dir / "bad_header.jsonl", s2}, {"bad_header.jsonl", "damaged"}, ""},
      {{s0, dir / "reordered.jsonl", s2}, {"reordered.jsonl", "not in input order"}, ""},
      {{s0, dir / "empty.jsonl", s2}, {"empty.jsonl", "empty"}, ""},
      {{s0, dir / "whole.jsonl", s2}, {"whole.jsonl", "not a shard file"}, ""},
      {{s0, "/dev/zero", s2}, {"/dev/zero", "not a regular file"}, ""},
      {{s0, dir / "nonexistent.jsonl", s2}, {"nonexistent.jsonl", "cannot open"}, ""},
      {{s0, shards[1], s2}, {"is the shard file", "s1.jsonl"}, shards[1]},
      {{s0, shards[1], s2}, {"is the request file"}, in},
  };
  const std::string in_before = slurp(in);
  for (const Case& c : cases) {
    std::string names;
    for (const std::string& s : c.shards) names += fs::path(s).filename().string() + " ";
    CAPTURE(names);
    const std::string output = c.output.empty() ? (dir / "out.jsonl").string() : c.output;
    if (c.output.empty()) fs::remove(output);  // (a case that wrongly wrote it has failed already)
    const std::string output_before = slurp(output);
    const CommandResult r = merge(output, c.shards);
    CHECK(r.exit_code == 1);
    CHECK_MESSAGE(error_lines(r.err) == 1, r.err);
    for (const std::string& said : c.says) CHECK_MESSAGE(r.err.find(said) != std::string::npos, said << " in: " << r.err);
    if (c.output.empty()) CHECK_FALSE(fs::exists(output));
    CHECK(slurp(output) == output_before);
    CHECK_FALSE(fs::exists(output + ".partial"));
  }
  CHECK(slurp(in) == in_before);
  CHECK(slurp(shards[1]) == s1);

  // batch's own -o before `merge` is a mistake, refused before anything is merged or written.
  const CommandResult misplaced = run_pagedllm_env(kNoSchedulerEnv, "batch -o " + shell_quote(dir / "out.jsonl") +
                                                                        " merge -o " + shell_quote(dir / "out2.jsonl") +
                                                                        " " + shell_quote(s0) + " " +
                                                                        shell_quote(shards[1]) + " " + shell_quote(s2));
  CHECK(misplaced.exit_code == 1);
  CHECK_MESSAGE(misplaced.err.find("give the merged file after it") != std::string::npos, misplaced.err);
  CHECK_FALSE(fs::exists(dir / "out.jsonl"));
  CHECK_FALSE(fs::exists(dir / "out2.jsonl"));
}

TEST_CASE("batch without --shard takes the shard from a Slurm job array (from its first task id, in its steps) or a "
          "Kubernetes Indexed Job (with --shard-count), says so on stderr, and picks what --shard picks") {
  TempDir dir;
  const std::string in = dir / "in.jsonl";
  write_file(in, mixed_requests(10));
  const CommandResult whole = batch(in, dir / "whole.jsonl", "--stable-records");
  REQUIRE_MESSAGE(whole.exit_code == 0, whole.err);
  std::vector<std::string> explicit_shards;
  for (int i = 0; i < 3; ++i) {
    explicit_shards.push_back(dir / numbered("explicit", i));
    REQUIRE(batch(in, explicit_shards.back(), "--stable-records --shard " + std::to_string(i) + "/3").exit_code == 0);
  }

  // --array=1-3: task ids 1, 2, 3 are shards 0, 1, 2; then the array script merges them.
  std::vector<std::string> slurm_shards;
  for (int id = 1; id <= 3; ++id) {
    CAPTURE(id);
    slurm_shards.push_back(dir / numbered("slurm", id));
    const CommandResult r = batch(in, slurm_shards.back(), "--stable-records",
                                  "SLURM_ARRAY_TASK_ID=" + std::to_string(id) +
                                      " SLURM_ARRAY_TASK_MIN=1 SLURM_ARRAY_TASK_MAX=3 SLURM_ARRAY_TASK_COUNT=3");
    REQUIRE_MESSAGE(r.exit_code == 0, r.err);
    CHECK_MESSAGE(r.err.find("shard " + std::to_string(id - 1) + "/3 (from SLURM_ARRAY_TASK_ID=" + std::to_string(id) +
                             ", SLURM_ARRAY_TASK_MIN=1, SLURM_ARRAY_TASK_COUNT=3") != std::string::npos, r.err);
    CHECK(slurp(slurm_shards.back()) == slurp(explicit_shards[static_cast<size_t>(id - 1)]));
  }
  REQUIRE(merge(dir / "slurm_merged.jsonl", slurm_shards).exit_code == 0);
  CHECK(slurp(dir / "slurm_merged.jsonl") == slurp(dir / "whole.jsonl"));

  // --array=2-10:4 is tasks 2, 6, 10: task 6 is shard 1/3.
  const CommandResult stepped = batch(in, dir / "stepped.jsonl", "--stable-records",
                                      "SLURM_ARRAY_TASK_ID=6 SLURM_ARRAY_TASK_MIN=2 SLURM_ARRAY_TASK_MAX=10 "
                                      "SLURM_ARRAY_TASK_STEP=4 SLURM_ARRAY_TASK_COUNT=3");
  REQUIRE_MESSAGE(stepped.exit_code == 0, stepped.err);
  CHECK(slurp(dir / "stepped.jsonl") == slurp(explicit_shards[1]));

  // A Kubernetes Indexed Job: JOB_COMPLETION_INDEX, the count from --shard-count.
  const CommandResult indexed = batch(in, dir / "indexed.jsonl", "--stable-records --shard-count 3",
                                      "JOB_COMPLETION_INDEX=2");
  REQUIRE_MESSAGE(indexed.exit_code == 0, indexed.err);
  CHECK_MESSAGE(indexed.err.find("shard 2/3 (from JOB_COMPLETION_INDEX=2, --shard-count 3") != std::string::npos,
                indexed.err);
  CHECK(slurp(dir / "indexed.jsonl") == slurp(explicit_shards[2]));
  // Without --shard-count the index is not enough: refused (see the bad-values test); --shard off takes the whole
  // file, without a header.
  const CommandResult indexed_off = batch(in, dir / "indexed_off.jsonl", "--stable-records --shard off",
                                          "JOB_COMPLETION_INDEX=2");
  REQUIRE_MESSAGE(indexed_off.exit_code == 0, indexed_off.err);
  CHECK(indexed_off.err.find("shard") == std::string::npos);
  CHECK(slurp(dir / "indexed_off.jsonl") == slurp(dir / "whole.jsonl"));

  // An explicit --shard wins over the environment; --shard off ignores it.
  const CommandResult wins = batch(in, dir / "wins.jsonl", "--stable-records --shard 2/3",
                                   "SLURM_ARRAY_TASK_ID=0 SLURM_ARRAY_TASK_COUNT=3 JOB_COMPLETION_INDEX=1");
  REQUIRE_MESSAGE(wins.exit_code == 0, wins.err);
  CHECK(slurp(dir / "wins.jsonl") == slurp(explicit_shards[2]));
  const CommandResult off = batch(in, dir / "off.jsonl", "--stable-records --shard off",
                                  "SLURM_ARRAY_TASK_ID=0 SLURM_ARRAY_TASK_COUNT=3");
  REQUIRE_MESSAGE(off.exit_code == 0, off.err);
  CHECK(slurp(dir / "off.jsonl") == slurp(dir / "whole.jsonl"));
}

TEST_CASE("batch: a bad --shard, --shard-count or scheduler variable is one error naming it, and nothing is written") {
  TempDir dir;
  const std::string in = dir / "in.jsonl";
  write_file(in, mixed_requests(4));
  struct Case {
    std::string flags;
    std::string env;
    std::string says;
  };
  const std::vector<Case> cases = {
      {"--shard 3/2", "", "--shard 3/2"},
      {"--shard 2/2", "", "--shard 2/2"},
      {"--shard 0/0", "", "--shard 0/0"},
      {"--shard -1/4", "", "--shard '-1/4'"},
      {"--shard a/b", "", "--shard 'a/b'"},
      {"--shard 1", "", "--shard '1'"},
      {"--shard 1/", "", "--shard '1/'"},
      {"--shard /3", "", "--shard '/3'"},
      {"--shard 1/3/5", "", "--shard '1/3/5'"},
      {"--shard ' 1/3'", "", "--shard ' 1/3'"},
      {"--shard 1/99999999999999999999999", "", "at most"},
      {"--shard 1/3 --shard-count 4", "", "disagree"},
      {"--shard-count 3", "", "--shard-count 3 needs a shard index"},
      {"--shard-count 0", "JOB_COMPLETION_INDEX=0", "--shard-count 0"},
      {"--shard off --shard-count 3", "", "--shard off"},
      {"", "SLURM_ARRAY_TASK_ID=3 SLURM_ARRAY_TASK_COUNT=3", "SLURM_ARRAY_TASK_ID=3"},
      {"", "SLURM_ARRAY_TASK_ID=0 SLURM_ARRAY_TASK_MIN=1 SLURM_ARRAY_TASK_COUNT=3", "SLURM_ARRAY_TASK_MIN=1"},
      {"", "SLURM_ARRAY_TASK_ID=x SLURM_ARRAY_TASK_COUNT=3", "SLURM_ARRAY_TASK_ID='x'"},
      {"", "SLURM_ARRAY_TASK_ID=1 SLURM_ARRAY_TASK_COUNT=-2", "SLURM_ARRAY_TASK_COUNT='-2'"},
      {"", "SLURM_ARRAY_TASK_ID=1", "SLURM_ARRAY_TASK_COUNT is not"},
      {"", "SLURM_ARRAY_TASK_ID=5 SLURM_ARRAY_TASK_MIN=1 SLURM_ARRAY_TASK_MAX=9 SLURM_ARRAY_TASK_COUNT=3",
       "not one evenly stepped range"},
      {"", "SLURM_ARRAY_TASK_ID=3 SLURM_ARRAY_TASK_MIN=1 SLURM_ARRAY_TASK_STEP=4 SLURM_ARRAY_TASK_COUNT=3",
       "plus a multiple of the step"},
      {"--shard-count 4", "SLURM_ARRAY_TASK_ID=1 SLURM_ARRAY_TASK_COUNT=3", "disagrees with SLURM_ARRAY_TASK_COUNT=3"},
      {"", "JOB_COMPLETION_INDEX=2", "JOB_COMPLETION_INDEX=2 is set (a Kubernetes Indexed Job), but --shard-count is not"},
      {"", "JOB_COMPLETION_INDEX=x", "JOB_COMPLETION_INDEX='x'"},
      {"--shard-count 3", "JOB_COMPLETION_INDEX=3", "JOB_COMPLETION_INDEX=3"},
      {"--shard-count 3", "JOB_COMPLETION_INDEX=1e2", "JOB_COMPLETION_INDEX='1e2'"},
  };
  const std::string output = dir / "out.jsonl";
  for (const Case& c : cases) {
    CAPTURE(c.flags);
    CAPTURE(c.env);
    const CommandResult r = batch(in, output, c.flags, c.env);
    CHECK(r.exit_code == 1);
    CHECK_MESSAGE(error_lines(r.err) == 1, r.err);
    CHECK_MESSAGE(r.err.find(c.says) != std::string::npos, r.err);
    CHECK_FALSE(fs::exists(output));
    CHECK_FALSE(fs::exists(output + ".partial"));
  }
  // Sharding reads the request file twice: a pipe is refused, by name.
  const std::string command = "cat " + shell_quote(in) + " | env " + kNoSchedulerEnv + " " +
                              shell_quote(PAGEDLLM_BINARY) + " batch -m " + shell_quote(kModel) +
                              " -t 1 -i /dev/stdin -o " + shell_quote(output) + " --shard 0/2 2>" +
                              shell_quote(dir / "piped.err");
  const int status = std::system(command.c_str());
  CHECK((WIFEXITED(status) && WEXITSTATUS(status) == 1));
  const std::string piped_err = slurp(dir / "piped.err");
  CHECK_MESSAGE(piped_err.find("-i /dev/stdin: sharding reads the request file twice") != std::string::npos, piped_err);
  CHECK_FALSE(fs::exists(output));
}

TEST_CASE("shard_range: the shards of any file tile its requests in order, their sizes differing by at most one") {
  for (size_t requests = 0; requests <= 40; ++requests) {
    for (int64_t count = 1; count <= 13; ++count) {
      CAPTURE(requests);
      CAPTURE(count);
      size_t next = 0, smallest = SIZE_MAX, largest = 0;
      for (int64_t index = 0; index < count; ++index) {
        const pagedllm::RequestRange range = pagedllm::cli::shard_range(index, count, requests);
        CHECK(range.first == next);
        CHECK(range.end >= range.first);
        next = range.end;
        smallest = std::min(smallest, range.end - range.first);
        largest = std::max(largest, range.end - range.first);
      }
      CHECK(next == requests);
      CHECK(largest - smallest <= 1);
    }
  }
  // Large files and many shards do not overflow.
  const pagedllm::RequestRange last = pagedllm::cli::shard_range(9'999'999, 10'000'000, size_t{1} << 40);
  CHECK(last.end == size_t{1} << 40);
}

TEST_CASE("choose_shard: the flag wins, then Slurm (offset by its first task id, in its steps), then "
          "JOB_COMPLETION_INDEX with --shard-count; nothing set means no shard") {
  using pagedllm::cli::choose_shard;
  auto environment = [](std::vector<std::pair<std::string, std::string>> variables) {
    return [variables = std::move(variables)](const char* name) -> const char* {
      for (const auto& [key, value] : variables) {
        if (key == name) return value.c_str();
      }
      return nullptr;
    };
  };
  const auto none = environment({});
  CHECK_FALSE(choose_shard("", std::nullopt, none).shard);
  const auto flag = choose_shard("2/5", std::nullopt, environment({{"SLURM_ARRAY_TASK_ID", "0"}}));
  REQUIRE(flag.shard);
  CHECK(flag.shard->index == 2);
  CHECK(flag.shard->count == 5);
  const auto slurm = choose_shard("", std::nullopt,
                                  environment({{"SLURM_ARRAY_TASK_ID", "7"}, {"SLURM_ARRAY_TASK_MIN", "5"},
                                               {"SLURM_ARRAY_TASK_MAX", "8"}, {"SLURM_ARRAY_TASK_COUNT", "4"}}));
  REQUIRE(slurm.shard);
  CHECK(slurm.shard->index == 2);
  CHECK(slurm.shard->count == 4);
  CHECK(slurm.shard->source.find("SLURM_ARRAY_TASK_MIN=5") != std::string::npos);
  const auto stepped = choose_shard("", std::nullopt,
                                    environment({{"SLURM_ARRAY_TASK_ID", "10"}, {"SLURM_ARRAY_TASK_MIN", "0"},
                                                 {"SLURM_ARRAY_TASK_STEP", "5"}, {"SLURM_ARRAY_TASK_COUNT", "3"}}));
  REQUIRE(stepped.shard);
  CHECK(stepped.shard->index == 2);
  // Slurm before Kubernetes; Kubernetes needs the count.
  const auto both = choose_shard("", 3, environment({{"SLURM_ARRAY_TASK_ID", "1"}, {"JOB_COMPLETION_INDEX", "2"}}));
  REQUIRE(both.shard);
  CHECK(both.shard->index == 1);
  const auto indexed = choose_shard("", 3, environment({{"JOB_COMPLETION_INDEX", "2"}}));
  REQUIRE(indexed.shard);
  CHECK(indexed.shard->index == 2);
  CHECK(indexed.shard->count == 3);
  CHECK_THROWS_WITH_AS(choose_shard("", std::nullopt, environment({{"JOB_COMPLETION_INDEX", "2"}})),
                       doctest::Contains("--shard-count is not"), pagedllm::Error);
  CHECK_FALSE(choose_shard("off", std::nullopt, environment({{"JOB_COMPLETION_INDEX", "2"}})).shard);
  CHECK_FALSE(choose_shard("off", std::nullopt, environment({{"SLURM_ARRAY_TASK_ID", "1"},
                                                             {"SLURM_ARRAY_TASK_COUNT", "3"}})).shard);
  // An empty variable counts as unset.
  CHECK_FALSE(choose_shard("", std::nullopt, environment({{"SLURM_ARRAY_TASK_ID", ""}})).shard);
}
