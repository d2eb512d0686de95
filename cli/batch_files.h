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

// Parses one JSONL line (never throws: problems land in `error`).
RequestLine parse_request_line(std::string_view text, int line_number);
// Every non-blank line of the file, in order. Throws pagedllm::Error when the file cannot be read or a line is
// longer than `max_line_bytes`, naming the file, the line and the limit.
std::vector<RequestLine> read_request_file(const std::string& path, InputFormat format,
                                          size_t max_line_bytes = kMaxRequestLineBytes);

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

  // Index: the request's position in the input. Each index exactly once.
  void put(size_t index, const nlohmann::ordered_json& record);
  size_t written() const { return n_written_; }
  size_t size() const { return records_.size(); }
  bool direct() const { return direct_; }
  // Every record must have been put. Writes `path` atomically (temporary file, fsync, rename), or, for a direct
  // output, flushes it.
  void commit();

  static std::string partial_path(const std::string& path) { return path + ".partial"; }

 private:
  void write_line(std::FILE* file, const std::string& name, const std::string& text);

  std::string path_;
  std::vector<std::optional<std::string>> records_;  // [n_records] JSON text by input index
  size_t n_written_ = 0;
  size_t next_in_order_ = 0;    // direct output: records [0, next_in_order_) are written
  bool in_input_order_ = true;  // every record so far arrived after all earlier indices
  bool direct_ = false;
  bool started_ = false;
  int lock_fd_ = -1;            // the locked .partial file
  std::FILE* file_ = nullptr;   // the .partial file (or the direct output) until commit
};

}  // namespace pagedllm
