#pragma once
// What every CUDA source shares: error checking that turns a failed runtime call into pagedllm::Error with the
// CUDA error string, an owning device buffer, and (in device code only) the warp reductions the kernels use.
//
// The host half of this header compiles with the ordinary C++ compiler too (engine/cuda_backend.cpp and the
// tests include it), so it uses only the runtime API's C declarations; the device half is behind __CUDACC__.
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <utility>

namespace pagedllm::cuda {

// Throws pagedllm::Error("CUDA error in <what> (<file>:<line>): <cudaGetErrorString>"). Defined in cuda_common.cu
// so that nvcc compiles fmt once, not in every kernel file.
[[noreturn]] void throw_cuda_error(cudaError_t status, const char* what, const char* file, int line);

inline void check_cuda(cudaError_t status, const char* what, const char* file, int line) {
  if (status != cudaSuccess) throw_cuda_error(status, what, file, line);
}

// Checks a runtime call; the text of the call names it in the message.
#define PAGEDLLM_CUDA_CHECK(call) ::pagedllm::cuda::check_cuda((call), #call, __FILE__, __LINE__)
// Checks the launch that just happened (bad configuration, too much shared memory, ...). Asynchronous faults
// surface at the next synchronizing call, which is checked too.
#define PAGEDLLM_CUDA_CHECK_LAUNCH(name) ::pagedllm::cuda::check_cuda(cudaGetLastError(), name, __FILE__, __LINE__)

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Device and pinned allocations made so far by this process (DeviceBuffer and PinnedBuffer): a test counts them
// across steady-state forwards, which must allocate nothing.
uint64_t buffer_allocations();

// An owning, untyped device allocation. Moving transfers ownership; the destructor frees without throwing.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t bytes) { allocate(bytes); }
  ~DeviceBuffer() { release(); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& other) noexcept
      : data_(std::exchange(other.data_, nullptr)), bytes_(std::exchange(other.bytes_, 0)) {}
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept {
    if (this != &other) {
      release();
      data_ = std::exchange(other.data_, nullptr);
      bytes_ = std::exchange(other.bytes_, 0);
    }
    return *this;
  }

  // Frees the old allocation first (contents are not kept). Throws pagedllm::Error when the device is out of
  // memory, naming the size.
  void allocate(size_t bytes);
  // Grows to at least `bytes`, geometrically (at least doubling), so that a batch growing step by step
  // reallocates (and synchronizes the device) a logarithmic number of times; contents are not kept. A no-op when
  // already large enough.
  void reserve(size_t bytes) {
    if (bytes > bytes_) allocate(bytes < 2 * bytes_ ? 2 * bytes_ : bytes);
  }
  void release() noexcept {
    if (data_ != nullptr) cudaFree(data_);
    data_ = nullptr;
    bytes_ = 0;
  }

  void* data() const { return data_; }
  template <typename T>
  T* as() const {
    return static_cast<T*>(data_);
  }
  size_t size_bytes() const { return bytes_; }

 private:
  void* data_ = nullptr;
  size_t bytes_ = 0;
};

// Page-locked host memory: the staging area of asynchronous uploads and downloads.
class PinnedBuffer {
 public:
  PinnedBuffer() = default;
  ~PinnedBuffer() { release(); }
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;

  void reserve(size_t bytes);  // grows geometrically, like DeviceBuffer::reserve; contents are not kept
  void release() noexcept {
    if (data_ != nullptr) cudaFreeHost(data_);
    data_ = nullptr;
    bytes_ = 0;
  }
  void* data() const { return data_; }
  template <typename T>
  T* as() const {
    return static_cast<T*>(data_);
  }
  size_t size_bytes() const { return bytes_; }

 private:
  void* data_ = nullptr;
  size_t bytes_ = 0;
};

}  // namespace pagedllm::cuda

#if defined(__CUDACC__)
namespace pagedllm::cuda {

constexpr unsigned kFullWarpMask = 0xffffffffu;

__device__ __forceinline__ float warp_sum(float value) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) value += __shfl_xor_sync(kFullWarpMask, value, offset);
  return value;
}

__device__ __forceinline__ float warp_max(float value) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) value = fmaxf(value, __shfl_xor_sync(kFullWarpMask, value, offset));
  return value;
}

__device__ __forceinline__ double warp_sum_double(double value) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) value += __shfl_xor_sync(kFullWarpMask, value, offset);
  return value;
}

}  // namespace pagedllm::cuda
#endif
