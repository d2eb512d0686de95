#include "common/memory_probe.h"

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <fstream>
#include <sstream>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "common/thread_pool.h"

#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif

namespace pagedllm {
namespace {

std::string cpu_model_name() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line;
  while (std::getline(cpuinfo, line)) {
    if (line.rfind("model name", 0) == 0) {
      const auto colon = line.find(':');
      if (colon != std::string::npos) return line.substr(colon + 2);
    }
  }
  return "unknown cpu";
}

std::filesystem::path cache_file(const char* name = "cpu_bandwidth.json") {
  const char* xdg = std::getenv("XDG_CACHE_HOME");
  const char* home = std::getenv("HOME");
  std::filesystem::path base = xdg && *xdg ? std::filesystem::path(xdg)
                               : home && *home ? std::filesystem::path(home) / ".cache"
                                               : std::filesystem::temp_directory_path();
  return base / "pagedllm" / name;
}

// A probe's figure from the JSON cache file under `key` (one file holds every CPU model and thread count), or, when
// absent or the file is unreadable, measured and written back. Not being able to write the cache costs a quarter
// second next time; it is not an error.
double cached_probe(const std::filesystem::path& path, const std::string& key, const std::function<double()>& measure,
                    bool& from_cache) {
  nlohmann::json cache = nlohmann::json::object();
  try {
    std::ifstream in(path);
    if (in) cache = nlohmann::json::parse(in);
    if (cache.is_object() && cache.contains(key) && cache[key].is_number() && cache[key].get<double>() > 0) {
      from_cache = true;
      return cache[key].get<double>();
    }
  } catch (const std::exception&) {
    cache = nlohmann::json::object();  // a corrupt cache is remeasured and rewritten
  }
  if (!cache.is_object()) cache = nlohmann::json::object();
  const double value = measure();
  try {
    std::filesystem::create_directories(path.parent_path());
    cache[key] = value;
    const std::filesystem::path tmp = path.string() + ".tmp";
    {
      std::ofstream out(tmp);
      out << cache.dump(2) << "\n";
    }
    std::filesystem::rename(tmp, path);
  } catch (const std::exception&) {
  }
  return value;
}

}  // namespace

double measure_cpu_memory_bandwidth(ThreadPool& pool) {
  // Decode streams weights: a read-only pass over a buffer far larger than any last-level cache is the matching
  // ceiling (a copy would count writes the forward does not do). 256 MiB of 64-bit words, summed by every thread.
  constexpr size_t kWords = (size_t{256} << 20) / sizeof(uint64_t);
  std::vector<uint64_t> buffer(kWords);
  for (size_t i = 0; i < kWords; i += 512) buffer[i] = i;  // touch every page so the first pass is not page faults
  const int64_t n_chunks = pool.size() * 16;
  const size_t chunk = kWords / static_cast<size_t>(n_chunks);
  std::vector<uint64_t> sinks(static_cast<size_t>(pool.size()) * 8, 0);  // one cache line per thread
  double best = 0.0;
  for (int repeat = 0; repeat < 5; ++repeat) {
    const auto start = std::chrono::steady_clock::now();
    pool.parallel_for(n_chunks, [&](int64_t begin, int64_t end, int thread) {
      uint64_t sum = 0;
      for (int64_t c = begin; c < end; ++c) {
        const uint64_t* words = buffer.data() + static_cast<size_t>(c) * chunk;
        for (size_t i = 0; i < chunk; ++i) sum += words[i];
      }
      sinks[static_cast<size_t>(thread) * 8] += sum;
    });
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (seconds > 0) {
      best = std::max(best, static_cast<double>(chunk * static_cast<size_t>(n_chunks) * sizeof(uint64_t)) / seconds / 1e9);
    }
  }
  volatile uint64_t keep = 0;
  for (uint64_t v : sinks) keep = keep + v;  // the sums must look used, or the loop could be dropped
  return best;
}

MemoryBandwidth cpu_memory_bandwidth(ThreadPool& pool) {
  MemoryBandwidth result;
  const std::filesystem::path path = cache_file();
  result.cache_path = path.string();
  const std::string key = fmt::format("read v2: {} / {} threads", cpu_model_name(), pool.size());
  result.gb_per_s = cached_probe(path, key, [&] { return measure_cpu_memory_bandwidth(pool); }, result.from_cache);
  return result;
}

namespace {

// Independent FMA chains on one thread for `iterations` rounds; returns the f32 operations done.
double fma_chains(int64_t iterations, float seed, float* sink) {
#if defined(__AVX512F__)
  constexpr int kChains = 12;  // enough independent accumulators to cover the FMA latency on two ports
  __m512 acc[kChains];
  for (int c = 0; c < kChains; ++c) acc[c] = _mm512_set1_ps(seed + static_cast<float>(c));
  const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
  for (int64_t i = 0; i < iterations; ++i) {
    for (int c = 0; c < kChains; ++c) acc[c] = _mm512_fmadd_ps(acc[c], a, b);
  }
  __m512 total = acc[0];
  for (int c = 1; c < kChains; ++c) total = _mm512_add_ps(total, acc[c]);
  float lanes[16];
  _mm512_storeu_ps(lanes, total);
  for (float v : lanes) *sink += v;
  return 2.0 * 16.0 * kChains * static_cast<double>(iterations);
#elif defined(__AVX2__) && defined(__FMA__)
  constexpr int kChains = 10;
  __m256 acc[kChains];
  for (int c = 0; c < kChains; ++c) acc[c] = _mm256_set1_ps(seed + static_cast<float>(c));
  const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
  for (int64_t i = 0; i < iterations; ++i) {
    for (int c = 0; c < kChains; ++c) acc[c] = _mm256_fmadd_ps(acc[c], a, b);
  }
  float lanes[8];
  __m256 total = acc[0];
  for (int c = 1; c < kChains; ++c) total = _mm256_add_ps(total, acc[c]);
  _mm256_storeu_ps(lanes, total);
  for (float v : lanes) *sink += v;
  return 2.0 * 8.0 * kChains * static_cast<double>(iterations);
#else
  constexpr int kChains = 8;
  float acc[kChains];
  for (int c = 0; c < kChains; ++c) acc[c] = seed + static_cast<float>(c);
  for (int64_t i = 0; i < iterations; ++i) {
    for (int c = 0; c < kChains; ++c) acc[c] = acc[c] * 0.999999f + 1e-7f;
  }
  for (float v : acc) *sink += v;
  return 2.0 * kChains * static_cast<double>(iterations);
#endif
}

const char* fma_probe_name() {
#if defined(__AVX512F__)
  return "f32 FMA, 16-wide (AVX-512)";
#elif defined(__AVX2__) && defined(__FMA__)
  return "f32 FMA, 8-wide (AVX2)";
#else
  return "f32 multiply-add, scalar";
#endif
}

double measure_cpu_compute_peak(ThreadPool& pool) {
  const int n = pool.size();
  std::vector<float> sinks(static_cast<size_t>(n) * 16, 0.0f);  // one cache line per thread
  double best = 0.0;
  for (int repeat = 0; repeat < 3; ++repeat) {
    std::vector<double> operations(static_cast<size_t>(n), 0.0);
    const auto start = std::chrono::steady_clock::now();
    pool.parallel_for(n, [&](int64_t begin, int64_t end, int thread) {
      for (int64_t i = begin; i < end; ++i) {
        operations[static_cast<size_t>(thread)] +=
            fma_chains(2'000'000, static_cast<float>(i), &sinks[static_cast<size_t>(thread) * 16]);
      }
    });
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    double total = 0.0;
    for (double o : operations) total += o;
    if (seconds > 0) best = std::max(best, total / seconds / 1e9);
  }
  volatile float keep = 0.0f;
  for (float v : sinks) keep = keep + v;  // the chains must look used, or they could be dropped
  return best;
}

}  // namespace

FmaThroughput cpu_compute_peak(ThreadPool& pool) {
  FmaThroughput result;
  result.method = fmt::format("{}, {} threads", fma_probe_name(), pool.size());
  const std::filesystem::path path = cache_file("cpu_compute.json");
  const std::string key = fmt::format("fma v1: {} / {}", cpu_model_name(), result.method);
  result.gflop_per_s = cached_probe(path, key, [&] { return measure_cpu_compute_peak(pool); }, result.from_cache);
  return result;
}

}  // namespace pagedllm
