// The sampler: llama.cpp's chain (penalties -> top_k -> top_p -> min_p -> temperature -> dist), each step's surviving
// set on hand-made logits, greedy, seeding, and the drawn frequencies against the softmax they should follow.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <set>
#include <vector>

#include "common/error.h"
#include "engine/sampler.h"

using namespace pagedllm;

namespace {

std::vector<TokenCandidate> candidates_of(const std::vector<float>& logits) {
  std::vector<TokenCandidate> candidates;
  for (size_t i = 0; i < logits.size(); ++i) candidates.push_back({static_cast<int32_t>(i), logits[i]});
  return candidates;
}

std::set<int32_t> ids_of(const std::vector<TokenCandidate>& candidates) {
  std::set<int32_t> ids;
  for (const TokenCandidate& c : candidates) ids.insert(c.id);
  return ids;
}

std::vector<float> random_logits(size_t n, uint32_t seed, float spread = 3.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, spread);
  std::vector<float> logits(n);
  for (float& x : logits) x = normal(rng);
  return logits;
}

// The ids that survive top_k -> top_p -> min_p, derived here without the functions under test: rank every id by
// logit (ties: lower id first), keep the first k, take the softmax of those in double, keep the shortest prefix
// whose probability sum reaches top_p, then keep those whose probability is at least min_p times the first one's.
std::set<int32_t> chain_survivors(const std::vector<float>& logits, int top_k, float top_p, float min_p) {
  std::vector<int32_t> ranked(logits.size());
  for (size_t i = 0; i < ranked.size(); ++i) ranked[i] = static_cast<int32_t>(i);
  std::stable_sort(ranked.begin(), ranked.end(), [&](int32_t a, int32_t b) {
    return logits[static_cast<size_t>(a)] > logits[static_cast<size_t>(b)];
  });
  if (top_k > 0 && static_cast<size_t>(top_k) < ranked.size()) ranked.resize(static_cast<size_t>(top_k));
  std::vector<double> probability(ranked.size());
  double total = 0;
  for (size_t i = 0; i < ranked.size(); ++i) {
    probability[i] = std::exp(static_cast<double>(logits[static_cast<size_t>(ranked[i])]) -
                              static_cast<double>(logits[static_cast<size_t>(ranked[0])]));
    total += probability[i];
  }
  size_t kept = ranked.size();
  double cumulative = 0;
  for (size_t i = 0; i < ranked.size(); ++i) {
    cumulative += probability[i] / total;
    if (cumulative >= top_p) {
      kept = i + 1;
      break;
    }
  }
  std::set<int32_t> survivors;
  for (size_t i = 0; i < kept; ++i) {
    if (probability[i] >= min_p * probability[0]) survivors.insert(ranked[i]);
  }
  return survivors;
}

SamplingParams greedy_params() {
  SamplingParams p;
  p.temperature = 0.0f;
  return p;
}

}  // namespace

TEST_CASE("greedy (temperature <= 0) is the argmax, the first one on ties") {
  const std::vector<float> logits = random_logits(5000, 1);
  const auto expected = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
  for (const float temperature : {0.0f, -1.0f}) {
    SamplingParams p = greedy_params();
    p.temperature = temperature;
    Sampler sampler(p);
    CHECK(sampler.sample(logits, {}) == expected);
  }
  Sampler sampler(greedy_params());
  CHECK(sampler.sample(std::vector<float>{1.0f, 3.0f, 2.0f, 3.0f}, {}) == 1);
}

TEST_CASE("top_k = 1 is greedy whatever the temperature and seed") {
  const std::vector<float> logits = random_logits(3000, 2);
  const auto expected = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
  for (uint64_t seed = 0; seed < 20; ++seed) {
    SamplingParams p;
    p.top_k = 1;
    p.temperature = 5.0f;
    p.min_p = 0.0f;
    p.top_p = 1.0f;
    p.seed = seed;
    Sampler sampler(p);
    CHECK(sampler.sample(logits, {}) == expected);
  }
}

TEST_CASE("a fixed seed reproduces the same tokens; different seeds diverge") {
  const std::vector<float> logits = random_logits(1000, 3);
  SamplingParams p;
  p.temperature = 1.5f;
  p.top_k = 0;
  p.top_p = 1.0f;
  p.min_p = 0.0f;
  auto draw = [&](uint64_t seed) {
    p.seed = seed;
    Sampler sampler(p);
    CHECK(sampler.seed() == static_cast<uint32_t>(seed));
    std::vector<int32_t> tokens;
    for (int i = 0; i < 50; ++i) tokens.push_back(sampler.sample(logits, tokens));
    return tokens;
  };
  CHECK(draw(42) == draw(42));
  CHECK(draw(42) != draw(43));
  const std::vector<int32_t> drawn = draw(7);
  CHECK(std::set<int32_t>(drawn.begin(), drawn.end()).size() > 1);  // it does sample, not argmax
}

TEST_CASE("top_k keeps the k largest, sorted, with a partial sort") {
  auto candidates = candidates_of({0.5f, 3.0f, -1.0f, 2.0f, 2.0f, 7.0f});
  sampling::apply_top_k(candidates, 3);
  REQUIRE(candidates.size() == 3);
  CHECK(candidates[0].id == 5);
  CHECK(candidates[1].id == 1);
  CHECK(candidates[2].id == 3);  // 3 and 4 tie at 2.0: the lower id ranks first
  auto all = candidates_of({0.5f, 3.0f, -1.0f});
  sampling::apply_top_k(all, 0);  // off: everything, sorted
  CHECK(all.size() == 3);
  CHECK(all[0].id == 1);
  CHECK(all[2].id == 2);
}

TEST_CASE("top_p keeps the shortest sorted prefix whose mass reaches p") {
  // Probabilities 0.5, 0.25, 0.125, 0.125 (logits are logs of them).
  const std::vector<float> logits = {std::log(0.125f), std::log(0.5f), std::log(0.125f), std::log(0.25f)};
  auto keep = [&](float p) {
    auto candidates = candidates_of(logits);
    sampling::apply_top_p(candidates, p);
    return ids_of(candidates);
  };
  CHECK(keep(0.4f) == std::set<int32_t>{1});
  CHECK(keep(0.5f) == std::set<int32_t>{1});  // 0.5 up to rounding; the exact boundary has its own test
  CHECK(keep(0.6f) == std::set<int32_t>{1, 3});
  CHECK(keep(0.8f) == std::set<int32_t>{1, 3, 0});
  CHECK(keep(0.99f) == std::set<int32_t>{0, 1, 2, 3});
  CHECK(keep(1.0f) == std::set<int32_t>{0, 1, 2, 3});
  CHECK(keep(0.0f) == std::set<int32_t>{1});  // never empty
}

TEST_CASE("top_p stops at the first candidate whose cumulative probability equals p exactly (>= p, not > p)") {
  // Four equal logits: each probability is exactly 0.25 in float and double, so the running sums 0.25, 0.5 and 0.75
  // are exact and meet p = 0.25, 0.5, 0.75 with no rounding on either side. llama.cpp's top-p keeps the shortest
  // prefix whose sum is >= p; a `>` would keep one candidate more at each of these.
  const std::vector<float> logits = {1.5f, 1.5f, 1.5f, 1.5f};
  auto kept = [&](float p) {
    auto candidates = candidates_of(logits);
    sampling::apply_top_p(candidates, p);
    return candidates.size();
  };
  CHECK(kept(0.25f) == 1);
  CHECK(kept(0.5f) == 2);
  CHECK(kept(0.75f) == 3);
  // One float step above each boundary needs the next candidate.
  CHECK(kept(std::nextafter(0.25f, 1.0f)) == 2);
  CHECK(kept(std::nextafter(0.5f, 1.0f)) == 3);
  CHECK(kept(std::nextafter(0.75f, 1.0f)) == 4);
  // Ties rank the lower id first, so the survivors of p = 0.5 are ids 0 and 1.
  auto candidates = candidates_of(logits);
  sampling::apply_top_p(candidates, 0.5f);
  CHECK(ids_of(candidates) == std::set<int32_t>{0, 1});

  // The same boundary through the whole sampler: with top_p = 0.5 only ids 0 and 1 are ever drawn, and both are.
  SamplingParams p;
  p.top_k = 0;
  p.top_p = 0.5f;
  p.min_p = 0.0f;
  p.temperature = 1.0f;
  p.seed = 11;
  Sampler sampler(p);
  std::set<int32_t> drawn;
  for (int i = 0; i < 400; ++i) drawn.insert(sampler.sample(logits, {}));
  CHECK(drawn == std::set<int32_t>{0, 1});
}

TEST_CASE("min_p keeps tokens with probability >= p times the largest") {
  // Probabilities relative to the max: 1, 0.5, 0.1, 0.01.
  const std::vector<float> logits = {2.0f + std::log(0.1f), 2.0f, 2.0f + std::log(0.5f), 2.0f + std::log(0.01f)};
  auto keep = [&](float p) {
    auto candidates = candidates_of(logits);
    sampling::apply_min_p(candidates, p);
    return ids_of(candidates);
  };
  CHECK(keep(0.6f) == std::set<int32_t>{1});
  CHECK(keep(0.4f) == std::set<int32_t>{1, 2});
  CHECK(keep(0.05f) == std::set<int32_t>{0, 1, 2});
  CHECK(keep(0.001f) == std::set<int32_t>{0, 1, 2, 3});
  CHECK(keep(0.0f) == std::set<int32_t>{0, 1, 2, 3});
  CHECK(keep(1.0f) == std::set<int32_t>{1});
}

TEST_CASE("repetition penalties push seen tokens down, for positive and negative logits") {
  const std::vector<float> logits = {2.0f, -2.0f, 1.0f, 0.5f};
  const std::vector<int32_t> previous = {0, 1, 1, 99 /* outside the vocabulary: ignored */};
  SamplingParams p;
  p.repeat_penalty = 2.0f;
  auto candidates = candidates_of(logits);
  sampling::apply_penalties(candidates, previous, p);
  CHECK(candidates[0].logit == doctest::Approx(1.0f));   // positive: divided
  CHECK(candidates[1].logit == doctest::Approx(-4.0f));  // negative: multiplied, so it also goes down
  CHECK(candidates[2].logit == 1.0f);                    // unseen: untouched
  CHECK(candidates[3].logit == 0.5f);

  p.repeat_penalty = 1.0f;
  p.frequency_penalty = 0.5f;
  p.presence_penalty = 0.25f;
  candidates = candidates_of(logits);
  sampling::apply_penalties(candidates, previous, p);
  CHECK(candidates[0].logit == doctest::Approx(2.0f - 0.5f - 0.25f));
  CHECK(candidates[1].logit == doctest::Approx(-2.0f - 2 * 0.5f - 0.25f));  // seen twice

  // Only the last repeat_last_n tokens count.
  p.repeat_last_n = 2;
  candidates = candidates_of(logits);
  sampling::apply_penalties(candidates, previous, p);
  CHECK(candidates[0].logit == 2.0f);
  CHECK(candidates[1].logit == doctest::Approx(-2.0f - 0.5f - 0.25f));  // one of its two occurrences is in window

  // A penalty large enough changes the greedy choice.
  SamplingParams g = greedy_params();
  g.repeat_penalty = 4.0f;
  Sampler sampler(g);
  CHECK(sampler.sample(logits, {}) == 0);
  CHECK(sampler.sample(logits, std::vector<int32_t>{0}) == 2);
}

TEST_CASE("drawn frequencies follow the softmax of the logits divided by the temperature") {
  const std::vector<float> logits = {1.0f, 0.0f, 2.0f, -1.0f, 0.5f};
  const float temperature = 0.7f;
  SamplingParams p;
  p.temperature = temperature;
  p.top_k = 0;
  p.top_p = 1.0f;
  p.min_p = 0.0f;
  p.seed = 2024;
  Sampler sampler(p);
  const int draws = 200000;
  std::vector<int> counts(logits.size(), 0);
  for (int i = 0; i < draws; ++i) ++counts[static_cast<size_t>(sampler.sample(logits, {}))];

  double total = 0.0;
  std::vector<double> expected(logits.size());
  for (size_t i = 0; i < logits.size(); ++i) total += expected[i] = std::exp(logits[i] / temperature);
  double chi_square = 0.0;
  for (size_t i = 0; i < logits.size(); ++i) {
    const double expected_count = expected[i] / total * draws;
    chi_square += (counts[i] - expected_count) * (counts[i] - expected_count) / expected_count;
    CAPTURE(i);
    // Five standard deviations of a binomial count: fails by chance with probability ~1e-6.
    CHECK(std::fabs(counts[i] - expected_count) < 5.0 * std::sqrt(expected_count));
  }
  // 4 degrees of freedom: P(chi^2 > 23.5) < 1e-4.
  CHECK(chi_square < 23.5);
}

TEST_CASE("the default chain only ever returns a token that survives top_k, top_p and min_p") {
  const std::vector<float> logits = random_logits(2000, 9, 1.0f);
  SamplingParams p;  // llama.cpp's defaults: top_k 40, top_p 0.95, min_p 0.05, temperature 0.8
  p.seed = 5;
  const std::set<int32_t> allowed = chain_survivors(logits, p.top_k, p.top_p, p.min_p);
  MESSAGE("survivors of the default chain: " << allowed.size());
  REQUIRE(allowed.size() > 1);
  REQUIRE(allowed.size() < 40);
  Sampler sampler(p);
  std::set<int32_t> seen;
  for (int i = 0; i < 2000; ++i) {
    const int32_t token = sampler.sample(logits, {});
    CHECK(allowed.count(token) == 1);
    seen.insert(token);
  }
  CHECK(seen.size() > 1);
}

TEST_CASE("degenerate logits and bad parameters") {
  Sampler sampler(SamplingParams{});
  CHECK_THROWS_AS(sampler.sample(std::vector<float>{}, {}), Error);
  const float inf = INFINITY;
  CHECK(sampler.sample(std::vector<float>{-inf, -inf, -inf}, {}) == 0);
  CHECK(sampler.sample(std::vector<float>{NAN, 1.0f, NAN}, {}) == 1);
  CHECK(sampler.sample(std::vector<float>{0.0f, inf, 1.0f}, {}) == 1);

  SamplingParams bad;
  bad.top_p = 1.5f;
  CHECK_THROWS_AS(Sampler{bad}, Error);
  bad = SamplingParams{};
  bad.min_p = -0.1f;
  CHECK_THROWS_AS(validate_sampling_params(bad), Error);
  bad = SamplingParams{};
  bad.repeat_penalty = 0.0f;
  CHECK_THROWS_AS(validate_sampling_params(bad), Error);
  bad = SamplingParams{};
  bad.repeat_last_n = -2;
  CHECK_THROWS_AS(validate_sampling_params(bad), Error);
  bad = SamplingParams{};
  bad.temperature = NAN;
  CHECK_THROWS_AS(validate_sampling_params(bad), Error);
  bad = SamplingParams{};
  bad.top_k = -1;  // run --top-k -1 was accepted while a batch line with "top_k": -1 was refused
  CHECK_THROWS_WITH_AS(validate_sampling_params(bad), doctest::Contains("top_k"), Error);
  bad.top_k = 0;
  CHECK_NOTHROW(validate_sampling_params(bad));
  CHECK_NOTHROW(validate_sampling_params(SamplingParams{}));
}
