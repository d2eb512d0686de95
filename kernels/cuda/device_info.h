#pragma once
// The GPUs the CUDA runtime sees. Implemented by device_info.cu when the CUDA backend is compiled in, and by
// no_cuda.cpp otherwise.
#include <cstdint>
#include <string>
#include <vector>

#include "common/gpu_device.h"

namespace pagedllm {

bool cuda_compiled_in();
// Devices visible to the CUDA runtime; empty with `why_none` set when there are none (or no CUDA build).
std::vector<GpuDeviceInfo> query_cuda_devices(std::string& why_none);

}  // namespace pagedllm
