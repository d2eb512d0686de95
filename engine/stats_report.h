#pragma once
// The statistics every generating command prints: time, cache, bandwidth (DESIGN.md "Statistics").
#include <string>

#include <nlohmann/json.hpp>

#include "engine/kv_cache.h"
#include "engine/model_runner.h"

namespace pagedllm {

struct RunTimings {
  int64_t prompt_tokens = 0;
  double prompt_seconds = 0;
  int64_t generated_tokens = 0;
  double generation_seconds = 0;
  double time_to_first_token = 0;  // seconds from the start of prefill to the first sampled token
};

struct StatsReport {
  RunTimings timings;
  CacheStats cache;
  RunnerCounters counters;
  uint64_t weight_bytes_per_step = 0;
  uint64_t kv_bytes_per_token = 0;
  uint64_t kv_pool_bytes = 0;
  std::string kv_type;            // the pools' element type (f16, f32, q8_0, q4_0)
  double peak_gb_s = 0;           // the device's peak (CPU: measured by the streaming probe)
  std::string peak_source;        // how the peak was obtained
  std::string backend;
  int n_threads = 0;

  // Bytes read per generated token (weights once per decode step shared by its tokens, plus K/V).
  double bytes_per_generated_token() const;
  double achieved_gb_s() const;    // decode bytes / decode time
  std::string to_text() const;
  nlohmann::json to_json() const;
};

// The report for what `runner` did, with the cache as `cache` describes it.
StatsReport make_stats_report(ModelRunner& runner, const CacheStats& cache, const RunTimings& timings);

}  // namespace pagedllm
