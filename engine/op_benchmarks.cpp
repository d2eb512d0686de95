#include "engine/op_benchmarks.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <memory>
#include <numeric>
#include <random>

#include <fmt/format.h>

#include "common/error.h"
#include "common/thread_pool.h"
#include "kernels/backend.h"
#include "tensor/quantize.h"
#include "tensor/tensor_types.h"

namespace pagedllm {

namespace {

GgmlType computable_type(const std::string& name) {
  const std::optional<GgmlType> type = type_from_name(name);
  if (!type || !type_traits(*type).can_compute) fail("--dtype '{}' is not a weight type the engine computes", name);
  return *type;
}

struct Timing {
  double mean_us = 0, stddev_us = 0;
};

// Runs `body` once to warm up, then `repetitions` times; `sync` waits for the device after each.
template <typename Body, typename Sync>
Timing time_it(int repetitions, Body&& body, Sync&& sync) {
  body();
  sync();
  std::vector<double> us;
  for (int r = 0; r < repetitions; ++r) {
    const auto start = std::chrono::steady_clock::now();
    body();
    sync();
    us.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start).count());
  }
  Timing t;
  t.mean_us = std::accumulate(us.begin(), us.end(), 0.0) / static_cast<double>(us.size());
  double sum = 0;
  for (double x : us) sum += (x - t.mean_us) * (x - t.mean_us);
  t.stddev_us = us.size() > 1 ? std::sqrt(sum / static_cast<double>(us.size() - 1)) : 0.0;
  return t;
}

std::unique_ptr<Backend> backend_for(const OpBenchSettings& s, const KvGeometry& kv, const WeightSet& weights) {
  const int threads = s.n_threads > 0 ? s.n_threads : default_thread_count();
  if (s.device == DeviceKind::Cuda) {
    require_cuda_device();
    return make_cuda_backend(kv, weights);
  }
  return make_cpu_backend(kv, threads);
}

void add_roofline(nlohmann::ordered_json& r, double flops, double bytes, const Timing& t, Backend& backend) {
  const double seconds = t.mean_us / 1e6;
  const BandwidthPeak bw = backend.peak_bandwidth();
  const ComputePeak compute = backend.peak_compute();
  const double gb_s = seconds > 0 ? bytes / seconds / 1e9 : 0.0;
  const double gflop_s = seconds > 0 ? flops / seconds / 1e9 : 0.0;
  r["avg_us"] = t.mean_us;
  r["stddev_us"] = t.stddev_us;
  r["gb_s"] = gb_s;
  r["gflop_s"] = gflop_s;
  r["bandwidth_percent"] = bw.gb_per_s > 0 ? nlohmann::json(100.0 * gb_s / bw.gb_per_s) : nlohmann::json(nullptr);
  r["compute_percent"] =
      compute.gflop_per_s > 0 ? nlohmann::json(100.0 * gflop_s / compute.gflop_per_s) : nlohmann::json(nullptr);
  r["peak_gb_s"] = bw.gb_per_s;
  r["peak_gb_s_source"] = bw.source;
  r["peak_gflop_s"] = compute.gflop_per_s;
  r["peak_gflop_s_source"] = compute.source;
}

KvGeometry small_geometry(int n_head_kv, int head_dim, int num_blocks, int block_size) {
  KvGeometry kv;
  kv.n_layer = 1;
  kv.n_head_kv = n_head_kv;
  kv.head_dim = head_dim;
  kv.num_blocks = num_blocks;
  kv.block_size = block_size;
  kv.dtype = KvDtype::F16;
  return kv;
}

}  // namespace

std::vector<nlohmann::ordered_json> run_matmul_benchmarks(const OpBenchSettings& s) {
  // Llama-3-8B's shapes: the attention projection, and the FFN's up and down.
  const std::vector<std::pair<int64_t, int64_t>> shapes = {{4096, 4096}, {14336, 4096}, {4096, 14336}};
  std::vector<nlohmann::ordered_json> records;
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 0.02f);
  for (const std::string& name : s.weight_types) {
    const GgmlType type = computable_type(name);
    for (const auto& [n_rows, n_cols] : shapes) {
      // Four distinct rows repeated: the kernel streams the whole matrix from memory all the same.
      const size_t row_size = row_bytes(type, n_cols);
      std::vector<uint8_t> data(row_size * static_cast<size_t>(n_rows));
      std::vector<float> row(static_cast<size_t>(n_cols));
      for (int64_t r = 0; r < std::min<int64_t>(4, n_rows); ++r) {
        for (float& x : row) x = normal(rng);
        quantize_row(type, row.data(), data.data() + static_cast<size_t>(r) * row_size, n_cols);
      }
      for (int64_t r = 4; r < n_rows; ++r) {
        std::copy_n(data.data() + static_cast<size_t>(r % 4) * row_size, row_size,
                    data.data() + static_cast<size_t>(r) * row_size);
      }
      const WeightMatrix w{type, data.data(), n_cols, n_rows};
      WeightSet set;
      set.matrices.push_back(w);
      auto backend = backend_for(s, small_geometry(1, 32, 1, 16), set);
      for (int batch : s.batches) {
        if (s.progress) fmt::print(stderr, "bench: matmul {} {}x{} batch {}\n", name, n_rows, n_cols, batch);
        float* x = backend->buffer(0, static_cast<int64_t>(batch) * n_cols);
        float* y = backend->buffer(1, static_cast<int64_t>(batch) * n_rows);
        float sink = 0;
        const WeightMatrix* weights[] = {&w};
        const Timing t = time_it(
            s.repetitions, [&] { backend->matmul(weights, x, batch, std::span<float* const>(&y, 1)); },
            [&] { backend->read_to_host(y, 1, &sink); });
        const double flops = 2.0 * static_cast<double>(batch) * static_cast<double>(n_rows * n_cols);
        const double bytes = static_cast<double>(data.size()) + 4.0 * batch * static_cast<double>(n_cols + n_rows);
        nlohmann::ordered_json r;
        r["op"] = "matmul";
        r["device"] = backend->name();
        r["dtype"] = name;
        r["rows"] = n_rows;
        r["cols"] = n_cols;
        r["batch"] = batch;
        r["weight_mib"] = static_cast<double>(data.size()) / (1024.0 * 1024.0);
        add_roofline(r, flops, bytes, t, *backend);
        records.push_back(std::move(r));
      }
    }
  }
  return records;
}

std::vector<nlohmann::ordered_json> run_attention_benchmarks(const OpBenchSettings& s) {
  const int n_head = 32, head_dim = 128, block_size = 16;
  std::vector<nlohmann::ordered_json> records;
  std::mt19937 rng(11);
  for (int n_head_kv : s.kv_heads) {
    for (int context : s.contexts) {
      const int n_blocks = (context + block_size - 1) / block_size;
      auto backend = backend_for(s, small_geometry(n_head_kv, head_dim, n_blocks, block_size), WeightSet{});
      std::vector<int32_t> in_order(static_cast<size_t>(n_blocks));
      std::iota(in_order.begin(), in_order.end(), 0);
      std::vector<int32_t> scattered = in_order;
      std::shuffle(scattered.begin(), scattered.end(), rng);
      AttentionParams params;
      params.n_head = n_head;
      params.n_head_kv = n_head_kv;
      params.head_dim = head_dim;
      params.scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
      const double kv_bytes = 2.0 * context * n_head_kv * head_dim * 2.0;  // K and V, f16
      struct Case {
        const char* kind;
        int n_new;
        const std::vector<int32_t>* table;
        bool reference;
      };
      const std::vector<Case> cases = {{"prefill tiled", context, &in_order, false},
                                       {"prefill naive", context, &in_order, true},
                                       {"decode paged (scattered blocks)", 1, &scattered, false},
                                       {"decode contiguous (blocks in order)", 1, &in_order, false}};
      for (const Case& c : cases) {
        if (s.progress) fmt::print(stderr, "bench: attention {} context {} kv heads {}\n", c.kind, context, n_head_kv);
        ForwardBatch batch;
        for (int i = 0; i < c.n_new; ++i) {
          batch.tokens.push_back(0);
          batch.positions.push_back(context - c.n_new + i);
          batch.slot_mapping.push_back(0);
        }
        SeqView view;
        view.first_row = 0;
        view.n_new = c.n_new;
        view.context_length = context;
        view.block_table = *c.table;
        batch.seqs.push_back(view);
        backend->begin_batch(batch, params);
        float* q = backend->buffer(0, static_cast<int64_t>(c.n_new) * n_head * head_dim);
        float* out = backend->buffer(1, static_cast<int64_t>(c.n_new) * n_head * head_dim);
        float sink = 0;
        const Timing t = time_it(
            s.repetitions,
            [&] {
              if (c.reference) backend->attention_reference(0, q, out, params);
              else backend->attention(0, q, out, params);
            },
            [&] { backend->read_to_host(out, 1, &sink); });
        // Causal: new token i sees context - n_new + i + 1 keys; q.k and p.v are two multiply-adds per element.
        double keys = 0;
        for (int i = 0; i < c.n_new; ++i) keys += context - c.n_new + i + 1;
        const double flops = 4.0 * n_head * head_dim * keys;
        nlohmann::ordered_json r;
        r["op"] = "attention";
        r["device"] = backend->name();
        r["kind"] = c.kind;
        r["context"] = context;
        r["n_head"] = n_head;
        r["n_head_kv"] = n_head_kv;
        r["head_dim"] = head_dim;
        add_roofline(r, flops, kv_bytes, t, *backend);
        records.push_back(std::move(r));
      }
    }
  }
  return records;
}

}  // namespace pagedllm
