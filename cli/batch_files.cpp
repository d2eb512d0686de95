#include "cli/batch_files.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <set>

#include <fmt/format.h>

#include "cli/cli_support.h"
#include "common/error.h"

namespace pagedllm {
namespace {

const std::set<std::string, std::less<>> kKnownFields = {
    "id",    "prompt", "messages", "max_tokens",     "temperature",       "top_p",           "top_k",
    "min_p", "seed",   "n",        "stop",           "repeat_penalty",    "frequency_penalty", "presence_penalty"};

// Thrown inside parse_request_line only, turned into RequestLine::error.
struct LineProblem {
  std::string message;
};

[[noreturn]] void problem(std::string message) { throw LineProblem{std::move(message)}; }

int64_t integer_field(const nlohmann::json& object, const char* name, int64_t low, int64_t high) {
  const nlohmann::json& value = object.at(name);
  if (value.is_number_unsigned()) {
    const uint64_t v = value.get<uint64_t>();
    if (v > static_cast<uint64_t>(high)) problem(fmt::format("\"{}\" must be at most {}, got {}", name, high, v));
    return static_cast<int64_t>(v);
  }
  if (!value.is_number_integer()) problem(fmt::format("\"{}\" must be an integer, got {}", name, value.dump()));
  const int64_t v = value.get<int64_t>();
  if (v < low && low == 1) problem(fmt::format("\"{}\" must be a positive integer, got {}", name, v));
  if (v < low && low == 0) problem(fmt::format("\"{}\" must not be negative, got {}", name, v));
  if (v < low || v > high) problem(fmt::format("\"{}\" must be between {} and {}, got {}", name, low, high, v));
  return v;
}

float number_field(const nlohmann::json& object, const char* name) {
  const nlohmann::json& value = object.at(name);
  if (!value.is_number()) problem(fmt::format("\"{}\" must be a number, got {}", name, value.dump()));
  const double v = value.get<double>();
  if (!std::isfinite(v) || std::fabs(v) > 1e30) problem(fmt::format("\"{}\" must be a finite number", name));
  return static_cast<float>(v);
}

void parse_object(const nlohmann::json& object, RequestLine& out) {
  if (!object.is_object()) problem(fmt::format("a request must be a JSON object, got {}", object.type_name()));
  if (object.contains("id")) {
    const nlohmann::json& id = object["id"];
    if (!id.is_string() && !id.is_number_integer()) {
      problem(fmt::format("\"id\" must be a string or an integer, got {}", id.dump()));
    }
    out.id = id;
  }
  for (const auto& [key, value] : object.items()) {
    if (!kKnownFields.contains(key)) out.unknown_fields.push_back(key);
  }
  const bool has_prompt = object.contains("prompt");
  const bool has_messages = object.contains("messages");
  if (has_prompt && has_messages) problem("give either \"prompt\" or \"messages\", not both");
  if (!has_prompt && !has_messages) problem("the request has neither \"prompt\" nor \"messages\"");
  if (has_prompt) {
    if (!object["prompt"].is_string()) problem(fmt::format("\"prompt\" must be a string, got {}", object["prompt"].type_name()));
    out.prompt = object["prompt"].get<std::string>();
  } else {
    const nlohmann::json& messages = object["messages"];
    if (!messages.is_array() || messages.empty()) problem("\"messages\" must be a non-empty array of messages");
    for (const nlohmann::json& message : messages) {
      if (!message.is_object() || !message.contains("role") || !message["role"].is_string()) {
        problem("every message must be an object with a string \"role\"");
      }
    }
    out.messages = messages;
  }
  if (object.contains("max_tokens")) {
    out.max_tokens = static_cast<int>(integer_field(object, "max_tokens", 1, std::numeric_limits<int32_t>::max()));
  }
  if (object.contains("temperature")) out.temperature = number_field(object, "temperature");
  if (object.contains("top_p")) out.top_p = number_field(object, "top_p");
  if (object.contains("min_p")) out.min_p = number_field(object, "min_p");
  if (object.contains("repeat_penalty")) out.repeat_penalty = number_field(object, "repeat_penalty");
  if (object.contains("frequency_penalty")) out.frequency_penalty = number_field(object, "frequency_penalty");
  if (object.contains("presence_penalty")) out.presence_penalty = number_field(object, "presence_penalty");
  if (object.contains("top_k")) {
    out.top_k = static_cast<int>(integer_field(object, "top_k", 0, std::numeric_limits<int32_t>::max()));
  }
  if (object.contains("seed")) {
    const nlohmann::json& seed = object["seed"];
    if (seed.is_number_unsigned()) {
      out.seed = seed.get<uint64_t>();
    } else {
      problem(fmt::format("\"seed\" must be a non-negative integer, got {}", seed.dump()));
    }
    // The sampler reserves this value for "draw a random seed".
    if (*out.seed == kRandomSeed) problem(fmt::format("\"seed\" {} is reserved (it means random); omit it", kRandomSeed));
  }
  if (object.contains("n")) out.n = static_cast<int>(integer_field(object, "n", 1, kMaxSamples));
  if (object.contains("stop")) {
    const nlohmann::json& stop = object["stop"];
    if (stop.is_string()) {
      out.stop.push_back(stop.get<std::string>());
    } else if (stop.is_array() && stop.size() <= 64) {
      for (const nlohmann::json& s : stop) {
        if (!s.is_string()) problem("\"stop\" must be a string or an array of strings");
        out.stop.push_back(s.get<std::string>());
      }
    } else {
      problem("\"stop\" must be a string or an array of at most 64 strings");
    }
    for (const std::string& s : out.stop) {
      if (s.empty()) problem("a \"stop\" string is empty");
    }
  }
}

std::string_view trim_line_end(std::string_view line) {
  while (!line.empty() && (line.back() == '\r' || line.back() == '\n')) line.remove_suffix(1);
  return line;
}

bool is_blank(std::string_view line) {
  return line.find_first_not_of(" \t\r\n") == std::string_view::npos;
}

}  // namespace

std::string Fnv1a64::hex() const { return fmt::format("{:016x}", value); }

LineReader::LineReader(int fd, std::string name, size_t max_line_bytes, std::string what, Fnv1a64* digest)
    : fd_(fd), name_(std::move(name)), max_line_bytes_(max_line_bytes), what_(std::move(what)), digest_(digest),
      block_(size_t{1} << 16) {}

LineReader::~LineReader() { ::close(fd_); }

bool LineReader::next(std::string& line, int line_number, bool* ended) {
  line.clear();
  if (ended != nullptr) *ended = false;
  bool started = false;
  while (true) {
    if (position_ == filled_ && !fill()) return started;
    started = true;
    const char* begin = block_.data() + position_;
    const auto* newline = static_cast<const char*>(std::memchr(begin, '\n', filled_ - position_));
    const size_t length = newline != nullptr ? static_cast<size_t>(newline - begin) : filled_ - position_;
    if (line.size() + length > max_line_bytes_) {
      fail("{}: line {} is longer than {}, the limit for {}", name_, line_number,
           cli::byte_limit_text(max_line_bytes_), what_);
    }
    line.append(begin, length);
    position_ += length;
    if (newline != nullptr) {
      ++position_;
      if (ended != nullptr) *ended = true;
      return true;
    }
  }
}

bool LineReader::fill() {
  while (true) {
    const ssize_t n = ::read(fd_, block_.data(), block_.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail("{}: read error: {}", name_, std::strerror(errno));
    position_ = 0;
    filled_ = static_cast<size_t>(n);
    bytes_read_ += filled_;
    if (digest_ != nullptr) digest_->update(block_.data(), filled_);
    return n > 0;
  }
}

RequestLine parse_request_line(std::string_view text, int line_number) {
  RequestLine out;
  out.line = line_number;
  out.id = line_number;
  try {
    nlohmann::json object;
    // The keys leading to the value being parsed, so that a number JSON cannot hold can be reported by its field.
    std::vector<std::string> key_path;
    auto track_keys = [&](int depth, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
      if (event == nlohmann::json::parse_event_t::key && depth >= 1) {
        key_path.resize(static_cast<size_t>(depth - 1));
        key_path.push_back(parsed.get<std::string>());
      } else if (event == nlohmann::json::parse_event_t::value && depth == 1 && key_path.size() == 1 &&
                 key_path.front() == "id" && (parsed.is_string() || parsed.is_number_integer())) {
        // Kept now, so that the error record of a line whose parse fails further on still carries its id.
        out.id = parsed;
      }
      return true;
    };
    try {
      object = nlohmann::json::parse(text, track_keys);
    } catch (const nlohmann::json::parse_error& e) {
      // nlohmann's messages start with "[json.exception.parse_error.101] parse error at line 1, column 5: ...".
      std::string message = e.what();
      if (const size_t at = message.find("] "); at != std::string::npos) message = message.substr(at + 2);
      problem("invalid JSON: " + message);
    } catch (const nlohmann::json::out_of_range& e) {
      // A number too large for a double (1e999): nlohmann says "number overflow parsing '1e999'".
      const std::string message = e.what();
      const size_t open = message.find('\'');
      const size_t close = message.rfind('\'');
      const std::string number = open < close ? message.substr(open + 1, close - open - 1) : std::string("a number");
      std::string field;
      for (const std::string& key : key_path) {
        if (!key.empty()) field += (field.empty() ? "" : ".") + key;
      }
      if (field.empty()) problem(fmt::format("the number {} is out of range (it does not fit in a double)", number));
      problem(fmt::format("\"{}\": the number {} is out of range (it does not fit in a double)", field, number));
    }
    parse_object(object, out);
  } catch (const LineProblem& p) {
    out.error = p.message;
  } catch (const nlohmann::json::exception& e) {
    out.error = std::string("unreadable request: ") + e.what();
  }
  return out;
}

std::vector<RequestLine> read_request_file(const std::string& path, InputFormat format, size_t max_line_bytes,
                                          RequestRange range, RequestFileDigest* digest) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail("{}: cannot open: {}", path, std::strerror(errno));
  Fnv1a64 hash;
  LineReader in(fd, path, max_line_bytes, "one request line", digest != nullptr ? &hash : nullptr);
  struct stat info {};
  if (::fstat(fd, &info) == 0 && S_ISDIR(info.st_mode)) fail("{}: is a directory, not a request file", path);
  std::vector<RequestLine> lines;
  std::string raw;
  size_t position = 0;  // of the next request among the file's requests
  for (int line_number = 1; in.next(raw, line_number); ++line_number) {
    std::string_view line = trim_line_end(raw);
    if (line_number == 1 && line.starts_with("\xEF\xBB\xBF")) line.remove_prefix(3);  // a UTF-8 byte-order mark
    if (is_blank(line)) continue;
    const size_t this_position = position++;
    if (this_position < range.first || this_position >= range.end) continue;
    if (format == InputFormat::Jsonl) {
      lines.push_back(parse_request_line(line, line_number));
    } else {
      RequestLine request;
      request.line = line_number;
      request.id = line_number;
      request.prompt = std::string(line);
      lines.push_back(std::move(request));
    }
  }
  if (digest != nullptr) {
    digest->bytes = in.bytes_read();
    digest->fnv1a64 = hash.hex();
    digest->requests = position;
  }
  return lines;
}

SamplingParams sampling_for(const RequestLine& line, const SamplingParams& defaults) {
  SamplingParams p = defaults;
  if (line.temperature) p.temperature = *line.temperature;
  if (line.top_p) p.top_p = *line.top_p;
  if (line.top_k) p.top_k = *line.top_k;
  if (line.min_p) p.min_p = *line.min_p;
  if (line.repeat_penalty) p.repeat_penalty = *line.repeat_penalty;
  if (line.frequency_penalty) p.frequency_penalty = *line.frequency_penalty;
  if (line.presence_penalty) p.presence_penalty = *line.presence_penalty;
  if (line.seed) p.seed = *line.seed;
  return p;
}

nlohmann::ordered_json result_record(const RequestLine& line, const RequestResult& result) {
  if (!result.error.empty()) {
    nlohmann::ordered_json record = error_record(line, result.error);
    record["prompt_tokens"] = result.prompt_tokens;
    return record;
  }
  nlohmann::ordered_json completions = nlohmann::ordered_json::array();
  for (size_t i = 0; i < result.completions.size(); ++i) {
    const Completion& c = result.completions[i];
    completions.push_back({{"index", i},
                           {"text", c.text},
                           {"tokens", c.tokens},
                           {"finish_reason", finish_reason_name(c.finish)}});
  }
  return {{"id", line.id},
          {"line", line.line},
          {"completions", std::move(completions)},
          {"prompt_tokens", result.prompt_tokens},
          {"completion_tokens", result.completion_tokens},
          {"latency_s", result.latency_seconds},
          {"queue_s", result.queue_seconds},
          {"preemptions", result.preemptions}};
}

nlohmann::ordered_json error_record(const RequestLine& line, const std::string& error) {
  return {{"id", line.id},
          {"line", line.line},
          {"completions", nlohmann::ordered_json::array()},
          {"finish_reason", "error"},
          {"error", fmt::format("line {}: {}", line.line, error)},
          {"prompt_tokens", 0},
          {"completion_tokens", 0}};
}

std::string id_key(const nlohmann::json& id) { return id.dump(); }
std::string id_key(const nlohmann::ordered_json& id) { return id.dump(); }

std::string record_text(const nlohmann::ordered_json& record) {
  return record.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::unordered_map<std::string, nlohmann::ordered_json> read_completed_records(const std::string& path) {
  std::unordered_map<std::string, nlohmann::ordered_json> completed;
  for (const std::string& file : {ResultWriter::partial_path(path), path}) {
    std::ifstream in(file, std::ios::binary);
    if (!in) continue;
    for (std::string line; std::getline(in, line);) {
      nlohmann::ordered_json record = nlohmann::ordered_json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (!record.is_object() || !record.contains("id") || record.contains("error")) continue;
      if (!record.contains("completions") || !record["completions"].is_array()) continue;
      std::string key = id_key(record["id"]);  // before the move: json's operator= takes its argument by value
      completed[std::move(key)] = std::move(record);
    }
  }
  return completed;
}

namespace {

void sync_and_close(std::FILE* file, const std::string& name, const std::string& path) {
  const bool synced = std::fflush(file) == 0 && ::fsync(fileno(file)) == 0;
  const bool closed = std::fclose(file) == 0;
  if (!synced || !closed) fail("-o {}: cannot finish writing {}: {}", path, name, std::strerror(errno));
}

bool same_file(const struct stat& a, const struct stat& b) { return a.st_dev == b.st_dev && a.st_ino == b.st_ino; }

}  // namespace

ResultWriter::ResultWriter(std::string path, size_t n_records, const std::string& input_path)
    : path_(std::move(path)), records_(n_records) {
  std::error_code ec;
  if (std::filesystem::is_directory(path_, ec)) fail("-o {}: is a directory", path_);
  struct stat input {};
  const bool have_input = ::stat(input_path.c_str(), &input) == 0;
  struct stat output {};
  const bool exists = ::stat(path_.c_str(), &output) == 0;
  if (exists && have_input && same_file(input, output)) {
    fail("-o {}: is the input file {}: the results would replace the requests", path_, input_path);
  }
  // A device, a FIFO, or the process plumbing under /dev and /proc (/dev/stdout, /dev/fd/N) is written straight
  // through, appending: renaming over it would replace it with a regular file, and truncating /dev/stdout would
  // empty whatever file the shell pointed it at.
  const bool plumbing = path_.starts_with("/dev/") || path_.starts_with("/proc/");
  if ((exists && !S_ISREG(output.st_mode)) || plumbing) {
    direct_ = true;
    file_ = std::fopen(path_.c_str(), "ab");
    if (file_ == nullptr) fail("-o {}: cannot write: {}", path_, std::strerror(errno));
    return;
  }
  // Replacing a symbolic link would leave its target stale: write next to the target and rename over it instead.
  if (std::filesystem::is_symlink(path_, ec)) {
    const std::filesystem::path target = std::filesystem::weakly_canonical(path_, ec);
    if (!ec) path_ = target.string();
  }
  const std::string partial = partial_path(path_);
  struct stat partial_stat {};
  if (have_input && ::stat(partial.c_str(), &partial_stat) == 0 && same_file(input, partial_stat)) {
    fail("-o {}: its {} is the input file {}", path_, partial, input_path);
  }
  lock_fd_ = ::open(partial.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  if (lock_fd_ < 0) fail("-o {}: cannot write {}: {}", path_, partial, std::strerror(errno));
  if (::flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    const int error = errno;
    ::close(lock_fd_);
    lock_fd_ = -1;
    if (error == EWOULDBLOCK) {
      fail("-o {}: another pagedllm batch is writing this output right now ({} is locked); wait for it to finish, "
           "or choose another -o", path_, partial);
    }
    fail("-o {}: cannot lock {}: {}", path_, partial, std::strerror(error));
  }
}

ResultWriter::~ResultWriter() {
  if (file_ != nullptr) {
    std::fclose(file_);  // closes lock_fd_ too once fdopen took it
    lock_fd_ = -1;
    if (!direct_ && n_written_ == 0) std::remove(partial_path(path_).c_str());
  }
  if (lock_fd_ >= 0) {
    // Locked but never started: the .partial file holds what an earlier run left (or is the empty file just made).
    struct stat st {};
    if (::fstat(lock_fd_, &st) == 0 && st.st_size == 0) std::remove(partial_path(path_).c_str());
    ::close(lock_fd_);
  }
}

std::unordered_map<std::string, nlohmann::ordered_json> ResultWriter::completed_records() const {
  if (direct_) fail("-o {}: --resume needs a regular output file (this one is written directly)", path_);
  return read_completed_records(path_);
}

void ResultWriter::start() {
  if (started_) throw std::logic_error("ResultWriter: started twice");
  started_ = true;
  if (direct_) {
    if (header_) write_line(file_, path_, *header_);
    return;
  }
  if (::ftruncate(lock_fd_, 0) != 0) fail("-o {}: cannot empty {}: {}", path_, partial_path(path_), std::strerror(errno));
  file_ = ::fdopen(lock_fd_, "wb");
  if (file_ == nullptr) fail("-o {}: cannot write {}: {}", path_, partial_path(path_), std::strerror(errno));
  if (header_) write_line(file_, partial_path(path_), *header_);
}

void ResultWriter::set_header(std::string line) {
  if (started_) throw std::logic_error("ResultWriter: header set after start");
  header_ = std::move(line);
}

void ResultWriter::write_line(std::FILE* file, const std::string& name, const std::string& text) {
  if (std::fwrite(text.data(), 1, text.size(), file) != text.size() || std::fputc('\n', file) == EOF ||
      std::fflush(file) != 0) {
    fail("-o {}: write failed ({}): {}", path_, name, std::strerror(errno));
  }
}

void ResultWriter::put(size_t index, const nlohmann::ordered_json& record) { put_text(index, record_text(record)); }

void ResultWriter::put_text(size_t index, std::string text) {
  if (!started_ || file_ == nullptr) throw std::logic_error("ResultWriter: put before start or after commit");
  if (index >= records_.size() || records_[index]) {
    throw std::logic_error(fmt::format("ResultWriter: record {} given twice or out of range", index));
  }
  in_input_order_ = in_input_order_ && index == n_written_;
  records_[index].emplace(std::move(text));
  ++n_written_;
  if (direct_) {
    while (next_in_order_ < records_.size() && records_[next_in_order_]) {
      write_line(file_, path_, *records_[next_in_order_]);
      ++next_in_order_;
    }
  } else {
    write_line(file_, partial_path(path_), *records_[index]);
  }
}

void ResultWriter::commit() {
  if (!started_ || file_ == nullptr) throw std::logic_error("ResultWriter: commit before start, or twice");
  if (n_written_ != records_.size()) {
    throw std::logic_error(fmt::format("ResultWriter: {} of {} records written at commit", n_written_, records_.size()));
  }
  std::FILE* file = file_;
  file_ = nullptr;
  lock_fd_ = -1;
  if (direct_) {
    if (std::fflush(file) != 0 || std::fclose(file) != 0) fail("-o {}: write failed: {}", path_, std::strerror(errno));
    return;
  }
  const std::string partial = partial_path(path_);
  // The lock is held until the file is in place: a second run cannot empty the .partial file before it moves.
  if (std::fflush(file) != 0 || ::fsync(fileno(file)) != 0) {
    std::fclose(file);
    fail("-o {}: cannot finish writing {}: {}", path_, partial, std::strerror(errno));
  }
  std::string ordered_path = partial;
  if (!in_input_order_) {
    // The .partial file stays until the ordered copy is in place: a crash in between loses nothing.
    ordered_path = path_ + ".ordered";
    std::FILE* ordered = std::fopen(ordered_path.c_str(), "wb");
    if (ordered == nullptr) {
      std::fclose(file);
      fail("-o {}: cannot write {}: {}", path_, ordered_path, std::strerror(errno));
    }
    if (header_ && (std::fwrite(header_->data(), 1, header_->size(), ordered) != header_->size() ||
                    std::fputc('\n', ordered) == EOF)) {
      std::fclose(ordered);
      std::fclose(file);
      fail("-o {}: write failed: {}", ordered_path, std::strerror(errno));
    }
    for (const auto& text : records_) {
      if (std::fwrite(text->data(), 1, text->size(), ordered) != text->size() || std::fputc('\n', ordered) == EOF) {
        std::fclose(ordered);
        std::fclose(file);
        fail("-o {}: write failed: {}", ordered_path, std::strerror(errno));
      }
    }
    sync_and_close(ordered, ordered_path, path_);
  }
  if (std::rename(ordered_path.c_str(), path_.c_str()) != 0) {
    const int error = errno;
    std::fclose(file);
    fail("-o {}: cannot rename {} to it: {}", path_, ordered_path, std::strerror(error));
  }
  if (!in_input_order_) std::remove(partial.c_str());
  std::fclose(file);
}

void ResultWriter::discard() {
  if (direct_) {
    if (file_ != nullptr) std::fclose(file_);
    file_ = nullptr;
    return;
  }
  if (file_ == nullptr && lock_fd_ < 0) return;  // committed (or discarded) already: the .partial is not ours
  const std::string partial = partial_path(path_);
  // Removed while still locked: no other run can have claimed it in between.
  std::remove(partial.c_str());
  if (file_ != nullptr) {
    std::fclose(file_);  // closes lock_fd_ too
  } else if (lock_fd_ >= 0) {
    ::close(lock_fd_);
  }
  file_ = nullptr;
  lock_fd_ = -1;
}

}  // namespace pagedllm
