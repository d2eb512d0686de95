#pragma once
// The kernels alone, through the operations contract, with the roofline in every row: matrix products over
// (output rows, input columns, activation rows, weight type), and attention over context lengths and GQA groups
// (prefill: the tiled kernel against the naive one; decode: a block table in order against a scattered one, which
// is how a busy paged cache looks).
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/devices.h"

namespace pagedllm {

struct OpBenchSettings {
  DeviceKind device = DeviceKind::Cpu;
  int n_threads = 0;          // 0: every core
  int repetitions = 5;
  std::vector<std::string> weight_types = {"f16", "q8_0", "q4_0", "q4_k"};
  std::vector<int> batches = {1, 16, 128};                 // activation rows of the matmuls
  std::vector<int> contexts = {512, 2048, 4096};           // attention context lengths
  std::vector<int> kv_heads = {32, 8};                     // with 32 query heads of 128: MHA and GQA 4
  bool progress = false;
};

// One record per measured case: "op", the shape, "avg_us", "stddev_us", "gflop_s", "gb_s", "bandwidth_percent",
// "compute_percent" (null when the peak is unknown), and the peaks with their sources.
std::vector<nlohmann::ordered_json> run_matmul_benchmarks(const OpBenchSettings& settings);
std::vector<nlohmann::ordered_json> run_attention_benchmarks(const OpBenchSettings& settings);

}  // namespace pagedllm
