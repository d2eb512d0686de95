#include "engine/cuda_backend.h"

#include "common/error.h"
#include "engine/rope_config.h"

#if defined(PAGEDLLM_HAVE_CUDA)

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <unordered_map>
#include <vector>

#include "tensor/float16.h"
#include "kernels/common/rope.h"
#include "kernels/cuda/attention_plan.h"
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_ops.h"

namespace pagedllm {

using cuda::DeviceBuffer;
using cuda::DeviceMatrix;
using cuda::PinnedBuffer;

namespace {


size_t align_up(size_t value, size_t alignment) { return (value + alignment - 1) / alignment * alignment; }

struct LayerDevice {
  DeviceMatrix attn_q, attn_k, attn_v, attn_output, ffn_gate, ffn_up, ffn_down;
  const float* attn_norm = nullptr;  // [n_embd]
  const float* ffn_norm = nullptr;   // [n_embd]
  const float* bias_q = nullptr;     // optional, [q_dim]
  const float* bias_k = nullptr;     // optional, [kv_dim]
  const float* bias_v = nullptr;     // optional, [kv_dim]
  const float* bias_output = nullptr;// optional, [n_embd]
};

// The places of one forward's inputs inside the packed upload, in int32 units.
struct InputLayout {
  size_t tokens, positions, slots, logit_rows, tables, seqs, tiles, work, merges, sampling, total;
};

}  // namespace

struct CudaBackend::Impl {
  const ModelConfig& config;
  int num_blocks;
  int block_size;
  CudaBackendOptions options;
  GpuDeviceInfo device;
  cudaStream_t stream = nullptr;
  cublasHandle_t cublas = nullptr;

  DeviceBuffer weights;  // every matrix and vector, each 256-byte aligned
  uint64_t weight_bytes = 0;
  DeviceMatrix token_embd, output;
  const float* output_norm = nullptr;  // [n_embd]
  const float* rope_freqs = nullptr;   // [n_rot / 2] or null
  std::vector<LayerDevice> layers;
  int64_t widest_input = 0;            // largest n_cols of any matrix (sizes the activation scratch)
  bool any_quantized = false;

  DeviceBuffer kv;         // [n_layer][2][num_blocks][block_size][n_head_kv][head_dim] f16
  size_t pool_bytes = 0;   // one layer's K (or V) pool
  size_t block_bytes = 0;  // one block of one pool

  RopeParams rope;
  float theta_scale = 1.0f;
  float attention_scale = 1.0f;

  // Activations, grown to the largest batch seen.
  int64_t capacity = 0;
  int64_t logit_capacity = 0;
  DeviceBuffer x;       // [n_tokens, n_embd] residual stream
  DeviceBuffer h;       // [n_tokens, n_embd] normalised input of a sublayer
  DeviceBuffer q;       // [n_tokens, n_head, head_dim]
  DeviceBuffer k;       // [n_tokens, n_head_kv, head_dim]
  DeviceBuffer v;       // [n_tokens, n_head_kv, head_dim]
  DeviceBuffer attn;    // [n_tokens, n_head, head_dim]
  DeviceBuffer proj;    // [n_tokens, n_embd]
  DeviceBuffer gate;    // [n_tokens, n_ff]
  DeviceBuffer up;      // [n_tokens, n_ff]
  DeviceBuffer final_rows;  // [n_logits, n_embd]
  DeviceBuffer logits;      // [n_logits, n_vocab]
  DeviceBuffer matmul_activations;  // converted activations (cuda::matmul_activation_bytes)
  DeviceBuffer weight_tile;         // dequantized weight rows for cuBLAS
  DeviceBuffer partials;            // [n_partials, n_head, head_dim + 2] split-decode partials
  DeviceBuffer inputs;              // the packed per-forward inputs (InputLayout), then sampled tokens
  PinnedBuffer staging;             // host side of `inputs`
  PinnedBuffer download;            // host side of logits / tokens

  // Per-forward host plans, reused.
  std::vector<cuda::DeviceSeq> seqs;
  std::vector<int32_t> tables;
  std::vector<cuda::FlashTile> tiles;
  cuda::FlashTileShape tile_shape{1, 1};
  cuda::DecodePlan decode;
  InputLayout layout{};

  Impl(const ModelConfig& c, int blocks, int block_size_, const CudaBackendOptions& o)
      : config(c), num_blocks(blocks), block_size(block_size_), options(o) {}

  ~Impl() {
    if (cublas != nullptr) cublasDestroy(cublas);
    if (stream != nullptr) cudaStreamDestroy(stream);
  }

  void select_device() const { PAGEDLLM_CUDA_CHECK(cudaSetDevice(options.device_index)); }

  // ------------------------------------------------------------ construction

  void upload_weights(const LlamaWeights& w) {
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
    auto reserve_matrix = [&](const WeightMatrix& m) {
      if (!cuda::can_dequantize_on_device(m.type)) {
        fail("the CUDA backend cannot compute {} weights ({} x {} matrix)", type_name(m.type), m.n_rows, m.n_cols);
      }
      reserve(m.data, weight_matrix_bytes(m));
      widest_input = std::max(widest_input, m.n_cols);
      any_quantized = any_quantized || (m.type != GgmlType::F32 && m.type != GgmlType::F16 && m.type != GgmlType::BF16);
    };
    const size_t embd_bytes = static_cast<size_t>(config.n_embd) * sizeof(float);
    reserve_matrix(w.token_embd);
    reserve_matrix(w.output);
    reserve(w.output_norm, embd_bytes);
    if (w.rope_freqs != nullptr) reserve(w.rope_freqs, static_cast<size_t>(config.n_rot / 2) * sizeof(float));
    const size_t q_bytes = static_cast<size_t>(config.q_dim()) * sizeof(float);
    const size_t kv_bytes = static_cast<size_t>(config.kv_dim()) * sizeof(float);
    for (const LlamaLayerWeights& l : w.layers) {
      for (const WeightMatrix* m : {&l.attn_q, &l.attn_k, &l.attn_v, &l.attn_output, &l.ffn_gate, &l.ffn_up,
                                    &l.ffn_down}) {
        reserve_matrix(*m);
      }
      reserve(l.attn_norm, embd_bytes);
      reserve(l.ffn_norm, embd_bytes);
      reserve(l.bias_q, q_bytes);
      reserve(l.bias_k, kv_bytes);
      reserve(l.bias_v, kv_bytes);
      reserve(l.bias_output, embd_bytes);
    }
    weights.allocate(total);
    weight_bytes = total;
    for (const auto& [host, bytes] : order) {
      PAGEDLLM_CUDA_CHECK(cudaMemcpy(weights.as<uint8_t>() + offsets.at(host), host, bytes, cudaMemcpyHostToDevice));
    }
    auto device_matrix = [&](const WeightMatrix& m) {
      DeviceMatrix d;
      d.type = m.type;
      d.data = weights.as<uint8_t>() + offsets.at(m.data);
      d.n_cols = m.n_cols;
      d.n_rows = m.n_rows;
      d.row_bytes = row_bytes(m.type, m.n_cols);
      return d;
    };
    auto device_vector = [&](const float* host) -> const float* {
      return host == nullptr ? nullptr : reinterpret_cast<const float*>(weights.as<uint8_t>() + offsets.at(host));
    };
    token_embd = device_matrix(w.token_embd);
    output = device_matrix(w.output);
    output_norm = device_vector(w.output_norm);
    rope_freqs = device_vector(w.rope_freqs);
    for (const LlamaLayerWeights& l : w.layers) {
      LayerDevice d;
      d.attn_q = device_matrix(l.attn_q);
      d.attn_k = device_matrix(l.attn_k);
      d.attn_v = device_matrix(l.attn_v);
      d.attn_output = device_matrix(l.attn_output);
      d.ffn_gate = device_matrix(l.ffn_gate);
      d.ffn_up = device_matrix(l.ffn_up);
      d.ffn_down = device_matrix(l.ffn_down);
      d.attn_norm = device_vector(l.attn_norm);
      d.ffn_norm = device_vector(l.ffn_norm);
      d.bias_q = device_vector(l.bias_q);
      d.bias_k = device_vector(l.bias_k);
      d.bias_v = device_vector(l.bias_v);
      d.bias_output = device_vector(l.bias_output);
      layers.push_back(d);
    }
  }

  void allocate_kv() {
    block_bytes = static_cast<size_t>(block_size) * static_cast<size_t>(config.kv_dim()) * sizeof(uint16_t);
    pool_bytes = block_bytes * static_cast<size_t>(num_blocks);
    kv.allocate(pool_bytes * 2 * static_cast<size_t>(config.n_layer));
  }

  uint16_t* k_pool(int layer) const { return reinterpret_cast<uint16_t*>(kv.as<uint8_t>() + (2 * static_cast<size_t>(layer)) * pool_bytes); }
  uint16_t* v_pool(int layer) const { return reinterpret_cast<uint16_t*>(kv.as<uint8_t>() + (2 * static_cast<size_t>(layer) + 1) * pool_bytes); }

  void ensure_capacity(int64_t n, int64_t n_logits) {
    const ModelConfig& c = config;
    if (n > capacity) {
      auto floats = [n](int64_t width) { return static_cast<size_t>(n * width) * sizeof(float); };
      x.allocate(floats(c.n_embd));
      h.allocate(floats(c.n_embd));
      q.allocate(floats(c.q_dim()));
      k.allocate(floats(c.kv_dim()));
      v.allocate(floats(c.kv_dim()));
      attn.allocate(floats(c.q_dim()));
      proj.allocate(floats(c.n_embd));
      gate.allocate(floats(c.n_ff));
      up.allocate(floats(c.n_ff));
      matmul_activations.allocate(cuda::matmul_activation_bytes(n, widest_input));
      capacity = n;
    }
    if (n_logits > logit_capacity) {
      final_rows.allocate(static_cast<size_t>(n_logits * c.n_embd) * sizeof(float));
      logits.allocate(static_cast<size_t>(n_logits * c.n_vocab) * sizeof(float));
      logit_capacity = n_logits;
    }
    if (any_quantized && weight_tile.size_bytes() == 0) weight_tile.allocate(cuda::kWeightTileBytes);
  }

  cuda::MatmulWorkspace workspace() const {
    cuda::MatmulWorkspace w;
    w.activations = matmul_activations.data();
    w.activation_bytes = matmul_activations.size_bytes();
    w.weight_tile = weight_tile.data();
    w.weight_tile_bytes = weight_tile.size_bytes();
    w.cublas = cublas;
    return w;
  }

  // ------------------------------------------------------------ one forward

  // Checks what the kernels would otherwise read out of bounds, plans the attention launches and uploads every
  // input in one copy. `sampling`: the device sampling rows, or empty.
  void prepare(const BatchInput& batch, std::span<const GpuSamplingSettings> sampling) {
    const int64_t n = batch.n_tokens();
    const auto n_logits = static_cast<int64_t>(batch.logit_rows.size());
    if (static_cast<int64_t>(batch.positions.size()) != n || static_cast<int64_t>(batch.slot_mapping.size()) != n) {
      fail("internal: a batch of {} tokens with {} positions and {} slots", n, batch.positions.size(),
           batch.slot_mapping.size());
    }
    const int64_t total_slots = static_cast<int64_t>(num_blocks) * block_size;
    for (int64_t i = 0; i < n; ++i) {
      const int32_t token = batch.tokens[static_cast<size_t>(i)];
      if (token < 0 || token >= config.n_vocab) {
        fail("token id {} is out of range: the embedding matrix has {} rows", token, config.n_vocab);
      }
      const int32_t slot = batch.slot_mapping[static_cast<size_t>(i)];
      if (slot < 0 || slot >= total_slots) fail("internal: slot {} outside the pool of {} slots", slot, total_slots);
    }
    for (int32_t row : batch.logit_rows) {
      if (row < 0 || row >= n) fail("internal: logit row {} outside the batch of {} tokens", row, n);
    }
    seqs.clear();
    tables.clear();
    int64_t rows_covered = 0;
    for (const SeqView& s : batch.seqs) {
      const int64_t needed_blocks = (static_cast<int64_t>(s.context_length) + block_size - 1) / block_size;
      if (s.n_new < 0 || s.n_new > s.context_length || s.first_row < 0 || s.first_row + s.n_new > n ||
          static_cast<int64_t>(s.block_table.size()) < needed_blocks) {
        fail("internal: sequence {} breaks the attention contract (rows {}+{} of {}, context {}, {} blocks)",
             s.seq_id, s.first_row, s.n_new, n, s.context_length, s.block_table.size());
      }
      for (int64_t b = 0; b < needed_blocks; ++b) {
        const int32_t block = s.block_table[static_cast<size_t>(b)];
        if (block < 0 || block >= num_blocks) fail("internal: block {} outside the pool of {}", block, num_blocks);
      }
      seqs.push_back(cuda::DeviceSeq{s.first_row, s.n_new, s.context_length, static_cast<int32_t>(tables.size())});
      tables.insert(tables.end(), s.block_table.begin(), s.block_table.begin() + needed_blocks);
      rows_covered += s.n_new;
    }
    if (rows_covered != n) fail("internal: the sequences cover {} of the batch's {} tokens", rows_covered, n);

    const int group = static_cast<int>(config.n_gqa());
    tile_shape = cuda::flash_tile_shape(group, cuda::flash_kernel_rows(static_cast<int>(config.head_dim)));
    cuda::plan_flash_tiles(seqs, group, tile_shape, tiles);
    cuda::DecodePlanParams decode_params;
    decode_params.block_size = block_size;
    decode_params.n_head_kv = static_cast<int>(config.n_head_kv);
    decode_params.group = group;
    decode_params.target_ctas = 2 * std::max(1, device.multiprocessors);
    cuda::plan_decode(seqs, decode_params, decode);

    // Pack: every section starts on a 16-byte boundary.
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
    layout.sampling = section(sampling.size() * sizeof(cuda::SamplingRow) / 4);
    // Room after the inputs for the sampled tokens.
    layout.total = section(static_cast<size_t>(n_logits));
    const size_t bytes = layout.total * sizeof(int32_t);
    staging.reserve(bytes);
    inputs.reserve(bytes);
    auto* packed = staging.as<int32_t>();
    auto put = [packed](size_t at, const void* data, size_t size_bytes) {
      if (size_bytes > 0) std::memcpy(packed + at, data, size_bytes);
    };
    put(layout.tokens, batch.tokens.data(), static_cast<size_t>(n) * 4);
    put(layout.positions, batch.positions.data(), static_cast<size_t>(n) * 4);
    put(layout.slots, batch.slot_mapping.data(), static_cast<size_t>(n) * 4);
    put(layout.logit_rows, batch.logit_rows.data(), static_cast<size_t>(n_logits) * 4);
    put(layout.tables, tables.data(), tables.size() * 4);
    put(layout.seqs, seqs.data(), seqs.size() * sizeof(cuda::DeviceSeq));
    put(layout.tiles, tiles.data(), tiles.size() * sizeof(cuda::FlashTile));
    put(layout.work, decode.work.data(), decode.work.size() * sizeof(cuda::DecodeWork));
    put(layout.merges, decode.merges.data(), decode.merges.size() * sizeof(cuda::DecodeMerge));
    for (size_t i = 0; i < sampling.size(); ++i) {
      const GpuSamplingSettings& s = sampling[i];
      const cuda::SamplingRow row{s.temperature, s.top_k, s.top_p, s.min_p, s.uniform};
      put(layout.sampling + i * (sizeof(cuda::SamplingRow) / 4), &row, sizeof row);
    }
    PAGEDLLM_CUDA_CHECK(cudaMemcpyAsync(inputs.data(), staging.data(), layout.sampling * sizeof(int32_t) +
                                                                           sampling.size() * sizeof(cuda::SamplingRow),
                                        cudaMemcpyHostToDevice, stream));

    if (decode.n_partials > 0) {
      partials.reserve(static_cast<size_t>(decode.n_partials) * static_cast<size_t>(config.n_head) *
                       static_cast<size_t>(config.head_dim + 2) * sizeof(float));
    }
    ensure_capacity(n, std::max<int64_t>(1, n_logits));
  }

  template <typename T>
  const T* input(size_t at) const {
    return reinterpret_cast<const T*>(inputs.as<int32_t>() + at);
  }

  void run_layers(int64_t n) {
    const ModelConfig& c = config;
    const int64_t n_embd = c.n_embd;
    const cuda::MatmulWorkspace w = workspace();
    const int gemv_rows = options.gemv_max_rows;
    const int32_t* tokens = input<int32_t>(layout.tokens);
    const int32_t* positions = input<int32_t>(layout.positions);
    const int32_t* slots = input<int32_t>(layout.slots);
    float* x_ = x.as<float>();
    float* h_ = h.as<float>();
    float* q_ = q.as<float>();
    float* k_ = k.as<float>();
    float* v_ = v.as<float>();
    float* attn_ = attn.as<float>();
    float* proj_ = proj.as<float>();
    float* gate_ = gate.as<float>();
    float* up_ = up.as<float>();

    cuda::embedding_lookup(token_embd, tokens, n, x_, stream);
    cuda::rms_norm(x_, layers[0].attn_norm, h_, n, n_embd, c.rms_eps, stream);
    for (size_t layer_index = 0; layer_index < layers.size(); ++layer_index) {
      const LayerDevice& l = layers[layer_index];
      const int layer = static_cast<int>(layer_index);

      // Attention sublayer (h holds this layer's normalised input).
      const DeviceMatrix qkv[3] = {l.attn_q, l.attn_k, l.attn_v};
      float* const qkv_out[3] = {q_, k_, v_};
      cuda::matmul(qkv, qkv_out, 3, h_, n, w, gemv_rows, stream);
      if (l.bias_q != nullptr) cuda::add_bias(q_, l.bias_q, n, c.q_dim(), stream);
      if (l.bias_k != nullptr) cuda::add_bias(k_, l.bias_k, n, c.kv_dim(), stream);
      if (l.bias_v != nullptr) cuda::add_bias(v_, l.bias_v, n, c.kv_dim(), stream);
      cuda::rope_qk(q_, k_, positions, n, static_cast<int>(c.n_head), static_cast<int>(c.n_head_kv),
                    static_cast<int>(c.head_dim), rope, theta_scale, rope_freqs, stream);
      cuda::kv_write(k_, v_, slots, n, c.kv_dim(), k_pool(layer), v_pool(layer), stream);

      cuda::AttentionLaunch args;
      args.q = q_;
      args.out = attn_;
      args.k_pool = k_pool(layer);
      args.v_pool = v_pool(layer);
      args.seqs = input<cuda::DeviceSeq>(layout.seqs);
      args.block_tables = input<int32_t>(layout.tables);
      args.n_head = static_cast<int>(c.n_head);
      args.n_head_kv = static_cast<int>(c.n_head_kv);
      args.head_dim = static_cast<int>(c.head_dim);
      args.block_size = block_size;
      args.scale = attention_scale;
      cuda::flash_attention(args, input<cuda::FlashTile>(layout.tiles), static_cast<int>(tiles.size()),
                            tile_shape.tokens_per_tile, tile_shape.heads_per_tile, stream);
      cuda::paged_decode_attention(args, input<cuda::DecodeWork>(layout.work), static_cast<int>(decode.work.size()),
                                   decode.heads_per_item, input<cuda::DecodeMerge>(layout.merges),
                                   static_cast<int>(decode.merges.size()), partials.as<float>(), stream);

      cuda::matmul(&l.attn_output, &proj_, 1, attn_, n, w, gemv_rows, stream);
      if (l.bias_output != nullptr) cuda::add_bias(proj_, l.bias_output, n, n_embd, stream);
      cuda::add_rms_norm(x_, proj_, l.ffn_norm, h_, n, n_embd, c.rms_eps, stream);

      // Feed-forward sublayer (SwiGLU).
      const DeviceMatrix gate_up[2] = {l.ffn_gate, l.ffn_up};
      float* const gate_up_out[2] = {gate_, up_};
      cuda::matmul(gate_up, gate_up_out, 2, h_, n, w, gemv_rows, stream);
      cuda::swiglu(gate_, up_, n * c.n_ff, stream);
      cuda::matmul(&l.ffn_down, &proj_, 1, gate_, n, w, gemv_rows, stream);
      if (layer_index + 1 < layers.size()) {
        cuda::add_rms_norm(x_, proj_, layers[layer_index + 1].attn_norm, h_, n, n_embd, c.rms_eps, stream);
      } else {
        cuda::add_in_place(x_, proj_, n * n_embd, stream);
      }
    }
  }

  // Final norm of the wanted rows and the vocabulary projection into `logits`.
  void project_logits(int64_t n_logits) {
    if (n_logits == 0) return;
    float* final_ = final_rows.as<float>();
    cuda::rms_norm_rows(x.as<float>(), input<int32_t>(layout.logit_rows), n_logits, output_norm, final_,
                        config.n_embd, config.rms_eps, stream);
    float* logits_ = logits.as<float>();
    cuda::matmul(&output, &logits_, 1, final_, n_logits, workspace(), options.gemv_max_rows, stream);
  }
};

CudaBackend::CudaBackend(const ModelConfig& config, const LlamaWeights& weights, int num_blocks, int block_size,
                         KvDtype kv_dtype, const CudaBackendOptions& options)
    : impl_(std::make_unique<Impl>(config, num_blocks, block_size, options)) {
  if (kv_dtype != KvDtype::F16) {
    fail("--kv-type {} is not supported by the CUDA backend (its K/V pools are f16)", kv_dtype_name(kv_dtype));
  }
  if (num_blocks < 1 || block_size < 1) fail("internal: a CUDA KV pool of {} blocks of {}", num_blocks, block_size);
  if (config.head_dim < 1 || config.head_dim > cuda::kDecodeMaxHeadDim) {
    fail("the CUDA backend supports head_dim up to {}, this model has {}", cuda::kDecodeMaxHeadDim, config.head_dim);
  }
  if (config.n_head % config.n_head_kv != 0) {
    fail("n_head {} is not a multiple of n_head_kv {}", config.n_head, config.n_head_kv);
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
  if (cublasCreate(&s.cublas) != CUBLAS_STATUS_SUCCESS) fail("cannot create a cuBLAS handle on {}", s.device.name);
  // FP32 products stay FP32 (no TF32), so F32 models compute what the CPU computes.
  cublasSetMathMode(s.cublas, CUBLAS_DEFAULT_MATH);
  s.rope = rope_params_for(config);
  // The same f32 expression as kernels/cpu/elementwise.cpp's rope.
  s.theta_scale = std::pow(s.rope.freq_base, -2.0f / static_cast<float>(s.rope.n_rot));
  s.attention_scale = 1.0f / std::sqrt(static_cast<float>(config.head_dim));
  s.upload_weights(weights);
  s.allocate_kv();
  s.ensure_capacity(1, 1);
}

CudaBackend::~CudaBackend() = default;

uint64_t CudaBackend::kv_pool_bytes() const { return impl_->kv.size_bytes(); }
const GpuDeviceInfo& CudaBackend::device_info() const { return impl_->device; }
uint64_t CudaBackend::weight_bytes() const { return impl_->weight_bytes; }

void CudaBackend::copy_blocks(std::span<const BlockCopy> copies) {
  Impl& s = *impl_;
  s.select_device();
  for (const BlockCopy& copy : copies) {
    if (copy.src < 0 || copy.src >= s.num_blocks || copy.dst < 0 || copy.dst >= s.num_blocks) {
      fail("internal: block copy {} -> {} outside the pool of {}", copy.src, copy.dst, s.num_blocks);
    }
    // One launch per copy, in order on the stream: a later copy may overwrite an earlier one's source.
    cuda::copy_kv_block(s.kv.as<uint8_t>(), 2 * static_cast<int>(s.config.n_layer), s.pool_bytes, s.block_bytes,
                        copy.src, copy.dst, s.stream);
  }
}

void CudaBackend::forward(const BatchInput& batch, float* logits) {
  Impl& s = *impl_;
  const int64_t n = batch.n_tokens();
  if (n == 0) return;
  s.select_device();
  s.prepare(batch, {});
  s.run_layers(n);
  const auto n_logits = static_cast<int64_t>(batch.logit_rows.size());
  s.project_logits(n_logits);
  const size_t bytes = static_cast<size_t>(n_logits * s.config.n_vocab) * sizeof(float);
  if (bytes > 0) {
    s.download.reserve(bytes);
    PAGEDLLM_CUDA_CHECK(cudaMemcpyAsync(s.download.data(), s.logits.data(), bytes, cudaMemcpyDeviceToHost, s.stream));
  }
  PAGEDLLM_CUDA_CHECK(cudaStreamSynchronize(s.stream));
  if (bytes > 0) std::memcpy(logits, s.download.data(), bytes);
}

void CudaBackend::forward_sample(const BatchInput& batch, std::span<const GpuSamplingSettings> settings,
                                 int32_t* tokens) {
  Impl& s = *impl_;
  const int64_t n = batch.n_tokens();
  if (n == 0) return;
  if (settings.size() != batch.logit_rows.size()) {
    fail("internal: {} sampling settings for {} logits rows", settings.size(), batch.logit_rows.size());
  }
  s.select_device();
  s.prepare(batch, settings);
  s.run_layers(n);
  const auto n_logits = static_cast<int64_t>(batch.logit_rows.size());
  s.project_logits(n_logits);
  if (n_logits == 0) return;
  int32_t* device_tokens = s.inputs.as<int32_t>() + (s.layout.total - static_cast<size_t>(align_up(static_cast<size_t>(n_logits), 4)));
  cuda::sample_tokens(s.logits.as<float>(), n_logits, s.config.n_vocab,
                      s.input<cuda::SamplingRow>(s.layout.sampling), device_tokens, s.stream);
  const size_t bytes = static_cast<size_t>(n_logits) * sizeof(int32_t);
  s.download.reserve(bytes);
  PAGEDLLM_CUDA_CHECK(cudaMemcpyAsync(s.download.data(), device_tokens, bytes, cudaMemcpyDeviceToHost, s.stream));
  PAGEDLLM_CUDA_CHECK(cudaStreamSynchronize(s.stream));
  std::memcpy(tokens, s.download.data(), bytes);
}

void CudaBackend::read_kv(int layer, int32_t slot, float* k_out, float* v_out) const {
  const Impl& s = *impl_;
  if (layer < 0 || layer >= s.config.n_layer || slot < 0 ||
      static_cast<int64_t>(slot) >= static_cast<int64_t>(s.num_blocks) * s.block_size) {
    fail("internal: read_kv of layer {} slot {}", layer, slot);
  }
  s.select_device();
  const size_t elements = static_cast<size_t>(s.config.kv_dim());
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

void CudaBackend::synchronize() const {
  impl_->select_device();
  PAGEDLLM_CUDA_CHECK(cudaStreamSynchronize(impl_->stream));
}

}  // namespace pagedllm

#else  // !PAGEDLLM_HAVE_CUDA

namespace pagedllm {

struct CudaBackend::Impl {
  GpuDeviceInfo device;
};

CudaBackend::CudaBackend(const ModelConfig&, const LlamaWeights&, int, int, KvDtype, const CudaBackendOptions&) {
  fail("--device cuda: this pagedllm was built without CUDA (nvcc was not found at configure time)");
}
CudaBackend::~CudaBackend() = default;
void CudaBackend::copy_blocks(std::span<const BlockCopy>) {}
void CudaBackend::forward(const BatchInput&, float*) {}
void CudaBackend::forward_sample(const BatchInput&, std::span<const GpuSamplingSettings>, int32_t*) {}
uint64_t CudaBackend::kv_pool_bytes() const { return 0; }
const GpuDeviceInfo& CudaBackend::device_info() const { return impl_->device; }
uint64_t CudaBackend::weight_bytes() const { return 0; }
void CudaBackend::read_kv(int, int32_t, float*, float*) const {}
void CudaBackend::synchronize() const {}

}  // namespace pagedllm

#endif
