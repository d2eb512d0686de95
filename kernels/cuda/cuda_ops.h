#pragma once
// The CUDA kernels' host entry points: the same operations as kernels/cpu, on device pointers, enqueued on a
// stream. One file per operation family implements them (embedding.cu, rmsnorm.cu, rope.cu, swiglu.cu,
// kv_write.cu, gemv_quant.cu, gemm_cublas.cu, matmul.cu, flash_attention.cu, paged_attention.cu,
// naive_attention.cu, sampling.cu). Every pointer here is a device pointer unless its comment says "host".
//
// Compiled only when the CUDA backend is (PAGEDLLM_HAVE_CUDA); included by .cu files (C++17) and by host C++20
// code, so it sticks to C++17 and the runtime/cuBLAS C headers.
#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "kernels/common/rope.h"
#include "kernels/cuda/attention_plan.h"
#include "tensor/tensor_types.h"

namespace pagedllm::cuda {

// A weight matrix in device memory, in its GGUF format: n_rows rows of n_cols elements, row i at
// data + i * row_bytes. n_cols = input features (K), n_rows = output features (N).
struct DeviceMatrix {
  GgmlType type = GgmlType::F32;
  const uint8_t* data = nullptr;
  int64_t n_cols = 0;
  int64_t n_rows = 0;
  size_t row_bytes = 0;
};

// Types the device can dequantize (embedding rows, cuBLAS weight tiles): every type the CPU computes.
bool can_dequantize_on_device(GgmlType type);

// ---------------------------------------------------------------- embedding.cu
// out row i = row ids[i] of w, dequantized.  ids: [n] (checked on the host beforehand); out: [n, n_cols] f32.
void embedding_lookup(const DeviceMatrix& w, const int32_t* ids, int64_t n, float* out, cudaStream_t stream);
// Rows [row_begin, row_end) of w dequantized to f16 (bits). out: [row_end - row_begin, n_cols].
void dequantize_rows_f16(const DeviceMatrix& w, int64_t row_begin, int64_t row_end, uint16_t* out,
                         cudaStream_t stream);

// ---------------------------------------------------------------- rmsnorm.cu
// out[r] = x[r] / sqrt(mean(x[r]^2) + eps) * gain, the sum of squares accumulated in double as on the CPU.
// x, out: [n_rows, n]; gain: [n]. out may alias x.
void rms_norm(const float* x, const float* gain, float* out, int64_t n_rows, int64_t n, float eps,
              cudaStream_t stream);
// The residual add fused with the next sublayer's norm: x += y, then out = rms_norm(x) * gain.
// x, y, out: [n_rows, n].
void add_rms_norm(float* x, const float* y, const float* gain, float* out, int64_t n_rows, int64_t n, float eps,
                  cudaStream_t stream);
// out[i] = rms_norm(x[rows[i]]) * gain: the final norm of the rows whose logits are wanted.
// x: [*, n]; rows: [n_out]; out: [n_out, n].
void rms_norm_rows(const float* x, const int32_t* rows, int64_t n_out, const float* gain, float* out, int64_t n,
                   float eps, cudaStream_t stream);

// ---------------------------------------------------------------- rope.cu
// Rotates q and k in place, in one launch. q: [n_rows, n_head, head_dim]; k: [n_rows, n_head_kv, head_dim];
// positions: [n_rows]; freq_factors: [n_rot / 2] or nullptr. theta_scale = base^(-2 / n_rot) computed on the
// host exactly as the CPU kernel computes it, so both sides start from the same f32.
void rope_qk(float* q, float* k, const int32_t* positions, int64_t n_rows, int n_head, int n_head_kv,
             int head_dim, const RopeParams& params, float theta_scale, const float* freq_factors,
             cudaStream_t stream);

// ---------------------------------------------------------------- swiglu.cu
void swiglu(float* gate, const float* up, int64_t n, cudaStream_t stream);       // gate = silu(gate) * up
void geglu(float* gate, const float* up, int64_t n, cudaStream_t stream);        // gate = gelu_tanh(gate) * up
void scale(float* x, float factor, int64_t n, cudaStream_t stream);              // x *= factor
void add_in_place(float* x, const float* y, int64_t n, cudaStream_t stream);     // x += y
void add_bias(float* x, const float* bias, int64_t n_rows, int64_t n, cudaStream_t stream);  // x[r] += bias
// x[i] = f32(f16(x[i])): q before attention over an f16 cache, as the CPU rounds it. x: [n].
void round_through_f16(float* x, int64_t n, cudaStream_t stream);

// ---------------------------------------------------------------- kv_write.cu
// Stores the new tokens' K and V rows (rounded to f16) at their slots of one layer's pools.
// k, v: [n_tokens, slot_elements] f32; slot_mapping: [n_tokens]; pools: [num_blocks * block_size, slot_elements].
void kv_write(const float* k, const float* v, const int32_t* slot_mapping, int64_t n_tokens,
              int64_t slot_elements, uint16_t* k_pool, uint16_t* v_pool, cudaStream_t stream);
// Copies block `src` to block `dst` in each of `n_pools` pools laid out back to back (every layer's K and V):
// pools: [n_pools, pool_bytes]; a block is block_bytes at block * block_bytes inside each pool.
void copy_kv_block(uint8_t* pools, int n_pools, size_t pool_bytes, size_t block_bytes, int32_t src, int32_t dst,
                   cudaStream_t stream);

// ---------------------------------------------------------------- matrix products (matmul.cu dispatches)
// Activation rows up to which the fused dequantize-dot GEMV kernels run; more rows go to cuBLAS.
constexpr int kMaxGemvRows = 8;
// Bytes of dequantized weight rows one cuBLAS call works on (quantized types only).
constexpr size_t kWeightTileBytes = size_t{64} << 20;

struct MatmulWorkspace {
  void* activations = nullptr;   // converted activations; at least matmul_activation_bytes(M, K)
  size_t activation_bytes = 0;
  void* weight_tile = nullptr;   // dequantized weight rows for cuBLAS; at least kWeightTileBytes
  size_t weight_tile_bytes = 0;
  cublasHandle_t cublas = nullptr;
};
size_t matmul_activation_bytes(int64_t max_rows, int64_t max_cols);

// Whether a fused GEMV kernel exists for the weight type (else every product of that type goes through cuBLAS).
bool gemv_supports(GgmlType type);

// y_i = x · W_iᵀ for `count` (1..3) matrices that share the input: x: [M, K] f32; y_i: [M, N_i] f32.
// Up to `gemv_max_rows` rows (at most kMaxGemvRows) use the fused GEMV with llama.cpp's activation formats (the
// CPU's numerics); more rows, or a type without a GEMV, use cuBLAS on f16/bf16 (f32 for F32 weights).
void matmul(const DeviceMatrix* weights, float* const* outputs, int count, const float* x, int64_t M,
            const MatmulWorkspace& workspace, int gemv_max_rows, cudaStream_t stream);

// gemv_quant.cu: the fused kernels. `activations` were prepared by convert_activations_for_gemv for the type.
// All matrices share type and n_cols.
void convert_activations_for_gemv(GgmlType weight_type, const float* x, int64_t M, int64_t K, void* out,
                                  cudaStream_t stream);
size_t gemv_activation_row_bytes(GgmlType weight_type, int64_t K);
void gemv(const DeviceMatrix* weights, float* const* outputs, int count, const void* activations, int64_t M,
          cudaStream_t stream);

// gemm_cublas.cu: y = x · Wᵀ through cuBLAS with FP32 accumulation.
void gemm_cublas(const DeviceMatrix& w, const float* x, int64_t M, float* y, const MatmulWorkspace& workspace,
                 cudaStream_t stream);

// ---------------------------------------------------------------- attention
// DeviceSeq, FlashTile, DecodeWork and DecodeMerge: kernels/cuda/attention_plan.h.
struct AttentionLaunch {
  const float* q = nullptr;         // [n_tokens, n_head, head_dim]
  float* out = nullptr;             // [n_tokens, n_head, head_dim]
  const uint16_t* k_pool = nullptr; // [num_blocks, block_size, n_head_kv, head_dim] f16 bits
  const uint16_t* v_pool = nullptr; // [num_blocks, block_size, n_head_kv, head_dim] f16 bits
  const DeviceSeq* seqs = nullptr;  // [n_seqs]
  const int32_t* block_tables = nullptr;  // all sequences' tables back to back
  int n_head = 0;
  int n_head_kv = 0;
  int head_dim = 0;
  int block_size = 0;
  float scale = 1.0f;
  int window = 0;  // > 0: the row at position p sees keys p - window + 1 .. p only (sliding window)
};

// flash_attention.cu: prefill. `tiles` from plan_flash_tiles with the shape flash_tile_shape(...) gives for
// flash_kernel_rows(head_dim).
void flash_attention(const AttentionLaunch& args, const FlashTile* tiles, int n_tiles, int tokens_per_tile,
                     int heads_per_tile, cudaStream_t stream);
// paged_attention.cu: decode. partials: [n_partials, n_head, head_dim + 2] (unnormalised output, max, sum).
void paged_decode_attention(const AttentionLaunch& args, const DecodeWork* work, int n_work, int heads_per_item,
                            const DecodeMerge* merges, int n_merges, float* partials, cudaStream_t stream);
// naive_attention.cu: the baseline with the full score matrix in device memory. host_seqs: host copies of the
// DeviceSeq array; scores: [n_head, max n_new, max context_length] f32 (naive_attention_scores_bytes).
size_t naive_attention_scores_bytes(const DeviceSeq* host_seqs, int n_seqs, int n_head);
void naive_attention(const AttentionLaunch& args, const DeviceSeq* host_seqs, int n_seqs, float* scores,
                     cudaStream_t stream);

// ---------------------------------------------------------------- sampling.cu
// One row's sampling settings. temperature <= 0: greedy (the first maximum). Otherwise llama.cpp's chain without
// penalties: top_k (<= 0: off) -> top_p (>= 1: off) -> min_p (<= 0: off) -> temperature -> a draw with `uniform`
// in [0, 1) supplied by the host's RNG.
struct SamplingRow {
  float temperature;
  int32_t top_k;
  float top_p;
  float min_p;
  float uniform;
};
// tokens[r] = the token sampled from logits row r. logits: [n_rows, n_vocab]; rows: [n_rows]; tokens: [n_rows].
void sample_tokens(const float* logits, int64_t n_rows, int64_t n_vocab, const SamplingRow* rows, int32_t* tokens,
                   cudaStream_t stream);

}  // namespace pagedllm::cuda
