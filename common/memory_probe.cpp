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
  // 64 MiB each way is far past any last-level cache on the machines this runs on, so the copy streams DRAM.
  constexpr size_t kBytes = size_t{64} << 20;
  std::vector<char> src(kBytes, 1), dst(kBytes, 0);
  const int64_t n_chunks = pool.size() * 16;
  const size_t chunk = kBytes / static_cast<size_t>(n_chunks);
  double best = 0.0;
  for (int repeat = 0; repeat < 4; ++repeat) {
    const auto start = std::chrono::steady_clock::now();
    pool.parallel_for(n_chunks, [&](int64_t begin, int64_t end, int) {
      for (int64_t i = begin; i < end; ++i) {
        std::memcpy(dst.data() + static_cast<size_t>(i) * chunk, src.data() + static_cast<size_t>(i) * chunk, chunk);
      }
    });
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (repeat > 0 && seconds > 0) {  // the first pass faults the pages in
      best = std::max(best, 2.0 * static_cast<double>(chunk * static_cast<size_t>(n_chunks)) / seconds / 1e9);
    }
  }
  return best;
}

MemoryBandwidth cpu_memory_bandwidth(ThreadPool& pool) {
  MemoryBandwidth result;
  const std::filesystem::path path = cache_file();
  result.cache_path = path.string();
  const std::string key = fmt::format("{} / {} threads", cpu_model_name(), pool.size());
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
