// Every CUDA op against its CPU counterpart (the CPU side is the oracle), on random inputs with stated tolerances;
// flash and paged attention against the CPU naive oracle on many shapes; end to end, greedy tokens of stories260K
// and SmolLM2 on the GPU equal to the CPU's, and batched/forked sequences on the GPU matching the CPU's logits.
//
// Compiled in every build. Without CUDA compiled in, or without a device, each test prints
// "skipped: no CUDA device: <reason>" and passes.
#include <doctest/doctest.h>

#include <string>

#include "kernels/cuda/device_info.h"

namespace {

// True (after printing why) when there is no device to run on.
bool skip_without_device() {
  std::string why;
  if (!pagedllm::query_cuda_devices(why).empty()) return false;
  MESSAGE("skipped: no CUDA device: " << why);
  return true;
}

}  // namespace

#define SKIP_WITHOUT_DEVICE() \
  do {                        \
    if (skip_without_device()) return; \
  } while (0)

#if !defined(PAGEDLLM_HAVE_CUDA)

TEST_CASE("CUDA ops against the CPU ops") { SKIP_WITHOUT_DEVICE(); }

#else

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <numeric>
#include <random>
#include <vector>

#include "common/thread_pool.h"
#include "direct_runner.h"
#include "engine/llama_forward.h"
#include "engine/model.h"
#include "engine/model_runner.h"
#include "engine/sampler.h"
#include "kernels/cuda/cuda_backend.h"
#include "tensor/float16.h"
#include "tensor/quant_blocks.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/elementwise.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cuda/attention_plan.h"
#include "kernels/cuda/cublas_library.h"
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_ops.h"
#include "model_loader/gguf.h"
#include "tensor/quantize.h"
#include "model_loader/synthetic_model.h"

using namespace pagedllm;

namespace {

// A device copy of a host vector, downloaded on demand.
template <typename T>
class DeviceArray {
 public:
  explicit DeviceArray(size_t count) : count_(count), buffer_(std::max<size_t>(1, count) * sizeof(T)) {}
  explicit DeviceArray(const std::vector<T>& host) : DeviceArray(host.size()) { upload(host); }
  void upload(const std::vector<T>& host) {
    REQUIRE(host.size() == count_);
    PAGEDLLM_CUDA_CHECK(cudaMemcpy(buffer_.data(), host.data(), count_ * sizeof(T), cudaMemcpyHostToDevice));
  }
  std::vector<T> download() const {
    std::vector<T> host(count_);
    PAGEDLLM_CUDA_CHECK(cudaDeviceSynchronize());
    PAGEDLLM_CUDA_CHECK(cudaMemcpy(host.data(), buffer_.data(), count_ * sizeof(T), cudaMemcpyDeviceToHost));
    return host;
  }
  T* get() const { return buffer_.as<T>(); }
  size_t size() const { return count_; }

 private:
  size_t count_;
  cuda::DeviceBuffer buffer_;
};

std::vector<float> random_floats(std::mt19937& rng, size_t n, float scale = 1.0f) {
  std::normal_distribution<float> normal(0.0f, scale);
  std::vector<float> values(n);
  for (float& x : values) x = normal(rng);
  return values;
}

// max |a - b| / max |b|: errors measured against the result's scale.
double relative_error(const std::vector<float>& actual, const std::vector<float>& expected) {
  REQUIRE(actual.size() == expected.size());
  double worst = 0.0, scale = 1e-30;
  for (size_t i = 0; i < expected.size(); ++i) {
    if (!std::isfinite(actual[i])) return INFINITY;
    worst = std::max(worst, std::fabs(double(actual[i]) - double(expected[i])));
    scale = std::max(scale, std::fabs(double(expected[i])));
  }
  return worst / scale;
}

// Per output row (one token, one head: a convex combination of V rows), the error against that row's largest
// magnitude, as in test_attention.cpp.
double row_relative_error(const std::vector<float>& actual, const std::vector<float>& expected, int head_dim) {
  double worst = 0.0;
  for (size_t row = 0; row < expected.size(); row += static_cast<size_t>(head_dim)) {
    double magnitude = 1e-30;
    for (int d = 0; d < head_dim; ++d) magnitude = std::max(magnitude, std::fabs(double(expected[row + d])));
    for (int d = 0; d < head_dim; ++d) {
      if (!std::isfinite(actual[row + d])) return INFINITY;
      worst = std::max(worst, std::fabs(double(actual[row + d]) - double(expected[row + d])) / magnitude);
    }
  }
  return worst;
}

// ---------------------------------------------------------------- weights of every type

// Rows of random weights in `type`: quantized from N(0, 0.5) where a quantizer exists, else (Q2_K, Q3_K) random
// block bytes with small scales.
std::vector<uint8_t> random_matrix(GgmlType type, int64_t n_rows, int64_t n_cols, std::mt19937& rng) {
  const size_t bytes_per_row = row_bytes(type, n_cols);
  std::vector<uint8_t> data(bytes_per_row * static_cast<size_t>(n_rows));
  if (can_quantize(type)) {
    for (int64_t r = 0; r < n_rows; ++r) {
      const std::vector<float> row = random_floats(rng, static_cast<size_t>(n_cols), 0.5f);
      quantize_row(type, row.data(), data.data() + static_cast<size_t>(r) * bytes_per_row, n_cols);
    }
    return data;
  }
  std::uniform_int_distribution<int> byte(0, 255);
  for (uint8_t& b : data) b = static_cast<uint8_t>(byte(rng));
  const int64_t n_blocks = static_cast<int64_t>(data.size()) / type_traits(type).bytes_per_block;
  for (int64_t b = 0; b < n_blocks; ++b) {
    if (type == GgmlType::Q2_K) {
      auto* block = reinterpret_cast<BlockQ2_K*>(data.data()) + b;
      block->d = f32_to_fp16(0.01f);
      block->dmin = f32_to_fp16(0.005f);
    } else if (type == GgmlType::Q3_K) {
      reinterpret_cast<BlockQ3_K*>(data.data())[b].d = f32_to_fp16(0.01f);
    } else {
      FAIL("no generator for " << type_name(type));
    }
  }
  return data;
}

cuda::DeviceMatrix device_matrix(GgmlType type, const DeviceArray<uint8_t>& data, int64_t n_rows, int64_t n_cols) {
  cuda::DeviceMatrix m;
  m.type = type;
  m.data = data.get();
  m.n_rows = n_rows;
  m.n_cols = n_cols;
  m.row_bytes = row_bytes(type, n_cols);
  return m;
}

const GgmlType kAllTypes[] = {GgmlType::F32,  GgmlType::F16,  GgmlType::BF16, GgmlType::Q4_0, GgmlType::Q4_1,
                              GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::Q8_0, GgmlType::Q2_K, GgmlType::Q3_K,
                              GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K};

}  // namespace

// ---------------------------------------------------------------- elementwise ops

TEST_CASE("embedding rows of every weight type equal the CPU's, bit for bit (the shared dequantize_block)") {
  SKIP_WITHOUT_DEVICE();
  std::mt19937 rng(1);
  for (GgmlType type : kAllTypes) {
    CAPTURE(type_name(type));
    const int64_t n_rows = 37, n_cols = 512;
    const std::vector<uint8_t> host = random_matrix(type, n_rows, n_cols, rng);
    const DeviceArray<uint8_t> weights(host);
    const std::vector<int32_t> ids = {0, 5, 36, 5, 17, 1};
    const DeviceArray<int32_t> device_ids(ids);
    DeviceArray<float> out(ids.size() * n_cols);
    cuda::embedding_lookup(device_matrix(type, weights, n_rows, n_cols), device_ids.get(),
                           static_cast<int64_t>(ids.size()), out.get(), nullptr);
    std::vector<float> expected(ids.size() * n_cols);
    embedding_lookup(WeightMatrix{type, host.data(), n_cols, n_rows}, ids.data(), static_cast<int64_t>(ids.size()),
                     expected.data());
    const std::vector<float> actual = out.download();
    CHECK(std::memcmp(actual.data(), expected.data(), expected.size() * sizeof(float)) == 0);
  }
}

TEST_CASE("RMSNorm, the fused residual add + RMSNorm and the gathered final norm match the CPU (rel 1e-6)") {
  SKIP_WITHOUT_DEVICE();
  std::mt19937 rng(2);
  for (int64_t n : {64, 576, 4096, 5000}) {
    const int64_t rows = 7;
    const std::vector<float> x = random_floats(rng, static_cast<size_t>(rows * n), 3.0f);
    const std::vector<float> y = random_floats(rng, static_cast<size_t>(rows * n));
    const std::vector<float> gain = random_floats(rng, static_cast<size_t>(n));
    const float eps = 1e-5f;
    const DeviceArray<float> device_x(x), device_y(y), device_gain(gain);
    DeviceArray<float> out(x.size());

    std::vector<float> expected(x.size());
    rms_norm(x.data(), gain.data(), expected.data(), rows, n, eps);
    cuda::rms_norm(device_x.get(), device_gain.get(), out.get(), rows, n, eps, nullptr);
    CHECK(relative_error(out.download(), expected) < 1e-6);

    std::vector<float> summed = x;
    add_in_place(summed.data(), y.data(), rows * n);
    rms_norm(summed.data(), gain.data(), expected.data(), rows, n, eps);
    cuda::add_rms_norm(device_x.get(), device_y.get(), device_gain.get(), out.get(), rows, n, eps, nullptr);
    CHECK(relative_error(device_x.download(), summed) == 0.0);
    CHECK(relative_error(out.download(), expected) < 1e-6);

    const std::vector<int32_t> rows_wanted = {6, 0, 3};
    const DeviceArray<int32_t> device_rows(rows_wanted);
    DeviceArray<float> gathered(rows_wanted.size() * n);
    cuda::rms_norm_rows(device_x.get(), device_rows.get(), 3, device_gain.get(), gathered.get(), n, eps, nullptr);
    std::vector<float> expected_gathered(rows_wanted.size() * n);
    for (size_t i = 0; i < rows_wanted.size(); ++i) {
      rms_norm(summed.data() + rows_wanted[i] * n, gain.data(), expected_gathered.data() + i * n, 1, n, eps);
    }
    CHECK(relative_error(gathered.download(), expected_gathered) < 1e-6);
  }
}

TEST_CASE("RoPE on q and k matches the CPU for both layouts, frequency factors and YaRN (abs 1e-5)") {
  SKIP_WITHOUT_DEVICE();
  std::mt19937 rng(3);
  struct Case {
    bool neox;
    bool factors;
    bool yarn;
    int head_dim;
    int n_rot;
  };
  for (const Case& c : {Case{false, false, false, 64, 64}, Case{true, false, false, 128, 128},
                        Case{false, true, false, 128, 128}, Case{true, true, true, 64, 64},
                        Case{false, false, false, 8, 8}, Case{true, false, false, 96, 64}}) {
    RopeParams params;
    params.n_rot = c.n_rot;
    params.freq_base = c.factors ? 500000.0f : 10000.0f;
    params.neox = c.neox;
    if (c.yarn) {
      params.freq_scale = 0.25f;
      params.ext_factor = 1.0f;
      rope_yarn_corr_dims(params.n_rot, 4096, params.freq_base, &params.yarn_low, &params.yarn_high);
    }
    const int n_head = 6, n_head_kv = 2;
    const int64_t rows = 9;
    std::vector<int32_t> positions = {0, 1, 2, 17, 255, 1000, 4095, 8191, 16383};
    std::vector<float> q = random_floats(rng, static_cast<size_t>(rows * n_head * c.head_dim));
    std::vector<float> k = random_floats(rng, static_cast<size_t>(rows * n_head_kv * c.head_dim));
    std::vector<float> factors;
    for (int i = 0; i < c.n_rot / 2; ++i) factors.push_back(1.0f + 0.5f * static_cast<float>(i % 5));
    const DeviceArray<float> device_q(q), device_k(k), device_factors(factors);
    const DeviceArray<int32_t> device_positions(positions);
    const float theta_scale = std::pow(params.freq_base, -2.0f / static_cast<float>(params.n_rot));
    cuda::rope_qk(device_q.get(), device_k.get(), device_positions.get(), rows, n_head, n_head_kv, c.head_dim, params,
                  theta_scale, c.factors ? device_factors.get() : nullptr, nullptr);
    rope(q.data(), positions.data(), rows, n_head, c.head_dim, params, c.factors ? factors.data() : nullptr);
    rope(k.data(), positions.data(), rows, n_head_kv, c.head_dim, params, c.factors ? factors.data() : nullptr);
    const std::vector<float> gpu_q = device_q.download(), gpu_k = device_k.download();
    double worst = 0.0;
    for (size_t i = 0; i < q.size(); ++i) worst = std::max(worst, std::fabs(double(gpu_q[i]) - q[i]));
    for (size_t i = 0; i < k.size(); ++i) worst = std::max(worst, std::fabs(double(gpu_k[i]) - k[i]));
    CAPTURE(c.neox);
    CAPTURE(c.factors);
    CAPTURE(c.yarn);
    CHECK(worst < 1e-5);
  }
}

TEST_CASE("SwiGLU, residual add and bias add match the CPU (rel 1e-6)") {
  SKIP_WITHOUT_DEVICE();
  std::mt19937 rng(4);
  const int64_t rows = 5, n = 1000;
  const std::vector<float> gate = random_floats(rng, rows * n, 4.0f), up = random_floats(rng, rows * n);
  const std::vector<float> bias = random_floats(rng, n);
  DeviceArray<float> device_gate(gate), device_up(up), device_bias(bias);
  std::vector<float> expected = gate;
  swiglu(expected.data(), up.data(), rows * n);
  cuda::swiglu(device_gate.get(), device_up.get(), rows * n, nullptr);
  CHECK(relative_error(device_gate.download(), expected) < 1e-6);

  add_in_place(expected.data(), up.data(), rows * n);
  cuda::add_in_place(device_gate.get(), device_up.get(), rows * n, nullptr);
  CHECK(relative_error(device_gate.download(), expected) < 1e-6);

  add_bias(expected.data(), bias.data(), rows, n);
  cuda::add_bias(device_gate.get(), device_bias.get(), rows, n, nullptr);
  CHECK(relative_error(device_gate.download(), expected) < 1e-6);
}

TEST_CASE("GeGLU (gelu_tanh with the f16 rounding) and scaling match the CPU (rel 1e-6)") {
  SKIP_WITHOUT_DEVICE();
  std::mt19937 rng(5);
  const int64_t n = 5000;
  const std::vector<float> gate = random_floats(rng, n, 12.0f), up = random_floats(rng, n);
  DeviceArray<float> device_gate(gate), device_up(up);
  std::vector<float> expected = gate;
  geglu(expected.data(), up.data(), n);
  cuda::geglu(device_gate.get(), device_up.get(), n, nullptr);
  CHECK(relative_error(device_gate.download(), expected) < 1e-6);
  scale_in_place(expected.data(), 25.3f, n);
  cuda::scale(device_gate.get(), 25.3f, n, nullptr);
  CHECK(relative_error(device_gate.download(), expected) < 1e-6);
}

TEST_CASE("K/V writes through the slot mapping store f16-rounded rows; block copies copy every pool") {
  SKIP_WITHOUT_DEVICE();
  std::mt19937 rng(5);
  const int num_blocks = 6, block_size = 16, slot_elements = 3 * 64, n_pools = 4;
  const size_t pool_elements = static_cast<size_t>(num_blocks) * block_size * slot_elements;
  std::vector<uint16_t> pools(pool_elements * n_pools);
  for (uint16_t& x : pools) x = f32_to_fp16(std::normal_distribution<float>(0.0f, 1.0f)(rng));
  DeviceArray<uint16_t> device_pools(pools);
  const std::vector<int32_t> slots = {3, 95, 16, 40};
  const std::vector<float> k = random_floats(rng, slots.size() * slot_elements);
  const std::vector<float> v = random_floats(rng, slots.size() * slot_elements);
  const DeviceArray<float> device_k(k), device_v(v);
  const DeviceArray<int32_t> device_slots(slots);
  cuda::kv_write(device_k.get(), device_v.get(), device_slots.get(), static_cast<int64_t>(slots.size()),
                 slot_elements, device_pools.get(), device_pools.get() + pool_elements, nullptr);
  for (size_t t = 0; t < slots.size(); ++t) {
    for (int e = 0; e < slot_elements; ++e) {
      pools[static_cast<size_t>(slots[t]) * slot_elements + e] = f32_to_fp16(k[t * slot_elements + e]);
      pools[pool_elements + static_cast<size_t>(slots[t]) * slot_elements + e] = f32_to_fp16(v[t * slot_elements + e]);
    }
  }
  CHECK(device_pools.download() == pools);

  // Copies run in order: 2 -> 4, then 4 -> 1 (which must see the first copy's result).
  const size_t block_bytes = static_cast<size_t>(block_size) * slot_elements * sizeof(uint16_t);
  auto* base = reinterpret_cast<uint8_t*>(device_pools.get());
  cuda::copy_kv_block(base, n_pools, pool_elements * sizeof(uint16_t), block_bytes, 2, 4, nullptr);
  cuda::copy_kv_block(base, n_pools, pool_elements * sizeof(uint16_t), block_bytes, 4, 1, nullptr);
  const size_t block_elements = static_cast<size_t>(block_size) * slot_elements;
  for (int p = 0; p < n_pools; ++p) {
    uint16_t* pool = pools.data() + static_cast<size_t>(p) * pool_elements;
    std::copy_n(pool + 2 * block_elements, block_elements, pool + 4 * block_elements);
    std::copy_n(pool + 4 * block_elements, block_elements, pool + 1 * block_elements);
  }
  CHECK(device_pools.download() == pools);
}

// ---------------------------------------------------------------- matrix products

TEST_CASE("matmul: the fused GEMV and the cuBLAS path against the CPU matmul, every type") {
  SKIP_WITHOUT_DEVICE();
  // Tolerances (max |gpu - cpu| / max |cpu|): GEMV 1e-4 (same activation formats and integer block sums; only the
  // order of the per-block float sum differs); cuBLAS 1e-4 for F32 weights, 2e-3 for F16/BF16 (same rounded
  // activations, FP32 accumulation in another order); 1e-2 for quantized weights (f16-dequantized weights, and
  // the CPU's 8-bit activations rounded to f16).
  std::mt19937 rng(6);
  cublasHandle_t handle = nullptr;
  REQUIRE(cuda::cublas_library().create(&handle) == CUBLAS_STATUS_SUCCESS);
  ThreadPool pool(4);
  MatmulScratch scratch;
  for (GgmlType type : kAllTypes) {
    for (int64_t M : {1, 2, 3, 5, 8, 9, 40}) {
      const int64_t K = type_traits(type).block_size == 256 ? 768 : 320;
      const int64_t N = 67;
      CAPTURE(type_name(type));
      CAPTURE(M);
      const std::vector<uint8_t> host = random_matrix(type, N, K, rng);
      const std::vector<float> x = random_floats(rng, static_cast<size_t>(M * K));
      const DeviceArray<uint8_t> weights(host);
      const DeviceArray<float> device_x(x);
      DeviceArray<float> y(static_cast<size_t>(M * N));
      cuda::DeviceBuffer activations(cuda::matmul_activation_bytes(M, K));
      cuda::DeviceBuffer tile(cuda::kWeightTileBytes);
      cuda::MatmulWorkspace workspace;
      workspace.activations = activations.data();
      workspace.activation_bytes = activations.size_bytes();
      workspace.weight_tile = tile.data();
      workspace.weight_tile_bytes = tile.size_bytes();
      workspace.cublas = handle;
      const cuda::DeviceMatrix matrix = device_matrix(type, weights, N, K);
      float* output = y.get();
      cuda::matmul(&matrix, &output, 1, device_x.get(), M, workspace, cuda::kMaxGemvRows, nullptr);
      std::vector<float> expected(static_cast<size_t>(M * N));
      matmul(WeightMatrix{type, host.data(), K, N}, x.data(), M, expected.data(), pool, scratch);
      const bool gemv = M <= cuda::kMaxGemvRows && cuda::gemv_supports(type);
      double tolerance = 1e-2;
      if (gemv || type == GgmlType::F32) tolerance = 1e-4;
      else if (type == GgmlType::F16 || type == GgmlType::BF16) tolerance = 2e-3;
      CHECK(relative_error(y.download(), expected) < tolerance);
    }
  }
  // Three matrices sharing the input in one GEMV launch (Q, K, V), with different row counts.
  for (GgmlType type : {GgmlType::F16, GgmlType::Q4_1, GgmlType::Q6_K}) {
    const int64_t K = 512, M = 3;
    const int64_t rows[3] = {96, 32, 32};
    std::vector<std::vector<uint8_t>> hosts;
    std::vector<DeviceArray<uint8_t>> weights;
    std::vector<DeviceArray<float>> outputs;
    std::vector<cuda::DeviceMatrix> matrices;
    for (int64_t n : rows) {
      hosts.push_back(random_matrix(type, n, K, rng));
      weights.emplace_back(hosts.back());
      outputs.emplace_back(static_cast<size_t>(M * n));
    }
    for (int i = 0; i < 3; ++i) matrices.push_back(device_matrix(type, weights[i], rows[i], K));
    float* pointers[3] = {outputs[0].get(), outputs[1].get(), outputs[2].get()};
    const std::vector<float> x = random_floats(rng, static_cast<size_t>(M * K));
    const DeviceArray<float> device_x(x);
    cuda::DeviceBuffer activations(cuda::matmul_activation_bytes(M, K));
    cuda::MatmulWorkspace workspace;
    workspace.activations = activations.data();
    workspace.activation_bytes = activations.size_bytes();
    workspace.cublas = handle;
    cuda::matmul(matrices.data(), pointers, 3, device_x.get(), M, workspace, cuda::kMaxGemvRows, nullptr);
    for (int i = 0; i < 3; ++i) {
      std::vector<float> expected(static_cast<size_t>(M * rows[i]));
      matmul(WeightMatrix{type, hosts[i].data(), K, rows[i]}, x.data(), M, expected.data(), pool, scratch);
      CAPTURE(type_name(type));
      CAPTURE(i);
      CHECK(relative_error(outputs[i].download(), expected) < 1e-4);
    }
  }
  cuda::cublas_library().destroy(handle);
}

// ---------------------------------------------------------------- attention

namespace {

struct SeqSpec {
  int context_length;
  int n_new;
};

struct AttentionShape {
  int n_head;
  int n_head_kv;
  int head_dim;
  int block_size;
};

// A batch laid out like the engine's: blocks scattered over a larger pool whose unowned slots hold f16 NaN, so a
// kernel that reads one poisons its output.
struct AttentionProblem {
  AttentionShape shape;
  std::vector<SeqSpec> specs;
  std::vector<float> q;                // [n_tokens, n_head, head_dim]
  std::vector<uint16_t> k_pool, v_pool;  // [num_blocks, block_size, n_head_kv, head_dim]
  std::vector<std::vector<int32_t>> tables;
  std::vector<SeqAttention> cpu_seqs;
  std::vector<cuda::DeviceSeq> device_seqs;
  std::vector<int32_t> flat_tables;
  int n_tokens = 0;
  int window = 0;  // sliding window of the oracle and the device launch; 0: none

  AttentionProblem(const AttentionShape& s, std::vector<SeqSpec> seq_specs, uint32_t seed)
      : shape(s), specs(std::move(seq_specs)) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    int blocks_needed = 0;
    for (const SeqSpec& spec : specs) {
      blocks_needed += (spec.context_length + s.block_size - 1) / s.block_size;
      n_tokens += spec.n_new;
    }
    const int num_blocks = blocks_needed + 3;
    std::vector<int32_t> physical(static_cast<size_t>(num_blocks));
    std::iota(physical.begin(), physical.end(), 0);
    std::shuffle(physical.begin(), physical.end(), rng);
    const size_t slot = static_cast<size_t>(s.n_head_kv) * s.head_dim;
    k_pool.assign(static_cast<size_t>(num_blocks) * s.block_size * slot, 0x7E00);  // f16 NaN
    v_pool = k_pool;
    size_t next_block = 0;
    int first_row = 0;
    tables.resize(specs.size());
    for (size_t i = 0; i < specs.size(); ++i) {
      const SeqSpec& spec = specs[i];
      const int n_blocks = (spec.context_length + s.block_size - 1) / s.block_size;
      for (int b = 0; b < n_blocks; ++b) tables[i].push_back(physical[next_block++]);
      for (int position = 0; position < spec.context_length; ++position) {
        const size_t base = (static_cast<size_t>(tables[i][position / s.block_size]) * s.block_size +
                             position % s.block_size) * slot;
        for (size_t e = 0; e < slot; ++e) {
          k_pool[base + e] = f32_to_fp16(normal(rng));
          v_pool[base + e] = f32_to_fp16(normal(rng));
        }
      }
      cpu_seqs.push_back(SeqAttention{first_row, spec.n_new, spec.context_length, tables[i].data(), n_blocks});
      device_seqs.push_back(cuda::DeviceSeq{first_row, spec.n_new, spec.context_length,
                                            static_cast<int32_t>(flat_tables.size())});
      flat_tables.insert(flat_tables.end(), tables[i].begin(), tables[i].end());
      first_row += spec.n_new;
    }
    q.resize(static_cast<size_t>(n_tokens) * s.n_head * s.head_dim);
    for (float& x : q) x = normal(rng);
  }

  float scale() const { return 1.0f / std::sqrt(static_cast<float>(shape.head_dim)); }

  std::vector<float> oracle() const {
    std::vector<float> out(q.size(), NAN);
    AttentionArgs a;
    a.q = q.data();
    a.out = out.data();
    a.k_pool = k_pool.data();
    a.v_pool = v_pool.data();
    a.dtype = KvDtype::F16;
    a.n_head = shape.n_head;
    a.n_head_kv = shape.n_head_kv;
    a.head_dim = shape.head_dim;
    a.block_size = shape.block_size;
    a.scale = scale();
    a.window = window;
    a.seqs = cpu_seqs;
    naive_attention(a);
    return out;
  }
};

// Device copies of a problem plus an output, and the launch arguments over them.
struct DeviceProblem {
  DeviceArray<float> q;
  DeviceArray<float> out;
  DeviceArray<uint16_t> k_pool, v_pool;
  DeviceArray<cuda::DeviceSeq> seqs;
  DeviceArray<int32_t> tables;
  cuda::AttentionLaunch args;

  explicit DeviceProblem(const AttentionProblem& p)
      : q(p.q), out(std::vector<float>(p.q.size(), NAN)), k_pool(p.k_pool), v_pool(p.v_pool), seqs(p.device_seqs),
        tables(p.flat_tables) {
    args.q = q.get();
    args.out = out.get();
    args.k_pool = k_pool.get();
    args.v_pool = v_pool.get();
    args.seqs = seqs.get();
    args.block_tables = tables.get();
    args.n_head = p.shape.n_head;
    args.n_head_kv = p.shape.n_head_kv;
    args.head_dim = p.shape.head_dim;
    args.block_size = p.shape.block_size;
    args.scale = p.scale();
    args.window = p.window;
  }
};

// Runs the engine's split of the work: flash for prefill rows, paged decode (with `target_ctas`) for decode rows.
std::vector<float> run_tiled(const AttentionProblem& p, int target_ctas) {
  DeviceProblem d(p);
  const int group = p.shape.n_head / p.shape.n_head_kv;
  const cuda::FlashTileShape shape = cuda::flash_tile_shape(group, cuda::flash_kernel_rows(p.shape.head_dim));
  std::vector<cuda::FlashTile> tiles;
  cuda::plan_flash_tiles(p.device_seqs, group, shape, tiles);
  cuda::DecodePlanParams params;
  params.block_size = p.shape.block_size;
  params.n_head_kv = p.shape.n_head_kv;
  params.group = group;
  params.target_ctas = target_ctas;
  cuda::DecodePlan plan;
  cuda::plan_decode(p.device_seqs, params, plan);
  const DeviceArray<cuda::FlashTile> device_tiles(tiles);
  const DeviceArray<cuda::DecodeWork> device_work(plan.work);
  const DeviceArray<cuda::DecodeMerge> device_merges(plan.merges);
  DeviceArray<float> partials(std::max<size_t>(1, static_cast<size_t>(plan.n_partials) * p.shape.n_head *
                                                      (p.shape.head_dim + 2)));
  cuda::flash_attention(d.args, device_tiles.get(), static_cast<int>(tiles.size()), shape.tokens_per_tile,
                        shape.heads_per_tile, nullptr);
  cuda::paged_decode_attention(d.args, device_work.get(), static_cast<int>(plan.work.size()), plan.heads_per_item,
                               device_merges.get(), static_cast<int>(plan.merges.size()), partials.get(), nullptr);
  return d.out.download();
}

// Tolerances against the f32 CPU oracle: the tensor-core kernel rounds q and the probabilities to f16 (5e-3 of a
// row's magnitude); the CUDA-core kernels compute in f32 (1e-4).
double attention_tolerance(const AttentionShape& s, const std::vector<SeqSpec>& specs) {
  bool any_prefill = false;
  for (const SeqSpec& spec : specs) any_prefill = any_prefill || spec.n_new >= 2;
  return any_prefill && cuda::flash_uses_mma(s.head_dim) ? 5e-3 : 1e-4;
}

}  // namespace

TEST_CASE("flash and paged attention match the naive oracle on mixed batches of many shapes") {
  SKIP_WITHOUT_DEVICE();
  const AttentionShape shapes[] = {
      {8, 8, 64, 16},   {8, 2, 64, 32},  {32, 8, 128, 16}, {9, 3, 64, 16},  {4, 1, 128, 32}, {16, 1, 64, 16},
      {2, 1, 128, 7},   {8, 4, 8, 16},   {4, 2, 32, 32},   {6, 2, 80, 16},  {4, 4, 96, 16},  {2, 1, 256, 16},
      {4, 2, 12, 16},   {40, 2, 64, 16}, {40, 2, 8, 32},
  };
  const std::vector<std::vector<SeqSpec>> batches = {
      {{1, 1}},                                             // first token
      {{37, 37}},                                           // a prompt ending in a partial block
      {{100, 20}},                                          // a prompt after a cached prefix
      {{64, 64}, {200, 1}, {129, 2}, {17, 17}, {33, 1}},    // prefill and decode together
      {{16, 16}, {32, 1}, {31, 1}, {257, 1}},               // block boundaries
  };
  uint32_t seed = 100;
  for (const AttentionShape& shape : shapes) {
    for (const std::vector<SeqSpec>& batch : batches) {
      const AttentionProblem problem(shape, batch, seed++);
      const std::vector<float> expected = problem.oracle();
      for (int target_ctas : {1, 264, 100000}) {  // no splits, some, as many as allowed
        CAPTURE(shape.n_head);
        CAPTURE(shape.n_head_kv);
        CAPTURE(shape.head_dim);
        CAPTURE(shape.block_size);
        CAPTURE(batch.size());
        CAPTURE(target_ctas);
        CHECK(row_relative_error(run_tiled(problem, target_ctas), expected, shape.head_dim) <
              attention_tolerance(shape, batch));
      }
    }
  }
}

TEST_CASE("sliding windows: flash and paged attention match the naive oracle, MQA head_dim 256 included") {
  SKIP_WITHOUT_DEVICE();
  const AttentionShape shapes[] = {{4, 1, 256, 16}, {8, 2, 64, 16}, {2, 1, 128, 7}};
  const std::vector<std::vector<SeqSpec>> batches = {
      {{300, 300}},                        // a prompt across the window edge
      {{700, 64}, {900, 1}, {40, 1}},     // a chunk after a prefix, decodes past and inside the window
  };
  uint32_t seed = 700;
  for (const AttentionShape& shape : shapes) {
    for (const std::vector<SeqSpec>& batch : batches) {
      for (int window : {1, 16, 100, 512}) {
        AttentionProblem problem(shape, batch, seed++);
        problem.window = window;
        const std::vector<float> expected = problem.oracle();
        for (int target_ctas : {1, 264}) {
          CAPTURE(shape.n_head);
          CAPTURE(shape.head_dim);
          CAPTURE(window);
          CAPTURE(target_ctas);
          CHECK(row_relative_error(run_tiled(problem, target_ctas), expected, shape.head_dim) <
                attention_tolerance(shape, batch));
        }
      }
    }
  }
}

TEST_CASE("long contexts: 2k prefills, a 64-token chunk after a 16k prefix, and decodes up to 16k") {
  SKIP_WITHOUT_DEVICE();
  struct Case {
    AttentionShape shape;
    std::vector<SeqSpec> batch;
  };
  const Case cases[] = {
      {{8, 2, 128, 16}, {{2048, 2048}}},
      {{8, 8, 64, 32}, {{1500, 1500}}},
      {{8, 2, 128, 32}, {{16384, 64}}},
      {{8, 4, 8, 16}, {{4096, 100}}},
      {{32, 8, 128, 16}, {{16384, 1}}},
      {{8, 2, 64, 32}, {{16384, 1}, {4097, 1}, {1000, 1}, {1, 1}}},
      {{9, 3, 64, 16}, {{12000, 1}, {255, 1}, {256, 1}}},
  };
  uint32_t seed = 500;
  for (const Case& c : cases) {
    const AttentionProblem problem(c.shape, c.batch, seed++);
    const std::vector<float> expected = problem.oracle();
    for (int target_ctas : {1, 264}) {
      CAPTURE(c.shape.head_dim);
      CAPTURE(c.batch.front().context_length);
      CAPTURE(target_ctas);
      CHECK(row_relative_error(run_tiled(problem, target_ctas), expected, c.shape.head_dim) <
            attention_tolerance(c.shape, c.batch));
    }
  }
}

TEST_CASE("peaked scores (large q) exercise the running-max rescaling on the GPU") {
  SKIP_WITHOUT_DEVICE();
  for (const AttentionShape& shape : {AttentionShape{8, 2, 128, 16}, AttentionShape{4, 2, 8, 16}}) {
    AttentionProblem problem(shape, {{300, 300}, {700, 1}}, 77);
    for (float& x : problem.q) x *= 6.0f;
    const std::vector<float> expected = problem.oracle();
    // Scores up to ~6 sqrt(head_dim): f16 rounding of q costs more absolute score error; 2e-2 for the MMA kernel.
    const double tolerance = cuda::flash_uses_mma(shape.head_dim) ? 2e-2 : 1e-4;
    CHECK(row_relative_error(run_tiled(problem, 264), expected, shape.head_dim) < tolerance);
  }
}

TEST_CASE("the naive CUDA attention (benchmark baseline) matches the CPU oracle (1e-4)") {
  SKIP_WITHOUT_DEVICE();
  const AttentionProblem problem({8, 2, 64, 16}, {{300, 300}, {100, 1}, {90, 40}}, 9);
  DeviceProblem d(problem);
  DeviceArray<float> scores(cuda::naive_attention_scores_bytes(problem.device_seqs.data(),
                                                               static_cast<int>(problem.device_seqs.size()), 8) /
                            sizeof(float));
  cuda::naive_attention(d.args, problem.device_seqs.data(), static_cast<int>(problem.device_seqs.size()),
                        scores.get(), nullptr);
  CHECK(row_relative_error(d.out.download(), problem.oracle(), 64) < 1e-4);
}

// ---------------------------------------------------------------- sampling

namespace {

std::vector<int32_t> sample_on_device(const std::vector<float>& logits, int64_t n_vocab,
                                      const std::vector<cuda::SamplingRow>& rows) {
  const DeviceArray<float> device_logits(logits);
  const DeviceArray<cuda::SamplingRow> device_rows(rows);
  DeviceArray<int32_t> tokens(rows.size());
  cuda::sample_tokens(device_logits.get(), static_cast<int64_t>(rows.size()), n_vocab, device_rows.get(),
                      tokens.get(), nullptr);
  return tokens.download();
}

// The CPU chain's surviving candidates and their final probabilities (temperature applied).
std::vector<double> cpu_chain_probabilities(const float* logits, int n_vocab, const cuda::SamplingRow& row) {
  std::vector<TokenCandidate> candidates;
  for (int i = 0; i < n_vocab; ++i) candidates.push_back({i, logits[i]});
  if (row.top_k > 0) sampling::apply_top_k(candidates, row.top_k);
  sampling::apply_top_p(candidates, row.top_p);
  sampling::apply_min_p(candidates, row.min_p);
  sampling::apply_temperature(candidates, row.temperature);
  double max = -INFINITY, sum = 0.0;
  for (const TokenCandidate& c : candidates) max = std::max(max, double(c.logit));
  std::vector<double> probabilities(static_cast<size_t>(n_vocab), 0.0);
  for (const TokenCandidate& c : candidates) sum += std::exp(double(c.logit) - max);
  for (const TokenCandidate& c : candidates) probabilities[c.id] = std::exp(double(c.logit) - max) / sum;
  return probabilities;
}

}  // namespace

TEST_CASE("device sampling: greedy is the first maximum; filtered draws follow the CPU chain's distribution") {
  SKIP_WITHOUT_DEVICE();
  std::mt19937 rng(12);
  SUBCASE("greedy, ties to the lower id, and top_k = 1") {
    const int64_t n_vocab = 50000;
    std::vector<float> logits = random_floats(rng, 4 * n_vocab, 3.0f);
    logits[1 * n_vocab + 777] = 100.0f;
    logits[1 * n_vocab + 40000] = 100.0f;  // a tie: 777 wins
    logits[3 * n_vocab + n_vocab - 1] = 100.0f;
    const std::vector<cuda::SamplingRow> greedy(4, cuda::SamplingRow{0.0f, 0, 1.0f, 0.0f, 0.5f});
    const std::vector<int32_t> tokens = sample_on_device(logits, n_vocab, greedy);
    for (int r = 0; r < 4; ++r) {
      const auto begin = logits.begin() + r * n_vocab;
      CHECK(tokens[r] == std::max_element(begin, begin + n_vocab) - begin);
    }
    CHECK(tokens[1] == 777);
    const std::vector<cuda::SamplingRow> top1(4, cuda::SamplingRow{0.8f, 1, 1.0f, 0.0f, 0.99f});
    CHECK(sample_on_device(logits, n_vocab, top1) == tokens);
  }
  SUBCASE("a deterministic sweep of the uniform number reproduces the CPU chain's probabilities") {
    const int n_vocab = 64;
    const std::vector<float> row_logits = random_floats(rng, n_vocab, 2.0f);
    const cuda::SamplingRow settings_list[] = {
        {1.0f, 0, 1.0f, 0.0f, 0.0f},   {0.7f, 20, 0.9f, 0.05f, 0.0f}, {1.3f, 5, 1.0f, 0.0f, 0.0f},
        {1.0f, 0, 0.5f, 0.0f, 0.0f},   {0.5f, 0, 1.0f, 0.2f, 0.0f},
    };
    for (const cuda::SamplingRow& settings : settings_list) {
      const int draws = 8192;
      std::vector<float> logits;
      std::vector<cuda::SamplingRow> rows;
      for (int i = 0; i < draws; ++i) {
        logits.insert(logits.end(), row_logits.begin(), row_logits.end());
        cuda::SamplingRow row = settings;
        row.uniform = (static_cast<float>(i) + 0.5f) / draws;
        rows.push_back(row);
      }
      const std::vector<int32_t> tokens = sample_on_device(logits, n_vocab, rows);
      std::vector<double> frequency(n_vocab, 0.0);
      for (int32_t t : tokens) {
        REQUIRE(t >= 0);
        REQUIRE(t < n_vocab);
        frequency[t] += 1.0 / draws;
      }
      const std::vector<double> expected = cpu_chain_probabilities(row_logits.data(), n_vocab, settings);
      CAPTURE(settings.temperature);
      CAPTURE(settings.top_k);
      CAPTURE(settings.top_p);
      CAPTURE(settings.min_p);
      for (int t = 0; t < n_vocab; ++t) {
        if (expected[t] == 0.0) CHECK(frequency[t] == 0.0);  // filtered out: never drawn
        CHECK(std::fabs(frequency[t] - expected[t]) < 2.0 / draws + 1e-4);
      }
    }
  }
  SUBCASE("a large vocabulary: every draw survives the CPU filters") {
    const int n_vocab = 128256;
    const std::vector<float> row_logits = random_floats(rng, n_vocab, 2.5f);
    const cuda::SamplingRow settings{0.8f, 40, 0.95f, 0.05f, 0.0f};
    const std::vector<double> allowed = cpu_chain_probabilities(row_logits.data(), n_vocab, settings);
    std::vector<float> logits;
    std::vector<cuda::SamplingRow> rows;
    std::uniform_real_distribution<float> uniform(0.0f, 1.0f);
    for (int i = 0; i < 64; ++i) {
      logits.insert(logits.end(), row_logits.begin(), row_logits.end());
      cuda::SamplingRow row = settings;
      row.uniform = uniform(rng);
      rows.push_back(row);
    }
    for (int32_t t : sample_on_device(logits, n_vocab, rows)) CHECK(allowed[static_cast<size_t>(t)] > 0.0);
  }
}

// ---------------------------------------------------------------- end to end

namespace {

std::vector<int32_t> greedy_generate(const Model& model, DeviceKind device, const std::vector<int32_t>& prompt,
                                     int n_generate) {
  RunnerConfig config;
  config.n_ctx = 512;
  config.n_threads = 4;
  config.device = device;
  test::DirectRunner engine(model, config);
  const SeqId seq = engine.create_sequence();
  test::DirectWork work{seq, std::span<const int32_t>(prompt), true};
  std::span<const float> logits = engine.step(std::span(&work, 1));
  std::vector<int32_t> generated;
  while (static_cast<int>(generated.size()) < n_generate) {
    generated.push_back(static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin()));
    test::DirectWork decode{seq, std::span<const int32_t>(&generated.back(), 1), true};
    logits = engine.step(std::span(&decode, 1));
  }
  return generated;
}

KvGeometry kv_geometry_for(const Model& model, int num_blocks, int block_size) {
  KvGeometry kv;
  kv.n_layer = static_cast<int>(model.config.n_layer);
  kv.n_head_kv = static_cast<int>(model.config.n_head_kv);
  kv.head_dim = static_cast<int>(model.config.head_dim);
  kv.num_blocks = num_blocks;
  kv.block_size = block_size;
  kv.dtype = KvDtype::F16;
  return kv;
}

// One sequence's batch: `next` at positions context.., slots = positions (blocks in order).
ForwardBatch one_sequence_batch(const std::vector<int32_t>& next, int context, const std::vector<int32_t>& table,
                                int block_size) {
  ForwardBatch batch;
  for (size_t i = 0; i < next.size(); ++i) {
    batch.tokens.push_back(next[i]);
    batch.positions.push_back(context + static_cast<int32_t>(i));
    batch.slot_mapping.push_back(context + static_cast<int32_t>(i));
  }
  SeqView view;
  view.first_row = 0;
  view.n_new = static_cast<int32_t>(next.size());
  view.context_length = context + view.n_new;
  view.block_table =
      std::span<const int32_t>(table.data(), static_cast<size_t>((view.context_length + block_size - 1) / block_size));
  batch.seqs.push_back(view);
  batch.logit_rows.push_back(batch.n_tokens() - 1);
  return batch;
}

// The same greedy run driven straight through a CUDA backend with non-default options (one sequence, blocks in
// order, slot = position), by the forward every backend runs.
std::vector<int32_t> greedy_generate_direct(const Model& model, const CudaBackendOptions& options,
                                            const std::vector<int32_t>& prompt, int n_generate) {
  const int block_size = 16, num_blocks = 64;
  CudaBackend backend(kv_geometry_for(model, num_blocks, block_size), forward_weight_set(model.config, model.weights),
                      options);
  std::vector<int32_t> table(num_blocks);
  std::iota(table.begin(), table.end(), 0);
  std::vector<float> logits(static_cast<size_t>(model.config.n_vocab));
  std::vector<int32_t> generated;
  int context = 0;
  std::vector<int32_t> next = prompt;
  while (true) {
    const ForwardBatch batch = one_sequence_batch(next, context, table, block_size);
    context += static_cast<int>(next.size());
    llama_forward(backend, model.config, model.weights, batch, logits.data());
    if (static_cast<int>(generated.size()) == n_generate) break;
    generated.push_back(static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin()));
    next = {generated.back()};
  }
  return generated;
}

// stories260K from the shared folder, or null (after saying so) when this machine does not have it.
std::unique_ptr<Model> load_stories() {
  const std::string path = PAGEDLLM_SHARED_DIR "/models/stories260K.gguf";
  if (!std::filesystem::exists(path)) {
    MESSAGE("skipped: " << path << " is not present");
    return nullptr;
  }
  return Model::load(path);
}

std::vector<int32_t> stories_prompt(const Model& model) {
  std::vector<int32_t> prompt = model.tokenizer->encode("Once upon a time, there was a little girl named Lily who", true, false);
  REQUIRE(prompt.size() > 8);  // long enough that its prefill takes the cuBLAS path
  return prompt;
}

}  // namespace

TEST_CASE("end to end: stories260K greedy tokens on the GPU equal the CPU's for 32 tokens") {
  SKIP_WITHOUT_DEVICE();
  auto model = load_stories();
  if (model == nullptr) return;
  const std::vector<int32_t> prompt = stories_prompt(*model);
  const std::vector<int32_t> cpu = greedy_generate(*model, DeviceKind::Cpu, prompt, 32);
  CHECK(greedy_generate(*model, DeviceKind::Cuda, prompt, 32) == cpu);
  CudaBackendOptions all_cublas;
  all_cublas.gemv_max_rows = 0;
  CHECK(greedy_generate_direct(*model, all_cublas, prompt, 32) == cpu);
  CudaBackendOptions all_gemv;  // an 8-token prompt stays on the GEMV path
  const std::vector<int32_t> short_prompt(prompt.begin(), prompt.begin() + 8);
  CHECK(greedy_generate_direct(*model, all_gemv, short_prompt, 32) ==
        greedy_generate(*model, DeviceKind::Cpu, short_prompt, 32));
}

TEST_CASE("end to end: SmolLM2-135M (Q4_1) greedy tokens on the GPU equal the CPU's for 32 tokens") {
  SKIP_WITHOUT_DEVICE();
  const std::string path = PAGEDLLM_SOURCE_DIR "/models/SmolLM2-135M-Instruct.Q4_1.gguf";
  if (!std::filesystem::exists(path)) {
    MESSAGE("skipped: " << path << " is not present (scripts/setup.sh installs it)");
    return;
  }
  auto model = Model::load(path);
  const std::vector<int32_t> prompt =
      model->tokenizer->encode("<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
                               true, true);
  const std::vector<int32_t> cpu = greedy_generate(*model, DeviceKind::Cpu, prompt, 32);
  const std::vector<int32_t> gpu = greedy_generate(*model, DeviceKind::Cuda, prompt, 32);
  CHECK(gpu == cpu);
  MESSAGE("SmolLM2 GPU text: " << model->tokenizer->decode(gpu));
}

TEST_CASE("end to end: a batch mixing prefill and decode, with a forked (copy-on-write) sequence, matches the CPU") {
  SKIP_WITHOUT_DEVICE();
  auto model = load_stories();
  if (model == nullptr) return;
  const std::vector<int32_t> prompt_a = stories_prompt(*model);
  const std::vector<int32_t> prompt_b = model->tokenizer->encode("The cat sat", true, false);
  // Logits tolerance: 1e-3 of the largest logit (F32 weights; the GPU sums in another order).
  auto run = [&](DeviceKind device) {
    RunnerConfig config;
    config.n_ctx = 256;
    config.n_seq_hint = 4;
    config.n_threads = 4;
    config.device = device;
    test::DirectRunner engine(*model, config);
    std::vector<std::vector<float>> all_logits;
    const SeqId a = engine.create_sequence();
    const SeqId b = engine.create_sequence();
    std::vector<test::DirectWork> work = {{a, prompt_a, true}, {b, prompt_b, true}};
    std::span<const float> logits = engine.step(work);
    all_logits.emplace_back(logits.begin(), logits.end());
    const SeqId c = engine.cache().fork(b);  // shares b's partly filled last block
    const int32_t next_tokens[3] = {5, 17, 42};
    for (int step = 0; step < 6; ++step) {
      std::vector<test::DirectWork> decode = {{a, std::span<const int32_t>(&next_tokens[0], 1), true},
                                          {b, std::span<const int32_t>(&next_tokens[1], 1), true},
                                          {c, std::span<const int32_t>(&next_tokens[2], 1), true}};
      logits = engine.step(decode);
      all_logits.emplace_back(logits.begin(), logits.end());
    }
    CHECK(engine.cache().stats().cow_copies >= 1);
    return all_logits;
  };
  const auto cpu = run(DeviceKind::Cpu);
  const auto gpu = run(DeviceKind::Cuda);
  REQUIRE(cpu.size() == gpu.size());
  for (size_t step = 0; step < cpu.size(); ++step) {
    CAPTURE(step);
    CHECK(relative_error(gpu[step], cpu[step]) < 1e-3);
  }
}

namespace {

// The logits of the same forced tokens (a 20-token prompt, then 20 single-token decodes) on the CPU and on the GPU,
// checked within `tolerance` of the largest logit. Random weights give flat logits whose argmax is fragile, so the
// logits are compared rather than greedy tokens.
void check_synthetic_cpu_vs_gpu(const SyntheticModelSpec& spec, double tolerance) {
  const std::vector<uint8_t> image = build_synthetic_gguf(spec);
  Model model;
  model.file = GgufFile::from_memory(image, "synthetic");
  model.config = read_model_config(*model.file);
  model.weights = load_llama_weights(*model.file, model.config);
  std::vector<int32_t> tokens;
  for (int i = 0; i < 40; ++i) tokens.push_back(3 + (i * 37) % static_cast<int>(spec.n_vocab - 3));
  auto run = [&](DeviceKind device) {
    RunnerConfig config;
    config.n_ctx = 128;
    config.n_threads = 4;
    config.device = device;
    test::DirectRunner engine(model, config);
    const SeqId seq = engine.create_sequence();
    std::vector<std::vector<float>> all_logits;
    test::DirectWork prompt{seq, std::span<const int32_t>(tokens.data(), 20), true};
    std::span<const float> logits = engine.step(std::span(&prompt, 1));
    all_logits.emplace_back(logits.begin(), logits.end());
    for (size_t i = 20; i < tokens.size(); ++i) {
      test::DirectWork decode{seq, std::span<const int32_t>(&tokens[i], 1), true};
      logits = engine.step(std::span(&decode, 1));
      all_logits.emplace_back(logits.begin(), logits.end());
    }
    return all_logits;
  };
  const auto cpu = run(DeviceKind::Cpu);
  const auto gpu = run(DeviceKind::Cuda);
  for (size_t step = 0; step < cpu.size(); ++step) {
    CAPTURE(step);
    CHECK(relative_error(gpu[step], cpu[step]) < tolerance);
  }
}

}  // namespace

TEST_CASE("end to end: synthetic models in every GEMV weight type, teacher-forced logits match the CPU") {
  SKIP_WITHOUT_DEVICE();
  // 2e-2 of the largest logit: prefill goes through cuBLAS on f16-dequantized weights for the quantized types.
  for (GgmlType type : {GgmlType::F16, GgmlType::BF16, GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q8_0,
                        GgmlType::Q4_K, GgmlType::Q6_K}) {
    CAPTURE(type_name(type));
    SyntheticModelSpec spec = synthetic_spec("tiny");
    spec.weight_type = type;
    check_synthetic_cpu_vs_gpu(spec, 2e-2);
  }
}

TEST_CASE("end to end: the qwen2 (q/k/v biases) and qwen3 (per-head q/k norm) models on the GPU match the CPU") {
  SKIP_WITHOUT_DEVICE();
  // The same forward on both sides: the family's biases, q/k norm gains and NEOX RoPE go through the device ops.
  for (const char* preset : {"qwen2-tiny", "qwen3-tiny"}) {
    CAPTURE(preset);
    check_synthetic_cpu_vs_gpu(synthetic_spec(preset), 2e-2);
  }
}

TEST_CASE("device sampling through the backend: hundreds of rows with mixed settings, each row its own") {
  SKIP_WITHOUT_DEVICE();
  auto model = load_stories();
  if (model == nullptr) return;
  const std::vector<int32_t> prompt = stories_prompt(*model);
  const int block_size = 16;
  CudaBackend backend(kv_geometry_for(*model, 32, block_size), forward_weight_set(model->config, model->weights));
  std::vector<int32_t> table(32);
  std::iota(table.begin(), table.end(), 0);
  ForwardBatch batch = one_sequence_batch(prompt, 0, table, block_size);
  // 300 logits rows, cycling over the prompt's positions: the device sampler sees 300 different settings rows.
  const int n_rows = 300;
  batch.logit_rows.clear();
  for (int r = 0; r < n_rows; ++r) batch.logit_rows.push_back(r % batch.n_tokens());
  const auto n_vocab = static_cast<size_t>(model->config.n_vocab);
  std::vector<float> logits(static_cast<size_t>(n_rows) * n_vocab);
  const float* device_logits = llama_forward(backend, model->config, model->weights, batch, logits.data());
  REQUIRE(device_logits != nullptr);
  // Rows alternate between settings whose outcome is fixed: greedy, and top-k 1 at a high temperature (the only
  // candidate left is the argmax). If one row's settings landed on another's, or a token overwrote a settings row,
  // a sampled (top-k 40) row would be drawn from instead and the check below would see a different token.
  std::vector<GpuSamplingSettings> settings(static_cast<size_t>(n_rows));
  for (int r = 0; r < n_rows; ++r) {
    GpuSamplingSettings& g = settings[static_cast<size_t>(r)];
    if (r % 2 == 0) {
      g.temperature = 0.0f;
    } else {
      g.temperature = 1.5f;
      g.top_k = 1;
      g.uniform = static_cast<float>(r) / static_cast<float>(n_rows);
    }
  }
  std::vector<int32_t> tokens(static_cast<size_t>(n_rows), -1);
  const uint64_t allocations_before = cuda::buffer_allocations();
  backend.sample(device_logits, static_cast<int64_t>(n_vocab), settings, tokens.data());
  backend.sample(device_logits, static_cast<int64_t>(n_vocab), settings, tokens.data());
  CHECK(cuda::buffer_allocations() - allocations_before <= 3);  // the first call's buffers, then none
  for (int r = 0; r < n_rows; ++r) {
    const auto begin = logits.begin() + static_cast<long>(static_cast<size_t>(r) * n_vocab);
    CAPTURE(r);
    CHECK(tokens[static_cast<size_t>(r)] == std::max_element(begin, begin + static_cast<long>(n_vocab)) - begin);
  }
}

TEST_CASE("steady-state decoding allocates no device or pinned memory") {
  SKIP_WITHOUT_DEVICE();
  auto model = load_stories();
  if (model == nullptr) return;
  RunnerConfig config;
  config.n_ctx = 512;
  config.device = DeviceKind::Cuda;
  test::DirectRunner engine(*model, config);
  const SeqId seq = engine.create_sequence();
  const std::vector<int32_t> prompt = stories_prompt(*model);
  test::DirectWork work{seq, std::span<const int32_t>(prompt), true};
  engine.step(std::span(&work, 1));
  int32_t token = 5;
  for (int i = 0; i < 8; ++i) {  // warm up: buffers reach their decode sizes
    test::DirectWork decode{seq, std::span<const int32_t>(&token, 1), true};
    engine.step(std::span(&decode, 1));
  }
  const uint64_t before = cuda::buffer_allocations();
  for (int i = 0; i < 200; ++i) {
    test::DirectWork decode{seq, std::span<const int32_t>(&token, 1), true};
    engine.step(std::span(&decode, 1));
  }
  CHECK(cuda::buffer_allocations() == before);
}

#endif  // PAGEDLLM_HAVE_CUDA
