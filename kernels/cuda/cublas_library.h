#pragma once
// cuBLAS, loaded the first time a CUDA backend needs it rather than when the program starts. Loading libcublasLt
// alone takes about 200 MB of memory at once, which every command that never touches a GPU (info, tokenize,
// template, a --device cpu run) would otherwise pay. Only the handful of functions the backend calls are looked up.
#include <cublas_v2.h>
#include <cuda_runtime_api.h>

namespace pagedllm::cuda {

struct CublasLibrary {
  cublasStatus_t (*create)(cublasHandle_t* handle);
  cublasStatus_t (*destroy)(cublasHandle_t handle);
  cublasStatus_t (*set_math_mode)(cublasHandle_t handle, cublasMath_t mode);
  cublasStatus_t (*set_stream)(cublasHandle_t handle, cudaStream_t stream);
  cublasStatus_t (*gemm_ex)(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m, int n,
                            int k, const void* alpha, const void* a, cudaDataType a_type, int lda, const void* b,
                            cudaDataType b_type, int ldb, const void* beta, void* c, cudaDataType c_type, int ldc,
                            cublasComputeType_t compute_type, cublasGemmAlgo_t algo);
};

// The loaded library (loaded once, kept for the life of the process). Throws pagedllm::Error naming the library
// and the loader's message when it cannot be loaded.
const CublasLibrary& cublas_library();

}  // namespace pagedllm::cuda
