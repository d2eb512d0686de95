#pragma once
// Bounds on one render. A chat template comes from whatever model file the user opened, so a hostile or broken one
// (an endless range, a string doubled in a loop, a macro calling itself) must end in a TemplateError, not a hang,
// an exhausted machine or a stack overflow.
#include <cstddef>
#include <cstdint>
#include <string>

#include "templates/jinja_error.h"

namespace pagedllm::jinja {

struct RenderLimits {
  size_t max_output_bytes = size_t{64} << 20;  // the rendered text, and any one string value
  int64_t max_steps = 20'000'000;              // statements + expressions evaluated, plus loop iterations
  int64_t max_bytes_built = int64_t{1} << 30;  // bytes of strings and containers created, summed over the render
  int max_depth = 1000;                        // nested evaluation (statements, expressions, macro calls)
  int max_macro_depth = 100;                   // nested macro calls
};

// The running account of one render against its RenderLimits. Anything that can repeat or grow charges it.
class RenderBudget {
 public:
  explicit RenderBudget(const RenderLimits& limits) : limits_(limits) {}

  const RenderLimits& limits() const { return limits_; }

  void charge_steps(int64_t steps, int line = 0) {
    steps_ += steps;
    if (steps_ > limits_.max_steps) {
      throw TemplateError(TemplateError::Kind::limit,
                          "the template ran more than " + std::to_string(limits_.max_steps) +
                              " steps (an endless or runaway loop?)",
                          line);
    }
  }

  // Called before a value of `bytes` is built, so that the allocation itself never happens when it is too big.
  void charge_bytes(size_t bytes, int line = 0) {
    if (bytes > limits_.max_output_bytes) {
      throw TemplateError(TemplateError::Kind::limit,
                          "a value of " + std::to_string(bytes) + " bytes exceeds the limit of " +
                              std::to_string(limits_.max_output_bytes),
                          line);
    }
    bytes_built_ += static_cast<int64_t>(bytes);
    if (bytes_built_ > limits_.max_bytes_built) {
      throw TemplateError(TemplateError::Kind::limit,
                          "the template built more than " + std::to_string(limits_.max_bytes_built) +
                              " bytes of values (runaway growth?)",
                          line);
    }
  }

 private:
  RenderLimits limits_;
  int64_t steps_ = 0;
  int64_t bytes_built_ = 0;
};

}  // namespace pagedllm::jinja
