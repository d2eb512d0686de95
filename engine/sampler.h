#pragma once
// Token sampling with llama.cpp's default chain (common_sampler's order):
//   penalties -> top_k -> top_p -> min_p -> temperature -> dist (softmax, std::discrete_distribution, std::mt19937)
// and greedy (argmax of the penalised logits, first maximum) when temperature <= 0.
//
// The steps are free functions over a candidate list so that tests can check what each one keeps; `Sampler` owns
// the RNG and the reusable buffers (no allocation per token beyond the final draw's small distribution).
#include <cstdint>
#include <random>
#include <span>
#include <vector>

namespace pagedllm {

// llama.cpp's LLAMA_DEFAULT_SEED: "pick a random seed".
inline constexpr uint64_t kRandomSeed = 0xFFFFFFFFu;

struct SamplingParams {
  float temperature = 0.8f;      // <= 0: greedy
  int top_k = 40;                // 0: off
  float top_p = 0.95f;           // >= 1: off
  float min_p = 0.05f;           // <= 0: off
  float repeat_penalty = 1.0f;   // 1: off; > 1 discourages tokens seen in the window
  int repeat_last_n = 64;        // window of previous tokens the penalties look at; 0: off, -1: all of them
  float frequency_penalty = 0.0f;
  float presence_penalty = 0.0f;
  uint64_t seed = kRandomSeed;   // kRandomSeed: seeded from std::random_device
};

// Throws pagedllm::Error naming the first parameter out of range (e.g. top_p outside [0, 1]).
void validate_sampling_params(const SamplingParams& params);

struct TokenCandidate {
  int32_t id;
  float logit;
};

// The chain's steps. Each keeps at least one candidate. Those that sort leave the list sorted by descending logit
// (ties: lower id first).
namespace sampling {

// For each candidate seen c > 0 times among the last `repeat_last_n` of `previous_tokens`:
// logit <= 0 ? logit * repeat : logit / repeat, then logit -= c * frequency + presence. Needs candidates[i].id == i
// (the full vocabulary, before any filter). Ids outside the vocabulary are ignored.
void apply_penalties(std::vector<TokenCandidate>& candidates, std::span<const int32_t> previous_tokens,
                     const SamplingParams& params);
// The k largest logits, sorted (a partial sort: O(n log k)). k <= 0 or k >= size: keeps all, sorted.
void apply_top_k(std::vector<TokenCandidate>& candidates, int k);
// The shortest prefix of the sorted list whose softmax mass reaches p (p >= 1: no-op).
void apply_top_p(std::vector<TokenCandidate>& candidates, float p);
// Keeps candidates with logit >= max_logit + ln(p), i.e. probability >= p * max probability (p <= 0: no-op).
void apply_min_p(std::vector<TokenCandidate>& candidates, float p);
void apply_temperature(std::vector<TokenCandidate>& candidates, float temperature);
// Index of the largest logit, the first one on ties.
size_t argmax(std::span<const TokenCandidate> candidates);

}  // namespace sampling

class Sampler {
 public:
  explicit Sampler(const SamplingParams& params);

  // logits: [n_vocab]; previous_tokens: the sequence so far (prompt and generated), oldest first.
  int32_t sample(std::span<const float> logits, std::span<const int32_t> previous_tokens);

  const SamplingParams& params() const { return params_; }
  uint32_t seed() const { return seed_; }  // the seed actually used (drawn when params.seed == kRandomSeed)

 private:
  SamplingParams params_;
  uint32_t seed_;
  std::mt19937 rng_;
  std::vector<TokenCandidate> candidates_;  // [n_vocab] reused across calls
  std::vector<double> weights_;             // [n_survivors] reused across calls
};

}  // namespace pagedllm
