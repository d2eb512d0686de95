// `pagedllm run`: generate from one prompt (optionally K parallel samples sharing the prompt's blocks), streaming
// the text, then print time, cache and bandwidth statistics.
#include <algorithm>
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
#include "engine/op_profile.h"
#include "engine/prompt.h"
#include "engine/scheduler.h"
#include "engine/stats_report.h"
#include "templates/chat_template.h"

namespace pagedllm::cli {
namespace {

struct RunOptions {
  GenerationFlags generation;
  std::string prompt;
  std::string prompt_file;
  int n_predict = 256;
  int parallel = 1;
  std::string stats = "text";
  bool ignore_eos = false;
  bool no_bos = false;
  bool no_parse_special = false;
  bool chat = false;
  std::string chat_template;
  std::string system_prompt;
  int batch_tokens = 512;
  bool profile = false;
};

// The per-op table of one phase: where its time went, and what each op moved and computed against the peaks.
std::string profile_table(const char* phase, int64_t forwards, const std::vector<OpProfileRow>& rows,
                          const MachinePeaks& peaks) {
  double total = 0;
  for (const OpProfileRow& r : rows) total += r.seconds;
  std::string out = fmt::format("profile: {}, {} forwards, {:.1f} ms in ops\n", phase, forwards, total * 1e3);
  if (rows.empty()) return out;
  out += fmt::format("  {:<32} {:>7} {:>10} {:>7} {:>10} {:>8} {:>6} {:>9} {:>6}\n", "op", "calls", "ms", "share",
                     "MB", "GB/s", "% BW", "GFLOP/s", "% FLOP");
  std::vector<OpProfileRow> sorted = rows;
  std::sort(sorted.begin(), sorted.end(), [](const OpProfileRow& a, const OpProfileRow& b) { return a.seconds > b.seconds; });
  auto percent = [](double value, double peak) { return peak > 0 ? fmt::format("{:.1f}", 100.0 * value / peak) : "-"; };
  for (const OpProfileRow& r : sorted) {
    const double gb_s = r.seconds > 0 ? r.bytes / r.seconds / 1e9 : 0;
    const double gflop_s = r.seconds > 0 ? r.flops / r.seconds / 1e9 : 0;
    out += fmt::format("  {:<32} {:>7} {:>10.2f} {:>6.1f}% {:>10.2f} {:>8.2f} {:>6} {:>9.1f} {:>6}\n", r.op, r.calls,
                       r.seconds * 1e3, total > 0 ? 100.0 * r.seconds / total : 0.0, r.bytes / 1e6, gb_s,
                       percent(gb_s, peaks.bandwidth_gb_s), gflop_s,
                       r.flops > 0 ? percent(gflop_s, peaks.compute_gflop_s) : std::string("-"));
  }
  return out;
}

// Streams the one sample's text as it comes; keeps the result.
class RunSink : public TokenSink {
 public:
  explicit RunSink(bool stream) : stream_(stream) {}
  void on_text(RequestId, int, std::string_view text) override {
    if (!stream_) return;
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fflush(stdout);
  }
  void on_finish(RequestResult finished) override { result = std::move(finished); }

  RequestResult result;

 private:
  bool stream_;
};

void run_generation(const RunOptions& o) {
  if (o.n_predict == 0 || o.n_predict < -1) fail("-n {}: the number of tokens to generate must be positive (or -1 "
                                                 "for no limit)", o.n_predict);
  if (o.parallel < 1 || o.parallel > kMaxSamples) fail("--parallel {} is out of range (1..{})", o.parallel, kMaxSamples);
  if (o.stats != "text" && o.stats != "json" && o.stats != "none") {
    fail("--stats '{}' is not one of text, json, none", o.stats);
  }
  if (o.batch_tokens < 1) fail("--batch-tokens {} must be positive", o.batch_tokens);
  if (!o.chat && (!o.chat_template.empty() || !o.system_prompt.empty())) {
    fail("--chat-template and --system only apply with --chat");
  }
  const SamplingParams sampling = sampling_from_flags(o.generation);
  RunnerConfig runner_config = runner_config_from_flags(o.generation);
  runner_config.n_seq_hint = o.parallel;
  runner_config.profile = o.profile;

  const std::string prompt = o.prompt_file.empty() ? o.prompt : read_text_file(o.prompt_file);
  const std::string model_path = o.generation.model_path.empty() ? default_model_path() : o.generation.model_path;
  auto model = Model::load(model_path);
  const Tokenizer& tokenizer = *model->tokenizer;

  std::vector<int32_t> prompt_tokens;
  if (o.chat) {
    // One user turn (after an optional system prompt) rendered through the model's template, ready for the answer.
    const ChosenChatTemplate chosen = choose_chat_template(o.chat_template, tokenizer.chat_template(),
                                                                model->config.traits->fallback_chat_template);
    if (!chosen.notice.empty()) fmt::print(stderr, "notice: {}\n", chosen.notice);
    nlohmann::ordered_json messages = nlohmann::ordered_json::array();
    if (!o.system_prompt.empty()) messages.push_back({{"role", "system"}, {"content", o.system_prompt}});
    messages.push_back({{"role", "user"}, {"content", prompt}});
    const std::string text = render_chat_template(chosen.source, chat_template_inputs(tokenizer, messages, true));
    prompt_tokens = tokenize_prompt(tokenizer, text, PromptSource::ChatTemplate, !o.no_bos, /*parse_special=*/true);
  } else {
    prompt_tokens = tokenize_prompt(tokenizer, prompt, PromptSource::Text, !o.no_bos, !o.no_parse_special);
  }

  ModelRunner runner(*model, runner_config);
  SchedulerConfig scheduler_config;
  scheduler_config.max_seqs = o.parallel;
  scheduler_config.max_batch_tokens = o.batch_tokens;
  Scheduler scheduler(runner, &tokenizer, scheduler_config);

  GenerationRequest request;
  request.prompt = std::move(prompt_tokens);
  request.max_tokens = o.n_predict > 0 ? o.n_predict : kUnlimitedTokens;
  request.n = o.parallel;
  request.sampling = sampling;
  request.ignore_eos = o.ignore_eos;
  const bool stream = o.parallel == 1;
  RunSink sink(stream);
  scheduler.submit(std::move(request), &sink);
  scheduler.run_until_idle();
  const RequestResult& result = sink.result;
  if (result.failure == FinishReason::Error && result.completions.empty()) fail("{}", result.error);

  if (stream) {
    std::fputc('\n', stdout);
  } else {
    for (size_t i = 0; i < result.completions.size(); ++i) {
      const Completion& c = result.completions[i];
      fmt::print("--- sample {} of {} ({} tokens, finish: {}) ---\n{}\n", i + 1, result.completions.size(),
                 c.tokens.size(), finish_reason_name(c.finish), c.text);
    }
  }
  std::fflush(stdout);
  if (!result.error.empty()) fail("{}", result.error);
  for (const Completion& c : result.completions) {
    if (c.finish == FinishReason::CacheFull) {
      fmt::print(stderr, "warning: a sample stopped when the KV cache was full ({} blocks of {} tokens, less than "
                         "the context of {}); raise --kv-mem\n", runner.num_blocks(), runner.block_size(),
                 runner.n_ctx());
      break;
    }
  }

  if (const OpProfile* profile = runner.profile(); profile != nullptr) {
    const MachinePeaks peaks = runner.peaks();
    fmt::print(stderr, "\n{}{}peaks: {:.2f} GB/s ({}); {:.1f} GFLOP/s ({}). Ops wait for the device one by one while "
                       "profiling.\n",
               profile_table("prefill", profile->prefill_forwards, profile->prefill, peaks),
               profile_table("decode", profile->decode_forwards, profile->decode, peaks), peaks.bandwidth_gb_s,
               peaks.bandwidth_source, peaks.compute_gflop_s, peaks.compute_source);
  }
  if (o.stats == "none") return;
  const RunnerCounters& counters = runner.counters();
  RunTimings timings;
  timings.prompt_tokens = result.prompt_tokens - result.reused_prompt_tokens;
  timings.prompt_seconds = counters.prefill_seconds;
  timings.generated_tokens = result.completion_tokens;
  // Wall time after the prompt, sampling included.
  timings.generation_seconds = std::max(0.0, result.latency_seconds - result.queue_seconds - counters.prefill_seconds);
  timings.time_to_first_token = result.first_token_seconds;
  // Statistics describe the cache as the last step left it, while every sample still held its blocks.
  const StatsReport report = make_stats_report(runner, scheduler.cache_at_last_step(), timings);
  if (o.stats == "json") {
    nlohmann::json out = report.to_json();
    out["samples"] = nlohmann::json::array();
    for (const Completion& c : result.completions) {
      out["samples"].push_back({{"tokens", c.tokens.size()}, {"finish_reason", finish_reason_name(c.finish)}});
    }
    fmt::print(stderr, "{}\n", out.dump());
  } else {
    fmt::print(stderr, "\n{}", report.to_text());
  }
}

}  // namespace

void add_run_command(CLI::App& app) {
  auto o = std::make_shared<RunOptions>();
  CLI::App* cmd = app.add_subcommand("run", "Generate text from a prompt and print cache and bandwidth statistics");
  add_generation_flags(*cmd, o->generation);
  auto* prompt = cmd->add_option("-p,--prompt", o->prompt, "Prompt text");
  auto* file = cmd->add_option("-f,--file", o->prompt_file,
                               "Read the prompt from a file (at most " + byte_limit_text(kMaxPromptFileBytes) + ")");
  prompt->excludes(file);
  cmd->add_option("-n,--n-predict", o->n_predict, "Tokens to generate per sample (-1: until an end token or the "
                                                  "context is full)")->capture_default_str();
  cmd->add_option("--parallel", o->parallel, "Samples of the prompt that share its KV blocks (fork + "
                                             "copy-on-write)")->capture_default_str();
  cmd->add_option("--stats", o->stats, "Statistics on stderr: text, json or none")->capture_default_str();
  cmd->add_option("--batch-tokens", o->batch_tokens, "Prompt tokens per prefill forward")->capture_default_str();
  cmd->add_flag("--ignore-eos", o->ignore_eos, "Keep generating past end-of-generation tokens");
  cmd->add_flag("--no-bos", o->no_bos, "Do not add the model's BOS token to the prompt");
  cmd->add_flag("--chat", o->chat, "Wrap the prompt as one user turn in the model's chat template");
  cmd->add_option("--chat-template", o->chat_template, "With --chat: a built-in template instead of the model's "
                                                       "(chatml, llama2, llama3, mistral, gemma, phi3, zephyr)");
  cmd->add_option("--system", o->system_prompt, "With --chat: a system prompt before the user turn");
  cmd->add_flag("--no-parse-special", o->no_parse_special, "Treat control-token text in the prompt as plain text");
  cmd->add_flag("--profile", o->profile, "After the run, a per-operation table for prefill and decode: time share, "
                                         "bytes, GB/s, GFLOP/s and % of the peaks");
  cmd->callback([o] { run_generation(*o); });
}

}  // namespace pagedllm::cli
