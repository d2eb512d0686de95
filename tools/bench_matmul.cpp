// Times the CPU matmul at K = N = 4096 for decode (M = 1) and prefill (M = 64) with 1 and 2 threads.
// Not part of the CMake build; from the repository root, after building pagedllm_core in build-<name>/:
//   g++ -O3 -march=native -std=c++20 -I. tools/bench_matmul.cpp build-<name>/libpagedllm_core.a -lfmt -lpthread
//       -o /tmp/bench_matmul && /tmp/bench_matmul [--types Q4_1,Q8_0,F16] [--threads 1,2] [--cold-mib 1024]
//       [--cpu-time]
// --cpu-time times with the calling thread's CPU clock instead of the wall clock: on a loaded machine that gives
// the single-thread speed while running (meaningless for more than one thread).
// Decode is reported as GB/s of weights streamed; the weights rotate through enough copies (--cold-mib) that they
// come from memory rather than cache. Prefill is reported as GFLOP/s and as the time per activation row against
// the one-row (decode) call.
#include <algorithm>
#include <chrono>
#include <ctime>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "common/thread_pool.h"
#include "kernels/cpu/matmul.h"
#include "tensor/quantize.h"

using namespace pagedllm;

namespace {

std::vector<std::string> split(std::string_view text) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (start <= text.size()) {
    const size_t comma = std::min(text.find(',', start), text.size());
    if (comma > start) parts.emplace_back(text.substr(start, comma - start));
    start = comma + 1;
  }
  return parts;
}

bool use_cpu_time = false;

double now_seconds() {
  if (use_cpu_time) {
    timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
  }
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Best of `repeats` timings of fn() (seconds): on a shared machine the minimum is the least disturbed run.
template <typename Fn>
double best_seconds(int repeats, Fn&& fn) {
  std::vector<double> times;
  for (int i = 0; i < repeats; ++i) {
    const double start = now_seconds();
    fn();
    times.push_back(now_seconds() - start);
  }
  return *std::min_element(times.begin(), times.end());
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> type_names = {"Q4_1", "Q8_0", "F16"};
  std::vector<int> thread_counts = {1, 2};
  size_t cold_mib = 1024;
  for (int i = 1; i < argc; i += 2) {
    const std::string_view flag = argv[i];
    if (flag == "--cpu-time") {
      use_cpu_time = true;
      --i;
      continue;
    }
    if (i + 1 >= argc) {
      std::fprintf(stderr, "%s needs a value\n", argv[i]);
      return 2;
    }
    if (flag == "--types") {
      type_names = split(argv[i + 1]);
    } else if (flag == "--threads") {
      thread_counts.clear();
      for (const std::string& t : split(argv[i + 1])) thread_counts.push_back(std::stoi(t));
    } else if (flag == "--cold-mib") {
      cold_mib = std::stoul(argv[i + 1]);
    } else {
      std::fprintf(stderr, "unknown flag %s\n", argv[i]);
      return 2;
    }
  }

  constexpr int64_t K = 4096, N = 4096, kPrefillRows = 64;
  std::mt19937 rng(42);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(kPrefillRows * K));  // [64, K]
  for (float& v : x) v = normal(rng);
  std::vector<float> y(static_cast<size_t>(kPrefillRows * N));  // [64, N]

  std::printf("matmul K=N=%lld, SIMD: %s\n", static_cast<long long>(K), matmul_simd_name());
  std::printf("%-5s %7s | %12s %10s %9s | %12s %9s %14s\n", "type", "threads", "decode us", "GB/s", "GFLOP/s",
              "prefill ms", "GFLOP/s", "row vs decode");
  for (const std::string& name : type_names) {
    const auto type = type_from_name(name);
    if (!type) {
      std::fprintf(stderr, "unknown type %s\n", name.c_str());
      return 2;
    }
    const size_t matrix_bytes = row_bytes(*type, K) * N;
    // One quantized matrix, copied until the copies exceed the cache.
    std::vector<uint8_t> first(matrix_bytes);
    std::vector<float> row(static_cast<size_t>(K));
    for (int64_t r = 0; r < N; ++r) {
      for (float& v : row) v = 0.02f * normal(rng);
      quantize_row(*type, row.data(), first.data() + r * row_bytes(*type, K), K);
    }
    const size_t n_copies = std::max<size_t>(1, (cold_mib << 20) / matrix_bytes);
    std::vector<std::vector<uint8_t>> copies(n_copies, first);

    for (int threads : thread_counts) {
      ThreadPool pool(threads);
      MatmulScratch scratch;
      size_t next = 0;
      const auto decode_once = [&] {
        const WeightMatrix w{*type, copies[next].data(), K, N};
        next = (next + 1) % copies.size();
        matmul(w, x.data(), 1, y.data(), pool, scratch);
      };
      for (size_t i = 0; i < copies.size(); ++i) decode_once();  // warm up: page in every copy
      const double decode = best_seconds(std::max<int>(50, static_cast<int>(3 * copies.size())), decode_once);
      const WeightMatrix hot{*type, first.data(), K, N};
      matmul(hot, x.data(), kPrefillRows, y.data(), pool, scratch);
      const double prefill = best_seconds(9, [&] { matmul(hot, x.data(), kPrefillRows, y.data(), pool, scratch); });
      const double flops_per_row = 2.0 * K * N;
      std::printf("%-5s %7d | %12.1f %10.2f %9.1f | %12.2f %9.1f %13.1fx\n", name.c_str(), threads, decode * 1e6,
                  matrix_bytes / decode / 1e9, flops_per_row / decode / 1e9, prefill * 1e3,
                  kPrefillRows * flops_per_row / prefill / 1e9, decode / (prefill / kPrefillRows));
    }
  }
  return 0;
}
