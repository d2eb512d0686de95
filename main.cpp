// pagedllm: the command line. Subcommands are wired here; each lives in cli/<name>.cpp.
#include <cstdio>
#include <exception>

#include <CLI/CLI.hpp>
#include <fmt/core.h>

#include "cli/commands.h"
#include "common/error.h"

int main(int argc, char** argv) {
  CLI::App app{"pagedllm: GGUF LLM inference with a paged KV cache and tiled attention", "pagedllm"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "pagedllm 0.1.0");
  pagedllm::cli::add_info_command(app);
  pagedllm::cli::add_tokenize_command(app);
  pagedllm::cli::add_run_command(app);
  pagedllm::cli::add_template_command(app);
  pagedllm::cli::add_chat_command(app);
  pagedllm::cli::add_batch_command(app);
  pagedllm::cli::add_bench_command(app);
  pagedllm::cli::add_perplexity_command(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const pagedllm::ExitError& e) {
    std::fflush(stdout);
    fmt::print(stderr, "error: {}\n", e.what());
    return e.exit_code();
  } catch (const pagedllm::Error& e) {
    std::fflush(stdout);
    fmt::print(stderr, "error: {}\n", e.what());
    return 1;
  } catch (const std::bad_alloc&) {
    std::fflush(stdout);
    fmt::print(stderr, "error: out of memory\n");
    return 1;
  } catch (const std::exception& e) {
    std::fflush(stdout);
    fmt::print(stderr, "error: {}\n", e.what());
    return 1;
  }
  return 0;
}
