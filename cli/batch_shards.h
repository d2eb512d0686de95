#pragma once
// `pagedllm batch --shard I/N` and `pagedllm batch merge`: N copies of the same batch, started by a job scheduler
// (a Slurm job array, a Kubernetes Indexed Job, GNU parallel, a CI matrix), split one request file between them
// without talking to each other, and `merge` puts their results back together.
//
// The rule: the file's requests (its non-blank lines) are numbered by position from 0; shard I of N takes the
// contiguous positions [floor(I*M/N), floor((I+1)*M/N)) of the M requests. Every copy reads the whole file, so
// every copy knows M and agrees. A shard's result file starts with one header line (ShardHeader) recording which
// shard it is, the request file's size and hash, and the settings that change outputs; its records follow in input
// order. `merge` checks the headers against each other and writes the records of shards 0..N-1 in order, without a
// header: the same file one run without --shard writes.
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "cli/batch_files.h"

namespace pagedllm::cli {

// The most shards one file may be split into (Slurm's largest arrays are a few million tasks).
inline constexpr int64_t kMaxShards = 10'000'000;

struct Shard {
  int64_t index = 0;  // 0 .. count-1
  int64_t count = 1;
  std::string source;  // where the choice came from, for stderr: "--shard 1/3", "SLURM_ARRAY_TASK_ID=2, ..."
};

// "I/N" with whole numbers 0 <= I < N <= kMaxShards. Throws pagedllm::Error naming --shard and what is wrong.
Shard parse_shard(const std::string& text);

// Reads one environment variable (nullptr when unset); std::getenv in the command, a table in tests.
using Environment = std::function<const char*(const char*)>;

struct ShardChoice {
  std::optional<Shard> shard;  // none: the whole file, as without sharding
};

// The shard this copy takes. `flag`: --shard's text ("" when not given; "off" ignores the environment);
// `count_flag`: --shard-count when given. An explicit --shard wins; then a Slurm job array (SLURM_ARRAY_TASK_ID,
// counted from SLURM_ARRAY_TASK_MIN in steps of SLURM_ARRAY_TASK_STEP, SLURM_ARRAY_TASK_COUNT tasks); then a
// Kubernetes Indexed Job (JOB_COMPLETION_INDEX, which needs the count from --shard-count). Throws pagedllm::Error
// naming the flag or variable for anything missing, out of range or contradictory.
ShardChoice choose_shard(const std::string& flag, std::optional<int64_t> count_flag, const Environment& environment);

// Shard `shard`'s positions among `requests` requests.
RequestRange shard_range(int64_t index, int64_t count, size_t requests);

// A model file's identity without reading all of it: its size and a hash of its first 16 MiB (the GGUF header and
// metadata: architecture, vocabulary, chat template) and of 16 evenly spaced 1 MiB pieces of the rest (the whole
// file when it is at most 32 MiB). Throws pagedllm::Error naming -m when it cannot be read.
nlohmann::ordered_json model_identity(const std::string& path);

// The first line of a shard's result file.
struct ShardHeader {
  static constexpr int kVersion = 1;
  static constexpr const char* kKey = "pagedllm_batch_shard";

  int64_t shard = 0;
  int64_t shards = 1;
  size_t requests = 0;  // in the whole request file
  size_t first = 0;     // this shard's positions: [first, end)
  size_t end = 0;
  RequestFileDigest input;
  nlohmann::ordered_json settings;  // what changes outputs (see shard_settings in batch.cpp)

  // One line of JSON: {"pagedllm_batch_shard": {"version", "shard", "shards", "requests", "first", "end",
  // "input": {"bytes", "fnv1a64"}, "settings_fnv1a64", "settings": {...}}}.
  std::string line() const;
  std::string name() const { return std::to_string(shard) + "/" + std::to_string(shards); }
};

// Hash of the settings' JSON text.
std::string settings_hash(const nlohmann::ordered_json& settings);

// The header a line holds, or none with `why` set (not a header, another version, damaged fields).
std::optional<ShardHeader> parse_shard_header(std::string_view line, std::string& why);

// What makes two shards' headers belong to different runs (request file, split, settings), in words; "" when they
// belong to the same run.
std::string run_difference(const ShardHeader& a, const ShardHeader& b);

// --resume of a shard: what `output` and its .partial file hold (when they exist and are not empty) must have been
// written for this very shard (same header). Throws pagedllm::Error naming the file and the difference otherwise.
void check_resume_header(const std::string& output, const ShardHeader& ours);

// `pagedllm batch merge -o RESULTS SHARD...`, a subcommand of `batch` (cli/batch_merge.cpp). `before` runs first
// (batch's own check that none of its -i/-o was given), so that a refused command line writes nothing.
CLI::App* add_batch_merge_command(CLI::App& batch, std::function<void()> before);

}  // namespace pagedllm::cli
