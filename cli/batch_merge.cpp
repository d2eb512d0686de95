// `pagedllm batch merge -o RESULTS SHARD...`: the result files of `batch --shard I/N` for I = 0..N-1, checked against
// each other and written as one file in input order, the file one run without --shard writes. Every check runs
// before anything is written; on any error nothing is.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "cli/batch_files.h"
#include "cli/batch_shards.h"
#include "common/error.h"

namespace pagedllm::cli {
namespace {

// The longest line of a shard file: a record of many long samples can pass the 16 MiB of a request line.
constexpr size_t kMaxRecordLineBytes = size_t{256} << 20;

struct ShardFile {
  std::string path;
  struct stat identity {};
  ShardHeader header;
  std::vector<std::string> records;  // JSON text, as written
};

bool same_file(const struct stat& a, const struct stat& b) { return a.st_dev == b.st_dev && a.st_ino == b.st_ino; }

// Reads and checks one shard file on its own: a header, then exactly the records its header promises, each a whole
// result record, in input order.
ShardFile read_shard(const std::string& path) {
  ShardFile shard;
  shard.path = path;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail("{}: cannot open: {}", path, std::strerror(errno));
  LineReader in(fd, path, kMaxRecordLineBytes, "one result record");
  if (::fstat(fd, &shard.identity) != 0) fail("{}: cannot read: {}", path, std::strerror(errno));
  if (!S_ISREG(shard.identity.st_mode)) fail("{}: is not a regular file, so not a shard file", path);
  std::string line;
  bool ended = false;
  if (!in.next(line, 1, &ended)) fail("{}: is empty, not a shard file (shards are written by batch --shard)", path);
  std::string why;
  std::optional<ShardHeader> header = parse_shard_header(line, why);
  if (!header) fail("{}: not a shard file: {}", path, why);
  shard.header = std::move(*header);
  const size_t expected = shard.header.end - shard.header.first;
  int64_t previous_line = 0;
  for (int number = 2;; ++number) {
    if (!ended) fail("{}: line {} is cut off (no newline at its end): the file is truncated", path, number - 1);
    if (!in.next(line, number, &ended)) break;
    const nlohmann::json record = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    const bool whole = record.is_object() && record.contains("id") &&
                       (record["id"].is_string() || record["id"].is_number_integer()) && record.contains("line") &&
                       record["line"].is_number_unsigned() && record.contains("completions") &&
                       record["completions"].is_array();
    if (!whole) fail("{}: line {} is not a whole result record: the file is damaged or truncated", path, number);
    if (shard.records.size() == expected) {
      fail("{}: holds more records than the {} of shard {}: the file is damaged", path, expected, shard.header.name());
    }
    const auto input_line = record["line"].get<int64_t>();
    if (input_line <= previous_line) {
      fail("{}: line {} is the record of input line {}, after input line {}: the records are not in input order "
           "(the file was edited or damaged)", path, number, input_line, previous_line);
    }
    previous_line = input_line;
    shard.records.push_back(std::move(line));
  }
  if (shard.records.size() != expected) {
    fail("{}: holds {} of the {} records of shard {}: it is incomplete (truncated, or the .partial file of an "
         "interrupted run: finish that shard with --resume)", path, shard.records.size(), expected,
         shard.header.name());
  }
  return shard;
}

// FNV-1a of a whole file's bytes ("" when it cannot be read).
std::string file_hash(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return "";
  Fnv1a64 hash;
  std::vector<char> buffer(size_t{1} << 16);
  while (true) {
    const ssize_t n = ::read(fd, buffer.data(), buffer.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      ::close(fd);
      return "";
    }
    if (n == 0) break;
    hash.update(buffer.data(), static_cast<size_t>(n));
  }
  ::close(fd);
  return hash.hex();
}

// The record's input line (checked in read_shard).
int64_t record_line(const std::string& text) { return nlohmann::json::parse(text)["line"].get<int64_t>(); }

void run_merge(const std::string& output, const std::vector<std::string>& paths) {
  std::vector<ShardFile> shards;
  shards.reserve(paths.size());
  for (const std::string& path : paths) shards.push_back(read_shard(path));

  // One run: the same request file, the same settings, the same split.
  const ShardFile& reference = shards.front();
  for (size_t i = 0; i < shards.size(); ++i) {
    for (size_t j = 0; j < i; ++j) {
      if (same_file(shards[i].identity, shards[j].identity)) {
        if (shards[i].path == shards[j].path) fail("{} is given twice; nothing was written", shards[i].path);
        fail("{} and {} are the same file, given twice; nothing was written", shards[j].path, shards[i].path);
      }
    }
  }
  for (const ShardFile& shard : shards) {
    const std::string difference = run_difference(reference.header, shard.header);
    if (!difference.empty()) {
      fail("{} and {} are not shards of one run: {}; nothing was written", reference.path, shard.path, difference);
    }
  }
  // Each shard exactly once.
  const int64_t count = reference.header.shards;
  std::map<int64_t, ShardFile*> by_index;
  for (ShardFile& shard : shards) {
    auto [it, inserted] = by_index.try_emplace(shard.header.shard, &shard);
    if (!inserted) {
      fail("shard {} is given twice: {} and {}; nothing was written", shard.header.name(), it->second->path,
           shard.path);
    }
  }
  if (static_cast<int64_t>(by_index.size()) != count) {
    std::vector<std::string> missing;
    for (int64_t i = 0; i < count && missing.size() < 10; ++i) {
      if (!by_index.contains(i)) missing.push_back(fmt::format("{}/{}", i, count));
    }
    const int64_t n_missing = count - static_cast<int64_t>(by_index.size());
    fail("{} of the {} shards {} missing: {}{}; nothing was written", n_missing, count,
         n_missing == 1 ? "is" : "are", fmt::join(missing, ", "),
         n_missing > static_cast<int64_t>(missing.size()) ? ", ..." : "");
  }
  // The shards follow each other in the input.
  int64_t previous_line = 0;
  const ShardFile* previous = nullptr;
  for (const auto& [index, shard] : by_index) {
    if (shard->records.empty()) continue;
    const int64_t first = record_line(shard->records.front());
    if (first <= previous_line) {
      fail("{} begins at input line {}, not after {}'s last record (input line {}): the shards overlap; nothing was "
           "written", shard->path, first, previous->path, previous_line);
    }
    previous_line = record_line(shard->records.back());
    previous = shard;
  }

  // The output is none of the inputs, and not the request file the shards were made from.
  struct stat out {};
  const bool exists = ::stat(output.c_str(), &out) == 0;
  struct stat out_partial {};
  const bool partial_exists = ::stat(ResultWriter::partial_path(output).c_str(), &out_partial) == 0;
  for (const ShardFile& shard : shards) {
    if (exists && same_file(out, shard.identity)) {
      fail("-o {}: is the shard file {}: the merge would replace its input; nothing was written", output, shard.path);
    }
    if (partial_exists && same_file(out_partial, shard.identity)) {
      fail("-o {}: its .partial file is the shard file {}; nothing was written", output, shard.path);
    }
  }
  if (exists && S_ISREG(out.st_mode) && static_cast<uint64_t>(out.st_size) == reference.header.input.bytes) {
    if (file_hash(output) == reference.header.input.fnv1a64) {
      fail("-o {}: is the request file these shards were made from (same size and hash): the results would replace "
           "the requests; nothing was written", output);
    }
  }

  size_t total = 0;
  for (const ShardFile& shard : shards) total += shard.records.size();
  ResultWriter writer(output, total, "");
  try {
    writer.start();
    size_t index = 0;
    for (const auto& [shard_index, shard] : by_index) {
      for (std::string& record : shard->records) writer.put_text(index++, std::move(record));
    }
    writer.commit();
  } catch (...) {
    writer.discard();
    throw;
  }
  fmt::print(stderr, "merged {} shards ({} requests) into {}\n", count, total, output);
}

}  // namespace

CLI::App* add_batch_merge_command(CLI::App& batch, std::function<void()> before) {
  struct MergeOptions {
    std::string output;
    std::vector<std::string> shards;
  };
  auto o = std::make_shared<MergeOptions>();
  CLI::App* cmd = batch.add_subcommand("merge", "Check the result files of batch --shard 0/N .. N-1/N against each "
                                                "other and write them as one file in input order");
  cmd->add_option("-o,--output", o->output, "The merged results (written as <output>.partial, renamed when "
                                            "complete; nothing is written when a check fails)")->required();
  cmd->add_option("shards", o->shards, "The shards' result files, in any order")->required();
  // (CLI11 runs a subcommand's callback before its parent's, so batch's checks come in here.)
  cmd->callback([o, before = std::move(before)] {
    if (before) before();
    run_merge(o->output, o->shards);
  });
  return cmd;
}

}  // namespace pagedllm::cli
