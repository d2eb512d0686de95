// `pagedllm bench`: llama-bench's list syntax, every output format read back and agreeing with itself, --compare
// against a llama-bench JSON file, the SVG chart against the JSON records, synthetic models written once and
// reused, --op kernel rows, and bad input refused with one clear message. Speeds are never asserted.
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli/bench_report.h"
#include "cli/value_lists.h"
#include "cli_runner.h"
#include "temp_dir.h"
#include "common/error.h"
#include "required_files.h"

namespace fs = std::filesystem;
using pagedllm::test::TempDir;
using nlohmann::json;
using pagedllm::test::run_pagedllm;
using pagedllm::test::shell_quote;

namespace {

const std::string kStories = pagedllm::test::kStoriesPath;
// Fast, tiny tests: one thread, two repetitions.
const std::string kQuick = "bench -m " + shell_quote(kStories) + " -t 1 -r 2";


std::vector<json> json_lines(const std::string& text) {
  std::vector<json> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) out.push_back(json::parse(line));
  }
  return out;
}

double mean(const std::vector<double>& v) {
  double sum = 0;
  for (double x : v) sum += x;
  return sum / static_cast<double>(v.size());
}

}  // namespace

TEST_CASE("value lists: commas, ranges, additive and multiplicative steps; bad lists are refused") {
  using pagedllm::cli::parse_int_list;
  CHECK(parse_int_list("1,2,4", "-t", 1) == std::vector<int64_t>{1, 2, 4});
  CHECK(parse_int_list("1-5", "-t", 1) == std::vector<int64_t>{1, 2, 3, 4, 5});
  CHECK(parse_int_list("64-1024*2", "-p", 0) == std::vector<int64_t>{64, 128, 256, 512, 1024});
  CHECK(parse_int_list("64-1000*2", "-p", 0) == std::vector<int64_t>{64, 128, 256, 512});  // stops before the end
  CHECK(parse_int_list("16-64+16", "-p", 0) == std::vector<int64_t>{16, 32, 48, 64});
  CHECK(parse_int_list("0,8-32*2,100", "-p", 0) == std::vector<int64_t>{0, 8, 16, 32, 100});
  CHECK(parse_int_list("7-7", "-p", 0) == std::vector<int64_t>{7});
  for (const char* bad : {"", "1,,2", ",1", "1,", "8-1", "1-8+0", "1-8*1", "0-8*2", "a", "1.5", "2-x", "1-8+"}) {
    CAPTURE(bad);
    CHECK_THROWS_AS(parse_int_list(bad, "-p", 0), pagedllm::Error);
  }
  CHECK_THROWS_AS(parse_int_list("0", "-t", 1), pagedllm::Error);  // below the minimum
  CHECK_THROWS_AS(parse_int_list("1-100000", "-p", 0, 64), pagedllm::Error);  // too many values
  try {
    parse_int_list("1,,2", "-p", 0);
  } catch (const pagedllm::Error& e) {
    CHECK(std::string(e.what()).find("-p") != std::string::npos);
  }
}

TEST_CASE("bench -o json: llama-bench's fields, consistent with themselves, one record per test") {
  const auto r = run_pagedllm(kQuick + " -p 32,64 -n 16 -d 0,40 -o json");
  REQUIRE_MESSAGE(r.exit_code == 0, r.err);
  const json records = json::parse(r.out);
  REQUIRE(records.is_array());
  REQUIRE(records.size() == 6);  // (pp32, pp64, tg16) x (d0, d40)
  for (const json& rec : records) {
    CAPTURE(rec.dump());
    for (const char* key : {"build_commit", "build_number", "cpu_info", "backends", "model_filename", "model_type",
                            "model_size", "model_n_params", "n_batch", "n_threads", "type_k", "type_v", "n_prompt",
                            "n_gen", "n_depth", "test_time", "avg_ns", "stddev_ns", "avg_ts", "stddev_ts",
                            "samples_ns", "samples_ts", "achieved_gb_s", "bandwidth_percent", "kv_mib"}) {
      CHECK_MESSAGE(rec.contains(key), key);
    }
    CHECK(rec["model_filename"] == kStories);
    CHECK(rec["n_threads"] == 1);
    CHECK(rec["samples_ns"].size() == 2);
    // avg_ts is the mean of the samples, each tokens / seconds; the tokens are what the test names.
    const std::vector<double> ts = rec["samples_ts"].get<std::vector<double>>();
    const std::vector<double> ns = rec["samples_ns"].get<std::vector<double>>();
    CHECK(rec["avg_ts"].get<double>() == doctest::Approx(mean(ts)).epsilon(1e-9));
    const double tokens = rec["n_prompt"].get<double>() + rec["n_gen"].get<double>();
    for (size_t i = 0; i < ts.size(); ++i) CHECK(ts[i] == doctest::Approx(tokens / (ns[i] / 1e9)).epsilon(1e-6));
    CHECK(std::fabs(rec["avg_ns"].get<double>() - mean(ns)) <= 0.5);  // rounded to whole ns
    CHECK(rec["avg_ts"].get<double>() > 0);
    CHECK(rec["bytes_per_token"].get<double>() > 0);
  }
  // The depth is really in the cache: the K/V read per token grows with it.
  auto find = [&](int p, int n, int d) {
    for (const json& rec : records) {
      if (rec["n_prompt"] == p && rec["n_gen"] == n && rec["n_depth"] == d) return rec;
    }
    FAIL("no record for p" << p << " n" << n << " d" << d);
    return json();
  };
  CHECK(find(0, 16, 40)["bytes_per_token"].get<double>() > find(0, 16, 0)["bytes_per_token"].get<double>());
  CHECK(find(0, 16, 40)["kv_blocks_used"].get<int>() > find(0, 16, 0)["kv_blocks_used"].get<int>());
}

TEST_CASE("bench -o jsonl, csv and md carry the same tests as json") {
  const std::string args = kQuick + " -p 32 -n 8";
  const auto jsonl = run_pagedllm(args + " -o jsonl");
  REQUIRE_MESSAGE(jsonl.exit_code == 0, jsonl.err);
  const std::vector<json> lines = json_lines(jsonl.out);
  REQUIRE(lines.size() == 2);
  CHECK(lines[0]["n_prompt"] == 32);
  CHECK(lines[1]["n_gen"] == 8);

  const auto csv = run_pagedllm(args + " -o csv");
  REQUIRE_MESSAGE(csv.exit_code == 0, csv.err);
  std::istringstream in(csv.out);
  std::string header, row1, row2, extra;
  REQUIRE(std::getline(in, header));
  REQUIRE(std::getline(in, row1));
  REQUIRE(std::getline(in, row2));
  CHECK_FALSE(std::getline(in, extra));
  CHECK(header.rfind("build_commit,build_number,", 0) == 0);
  CHECK(header.find(",avg_ts,") != std::string::npos);
  // Column n_prompt of each row.
  std::vector<std::string> names;
  std::stringstream h(header);
  for (std::string cell; std::getline(h, cell, ',');) names.push_back(cell);
  const auto column = std::find(names.begin(), names.end(), "n_prompt") - names.begin();
  auto cell_of = [&](const std::string& row) {
    // Quoted cells may hold commas: split honouring quotes.
    std::vector<std::string> cells;
    std::string cell;
    bool quoted = false;
    for (char c : row) {
      if (c == '"') quoted = !quoted;
      else if (c == ',' && !quoted) {
        cells.push_back(cell);
        cell.clear();
      } else {
        cell += c;
      }
    }
    cells.push_back(cell);
    REQUIRE(cells.size() == names.size());
    return cells[static_cast<size_t>(column)];
  };
  CHECK(cell_of(row1) == "32");
  CHECK(cell_of(row2) == "0");

  const auto md = run_pagedllm(args + " -o md");
  REQUIRE_MESSAGE(md.exit_code == 0, md.err);
  std::vector<std::string> rows;
  std::istringstream md_in(md.out);
  for (std::string line; std::getline(md_in, line);) rows.push_back(line);
  REQUIRE(rows.size() == 4);  // header, rule, two tests
  CHECK(rows[0].find("| test") != std::string::npos);
  CHECK(rows[0].find("% BW") != std::string::npos);
  CHECK(rows[2].find(" pp32 ") != std::string::npos);
  CHECK(rows[3].find(" tg8 ") != std::string::npos);
  CHECK(rows[2].find(" ± ") != std::string::npos);
}

TEST_CASE("bench --compare: a llama-bench JSON file gives a ratio column for the matching tests") {
  TempDir dir;
  // Crafted as llama-bench -o json writes it: its own field names, the model path as it was given, no depth field.
  const json theirs = json::array({
      {{"build_commit", "abc123"}, {"cpu_info", "some cpu"}, {"model_filename", "/elsewhere/stories260K.gguf"},
       {"n_threads", 1}, {"type_k", "f16"}, {"n_prompt", 32}, {"n_gen", 0}, {"avg_ts", 1000.0}},
      {{"build_commit", "abc123"}, {"cpu_info", "some cpu"}, {"model_filename", "/elsewhere/stories260K.gguf"},
       {"n_threads", 1}, {"type_k", "f16"}, {"n_prompt", 0}, {"n_gen", 8}, {"avg_ts", 250.0}},
      {{"build_commit", "abc123"}, {"cpu_info", "some cpu"}, {"model_filename", "/elsewhere/stories260K.gguf"},
       {"n_threads", 4}, {"type_k", "f16"}, {"n_prompt", 0}, {"n_gen", 8}, {"avg_ts", 1.0}},  // other threads
  });
  const fs::path file = dir.path / "llama-bench.json";
  std::ofstream(file) << theirs.dump(2);
  const auto r = run_pagedllm(kQuick + " -p 32 -n 8 -o json --compare " + shell_quote(file.string()));
  REQUIRE_MESSAGE(r.exit_code == 0, r.err);
  const json records = json::parse(r.out);
  REQUIRE(records.size() == 2);
  CHECK(records[0]["compare_ts"] == 1000.0);
  CHECK(records[0]["compare_ratio"].get<double>() == doctest::Approx(records[0]["avg_ts"].get<double>() / 1000.0));
  CHECK(records[1]["compare_ts"] == 250.0);  // the 4-thread record did not match
  CHECK(records[1]["compare_ratio"].get<double>() == doctest::Approx(records[1]["avg_ts"].get<double>() / 250.0));
  const auto md = run_pagedllm(kQuick + " -p 32 -n 8 --compare " + shell_quote(file.string()));
  REQUIRE_MESSAGE(md.exit_code == 0, md.err);
  CHECK(md.out.find("vs llama.cpp") != std::string::npos);
  CHECK(std::regex_search(md.out, std::regex("[0-9]+\\.[0-9]{2}× \\|")));

  // Our own JSON lines work as the earlier run too; a file that is not JSON is refused.
  const fs::path ours = dir.path / "ours.jsonl";
  std::ofstream(ours) << run_pagedllm(kQuick + " -p 32 -n 0 -o jsonl").out;
  const auto again = run_pagedllm(kQuick + " -p 32 -n 0 -o json --compare " + shell_quote(ours.string()));
  REQUIRE_MESSAGE(again.exit_code == 0, again.err);
  CHECK(json::parse(again.out)[0].contains("compare_ratio"));
  const fs::path bad = dir.path / "bad.json";
  std::ofstream(bad) << "this is not json\n";
  const auto refused = run_pagedllm(kQuick + " -p 32 --compare " + shell_quote(bad.string()));
  CHECK(refused.exit_code == 1);
  CHECK(refused.err.find("--compare") != std::string::npos);
  CHECK(refused.out.empty());
}

TEST_CASE("bench --plot: one SVG series per test kind, its points the JSON records' tokens/s") {
  TempDir dir;
  const fs::path svg = dir.path / "chart.svg";
  const auto r = run_pagedllm(kQuick + " -p 16,32,64 -n 8 -d 0 -o json --plot " + shell_quote(svg.string()));
  REQUIRE_MESSAGE(r.exit_code == 0, r.err);
  const json records = json::parse(r.out);
  std::ifstream in(svg);
  std::stringstream buffer;
  buffer << in.rdbuf();
  const std::string text = buffer.str();
  REQUIRE(text.rfind("<svg", 0) == 0);
  CHECK(text.find("</svg>") != std::string::npos);
  CHECK(text.find("tokens/s") != std::string::npos);  // the y axis says its unit
  CHECK(text.find(">n_prompt") != std::string::npos);  // the x axis is the swept setting
  const std::regex series_re("<g class=\"series\" data-label=\"([^\"]*)\" data-x=\"([^\"]*)\" data-y=\"([^\"]*)\">");
  std::vector<std::vector<double>> ys;
  std::vector<std::string> labels;
  for (auto it = std::sregex_iterator(text.begin(), text.end(), series_re); it != std::sregex_iterator(); ++it) {
    labels.push_back((*it)[1]);
    std::vector<double> y;
    std::stringstream ss((*it)[3].str());
    for (std::string v; std::getline(ss, v, ',');) y.push_back(std::stod(v));
    ys.push_back(y);
  }
  // pp16, pp32, pp64 make one line along n_prompt; tg8 (n_prompt 0) is a line of its own.
  REQUIRE(labels.size() == 2);
  const size_t pp_series = labels[0] == "pp" ? 0 : 1;
  CHECK(labels[pp_series] == "pp");
  CHECK(labels[1 - pp_series] == "tg8");
  REQUIRE(ys[pp_series].size() == 3);
  std::vector<double> expected;
  for (const json& rec : records) {
    if (rec["n_gen"] == 0) expected.push_back(rec["avg_ts"].get<double>());
  }
  REQUIRE(expected.size() == 3);
  for (size_t i = 0; i < 3; ++i) CHECK(ys[pp_series][i] == doctest::Approx(expected[i]).epsilon(1e-5));
}

TEST_CASE("bench --synthetic writes a model once into the cache folder, reuses it, and --clean removes it") {
  TempDir dir;
  const std::string cache = " --cache-dir " + shell_quote((dir.path / "synthetic").string());
  const std::string args = "bench --synthetic stories260k --dtype f32,q8_0 -t 1 -r 1 -p 16 -n 4 -o jsonl" + cache;
  const auto first = run_pagedllm(args);
  REQUIRE_MESSAGE(first.exit_code == 0, first.err);
  CHECK(first.err.find("writing synthetic stories260k") != std::string::npos);
  CHECK(fs::exists(dir.path / "synthetic" / "stories260k-q8_0.gguf"));
  const std::vector<json> records = json_lines(first.out);
  REQUIRE(records.size() == 4);
  CHECK(records[0]["model_type"].get<std::string>().find("F32") != std::string::npos);
  CHECK(records[2]["model_type"].get<std::string>().find("Q8_0") != std::string::npos);
  const auto second = run_pagedllm(args);
  REQUIRE_MESSAGE(second.exit_code == 0, second.err);
  CHECK(second.err.find("writing") == std::string::npos);
  const auto clean = run_pagedllm("bench --clean" + cache);
  CHECK(clean.exit_code == 0);
  CHECK_FALSE(fs::exists(dir.path / "synthetic"));
}

TEST_CASE("bench --op: kernel rows for matmul and attention, with their roofline figures") {
  const auto r = run_pagedllm("bench --op matmul,attention --dtype q8_0 -b 1 -d 64 -t 1 -r 1 --device cpu -o json");
  REQUIRE_MESSAGE(r.exit_code == 0, r.err);
  const json records = json::parse(r.out);
  int matmul = 0, attention = 0;
  for (const json& rec : records) {
    CHECK(rec["avg_us"].get<double>() > 0);
    CHECK(rec["gflop_s"].get<double>() > 0);
    CHECK(rec.contains("bandwidth_percent"));
    if (rec["op"] == "matmul") {
      ++matmul;
      CHECK(rec["dtype"] == "q8_0");
      CHECK(rec["batch"] == 1);
    } else {
      ++attention;
      CHECK(rec["context"] == 64);
    }
  }
  CHECK(matmul == 3);      // three shapes
  CHECK(attention == 8);   // four kinds x two KV-head counts
}

TEST_CASE("bench refuses bad input with one clear message and writes nothing") {
  struct Case {
    std::string args, expected;
  };
  const Case cases[] = {
      {"-p 1,,2", "-p"},          {"-p 8-1", "backwards"},   {"-t 0", "-t"},
      {"-r 0", "-r"},             {"-o xml", "-o"},          {"--kv-type q2", "--kv-type"},
      {"-npl 0", "-npl"}, {"-b 0", "-b"},            {"-p 0 -n 0", "nothing to measure"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.args);
    const auto r = run_pagedllm(kQuick + " " + c.args);
    CHECK(r.exit_code != 0);
    CHECK(r.exit_code < 128);
    CHECK_MESSAGE(r.err.find(c.expected) != std::string::npos, r.err);
    CHECK(r.out.empty());
  }
  TempDir dir;
  const auto shape = run_pagedllm("bench --synthetic nosuchshape --cache-dir " + shell_quote(dir.path.string()));
  CHECK(shape.exit_code == 1);
  CHECK(shape.err.find("nosuchshape") != std::string::npos);
  const auto dtype = run_pagedllm("bench --synthetic tiny --dtype q9_9 --cache-dir " + shell_quote(dir.path.string()));
  CHECK(dtype.exit_code == 1);
  CHECK(dtype.err.find("q9_9") != std::string::npos);
  CHECK(fs::is_empty(dir.path));  // nothing written for a bad request
}
