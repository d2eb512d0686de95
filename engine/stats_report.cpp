#include "engine/stats_report.h"

#include <fmt/format.h>

#include "common/timing.h"


namespace pagedllm {
namespace {

std::string mib(uint64_t bytes) { return fmt::format("{:.2f} MiB", static_cast<double>(bytes) / (1024.0 * 1024.0)); }

}  // namespace

double StatsReport::bytes_per_generated_token() const {
  if (counters.decode_tokens == 0) return 0.0;
  return static_cast<double>(counters.decode_weight_bytes + counters.decode_kv_bytes) /
         static_cast<double>(counters.decode_tokens);
}

double StatsReport::achieved_gb_s() const {
  return per_second(static_cast<double>(counters.decode_weight_bytes + counters.decode_kv_bytes) / 1e9,
                    counters.decode_seconds);
}

std::string StatsReport::to_text() const {
  std::string s;
  const RunTimings& t = timings;
  s += fmt::format("time:      prompt {} tokens in {:.3f} s ({:.1f} tokens/s); generated {} tokens in {:.3f} s "
                   "({:.1f} tokens/s); time to first token {:.3f} s\n",
                   t.prompt_tokens, t.prompt_seconds, per_second(static_cast<double>(t.prompt_tokens), t.prompt_seconds),
                   t.generated_tokens, t.generation_seconds,
                   per_second(static_cast<double>(t.generated_tokens), t.generation_seconds), t.time_to_first_token);
  const CacheStats& c = cache;
  s += fmt::format("cache:     block size {}; blocks used {}/{} (peak {}); tokens stored {} (logical {}); wasted "
                   "slots {} ({:.1f}%); shared blocks {}; copy-on-write copies {}; K/V pools {} ({}, {} bytes per "
                   "token)\n",
                   c.block_size, c.blocks_used, c.blocks_total, c.peak_blocks_used, c.tokens_stored, c.tokens_logical,
                   c.slots_wasted, c.waste_percent(), c.blocks_shared, c.cow_copies, mib(kv_pool_bytes), kv_type,
                   kv_bytes_per_token);
  if (c.prefix_queries > 0) {
    s += fmt::format("prefix:    {} of {} prompt blocks reused ({:.1f}%), {} tokens not recomputed\n", c.prefix_hits,
                     c.prefix_queries, 100.0 * c.prefix_hit_rate(), c.prefix_hit_tokens);
  }
  if (counters.decode_tokens > 0) {
    const double achieved = achieved_gb_s();
    const std::string against_peak =
        peak_gb_s > 0 ? fmt::format("= {:.1f}% of {:.2f} GB/s peak ({}", 100.0 * achieved / peak_gb_s, peak_gb_s,
                                    peak_source)
                      : fmt::format("(peak {}", peak_source);
    s += fmt::format("bandwidth: {:.2f} MB read per generated token (weights {:.2f} MB per step + K/V {:.3f} MB per "
                     "token avg); {:.2f} GB/s achieved {}, {}, {} threads)\n",
                     bytes_per_generated_token() / 1e6, static_cast<double>(weight_bytes_per_step) / 1e6,
                     static_cast<double>(counters.decode_kv_bytes) / 1e6 / static_cast<double>(counters.decode_tokens),
                     achieved, against_peak, backend, n_threads);
  } else {
    s += "bandwidth: no decode steps ran\n";
  }
  return s;
}

nlohmann::json StatsReport::to_json() const {
  const RunTimings& t = timings;
  const CacheStats& c = cache;
  return {
      {"time", {{"prompt_tokens", t.prompt_tokens}, {"prompt_seconds", t.prompt_seconds},
                {"prompt_tokens_per_s", per_second(static_cast<double>(t.prompt_tokens), t.prompt_seconds)},
                {"generated_tokens", t.generated_tokens}, {"generation_seconds", t.generation_seconds},
                {"generation_tokens_per_s", per_second(static_cast<double>(t.generated_tokens), t.generation_seconds)},
                {"time_to_first_token_s", t.time_to_first_token}}},
      {"cache", {{"block_size", c.block_size}, {"blocks_total", c.blocks_total}, {"blocks_used", c.blocks_used},
                 {"blocks_free", c.blocks_free}, {"peak_blocks_used", c.peak_blocks_used},
                 {"tokens_stored", c.tokens_stored}, {"tokens_logical", c.tokens_logical},
                 {"slots_wasted", c.slots_wasted}, {"waste_percent", c.waste_percent()},
                 {"blocks_shared", c.blocks_shared}, {"cow_copies", c.cow_copies},
                 {"prefix_queries", c.prefix_queries}, {"prefix_hits", c.prefix_hits},
                 {"prefix_hit_tokens", c.prefix_hit_tokens}, {"kv_pool_bytes", kv_pool_bytes},
                 {"kv_type", kv_type}}},
      {"bandwidth", {{"bytes_per_generated_token", bytes_per_generated_token()},
                     {"weight_bytes_per_step", weight_bytes_per_step}, {"kv_bytes_per_token", kv_bytes_per_token},
                     {"achieved_gb_s", achieved_gb_s()}, {"peak_gb_s", peak_gb_s},
                     {"percent_of_peak", peak_gb_s > 0 ? nlohmann::json(100.0 * achieved_gb_s() / peak_gb_s)
                                                       : nlohmann::json(nullptr)},
                     {"peak_source", peak_source}}},
      {"backend", backend},
      {"threads", n_threads},
  };
}

StatsReport make_stats_report(ModelRunner& runner, const CacheStats& cache, const RunTimings& timings) {
  StatsReport r;
  r.timings = timings;
  r.cache = cache;
  r.counters = runner.counters();
  r.weight_bytes_per_step = runner.model().weights.bytes_per_step;
  r.kv_bytes_per_token = runner.kv_bytes_per_token();
  r.kv_pool_bytes = runner.kv_pool_bytes();
  r.kv_type = std::string(kv_dtype_name(runner.config().kv_dtype));
  r.backend = runner.backend_name();
  r.n_threads = runner.n_threads();
  const MachinePeaks peaks = runner.peaks(/*with_compute=*/false);
  r.peak_gb_s = peaks.bandwidth_gb_s;
  r.peak_source = peaks.bandwidth_source;
  return r;
}

}  // namespace pagedllm
