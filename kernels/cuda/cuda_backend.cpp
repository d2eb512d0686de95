#include "kernels/cuda/cuda_backend.h"

#include "common/error.h"

#if defined(PAGEDLLM_HAVE_CUDA)

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <unordered_map>
#include <vector>

#include "kernels/common/batch_check.h"
#include "kernels/cuda/attention_plan.h"
#include "kernels/cuda/cublas_library.h"
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/device_info.h"
#include "tensor/float16.h"

namespace pagedllm {

using cuda::DeviceBuffer;
using cuda::DeviceMatrix;
using cuda::PinnedBuffer;

namespace {

size_t align_up(size_t value, size_t alignment) { return (value + alignment - 1) / alignment * alignment; }

// Where each input of a forward sits inside the packed upload, in int32 units; every section starts on a 16-byte
// boundary.
struct InputLayout {
  size_t tokens, positions, slots, logit_rows, tables, seqs, tiles, work, merges, total;
};

// The sampling upload: settings rows, then the sampled tokens in a section of their own.
struct SamplingLayout {
  size_t rows, tokens, total;  // in int32 units
};

}  // namespace

struct CudaBackend::Impl {
  KvGeometry kv_geometry;
  CudaBackendOptions options;
  GpuDeviceInfo device;
  cudaStream_t stream = nullptr;
  cublasHandle_t cublas = nullptr;

  DeviceBuffer weights;  // every matrix and vector, each 256-byte aligned
  uint64_t weight_bytes = 0;
  std::unordered_map<const void*, DeviceMatrix> matrices;  // by the host view's data pointer
  std::unordered_map<const float*, const float*> vectors;  // host pointer -> device pointer
  int64_t widest_input = 0;  // largest n_cols of any matrix (sizes the activation scratch)
  bool any_quantized = false;

  DeviceBuffer kv;         // [n_layer][2][num_blocks][block_size][n_head_kv][head_dim] f16
  size_t pool_bytes = 0;   // one layer's K (or V) pool
  size_t block_bytes = 0;  // one block of one pool

  std::vector<DeviceBuffer> buffers;  // the forward's buffers, by slot
  DeviceBuffer matmul_activations;    // converted activations (cuda::matmul_activation_bytes)
  DeviceBuffer weight_tile;           // dequantized weight rows for cuBLAS
  DeviceBuffer partials;              // [n_partials, n_head, head_dim + 2] split-decode partials
  DeviceBuffer reference_scores;      // the naive attention's score matrix
  DeviceBuffer inputs;                // the packed per-forward inputs (InputLayout)
  PinnedBuffer staging;               // host side of `inputs`
  DeviceBuffer sampling_inputs;       // SamplingLayout
  PinnedBuffer sampling_staging;
  PinnedBuffer download;              // host side of logits / tokens

  // The current batch and its plans, rebuilt by begin_batch (the vectors keep their capacity).
  const ForwardBatch* batch = nullptr;
  std::vector<cuda::DeviceSeq> seqs;
  std::vector<int32_t> tables;
  std::vector<cuda::FlashTile> tiles;
  cuda::FlashTileShape tile_shape{1, 1};
  cuda::DecodePlan decode;
  InputLayout layout{};
  int planned_group = 0;  // the GQA group the plans were made for

  Impl(const KvGeometry& kv, const CudaBackendOptions& o) : kv_geometry(kv), options(o) {}

  ~Impl() {
    if (cublas != nullptr) cuda::cublas_library().destroy(cublas);
    if (stream != nullptr) cudaStreamDestroy(stream);
  }

  void select_device() const { PAGEDLLM_CUDA_CHECK(cudaSetDevice(options.device_index)); }

  const ForwardBatch& current() const {
    if (batch == nullptr) fail("internal: a CUDA op that reads the batch ran before begin_batch");
    return *batch;
  }

  // ------------------------------------------------------------ construction

  void upload_weights(const WeightSet& set) {
    // Each distinct host array once (a tied output matrix is the embedding matrix), at an aligned offset.
    std::unordered_map<const void*, size_t> offsets;
    std::vector<std::pair<const void*, size_t>> order;  // host pointer, bytes
    size_t total = 0;
    auto reserve = [&](const void* host, size_t bytes) {
      if (host == nullptr || offsets.count(host) != 0) return;
      const size_t offset = align_up(total, 256);
      offsets.emplace(host, offset);
      order.emplace_back(host, bytes);
      total = offset + bytes;
    };
    for (const WeightMatrix& m : set.matrices) {
      if (!cuda::can_dequantize_on_device(m.type)) {
        fail("the CUDA backend cannot compute {} weights ({} x {} matrix)", type_name(m.type), m.n_rows, m.n_cols);
      }
      reserve(m.data, weight_matrix_bytes(m));
      widest_input = std::max(widest_input, m.n_cols);
      any_quantized = any_quantized || (m.type != GgmlType::F32 && m.type != GgmlType::F16 && m.type != GgmlType::BF16);
    }
    for (const WeightSet::Vector& v : set.vectors) reserve(v.data, static_cast<size_t>(v.size) * sizeof(float));
    weights.allocate(total);
    weight_bytes = total;
    for (const auto& [host, bytes] : order) {
      PAGEDLLM_CUDA_CHECK(cudaMemcpy(weights.as<uint8_t>() + offsets.at(host), host, bytes, cudaMemcpyHostToDevice));
    }
    for (const WeightMatrix& m : set.matrices) {
      DeviceMatrix d;
      d.type = m.type;
      d.data = weights.as<uint8_t>() + offsets.at(m.data);
      d.n_cols = m.n_cols;
      d.n_rows = m.n_rows;
      d.row_bytes = row_bytes(m.type, m.n_cols);
      matrices.emplace(m.data, d);
    }
    for (const WeightSet::Vector& v : set.vectors) {
      vectors.emplace(v.data, reinterpret_cast<const float*>(weights.as<uint8_t>() + offsets.at(v.data)));
    }
  }

  const DeviceMatrix& device_matrix(const WeightMatrix& m) const {
    auto it = matrices.find(m.data);
    if (it == matrices.end()) fail("internal: a {} x {} weight matrix the CUDA backend was not given", m.n_rows, m.n_cols);
    return it->second;
  }

  const float* device_vector(const float* host) const {
    if (host == nullptr) return nullptr;
    auto it = vectors.find(host);
    if (it == vectors.end()) fail("internal: a weight vector the CUDA backend was not given");
    return it->second;
  }

  void allocate_kv() {
    block_bytes = static_cast<size_t>(kv_geometry.block_size) * static_cast<size_t>(kv_geometry.n_head_kv) *
                  static_cast<size_t>(kv_geometry.head_dim) * sizeof(uint16_t);
    pool_bytes = block_bytes * static_cast<size_t>(kv_geometry.num_blocks);
    kv.allocate(pool_bytes * 2 * static_cast<size_t>(kv_geometry.n_layer));
  }

  uint16_t* k_pool(int layer) const {
    return reinterpret_cast<uint16_t*>(kv.as<uint8_t>() + (2 * static_cast<size_t>(layer)) * pool_bytes);
  }
  uint16_t* v_pool(int layer) const {
    return reinterpret_cast<uint16_t*>(kv.as<uint8_t>() + (2 * static_cast<size_t>(layer) + 1) * pool_bytes);
  }

  template <typename T>
  const T* input(size_t at) const {
    return reinterpret_cast<const T*>(inputs.as<int32_t>() + at);
  }

  // What both attention kernels (the tiled one and the naive reference) are given for one layer of the batch.
  cuda::AttentionLaunch attention_launch(int layer, const float* q, float* out, const AttentionParams& params) const {
    cuda::AttentionLaunch args;
    args.q = q;
    args.out = out;
    args.k_pool = k_pool(layer);
    args.v_pool = v_pool(layer);
    args.seqs = input<cuda::DeviceSeq>(layout.seqs);
    args.block_tables = input<int32_t>(layout.tables);
    args.n_head = params.n_head;
    args.n_head_kv = params.n_head_kv;
    args.head_dim = params.head_dim;
    args.block_size = kv_geometry.block_size;
    args.scale = params.scale;
    args.window = params.window;
    return args;
  }

  cuda::MatmulWorkspace workspace(int64_t n_rows) {
    matmul_activations.reserve(cuda::matmul_activation_bytes(n_rows, widest_input));
    if (any_quantized) weight_tile.reserve(cuda::kWeightTileBytes);
    cuda::MatmulWorkspace w;
    w.activations = matmul_activations.data();
    w.activation_bytes = matmul_activations.size_bytes();
    w.weight_tile = weight_tile.data();
    w.weight_tile_bytes = weight_tile.size_bytes();
    w.cublas = cublas;
    return w;
  }

  // ------------------------------------------------------------ one forward

  // Plans the attention launches for GQA group `group` and uploads every input of the batch in one copy.
  void plan_and_upload(int group) {
    const ForwardBatch& b = current();
    const int64_t n = b.n_tokens();
    const auto n_logits = static_cast<int64_t>(b.logit_rows.size());
    tile_shape = cuda::flash_tile_shape(group, cuda::flash_kernel_rows(kv_geometry.head_dim));
    cuda::plan_flash_tiles(seqs, group, tile_shape, tiles);
    cuda::DecodePlanParams decode_params;
    decode_params.block_size = kv_geometry.block_size;
    decode_params.n_head_kv = kv_geometry.n_head_kv;
    decode_params.group = group;
    decode_params.target_ctas = 2 * std::max(1, device.multiprocessors);
    cuda::plan_decode(seqs, decode_params, decode);

    size_t cursor = 0;
    auto section = [&cursor](size_t ints) {
      const size_t begin = cursor;
      cursor = align_up(cursor + ints, 4);
      return begin;
    };
    layout.tokens = section(static_cast<size_t>(n));
    layout.positions = section(static_cast<size_t>(n));
    layout.slots = section(static_cast<size_t>(n));
    layout.logit_rows = section(static_cast<size_t>(n_logits));
    layout.tables = section(tables.size());
    layout.seqs = section(seqs.size() * sizeof(cuda::DeviceSeq) / 4);
    layout.tiles = section(tiles.size() * sizeof(cuda::FlashTile) / 4);
    layout.work = section(decode.work.size() * sizeof(cuda::DecodeWork) / 4);
    layout.merges = section(decode.merges.size() * sizeof(cuda::DecodeMerge) / 4);
    layout.total = cursor;
    const size_t bytes = layout.total * sizeof(int32_t);
    staging.reserve(bytes);
    inputs.reserve(bytes);
    auto* packed = staging.as<int32_t>();
    auto put = [packed](size_t at, const void* data, size_t size_bytes) {
      if (size_bytes > 0) std::memcpy(packed + at, data, size_bytes);
    };
    put(layout.tokens, b.tokens.data(), static_cast<size_t>(n) * 4);
    put(layout.positions, b.positions.data(), static_cast<size_t>(n) * 4);
    put(layout.slots, b.slot_mapping.data(), static_cast<size_t>(n) * 4);
    put(layout.logit_rows, b.logit_rows.data(), static_cast<size_t>(n_logits) * 4);
    put(layout.tables, tables.data(), tables.size() * 4);
    put(layout.seqs, seqs.data(), seqs.size() * sizeof(cuda::DeviceSeq));
    put(layout.tiles, tiles.data(), tiles.size() * sizeof(cuda::FlashTile));
    put(layout.work, decode.work.data(), decode.work.size() * sizeof(cuda::DecodeWork));
    put(layout.merges, decode.merges.data(), decode.merges.size() * sizeof(cuda::DecodeMerge));
    PAGEDLLM_CUDA_CHECK(cudaMemcpyAsync(inputs.data(), staging.data(), bytes, cudaMemcpyHostToDevice, stream));
    if (decode.n_partials > 0) {
      partials.reserve(static_cast<size_t>(decode.n_partials) * static_cast<size_t>(group * kv_geometry.n_head_kv) *
                       static_cast<size_t>(kv_geometry.head_dim + 2) * sizeof(float));
    }
    planned_group = group;
  }
};

CudaBackend::CudaBackend(const KvGeometry& kv, const WeightSet& weights, const CudaBackendOptions& options)
    : impl_(std::make_unique<Impl>(kv, options)) {
  if (kv.dtype != KvDtype::F16) {
    fail("--kv-type {} is not supported by the CUDA backend (its K/V pools are f16)", kv_dtype_name(kv.dtype));
  }
  if (kv.num_blocks < 1 || kv.block_size < 1) fail("internal: a CUDA KV pool of {} blocks of {}", kv.num_blocks,
                                                   kv.block_size);
  if (kv.head_dim < 1 || kv.head_dim > cuda::kDecodeMaxHeadDim) {
    fail("the CUDA backend supports head_dim up to {}, this model has {}", cuda::kDecodeMaxHeadDim, kv.head_dim);
  }
  std::string why_none;
  const std::vector<GpuDeviceInfo> devices = query_cuda_devices(why_none);
  if (devices.empty()) fail("--device cuda: no CUDA device found ({})", why_none);
  auto found = std::find_if(devices.begin(), devices.end(),
                            [&](const GpuDeviceInfo& d) { return d.index == options.device_index; });
  if (found == devices.end()) {
    fail("CUDA device {} does not exist ({} device(s) found)", options.device_index, devices.size());
  }
  Impl& s = *impl_;
  s.device = *found;
  s.select_device();
  PAGEDLLM_CUDA_CHECK(cudaStreamCreateWithFlags(&s.stream, cudaStreamNonBlocking));
  const cuda::CublasLibrary& cublas = cuda::cublas_library();
  if (cublas.create(&s.cublas) != CUBLAS_STATUS_SUCCESS) fail("cannot create a cuBLAS handle on {}", s.device.name);
  // FP32 products stay FP32 (no TF32), so F32 models compute what the CPU computes.
  cublas.set_math_mode(s.cublas, CUBLAS_DEFAULT_MATH);
  s.upload_weights(weights);
  s.allocate_kv();
}

std::unique_ptr<Backend> make_cuda_backend(const KvGeometry& kv, const WeightSet& weights,
                                           const CudaBackendOptions& options) {
  return std::make_unique<CudaBackend>(kv, weights, options);
}

CudaBackend::~CudaBackend() = default;

const KvGeometry& CudaBackend::kv_geometry() const { return impl_->kv_geometry; }
uint64_t CudaBackend::kv_pool_bytes() const { return impl_->kv.size_bytes(); }
const GpuDeviceInfo& CudaBackend::device_info() const { return impl_->device; }
uint64_t CudaBackend::weight_bytes() const { return impl_->weight_bytes; }

BandwidthPeak CudaBackend::peak_bandwidth() {
  const double peak = impl_->device.peak_bandwidth_gb_s;
  return BandwidthPeak{peak, peak > 0 ? "device properties" : "unknown: the device did not report its memory clock"};
}

ComputePeak CudaBackend::peak_compute() {
  // Dense f16 tensor-core multiply-adds per clock per SM, by architecture (NVIDIA's published per-SM rates):
  // Ampere (8.0) 1024, consumer Ampere/Ada (8.6, 8.9) 512, Hopper (9.0) 2048. Two operations each.
  const GpuDeviceInfo& d = impl_->device;
  int fma_per_clock = 0;
  if (d.compute_major == 8 && d.compute_minor == 0) fma_per_clock = 1024;
  else if (d.compute_major == 8) fma_per_clock = 512;
  else if (d.compute_major == 9) fma_per_clock = 2048;
  int clock_khz = 0;
  if (fma_per_clock == 0 || cudaDeviceGetAttribute(&clock_khz, cudaDevAttrClockRate, d.index) != cudaSuccess ||
      clock_khz <= 0) {
    cudaGetLastError();
    return ComputePeak{0.0, fmt::format("unknown for compute capability {}.{}", d.compute_major, d.compute_minor)};
  }
  const double gflops = 2.0 * fma_per_clock * d.multiprocessors * clock_khz / 1e6;
  return ComputePeak{gflops, fmt::format("f16 tensor cores: {} SMs x {} MHz x {} FMA/clock", d.multiprocessors,
                                         clock_khz / 1000, fma_per_clock)};
}

void CudaBackend::begin_batch(const ForwardBatch& batch, const AttentionParams& attention) {
  Impl& s = *impl_;
  check_forward_batch(batch, s.kv_geometry);
  s.select_device();
  // The staging buffers are rewritten below: the previous forward's copies out of them must be done.
  PAGEDLLM_CUDA_CHECK(cudaStreamSynchronize(s.stream));
  s.batch = &batch;
  s.seqs.clear();
  s.tables.clear();
  for (const SeqView& v : batch.seqs) {
    const int64_t needed_blocks = (static_cast<int64_t>(v.context_length) + s.kv_geometry.block_size - 1) /
                                  s.kv_geometry.block_size;
    s.seqs.push_back(cuda::DeviceSeq{v.first_row, v.n_new, v.context_length, static_cast<int32_t>(s.tables.size())});
    s.tables.insert(s.tables.end(), v.block_table.begin(), v.block_table.begin() + needed_blocks);
  }
  if (attention.n_head_kv != s.kv_geometry.n_head_kv || attention.head_dim != s.kv_geometry.head_dim ||
      attention.n_head < 1 || attention.n_head % attention.n_head_kv != 0) {
    fail("internal: attention over {} heads of {} with a pool of {} KV heads of {}", attention.n_head,
         attention.head_dim, s.kv_geometry.n_head_kv, s.kv_geometry.head_dim);
  }
  s.plan_and_upload(attention.n_head / attention.n_head_kv);
}

float* CudaBackend::buffer(int slot, int64_t n) {
  Impl& s = *impl_;
  if (slot < 0 || n < 0) fail("internal: buffer slot {} of {} floats", slot, n);
  if (static_cast<size_t>(slot) >= s.buffers.size()) s.buffers.resize(static_cast<size_t>(slot) + 1);
  DeviceBuffer& storage = s.buffers[static_cast<size_t>(slot)];
  storage.reserve(static_cast<size_t>(n) * sizeof(float));
  return storage.as<float>();
}

void CudaBackend::copy_blocks(std::span<const BlockCopy> copies) {
  Impl& s = *impl_;
  s.select_device();
  for (const BlockCopy& copy : copies) {
    if (copy.src < 0 || copy.src >= s.kv_geometry.num_blocks || copy.dst < 0 || copy.dst >= s.kv_geometry.num_blocks) {
      fail("internal: block copy {} -> {} outside the pool of {}", copy.src, copy.dst, s.kv_geometry.num_blocks);
    }
    // One launch per copy, in order on the stream: a later copy may overwrite an earlier one's source.
    cuda::copy_kv_block(s.kv.as<uint8_t>(), 2 * s.kv_geometry.n_layer, s.pool_bytes, s.block_bytes, copy.src,
                        copy.dst, s.stream);
  }
}

void CudaBackend::embed(const WeightMatrix& table, float* out) {
  Impl& s = *impl_;
  const ForwardBatch& b = s.current();
  for (const int32_t token : b.tokens) {
    if (token < 0 || token >= table.n_rows) {
      fail("token id {} is out of range: the embedding matrix has {} rows", token, table.n_rows);
    }
  }
  cuda::embedding_lookup(s.device_matrix(table), s.input<int32_t>(s.layout.tokens), b.n_tokens(), out, s.stream);
}

void CudaBackend::rms_norm(const float* x, const float* gain, float* out, int64_t n_rows, int64_t n, float eps) {
  Impl& s = *impl_;
  cuda::rms_norm(x, s.device_vector(gain), out, n_rows, n, eps, s.stream);
}

void CudaBackend::add_rms_norm(float* x, const float* delta, const float* gain, float* out, int64_t n_rows,
                               int64_t n, float eps) {
  Impl& s = *impl_;
  cuda::add_rms_norm(x, delta, s.device_vector(gain), out, n_rows, n, eps, s.stream);
}

void CudaBackend::rms_norm_logit_rows(const float* x, const float* gain, float* out, int64_t n, float eps) {
  Impl& s = *impl_;
  const auto n_logits = static_cast<int64_t>(s.current().logit_rows.size());
  cuda::rms_norm_rows(x, s.input<int32_t>(s.layout.logit_rows), n_logits, s.device_vector(gain), out, n, eps,
                      s.stream);
}

void CudaBackend::matmul(std::span<const WeightMatrix* const> weights, const float* x, int64_t n_rows,
                         std::span<float* const> y) {
  Impl& s = *impl_;
  if (weights.size() != y.size() || weights.empty() || weights.size() > 3) {
    fail("internal: {} matrices for {} outputs (1..3 per call)", weights.size(), y.size());
  }
  DeviceMatrix device[3];
  for (size_t i = 0; i < weights.size(); ++i) device[i] = s.device_matrix(*weights[i]);
  cuda::matmul(device, y.data(), static_cast<int>(weights.size()), x, n_rows, s.workspace(n_rows),
               s.options.gemv_max_rows, s.stream);
}

void CudaBackend::add_bias(float* x, const float* bias, int64_t n_rows, int64_t n) {
  Impl& s = *impl_;
  cuda::add_bias(x, s.device_vector(bias), n_rows, n, s.stream);
}

void CudaBackend::rope(float* q, float* k, int n_head, int n_head_kv, int head_dim, const RopeParams& params,
                       const float* freq_factors) {
  Impl& s = *impl_;
  // The same f32 expression as the CPU kernel's, so both sides start from the same theta scale.
  const float theta_scale = std::pow(params.freq_base, -2.0f / static_cast<float>(params.n_rot));
  cuda::rope_qk(q, k, s.input<int32_t>(s.layout.positions), s.current().n_tokens(), n_head, n_head_kv, head_dim,
                params, theta_scale, s.device_vector(freq_factors), s.stream);
}

void CudaBackend::write_kv(int layer, const float* k, const float* v) {
  Impl& s = *impl_;
  const int64_t slot_elements = static_cast<int64_t>(s.kv_geometry.n_head_kv) * s.kv_geometry.head_dim;
  cuda::kv_write(k, v, s.input<int32_t>(s.layout.slots), s.current().n_tokens(), slot_elements, s.k_pool(layer),
                 s.v_pool(layer), s.stream);
}

void CudaBackend::attention(int layer, float* q, float* out, const AttentionParams& params) {
  Impl& s = *impl_;
  if (params.n_head / params.n_head_kv != s.planned_group) {
    fail("internal: attention with {} query heads per KV head, planned for {}", params.n_head / params.n_head_kv,
         s.planned_group);
  }
  const int64_t n = s.current().n_tokens();
  cuda::round_through_f16(q, n * params.n_head * params.head_dim, s.stream);
  const cuda::AttentionLaunch args = s.attention_launch(layer, q, out, params);
  cuda::flash_attention(args, s.input<cuda::FlashTile>(s.layout.tiles), static_cast<int>(s.tiles.size()),
                        s.tile_shape.tokens_per_tile, s.tile_shape.heads_per_tile, s.stream);
  cuda::paged_decode_attention(args, s.input<cuda::DecodeWork>(s.layout.work), static_cast<int>(s.decode.work.size()),
                               s.decode.heads_per_item, s.input<cuda::DecodeMerge>(s.layout.merges),
                               static_cast<int>(s.decode.merges.size()), s.partials.as<float>(), s.stream);
}

void CudaBackend::attention_reference(int layer, const float* q, float* out, const AttentionParams& params) {
  Impl& s = *impl_;
  const cuda::AttentionLaunch args = s.attention_launch(layer, q, out, params);
  const int n_seqs = static_cast<int>(s.seqs.size());
  s.reference_scores.reserve(cuda::naive_attention_scores_bytes(s.seqs.data(), n_seqs, params.n_head));
  cuda::naive_attention(args, s.seqs.data(), n_seqs, s.reference_scores.as<float>(), s.stream);
}

void CudaBackend::swiglu(float* gate, const float* up, int64_t n) { cuda::swiglu(gate, up, n, impl_->stream); }

void CudaBackend::geglu(float* gate, const float* up, int64_t n) { cuda::geglu(gate, up, n, impl_->stream); }

void CudaBackend::scale(float* x, float factor, int64_t n) { cuda::scale(x, factor, n, impl_->stream); }

void CudaBackend::add(float* x, const float* y, int64_t n) { cuda::add_in_place(x, y, n, impl_->stream); }

void CudaBackend::read_to_host(const float* x, int64_t n, float* host) {
  Impl& s = *impl_;
  const size_t bytes = static_cast<size_t>(n) * sizeof(float);
  if (bytes > 0) {
    s.download.reserve(bytes);
    PAGEDLLM_CUDA_CHECK(cudaMemcpyAsync(s.download.data(), x, bytes, cudaMemcpyDeviceToHost, s.stream));
  }
  PAGEDLLM_CUDA_CHECK(cudaStreamSynchronize(s.stream));
  if (bytes > 0) std::memcpy(host, s.download.data(), bytes);
}

void CudaBackend::synchronize() {
  impl_->select_device();
  PAGEDLLM_CUDA_CHECK(cudaStreamSynchronize(impl_->stream));
}

void CudaBackend::sample(const float* logits, int64_t n_vocab, std::span<const GpuSamplingSettings> settings,
                         int32_t* tokens) {
  Impl& s = *impl_;
  const size_t n_rows = settings.size();
  if (n_rows == 0) return;
  s.select_device();
  SamplingLayout layout{};
  layout.rows = 0;
  layout.tokens = align_up(n_rows * sizeof(cuda::SamplingRow) / 4, 4);
  layout.total = layout.tokens + align_up(n_rows, 4);
  const size_t bytes = layout.total * sizeof(int32_t);
  s.sampling_staging.reserve(bytes);
  s.sampling_inputs.reserve(bytes);
  auto* rows = s.sampling_staging.as<cuda::SamplingRow>();
  for (size_t i = 0; i < n_rows; ++i) {
    const GpuSamplingSettings& g = settings[i];
    rows[i] = cuda::SamplingRow{g.temperature, g.top_k, g.top_p, g.min_p, g.uniform};
  }
  PAGEDLLM_CUDA_CHECK(cudaMemcpyAsync(s.sampling_inputs.data(), s.sampling_staging.data(),
                                      n_rows * sizeof(cuda::SamplingRow), cudaMemcpyHostToDevice, s.stream));
  int32_t* device_tokens = s.sampling_inputs.as<int32_t>() + layout.tokens;
  cuda::sample_tokens(logits, static_cast<int64_t>(n_rows), n_vocab, s.sampling_inputs.as<cuda::SamplingRow>(),
                      device_tokens, s.stream);
  const size_t token_bytes = n_rows * sizeof(int32_t);
  s.download.reserve(token_bytes);
  PAGEDLLM_CUDA_CHECK(cudaMemcpyAsync(s.download.data(), device_tokens, token_bytes, cudaMemcpyDeviceToHost, s.stream));
  PAGEDLLM_CUDA_CHECK(cudaStreamSynchronize(s.stream));
  std::memcpy(tokens, s.download.data(), token_bytes);
}

void CudaBackend::read_kv(int layer, int32_t slot, float* k_out, float* v_out) const {
  const Impl& s = *impl_;
  const KvGeometry& g = s.kv_geometry;
  if (layer < 0 || layer >= g.n_layer || slot < 0 ||
      static_cast<int64_t>(slot) >= static_cast<int64_t>(g.num_blocks) * g.block_size) {
    fail("internal: read_kv of layer {} slot {}", layer, slot);
  }
  s.select_device();
  const size_t elements = static_cast<size_t>(g.n_head_kv) * static_cast<size_t>(g.head_dim);
  std::vector<uint16_t> raw(2 * elements);
  PAGEDLLM_CUDA_CHECK(cudaStreamSynchronize(s.stream));
  PAGEDLLM_CUDA_CHECK(cudaMemcpy(raw.data(), s.k_pool(layer) + static_cast<size_t>(slot) * elements,
                                 elements * sizeof(uint16_t), cudaMemcpyDeviceToHost));
  PAGEDLLM_CUDA_CHECK(cudaMemcpy(raw.data() + elements, s.v_pool(layer) + static_cast<size_t>(slot) * elements,
                                 elements * sizeof(uint16_t), cudaMemcpyDeviceToHost));
  for (size_t i = 0; i < elements; ++i) {
    k_out[i] = fp16_to_f32(raw[i]);
    v_out[i] = fp16_to_f32(raw[elements + i]);
  }
}

}  // namespace pagedllm

#else  // !PAGEDLLM_HAVE_CUDA

namespace pagedllm {

std::unique_ptr<Backend> make_cuda_backend(const KvGeometry&, const WeightSet&, const CudaBackendOptions&) {
  fail("--device cuda: this pagedllm was built without CUDA (nvcc was not found at configure time)");
}

}  // namespace pagedllm

#endif
