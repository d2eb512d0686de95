#pragma once
// The CPU's achievable memory bandwidth and arithmetic throughput, the denominators of "% of peak" in the
// statistics and benchmarks: each measured once by a short multi-threaded probe and cached in ~/.cache/pagedllm/
// (keyed by CPU model and thread count).
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

struct FmaThroughput {
  double gflop_per_s = 0.0;  // f32 multiply-adds counted as two operations
  std::string method;        // what the probe ran, e.g. "f32 FMA, 16-wide (AVX-512), 2 threads"
  bool from_cache = false;
};

// The f32 fused-multiply-add throughput of every thread of `pool` running independent chains of the widest FMA
// this build targets (AVX-512, AVX2 or scalar): the ceiling a matmul's arithmetic is measured against. Cached like
// the bandwidth; never throws.
FmaThroughput cpu_compute_peak(ThreadPool& pool);

}  // namespace pagedllm
