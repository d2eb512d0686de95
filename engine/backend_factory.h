#pragma once
// Which backend runs the forward, and building it. The CLI resolves `--device cpu|cuda|auto` here; the engine
// asks make_backend for the chosen one.
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/gpu_device.h"
#include "engine/backend.h"
#include "model_loader/model_weights.h"
#include "tensor/kv_dtype.h"

namespace pagedllm {

enum class DeviceKind { Cpu, Cuda };

std::string_view device_kind_name(DeviceKind kind);

// Whether this build has the CUDA backend, and the devices it sees (empty, with `why_none` set, when none).
bool gpu_backend_compiled_in();
std::vector<GpuDeviceInfo> list_gpu_devices(std::string& why_none);

// True when CUDA is compiled in and at least one device answers.
bool cuda_device_available();

// "cpu", "cuda", or "auto" (cuda when a device is available, else cpu). Throws pagedllm::Error for any other text
// and, for "cuda", when no device is found: "--device cuda: no CUDA device found (<why>)".
DeviceKind resolve_device(std::string_view text);

// The backend for `kind`; Error as in resolve_device when CUDA is asked for but absent.
std::unique_ptr<Backend> make_backend(DeviceKind kind, const ModelConfig& config, const LlamaWeights& weights,
                                      int num_blocks, int block_size, KvDtype kv_dtype, int n_threads);

// The K/V budget `--gpu-mem-fraction F` means: F of the device memory that is free once the weights are loaded,
// less `reserve_bytes` for activations and cuBLAS workspaces. 0 when that leaves nothing. Throws Error for F
// outside (0, 1] or when there is no device.
uint64_t gpu_kv_budget_bytes(double fraction, uint64_t weight_bytes, uint64_t reserve_bytes = uint64_t{1} << 30);

}  // namespace pagedllm
