#pragma once
// Small pieces several subcommands share: the default model's location, byte sizes like "512M", reading a prompt
// file, and the flags every generating command has.
#include <cstdint>
#include <functional>
#include <string>
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

// The whole file as bytes; Error naming the path when it cannot be read.
std::string read_text_file(const std::string& path);

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
