#include "engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "common/error.h"

namespace pagedllm {

void validate_sampling_params(const SamplingParams& p) {
  if (!std::isfinite(p.temperature)) fail("sampling: temperature must be a finite number, got {}", p.temperature);
  // One rule for every front end (run/chat flags, /set, batch request lines): 0 switches top-k off.
  if (p.top_k < 0) fail("sampling: top_k must be 0 (off) or a positive count, got {}", p.top_k);
  if (!(p.top_p >= 0.0f && p.top_p <= 1.0f)) fail("sampling: top_p must be between 0 and 1, got {}", p.top_p);
  if (!(p.min_p >= 0.0f && p.min_p <= 1.0f)) fail("sampling: min_p must be between 0 and 1, got {}", p.min_p);
  if (!(p.repeat_penalty > 0.0f) || !std::isfinite(p.repeat_penalty))
    fail("sampling: repeat_penalty must be a positive number, got {}", p.repeat_penalty);
  if (p.repeat_last_n < -1) fail("sampling: repeat_last_n must be -1 (all), 0 (off) or positive, got {}", p.repeat_last_n);
  if (!std::isfinite(p.frequency_penalty)) fail("sampling: frequency_penalty must be finite, got {}", p.frequency_penalty);
  if (!std::isfinite(p.presence_penalty)) fail("sampling: presence_penalty must be finite, got {}", p.presence_penalty);
}

namespace sampling {

namespace {

// Descending logit, ties broken by the lower id so every sort and selection is deterministic.
bool ranks_before(const TokenCandidate& a, const TokenCandidate& b) {
  return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
}

bool is_sorted_descending(const std::vector<TokenCandidate>& candidates) {
  return std::is_sorted(candidates.begin(), candidates.end(), ranks_before);
}

}  // namespace

void apply_penalties(std::vector<TokenCandidate>& candidates, std::span<const int32_t> previous_tokens,
                     const SamplingParams& params) {
  const bool neutral = params.repeat_penalty == 1.0f && params.frequency_penalty == 0.0f &&
                       params.presence_penalty == 0.0f;
  if (neutral || params.repeat_last_n == 0 || previous_tokens.empty()) return;
  size_t window = params.repeat_last_n < 0 ? previous_tokens.size() : static_cast<size_t>(params.repeat_last_n);
  window = std::min(window, previous_tokens.size());

  // Count by sorting a copy of the window: the window is short, the vocabulary is not.
  thread_local std::vector<int32_t> recent;  // [window] reused
  recent.assign(previous_tokens.end() - static_cast<std::ptrdiff_t>(window), previous_tokens.end());
  std::sort(recent.begin(), recent.end());
  for (size_t i = 0; i < recent.size();) {
    size_t j = i;
    while (j < recent.size() && recent[j] == recent[i]) ++j;
    const int32_t token = recent[i];
    const auto count = static_cast<float>(j - i);
    i = j;
    if (token < 0 || static_cast<size_t>(token) >= candidates.size()) continue;
    float& logit = candidates[static_cast<size_t>(token)].logit;
    // Dividing a negative logit would raise it, so negative logits are multiplied instead (both push it down).
    logit = logit <= 0.0f ? logit * params.repeat_penalty : logit / params.repeat_penalty;
    logit -= count * params.frequency_penalty + params.presence_penalty;
  }
}

void apply_top_k(std::vector<TokenCandidate>& candidates, int k) {
  if (k <= 0 || static_cast<size_t>(k) >= candidates.size()) {
    if (!is_sorted_descending(candidates)) std::sort(candidates.begin(), candidates.end(), ranks_before);
    return;
  }
  std::partial_sort(candidates.begin(), candidates.begin() + k, candidates.end(), ranks_before);
  candidates.resize(static_cast<size_t>(k));
}

void apply_top_p(std::vector<TokenCandidate>& candidates, float p) {
  if (p >= 1.0f || candidates.size() <= 1) return;
  if (!is_sorted_descending(candidates)) std::sort(candidates.begin(), candidates.end(), ranks_before);
  const float max = candidates.front().logit;
  double total = 0.0;
  for (const TokenCandidate& c : candidates) total += std::exp(static_cast<double>(c.logit - max));
  double cumulative = 0.0;
  for (size_t i = 0; i < candidates.size(); ++i) {
    cumulative += std::exp(static_cast<double>(candidates[i].logit - max)) / total;
    if (cumulative >= p) {
      candidates.resize(i + 1);
      return;
    }
  }
}

void apply_min_p(std::vector<TokenCandidate>& candidates, float p) {
  if (p <= 0.0f || candidates.size() <= 1) return;
  const float max = candidates[argmax(candidates)].logit;
  const float threshold = max + std::log(p);
  // Order-preserving filter: a sorted list stays sorted.
  std::erase_if(candidates, [threshold](const TokenCandidate& c) { return !(c.logit >= threshold); });
}

void apply_temperature(std::vector<TokenCandidate>& candidates, float temperature) {
  for (TokenCandidate& c : candidates) c.logit /= temperature;
}

size_t argmax(std::span<const TokenCandidate> candidates) {
  size_t best = 0;
  for (size_t i = 1; i < candidates.size(); ++i)
    if (candidates[i].logit > candidates[best].logit) best = i;
  return best;
}

}  // namespace sampling

namespace {

uint32_t resolve_seed(uint64_t seed) {
  if (seed == kRandomSeed) return std::random_device{}();
  return static_cast<uint32_t>(seed);
}

}  // namespace

Sampler::Sampler(const SamplingParams& params)
    : params_(params), seed_(resolve_seed(params.seed)), rng_(seed_) {
  validate_sampling_params(params_);
}

int32_t Sampler::sample(std::span<const float> logits, std::span<const int32_t> previous_tokens) {
  if (logits.empty()) fail("sampler: the model produced no logits (empty vocabulary)");
  candidates_.resize(logits.size());
  for (size_t i = 0; i < logits.size(); ++i) {
    // A NaN would poison every comparison below; treat it as impossible.
    const float logit = std::isnan(logits[i]) ? -std::numeric_limits<float>::infinity() : logits[i];
    candidates_[i] = TokenCandidate{static_cast<int32_t>(i), logit};
  }
  sampling::apply_penalties(candidates_, previous_tokens, params_);
  if (params_.temperature <= 0.0f) return candidates_[sampling::argmax(candidates_)].id;

  if (params_.top_k > 0) sampling::apply_top_k(candidates_, params_.top_k);
  sampling::apply_top_p(candidates_, params_.top_p);
  sampling::apply_min_p(candidates_, params_.min_p);
  sampling::apply_temperature(candidates_, params_.temperature);

  const size_t best = sampling::argmax(candidates_);
  if (candidates_.size() == 1) return candidates_[best].id;
  const float max = candidates_[best].logit;
  weights_.resize(candidates_.size());
  double total = 0.0;
  for (size_t i = 0; i < candidates_.size(); ++i) {
    weights_[i] = std::exp(static_cast<double>(candidates_[i].logit - max));
    total += weights_[i];
  }
  // Every logit -inf (or a max of +inf): no distribution to draw from, the best candidate is the answer.
  if (!(total > 0.0) || !std::isfinite(total)) return candidates_[best].id;
  std::discrete_distribution<size_t> distribution(weights_.begin(), weights_.end());
  return candidates_[distribution(rng_)].id;
}

}  // namespace pagedllm
