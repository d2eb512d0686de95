#pragma once
// Seconds and rates, the way every report in the house states them.
#include <chrono>

namespace pagedllm {

using Clock = std::chrono::steady_clock;

inline double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// count / seconds, 0 when no time passed (nothing to report rather than infinity).
inline double per_second(double count, double seconds) { return seconds > 0 ? count / seconds : 0.0; }

}  // namespace pagedllm
