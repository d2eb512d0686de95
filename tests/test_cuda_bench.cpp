// GPU benchmarks for scripts/gpu-check.sh. Hidden from the ordinary test run (doctest::skip: they take a minute
// and 17 GB of GPU memory, and a benchmark is never an assertion); run them with
//   test_cuda_bench --no-skip
// Each prints "BENCH <name> <key>=<value> ..." lines and, when $PAGEDLLM_BENCH_OUT names a file, appends the same
// lines there. The only checks are sanity checks (the flash and naive attention agree; tokens are in range).
#include <doctest/doctest.h>

#include <string>

#include "kernels/cuda/device_info.h"

#if defined(PAGEDLLM_HAVE_CUDA)

#include <cuda_runtime_api.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <random>
#include <vector>

#include <fmt/format.h>

#include "engine/llama_forward.h"
#include "kernels/cuda/cuda_backend.h"
#include "tensor/float16.h"
#include "kernels/cuda/attention_plan.h"
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_ops.h"
#include "model_loader/gguf.h"
#include "model_loader/model_config.h"
#include "model_loader/synthetic_model.h"

using namespace pagedllm;

namespace {

bool skip_without_device() {
  std::string why;
  if (!query_cuda_devices(why).empty()) return false;
  MESSAGE("skipped: no CUDA device: " << why);
  return true;
}

void report(const std::string& line) {
  std::printf("BENCH %s\n", line.c_str());
  std::fflush(stdout);
  if (const char* path = std::getenv("PAGEDLLM_BENCH_OUT"); path != nullptr && *path != '\0') {
    if (FILE* file = std::fopen(path, "a")) {
      std::fprintf(file, "BENCH %s\n", line.c_str());
      std::fclose(file);
    }
  }
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Milliseconds per call of `run`, timed with CUDA events over `reps` calls after `warmup`.
template <typename Run>
double time_ms(Run&& run, int warmup, int reps) {
  for (int i = 0; i < warmup; ++i) run();
  cudaEvent_t start, stop;
  PAGEDLLM_CUDA_CHECK(cudaEventCreate(&start));
  PAGEDLLM_CUDA_CHECK(cudaEventCreate(&stop));
  PAGEDLLM_CUDA_CHECK(cudaEventRecord(start, nullptr));
  for (int i = 0; i < reps; ++i) run();
  PAGEDLLM_CUDA_CHECK(cudaEventRecord(stop, nullptr));
  PAGEDLLM_CUDA_CHECK(cudaEventSynchronize(stop));
  float ms = 0.0f;
  PAGEDLLM_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  return static_cast<double>(ms) / reps;
}

template <typename T>
cuda::DeviceBuffer upload(const std::vector<T>& host) {
  cuda::DeviceBuffer buffer(std::max<size_t>(1, host.size() * sizeof(T)));
  PAGEDLLM_CUDA_CHECK(cudaMemcpy(buffer.data(), host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice));
  return buffer;
}

}  // namespace

TEST_CASE("bench: batch-1 decode of a synthetic Llama-3-8B-shaped F16 model" * doctest::skip()) {
  if (skip_without_device()) return;
  const char* preset = std::getenv("PAGEDLLM_BENCH_MODEL");
  SyntheticModelSpec spec = synthetic_spec(preset != nullptr && *preset != '\0' ? preset : "llama-3-8b");
  spec.weight_type = GgmlType::F16;
  const int prompt_tokens = 128, decode_tokens = 128, block_size = 16;

  auto start = std::chrono::steady_clock::now();
  const std::vector<uint8_t> image = build_synthetic_gguf(spec);
  const double build_seconds = seconds_since(start);
  auto file = GgufFile::from_memory(image, spec.name);
  const ModelConfig config = read_model_config(*file);
  const LlamaWeights weights = load_llama_weights(*file, config);
  const int num_blocks = (prompt_tokens + decode_tokens) / block_size + 2;
  start = std::chrono::steady_clock::now();
  KvGeometry kv;
  kv.n_layer = static_cast<int>(config.n_layer);
  kv.n_head_kv = static_cast<int>(config.n_head_kv);
  kv.head_dim = static_cast<int>(config.head_dim);
  kv.num_blocks = num_blocks;
  kv.block_size = block_size;
  CudaBackend backend(kv, forward_weight_set(config, weights));
  const double upload_seconds = seconds_since(start);
  const GpuDeviceInfo& device = backend.device_info();

  std::vector<int32_t> table(static_cast<size_t>(num_blocks));
  std::iota(table.begin(), table.end(), 0);
  std::mt19937 rng(1);
  std::uniform_int_distribution<int32_t> token(3, static_cast<int32_t>(config.n_vocab) - 1);
  auto batch_of = [&](const std::vector<int32_t>& tokens, int first_position) {
    ForwardBatch batch;
    for (size_t i = 0; i < tokens.size(); ++i) {
      batch.tokens.push_back(tokens[i]);
      batch.positions.push_back(first_position + static_cast<int32_t>(i));
      batch.slot_mapping.push_back(first_position + static_cast<int32_t>(i));
    }
    SeqView view;
    view.n_new = static_cast<int32_t>(tokens.size());
    view.context_length = first_position + view.n_new;
    view.block_table = std::span<const int32_t>(table.data(), static_cast<size_t>((view.context_length + block_size - 1) / block_size));
    batch.seqs.push_back(view);
    batch.logit_rows.push_back(view.n_new - 1);
    return batch;
  };
  std::vector<int32_t> prompt(prompt_tokens);
  for (int32_t& t : prompt) t = token(rng);
  const std::vector<GpuSamplingSettings> greedy(1);
  int32_t next = 0;
  // One forward, then one token sampled on the device: only the token comes back.
  auto forward_sample = [&](const ForwardBatch& batch, int32_t* token) {
    const float* logits = llama_forward(backend, config, weights, batch, nullptr);
    backend.sample(logits, config.n_vocab, greedy, token);
  };
  start = std::chrono::steady_clock::now();
  forward_sample(batch_of(prompt, 0), &next);
  const double prefill_seconds = seconds_since(start);

  // Decode: each step forwards one token and brings back only the sampled one.
  int context = prompt_tokens;
  const int warmup = 4;
  for (int i = 0; i < warmup; ++i) {
    forward_sample(batch_of({next}, context++), &next);
  }
  start = std::chrono::steady_clock::now();
  for (int i = 0; i < decode_tokens - warmup; ++i) {
    REQUIRE(next >= 0);
    REQUIRE(next < config.n_vocab);
    forward_sample(batch_of({next}, context++), &next);
  }
  const double decode_seconds = seconds_since(start);
  const int timed = decode_tokens - warmup;
  const double tokens_per_second = timed / decode_seconds;
  // Bytes one decode step reads: every weight matrix once (the embedding lookup reads one row: not counted) plus
  // the K/V of the context (at its mean length over the timed steps).
  const double mean_context = prompt_tokens + warmup + timed / 2.0;
  const double kv_bytes = mean_context * static_cast<double>(config.kv_bytes_per_token(2));
  const double bytes_per_token = static_cast<double>(weights.bytes_per_step) + kv_bytes;
  const double achieved = bytes_per_token * tokens_per_second / 1e9;
  report(fmt::format("decode model={} device=\"{}\" weights_gb={:.2f} build_s={:.1f} upload_s={:.1f} "
                     "prefill_tokens={} prefill_s={:.3f} decode_tokens={} tokens_per_s={:.1f} ms_per_token={:.3f} "
                     "bytes_per_token_gb={:.3f} achieved_gb_s={:.0f} peak_gb_s={:.0f} roofline_pct={:.1f} "
                     "roofline_tokens_per_s={:.1f}",
                     spec.name, device.name, backend.weight_bytes() / 1e9, build_seconds, upload_seconds,
                     prompt_tokens, prefill_seconds, timed, tokens_per_second, 1000.0 / tokens_per_second,
                     bytes_per_token / 1e9, achieved, device.peak_bandwidth_gb_s,
                     100.0 * achieved / device.peak_bandwidth_gb_s, device.peak_bandwidth_gb_s * 1e9 / bytes_per_token));
}

TEST_CASE("bench: flash prefill attention at 4k against the naive baseline; paged decode at 4k and 16k" *
          doctest::skip()) {
  if (skip_without_device()) return;
  // Llama-3-8B's attention shape.
  const int n_head = 32, n_head_kv = 8, head_dim = 128, block_size = 16;
  const int group = n_head / n_head_kv;
  std::mt19937 rng(2);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  auto run_case = [&](int context, int n_new, bool with_naive) {
    const int n_blocks = (context + block_size - 1) / block_size;
    std::vector<int32_t> table(static_cast<size_t>(n_blocks));
    std::iota(table.begin(), table.end(), 0);
    std::shuffle(table.begin(), table.end(), rng);  // scattered blocks, as a real cache has them
    const size_t pool_elements = static_cast<size_t>(n_blocks) * block_size * n_head_kv * head_dim;
    std::vector<uint16_t> k_pool(pool_elements), v_pool(pool_elements);
    for (size_t i = 0; i < pool_elements; ++i) {
      k_pool[i] = f32_to_fp16(normal(rng));
      v_pool[i] = f32_to_fp16(normal(rng));
    }
    std::vector<float> q(static_cast<size_t>(n_new) * n_head * head_dim);
    for (float& x : q) x = normal(rng);
    const std::vector<cuda::DeviceSeq> seqs = {cuda::DeviceSeq{0, n_new, context, 0}};
    cuda::DeviceBuffer device_q = upload(q), device_k = upload(k_pool), device_v = upload(v_pool);
    cuda::DeviceBuffer device_seqs = upload(seqs), device_table = upload(table);
    cuda::DeviceBuffer out(q.size() * sizeof(float)), naive_out(q.size() * sizeof(float));
    cuda::AttentionLaunch args;
    args.q = device_q.as<float>();
    args.out = out.as<float>();
    args.k_pool = device_k.as<uint16_t>();
    args.v_pool = device_v.as<uint16_t>();
    args.seqs = device_seqs.as<cuda::DeviceSeq>();
    args.block_tables = device_table.as<int32_t>();
    args.n_head = n_head;
    args.n_head_kv = n_head_kv;
    args.head_dim = head_dim;
    args.block_size = block_size;
    args.scale = 1.0f / std::sqrt(static_cast<float>(head_dim));

    const cuda::FlashTileShape shape = cuda::flash_tile_shape(group, cuda::flash_kernel_rows(head_dim));
    std::vector<cuda::FlashTile> tiles;
    cuda::plan_flash_tiles(seqs, group, shape, tiles);
    int device_index = 0;
    PAGEDLLM_CUDA_CHECK(cudaGetDevice(&device_index));
    cudaDeviceProp properties{};
    PAGEDLLM_CUDA_CHECK(cudaGetDeviceProperties(&properties, device_index));
    cuda::DecodePlanParams decode_params;
    decode_params.block_size = block_size;
    decode_params.n_head_kv = n_head_kv;
    decode_params.group = group;
    decode_params.target_ctas = 2 * properties.multiProcessorCount;
    cuda::DecodePlan plan;
    cuda::plan_decode(seqs, decode_params, plan);
    cuda::DeviceBuffer device_tiles = upload(tiles), device_work = upload(plan.work),
                       device_merges = upload(plan.merges);
    cuda::DeviceBuffer partials(std::max<size_t>(1, static_cast<size_t>(plan.n_partials) * n_head * (head_dim + 2)) *
                                sizeof(float));
    auto tiled = [&] {
      cuda::flash_attention(args, device_tiles.as<cuda::FlashTile>(), static_cast<int>(tiles.size()),
                            shape.tokens_per_tile, shape.heads_per_tile, nullptr);
      cuda::paged_decode_attention(args, device_work.as<cuda::DecodeWork>(), static_cast<int>(plan.work.size()),
                                   plan.heads_per_item, device_merges.as<cuda::DecodeMerge>(),
                                   static_cast<int>(plan.merges.size()), partials.as<float>(), nullptr);
    };
    const double tiled_ms = time_ms(tiled, 2, n_new > 1 ? 10 : 50);
    // Causal prefill: each of the n_new rows of every head attends to (its position + 1) keys; 2 matrix products.
    double pairs = 0.0;
    for (int i = 0; i < n_new; ++i) pairs += context - n_new + i + 1;
    const double flops = 4.0 * n_head * head_dim * pairs;
    const double kv_bytes = 2.0 * context * n_head_kv * head_dim * sizeof(uint16_t);
    std::string line = fmt::format("attention kind={} context={} new_tokens={} n_head={} n_head_kv={} head_dim={} "
                                   "tiled_ms={:.3f} tiled_tflops={:.1f} kv_gb_s={:.0f} splits={}",
                                   n_new > 1 ? "flash-prefill" : "paged-decode", context, n_new, n_head, n_head_kv,
                                   head_dim, tiled_ms, flops / tiled_ms / 1e9, kv_bytes / tiled_ms / 1e6,
                                   plan.merges.empty() ? 1 : plan.merges.front().n_splits);
    if (with_naive) {
      cuda::DeviceBuffer scores(cuda::naive_attention_scores_bytes(seqs.data(), 1, n_head));
      cuda::AttentionLaunch naive_args = args;
      naive_args.out = naive_out.as<float>();
      auto naive = [&] { cuda::naive_attention(naive_args, seqs.data(), 1, scores.as<float>(), nullptr); };
      const double naive_ms = time_ms(naive, 1, 3);
      // Sanity: both computed the same attention (f16 rounding of q and P in the tensor-core kernel).
      std::vector<float> a(q.size()), b(q.size());
      PAGEDLLM_CUDA_CHECK(cudaMemcpy(a.data(), out.data(), a.size() * sizeof(float), cudaMemcpyDeviceToHost));
      PAGEDLLM_CUDA_CHECK(cudaMemcpy(b.data(), naive_out.data(), b.size() * sizeof(float), cudaMemcpyDeviceToHost));
      double worst = 0.0;
      for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::fabs(double(a[i]) - double(b[i])));
      CHECK(worst < 2e-2);
      line += fmt::format(" naive_ms={:.3f} speedup={:.1f} max_abs_diff={:.2e}", naive_ms, naive_ms / tiled_ms, worst);
    }
    report(line);
  };
  run_case(4096, 4096, true);
  run_case(4096, 1, false);
  run_case(16384, 1, false);
}

#else

TEST_CASE("bench: CUDA benchmarks" * doctest::skip()) {
  std::string why;
  pagedllm::query_cuda_devices(why);
  MESSAGE("skipped: no CUDA device: " << why);
}

#endif
