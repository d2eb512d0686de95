// `pagedllm perplexity`: the perplexity of a model on a text file, by llama-perplexity's method (engine/perplexity.h),
// so that the two can be compared number for number. Prints the running estimate after each chunk and the final
// PPL with its standard error on stdout; settings, a progress line and timings on stderr.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "cli/cli_support.h"
#include "cli/commands.h"
#include "common/error.h"
#include "engine/model.h"
#include "engine/model_runner.h"
#include "engine/perplexity.h"
#include "engine/scheduler.h"

namespace pagedllm::cli {
namespace {

// A perplexity text is a corpus rather than a prompt (wikitext-2's test split is 1.3 MB, its training split 540 MB):
// the limit leaves room for the usual evaluation sets while keeping a mistaken input from filling memory.
constexpr size_t kMaxPerplexityTextBytes = size_t{64} << 20;

struct PerplexityOptions {
  GenerationFlags generation;  // model, threads, KV flags and device (its sampling flags are not offered)
  std::string text_file;
  int n_ctx = 512;
  int batch_tokens = 512;
  int chunks = -1;
  std::string progress = "auto";
};

std::string duration_text(double seconds) {
  if (seconds < 60) return fmt::format("{:.1f} s", seconds);
  const auto total = static_cast<int64_t>(seconds + 0.5);
  if (total < 3600) return fmt::format("{}m{:02}s", total / 60, total % 60);
  return fmt::format("{}h{:02}m", total / 3600, (total % 3600) / 60);
}

void run_perplexity(PerplexityOptions o) {
  // Everything the user can get wrong is checked before the model loads.
  if (o.text_file.empty()) fail("-f (the text to evaluate) is required");
  if (o.progress != "auto" && o.progress != "on" && o.progress != "off") {
    fail("--progress '{}' is not one of auto, on, off", o.progress);
  }
  if (o.batch_tokens < 1) fail("-b {} must be positive", o.batch_tokens);
  PerplexityPlan plan;
  plan.n_ctx = o.n_ctx;
  plan.max_chunks = o.chunks;
  check_perplexity_plan(plan);
  const std::string text = read_text_file(o.text_file, kMaxPerplexityTextBytes, "a perplexity text");
  if (text.empty()) fail("the text file {} is empty: there is nothing to evaluate", o.text_file);

  // As many chunks share a forward as whole chunks fit in the batch (llama-perplexity's sequences per batch).
  const int seqs = std::max(1, o.batch_tokens / o.n_ctx);
  o.generation.n_ctx = o.n_ctx;
  RunnerConfig runner_config = runner_config_from_flags(o.generation);
  runner_config.n_seq_hint = seqs;

  const std::string model_path = o.generation.model_path.empty() ? default_model_path() : o.generation.model_path;
  auto model = Model::load(model_path);
  const Tokenizer& tokenizer = *model->tokenizer;
  if (tokenizer.add_eos()) {
    fail("the model {} appends an EOS token to every text it tokenizes, which a perplexity over chunks of one text "
         "cannot follow", model_path);
  }
  // Tokenized once, as llama-perplexity does: BOS first when the model wants one, special-token text kept as text.
  const std::vector<int32_t> tokens = tokenizer.encode(text, /*add_special=*/true, /*parse_special=*/false);
  const int n_chunks = perplexity_chunks(static_cast<int64_t>(tokens.size()), plan);
  const int32_t bos = tokenizer.add_bos() ? tokenizer.bos_id() : -1;

  ModelRunner runner(*model, runner_config);
  SchedulerConfig scheduler_config;
  scheduler_config.max_seqs = seqs;
  scheduler_config.max_batch_tokens = o.batch_tokens;
  Scheduler scheduler(runner, &tokenizer, scheduler_config);

  const int scored_per_chunk = o.n_ctx - o.n_ctx / 2 - 1;
  fmt::print(stderr, "perplexity: {} tokens, {} chunks of {} tokens ({} scored each), batch {} tokens ({} chunk{} "
                     "at once), K/V {} on {}\n", tokens.size(), n_chunks, o.n_ctx, scored_per_chunk, o.batch_tokens,
             seqs, seqs == 1 ? "" : "s", kv_dtype_name(runner_config.kv_dtype), runner.backend_name());

  const bool show_progress = o.progress == "on" || (o.progress == "auto" && ::isatty(fileno(stderr)) != 0);
  const auto start = std::chrono::steady_clock::now();
  auto elapsed = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(); };
  const int64_t total_tokens = static_cast<int64_t>(n_chunks) * o.n_ctx;
  bool progress_shown = false;
  auto clear_progress = [&] {
    if (progress_shown) fmt::print(stderr, "\r\033[K");
    progress_shown = false;
  };
  auto draw_progress = [&] {
    if (!show_progress) return;
    const int64_t done = runner.counters().prefill_tokens + runner.counters().decode_tokens;
    const double seconds = elapsed();
    const double rate = seconds > 0 ? static_cast<double>(done) / seconds : 0;
    const std::string eta = rate > 0 ? duration_text(static_cast<double>(total_tokens - done) / rate) : "?";
    fmt::print(stderr, "\r\033[Kperplexity: {}/{} tokens ({:.0f}%), {:.0f} tokens/s, {} elapsed, ETA {}", done,
               total_tokens, 100.0 * static_cast<double>(done) / static_cast<double>(total_tokens), rate,
               duration_text(seconds), eta);
    std::fflush(stderr);
    progress_shown = true;
  };
  auto on_chunk = [&](const PerplexityChunk& chunk) {
    clear_progress();
    fmt::print("[{}]{:.4f}\n", chunk.index + 1, chunk.running.perplexity());
    std::fflush(stdout);
    draw_progress();
  };
  const NllTotals totals = evaluate_perplexity(scheduler, tokens, bos, plan, on_chunk, draw_progress);
  clear_progress();
  const double seconds = elapsed();

  fmt::print("Final estimate: PPL = {:.4f} +/- {:.5f}\n", totals.perplexity(), totals.perplexity_error());
  std::fflush(stdout);
  fmt::print(stderr, "perplexity: {} chunks, {} tokens evaluated, {} scored, in {} ({:.1f} tokens/s)\n", n_chunks,
             total_tokens, totals.count, duration_text(seconds),
             seconds > 0 ? static_cast<double>(total_tokens) / seconds : 0.0);
}

}  // namespace

void add_perplexity_command(CLI::App& app) {
  auto o = std::make_shared<PerplexityOptions>();
  CLI::App* cmd = app.add_subcommand("perplexity", "Perplexity of the model on a text file, by llama-perplexity's "
                                                   "method (chunks of -c tokens, second halves scored)");
  GenerationFlags& g = o->generation;
  cmd->add_option("-m,--model", g.model_path, "GGUF model file (default: the SmolLM2-135M-Instruct that "
                                              "scripts/setup.sh installs, or $PAGEDLLM_MODEL)");
  cmd->add_option("-f,--file", o->text_file, "The text to evaluate (at most " +
                                                 byte_limit_text(kMaxPerplexityTextBytes) + "; required)");
  cmd->add_option("-c,--ctx-size", o->n_ctx, "Tokens per chunk; each chunk is evaluated from an empty cache and its "
                                             "second half scored")->capture_default_str();
  cmd->add_option("-b,--batch-size", o->batch_tokens, "Tokens per forward; b / c chunks are evaluated together")
      ->capture_default_str();
  cmd->add_option("--chunks", o->chunks, "Evaluate at most this many chunks (-1: every whole chunk of the text)")
      ->capture_default_str();
  cmd->add_option("-t,--threads", g.n_threads, "CPU threads (default: all cores)");
  cmd->add_option("--block-size", g.block_size, "Tokens per KV cache block")->capture_default_str();
  cmd->add_option("--kv-mem", g.kv_mem, "Memory for the K/V pools, e.g. 512M (default: enough for the chunks "
                                        "evaluated together)");
  cmd->add_option("--kv-type", g.kv_type, "Element type of the K/V cache: f16, f32, q8_0 or q4_0")
      ->capture_default_str();
  cmd->add_option("--device", g.device, "Where the model runs: cpu, cuda, or auto (cuda when a device is present)")
      ->capture_default_str();
  cmd->add_option("--progress", o->progress, "Progress line on stderr: auto (when it is a terminal), on, off")
      ->capture_default_str();
  cmd->callback([o] { run_perplexity(*o); });
}

}  // namespace pagedllm::cli
