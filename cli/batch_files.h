#pragma once
// The files of `pagedllm batch`: request lines in (JSONL, or plain text with one prompt per line), result records out
// (JSONL, one per request, in input order), and --resume (which requests an earlier output already completed).
//
// A bad input line never stops the batch: it becomes a RequestLine with `error` set, and the output gets an error
// record in its place. Results are appended to `<output>.partial` as they complete, and the output path appears
// only when every record is there (in input order), so an output file is always complete; an interrupted run
// leaves the .partial file, which --resume reads too.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/request.h"
#include "engine/sampler.h"

namespace pagedllm {

enum class InputFormat { Jsonl, Text };

// The longest line of a request file (stated in --help and the README): a request holds one prompt, at most a few
// MB even for the longest contexts; the limit keeps a file without newlines from filling memory.
inline constexpr size_t kMaxRequestLineBytes = size_t{16} << 20;

// One request as written in the input; unset options take the command's defaults.
struct RequestLine {
  int line = 0;                             // 1-based line number in the input file
  nlohmann::json id;                        // as written (string or integer); the line number when absent
  std::string prompt;                       // "prompt", or the whole line in text format
  std::optional<nlohmann::json> messages;   // "messages": a conversation for the model's chat template
  std::optional<int> max_tokens;
  std::optional<float> temperature, top_p, min_p, repeat_penalty, frequency_penalty, presence_penalty;
  std::optional<int> top_k;
  std::optional<uint64_t> seed;
  int n = 1;
  std::vector<std::string> stop;
  std::string error;                        // non-empty: the line is unusable, and this says why
  std::vector<std::string> unknown_fields;  // ignored (the caller warns)
};

// FNV-1a, 64-bit: the identity of a request file's bytes (and of what else `batch --shard` records). Not a defence
// against someone forging a file, only against mixing up two different ones.
struct Fnv1a64 {
  uint64_t value = 0xcbf29ce484222325ull;
  void update(const void* data, size_t size) {
    const auto* bytes = static_cast<const unsigned char*>(data);
    for (size_t i = 0; i < size; ++i) value = (value ^ bytes[i]) * 0x100000001b3ull;
  }
  void update(std::string_view text) { update(text.data(), text.size()); }
  std::string hex() const;  // 16 lowercase hex digits
};

// The lines of a file (owning its descriptor), holding no more than one line and one block in memory: a line
// longer than the limit (a file with no newline at all, like /dev/zero) is refused as soon as it passes it, with
// an error naming the file, the line and "the limit for <what>". Every byte read goes through `digest` when given.
class LineReader {
 public:
  LineReader(int fd, std::string name, size_t max_line_bytes, std::string what, Fnv1a64* digest = nullptr);
  ~LineReader();
  LineReader(const LineReader&) = delete;
  LineReader& operator=(const LineReader&) = delete;

  // The next line without its '\n' (the last one may lack it: `ended` says whether it had one); false at the end of
  // the file.
  bool next(std::string& line, int line_number, bool* ended = nullptr);
  uint64_t bytes_read() const { return bytes_read_; }

 private:
  bool fill();

  int fd_;
  std::string name_;
  size_t max_line_bytes_;
  std::string what_;
  Fnv1a64* digest_;
  std::vector<char> block_;
  size_t position_ = 0;
  size_t filled_ = 0;
  uint64_t bytes_read_ = 0;
};

// Parses one JSONL line (never throws: problems land in `error`).
RequestLine parse_request_line(std::string_view text, int line_number);

// The requests a run takes: those whose position among the file's requests (its non-blank lines, counted from 0)
// is in [first, end).
struct RequestRange {
  size_t first = 0;
  size_t end = SIZE_MAX;
};
// What a whole request file held: its size, a hash of its bytes, and how many requests (non-blank lines).
struct RequestFileDigest {
  uint64_t bytes = 0;
  std::string fnv1a64;
  size_t requests = 0;
  bool operator==(const RequestFileDigest&) const = default;
};

// The file's non-blank lines whose positions fall in `range` (all of them by default), in order; the others are
// counted but not parsed. Throws pagedllm::Error when the file cannot be read or a line is longer than
// `max_line_bytes`, naming the file, the line and the limit. `digest`, when given, receives what the whole file held.
std::vector<RequestLine> read_request_file(const std::string& path, InputFormat format,
                                          size_t max_line_bytes = kMaxRequestLineBytes, RequestRange range = {},
                                          RequestFileDigest* digest = nullptr);

// The command's sampling defaults with the line's options on top (not validated here).
SamplingParams sampling_for(const RequestLine& line, const SamplingParams& defaults);

// Output records (keys in a fixed, readable order: id first).
nlohmann::ordered_json result_record(const RequestLine& line, const RequestResult& result);
nlohmann::ordered_json error_record(const RequestLine& line, const std::string& error);
// The record's id as a lookup key (its JSON text, so the string "1" and the number 1 differ).
std::string id_key(const nlohmann::json& id);
std::string id_key(const nlohmann::ordered_json& id);
// JSON text of a record, with invalid UTF-8 (a sample cut inside a character) replaced rather than thrown on.
std::string record_text(const nlohmann::ordered_json& record);

// Records of requests completed without error in an earlier output (`path` and its .partial file), by id_key.
// Missing files give nothing; unreadable lines (a run killed mid-write) are skipped.
std::unordered_map<std::string, nlohmann::ordered_json> read_completed_records(const std::string& path);

// Collects one record per request. Each record is appended to `<path>.partial` as soon as it arrives (the order
// requests finish in), so an interrupted run loses nothing --resume cannot pick up; commit() then puts the records
// in input order at `path` (renaming the .partial file when it is already in order, rewriting it otherwise).
//
// An output that exists and is not a regular file (a device such as /dev/null or /dev/stdout, a FIFO) is written
// directly instead, records in input order as soon as each one's predecessors are done: nothing is renamed over it
// and there is no .partial file (so no --resume).
class ResultWriter {
 public:
  // Claims `path` for this run. Throws pagedllm::Error naming `-o` when it is a directory, is the input file itself
  // (under any name), cannot be written, or when another run holds it: the .partial file is locked (exclusively,
  // for the life of this object) before anything in it is touched.
  ResultWriter(std::string path, size_t n_records, const std::string& input_path);
  // Without commit(), leaves the .partial file for --resume (or removes it when nothing was written).
  ~ResultWriter();
  ResultWriter(const ResultWriter&) = delete;
  ResultWriter& operator=(const ResultWriter&) = delete;

  // What an earlier run completed (read_completed_records of the output and its .partial), read under the lock.
  // Throws for a direct output, which cannot be resumed.
  std::unordered_map<std::string, nlohmann::ordered_json> completed_records() const;
  // Empties the .partial file: call once, after completed_records() and before the first put().
  void start();

  // A line to write before every record (a shard's header): set before start(); it stays the first line of the
  // .partial file and of the output.
  void set_header(std::string line);

  // Index: the request's position in the input. Each index exactly once.
  void put(size_t index, const nlohmann::ordered_json& record);
  // The same with the record's JSON text as it is to be written (one line, no newline).
  void put_text(size_t index, std::string text);
  size_t written() const { return n_written_; }
  size_t size() const { return records_.size(); }
  bool direct() const { return direct_; }
  // Every record must have been put. Writes `path` atomically (temporary file, fsync, rename), or, for a direct
  // output, flushes it.
  void commit();
  // Gives up without commit: the .partial file is removed whatever it holds (for outputs that are worth nothing
  // unless whole). A direct output keeps what was written.
  void discard();
  // The output path (a symbolic link's target when -o named a link).
  const std::string& path() const { return path_; }

  static std::string partial_path(const std::string& path) { return path + ".partial"; }

 private:
  void write_line(std::FILE* file, const std::string& name, const std::string& text);

  std::string path_;
  std::vector<std::optional<std::string>> records_;  // [n_records] JSON text by input index
  std::optional<std::string> header_;
  size_t n_written_ = 0;
  size_t next_in_order_ = 0;    // direct output: records [0, next_in_order_) are written
  bool in_input_order_ = true;  // every record so far arrived after all earlier indices
  bool direct_ = false;
  bool started_ = false;
  int lock_fd_ = -1;            // the locked .partial file
  std::FILE* file_ = nullptr;   // the .partial file (or the direct output) until commit
};

}  // namespace pagedllm
