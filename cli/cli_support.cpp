#include "cli/cli_support.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <vector>

#include "common/error.h"

namespace pagedllm::cli {

std::string default_model_path() {
  if (const char* env = std::getenv("PAGEDLLM_MODEL"); env != nullptr && *env != '\0') return env;
  std::vector<std::filesystem::path> candidates;
  // The binary lives in <repo>/build/pagedllm; the model in <repo>/models/.
  std::error_code ec;
  const std::filesystem::path exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    candidates.push_back(exe.parent_path().parent_path() / "models" / kDefaultModelFile);
    candidates.push_back(exe.parent_path() / "models" / kDefaultModelFile);
  }
  candidates.push_back(std::filesystem::path("models") / kDefaultModelFile);
  for (const auto& path : candidates) {
    if (std::filesystem::exists(path, ec)) return path.string();
  }
  fail("no -m given and the default model {} was not found (looked in {}); run scripts/setup.sh to install it, "
       "or pass -m FILE", kDefaultModelFile, candidates.front().parent_path().string());
}

uint64_t parse_byte_size(const std::string& text, const std::string& flag) {
  size_t pos = 0;
  double value = 0;
  try {
    value = std::stod(text, &pos);
  } catch (const std::exception&) {
    fail("{} '{}' is not a size (examples: 1073741824, 512M, 2G)", flag, text);
  }
  std::string unit = text.substr(pos);
  for (char& ch : unit) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  double multiplier = 0;
  if (unit.empty() || unit == "B") multiplier = 1;
  else if (unit == "K" || unit == "KB" || unit == "KIB") multiplier = 1024.0;
  else if (unit == "M" || unit == "MB" || unit == "MIB") multiplier = 1024.0 * 1024;
  else if (unit == "G" || unit == "GB" || unit == "GIB") multiplier = 1024.0 * 1024 * 1024;
  else if (unit == "T" || unit == "TB" || unit == "TIB") multiplier = 1024.0 * 1024 * 1024 * 1024;
  else fail("{} '{}' has an unknown unit '{}' (use K, M, G or T)", flag, text, unit);
  if (!std::isfinite(value) || value <= 0 || value * multiplier > 1.8e19) {
    fail("{} '{}' must be a positive size", flag, text);
  }
  return static_cast<uint64_t>(value * multiplier);
}

std::string byte_limit_text(size_t bytes) {
  if (bytes % (size_t{1} << 20) == 0) return fmt::format("{} MiB", bytes >> 20);
  if (bytes % (size_t{1} << 10) == 0) return fmt::format("{} KiB", bytes >> 10);
  return fmt::format("{} bytes", bytes);
}

namespace {

// Reads `fd` to its end, failing as soon as it holds more than `max_bytes`: a device or a pipe that never ends
// costs no more than the limit.
std::string read_limited(int fd, const std::string& name, size_t max_bytes, std::string_view what) {
  struct stat info {};
  if (::fstat(fd, &info) != 0) fail("{}: cannot read: {}", name, std::strerror(errno));
  if (S_ISDIR(info.st_mode)) fail("{}: is a directory, not a file", name);
  auto too_large = [&] {
    fail("{}: larger than {}, the limit for {}", name, byte_limit_text(max_bytes), what);
  };
  if (S_ISREG(info.st_mode) && static_cast<uint64_t>(info.st_size) > max_bytes) too_large();
  std::string text;
  std::vector<char> buffer(size_t{1} << 16);
  while (true) {
    const ssize_t n = ::read(fd, buffer.data(), buffer.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      fail("{}: read error: {}", name, std::strerror(errno));
    }
    if (n == 0) break;
    if (text.size() + static_cast<size_t>(n) > max_bytes) too_large();
    text.append(buffer.data(), static_cast<size_t>(n));
  }
  return text;
}

}  // namespace

std::string read_text_file(const std::string& path, size_t max_bytes, std::string_view what) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail("{}: cannot open: {}", path, std::strerror(errno));
  try {
    std::string text = read_limited(fd, path, max_bytes, what);
    ::close(fd);
    return text;
  } catch (...) {
    ::close(fd);
    throw;
  }
}

std::string read_text_input(const std::string& path, size_t max_bytes, std::string_view what) {
  if (path == "-") return read_limited(STDIN_FILENO, "standard input", max_bytes, what);
  return read_text_file(path, max_bytes, what);
}

void add_subcommand_with_aliases(CLI::App& app, const std::string& name, const std::string& description,
                                 std::vector<std::pair<std::string, std::string>> aliases,
                                 std::function<std::function<void()>(CLI::App& parser)> declare) {
  CLI::App* cmd = app.add_subcommand(name, description);
  cmd->prefix_command();
  cmd->set_help_flag();
  cmd->callback([cmd, name, description, aliases = std::move(aliases), declare = std::move(declare)] {
    std::vector<std::string> arguments = cmd->remaining();
    for (std::string& argument : arguments) {
      for (const auto& [alias, long_name] : aliases) {
        if (argument == alias) argument = long_name;
      }
    }
    CLI::App parser{description, "pagedllm " + name};
    const std::function<void()> run = declare(parser);
    std::reverse(arguments.begin(), arguments.end());  // CLI11 parses a vector from its back
    try {
      parser.parse(arguments);
    } catch (const CLI::ParseError& e) {
      // Prints the help or the usage error like any subcommand; main() then exits with the code.
      throw CLI::RuntimeError(parser.exit(e));
    }
    run();
  });
}

void add_generation_flags(CLI::App& cmd, GenerationFlags& flags) {
  cmd.add_option("-m,--model", flags.model_path, "GGUF model file (default: the SmolLM2-135M-Instruct that "
                                                 "scripts/setup.sh installs, or $PAGEDLLM_MODEL)");
  cmd.add_option("--temp", flags.sampling.temperature, "Temperature; 0 = greedy")->capture_default_str();
  cmd.add_option("--top-k", flags.sampling.top_k, "Top-k sampling; 0 = off")->capture_default_str();
  cmd.add_option("--top-p", flags.sampling.top_p, "Top-p (nucleus) sampling; 1 = off")->capture_default_str();
  cmd.add_option("--min-p", flags.sampling.min_p, "Min-p sampling; 0 = off")->capture_default_str();
  cmd.add_option("--repeat-penalty", flags.sampling.repeat_penalty, "Penalty for repeated tokens; 1 = off")
      ->capture_default_str();
  cmd.add_option("--repeat-last-n", flags.sampling.repeat_last_n, "Window of tokens the penalty looks at; -1 = all")
      ->capture_default_str();
  cmd.add_option("--frequency-penalty", flags.sampling.frequency_penalty, "Frequency penalty")->capture_default_str();
  cmd.add_option("--presence-penalty", flags.sampling.presence_penalty, "Presence penalty")->capture_default_str();
  cmd.add_option("-s,--seed", flags.seed, "RNG seed for reproducible sampling (-1 = random)")->capture_default_str();
  cmd.add_option("-t,--threads", flags.n_threads, "CPU threads (default: all cores)");
  cmd.add_option("-c,--ctx-size", flags.n_ctx, "Most tokens one sequence may hold (default: the model's context)");
  cmd.add_option("--block-size", flags.block_size, "Tokens per KV cache block")->capture_default_str();
  cmd.add_option("--kv-mem", flags.kv_mem, "Memory for the K/V pools, e.g. 512M (default: enough for the context)");
  cmd.add_option("--kv-type", flags.kv_type, "Element type of the K/V cache: f16, f32, q8_0 or q4_0 (the "
                                             "quantized types need a head size that is a multiple of 32)")
      ->capture_default_str();
  cmd.add_option("--device", flags.device, "Where the model runs: cpu, cuda, or auto (cuda when a device is present)")
      ->capture_default_str();
}

SamplingParams sampling_from_flags(const GenerationFlags& flags) {
  SamplingParams params = flags.sampling;
  if (flags.seed < -1) fail("--seed {} is invalid (use -1 for random, or a non-negative number)", flags.seed);
  params.seed = flags.seed == -1 ? kRandomSeed : static_cast<uint64_t>(flags.seed);
  validate_sampling_params(params);
  return params;
}

RunnerConfig runner_config_from_flags(const GenerationFlags& flags) {
  RunnerConfig config;
  if (flags.n_threads < 0 || flags.n_threads > 1024) fail("--threads {} is out of range (1..1024)", flags.n_threads);
  if (flags.n_ctx < 0) fail("--ctx-size {} must be positive", flags.n_ctx);
  if (flags.block_size < 1 || flags.block_size > 1024) {
    fail("--block-size {} is out of range (1..1024)", flags.block_size);
  }
  config.n_threads = flags.n_threads;
  config.n_ctx = flags.n_ctx;
  config.block_size = flags.block_size;
  if (!flags.kv_mem.empty()) config.kv_mem_bytes = parse_byte_size(flags.kv_mem, "--kv-mem");
  const std::optional<KvDtype> kv_dtype = parse_kv_dtype(flags.kv_type);
  if (!kv_dtype) fail("--kv-type '{}' is not supported (use one of {})", flags.kv_type, kKvDtypeNames);
  config.kv_dtype = *kv_dtype;
  config.device = resolve_device(flags.device);
  // The CUDA pools are f16 only: any other --kv-type keeps an unspecified device on the CPU (an explicit
  // --device cuda with one is refused by the CUDA backend, naming the flag).
  if (flags.device == "auto" && config.kv_dtype != KvDtype::F16) config.device = DeviceKind::Cpu;
  return config;
}

}  // namespace pagedllm::cli
