#pragma once
// What `pagedllm info --devices` and the bandwidth statistics know about the GPUs. Implemented by
// device_info.cu when the CUDA backend is compiled in, and by no_cuda.cpp otherwise.
#include <cstdint>
#include <string>
#include <vector>

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

bool cuda_compiled_in();
// Devices visible to the CUDA runtime; empty with `why_none` set when there are none (or no CUDA build).
std::vector<GpuDeviceInfo> query_cuda_devices(std::string& why_none);

}  // namespace pagedllm
