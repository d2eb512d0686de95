#include "common/memory_probe.h"

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "common/thread_pool.h"

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

std::filesystem::path cache_file() {
  const char* xdg = std::getenv("XDG_CACHE_HOME");
  const char* home = std::getenv("HOME");
  std::filesystem::path base = xdg && *xdg ? std::filesystem::path(xdg)
                               : home && *home ? std::filesystem::path(home) / ".cache"
                                               : std::filesystem::temp_directory_path();
  return base / "pagedllm" / "cpu_bandwidth.json";
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
  nlohmann::json cache = nlohmann::json::object();
  try {
    std::ifstream in(path);
    if (in) cache = nlohmann::json::parse(in);
    if (cache.is_object() && cache.contains(key) && cache[key].is_number() && cache[key].get<double>() > 0) {
      result.gb_per_s = cache[key].get<double>();
      result.from_cache = true;
      return result;
    }
  } catch (const std::exception&) {
    cache = nlohmann::json::object();  // a corrupt cache is remeasured and rewritten
  }
  result.gb_per_s = measure_cpu_memory_bandwidth(pool);
  try {
    std::filesystem::create_directories(path.parent_path());
    cache[key] = result.gb_per_s;
    const std::filesystem::path tmp = path.string() + ".tmp";
    {
      std::ofstream out(tmp);
      out << cache.dump(2) << "\n";
    }
    std::filesystem::rename(tmp, path);
  } catch (const std::exception&) {
    // Not being able to cache costs a quarter second next time; it is not an error.
  }
  return result;
}

}  // namespace pagedllm
