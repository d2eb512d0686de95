#include "engine/benchmark.h"

#include <random>

#include "common/error.h"

namespace pagedllm {

namespace {

// Discards what the benchmark's requests produce; notes a failure.
class DiscardSink : public TokenSink {
 public:
  void on_finish(RequestResult result) override {
    if (!result.error.empty() && error.empty()) error = result.error;
  }
  std::string error;
};

}  // namespace

Benchmark::Benchmark(const Model& model, const RunnerConfig& runner, const SchedulerConfig& scheduler)
    : model_(model) {
  runner_ = std::make_unique<ModelRunner>(model, runner);
  scheduler_ = std::make_unique<Scheduler>(*runner_, model.tokenizer.get(), scheduler);
}

Benchmark::~Benchmark() = default;

BenchSample Benchmark::run_once(const BenchCase& c, uint64_t seed) {
  if (c.n_prompt < 0 || c.n_gen < 0 || c.n_depth < 0 || c.n_parallel < 1 || (c.n_prompt == 0 && c.n_gen == 0)) {
    fail("a benchmark case needs prompt or generated tokens (got -p {} -n {} -d {} -npl {})", c.n_prompt, c.n_gen,
         c.n_depth, c.n_parallel);
  }
  std::mt19937_64 rng(seed);
  const auto n_vocab = static_cast<int32_t>(model_.config.n_vocab);
  std::uniform_int_distribution<int32_t> random_token(0, n_vocab - 1);
  const int32_t bos = model_.tokenizer->bos_id();
  auto random_tokens = [&](int n, bool with_bos) {
    std::vector<int32_t> tokens(static_cast<size_t>(n));
    for (int32_t& t : tokens) t = random_token(rng);
    if (with_bos && bos >= 0 && n > 0) tokens[0] = bos;
    return tokens;
  };
  DiscardSink sink;
  GenerationRequest base;
  base.sampling.temperature = 0.0f;  // greedy: sampling costs next to nothing and the same every time
  base.ignore_eos = true;

  // The depth: each sequence's context, computed first and kept in its session.
  std::vector<SessionId> sessions;
  std::vector<std::vector<int32_t>> contexts;
  for (int s = 0; s < c.n_parallel; ++s) {
    sessions.push_back(scheduler_->open_session());
    contexts.push_back(random_tokens(c.n_depth, true));
    if (c.n_depth == 0) continue;
    GenerationRequest setup = base;
    setup.id = s;
    setup.prompt = contexts.back();
    setup.max_tokens = 1;
    setup.session = sessions.back();
    scheduler_->submit(std::move(setup), &sink);
  }
  scheduler_->run_until_idle();
  if (!sink.error.empty()) fail("benchmark: {}", sink.error);

  // The measured part: n_prompt new tokens (or one, for a pure generation test) on top of the depth, then n_gen
  // generated tokens: the prompt's forwards plus one forward per generated token after the first, as llama-bench
  // counts n_gen decodes after its prompt (the first token it feeds counts for a pure generation test).
  const RunnerCounters before = runner_->counters();
  for (int s = 0; s < c.n_parallel; ++s) {
    GenerationRequest measured = base;
    measured.id = c.n_parallel + s;
    measured.prompt = contexts[static_cast<size_t>(s)];
    const std::vector<int32_t> fresh = random_tokens(std::max(c.n_prompt, 1), c.n_depth == 0);
    measured.prompt.insert(measured.prompt.end(), fresh.begin(), fresh.end());
    measured.max_tokens = c.n_prompt == 0 ? c.n_gen : c.n_gen + 1;
    measured.session = sessions[static_cast<size_t>(s)];
    scheduler_->submit(std::move(measured), &sink);
  }
  scheduler_->run_until_idle();
  if (!sink.error.empty()) fail("benchmark: {}", sink.error);
  const RunnerCounters& after = runner_->counters();
  for (SessionId session : sessions) scheduler_->close_session(session);

  BenchSample sample;
  sample.seconds = (after.prefill_seconds - before.prefill_seconds) + (after.decode_seconds - before.decode_seconds);
  sample.tokens = (after.prefill_tokens - before.prefill_tokens) + (after.decode_tokens - before.decode_tokens);
  sample.bytes = (after.prefill_bytes - before.prefill_bytes) +
                 (after.decode_weight_bytes - before.decode_weight_bytes) +
                 (after.decode_kv_bytes - before.decode_kv_bytes);
  sample.kv_bytes = (after.prefill_kv_bytes - before.prefill_kv_bytes) +
                    (after.decode_kv_bytes - before.decode_kv_bytes);
  sample.flops = (after.prefill_flops - before.prefill_flops) + (after.decode_flops - before.decode_flops);
  sample.decode_steps = after.decode_steps - before.decode_steps;
  return sample;
}

BenchMeasurement Benchmark::measure(const BenchCase& c, int repetitions, uint64_t seed,
                                    const std::function<void(int, int)>& after_repetition) {
  if (repetitions < 1) fail("-r {}: at least one repetition", repetitions);
  const int64_t needed = static_cast<int64_t>(c.n_depth) + std::max(c.n_prompt, 1) + c.n_gen + 1;
  if (needed > scheduler_->max_sequence_tokens()) {
    fail("the test (depth {}, prompt {}, {} generated) needs {} tokens per sequence, more than the {} a sequence may "
         "hold here", c.n_depth, c.n_prompt, c.n_gen, needed, scheduler_->max_sequence_tokens());
  }
  run_once(c, seed);  // warm-up: caches, page faults, thread start-up
  if (after_repetition) after_repetition(0, repetitions);
  BenchMeasurement m;
  for (int r = 0; r < repetitions; ++r) {
    m.samples.push_back(run_once(c, seed + 1 + static_cast<uint64_t>(r)));
    if (after_repetition) after_repetition(r + 1, repetitions);
  }
  m.cache = scheduler_->cache_at_last_step();
  return m;
}

}  // namespace pagedllm
