#include "engine/backend_factory.h"

#include <string>
#include <vector>

#include "common/error.h"
#include "engine/cpu_backend.h"
#include "engine/cuda_backend.h"
#include "kernels/cuda/device_info.h"

namespace pagedllm {

std::string_view device_kind_name(DeviceKind kind) { return kind == DeviceKind::Cuda ? "cuda" : "cpu"; }

bool gpu_backend_compiled_in() { return cuda_compiled_in(); }

std::vector<GpuDeviceInfo> list_gpu_devices(std::string& why_none) { return query_cuda_devices(why_none); }

bool cuda_device_available() {
  std::string why_none;
  return !query_cuda_devices(why_none).empty();
}

namespace {

void require_cuda_device() {
  std::string why_none;
  if (query_cuda_devices(why_none).empty()) fail("--device cuda: no CUDA device found ({})", why_none);
}

}  // namespace

DeviceKind resolve_device(std::string_view text) {
  if (text == "cpu") return DeviceKind::Cpu;
  if (text == "cuda") {
    require_cuda_device();
    return DeviceKind::Cuda;
  }
  if (text == "auto") return cuda_device_available() ? DeviceKind::Cuda : DeviceKind::Cpu;
  fail("--device '{}' is not a device (use cpu, cuda or auto)", text);
}

std::unique_ptr<Backend> make_backend(DeviceKind kind, const ModelConfig& config, const LlamaWeights& weights,
                                      int num_blocks, int block_size, KvDtype kv_dtype, int n_threads) {
  if (kind == DeviceKind::Cuda) {
    require_cuda_device();
    return std::make_unique<CudaBackend>(config, weights, num_blocks, block_size, kv_dtype);
  }
  return std::make_unique<CpuBackend>(config, weights, num_blocks, block_size, kv_dtype, n_threads);
}

uint64_t gpu_kv_budget_bytes(double fraction, uint64_t weight_bytes, uint64_t reserve_bytes) {
  if (!(fraction > 0.0 && fraction <= 1.0)) fail("--gpu-mem-fraction {} must be in (0, 1]", fraction);
  std::string why_none;
  const std::vector<GpuDeviceInfo> devices = query_cuda_devices(why_none);
  if (devices.empty()) fail("--gpu-mem-fraction: no CUDA device found ({})", why_none);
  const uint64_t free_bytes = devices.front().free_memory_bytes;
  if (free_bytes <= weight_bytes) return 0;
  const auto usable = static_cast<uint64_t>(fraction * static_cast<double>(free_bytes - weight_bytes));
  return usable > reserve_bytes ? usable - reserve_bytes : 0;
}

}  // namespace pagedllm
