// `pagedllm batch`: push a file of requests through the continuous-batching scheduler and write one result record
// per request, in input order, then a summary of throughput and of what the KV cache did.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "cli/batch_files.h"
#include "cli/batch_shards.h"
#include "cli/cli_support.h"
#include "cli/commands.h"
#include "common/error.h"
#include "common/timing.h"
#include "engine/model.h"
#include "engine/model_runner.h"
#include "engine/prompt.h"
#include "engine/scheduler.h"
#include "engine/stats_report.h"
#include "templates/chat_template.h"

namespace pagedllm::cli {
namespace {

struct BatchOptions {
  GenerationFlags generation;
  std::string input;
  std::string output;
  std::string format = "jsonl";
  int max_seqs = 64;
  int max_batch_tokens = 512;
  int max_tokens = 256;
  std::string kv_layout = "paged";
  std::string prefix_cache = "on";
  bool prefix_cache_given = false;
  std::string progress = "auto";
  std::string stats = "text";
  bool resume = false;
  bool ignore_eos = false;
  bool no_bos = false;
  std::string chat_template;  // a built-in name for "messages" requests; "" for the model's own
  std::string shard;          // --shard I/N, "off", or "" (then the environment may choose)
  std::optional<int64_t> shard_count;
  bool stable_records = false;
};

// When no --kv-mem is given: room for max_seqs full contexts, capped so that a long-context model does not take
// gigabytes by default (paging makes a modest pool go far), but never below one full context.
constexpr uint64_t kDefaultKvBudgetCap = 256ull << 20;

// Turns request lines into token ids: plain prompts directly, conversations through the chat template.
class PromptBuilder {
 public:
  // requested_template: a built-in template name, or "" for the model's own (the family's fallback_template when
  // it has none or the interpreter cannot run it).
  PromptBuilder(const Tokenizer& tokenizer, bool add_bos, std::string requested_template,
                std::string_view fallback_template)
      : tokenizer_(tokenizer), add_bos_(add_bos), requested_template_(std::move(requested_template)),
        fallback_template_(fallback_template) {}

  // Throws pagedllm::Error when the conversation cannot be rendered.
  std::vector<int32_t> tokens(const RequestLine& line) {
    if (!line.messages) return tokenize_prompt(tokenizer_, line.prompt, PromptSource::Text, add_bos_, true);
    const std::string text = chat_template().render(chat_template_inputs(tokenizer_, *line.messages, true));
    return tokenize_prompt(tokenizer_, text, PromptSource::ChatTemplate, add_bos_, /*parse_special=*/true);
  }

 private:
  // Chosen and parsed once, at the first conversation (a file of plain prompts never needs one).
  const ChatTemplate& chat_template() {
    if (!template_) {
      const ChosenChatTemplate chosen = choose_chat_template(requested_template_, tokenizer_.chat_template(),
                                                                fallback_template_);
      if (!chosen.notice.empty()) fmt::print(stderr, "notice: {}\n", chosen.notice);
      template_ = std::make_unique<ChatTemplate>(chosen.source);
    }
    return *template_;
  }

  const Tokenizer& tokenizer_;
  bool add_bos_;
  std::string requested_template_;
  std::string_view fallback_template_;  // the model family's built-in template
  std::unique_ptr<ChatTemplate> template_;
};

// Warnings about the input, grouped so that a 10,000-line file with one recurring mistake prints a few lines.
class InputWarnings {
 public:
  void bad_line(int line, const std::string& error) {
    if (++bad_lines_ <= kShown) fmt::print(stderr, "warning: line {}: {} (an error record is written)\n", line, error);
  }
  void unknown_field(int line, const std::string& field) {
    auto [it, inserted] = unknown_fields_.try_emplace(field, line, 0);
    it->second.second += 1;
  }
  void duplicate_id(int line, const std::string& id) {
    if (++duplicates_ <= kShown) fmt::print(stderr, "warning: line {}: id {} is used by an earlier line too\n", line, id);
  }
  void print_totals() const {
    if (bad_lines_ > kShown) fmt::print(stderr, "warning: {} bad lines in all\n", bad_lines_);
    if (duplicates_ > kShown) fmt::print(stderr, "warning: {} duplicate ids in all\n", duplicates_);
    for (const auto& [field, where] : unknown_fields_) {
      fmt::print(stderr, "warning: unknown field \"{}\" ignored (line {}{})\n", field, where.first,
                 where.second > 1 ? fmt::format(" and {} more", where.second - 1) : "");
    }
  }

 private:
  static constexpr int kShown = 10;
  int bad_lines_ = 0;
  int duplicates_ = 0;
  std::map<std::string, std::pair<int, int>> unknown_fields_;  // field -> (first line, lines)
};

// SIGINT and SIGTERM are noted rather than fatal while the batch runs; the previous handlers come back after.
std::atomic<int> g_stop_signal{0};

extern "C" void note_stop_signal(int signal) { g_stop_signal.store(signal); }

class StopSignals {
 public:
  StopSignals() {
    g_stop_signal.store(0);
    struct sigaction action {};
    action.sa_handler = note_stop_signal;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESTART;
    sigaction(SIGINT, &action, &previous_int_);
    sigaction(SIGTERM, &action, &previous_term_);
  }
  ~StopSignals() {
    sigaction(SIGINT, &previous_int_, nullptr);
    sigaction(SIGTERM, &previous_term_, nullptr);
  }
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;
  static int received() { return g_stop_signal.load(); }

 private:
  struct sigaction previous_int_ {};
  struct sigaction previous_term_ {};
};

// One line on stderr, redrawn in place at most ten times a second.
class ProgressBar {
 public:
  explicit ProgressBar(bool enabled) : enabled_(enabled) {}

  void update(size_t done, size_t total, int64_t generated, double seconds, const Scheduler& scheduler,
              bool force = false) {
    if (!enabled_) return;
    const auto now = Clock::now();
    if (!force && now - last_ < std::chrono::milliseconds(100)) return;
    last_ = now;
    constexpr int kWidth = 24;
    const int filled = total == 0 ? kWidth : static_cast<int>(kWidth * done / total);
    const int blocks_total = scheduler.stats().kv_blocks_total;
    fmt::print(stderr, "\r[{}{}] {}/{} requests  {:.1f} tokens/s  KV {:.0f}%  running {}  waiting {}   ",
               std::string(static_cast<size_t>(filled), '#'), std::string(static_cast<size_t>(kWidth - filled), '.'),
               done, total, seconds > 0 ? static_cast<double>(generated) / seconds : 0.0,
               blocks_total > 0 ? 100.0 * scheduler.kv_blocks_in_use() / blocks_total : 0.0,
               scheduler.running_sequences(), scheduler.waiting_sequences());
    std::fflush(stderr);
    drawn_ = true;
  }
  void finish() {
    if (drawn_) fmt::print(stderr, "\n");
  }

 private:
  bool enabled_;
  bool drawn_ = false;
  Clock::time_point last_{};
};

struct BatchTotals {
  size_t requests = 0;
  size_t ok = 0;
  size_t errors = 0;
  size_t resumed = 0;
  double seconds = 0;
};

nlohmann::json summary_json(const BatchOptions& o, const BatchTotals& totals, const Scheduler& scheduler,
                            const StatsReport& report) {
  const SchedulerStats& s = scheduler.stats();
  const CacheStats& c = report.cache;
  const double peak_percent = s.kv_blocks_total > 0 ? 100.0 * s.peak_kv_blocks / s.kv_blocks_total : 0.0;
  return {
      {"requests", totals.requests},
      {"ok", totals.ok},
      {"errors", totals.errors},
      {"resumed", totals.resumed},
      {"seconds", totals.seconds},
      {"prompt_tokens", s.prompt_tokens},
      {"generated_tokens", s.generated_tokens},
      {"generated_tokens_per_s", per_second(static_cast<double>(s.generated_tokens), totals.seconds)},
      {"total_tokens_per_s", per_second(static_cast<double>(s.prompt_tokens + s.generated_tokens), totals.seconds)},
      {"steps", s.steps},
      {"kv",
       {{"layout", o.kv_layout},
        {"block_size", c.block_size},
        {"blocks_total", s.kv_blocks_total},
        {"pool_bytes", report.kv_pool_bytes},
        {"peak_blocks", s.peak_kv_blocks},
        {"peak_percent", peak_percent},
        {"peak_running_sequences", s.peak_running},
        {"waste_percent", s.waste_percent()},
        {"sharing_saved_percent", s.sharing_saved_percent()},
        {"peak_shared_blocks", s.peak_shared_blocks},
        {"cow_copies", c.cow_copies},
        {"prefix_queries", c.prefix_queries},
        {"prefix_hits", c.prefix_hits},
        {"prefix_hit_rate", c.prefix_hit_rate()},
        {"preemptions", s.preemptions},
        {"preempted_tokens", s.preempted_tokens}}},
      {"engine", report.to_json()},
  };
}

std::string summary_text(const BatchOptions& o, const BatchTotals& totals, const Scheduler& scheduler,
                         const StatsReport& report) {
  const SchedulerStats& s = scheduler.stats();
  const CacheStats& c = report.cache;
  std::string out;
  out += fmt::format("requests:  {} ({} ok, {} errors, {} resumed) in {:.2f} s, {} forwards\n", totals.requests,
                     totals.ok, totals.errors, totals.resumed, totals.seconds, s.steps);
  out += fmt::format("tokens:    prompt {}, generated {}; {:.1f} generated tokens/s, {:.1f} tokens/s in all\n",
                     s.prompt_tokens, s.generated_tokens,
                     per_second(static_cast<double>(s.generated_tokens), totals.seconds),
                     per_second(static_cast<double>(s.prompt_tokens + s.generated_tokens), totals.seconds));
  out += fmt::format("kv:        {} layout, {} blocks of {} tokens ({:.2f} MiB); peak {} blocks ({:.1f}%), peak {} "
                     "sequences at once; waste {:.2f}% (average over steps)\n",
                     o.kv_layout, s.kv_blocks_total, c.block_size,
                     static_cast<double>(report.kv_pool_bytes) / (1024.0 * 1024.0), s.peak_kv_blocks,
                     s.kv_blocks_total > 0 ? 100.0 * s.peak_kv_blocks / s.kv_blocks_total : 0.0, s.peak_running,
                     s.waste_percent());
  out += fmt::format("sharing:   saved {:.1f}% of K/V against unshared storage; peak shared blocks {}; copy-on-write "
                     "copies {}\n", s.sharing_saved_percent(), s.peak_shared_blocks, c.cow_copies);
  if (c.prefix_queries > 0) {
    out += fmt::format("prefix:    {} of {} prompt blocks reused ({:.1f}%), {} tokens not recomputed\n", c.prefix_hits,
                       c.prefix_queries, 100.0 * c.prefix_hit_rate(), c.prefix_hit_tokens);
  } else {
    out += fmt::format("prefix:    cache {}\n", o.prefix_cache == "on" && o.kv_layout == "paged" ? "on, no full prompt "
                                                                                                  "block to look up"
                                                                                                : "off");
  }
  out += fmt::format("preempted: {} times ({} K/V rows discarded and recomputed)\n", s.preemptions, s.preempted_tokens);
  if (report.counters.decode_tokens > 0) {
    out += fmt::format("bandwidth: {:.2f} GB/s in decode steps = {:.1f}% of {:.2f} GB/s peak ({}, {} threads)\n",
                       report.achieved_gb_s(),
                       report.peak_gb_s > 0 ? 100.0 * report.achieved_gb_s() / report.peak_gb_s : 0.0,
                       report.peak_gb_s, report.backend, report.n_threads);
  }
  return out;
}

// The settings that change what a request's record holds, recorded (with their hash) in a shard's header so that
// `merge` and `--resume` can refuse results made otherwise. Not here: how the work is scheduled (threads,
// --max-seqs, --max-batch-tokens, --kv-mem, --kv-layout, --prefix-cache), which the tests show leaves greedy and
// seeded results as they are (short of a pool smaller than one context, whose records say kv_cache_full), and the
// display flags.
nlohmann::ordered_json shard_settings(const BatchOptions& o, const SamplingParams& sampling,
                                      const RunnerConfig& runner, const std::string& model_path) {
  return {{"model", model_identity(model_path)},
          {"format", o.format},
          {"max_tokens", o.max_tokens},
          {"sampling",
           {{"temperature", sampling.temperature},
            {"top_k", sampling.top_k},
            {"top_p", sampling.top_p},
            {"min_p", sampling.min_p},
            {"repeat_penalty", sampling.repeat_penalty},
            {"repeat_last_n", sampling.repeat_last_n},
            {"frequency_penalty", sampling.frequency_penalty},
            {"presence_penalty", sampling.presence_penalty},
            {"seed", o.generation.seed}}},
          {"ignore_eos", o.ignore_eos},
          {"bos", !o.no_bos},
          {"chat_template", o.chat_template},
          {"ctx_size", runner.n_ctx},
          {"kv_type", o.generation.kv_type},
          {"block_size", runner.block_size},
          {"device", runner.device == DeviceKind::Cuda ? "cuda" : "cpu"},
          {"stable_records", o.stable_records}};
}

// A shard's requests (read in two passes: the first counts the requests and hashes the file, the second parses this
// shard's lines), its header, and one line on stderr saying which shard this is and why.
std::vector<RequestLine> read_shard_requests(const BatchOptions& o, InputFormat format, const Shard& shard,
                                             const SamplingParams& sampling, const RunnerConfig& runner,
                                             std::optional<ShardHeader>& header) {
  struct stat info {};
  if (::stat(o.input.c_str(), &info) == 0 && !S_ISREG(info.st_mode) && !S_ISDIR(info.st_mode)) {
    fail("-i {}: sharding reads the request file twice, so it must be a regular file, not a pipe or a device",
         o.input);
  }
  RequestFileDigest whole;
  read_request_file(o.input, format, kMaxRequestLineBytes, RequestRange{0, 0}, &whole);
  const RequestRange range = shard_range(shard.index, shard.count, whole.requests);
  RequestFileDigest again;
  std::vector<RequestLine> lines = read_request_file(o.input, format, kMaxRequestLineBytes, range, &again);
  if (again != whole) {
    fail("-i {}: the request file changed while it was read ({} bytes, then {}): every shard must see the same file",
         o.input, whole.bytes, again.bytes);
  }
  const std::string model_path = o.generation.model_path.empty() ? default_model_path() : o.generation.model_path;
  header.emplace();
  header->shard = shard.index;
  header->shards = shard.count;
  header->requests = whole.requests;
  header->first = range.first;
  header->end = range.end;
  header->input = whole;
  header->settings = shard_settings(o, sampling, runner, model_path);
  const std::string which = fmt::format("shard {}/{} (from {}{})", shard.index, shard.count, shard.source,
                                        shard.source.starts_with("--shard") ? "" : "; --shard off ignores them");
  if (lines.empty()) {
    fmt::print(stderr, "notice: {}: none of the {} requests of {} (its result file holds only the shard header)\n",
               which, whole.requests, o.input);
  } else {
    fmt::print(stderr, "notice: {}: requests {}..{} of {} in {} (input lines {}..{})\n", which, range.first,
               range.end - 1, whole.requests, o.input, lines.front().line, lines.back().line);
  }
  return lines;
}

void run_batch(const BatchOptions& o) {
  // Everything the user can get wrong is checked before the model loads.
  InputFormat format = InputFormat::Jsonl;
  if (o.format == "text") format = InputFormat::Text;
  else if (o.format != "jsonl") fail("--format '{}' is not one of jsonl, text", o.format);
  KvLayout layout = KvLayout::Paged;
  if (o.kv_layout == "contiguous") layout = KvLayout::Contiguous;
  else if (o.kv_layout != "paged") fail("--kv-layout '{}' is not one of paged, contiguous", o.kv_layout);
  if (o.prefix_cache != "on" && o.prefix_cache != "off") fail("--prefix-cache '{}' is not one of on, off", o.prefix_cache);
  if (o.progress != "auto" && o.progress != "on" && o.progress != "off") {
    fail("--progress '{}' is not one of auto, on, off", o.progress);
  }
  if (o.stats != "text" && o.stats != "json" && o.stats != "none") fail("--stats '{}' is not one of text, json, none", o.stats);
  if (o.max_seqs < 1 || o.max_seqs > 65536) fail("--max-seqs {} is out of range (1..65536)", o.max_seqs);
  if (o.max_batch_tokens < 1) fail("--max-batch-tokens {} must be positive", o.max_batch_tokens);
  if (o.max_tokens < 1) fail("--max-tokens {} must be positive", o.max_tokens);
  if (!o.chat_template.empty() && !builtin_chat_template(o.chat_template)) {
    fail("--chat-template '{}' is not a built-in template (known: {})", o.chat_template,
         fmt::join(builtin_chat_template_names(), ", "));
  }
  const SamplingParams default_sampling = sampling_from_flags(o.generation);
  RunnerConfig runner_config = runner_config_from_flags(o.generation);
  runner_config.n_seq_hint = o.max_seqs;
  runner_config.default_kv_cap_bytes = kDefaultKvBudgetCap;
  if (layout == KvLayout::Contiguous && o.prefix_cache_given && o.prefix_cache == "on") {
    fmt::print(stderr, "notice: --kv-layout contiguous has no prefix cache (it is the baseline without sharing)\n");
  }

  const ShardChoice shard = choose_shard(o.shard, o.shard_count, [](const char* name) { return std::getenv(name); });
  std::optional<ShardHeader> header;
  std::vector<RequestLine> lines = shard.shard ? read_shard_requests(o, format, *shard.shard, default_sampling,
                                                                     runner_config, header)
                                               : read_request_file(o.input, format);
  // Claimed before anything is read from it: a second run on the same output is refused here, not interleaved.
  ResultWriter writer(o.output, lines.size(), o.input);  // fails now, not after the work, when it is unwritable
  if (header) {
    writer.set_header(header->line());
    if (o.resume) check_resume_header(writer.path(), *header);
  }
  const auto completed = o.resume ? writer.completed_records() : decltype(writer.completed_records()){};
  writer.start();
  // --stable-records: without the fields that depend on when, and beside what, a request ran.
  auto stable = [&](nlohmann::ordered_json record) {
    if (o.stable_records) {
      for (const char* field : {"latency_s", "queue_s", "preemptions"}) record.erase(field);
    }
    return record;
  };
  InputWarnings warnings;
  BatchTotals totals;
  totals.requests = lines.size();
  // Bad lines and resumed requests go out first: an earlier run's .partial records are safe again at once.
  std::vector<size_t> to_generate;  // indices into `lines`
  {
    std::unordered_set<std::string> ids;
    for (size_t i = 0; i < lines.size(); ++i) {
      const RequestLine& line = lines[i];
      for (const std::string& field : line.unknown_fields) warnings.unknown_field(line.line, field);
      if (!ids.insert(id_key(line.id)).second) warnings.duplicate_id(line.line, id_key(line.id));
      if (!line.error.empty()) {
        warnings.bad_line(line.line, line.error);
        writer.put(i, error_record(line, line.error));
        totals.errors += 1;
      } else if (auto done = completed.find(id_key(line.id)); done != completed.end()) {
        nlohmann::ordered_json record = done->second;
        record["line"] = line.line;
        writer.put(i, stable(std::move(record)));
        totals.resumed += 1;
      } else {
        to_generate.push_back(i);
      }
    }
  }
  warnings.print_totals();
  if (lines.empty() && (!header || header->requests == 0)) fmt::print(stderr, "warning: {} holds no requests\n", o.input);
  if (to_generate.empty()) {
    writer.commit();
    if (o.stats == "json") {
      const nlohmann::json counts = {{"requests", totals.requests}, {"ok", 0},          {"errors", totals.errors},
                                     {"resumed", totals.resumed},   {"seconds", 0.0}};
      fmt::print(stderr, "{}\n", counts.dump());
    } else if (o.stats == "text") {
      fmt::print(stderr, "requests:  {} ({} errors, {} resumed); nothing to generate\n", totals.requests,
                 totals.errors, totals.resumed);
    }
    return;
  }

  const std::string model_path = o.generation.model_path.empty() ? default_model_path() : o.generation.model_path;
  auto model = Model::load(model_path);
  const Tokenizer& tokenizer = *model->tokenizer;
  ModelRunner runner(*model, runner_config);
  SchedulerConfig scheduler_config;
  scheduler_config.max_seqs = o.max_seqs;
  scheduler_config.max_batch_tokens = o.max_batch_tokens;
  scheduler_config.layout = layout;
  scheduler_config.prefix_cache = o.prefix_cache == "on" && layout == KvLayout::Paged;
  Scheduler scheduler(runner, &tokenizer, scheduler_config);

  const auto start = Clock::now();
  PromptBuilder prompts(tokenizer, !o.no_bos, o.chat_template, model->config.traits->fallback_chat_template);
  for (size_t i : to_generate) {
    const RequestLine& line = lines[i];
    GenerationRequest request;
    request.id = static_cast<int64_t>(i);
    request.max_tokens = line.max_tokens.value_or(o.max_tokens);
    request.n = line.n;
    request.sampling = sampling_for(line, default_sampling);
    request.stop = line.stop;
    request.ignore_eos = o.ignore_eos;
    try {
      request.prompt = prompts.tokens(line);
    } catch (const std::exception& e) {  // a template or tokenizer failure stays with its line
      warnings.bad_line(line.line, e.what());
      writer.put(i, error_record(line, e.what()));
      totals.errors += 1;
      continue;
    }
    scheduler.submit(std::move(request));
  }

  const bool show_progress = o.progress == "on" || (o.progress == "auto" && ::isatty(fileno(stderr)) != 0);
  ProgressBar progress(show_progress);
  size_t done = totals.errors + totals.resumed;
  auto collect = [&] {
    for (RequestResult& result : scheduler.take_finished()) {
      const auto index = static_cast<size_t>(result.id);
      if (!result.error.empty()) {
        totals.errors += 1;
        if (!show_progress) warnings.bad_line(lines[index].line, result.error);
      } else {
        totals.ok += 1;
      }
      writer.put(index, stable(result_record(lines[index], result)));
      ++done;
    }
  };
  collect();
  {
    // Ctrl-C or a SIGTERM (a scheduler taking the machine back) ends the run after the current step, saying where
    // the results so far are; every finished record is already on disk.
    const StopSignals stop_signals;
    scheduler.run_until_idle([&] {
      collect();
      progress.update(done, lines.size(), scheduler.stats().sampled_tokens, seconds_since(start), scheduler);
      if (const int signal = StopSignals::received(); signal != 0) {
        progress.finish();
        throw ExitError(fmt::format("interrupted by {}: {} of {} records are in {}; run the same command with "
                                    "--resume to continue", signal == SIGINT ? "SIGINT" : "SIGTERM", writer.written(),
                                    lines.size(),
                                    writer.direct() ? o.output : ResultWriter::partial_path(o.output)),
                        128 + signal);
      }
    });
  }
  collect();
  totals.seconds = seconds_since(start);
  progress.update(done, lines.size(), scheduler.stats().sampled_tokens, totals.seconds, scheduler, true);
  progress.finish();
  writer.commit();
  if (scheduler.stats().cache_full_samples > 0) {
    fmt::print(stderr, "warning: {} samples stopped when the whole KV cache was full ({} blocks of {} tokens, less than "
               "the context of {}); their finish_reason is kv_cache_full: raise --kv-mem\n",
               scheduler.stats().cache_full_samples, runner.num_blocks(), runner.block_size(), runner.n_ctx());
  }

  if (o.stats == "none") return;
  const RunnerCounters& counters = runner.counters();
  RunTimings timings;
  timings.prompt_tokens = counters.prefill_tokens;
  timings.prompt_seconds = counters.prefill_seconds;
  timings.generated_tokens = scheduler.stats().generated_tokens;
  timings.generation_seconds = counters.decode_seconds;
  const StatsReport report = make_stats_report(runner, scheduler.cache().stats(), timings);
  if (o.stats == "json") {
    fmt::print(stderr, "{}\n", summary_json(o, totals, scheduler, report).dump());
  } else {
    fmt::print(stderr, "{}", summary_text(o, totals, scheduler, report));
  }
}

}  // namespace

void add_batch_command(CLI::App& app) {
  auto o = std::make_shared<BatchOptions>();
  CLI::App* cmd = app.add_subcommand("batch", "Generate for every request of a JSONL (or text) file with continuous "
                                              "batching over the paged KV cache");
  add_generation_flags(*cmd, o->generation);
  cmd->add_option("-i,--input", o->input, "Requests: JSONL ({\"id\", \"prompt\" or \"messages\", options}) or text "
                                          "(one prompt per line); a line may be at most " +
                                          byte_limit_text(kMaxRequestLineBytes) + " (required)");
  cmd->add_option("-o,--output", o->output, "Results, JSONL in input order (written as <output>.partial, renamed "
                                            "when complete) (required)");
  cmd->add_option("--format", o->format, "Input format: jsonl or text")->capture_default_str();
  cmd->add_option("-n,--max-tokens", o->max_tokens, "Tokens to generate per sample unless a request says "
                                                    "max_tokens")->capture_default_str();
  cmd->add_option("--max-seqs", o->max_seqs, "Sequences holding K/V at once")->capture_default_str();
  cmd->add_option("--max-batch-tokens", o->max_batch_tokens, "Tokens per forward (decodes first, prompt chunks "
                                                             "fill the rest)")->capture_default_str();
  cmd->add_option("--kv-layout", o->kv_layout, "paged, or contiguous (the baseline reserving a full context per "
                                               "sequence)")->capture_default_str();
  auto* prefix = cmd->add_option("--prefix-cache", o->prefix_cache, "Reuse cached K/V blocks of shared prompt "
                                                                    "prefixes: on or off")->capture_default_str();
  cmd->add_option("--progress", o->progress, "Progress bar on stderr: auto (when it is a terminal), on, off")
      ->capture_default_str();
  cmd->add_option("--stats", o->stats, "Summary on stderr: text, json or none")->capture_default_str();
  cmd->add_flag("--resume", o->resume, "Skip requests whose ids an earlier run's output (or its .partial file) "
                                       "already completed");
  cmd->add_flag("--ignore-eos", o->ignore_eos, "Keep generating past end-of-generation tokens");
  cmd->add_flag("--no-bos", o->no_bos, "Do not add the model's BOS token to prompts");
  cmd->add_option("--chat-template", o->chat_template, "Built-in chat template for \"messages\" requests (chatml, "
                                                       "llama2, llama3, mistral, gemma, phi3, zephyr) instead of the "
                                                       "model's own");
  cmd->add_option("--shard", o->shard, "Take shard I of N (I/N, from 0): the requests at positions "
                                       "floor(I*M/N)..floor((I+1)*M/N)-1 of the file's M; the output starts with a "
                                       "header line for `batch merge`. Without it, a Slurm job array "
                                       "(SLURM_ARRAY_TASK_ID) or Kubernetes Indexed Job (JOB_COMPLETION_INDEX with "
                                       "--shard-count) chooses; 'off' ignores them");
  cmd->add_option("--shard-count", o->shard_count, "Shards in all, for JOB_COMPLETION_INDEX (the Indexed Job's "
                                                  "completions)");
  cmd->add_flag("--stable-records", o->stable_records, "Leave latency_s, queue_s and preemptions out of the records "
                                                       "(they depend on when and beside what a request ran), so "
                                                       "that runs of the same requests compare byte for byte");
  // -i and -o are required of a batch run but not of `batch merge`, which CLI11's required() cannot say: checked
  // here, with CLI11's own error (and exit code) for a missing option.
  CLI::App* merge = add_batch_merge_command(*cmd, [o] {
    if (!o->input.empty() || !o->output.empty()) {
      fail("batch merge: -i and -o before merge belong to a batch run; give the merged file after it "
           "(batch merge -o RESULTS SHARD...)");
    }
  });
  cmd->callback([o, prefix, merge] {
    if (merge->parsed()) return;
    if (o->input.empty()) throw CLI::RequiredError("--input");
    if (o->output.empty()) throw CLI::RequiredError("--output");
    o->prefix_cache_given = prefix->count() > 0;
    run_batch(*o);
  });
}

}  // namespace pagedllm::cli
