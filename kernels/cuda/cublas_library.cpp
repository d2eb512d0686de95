#include "kernels/cuda/cublas_library.h"

#include <dlfcn.h>

#include <mutex>
#include <string>

#include "common/error.h"

namespace pagedllm::cuda {

namespace {

template <typename Function>
void resolve(void* library, const char* symbol, const std::string& name, Function& out) {
  void* address = dlsym(library, symbol);
  if (address == nullptr) fail("{} has no symbol {} (a cuBLAS of another major version?)", name, symbol);
  out = reinterpret_cast<Function>(address);
}

CublasLibrary load() {
  // The major version this program was compiled against: its functions and types are what the calls assume.
  const std::string name = "libcublas.so." + std::to_string(CUBLAS_VER_MAJOR);
  void* library = dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (library == nullptr) {
    const char* why = dlerror();
    fail("cannot load {}, which the CUDA backend needs: {}", name, why != nullptr ? why : "unknown error");
  }
  CublasLibrary l{};
  resolve(library, "cublasCreate_v2", name, l.create);
  resolve(library, "cublasDestroy_v2", name, l.destroy);
  resolve(library, "cublasSetMathMode", name, l.set_math_mode);
  resolve(library, "cublasSetStream_v2", name, l.set_stream);
  resolve(library, "cublasGemmEx", name, l.gemm_ex);
  return l;
}

}  // namespace

const CublasLibrary& cublas_library() {
  static std::once_flag once;
  static CublasLibrary library;
  std::call_once(once, [] { library = load(); });
  return library;
}

}  // namespace pagedllm::cuda
