// The render budget (see jinja_limits.h): its errors, its clock, and the thread's current budget.
#include "templates/jinja_limits.h"

#include <fmt/format.h>

namespace pagedllm::jinja {
namespace {

thread_local RenderBudget* t_current_budget = nullptr;

std::string mebibytes(int64_t bytes) {
  if (bytes % (int64_t{1} << 20) == 0) return fmt::format("{} MiB", bytes >> 20);
  return fmt::format("{} bytes", bytes);
}

[[noreturn]] void fail_limit(const std::string& detail, int line) {
  throw TemplateError(TemplateError::Kind::limit, detail, line);
}

}  // namespace

RenderBudget::RenderBudget(const RenderLimits& limits)
    : limits_(limits),
      deadline_(std::chrono::steady_clock::now() +
                std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                    std::chrono::duration<double>(limits.max_seconds))) {}

RenderBudget* RenderBudget::current() { return t_current_budget; }

RenderBudget::Activation::Activation(RenderBudget& budget) : previous_(t_current_budget) {
  t_current_budget = &budget;
}

RenderBudget::Activation::~Activation() { t_current_budget = previous_; }

void RenderBudget::check_clock(int line) {
  ticks_since_clock_ = 0;
  if (std::chrono::steady_clock::now() > deadline_) {
    fail_limit(fmt::format("the template is too expensive: it ran for more than {} s", limits_.max_seconds), line);
  }
}

void RenderBudget::fail_steps(int line) const {
  fail_limit(fmt::format("the template is too expensive: it ran more than {} steps (an endless or runaway loop?)",
                         limits_.max_steps),
             line);
}

void RenderBudget::fail_bytes_built(int line) const {
  fail_limit(fmt::format("the template is too expensive: it built more than {} of values (runaway growth?)",
                         mebibytes(limits_.max_bytes_built)),
             line);
}

void RenderBudget::fail_work(int line) const {
  fail_limit(fmt::format("the template is too expensive: it compared, scanned or copied more than {} of text "
                         "and values",
                         mebibytes(limits_.max_work_bytes)),
             line);
}

void RenderBudget::fail_value_size(size_t bytes, int line) const {
  fail_limit(fmt::format("a value of {} bytes exceeds the limit of {}", bytes,
                         mebibytes(static_cast<int64_t>(limits_.max_output_bytes))),
             line);
}

void fail_render_value_size(size_t bytes) {
  if (const RenderBudget* budget = RenderBudget::current()) budget->check_value_size(bytes);
  fail_limit(fmt::format("a value of {} bytes is too large", bytes), 0);
}

}  // namespace pagedllm::jinja
