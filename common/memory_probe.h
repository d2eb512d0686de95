#pragma once
// The CPU's achievable memory bandwidth, the denominator of "% of peak" in the statistics: measured once by a
// short multi-threaded streaming read and cached in ~/.cache/pagedllm/ (keyed by CPU model and thread count).
#include <string>

namespace pagedllm {

class ThreadPool;

struct MemoryBandwidth {
  double gb_per_s = 0.0;  // bytes read per second / 1e9
  bool from_cache = false;
  std::string cache_path;
};

// Reads the cached figure or measures it (about a quarter of a second) and caches it. Never throws: when the
// cache cannot be written the figure is still returned.
MemoryBandwidth cpu_memory_bandwidth(ThreadPool& pool);

// Measures without the cache.
double measure_cpu_memory_bandwidth(ThreadPool& pool);

}  // namespace pagedllm
