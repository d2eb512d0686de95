#pragma once
// The results of `pagedllm bench`: one JSON record per test with llama-bench's field names where the meaning is
// the same (so scripts written for llama-bench read ours) plus the memory-system figures llama-bench lacks, and
// their renderings: a markdown table, CSV, a JSON array, JSON lines, a ratio column against an earlier run, and
// an SVG chart.
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace pagedllm::cli {

using BenchRecord = nlohmann::ordered_json;

// The test's name as llama-bench prints it: "pp512", "tg128", "pp512+tg128", with " @ d2048" for a depth.
std::string bench_test_name(const BenchRecord& record);

// Renders `records` in `format` (md, csv, json, jsonl). `compare_label` non-empty adds the ratio column (records
// carry "compare_ts" where a match was found).
std::string render_bench(const std::vector<BenchRecord>& records, const std::string& format,
                         const std::string& compare_label);

// Renders the kernel benchmarks of `--op` (records with an "op" field) in `format` (md, csv, json, jsonl).
std::string render_op_bench(const std::vector<BenchRecord>& records, const std::string& format);

// Reads an earlier run (ours, or llama-bench's own -o json / -o jsonl). Throws pagedllm::Error naming the file when
// it is not JSON or holds no records.
std::vector<nlohmann::json> read_bench_file(const std::string& path);

// For every record, the earlier result of the same test (same model file name, prompt, generated tokens, depth,
// threads, parallel sequences, batch size, and K/V type when both say) gets "compare_ts" (its avg_ts) and
// "compare_ratio" (ours over theirs). Returns how many found a match.
int attach_comparison(std::vector<BenchRecord>& records, const std::vector<nlohmann::json>& earlier);

// An SVG line chart of tokens/s against `x_field` (a numeric record field), one line per group of records that
// agree on every other swept field; each point's label carries its % of the bandwidth roofline. Every series is
// also written as data-* attributes, so a reader (the tests) can check the chart against the records.
std::string render_bench_svg(const std::vector<BenchRecord>& records, const std::string& x_field,
                             const std::vector<std::string>& series_fields);

}  // namespace pagedllm::cli
