#pragma once
// Small pieces several subcommands share: the default model's location, byte sizes like "512M", reading a prompt
// file, and the flags every generating command has.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <CLI/CLI.hpp>

#include "engine/model_runner.h"
#include "engine/sampler.h"

namespace pagedllm::cli {

// The file name of the default model that scripts/setup.sh installs.
inline constexpr const char* kDefaultModelFile = "SmolLM2-135M-Instruct.Q4_1.gguf";

// $PAGEDLLM_MODEL, else models/<default> next to the binary's source tree or the working directory. Throws
// pagedllm::Error saying how to install it when none exists.
std::string default_model_path();

// "1024", "512K", "64M", "2G", "1.5GiB" -> bytes. Throws pagedllm::Error naming `flag` on anything else.
uint64_t parse_byte_size(const std::string& text, const std::string& flag);

// Limits on one input, stated in --help and the README. A prompt is at most a few MB (a 1M-token context holds about
// 4 MB of text) and a chat template a few tens of KB; the limits leave room for that many times over, and keep a
// mistaken input (/dev/zero, a model file given as a prompt) from filling memory.
inline constexpr size_t kMaxPromptFileBytes = size_t{16} << 20;    // run/tokenize -f, chat -sysf and /load
inline constexpr size_t kMaxMessagesFileBytes = size_t{16} << 20;  // template --messages
inline constexpr size_t kMaxTemplateFileBytes = size_t{1} << 20;   // template --template-file
// (One line of a batch request file: kMaxRequestLineBytes in cli/batch_files.h.)

// "16 MiB" for a limit above, for help texts and messages.
std::string byte_limit_text(size_t bytes);

// The whole file as bytes. Throws pagedllm::Error naming the path when it cannot be read, is a directory, or holds
// more than `max_bytes` (the message names the limit as "the limit for <what>"); no more than that is ever read.
std::string read_text_file(const std::string& path, size_t max_bytes = kMaxPromptFileBytes,
                           std::string_view what = "a prompt or text file");
// The same, reading standard input when `path` is "-".
std::string read_text_input(const std::string& path, size_t max_bytes, std::string_view what);

// A subcommand whose flags include llama.cpp's multi-letter single-dash spellings (-sys, -pg, -npl), which CLI11
// cannot declare. It takes its arguments raw, respells each alias (first) as its long flag (second), and parses
// them with a parser of its own: `declare` adds the flags to that parser and returns what to run once they are
// parsed. Help and usage errors print and exit like any subcommand's.
void add_subcommand_with_aliases(CLI::App& app, const std::string& name, const std::string& description,
                                 std::vector<std::pair<std::string, std::string>> aliases,
                                 std::function<std::function<void()>(CLI::App& parser)> declare);

// Flags shared by run, chat and batch: sampling, threads, context, paging.
struct GenerationFlags {
  std::string model_path;
  SamplingParams sampling;
  int64_t seed = -1;
  int n_threads = 0;
  int n_ctx = 0;
  int block_size = 16;
  std::string kv_mem;
  std::string kv_type = "f16";
  std::string device = "auto";  // cpu, cuda, or auto: cuda when a device is present
};
void add_generation_flags(CLI::App& cmd, GenerationFlags& flags);
// Validates and turns the flags into a RunnerConfig (kv budget parsed, device resolved).
RunnerConfig runner_config_from_flags(const GenerationFlags& flags);
SamplingParams sampling_from_flags(const GenerationFlags& flags);

}  // namespace pagedllm::cli
