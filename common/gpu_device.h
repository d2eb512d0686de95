#pragma once
// What is known about one GPU: enough to choose it, size memory on it and state its peak bandwidth. Filled by the
// CUDA kernels' device query; plain data, so that every room can carry it.
#include <cstdint>
#include <string>

namespace pagedllm {

struct GpuDeviceInfo {
  int index = 0;
  std::string name;
  int compute_major = 0, compute_minor = 0;
  int multiprocessors = 0;
  uint64_t total_memory_bytes = 0;
  uint64_t free_memory_bytes = 0;
  int memory_bus_width_bits = 0;
  int memory_clock_khz = 0;
  double peak_bandwidth_gb_s = 0.0;  // 2 (DDR) * clock * bus width / 8, from the device properties
};

}  // namespace pagedllm
