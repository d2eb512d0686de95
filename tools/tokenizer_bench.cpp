// Encode throughput of the tokenizers, in MB of UTF-8 input per second (not part of the CMake build).
//
// Build by hand against the library, e.g. (one line):
//   g++ -std=c++20 -O2 -march=native -I. tools/tokenizer_bench.cpp build/libpagedllm_core.a -lfmt -lpcre2-8
//       -lpthread -o /tmp/tokenizer_bench
// Run:
//   /tmp/tokenizer_bench TEXT_FILE MODEL.gguf [MODEL.gguf ...]
// TEXT_FILE is repeated until the input is at least 4 MB; every model encodes the same input (no BOS, no special
// parsing), best of 3 runs, single thread. Both the thread's CPU time and the wall time are reported: on a shared,
// busy machine the CPU time is the meaningful one.
#include <time.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

#include <fmt/format.h>

#include "common/error.h"
#include "model_loader/gguf.h"
#include "tokenizer/tokenizer.h"

namespace {

double thread_cpu_seconds() {
  timespec now{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
  return static_cast<double>(now.tv_sec) + static_cast<double>(now.tv_nsec) * 1e-9;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    fmt::print(stderr, "usage: {} TEXT_FILE MODEL.gguf [MODEL.gguf ...]\n", argv[0]);
    return 2;
  }
  std::ifstream in(argv[1], std::ios::binary);
  std::stringstream contents;
  contents << in.rdbuf();
  const std::string unit = contents.str();
  if (unit.empty()) {
    fmt::print(stderr, "{} is empty or unreadable\n", argv[1]);
    return 2;
  }
  std::string text;
  while (text.size() < 4u * 1000 * 1000) text += unit;
  const double megabytes = static_cast<double>(text.size()) / 1e6;
  fmt::print("input: {} repeated to {:.2f} MB\n", argv[1], megabytes);
  try {
    for (int i = 2; i < argc; ++i) {
      const auto file = pagedllm::GgufFile::open(argv[i]);
      const auto tokenizer = pagedllm::Tokenizer::from_gguf(*file);
      double best_cpu_seconds = 1e30;
      double best_wall_seconds = 1e30;
      size_t n_tokens = 0;
      for (int run = 0; run < 3; ++run) {
        const double cpu_start = thread_cpu_seconds();
        const auto wall_start = std::chrono::steady_clock::now();
        const auto ids = tokenizer->encode(text, false, false);
        const std::chrono::duration<double> wall = std::chrono::steady_clock::now() - wall_start;
        best_cpu_seconds = std::min(best_cpu_seconds, thread_cpu_seconds() - cpu_start);
        best_wall_seconds = std::min(best_wall_seconds, wall.count());
        n_tokens = ids.size();
      }
      fmt::print("{}: model {}, pre {}: {} tokens; CPU {:.3f} s = {:.2f} MB/s ({:.0f} tokens/s); wall {:.3f} s = "
                 "{:.2f} MB/s\n", argv[i], tokenizer->model_name(), tokenizer->pre_tokenizer_name(), n_tokens,
                 best_cpu_seconds, megabytes / best_cpu_seconds, n_tokens / best_cpu_seconds, best_wall_seconds,
                 megabytes / best_wall_seconds);
    }
  } catch (const pagedllm::Error& error) {
    fmt::print(stderr, "error: {}\n", error.what());
    return 1;
  }
  return 0;
}
