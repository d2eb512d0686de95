#pragma once
// Bounds on one render. A chat template comes from whatever model file the user opened, so a hostile or broken one
// (an endless range, a string doubled in a loop, a huge string compared a million times, a macro calling itself)
// must end in a TemplateError, not a hang, an exhausted machine or a stack overflow.
//
// Steps alone do not bound a render: one step can compare, copy or scan a string of many megabytes. So the work
// inside a step is counted too (bytes compared, scanned or copied, and the slots of containers walked), memory is
// counted before it is allocated, and a wall-clock limit catches whatever the counts miss. A real chat template
// over a long conversation stays far inside every bound (its work is a few times the size of the conversation).
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>

#include "templates/jinja_error.h"

namespace pagedllm::jinja {

// AddressSanitizer and UBSan make the interpreter several times slower; the wall clock is a backstop for what the
// counts miss, not a measure of the template, so an instrumented build gives it the same room in real work.
#if PAGEDLLM_ADDRESS_SANITIZER
inline constexpr double kRenderClockScale = 10.0;
#else
inline constexpr double kRenderClockScale = 1.0;
#endif

struct RenderLimits {
  // The rendered text, and any one string value: a prompt is at most a few MB (a 1M-token context is ~4 MB).
  size_t max_output_bytes = size_t{32} << 20;
  int64_t max_steps = 20'000'000;  // statements + expressions evaluated, plus loop iterations
  // Memory of the strings and containers created, summed over the render (never freed from the count, so it also
  // bounds the peak). Temporary buffers of one operation, at most a few times its largest operand, are not counted.
  int64_t max_bytes_built = int64_t{256} << 20;
  int64_t max_work_bytes = int64_t{1} << 30;  // bytes compared, scanned or copied, summed over the render
  double max_seconds = 1.0 * kRenderClockScale;  // wall-clock time of one render
  int max_depth = 1000;                       // nested evaluation (statements, expressions, macro calls)
  int max_macro_depth = 100;                  // nested macro calls
};

// Approximate memory of values that the byte counts of their contents miss: a string value's own allocation (the
// shared control block, the std::string, the allocator's header) and a list, tuple or dict's.
inline constexpr size_t kStringValueOverhead = 96;
inline constexpr size_t kContainerValueOverhead = 128;

// The running account of one render against its RenderLimits. Anything that can repeat, grow or scan charges it,
// before doing so.
class RenderBudget {
 public:
  explicit RenderBudget(const RenderLimits& limits);

  const RenderLimits& limits() const { return limits_; }

  void charge_steps(int64_t steps, int line = 0) {
    steps_ += steps;
    if (steps_ > limits_.max_steps) fail_steps(line);
    tick(steps * kStepTicks, line);
  }

  // Called before a value of `bytes` is built, so that the allocation itself never happens when it is too big.
  // Building is copying, so the bytes count as work too.
  void charge_bytes(size_t bytes, int line = 0) {
    check_value_size(bytes, line);
    bytes_built_ += static_cast<int64_t>(bytes);
    if (bytes_built_ > limits_.max_bytes_built) fail_bytes_built(line);
    charge_work(bytes, line);
  }

  // Bytes about to be compared, scanned or copied (or container slots walked, counted by their size).
  void charge_work(size_t bytes, int line = 0) {
    work_ += static_cast<int64_t>(bytes > kHugeCharge ? kHugeCharge : bytes);
    if (work_ > limits_.max_work_bytes) fail_work(line);
    tick(static_cast<int64_t>(bytes > kHugeCharge ? kHugeCharge : bytes), line);
  }

  // What the render has used so far.
  int64_t steps_used() const { return steps_; }
  int64_t bytes_built() const { return bytes_built_; }
  int64_t work_done() const { return work_; }

  // Throws when one string or container would be `bytes` long (without charging anything).
  void check_value_size(size_t bytes, int line = 0) const {
    if (bytes > limits_.max_output_bytes) fail_value_size(bytes, line);
  }

  // The budget of the render running on this thread, or nullptr outside a render. The primitives that have no
  // budget parameter (equality, repr, dict hashing, the text functions) charge it through the functions below, so
  // that no path through the interpreter escapes the count.
  static RenderBudget* current();

  // Makes `budget` the current one for its lifetime (restoring the previous one after).
  class Activation {
   public:
    explicit Activation(RenderBudget& budget);
    ~Activation();
    Activation(const Activation&) = delete;
    Activation& operator=(const Activation&) = delete;

   private:
    RenderBudget* previous_;
  };

 private:
  // One step costs about as much time as copying this many bytes; the clock is read every kClockTicks (every 64
  // steps or 4 KiB of work: often enough that a step costing far more than it was charged cannot run on for long,
  // rare enough that reading the clock costs nothing measurable).
  static constexpr int64_t kStepTicks = 64;
  static constexpr int64_t kClockTicks = int64_t{1} << 12;
  // Larger charges are clipped so that the sums cannot overflow (they fail at once anyway).
  static constexpr size_t kHugeCharge = size_t{1} << 50;

  void tick(int64_t ticks, int line) {
    ticks_since_clock_ += ticks;
    if (ticks_since_clock_ >= kClockTicks) check_clock(line);
  }
  void check_clock(int line);

  [[noreturn]] void fail_steps(int line) const;
  [[noreturn]] void fail_bytes_built(int line) const;
  [[noreturn]] void fail_work(int line) const;
  [[noreturn]] void fail_value_size(size_t bytes, int line) const;

  RenderLimits limits_;
  std::chrono::steady_clock::time_point deadline_;
  int64_t steps_ = 0;
  int64_t bytes_built_ = 0;
  int64_t work_ = 0;
  int64_t ticks_since_clock_ = 0;
};

// Charges the current render, if any (no-ops outside a render, where the same functions serve the parser).
inline void charge_render_work(size_t bytes) {
  if (RenderBudget* budget = RenderBudget::current()) budget->charge_work(bytes);
}
inline void charge_render_bytes(size_t bytes) {
  if (RenderBudget* budget = RenderBudget::current()) budget->charge_bytes(bytes);
}
// The longest string or container the current render allows (no bound outside a render), for loops that build a
// value piece by piece and must stop before passing it.
inline size_t render_value_limit() {
  const RenderBudget* budget = RenderBudget::current();
  return budget ? budget->limits().max_output_bytes : SIZE_MAX;
}
// Throws the size-limit error for a value that would be `bytes` long.
void fail_render_value_size(size_t bytes);

}  // namespace pagedllm::jinja
