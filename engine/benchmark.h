#pragma once
// Measuring the engine the way llama-bench measures llama.cpp, through the scheduler like every other command:
// a prompt of n_prompt tokens (pp), n_gen generated tokens (tg), or both (pg), after n_depth tokens already in the
// KV cache, for n_parallel sequences together. Each measurement repeats the case with fresh random tokens (so a
// prefix cache cannot short-cut it) after one unmeasured warm-up, and reports the forwards' time, the tokens they
// processed, and the bytes and arithmetic those forwards needed.
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "engine/kv_cache.h"
#include "engine/model.h"
#include "engine/model_runner.h"
#include "engine/scheduler.h"

namespace pagedllm {

struct BenchCase {
  int n_prompt = 0;    // prompt tokens measured (pp, pg)
  int n_gen = 0;       // generated tokens measured (tg, pg)
  int n_depth = 0;     // tokens already in the cache, computed before the measured part
  int n_parallel = 1;  // sequences doing the same work in the same forwards
};

// One repetition's measured forwards.
struct BenchSample {
  double seconds = 0;
  int64_t tokens = 0;       // over all sequences
  uint64_t bytes = 0;       // weights once per forward + each sequence's K/V once per forward
  uint64_t kv_bytes = 0;    // of those, the K/V (in the pool's element type: what --kv-type changes)
  double flops = 0;
  int64_t decode_steps = 0;
};

struct BenchMeasurement {
  std::vector<BenchSample> samples;  // [repetitions]
  CacheStats cache;                  // after the last measured forward
};

class Benchmark {
 public:
  // The runner config's context must hold n_depth + n_prompt + n_gen + 1 tokens, and its pool n_parallel of them,
  // for the cases measured (the caller sizes it; measure() says when it does not fit).
  Benchmark(const Model& model, const RunnerConfig& runner, const SchedulerConfig& scheduler);
  ~Benchmark();

  // `after_repetition(done, total)` is called after the warm-up (done 0) and after each repetition.
  BenchMeasurement measure(const BenchCase& bench_case, int repetitions, uint64_t seed,
                           const std::function<void(int, int)>& after_repetition = {});

  ModelRunner& runner() { return *runner_; }
  const Scheduler& scheduler() const { return *scheduler_; }

 private:
  BenchSample run_once(const BenchCase& bench_case, uint64_t seed);

  const Model& model_;
  std::unique_ptr<ModelRunner> runner_;
  std::unique_ptr<Scheduler> scheduler_;
};

}  // namespace pagedllm
