#pragma once
// What `run --profile` measured: per phase (prefill, decode) and op, the calls, the seconds, and the bytes and
// arithmetic the op needs at least. Filled by engine/op_profiler.h's ProfilingBackend.
#include <cstdint>
#include <string>
#include <vector>

namespace pagedllm {

struct OpProfileRow {
  std::string op;
  int64_t calls = 0;
  double seconds = 0;
  double bytes = 0;
  double flops = 0;
};

struct OpProfile {
  std::vector<OpProfileRow> prefill;  // by op, in the order the forward first calls them
  std::vector<OpProfileRow> decode;
  int64_t prefill_forwards = 0, decode_forwards = 0;
};

}  // namespace pagedllm
