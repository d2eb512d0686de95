// Quantized K/V pools (Q8_0, Q4_0) through the whole engine: the scheduler's block sharing (parallel samples forking
// the prompt's blocks with copy-on-write, the prefix cache, preemption and recompute) changes no output, the pool
// and the statistics count the real bytes per token, and a model whose heads are not whole blocks is refused
// naming the flag. On a synthetic model with 64-element heads (stories260K's are 8, which no quantized type fits).
#include <doctest/doctest.h>

#include "cli_runner.h"
#include "direct_runner.h"
#include "required_files.h"
#include "temp_dir.h"

#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/error.h"
#include "engine/model.h"
#include "engine/model_runner.h"
#include "engine/scheduler.h"
#include "model_loader/gguf.h"
#include "model_loader/model_config.h"
#include "model_loader/model_weights.h"
#include "model_loader/synthetic_model.h"

using namespace pagedllm;

namespace {

struct HeldModel {
  std::vector<uint8_t> image;
  Model model;
};

const Model& tiny() {
  static const std::unique_ptr<HeldModel> held = [] {
    auto h = std::make_unique<HeldModel>();
    h->image = build_synthetic_gguf(synthetic_spec("tiny"));
    h->model.file = GgufFile::from_memory(h->image, "synthetic");
    h->model.config = read_model_config(*h->model.file);
    h->model.weights = load_llama_weights(*h->model.file, h->model.config);
    h->model.tokenizer = Tokenizer::from_gguf(*h->model.file);
    return h;
  }();
  return held->model;
}

GenerationRequest request(int64_t id, std::vector<int32_t> prompt, int max_tokens, int n = 1, uint64_t seed = 5) {
  GenerationRequest r;
  r.id = id;
  r.prompt = std::move(prompt);
  r.max_tokens = max_tokens;
  r.n = n;
  r.sampling.temperature = n > 1 ? 0.9f : 0.0f;
  r.sampling.seed = seed;
  r.ignore_eos = true;
  return r;
}

struct Outcome {
  std::map<int64_t, std::vector<std::vector<int32_t>>> tokens;  // id -> [sample][token]
  CacheStats cache;
  SchedulerStats stats;
};

Outcome run_all(const std::vector<GenerationRequest>& requests, KvDtype dtype, int num_blocks, bool prefix_cache,
                int max_seqs = 8) {
  ModelRunner runner(tiny(), test::runner_config_with_blocks(tiny(), num_blocks, 8, 128, 1, dtype));
  SchedulerConfig sc;
  sc.max_seqs = max_seqs;
  sc.prefix_cache = prefix_cache;
  Scheduler scheduler(runner, nullptr, sc);
  for (const GenerationRequest& r : requests) scheduler.submit(r);
  while (scheduler.step()) REQUIRE(scheduler.check_invariants().empty());
  Outcome out;
  for (const RequestResult& result : scheduler.take_finished()) {
    REQUIRE_MESSAGE(result.error.empty(), result.error);
    for (const Completion& c : result.completions) out.tokens[result.id].push_back(c.tokens);
  }
  CHECK(out.tokens.size() == requests.size());
  out.cache = scheduler.cache().stats();
  out.stats = scheduler.stats();
  return out;
}

std::vector<int32_t> prompt_of(int length, int salt) {
  std::vector<int32_t> p = {1};  // BOS
  for (int i = 1; i < length; ++i) p.push_back(3 + (i * 37 + salt * 11) % 300);
  return p;
}

}  // namespace

TEST_CASE("quantized K/V: the prefix cache, copy-on-write forks and preemption change no output") {
  for (const KvDtype dtype : {KvDtype::Q8_0, KvDtype::Q4_0}) {
    CAPTURE(kv_dtype_name(dtype));
    // Five prompts sharing a 29-token beginning (three full blocks of 8), then each its own ending.
    std::vector<GenerationRequest> requests;
    for (int i = 0; i < 5; ++i) {
      std::vector<int32_t> p = prompt_of(29, 0);
      const std::vector<int32_t> ending = prompt_of(4 + i, i + 1);
      p.insert(p.end(), ending.begin() + 1, ending.end());
      requests.push_back(request(i, p, 30));
    }
    const Outcome off = run_all(requests, dtype, 96, false);
    const Outcome on = run_all(requests, dtype, 96, true);
    CHECK(off.tokens == on.tokens);
    CHECK(on.cache.prefix_hits >= 3 * 4);

    // A tiny cache: sequences are preempted and recomputed, yet every output is the same.
    const Outcome tight = run_all(requests, dtype, 14, false);
    CHECK(tight.stats.preemptions > 0);
    CHECK(tight.tokens == off.tokens);

    // Four samples fork a 21-token prompt (its partly filled third block is copied on their first writes) and each
    // equals the same seed drawn alone.
    const Outcome forked = run_all({request(0, prompt_of(21, 9), 10, 4, 77)}, dtype, 64, false);
    CHECK(forked.cache.cow_copies > 0);
    CHECK(forked.stats.peak_shared_blocks >= 2);
    std::vector<GenerationRequest> singles;
    for (int i = 0; i < 4; ++i) singles.push_back(request(i, prompt_of(21, 9), 10, 1, 77 + static_cast<uint64_t>(i)));
    for (GenerationRequest& r : singles) r.sampling.temperature = 0.9f;
    const Outcome alone = run_all(singles, dtype, 64, false);
    for (int i = 0; i < 4; ++i) CHECK(forked.tokens.at(0).at(static_cast<size_t>(i)) == alone.tokens.at(i).at(0));
  }
}

TEST_CASE("quantized K/V: the runner counts the real bytes per token and fits proportionally more blocks") {
  const ModelConfig& c = tiny().config;
  const uint64_t rows = 2 * static_cast<uint64_t>(c.n_layer) * static_cast<uint64_t>(c.n_head_kv);  // K and V rows
  const uint64_t blocks_per_row = static_cast<uint64_t>(c.head_dim) / 32;
  const std::map<KvDtype, uint64_t> expected = {{KvDtype::F32, rows * c.head_dim * 4},
                                                {KvDtype::F16, rows * c.head_dim * 2},
                                                {KvDtype::Q8_0, rows * blocks_per_row * 34},
                                                {KvDtype::Q4_0, rows * blocks_per_row * 18}};
  std::map<KvDtype, int> blocks;
  for (const auto& [dtype, bytes] : expected) {
    RunnerConfig rc;
    rc.n_ctx = 64;
    rc.n_threads = 1;
    rc.kv_dtype = dtype;
    rc.kv_mem_bytes = 1 << 20;
    ModelRunner runner(tiny(), rc);
    CHECK(runner.kv_bytes_per_token() == bytes);
    blocks[dtype] = runner.num_blocks();
    CHECK(runner.kv_pool_bytes() <= rc.kv_mem_bytes);
  }
  // The same budget holds about 32/17 and 32/9 times F16's blocks.
  CHECK(blocks[KvDtype::Q8_0] >= blocks[KvDtype::F16] * 17 / 9);
  CHECK(blocks[KvDtype::Q4_0] >= blocks[KvDtype::F16] * 32 / 9);
}

TEST_CASE("a quantized --kv-type on a model whose heads are not whole blocks is one clear error") {
  test::require_file(test::kStoriesPath, "it lives in the shared models folder");
  test::TempDir dir;
  std::ofstream(dir / "requests.jsonl") << "{\"id\": \"a\", \"prompt\": \"Once\"}\n";
  const std::unique_ptr<Model> model = Model::load(test::kStoriesPath);  // head_dim 8
  RunnerConfig rc;
  rc.n_ctx = 64;
  rc.kv_dtype = KvDtype::Q8_0;
  CHECK_THROWS_WITH_AS(ModelRunner(*model, rc), doctest::Contains("--kv-type q8_0"), Error);
  for (const std::string& command : {std::string("run -p hi -n 2"),
                                     std::string("perplexity -c 64 -f /usr/share/common-licenses/GPL-3"),
                                     "batch -i " + test::shell_quote((dir / "requests.jsonl").string()) + " -o " +
                                         test::shell_quote((dir / "out.jsonl").string())}) {
    CAPTURE(command);
    const auto r = test::run_pagedllm(command + " -m " + test::shell_quote(test::kStoriesPath) +
                                      " --kv-type q4_0");
    CHECK(r.exit_code == 1);
    CHECK(r.out.empty());
    CHECK(r.err.find("--kv-type q4_0 stores each K/V row in blocks of 32 elements, but this model's heads have 8") !=
          std::string::npos);
    CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
  }
  CHECK_FALSE(std::filesystem::exists(dir / "out.jsonl"));
  const auto bad = test::run_pagedllm("run -p hi -n 2 --kv-type q5_1 -m " + test::shell_quote(test::kStoriesPath));
  CHECK(bad.exit_code == 1);
  CHECK(bad.err.find("--kv-type 'q5_1' is not supported (use one of f16, f32, q8_0, q4_0)") != std::string::npos);
}
