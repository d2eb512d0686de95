#pragma once
// Which device runs the forward: the CLI resolves `--device cpu|cuda|auto` and lists the GPUs here.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/gpu_device.h"

namespace pagedllm {

enum class DeviceKind { Cpu, Cuda };

// Whether this build has the CUDA backend, and the devices it sees (empty, with `why_none` set, when none).
bool gpu_backend_compiled_in();
std::vector<GpuDeviceInfo> list_gpu_devices(std::string& why_none);

// True when CUDA is compiled in and at least one device answers.
bool cuda_device_available();

// "cpu", "cuda", or "auto" (cuda when a device is available, else cpu). Throws pagedllm::Error for any other text
// and, for "cuda", when no device is found: "--device cuda: no CUDA device found (<why>)".
DeviceKind resolve_device(std::string_view text);
// Throws that same error when no CUDA device is present.
void require_cuda_device();

}  // namespace pagedllm
