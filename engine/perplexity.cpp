#include "engine/perplexity.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "common/error.h"
#include "engine/scheduler.h"

namespace pagedllm {

double token_nll(std::span<const float> logits, int32_t target) {
  float max_logit = logits[0];
  for (float v : logits) max_logit = std::max(max_logit, v);
  double sum_exp = 0.0;
  for (float v : logits) sum_exp += std::exp(v - max_logit);
  return static_cast<double>(max_logit) + std::log(sum_exp) - static_cast<double>(logits[static_cast<size_t>(target)]);
}

double NllTotals::perplexity() const { return count == 0 ? 0.0 : std::exp(nll / static_cast<double>(count)); }

double NllTotals::perplexity_error() const {
  if (count < 2) return 0.0;
  const double n = static_cast<double>(count);
  const double mean = nll / n;
  const double variance = nll2 / n - mean * mean;
  if (!(variance > 0)) return 0.0;
  return std::sqrt(variance / (n - 1)) * std::exp(mean);
}

void check_perplexity_plan(const PerplexityPlan& plan) {
  if (plan.n_ctx < 3) {
    fail("-c {} is too small for a perplexity: a chunk scores its second half after the first token, so it needs at "
         "least 3 tokens", plan.n_ctx);
  }
  if (plan.max_chunks == 0 || plan.max_chunks < -1) {
    fail("--chunks {} must be positive (or -1 for every chunk of the text)", plan.max_chunks);
  }
}

int perplexity_chunks(int64_t n_tokens, const PerplexityPlan& plan) {
  check_perplexity_plan(plan);
  if (n_tokens < 2 * static_cast<int64_t>(plan.n_ctx)) {
    fail("the text is {} tokens, too short for -c {}: a perplexity needs at least 2 x {} = {} tokens; give a longer "
         "text or a smaller -c", n_tokens, plan.n_ctx, plan.n_ctx, 2 * static_cast<int64_t>(plan.n_ctx));
  }
  const int64_t whole = n_tokens / plan.n_ctx;
  return static_cast<int>(plan.max_chunks < 0 ? whole : std::min<int64_t>(whole, plan.max_chunks));
}

namespace {

// Scores each chunk's rows as the scheduler reports them and hands finished chunks on in text order.
class PerplexitySink : public TokenSink {
 public:
  PerplexitySink(std::span<const int32_t> tokens, int n_ctx, int n_chunks,
                 const std::function<void(const PerplexityChunk&)>& on_chunk)
      : tokens_(tokens), n_ctx_(n_ctx), totals_(static_cast<size_t>(n_chunks)),
        done_(static_cast<size_t>(n_chunks), false), on_chunk_(on_chunk) {}

  void on_logits(RequestId id, int, int32_t position, std::span<const float> logits) override {
    // Positions n_ctx/2 .. n_ctx-2 are scored: each predicts the token after it, inside the chunk.
    if (position < n_ctx_ / 2 || position > n_ctx_ - 2) return;
    const size_t next = static_cast<size_t>(id) * static_cast<size_t>(n_ctx_) + static_cast<size_t>(position) + 1;
    const double v = token_nll(logits, tokens_[next]);
    if (!std::isfinite(v)) {
      if (error_.empty()) {
        error_ = fmt::format("chunk {}: the model computed non-finite logits (NaN or infinity) at position {}: its "
                             "weights or settings are broken", id + 1, position);
      }
      return;
    }
    NllTotals& t = totals_[static_cast<size_t>(id)];
    t.nll += v;
    t.nll2 += v * v;
    t.count += 1;
  }

  void on_finish(RequestResult result) override {
    if (!result.error.empty()) {
      if (error_.empty()) error_ = fmt::format("chunk {}: {}", result.id + 1, result.error);
      return;
    }
    done_[static_cast<size_t>(result.id)] = true;
    while (next_ < done_.size() && done_[next_]) {
      PerplexityChunk chunk;
      chunk.index = static_cast<int>(next_);
      chunk.chunk = totals_[next_];
      running_.add(chunk.chunk);
      chunk.running = running_;
      if (on_chunk_) on_chunk_(chunk);
      next_ += 1;
    }
  }

  const std::string& error() const { return error_; }
  const NllTotals& running() const { return running_; }
  bool complete() const { return next_ == done_.size(); }

 private:
  std::span<const int32_t> tokens_;
  int n_ctx_;
  std::vector<NllTotals> totals_;  // [n_chunks]
  std::vector<bool> done_;         // [n_chunks]
  size_t next_ = 0;                // the first chunk not yet handed on
  NllTotals running_;
  std::string error_;
  const std::function<void(const PerplexityChunk&)>& on_chunk_;
};

}  // namespace

NllTotals evaluate_perplexity(Scheduler& scheduler, std::span<const int32_t> tokens, int32_t bos,
                              const PerplexityPlan& plan, const std::function<void(const PerplexityChunk&)>& on_chunk,
                              const std::function<void()>& after_step) {
  const int n_chunks = perplexity_chunks(static_cast<int64_t>(tokens.size()), plan);
  if (scheduler.max_sequence_tokens() < plan.n_ctx) {
    fail("a chunk of -c {} tokens does not fit: a sequence may hold at most {} tokens here (raise --kv-mem)",
         plan.n_ctx, scheduler.max_sequence_tokens());
  }
  PerplexitySink sink(tokens, plan.n_ctx, n_chunks, on_chunk);
  for (int i = 0; i < n_chunks; ++i) {
    GenerationRequest request;
    request.id = i;
    const auto start = tokens.begin() + static_cast<std::ptrdiff_t>(i) * plan.n_ctx;
    request.prompt.assign(start, start + plan.n_ctx);  // [n_ctx]
    // Every chunk starts as a text does: with BOS in place of its first token, when the model has one.
    if (bos >= 0) request.prompt.front() = bos;
    request.max_tokens = 0;
    request.logits = LogitsWanted::All;
    scheduler.submit(std::move(request), &sink);
  }
  scheduler.run_until_idle([&] {
    if (!sink.error().empty()) fail("{}", sink.error());
    if (after_step) after_step();
  });
  if (!sink.error().empty()) fail("{}", sink.error());
  if (!sink.complete()) throw std::logic_error("perplexity: the scheduler went idle before every chunk finished");
  return sink.running();
}

}  // namespace pagedllm
