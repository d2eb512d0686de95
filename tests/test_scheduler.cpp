// The continuous-batching scheduler on the real stories260K model: bookkeeping invariants over thousands of random
// steps, preemption that changes nothing but the schedule, prefix caching, parallel samples sharing the prompt,
// stop strings, the contiguous baseline, and that batching leaves each sequence's logits unchanged.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "common/error.h"
#include "direct_runner.h"
#include "engine/model.h"
#include "engine/model_runner.h"
#include "engine/scheduler.h"
#include "model_loader/gguf.h"
#include "model_loader/model_config.h"
#include "model_loader/synthetic_model.h"

using namespace pagedllm;

namespace {

const Model& stories() {
  static const std::unique_ptr<Model> model = Model::load(PAGEDLLM_SHARED_DIR "/models/stories260K.gguf");
  return *model;
}

struct EngineSetup {
  RunnerConfig runner;
  bool prefix_cache = false;
};

// A model runner whose K/V pools hold exactly `num_blocks` blocks of `block_size` tokens.
EngineSetup engine_config(int num_blocks, int block_size, bool prefix_cache, int n_ctx = 256, int n_threads = 1) {
  return {test::runner_config_with_blocks(stories(), num_blocks, block_size, n_ctx, n_threads), prefix_cache};
}

SchedulerConfig with_prefix_cache(SchedulerConfig config, const EngineSetup& setup) {
  config.prefix_cache = setup.prefix_cache;
  return config;
}

SamplingParams greedy() {
  SamplingParams p;
  p.temperature = 0.0f;
  return p;
}

SamplingParams seeded(uint64_t seed) {
  SamplingParams p;
  p.temperature = 0.9f;
  p.seed = seed;
  return p;
}

std::vector<int32_t> encode(const std::string& text) { return stories().tokenizer->encode(text, true, false); }

GenerationRequest make_request(int64_t id, std::vector<int32_t> prompt, int max_tokens, SamplingParams sampling,
                               int n = 1) {
  GenerationRequest r;
  r.id = id;
  r.prompt = std::move(prompt);
  r.max_tokens = max_tokens;
  r.sampling = sampling;
  r.n = n;
  r.ignore_eos = true;  // every sample runs to max_tokens: the runs compared below do the same work
  return r;
}

struct Outcome {
  std::map<int64_t, RequestResult> results;
  SchedulerStats stats;
  CacheStats cache;
};

// Runs every request to the end, checking the scheduler's invariants after each step and that each request
// finishes exactly once.
Outcome run_all(const std::vector<GenerationRequest>& requests, const EngineSetup& engine_cfg,
                const SchedulerConfig& scheduler_cfg) {
  ModelRunner runner(stories(), engine_cfg.runner);
  Scheduler scheduler(runner, stories().tokenizer.get(), with_prefix_cache(scheduler_cfg, engine_cfg));
  for (const GenerationRequest& r : requests) scheduler.submit(r);
  Outcome out;
  auto collect = [&] {
    for (RequestResult& result : scheduler.take_finished()) {
      REQUIRE_MESSAGE(out.results.count(result.id) == 0, "request ", result.id, " finished twice");
      out.results.emplace(result.id, std::move(result));
    }
  };
  collect();
  while (scheduler.step()) {
    const std::string problem = scheduler.check_invariants();
    REQUIRE_MESSAGE(problem.empty(), problem);
    collect();
  }
  collect();
  REQUIRE(scheduler.check_invariants().empty());
  out.stats = scheduler.stats();
  out.cache = scheduler.cache().stats();
  CHECK(out.stats.peak_running <= scheduler_cfg.max_seqs);
  CHECK(out.cache.blocks_used == 0);  // every block came back
  CHECK(out.results.size() == requests.size());
  return out;
}

std::vector<std::vector<int32_t>> completion_tokens(const RequestResult& result) {
  std::vector<std::vector<int32_t>> tokens;
  for (const Completion& c : result.completions) tokens.push_back(c.tokens);
  return tokens;
}

void check_same_outputs(const Outcome& a, const Outcome& b) {
  REQUIRE(a.results.size() == b.results.size());
  for (const auto& [result_id, result] : a.results) {
    const auto id = result_id;  // clang 14 cannot capture a structured binding in CHECK_MESSAGE
    REQUIRE(b.results.count(id) == 1);
    const RequestResult& other = b.results.at(id);
    CHECK_MESSAGE(result.error == other.error, "request ", id);
    CHECK_MESSAGE(completion_tokens(result) == completion_tokens(other), "request ", id, " differs");
    for (size_t i = 0; i < result.completions.size() && i < other.completions.size(); ++i) {
      CHECK(result.completions[i].text == other.completions[i].text);
      CHECK(result.completions[i].finish == other.completions[i].finish);
    }
  }
}

const std::vector<std::string> kStoryPrompts = {
    "Once upon a time",
    "Lily and Ben went to the park to play with the ball",
    "The little dog",
    "One day, a girl named Sue found a big red box under her bed. She wanted to",
    "Tom was sad because",
    "Mom said",
    "The sun was hot and the birds were singing in the tall green trees near the",
    "Max had a toy car",
};

std::vector<GenerationRequest> story_requests(int max_tokens, bool sampled) {
  std::vector<GenerationRequest> requests;
  for (size_t i = 0; i < kStoryPrompts.size(); ++i) {
    requests.push_back(make_request(static_cast<int64_t>(i), encode(kStoryPrompts[i]), max_tokens,
                                    sampled ? seeded(1000 + i) : greedy()));
  }
  return requests;
}

// Greedy decoding of one prompt alone, straight on the model runner, with the whole prompt in one forward.
std::vector<int32_t> greedy_alone(const std::vector<int32_t>& prompt, int max_tokens) {
  test::DirectRunner engine(stories(), engine_config(64, 16, false).runner);
  const SeqId seq = engine.create_sequence();
  test::DirectWork work{seq, prompt, true};
  std::span<const float> logits = engine.step(std::span(&work, 1));
  std::vector<int32_t> generated;
  while (static_cast<int>(generated.size()) < max_tokens) {
    generated.push_back(static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin()));
    test::DirectWork next{seq, std::span<const int32_t>(&generated.back(), 1), true};
    logits = engine.step(std::span(&next, 1));
  }
  return generated;
}

}  // namespace

TEST_CASE("a mixed batch (prefill chunks beside a decode) computes the same logits as each sequence alone") {
  const std::vector<int32_t> x = encode("One day, a girl named Sue found a big red box under her bed");
  const std::vector<int32_t> y = encode("The little dog ran to the");
  REQUIRE(x.size() > 10);
  const auto n_vocab = static_cast<size_t>(stories().config.n_vocab);
  auto copy = [](std::span<const float> logits) { return std::vector<float>(logits.begin(), logits.end()); };

  for (const int n_threads : {1, 2}) {
    CAPTURE(n_threads);
    // Alone: each prompt in one forward, then one decode of y.
    test::DirectRunner alone(stories(), engine_config(32, 4, false, 256, n_threads).runner);
    const SeqId ax = alone.create_sequence(), ay = alone.create_sequence();
    test::DirectWork wx{ax, x, true};
    const std::vector<float> x_logits = copy(alone.step(std::span(&wx, 1)));
    test::DirectWork wy{ay, y, true};
    const std::vector<float> y_logits = copy(alone.step(std::span(&wy, 1)));
    const int32_t next = 300;
    test::DirectWork wd{ay, std::span<const int32_t>(&next, 1), true};
    const std::vector<float> decode_logits = copy(alone.step(std::span(&wd, 1)));

    // Batched: x in two chunks; its second chunk shares a forward with y's decode.
    test::DirectRunner batched(stories(), engine_config(32, 4, false, 256, n_threads).runner);
    const SeqId bx = batched.create_sequence(), by = batched.create_sequence();
    const size_t split = 7;
    std::vector<test::DirectWork> step1{{bx, std::span<const int32_t>(x).first(split), false}, {by, y, true}};
    const std::vector<float> batched_y = copy(batched.step(step1));
    REQUIRE(batched_y.size() == n_vocab);
    std::vector<test::DirectWork> step2{{bx, std::span<const int32_t>(x).subspan(split), true},
                                    {by, std::span<const int32_t>(&next, 1), true}};
    const std::vector<float> l2 = copy(batched.step(step2));
    REQUIRE(l2.size() == 2 * n_vocab);

    // Every row is computed on its own; what may change with the batch is how attention splits a long decode
    // across threads (flash-decoding merges partial sums in a different order). 1e-4 absolute on logits of
    // magnitude ~10 is far below the greedy decision margins the end-to-end comparisons rely on.
    float max_diff = 0;
    for (size_t i = 0; i < n_vocab; ++i) {
      max_diff = std::max(max_diff, std::fabs(batched_y[i] - y_logits[i]));
      max_diff = std::max(max_diff, std::fabs(l2[i] - x_logits[i]));
      max_diff = std::max(max_diff, std::fabs(l2[n_vocab + i] - decode_logits[i]));
    }
    MESSAGE("largest logit difference, batched vs alone, ", n_threads, " threads: ", max_diff);
    CHECK(max_diff <= 1e-4f);
  }
}

TEST_CASE("greedy results through the scheduler (chunked prefill, many sequences) equal each prompt decoded alone") {
  const auto requests = story_requests(24, false);
  SchedulerConfig sc;
  sc.max_batch_tokens = 5;  // every prompt is prefilled in several chunks, mixed with other sequences' decodes
  const Outcome batched = run_all(requests, engine_config(128, 8, false), sc);
  for (const GenerationRequest& r : requests) {
    const RequestResult& result = batched.results.at(r.id);
    REQUIRE(result.completions.size() == 1);
    CHECK_MESSAGE(result.completions[0].tokens == greedy_alone(r.prompt, r.max_tokens), "prompt ", r.id);
    CHECK(result.completions[0].finish == FinishReason::Length);
  }
  CHECK(batched.stats.peak_running > 1);
}

TEST_CASE("scheduler invariants hold over thousands of random steps; every request finishes exactly once") {
  std::mt19937 rng(12345);
  const int32_t n_vocab = stories().config.n_vocab;
  for (const KvLayout layout : {KvLayout::Paged, KvLayout::Contiguous}) {
    for (const bool prefix_cache : {false, true}) {
      if (layout == KvLayout::Contiguous && prefix_cache) continue;
      CAPTURE(static_cast<int>(layout));
      CAPTURE(prefix_cache);
      const int block_size = 4;
      const int num_blocks = 40;  // 160 slots: far fewer than the requests want at once, so preemption is common
      const int n_ctx = layout == KvLayout::Contiguous ? 64 : 128;
      ModelRunner runner(stories(), engine_config(num_blocks, block_size, prefix_cache, n_ctx).runner);
      SchedulerConfig sc;
      sc.max_seqs = 12;
      sc.max_batch_tokens = 24;
      sc.layout = layout;
      sc.prefix_cache = prefix_cache;
      Scheduler scheduler(runner, stories().tokenizer.get(), sc);

      // Shared beginnings make prefix-cache hits (and, with forks, shared blocks) likely.
      std::vector<std::vector<int32_t>> stems;
      for (int s = 0; s < 3; ++s) {
        std::vector<int32_t> stem{1};
        for (int i = 0; i < 11; ++i) stem.push_back(std::uniform_int_distribution<int32_t>(3, n_vocab - 1)(rng));
        stems.push_back(stem);
      }
      std::map<int64_t, int> finished_count;
      std::map<int64_t, int> expected_samples;
      int64_t next_id = 0;
      int steps = 0;
      const int n_requests = 250;
      while (next_id < n_requests || !scheduler.idle()) {
        // New requests arrive at random moments, several at once sometimes.
        while (next_id < n_requests && std::uniform_int_distribution<int>(0, 3)(rng) == 0) {
          std::vector<int32_t> prompt = stems[static_cast<size_t>(std::uniform_int_distribution<int>(0, 2)(rng))];
          prompt.resize(static_cast<size_t>(std::uniform_int_distribution<int>(1, 12)(rng)));
          const int extra = std::uniform_int_distribution<int>(0, 30)(rng);
          for (int i = 0; i < extra; ++i) prompt.push_back(std::uniform_int_distribution<int32_t>(3, n_vocab - 1)(rng));
          const int n = std::uniform_int_distribution<int>(0, 4)(rng) == 0 ? std::uniform_int_distribution<int>(2, 4)(rng) : 1;
          SamplingParams sampling = std::uniform_int_distribution<int>(0, 1)(rng) ? greedy() : seeded(rng());
          GenerationRequest r = make_request(next_id, prompt, std::uniform_int_distribution<int>(1, 40)(rng), sampling, n);
          r.ignore_eos = std::uniform_int_distribution<int>(0, 1)(rng) == 0;
          expected_samples[next_id] = n;
          scheduler.submit(std::move(r));
          ++next_id;
        }
        if (scheduler.step()) ++steps;
        const std::string problem = scheduler.check_invariants();
        REQUIRE_MESSAGE(problem.empty(), "step ", steps, ": ", problem);
        for (const RequestResult& result : scheduler.take_finished()) {
          finished_count[result.id] += 1;
          CHECK(result.error.empty());
          CHECK(static_cast<int>(result.completions.size()) == expected_samples[result.id]);
          for (const Completion& c : result.completions) {
            CHECK(c.finish != FinishReason::None);
            CHECK(c.finish != FinishReason::Error);
          }
        }
      }
      CHECK(steps > 300);
      CHECK(static_cast<int64_t>(finished_count.size()) == n_requests);
      for (const auto& finished : finished_count) {
        CHECK_MESSAGE(finished.second == 1, "request ", finished.first, " finished ", finished.second, " times");
      }
      const CacheStats cache = scheduler.cache().stats();
      CHECK(cache.blocks_used == 0);
      CHECK(cache.sequences == 0);
      MESSAGE("steps ", steps, ", preemptions ", scheduler.stats().preemptions, ", prefix hits ", cache.prefix_hits);
      if (layout == KvLayout::Paged) CHECK(scheduler.stats().preemptions > 0);
      if (prefix_cache) CHECK(cache.prefix_hits > 0);
    }
  }
}

TEST_CASE("a tiny KV cache forces preemption yet every request completes with the unconstrained run's output") {
  SchedulerConfig sc;
  sc.max_seqs = 8;
  sc.max_batch_tokens = 64;
  for (const bool sampled : {false, true}) {
    CAPTURE(sampled);
    const auto requests = story_requests(40, sampled);
    const Outcome roomy = run_all(requests, engine_config(256, 8, false), sc);
    // 14 blocks of 8 = 112 slots for 8 sequences that grow to 45-60 tokens each.
    const Outcome tight = run_all(requests, engine_config(14, 8, false), sc);
    CHECK(roomy.stats.preemptions == 0);
    CHECK(tight.stats.preemptions > 0);
    CHECK(tight.stats.peak_kv_blocks <= 14);
    check_same_outputs(roomy, tight);
    int preempted_requests = 0;
    for (const auto& [id, result] : tight.results) preempted_requests += result.preemptions > 0 ? 1 : 0;
    CHECK(preempted_requests > 0);
  }
}

TEST_CASE("the prefix cache reuses the blocks of a shared prompt beginning and changes no output") {
  const std::vector<int32_t> system = encode(
      "Once upon a time, there was a little girl named Lily. She loved to play outside in the sun with her dog.");
  std::vector<GenerationRequest> requests;
  const std::vector<std::string> endings = {" One day", " Lily saw a bird", " The dog", " Then", " Her mom said"};
  for (size_t i = 0; i < endings.size(); ++i) {
    std::vector<int32_t> prompt = system;
    const std::vector<int32_t> ending = stories().tokenizer->encode(endings[i], false, false);
    prompt.insert(prompt.end(), ending.begin(), ending.end());
    requests.push_back(make_request(static_cast<int64_t>(i), prompt, 16, greedy()));
  }
  SchedulerConfig sc;
  sc.max_seqs = 8;  // room for all at once: the later ones must wait for the first to register the shared blocks
  const Outcome off = run_all(requests, engine_config(128, 8, false), sc);
  const Outcome on = run_all(requests, engine_config(128, 8, true), sc);
  check_same_outputs(off, on);
  CHECK(off.cache.prefix_hits == 0);
  const int64_t shared_blocks = static_cast<int64_t>(system.size()) / 8;
  REQUIRE(shared_blocks >= 3);
  // Every request after the first finds (at least) the system prompt's full blocks.
  CHECK(on.cache.prefix_hits >= shared_blocks * static_cast<int64_t>(endings.size() - 1));
  CHECK(on.stats.peak_running > 1);
  CHECK(on.cache.prefix_hit_tokens >= on.cache.prefix_hits * 8);
  CHECK(on.stats.sharing_saved_percent() > 0.0);
}

TEST_CASE("n samples share the prompt's blocks and each equals a single-sample request with its seed") {
  const std::vector<int32_t> prompt = encode("One day, a girl named Sue found a big red box under her bed. She wanted to");
  const int n = 4;
  const uint64_t seed = 77;
  SchedulerConfig sc;
  const Outcome shared = run_all({make_request(0, prompt, 20, seeded(seed), n)}, engine_config(64, 8, false), sc);
  const RequestResult& result = shared.results.at(0);
  REQUIRE(result.completions.size() == static_cast<size_t>(n));
  // The prompt's full blocks were held by all n samples at once; only the partly filled last block was copied.
  CHECK(shared.stats.peak_shared_blocks >= static_cast<int>(prompt.size()) / 8);
  CHECK(shared.cache.cow_copies <= n);
  CHECK(shared.stats.sharing_saved_percent() > 20.0);
  CHECK(shared.stats.peak_running == n);

  std::vector<GenerationRequest> singles;
  for (int i = 0; i < n; ++i) singles.push_back(make_request(i, prompt, 20, seeded(seed + static_cast<uint64_t>(i))));
  const Outcome separate = run_all(singles, engine_config(64, 8, false), sc);
  bool any_differ = false;
  for (int i = 0; i < n; ++i) {
    CHECK_MESSAGE(result.completions[static_cast<size_t>(i)].tokens == separate.results.at(i).completions[0].tokens,
                  "sample ", i);
    any_differ = any_differ || result.completions[static_cast<size_t>(i)].tokens != result.completions[0].tokens;
  }
  CHECK(any_differ);  // the samples really are different draws
}

TEST_CASE("a stop string ends a sample and cuts its text before the match") {
  const std::vector<int32_t> prompt = encode("Once upon a time");
  SchedulerConfig sc;
  const Outcome plain = run_all({make_request(0, prompt, 30, greedy())}, engine_config(64, 8, false), sc);
  const std::string text = plain.results.at(0).completions[0].text;
  // Pick a word from the middle of the greedy text as the stop string.
  const size_t word = text.find(' ', text.size() / 2);
  REQUIRE(word != std::string::npos);
  const std::string stop = text.substr(word, std::min<size_t>(4, text.size() - word));
  GenerationRequest r = make_request(0, prompt, 30, greedy());
  r.stop = {"never appears in a story 123", stop};
  const Outcome stopped = run_all({r}, engine_config(64, 8, false), sc);
  const Completion& c = stopped.results.at(0).completions[0];
  CHECK(c.finish == FinishReason::Stop);
  CHECK(c.text == text.substr(0, text.find(stop)));
  CHECK(c.tokens.size() < plain.results.at(0).completions[0].tokens.size());
}

TEST_CASE("requests that can never run finish at once with an error; the others are unaffected") {
  SchedulerConfig sc;
  std::vector<GenerationRequest> requests;
  requests.push_back(make_request(0, encode("Once upon a time"), 8, greedy()));
  requests.push_back(make_request(1, {}, 8, greedy()));                                  // empty prompt
  requests.push_back(make_request(2, std::vector<int32_t>(300, 5), 8, greedy()));        // longer than the context
  requests.push_back(make_request(3, {1, 99999}, 8, greedy()));                          // id outside the vocabulary
  requests.push_back(make_request(4, encode("Tom"), 0, greedy()));                       // max_tokens 0
  GenerationRequest bad_sampling = make_request(5, encode("Tom"), 8, greedy());
  bad_sampling.sampling.top_p = 2.0f;
  requests.push_back(bad_sampling);
  GenerationRequest bad_n = make_request(6, encode("Tom"), 8, greedy(), 0);
  requests.push_back(bad_n);
  const Outcome out = run_all(requests, engine_config(64, 8, false, 256), sc);
  CHECK(out.results.at(0).error.empty());
  CHECK(out.results.at(0).completions.at(0).tokens.size() == 8);
  for (int64_t id = 1; id <= 6; ++id) {
    CAPTURE(id);
    CHECK_FALSE(out.results.at(id).error.empty());
    CHECK(out.results.at(id).completions.empty());
  }
  CHECK(out.results.at(2).error.find("300 tokens") != std::string::npos);
  CHECK(out.stats.requests_failed == 6);

  // A prompt that fits the context but not the whole cache names the cache as the limit.
  const Outcome small = run_all({make_request(0, std::vector<int32_t>(100, 5), 8, greedy())},
                                engine_config(8, 8, false, 256), sc);
  CHECK(small.results.at(0).error.find("--kv-mem") != std::string::npos);
}

TEST_CASE("the contiguous baseline admits by full-context reservations; paging fits more sequences in the same memory") {
  const auto requests = story_requests(16, false);
  SchedulerConfig paged;
  paged.max_seqs = 64;
  SchedulerConfig contiguous = paged;
  contiguous.layout = KvLayout::Contiguous;
  const int num_blocks = 64, block_size = 8, n_ctx = 128;  // a context reserves 16 blocks: 4 sequences at most
  const Outcome p = run_all(requests, engine_config(num_blocks, block_size, false, n_ctx), paged);
  const Outcome c = run_all(requests, engine_config(num_blocks, block_size, false, n_ctx), contiguous);
  check_same_outputs(p, c);
  CHECK(c.stats.peak_running <= num_blocks / (n_ctx / block_size));
  CHECK(p.stats.peak_running == static_cast<int>(requests.size()));
  CHECK(c.stats.waste_percent() > 50.0);  // reserved but never filled
  CHECK(p.stats.waste_percent() < c.stats.waste_percent());

  // A context that needs more blocks than the cache has cannot run contiguously at all.
  ModelRunner runner(stories(), engine_config(8, 8, false, 128).runner);
  CHECK_THROWS_AS(Scheduler(runner, nullptr, contiguous), pagedllm::Error);
}

TEST_CASE("a model whose logits are not finite fails its request with an error, never a quiet success") {
  // A tiny synthetic model held in memory, its final norm gain poisoned with NaN after loading.
  std::vector<uint8_t> image = build_synthetic_gguf(synthetic_spec("tiny"));
  Model model;
  model.file = GgufFile::from_memory(image, "synthetic");
  model.config = read_model_config(*model.file);
  model.weights = load_llama_weights(*model.file, model.config);
  model.tokenizer = Tokenizer::from_gguf(*model.file);
  const auto* norm = model.weights.output_norm;
  REQUIRE(norm != nullptr);
  const auto* begin = reinterpret_cast<const uint8_t*>(norm);
  REQUIRE((begin >= image.data() && begin < image.data() + image.size()));  // a view into our own buffer
  const_cast<float*>(norm)[0] = std::nanf("");

  RunnerConfig config;
  config.n_ctx = 64;
  config.n_threads = 1;
  ModelRunner runner(model, config);
  Scheduler scheduler(runner, model.tokenizer.get(), SchedulerConfig{});
  scheduler.submit(make_request(0, {1, 5, 9}, 4, greedy()));
  while (scheduler.step()) {
  }
  const std::vector<RequestResult> results = scheduler.take_finished();
  REQUIRE(results.size() == 1);
  CHECK(results[0].failure == FinishReason::Error);
  CHECK(results[0].error.find("non-finite") != std::string::npos);
  REQUIRE(results[0].completions.size() == 1);
  CHECK(results[0].completions[0].finish == FinishReason::Error);
  CHECK(scheduler.check_invariants() == "");
  CHECK(scheduler.cache().stats().blocks_used == 0);
}

TEST_CASE("a sequence that fills a KV cache smaller than the context ends as CacheFull, one that fills the context as ContextFull") {
  SchedulerConfig sc;
  // 4 blocks of 8 = 32 tokens of cache under a 256-token context: the cache is the limit.
  const Outcome small = run_all({make_request(0, encode("Once upon a time"), 100, greedy())},
                                engine_config(4, 8, false, 256), sc);
  const Completion& cache_bound = small.results.at(0).completions.at(0);
  CHECK(cache_bound.finish == FinishReason::CacheFull);
  CHECK(cache_bound.tokens.size() + encode("Once upon a time").size() == 32);
  CHECK(small.stats.cache_full_samples == 1);
  // A roomy cache under a 24-token context: the context is the limit.
  const Outcome roomy = run_all({make_request(0, encode("Once upon a time"), 100, greedy())},
                                engine_config(64, 8, false, 24), sc);
  const Completion& context_bound = roomy.results.at(0).completions.at(0);
  CHECK(context_bound.finish == FinishReason::ContextFull);
  CHECK(context_bound.tokens.size() + encode("Once upon a time").size() == 24);
  CHECK(roomy.stats.cache_full_samples == 0);
}

TEST_CASE("--max-seqs bounds the sequences holding K/V at once, and a roomy cache fills every seat") {
  const auto requests = story_requests(12, false);  // 8 requests
  for (const int max_seqs : {1, 3, 5}) {
    CAPTURE(max_seqs);
    SchedulerConfig sc;
    sc.max_seqs = max_seqs;
    const Outcome out = run_all(requests, engine_config(256, 8, false), sc);
    CHECK(out.stats.peak_running == max_seqs);
  }
}
