#include "cli/batch_shards.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "common/error.h"

namespace pagedllm::cli {
namespace {

// Digits only (no sign, no spaces), or none; more than 18 digits read as 10^18, more than any count allowed.
std::optional<int64_t> whole_number(std::string_view text) {
  if (text.empty()) return std::nullopt;
  int64_t value = 0;
  for (const char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    value = value < 100'000'000'000'000'000 ? value * 10 + (c - '0') : 1'000'000'000'000'000'000;
  }
  return value;
}

// An environment variable's number; none when it is unset or empty.
std::optional<int64_t> environment_number(const Environment& environment, const char* name) {
  const char* value = environment(name);
  if (value == nullptr || *value == '\0') return std::nullopt;
  const std::optional<int64_t> number = whole_number(value);
  if (!number) fail("{}='{}' is not a whole number (a job array task index or count)", name, value);
  return number;
}

void check_count(int64_t count, const std::string& what) {
  if (count < 1) fail("{}: the shard count must be at least 1", what);
  if (count > kMaxShards) fail("{}: at most {} shards", what, kMaxShards);
}

Shard from_slurm(const Environment& environment, int64_t id, std::optional<int64_t> count_flag) {
  const std::optional<int64_t> env_count = environment_number(environment, "SLURM_ARRAY_TASK_COUNT");
  const std::optional<int64_t> env_min = environment_number(environment, "SLURM_ARRAY_TASK_MIN");
  const std::optional<int64_t> env_max = environment_number(environment, "SLURM_ARRAY_TASK_MAX");
  const std::optional<int64_t> env_step = environment_number(environment, "SLURM_ARRAY_TASK_STEP");
  int64_t count = 0;
  std::string source = fmt::format("SLURM_ARRAY_TASK_ID={}", id);
  if (env_count) {
    count = *env_count;
    if (count_flag && *count_flag != count) {
      fail("--shard-count {} disagrees with SLURM_ARRAY_TASK_COUNT={} (leave --shard-count out under Slurm)",
           *count_flag, count);
    }
  } else if (count_flag) {
    count = *count_flag;
  } else {
    fail("SLURM_ARRAY_TASK_ID={} is set but SLURM_ARRAY_TASK_COUNT is not: give --shard-count N, or --shard I/N", id);
  }
  check_count(count, env_count ? fmt::format("SLURM_ARRAY_TASK_COUNT={}", count)
                               : fmt::format("--shard-count {}", count));
  const int64_t min = env_min.value_or(0);
  const int64_t step = env_step.value_or(1);
  if (step < 1) fail("SLURM_ARRAY_TASK_STEP={} must be at least 1", step);
  if (env_min) source += fmt::format(", SLURM_ARRAY_TASK_MIN={}", min);
  if (env_step && step != 1) source += fmt::format(", SLURM_ARRAY_TASK_STEP={}", step);
  source += env_count ? fmt::format(", SLURM_ARRAY_TASK_COUNT={}", count) : fmt::format(", --shard-count {}", count);
  // An array given as a list (--array=1,4,9) has no index arithmetic: its MIN, MAX and STEP do not span COUNT tasks.
  if (env_max && (*env_max < min || (*env_max - min) % step != 0 || (*env_max - min) / step + 1 != count)) {
    fail("the Slurm job array is not one evenly stepped range (SLURM_ARRAY_TASK_MIN={}, SLURM_ARRAY_TASK_MAX={}, "
         "SLURM_ARRAY_TASK_STEP={}, SLURM_ARRAY_TASK_COUNT={}): give each task --shard I/N", min, *env_max, step,
         count);
  }
  if (id < min || (id - min) % step != 0) {
    fail("SLURM_ARRAY_TASK_ID={} is not SLURM_ARRAY_TASK_MIN={} plus a multiple of the step {}", id, min, step);
  }
  const int64_t index = (id - min) / step;
  if (index >= count) {
    fail("{} gives shard index {}, but there are only {} shards (0..{})", source, index, count, count - 1);
  }
  return Shard{index, count, source};
}

std::string describe_input(const RequestFileDigest& input) {
  return fmt::format("{} bytes, {} requests, fnv1a64 {}", input.bytes, input.requests, input.fnv1a64);
}

// "key 1 vs 2" for each leaf that differs (nested keys joined with '.').
void settings_differences(const nlohmann::ordered_json& a, const nlohmann::ordered_json& b, const std::string& prefix,
                          std::vector<std::string>& out) {
  if (a.is_object() && b.is_object()) {
    for (const auto& [key, value] : a.items()) {
      const std::string name = prefix.empty() ? key : prefix + "." + key;
      if (!b.contains(key)) out.push_back(fmt::format("{} {} vs (none)", name, value.dump()));
      else settings_differences(value, b[key], name, out);
    }
    for (const auto& [key, value] : b.items()) {
      if (!a.contains(key)) out.push_back(fmt::format("{} (none) vs {}", prefix.empty() ? key : prefix + "." + key,
                                                      value.dump()));
    }
    return;
  }
  if (a != b) out.push_back(fmt::format("{} {} vs {}", prefix.empty() ? "settings" : prefix, a.dump(), b.dump()));
}

// The first line of `path` (none when the file does not exist or is empty); no more than 1 MiB of it is read, and
// a longer first line (which no header is) comes back as text that is not JSON.
std::optional<std::string> first_line(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  LineReader in(fd, path, size_t{1} << 20, "a shard header");
  std::string line;
  try {
    if (!in.next(line, 1)) return std::nullopt;
  } catch (const Error&) {
    return std::string("(a first line longer than 1 MiB)");
  }
  return line;
}

}  // namespace

Shard parse_shard(const std::string& text) {
  const size_t slash = text.find('/');
  const std::optional<int64_t> index = slash == std::string::npos ? std::nullopt : whole_number(text.substr(0, slash));
  const std::optional<int64_t> count = slash == std::string::npos ? std::nullopt : whole_number(text.substr(slash + 1));
  if (!index || !count) {
    fail("--shard '{}' is not I/N: shard I of N, two whole numbers counting from 0 (0/4, 1/4, 2/4, 3/4)", text);
  }
  check_count(*count, fmt::format("--shard {}", text));
  if (*index >= *count) {
    fail("--shard {}: the index must be below the count (the shards of {} are 0/{} to {}/{})", text, *count, *count,
         *count - 1, *count);
  }
  return Shard{*index, *count, "--shard " + text};
}

ShardChoice choose_shard(const std::string& flag, std::optional<int64_t> count_flag, const Environment& environment) {
  if (count_flag) check_count(*count_flag, fmt::format("--shard-count {}", *count_flag));
  if (flag == "off") {
    if (count_flag) fail("--shard off and --shard-count cannot go together");
    return {};
  }
  if (!flag.empty()) {
    Shard shard = parse_shard(flag);
    if (count_flag && *count_flag != shard.count) fail("--shard {} and --shard-count {} disagree", flag, *count_flag);
    return {shard};
  }
  if (const std::optional<int64_t> id = environment_number(environment, "SLURM_ARRAY_TASK_ID")) {
    return {from_slurm(environment, *id, count_flag)};
  }
  if (const std::optional<int64_t> index = environment_number(environment, "JOB_COMPLETION_INDEX")) {
    // An index without a count cannot be a shard; taking the whole file would have every pod of the job do all
    // the work, so it is refused, with both ways out.
    if (!count_flag) {
      fail("JOB_COMPLETION_INDEX={} is set (a Kubernetes Indexed Job), but --shard-count is not: give --shard-count N "
           "(the job's completions), or --shard off to take the whole request file", *index);
    }
    if (*index >= *count_flag) {
      fail("JOB_COMPLETION_INDEX={} is not below --shard-count {} (the shards are 0..{})", *index, *count_flag,
           *count_flag - 1);
    }
    return {Shard{*index, *count_flag, fmt::format("JOB_COMPLETION_INDEX={}, --shard-count {}", *index, *count_flag)}};
  }
  if (count_flag) {
    fail("--shard-count {} needs a shard index: give --shard I/N, or run in a Slurm job array (SLURM_ARRAY_TASK_ID) "
         "or a Kubernetes Indexed Job (JOB_COMPLETION_INDEX)", *count_flag);
  }
  return {};
}

RequestRange shard_range(int64_t index, int64_t count, size_t requests) {
  // In 128 bits: requests * index cannot overflow however large the file.
  const auto m = static_cast<unsigned __int128>(requests);
  return {static_cast<size_t>(m * static_cast<uint64_t>(index) / static_cast<uint64_t>(count)),
          static_cast<size_t>(m * static_cast<uint64_t>(index + 1) / static_cast<uint64_t>(count))};
}

nlohmann::ordered_json model_identity(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail("-m {}: cannot open: {}", path, std::strerror(errno));
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat info {};
  if (::fstat(fd, &info) != 0 || !S_ISREG(info.st_mode)) fail("-m {}: not a regular file", path);
  const auto size = static_cast<uint64_t>(info.st_size);
  constexpr uint64_t kHead = uint64_t{16} << 20;
  constexpr uint64_t kPiece = uint64_t{1} << 20;
  constexpr uint64_t kPieces = 16;
  Fnv1a64 hash;
  std::vector<char> buffer(kPiece);
  auto hash_range = [&](uint64_t offset, uint64_t length) {
    while (length > 0) {
      const ssize_t n = ::pread(fd, buffer.data(), std::min<uint64_t>(length, buffer.size()), static_cast<off_t>(offset));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) fail("-m {}: read error: {}", path, n < 0 ? std::strerror(errno) : "the file shrank");
      hash.update(buffer.data(), static_cast<size_t>(n));
      offset += static_cast<uint64_t>(n);
      length -= static_cast<uint64_t>(n);
    }
  };
  if (size <= kHead + kPieces * kPiece) {
    hash_range(0, size);
  } else {
    hash_range(0, kHead);
    const uint64_t span = size - kHead - kPiece;  // the pieces start in [kHead, size - kPiece]
    for (uint64_t k = 0; k < kPieces; ++k) hash_range(kHead + span * k / (kPieces - 1), kPiece);
  }
  return {{"bytes", size}, {"sample_fnv1a64", hash.hex()}};
}

std::string settings_hash(const nlohmann::ordered_json& settings) {
  Fnv1a64 hash;
  hash.update(settings.dump());
  return hash.hex();
}

std::string ShardHeader::line() const {
  nlohmann::ordered_json body = {{"version", kVersion},
                                 {"shard", shard},
                                 {"shards", shards},
                                 {"requests", requests},
                                 {"first", first},
                                 {"end", end},
                                 {"input", {{"bytes", input.bytes}, {"fnv1a64", input.fnv1a64}}},
                                 {"settings_fnv1a64", settings_hash(settings)},
                                 {"settings", settings}};
  nlohmann::ordered_json header;
  header[kKey] = std::move(body);
  return header.dump();
}

std::optional<ShardHeader> parse_shard_header(std::string_view line, std::string& why) {
  const nlohmann::ordered_json parsed = nlohmann::ordered_json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (!parsed.is_object() || !parsed.contains(ShardHeader::kKey)) {
    why = "its first line is not a shard header (shards are written by batch --shard)";
    return std::nullopt;
  }
  const nlohmann::ordered_json& body = parsed[ShardHeader::kKey];
  auto unsigned_field = [&](const char* name) -> std::optional<uint64_t> {
    if (!body.is_object() || !body.contains(name) || !body[name].is_number_unsigned()) return std::nullopt;
    return body[name].get<uint64_t>();
  };
  const auto version = unsigned_field("version");
  if (version && *version != ShardHeader::kVersion) {
    why = fmt::format("its shard header is version {}, this pagedllm reads version {}", *version, ShardHeader::kVersion);
    return std::nullopt;
  }
  const auto shard = unsigned_field("shard"), shards = unsigned_field("shards"), requests = unsigned_field("requests"),
             first = unsigned_field("first"), end = unsigned_field("end");
  const bool input_ok = body.is_object() && body.contains("input") && body["input"].is_object() &&
                        body["input"].contains("bytes") && body["input"]["bytes"].is_number_unsigned() &&
                        body["input"].contains("fnv1a64") && body["input"]["fnv1a64"].is_string();
  const bool settings_ok = body.is_object() && body.contains("settings") && body["settings"].is_object() &&
                           body.contains("settings_fnv1a64") && body["settings_fnv1a64"].is_string();
  if (!version || !shard || !shards || !requests || !first || !end || !input_ok || !settings_ok) {
    why = "its shard header is damaged (a field is missing or of the wrong type)";
    return std::nullopt;
  }
  ShardHeader header;
  header.shard = static_cast<int64_t>(*shard);
  header.shards = static_cast<int64_t>(*shards);
  header.requests = *requests;
  header.first = *first;
  header.end = *end;
  header.input.bytes = body["input"]["bytes"].get<uint64_t>();
  header.input.fnv1a64 = body["input"]["fnv1a64"].get<std::string>();
  header.input.requests = *requests;
  header.settings = body["settings"];
  if (*shards < 1 || *shards > static_cast<uint64_t>(kMaxShards) || *shard >= *shards) {
    why = fmt::format("its shard header is damaged (shard {} of {})", *shard, *shards);
    return std::nullopt;
  }
  const RequestRange range = shard_range(header.shard, header.shards, header.requests);
  if (range.first != header.first || range.end != header.end) {
    why = fmt::format("its shard header is damaged (shard {} of {} requests holds positions {}..{}, it says {}..{})",
                      header.name(), header.requests, range.first, range.end, header.first, header.end);
    return std::nullopt;
  }
  if (settings_hash(header.settings) != body["settings_fnv1a64"].get<std::string>()) {
    why = "its shard header is damaged (the settings do not match their hash)";
    return std::nullopt;
  }
  return header;
}

std::string run_difference(const ShardHeader& a, const ShardHeader& b) {
  if (a.input.bytes != b.input.bytes || a.input.fnv1a64 != b.input.fnv1a64 || a.requests != b.requests) {
    return fmt::format("they come from different request files ({} vs {})", describe_input(a.input),
                       describe_input(b.input));
  }
  if (a.settings != b.settings) {
    std::vector<std::string> differences;
    settings_differences(a.settings, b.settings, "", differences);
    return fmt::format("they were made with different settings ({})", fmt::join(differences, ", "));
  }
  if (a.shards != b.shards) {
    return fmt::format("they split the file into different numbers of shards (shard {} vs shard {})", a.name(),
                       b.name());
  }
  return "";
}

void check_resume_header(const std::string& output, const ShardHeader& ours) {
  for (const std::string& file : {ResultWriter::partial_path(output), output}) {
    const std::optional<std::string> line = first_line(file);
    if (!line || line->empty()) continue;
    std::string why;
    const std::optional<ShardHeader> theirs = parse_shard_header(*line, why);
    if (!theirs) {
      fail("--resume: {} was not written by this shard ({}); remove it, or choose another -o", file, why);
    }
    std::string difference = run_difference(*theirs, ours);
    if (difference.empty() && theirs->shard != ours.shard) {
      difference = fmt::format("it is shard {}, this run is shard {}", theirs->name(), ours.name());
    }
    if (!difference.empty()) {
      fail("--resume: {} was written for another run: {}; remove it, or choose another -o", file, difference);
    }
  }
}

}  // namespace pagedllm::cli
