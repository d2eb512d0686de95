#pragma once
// PAGEDLLM_HD marks a function that both the host compiler and nvcc compile, for the CPU and for the GPU: the
// element-wise math that must give the same bits on both sides is written once with it.
#if defined(__CUDACC__)
#define PAGEDLLM_HD __host__ __device__
#else
#define PAGEDLLM_HD
#endif
