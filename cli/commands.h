#pragma once
// Each subcommand lives in its own cli/<name>.cpp and registers itself on the CLI11 app here. A callback reports
// user errors by throwing pagedllm::Error; main() prints it once and exits 1. No inference logic lives in cli/.
#include <CLI/CLI.hpp>

namespace pagedllm::cli {

void add_info_command(CLI::App& app);
void add_tokenize_command(CLI::App& app);
void add_run_command(CLI::App& app);
void add_template_command(CLI::App& app);
void add_chat_command(CLI::App& app);
void add_batch_command(CLI::App& app);
void add_bench_command(CLI::App& app);
void add_perplexity_command(CLI::App& app);

}  // namespace pagedllm::cli
