// `pagedllm batch` end to end on stories260K: the binary runs on small request files in a temporary directory.
// Checks that bad lines become error records while the rest goes on, that records come out in input order, that
// --resume skips completed ids, that the schedule (layout, prefix cache, a tiny --kv-mem forcing preemption,
// --max-seqs) never changes greedy or seeded results, that greedy results equal `run`'s, and the failure modes
// (missing or empty input, an unwritable output).
#include <doctest/doctest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "temp_dir.h"

namespace fs = std::filesystem;
using pagedllm::test::TempDir;
using nlohmann::json;

namespace {

const std::string kModel = PAGEDLLM_SHARED_DIR "/models/stories260K.gguf";
// One thread: every run computes bit-identical logits, so greedy comparisons need no tolerance.
const std::string kCommon = "-m '" + kModel + "' -t 1";

std::string quote(const fs::path& path) {
  std::string quoted = "'";
  quoted += path.string();
  quoted += '\'';
  return quoted;
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

void write_file(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}


struct Run {
  int exit_code = -1;
  std::string out;
  std::string err;
};

Run run_cli(const TempDir& dir, const std::string& args) {
  const fs::path out = dir / "stdout.txt", err = dir / "stderr.txt";
  const std::string command = std::string("'") + PAGEDLLM_BINARY + "' " + args + " >" + quote(out) + " 2>" + quote(err);
  const int status = std::system(command.c_str());
  Run run;
  run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  run.out = read_file(out);
  run.err = read_file(err);
  return run;
}

Run run_batch(const TempDir& dir, const fs::path& input, const fs::path& output, const std::string& extra = "") {
  const std::string context = extra.find("-c ") == std::string::npos ? " -c 256" : "";
  return run_cli(dir, "batch " + kCommon + context + " --progress off -i " + quote(input) + " -o " + quote(output) + " " + extra);
}

std::vector<json> read_records(const fs::path& path) {
  std::vector<json> records;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) records.push_back(json::parse(line));
  return records;
}

// What must not depend on the schedule: per record, the id, error and every completion's tokens/text/reason.
json results_only(const std::vector<json>& records) {
  json out = json::array();
  for (const json& r : records) {
    json completions = json::array();
    for (const json& c : r["completions"]) completions.push_back({c["tokens"], c["text"], c["finish_reason"]});
    out.push_back({r["id"], r.value("error", ""), completions});
  }
  return out;
}

json summary(const Run& run) {
  // --stats json prints one JSON object as the last line of stderr.
  const std::string err = run.err.substr(0, run.err.find_last_not_of('\n') + 1);
  return json::parse(err.substr(err.rfind('\n') + 1));
}

// Prompts of mixed lengths (some past one 16-token block, so the prefix cache and chunking have work).
std::string greedy_requests(int count, const std::string& shared_beginning = "") {
  const std::vector<std::string> prompts = {
      "Once upon a time", "The little dog", "Lily and Ben went to the park to play with the red ball",
      "Tom was sad because his toy was broken and he did not know how to fix it", "Mom said",
      "One day, a girl named Sue found a big box", "The sun was hot", "Max had a toy car that he loved very much"};
  std::string text;
  for (int i = 0; i < count; ++i) {
    std::string id = "r";
    id += std::to_string(i);
    json r = {{"id", id},
              {"prompt", shared_beginning + prompts[static_cast<size_t>(i) % prompts.size()]},
              {"max_tokens", 20 + 5 * (i % 4)},
              {"temperature", 0}};
    text += r.dump();
    text += '\n';
  }
  return text;
}

}  // namespace

TEST_CASE("batch: a malformed line becomes an error record, the rest goes on, records come out in input order") {
  TempDir dir;
  write_file(dir / "in.jsonl",
             "{\"id\": \"first\", \"prompt\": \"Once upon a time\", \"max_tokens\": 12, \"temperature\": 0}\n"
             "this is not JSON\n"
             "\n"
             "{\"id\": 7, \"prompt\": \"The little dog\", \"max_tokens\": -4}\n"
             "{\"id\": \"unknown-field\", \"prompt\": \"Lily\", \"max_tokens\": 5, \"temperature\": 0, \"colour\": 1}\n"
             "[1, 2]\n"
             "{\"id\": \"both\", \"prompt\": \"a\", \"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}\n"
             "{\"id\": \"last\", \"prompt\": \"Tom went\", \"max_tokens\": 9, \"temperature\": 0, \"n\": 2}\n");
  const Run run = run_batch(dir, dir / "in.jsonl", dir / "out.jsonl");
  REQUIRE_MESSAGE(run.exit_code == 0, run.err);
  CHECK_FALSE(fs::exists(dir / "out.jsonl.partial"));
  const std::vector<json> records = read_records(dir / "out.jsonl");
  REQUIRE(records.size() == 7);  // the blank line is skipped

  CHECK(records[0]["id"] == "first");
  CHECK(records[0]["completions"][0]["tokens"].size() == 12);
  CHECK(records[0]["completions"][0]["finish_reason"] == "length");
  CHECK(records[1]["line"] == 2);
  CHECK(records[1]["finish_reason"] == "error");
  CHECK(records[1]["error"].get<std::string>().find("invalid JSON") != std::string::npos);
  CHECK(records[2]["id"] == 7);
  CHECK(records[2]["error"].get<std::string>().find("max_tokens") != std::string::npos);
  CHECK(records[3]["id"] == "unknown-field");
  CHECK_FALSE(records[3].contains("error"));
  CHECK(records[3]["completions"][0]["tokens"].size() == 5);
  CHECK(run.err.find("unknown field \"colour\"") != std::string::npos);
  CHECK(records[4]["error"].get<std::string>().find("JSON object") != std::string::npos);
  CHECK(records[5]["error"].get<std::string>().find("not both") != std::string::npos);
  CHECK(records[6]["id"] == "last");
  CHECK(records[6]["completions"].size() == 2);
  CHECK(records[6]["completion_tokens"] == 18);
  std::vector<int> lines;
  for (const json& r : records) lines.push_back(r["line"].get<int>());
  CHECK(std::is_sorted(lines.begin(), lines.end()));
}

TEST_CASE("batch: --resume skips ids an earlier output (or its .partial file) completed, and redoes error records") {
  TempDir dir;
  write_file(dir / "first.jsonl", greedy_requests(4) + "{\"id\": \"bad\", \"prompt\": 5}\n");
  REQUIRE(run_batch(dir, dir / "first.jsonl", dir / "out.jsonl").exit_code == 0);
  const std::vector<json> first = read_records(dir / "out.jsonl");
  REQUIRE(first.size() == 5);

  // The same requests plus two more; the bad line is fixed now.
  write_file(dir / "second.jsonl",
             greedy_requests(6) + "{\"id\": \"bad\", \"prompt\": \"Mom said\", \"max_tokens\": 4, \"temperature\": 0}\n");
  const Run resumed = run_batch(dir, dir / "second.jsonl", dir / "out.jsonl", "--resume --stats json");
  REQUIRE_MESSAGE(resumed.exit_code == 0, resumed.err);
  const std::vector<json> second = read_records(dir / "out.jsonl");
  REQUIRE(second.size() == 7);
  CHECK(summary(resumed)["resumed"] == 4);
  CHECK(summary(resumed)["ok"] == 3);
  for (size_t i = 0; i < 4; ++i) {
    CHECK(second[i]["id"] == first[i]["id"]);
    CHECK(second[i]["latency_s"] == first[i]["latency_s"]);  // copied, not generated again
  }
  CHECK(second[4]["id"] == "r4");
  CHECK(second[6]["id"] == "bad");
  CHECK_FALSE(second[6].contains("error"));

  // An interrupted run leaves only the .partial file: its records count as done too.
  fs::remove(dir / "out.jsonl");
  write_file(dir / "out.jsonl.partial", first[1].dump() + "\n" + first[3].dump() + "\n{\"id\": \"r0\", \"compl");
  const Run after_crash = run_batch(dir, dir / "first.jsonl", dir / "out.jsonl", "--resume --stats json");
  REQUIRE_MESSAGE(after_crash.exit_code == 0, after_crash.err);
  CHECK(summary(after_crash)["resumed"] == 2);
  const std::vector<json> third = read_records(dir / "out.jsonl");
  REQUIRE(third.size() == 5);
  CHECK(third[1]["latency_s"] == first[1]["latency_s"]);
  CHECK(results_only(third) == results_only(first));
  CHECK_FALSE(fs::exists(dir / "out.jsonl.partial"));
}

TEST_CASE("batch: the schedule never changes results (layout, prefix cache, tiny --kv-mem, --max-seqs, chunking)") {
  TempDir dir;
  // A shared beginning longer than a block gives the prefix cache something to find.
  const std::string shared = "Once upon a time, there was a little girl named Lily. She loved to play outside. ";
  std::string requests = greedy_requests(12, shared);
  // Seeded sampling must be reproducible under any schedule too.
  for (int i = 0; i < 3; ++i) {
    requests += json({{"id", "sampled" + std::to_string(i)}, {"prompt", "The little dog"}, {"max_tokens", 24},
                      {"temperature", 0.9}, {"seed", 40 + i}, {"n", 2}}).dump() + "\n";
  }
  write_file(dir / "in.jsonl", requests);

  const Run roomy = run_batch(dir, dir / "in.jsonl", dir / "roomy.jsonl", "--stats json --prefix-cache off");
  REQUIRE_MESSAGE(roomy.exit_code == 0, roomy.err);
  const json reference = results_only(read_records(dir / "roomy.jsonl"));
  REQUIRE(reference.size() == 15);
  CHECK(summary(roomy)["kv"]["preemptions"] == 0);

  // The tight cache holds the longest sequence (plus a block) and not much more: preemption is certain.
  int longest = 0;
  for (const json& r : read_records(dir / "roomy.jsonl")) {
    for (const json& c : r["completions"]) {
      longest = std::max(longest, r["prompt_tokens"].get<int>() + static_cast<int>(c["tokens"].size()));
    }
  }
  const int64_t kv_bytes_per_token = summary(roomy)["engine"]["bandwidth"]["kv_bytes_per_token"].get<int64_t>();
  const std::string tight_kv_mem = std::to_string((longest + 16) * kv_bytes_per_token);

  struct Variant {
    std::string name, flags;
  };
  const std::vector<Variant> variants = {
      {"prefix cache on", "--prefix-cache on"},
      {"contiguous", "--kv-layout contiguous -c 128 --kv-mem 1M"},
      {"tight kv-mem", "--kv-mem " + tight_kv_mem + " --block-size 8"},
      {"one request at a time", "--max-seqs 1"},
      {"tiny chunks", "--max-batch-tokens 3 --prefix-cache on"},
  };
  for (const Variant& v : variants) {
    CAPTURE(v.name);
    const fs::path out = dir / "variant.jsonl";
    const Run run = run_batch(dir, dir / "in.jsonl", out, "--stats json " + v.flags);
    REQUIRE_MESSAGE(run.exit_code == 0, run.err);
    CHECK(results_only(read_records(out)) == reference);
    const json s = summary(run);
    if (v.name == "prefix cache on") CHECK(s["kv"]["prefix_hits"].get<int>() > 0);
    if (v.name == "tight kv-mem") CHECK(s["kv"]["preemptions"].get<int>() > 0);
    // A request with n = 2 still runs (alone) when --max-seqs is 1.
    if (v.name == "one request at a time") CHECK(s["kv"]["peak_running_sequences"] == 2);
  }
  // Two identical runs of the seeded requests agree (a fixed seed is reproducible, not merely schedule-proof).
  REQUIRE(run_batch(dir, dir / "in.jsonl", dir / "again.jsonl", "--prefix-cache off").exit_code == 0);
  CHECK(results_only(read_records(dir / "again.jsonl")) == reference);
  // ... and the two samples of a seeded request differ from each other.
  const json& sampled = reference[12][2];
  CHECK(sampled[0][0] != sampled[1][0]);
}

TEST_CASE("batch: greedy results equal `run`'s for the same prompts") {
  TempDir dir;
  const std::vector<std::string> prompts = {"Once upon a time", "Lily and Ben went to the park",
                                            "Tom was sad because his toy was broken"};
  std::string requests;
  for (size_t i = 0; i < prompts.size(); ++i) {
    requests += json({{"id", i}, {"prompt", prompts[i]}, {"max_tokens", 40}, {"temperature", 0}}).dump() + "\n";
  }
  write_file(dir / "in.jsonl", requests);
  REQUIRE(run_batch(dir, dir / "in.jsonl", dir / "out.jsonl", "--max-batch-tokens 8").exit_code == 0);
  const std::vector<json> records = read_records(dir / "out.jsonl");
  REQUIRE(records.size() == prompts.size());
  for (size_t i = 0; i < prompts.size(); ++i) {
    const Run single = run_cli(dir, "run " + kCommon + " -c 256 -p '" + prompts[i] + "' -n 40 --temp 0 --stats none");
    REQUIRE(single.exit_code == 0);
    // `run` streams the text and ends with a newline.
    CHECK(single.out == records[i]["completions"][0]["text"].get<std::string>() + "\n");
  }
}

TEST_CASE("batch: text input, chat messages, stop strings") {
  TempDir dir;
  write_file(dir / "prompts.txt", "Once upon a time\n\nThe little dog\r\n");
  const Run text = run_batch(dir, dir / "prompts.txt", dir / "text.jsonl", "--format text -n 6 --temp 0");
  REQUIRE_MESSAGE(text.exit_code == 0, text.err);
  const std::vector<json> text_records = read_records(dir / "text.jsonl");
  REQUIRE(text_records.size() == 2);
  CHECK(text_records[0]["id"] == 1);  // the line number
  CHECK(text_records[1]["id"] == 3);
  CHECK(text_records[1]["completions"][0]["tokens"].size() == 6);

  // stories260K has no chat template: the built-in chatml renders the conversation, with a notice.
  write_file(dir / "chat.jsonl",
             json({{"id", "chat"}, {"messages", {{{"role", "user"}, {"content", "Tell me a story"}}}},
                   {"max_tokens", 5}, {"temperature", 0}}).dump() + "\n");
  const Run chat = run_batch(dir, dir / "chat.jsonl", dir / "chat_out.jsonl");
  REQUIRE_MESSAGE(chat.exit_code == 0, chat.err);
  CHECK(chat.err.find("chatml") != std::string::npos);
  const std::vector<json> chat_records = read_records(dir / "chat_out.jsonl");
  REQUIRE(chat_records.size() == 1);
  CHECK_FALSE(chat_records[0].contains("error"));
  CHECK(chat_records[0]["prompt_tokens"].get<int>() > 5);

  // A stop string taken from the greedy text cuts it there.
  write_file(dir / "plain.jsonl", json({{"id", 1}, {"prompt", "Once upon a time"}, {"max_tokens", 30},
                                        {"temperature", 0}}).dump() + "\n");
  REQUIRE(run_batch(dir, dir / "plain.jsonl", dir / "plain_out.jsonl").exit_code == 0);
  const std::string full = read_records(dir / "plain_out.jsonl")[0]["completions"][0]["text"];
  const size_t at = full.find(' ', full.size() / 2);
  REQUIRE(at != std::string::npos);
  const std::string stop = full.substr(at, 4);
  write_file(dir / "stop.jsonl", json({{"id", 1}, {"prompt", "Once upon a time"}, {"max_tokens", 30},
                                       {"temperature", 0}, {"stop", {stop}}}).dump() + "\n");
  REQUIRE(run_batch(dir, dir / "stop.jsonl", dir / "stop_out.jsonl").exit_code == 0);
  const json stopped = read_records(dir / "stop_out.jsonl")[0]["completions"][0];
  CHECK(stopped["finish_reason"] == "stop");
  CHECK(stopped["text"] == full.substr(0, full.find(stop)));
}

TEST_CASE("batch: bad files and paths end in one clear message, never a crash or a half-written output") {
  TempDir dir;
  SUBCASE("missing input file") {
    const Run run = run_batch(dir, dir / "nope.jsonl", dir / "out.jsonl");
    CHECK(run.exit_code == 1);
    CHECK(run.err.find("nope.jsonl") != std::string::npos);
    CHECK_FALSE(fs::exists(dir / "out.jsonl"));
    CHECK_FALSE(fs::exists(dir / "out.jsonl.partial"));
  }
  SUBCASE("empty input file: an empty output and a warning") {
    write_file(dir / "empty.jsonl", "");
    const Run run = run_batch(dir, dir / "empty.jsonl", dir / "out.jsonl");
    CHECK(run.exit_code == 0);
    CHECK(run.err.find("no requests") != std::string::npos);
    CHECK(fs::exists(dir / "out.jsonl"));
    CHECK(read_file(dir / "out.jsonl").empty());
  }
  SUBCASE("unwritable output path") {
    write_file(dir / "in.jsonl", greedy_requests(1));
    const Run run = run_batch(dir, dir / "in.jsonl", dir / "no-such-dir" / "out.jsonl");
    CHECK(run.exit_code == 1);
    CHECK(run.err.find("no-such-dir") != std::string::npos);
    const Run into_dir = run_batch(dir, dir / "in.jsonl", dir.path);
    CHECK(into_dir.exit_code == 1);
    CHECK(into_dir.err.find("directory") != std::string::npos);
  }
  SUBCASE("bad flags") {
    write_file(dir / "in.jsonl", greedy_requests(1));
    CHECK(run_batch(dir, dir / "in.jsonl", dir / "out.jsonl", "--kv-layout striped").exit_code == 1);
    CHECK(run_batch(dir, dir / "in.jsonl", dir / "out.jsonl", "--max-seqs 0").exit_code == 1);
    const Run contiguous = run_batch(dir, dir / "in.jsonl", dir / "out.jsonl", "--kv-layout contiguous --kv-mem 64K");
    CHECK(contiguous.exit_code == 1);
    CHECK(contiguous.err.find("contiguous") != std::string::npos);
    CHECK_FALSE(fs::exists(dir / "out.jsonl"));
  }
  SUBCASE("a prompt too long for the context is an error record; the short one still runs") {
    std::string long_prompt;
    for (int i = 0; i < 200; ++i) long_prompt += "once upon a time ";
    write_file(dir / "in.jsonl", json({{"id", "long"}, {"prompt", long_prompt}}).dump() + "\n" + greedy_requests(1));
    const Run run = run_batch(dir, dir / "in.jsonl", dir / "out.jsonl");
    REQUIRE(run.exit_code == 0);
    const std::vector<json> records = read_records(dir / "out.jsonl");
    REQUIRE(records.size() == 2);
    CHECK(records[0]["error"].get<std::string>().find("context") != std::string::npos);
    CHECK_FALSE(records[1].contains("error"));
  }
}
