// `pagedllm run`: generate from one prompt (optionally K parallel samples sharing the prompt's blocks), streaming
// the text, then print time, cache and bandwidth statistics.
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
#include "engine/engine.h"
#include "engine/model.h"
#include "engine/sampler.h"
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
};

struct Sample {
  SeqId seq = 0;
  std::unique_ptr<Sampler> sampler;
  std::vector<int32_t> history;  // prompt + generated, for the repetition penalty
  std::vector<int32_t> generated;
  std::string text;
  std::unique_ptr<StreamingDetokenizer> detokenizer;
  std::string finish_reason;
  bool active = true;
};

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

void run_generation(const RunOptions& o) {
  if (o.n_predict == 0 || o.n_predict < -1) fail("-n {}: the number of tokens to generate must be positive (or -1 "
                                                 "for no limit)", o.n_predict);
  if (o.parallel < 1 || o.parallel > 256) fail("--parallel {} is out of range (1..256)", o.parallel);
  if (o.stats != "text" && o.stats != "json" && o.stats != "none") {
    fail("--stats '{}' is not one of text, json, none", o.stats);
  }
  if (o.batch_tokens < 1) fail("--batch-tokens {} must be positive", o.batch_tokens);
  const SamplingParams sampling = sampling_from_flags(o.generation);
  EngineConfig engine_config = engine_config_from_flags(o.generation);
  engine_config.n_seq_hint = o.parallel;

  const std::string prompt = o.prompt_file.empty() ? o.prompt : read_text_file(o.prompt_file);
  const std::string model_path = o.generation.model_path.empty() ? default_model_path() : o.generation.model_path;
  auto model = Model::load(model_path);
  const Tokenizer& tokenizer = *model->tokenizer;

  std::string text = prompt;
  bool add_bos = !o.no_bos;
  if (o.chat) {
    // One user turn (after an optional system prompt) rendered through the model's template, ready for the answer.
    const ChosenChatTemplate chosen = choose_chat_template(o.chat_template, tokenizer.chat_template());
    if (!chosen.notice.empty()) fmt::print(stderr, "notice: {}\n", chosen.notice);
    ChatTemplateInputs inputs;
    inputs.messages = nlohmann::ordered_json::array();
    if (!o.system_prompt.empty()) inputs.messages.push_back({{"role", "system"}, {"content", o.system_prompt}});
    inputs.messages.push_back({{"role", "user"}, {"content", prompt}});
    inputs.add_generation_prompt = true;
    const int32_t bos = tokenizer.bos_id(), eos = tokenizer.eos_id();
    inputs.bos_token = bos >= 0 ? tokenizer.token_text(bos) : "";
    inputs.eos_token = eos >= 0 ? tokenizer.token_text(eos) : "";
    text = render_chat_template(chosen.source, inputs);
    // Templates that write the BOS text themselves must not get a second one from the tokenizer.
    if (!inputs.bos_token.empty() && text.rfind(inputs.bos_token, 0) == 0) add_bos = false;
  } else if (!o.chat_template.empty() || !o.system_prompt.empty()) {
    fail("--chat-template and --system only apply with --chat");
  }
  std::vector<int32_t> prompt_tokens = tokenizer.encode(text, add_bos, o.chat || !o.no_parse_special);
  if (prompt_tokens.empty()) {
    fail("the prompt is empty and the model adds no BOS token: nothing to condition on");
  }
  Engine engine(*model, engine_config);
  const int n_ctx = engine.n_ctx();
  const auto n_prompt = static_cast<int>(prompt_tokens.size());
  if (n_prompt >= n_ctx) {
    fail("the prompt is {} tokens, which does not fit the context of {} tokens with room to generate (-c)",
         n_prompt, n_ctx);
  }
  KvCacheManager& cache = engine.cache();
  if (cache.blocks_for_tokens(n_prompt + 1) > cache.num_blocks()) {
    fail("--kv-mem holds {} blocks of {} tokens ({} tokens), too few for one sequence of the {}-token prompt plus "
         "one generated token", cache.num_blocks(), cache.block_size(),
         static_cast<int64_t>(cache.num_blocks()) * cache.block_size(), n_prompt);
  }

  // Prefill the prompt once, in chunks, into the first sequence.
  const auto start = Clock::now();
  std::vector<Sample> samples(static_cast<size_t>(o.parallel));
  samples[0].seq = cache.create_sequence();
  std::span<const float> logits;
  for (int begin = 0; begin < n_prompt; begin += o.batch_tokens) {
    const int end = std::min(n_prompt, begin + o.batch_tokens);
    const Engine::Work work{samples[0].seq,
                            std::span<const int32_t>(prompt_tokens).subspan(static_cast<size_t>(begin),
                                                                           static_cast<size_t>(end - begin)),
                            end == n_prompt};
    logits = engine.step(std::span<const Engine::Work>(&work, 1));
  }
  const double prompt_seconds = seconds_since(start);
  const std::vector<float> prompt_logits(logits.begin(), logits.end());  // shared by every sample's first draw

  // The K samples share the prompt's blocks; the first token each appends into a shared block copies it.
  for (size_t i = 0; i < samples.size(); ++i) {
    Sample& s = samples[i];
    if (i > 0) s.seq = cache.fork(samples[0].seq);
    SamplingParams params = sampling;
    if (params.seed != kRandomSeed) params.seed += i;  // distinct but reproducible streams
    s.sampler = std::make_unique<Sampler>(params);
    s.history = prompt_tokens;
    s.detokenizer = std::make_unique<StreamingDetokenizer>(tokenizer);
  }

  const bool stream = o.parallel == 1;
  double time_to_first_token = 0;
  const auto decode_start = Clock::now();
  auto accept = [&](Sample& s, int32_t token) {
    if (!o.ignore_eos && tokenizer.is_end_of_generation(token)) {
      s.active = false;
      s.finish_reason = "stop";
      return;
    }
    s.generated.push_back(token);
    s.history.push_back(token);
    const std::string piece = s.detokenizer->push(token);
    s.text += piece;
    if (stream && !piece.empty()) {
      std::fwrite(piece.data(), 1, piece.size(), stdout);
      std::fflush(stdout);
    }
    if (o.n_predict > 0 && static_cast<int>(s.generated.size()) >= o.n_predict) {
      s.active = false;
      s.finish_reason = "length";
    } else if (cache.context_length(s.seq) + 1 >= n_ctx) {
      s.active = false;
      s.finish_reason = "context";
    }
  };
  for (Sample& s : samples) accept(s, s.sampler->sample(prompt_logits, s.history));
  time_to_first_token = seconds_since(start);

  std::vector<Engine::Work> work;
  std::vector<Sample*> stepping;
  std::vector<int32_t> last_tokens(samples.size());
  while (true) {
    work.clear();
    stepping.clear();
    for (size_t i = 0; i < samples.size(); ++i) {
      Sample& s = samples[i];
      if (!s.active) continue;
      last_tokens[i] = s.generated.back();
      work.push_back(Engine::Work{s.seq, std::span<const int32_t>(&last_tokens[i], 1), true});
      stepping.push_back(&s);
    }
    if (work.empty()) break;
    // Out of K/V blocks (a small --kv-mem): stop the youngest samples until the rest fit.
    while (!work.empty() && engine.blocks_needed(work) > cache.free_blocks()) {
      stepping.back()->active = false;
      stepping.back()->finish_reason = "kv-cache-full";
      fmt::print(stderr, "\nnotice: the KV cache is full; sample stopped early (raise --kv-mem)\n");
      work.pop_back();
      stepping.pop_back();
    }
    if (work.empty()) break;
    logits = engine.step(work);
    const auto n_vocab = static_cast<size_t>(model->config.n_vocab);
    for (size_t i = 0; i < stepping.size(); ++i) {
      Sample& s = *stepping[i];
      accept(s, s.sampler->sample(logits.subspan(i * n_vocab, n_vocab), s.history));
    }
  }
  const double generation_seconds = seconds_since(decode_start);

  for (Sample& s : samples) {
    const std::string rest = s.detokenizer->flush();
    s.text += rest;
    if (stream) std::fwrite(rest.data(), 1, rest.size(), stdout);
  }
  if (stream) {
    std::fputc('\n', stdout);
  } else {
    for (size_t i = 0; i < samples.size(); ++i) {
      fmt::print("--- sample {} of {} ({} tokens, finish: {}) ---\n{}\n", i + 1, samples.size(),
                 samples[i].generated.size(), samples[i].finish_reason, samples[i].text);
    }
  }
  std::fflush(stdout);

  RunTimings timings;
  timings.prompt_tokens = n_prompt;
  timings.prompt_seconds = prompt_seconds;
  for (const Sample& s : samples) timings.generated_tokens += static_cast<int64_t>(s.generated.size());
  timings.generation_seconds = generation_seconds;
  timings.time_to_first_token = time_to_first_token;
  if (o.stats == "none") return;
  // Statistics describe the cache while every sample still holds its blocks.
  const StatsReport report = make_stats_report(engine, timings);
  if (o.stats == "json") {
    nlohmann::json out = report.to_json();
    out["samples"] = nlohmann::json::array();
    for (const Sample& s : samples) {
      out["samples"].push_back({{"tokens", s.generated.size()}, {"finish_reason", s.finish_reason}});
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
  cmd->callback([o] { run_generation(*o); });
}

}  // namespace pagedllm::cli
