// Device query behind `pagedllm info --devices` and the GPU bandwidth roofline.
#include <cuda_runtime.h>

#include <fmt/format.h>

#include "kernels/cuda/device_info.h"

namespace pagedllm {

bool cuda_compiled_in() { return true; }

std::vector<GpuDeviceInfo> query_cuda_devices(std::string& why_none) {
  std::vector<GpuDeviceInfo> devices;
  int count = 0;
  cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) {
    why_none = fmt::format("no usable CUDA device: {}", cudaGetErrorString(status));
    cudaGetLastError();  // clear the sticky error so later calls start clean
    return devices;
  }
  if (count == 0) {
    why_none = "the CUDA runtime reports no device";
    return devices;
  }
  for (int i = 0; i < count; ++i) {
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, i) != cudaSuccess) continue;
    GpuDeviceInfo info;
    info.index = i;
    info.name = prop.name;
    info.compute_major = prop.major;
    info.compute_minor = prop.minor;
    info.multiprocessors = prop.multiProcessorCount;
    info.total_memory_bytes = prop.totalGlobalMem;
    int clock_khz = 0;
    int bus_width = 0;
    const bool clock_known = cudaDeviceGetAttribute(&clock_khz, cudaDevAttrMemoryClockRate, i) == cudaSuccess;
    const bool width_known = cudaDeviceGetAttribute(&bus_width, cudaDevAttrGlobalMemoryBusWidth, i) == cudaSuccess;
    if (!clock_known || !width_known) cudaGetLastError();  // a failed query must not surface at the next call
    info.memory_clock_khz = clock_known ? clock_khz : 0;
    info.memory_bus_width_bits = width_known ? bus_width : 0;
    // Double data rate: two transfers per clock. Zero when the device did not say (the reports then say "unknown"
    // rather than dividing by it).
    info.peak_bandwidth_gb_s = clock_known && width_known && clock_khz > 0 && bus_width > 0
                                   ? 2.0 * clock_khz * 1e3 * (bus_width / 8.0) / 1e9
                                   : 0.0;
    size_t free_bytes = 0, total_bytes = 0;
    if (cudaSetDevice(i) == cudaSuccess && cudaMemGetInfo(&free_bytes, &total_bytes) == cudaSuccess) {
      info.free_memory_bytes = free_bytes;
    }
    devices.push_back(info);
  }
  if (devices.empty()) why_none = "no CUDA device could be queried";
  return devices;
}

}  // namespace pagedllm
