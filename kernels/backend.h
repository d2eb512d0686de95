#pragma once
// The operations contract: everything the model forward (engine/) asks of the hardware. kernels/cpu and
// kernels/cuda each implement it once; the forward is written once against it, so a new model family is added in
// one place and both devices get it, and the CPU-vs-CUDA tests compare these very operations.
//
// Memory spaces. Activations live in the backend's memory (host for the CPU, device for CUDA) and are only ever
// handed from one op to the next as pointers from buffer(); the forward never reads them. Weights are named by the
// host views the model loader made (a WeightMatrix, or the f32 pointer of a vector); a backend that keeps its own
// copies (CUDA) finds them by those views. Only read_to_host() brings numbers back.
//
// Paging. The K/V pools are [n_layer][K, V][num_blocks, block_size, n_head_kv, head_dim] of the geometry's element
// type, owned by the backend. A batch reaches them only through its slot mapping (where each new token's K/V is
// written) and each sequence's block table (what attention reads). The backend knows nothing of requests.
#include <cstddef>
#include <climits>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "kernels/common/rope.h"
#include "tensor/kv_dtype.h"
#include "tensor/weight_matrix.h"

namespace pagedllm {

class ThreadPool;

// A block the backend must copy (every layer, K and V) before the next forward reads or writes `dst`: the
// copy-on-write of a shared block. Copies run in the order given: a later one may overwrite an earlier's source.
struct BlockCopy {
  int32_t src;
  int32_t dst;
};

// One sequence's share of a batch, as attention sees it.
struct SeqView {
  int32_t first_row = 0;       // index of the sequence's first new token in ForwardBatch::tokens
  int32_t n_new = 0;           // new tokens this forward (a prompt chunk, or 1 when decoding)
  int32_t context_length = 0;  // tokens in the cache after this forward, the new ones included
  std::span<const int32_t> block_table;  // [>= ceil(context_length / block_size)] physical block ids
};

// Everything one forward reads, flat. Built by the scheduler; the model runner and the backend only read it.
struct ForwardBatch {
  std::vector<int32_t> tokens;        // [n_tokens] new tokens of all sequences, back to back
  std::vector<int32_t> positions;     // [n_tokens]
  std::vector<int32_t> slot_mapping;  // [n_tokens] block_id * block_size + offset of each new token's K/V
  std::vector<SeqView> seqs;          // [n_seqs]
  std::vector<int32_t> logit_rows;    // [n_logits] rows of `tokens` whose logits are wanted

  int32_t n_tokens() const { return static_cast<int32_t>(tokens.size()); }
  void clear() {
    tokens.clear();
    positions.clear();
    slot_mapping.clear();
    seqs.clear();
    logit_rows.clear();
  }
};

// The shape of the paged K/V pools.
struct KvGeometry {
  int n_layer = 0;
  int n_head_kv = 0;
  int head_dim = 0;
  int num_blocks = 0;
  int block_size = 0;
  KvDtype dtype = KvDtype::F16;

  // Bytes of one slot (one token) in one layer's K or V pool: a row of head_dim per KV head.
  size_t slot_bytes() const { return static_cast<size_t>(n_head_kv) * kv_row_bytes(dtype, head_dim); }
  // Bytes one block takes across all layers, K and V together.
  size_t block_bytes() const {
    return 2 * static_cast<size_t>(n_layer) * static_cast<size_t>(block_size) * slot_bytes();
  }
  size_t pool_bytes() const { return block_bytes() * static_cast<size_t>(num_blocks); }
};

// How many blocks of `shape` (its num_blocks ignored) fit in `budget_bytes`: 0 when not even one does.
inline int kv_blocks_for_budget(size_t budget_bytes, const KvGeometry& shape) {
  const size_t per_block = shape.block_bytes();
  if (per_block == 0) return 0;
  const size_t blocks = budget_bytes / per_block;
  return blocks > static_cast<size_t>(INT32_MAX) ? INT32_MAX : static_cast<int>(blocks);
}

struct AttentionParams {
  int n_head = 0;
  int n_head_kv = 0;  // query head h reads KV head h / (n_head / n_head_kv): MHA, GQA and MQA alike
  int head_dim = 0;
  float scale = 1.0f;  // applied to q.k, usually 1 / sqrt(head_dim)
  // Sliding window: > 0 lets the query at position p see only the keys at positions p - window + 1 .. p (its own
  // included); 0 is plain causal attention over the whole context.
  int window = 0;
};

// The weights a backend may need to hold itself: every matrix and every f32 vector the forward will name.
struct WeightSet {
  std::vector<WeightMatrix> matrices;
  struct Vector {
    const float* data;
    int64_t size;
  };
  std::vector<Vector> vectors;
};

// A memory system's peak read bandwidth, the denominator of "% of peak" in the statistics.
struct BandwidthPeak {
  double gb_per_s = 0.0;
  std::string source;  // how it was obtained
};

// A device's peak arithmetic rate, the denominator of "% of peak compute" in benchmarks; 0 when unknown.
struct ComputePeak {
  double gflop_per_s = 0.0;
  std::string source;  // how it was obtained
};

class Backend {
 public:
  virtual ~Backend() = default;

  virtual std::string name() const = 0;
  virtual const KvGeometry& kv_geometry() const = 0;
  virtual uint64_t kv_pool_bytes() const = 0;
  virtual BandwidthPeak peak_bandwidth() = 0;
  virtual ComputePeak peak_compute() = 0;

  // ---------------------------------------------------------------- one forward
  // Makes `batch` the current one: the ops below read its tokens, positions, slot mapping, sequences and logit rows;
  // `attention` is what the attention ops of this forward will be asked (a GPU plans its launches from it). The
  // batch must stay unchanged until the next begin_batch. Throws pagedllm::Error when the batch breaks the contract
  // (a slot or block outside the pools, rows not covered by the sequences).
  virtual void begin_batch(const ForwardBatch& batch, const AttentionParams& attention) = 0;
  // `n` floats of backend memory, the same storage for the same `slot` from call to call (grown as needed, contents
  // kept only while it does not grow). Slots are the forward's own numbering of its buffers.
  virtual float* buffer(int slot, int64_t n) = 0;

  // Executes copy-on-write block copies, in order.
  virtual void copy_blocks(std::span<const BlockCopy> copies) = 0;
  // out[i] = row tokens[i] of `table`, dequantized. out: [n_tokens, table.n_cols].
  virtual void embed(const WeightMatrix& table, float* out) = 0;
  // out[r] = x[r] / sqrt(mean(x[r]^2) + eps) * gain, the sum of squares in double. x, out: [n_rows, n]; gain: [n].
  // out may be x (in place): the per-head q/k norm normalizes [n_tokens * n_head, head_dim] rows where they are.
  virtual void rms_norm(const float* x, const float* gain, float* out, int64_t n_rows, int64_t n, float eps) = 0;
  // The residual add and the next norm: x += delta, then out = rms_norm(x) * gain. x, delta, out: [n_rows, n].
  virtual void add_rms_norm(float* x, const float* delta, const float* gain, float* out, int64_t n_rows, int64_t n,
                            float eps) = 0;
  // out[i] = rms_norm(x[logit_rows[i]]) * gain: the final norm of the rows whose logits are wanted.
  // x: [n_tokens, n]; out: [n_logits, n].
  virtual void rms_norm_logit_rows(const float* x, const float* gain, float* out, int64_t n, float eps) = 0;
  // y[i] = x · weights[i]ᵀ for matrices that share the input x: [n_rows, K] -> y[i]: [n_rows, weights[i]->n_rows].
  // Activations are converted to the format llama.cpp multiplies each weight type with (Q8_0, Q8_1, Q8_K, F16 or
  // BF16 rounding, F32), once for all the matrices.
  virtual void matmul(std::span<const WeightMatrix* const> weights, const float* x, int64_t n_rows,
                      std::span<float* const> y) = 0;
  // x[r] += bias. x: [n_rows, n]; bias: [n].
  virtual void add_bias(float* x, const float* bias, int64_t n_rows, int64_t n) = 0;
  // Rotates q and k in place at the batch's positions. q: [n_tokens, n_head, head_dim]; k: [n_tokens, n_head_kv,
  // head_dim]; freq_factors: [n_rot / 2] or null.
  virtual void rope(float* q, float* k, int n_head, int n_head_kv, int head_dim, const RopeParams& params,
                    const float* freq_factors) = 0;
  // Stores the new tokens' K and V rows of `layer` at their slots. k, v: [n_tokens, n_head_kv, head_dim].
  virtual void write_kv(int layer, const float* k, const float* v) = 0;
  // Causal attention of every sequence's new rows over its cached context (the new tokens' K/V already written),
  // limited to the last params.window positions when that is set (blocks wholly before every row's window are
  // not read, so their table entries need not name live blocks).
  // q: [n_tokens, n_head, head_dim], rounded in place to the cache's element type first when that is F16 (q·k is
  // then formed as llama.cpp forms it with an F16 cache); out: [n_tokens, n_head, head_dim].
  virtual void attention(int layer, float* q, float* out, const AttentionParams& params) = 0;
  // The same attention computed naively, with each row's whole score vector in memory: the test oracle and the
  // baseline benchmarks compare the tiled kernels with. q is not rounded here (the caller's attention() did it).
  virtual void attention_reference(int layer, const float* q, float* out, const AttentionParams& params) = 0;
  // gate = silu(gate) * up. gate, up: [n].
  virtual void swiglu(float* gate, const float* up, int64_t n) = 0;
  // gate = gelu_tanh(gate) * up (kernels/common/gelu.h: the reference's f16 rounding included). gate, up: [n].
  virtual void geglu(float* gate, const float* up, int64_t n) = 0;
  // x *= factor. x: [n].
  virtual void scale(float* x, float factor, int64_t n) = 0;
  // x += y. x, y: [n].
  virtual void add(float* x, const float* y, int64_t n) = 0;
  // Waits for everything queued and copies n floats of backend memory to the host.
  virtual void read_to_host(const float* x, int64_t n, float* host) = 0;
  // Waits for everything queued (a profiler times op by op with it; the CPU runs synchronously).
  virtual void synchronize() = 0;
};

// The CPU backend: weights used in place (the host views are the weights), pools in host memory.
std::unique_ptr<Backend> make_cpu_backend(const KvGeometry& kv, int n_threads);

struct CudaBackendOptions {
  int device_index = 0;
  // Batches of up to this many tokens use the fused GEMV kernels (the CPU's numerics); larger ones cuBLAS. At most
  // 8; 0 sends every product to cuBLAS (tests use both).
  int gemv_max_rows = 8;
};

// The CUDA backend: uploads `weights` once (quantized blocks stay quantized). Throws pagedllm::Error when CUDA is
// not compiled in, the device is missing or too small (naming the sizes), the KV type is not f16, or a weight type
// cannot be computed on the GPU.
std::unique_ptr<Backend> make_cuda_backend(const KvGeometry& kv, const WeightSet& weights,
                                           const CudaBackendOptions& options = {});

}  // namespace pagedllm
