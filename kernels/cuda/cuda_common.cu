// The out-of-line halves of cuda_common.cuh: error messages and allocations.
#include "common/error.h"
#include "kernels/cuda/cuda_common.cuh"

#include <atomic>

namespace pagedllm::cuda {

namespace {
std::atomic<uint64_t> g_buffer_allocations{0};
}  // namespace

uint64_t buffer_allocations() { return g_buffer_allocations.load(); }

void throw_cuda_error(cudaError_t status, const char* what, const char* file, int line) {
  const char* message = cudaGetErrorString(status);
  // A failed launch or allocation leaves the error as "last error"; clear it so the next check reports its own.
  cudaGetLastError();
  throw Error(fmt::format("CUDA error in {} ({}:{}): {}", what, file, line, message));
}

void DeviceBuffer::allocate(size_t bytes) {
  release();
  if (bytes == 0) return;
  void* data = nullptr;
  const cudaError_t status = cudaMalloc(&data, bytes);
  if (status != cudaSuccess) {
    cudaGetLastError();
    size_t free_bytes = 0, total_bytes = 0;
    cudaMemGetInfo(&free_bytes, &total_bytes);
    throw Error(fmt::format("cannot allocate {:.1f} MiB of GPU memory ({:.1f} MiB free of {:.1f} MiB): {}",
                            static_cast<double>(bytes) / (1 << 20), static_cast<double>(free_bytes) / (1 << 20),
                            static_cast<double>(total_bytes) / (1 << 20), cudaGetErrorString(status)));
  }
  data_ = data;
  bytes_ = bytes;
  g_buffer_allocations.fetch_add(1);
}

void PinnedBuffer::reserve(size_t bytes) {
  if (bytes <= bytes_) return;
  if (bytes < 2 * bytes_) bytes = 2 * bytes_;
  release();
  void* data = nullptr;
  const cudaError_t status = cudaMallocHost(&data, bytes);
  if (status != cudaSuccess) {
    cudaGetLastError();
    throw Error(fmt::format("cannot allocate {:.1f} MiB of pinned host memory: {}",
                            static_cast<double>(bytes) / (1 << 20), cudaGetErrorString(status)));
  }
  data_ = data;
  bytes_ = bytes;
  g_buffer_allocations.fetch_add(1);
}

}  // namespace pagedllm::cuda
