#include "engine/devices.h"

#include <string>
#include <vector>

#include "common/error.h"
#include "kernels/cuda/device_info.h"

namespace pagedllm {

bool gpu_backend_compiled_in() { return cuda_compiled_in(); }

std::vector<GpuDeviceInfo> list_gpu_devices(std::string& why_none) { return query_cuda_devices(why_none); }

bool cuda_device_available() {
  std::string why_none;
  return !query_cuda_devices(why_none).empty();
}

void require_cuda_device() {
  std::string why_none;
  if (query_cuda_devices(why_none).empty()) fail("--device cuda: no CUDA device found ({})", why_none);
}

DeviceKind resolve_device(std::string_view text) {
  if (text == "cpu") return DeviceKind::Cpu;
  if (text == "cuda") {
    require_cuda_device();
    return DeviceKind::Cuda;
  }
  if (text == "auto") return cuda_device_available() ? DeviceKind::Cuda : DeviceKind::Cpu;
  fail("--device '{}' is not a device (use cpu, cuda or auto)", text);
}

}  // namespace pagedllm
