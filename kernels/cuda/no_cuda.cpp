// Built instead of the CUDA sources when nvcc is absent: the backend reports itself as not compiled in.
#include "kernels/cuda/device_info.h"

namespace pagedllm {

bool cuda_compiled_in() { return false; }

std::vector<GpuDeviceInfo> query_cuda_devices(std::string& why_none) {
  why_none = "this pagedllm was built without CUDA (nvcc was not found at configure time)";
  return {};
}

}  // namespace pagedllm
