// `pagedllm bench`: llama-bench's tests (pp, tg, pg at a depth) swept over models and settings, measured through the
// scheduler like every other command, with the memory system's figures in every row; side by side with an earlier
// run or llama-bench's own output (--compare), and as a chart (--plot).
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <set>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <memory>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "cli/bench_report.h"
#include "cli/cli_support.h"
#include "cli/commands.h"
#include "cli/value_lists.h"
#include "common/error.h"
#include "common/thread_pool.h"
#include "engine/benchmark.h"
#include "engine/devices.h"
#include "engine/model.h"
#include "engine/op_benchmarks.h"
#include "model_loader/synthetic_model.h"
#include "tensor/tensor_types.h"

namespace pagedllm::cli {
namespace {

struct BenchOptions {
  std::string models;  // FILE[,FILE...]
  std::string synthetic;
  std::string dtypes = "q4_0";
  bool dtypes_given = false;
  std::string cache_dir;
  bool clean = false;
  std::string n_prompt = "512";
  std::string n_gen = "128";
  std::vector<std::string> prompt_gen;  // each "P,N"
  std::string n_depth = "0";
  std::string n_batch = "2048";
  std::string threads;
  int repetitions = 5;
  double delay = 0;
  std::string output = "md";
  bool progress = false;
  std::string block_size = "16";
  std::string kv_type = "f16";
  std::string kv_layout = "paged";
  std::string prefix_cache = "on";
  std::string device = "auto";
  std::string n_parallel = "1";
  std::string compare;
  std::string plot;
  std::string op;
};

// One engine configuration of the sweep.
struct EngineSettings {
  int n_batch, n_threads, block_size, n_parallel;
  std::string kv_type, kv_layout, prefix_cache, device;
};

struct ModelSource {
  std::string path;
  std::string synthetic_shape;  // empty for a file given with -m
};

std::filesystem::path default_cache_dir() {
  const char* xdg = std::getenv("XDG_CACHE_HOME");
  const char* home = std::getenv("HOME");
  const std::filesystem::path base = xdg && *xdg ? std::filesystem::path(xdg)
                                     : home && *home ? std::filesystem::path(home) / ".cache"
                                                     : std::filesystem::temp_directory_path();
  return base / "pagedllm" / "synthetic";
}

GgmlType parse_dtype(const std::string& name) {
  const std::optional<GgmlType> type = type_from_name(name);
  if (type && type_traits(*type).can_compute && *type != GgmlType::Q8_1 && *type != GgmlType::Q8_K) return *type;
  fail("--dtype '{}' is not a weight type the engine computes (f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q2_k, "
       "q3_k, q4_k, q5_k, q6_k)", name);
}

// The synthetic file for (shape, dtype), written once into the cache folder.
std::string synthetic_model_file(const std::string& shape, const std::string& dtype, const std::filesystem::path& dir,
                                 bool show_progress) {
  SyntheticModelSpec spec = synthetic_spec(shape);
  spec.weight_type = parse_dtype(dtype);
  const std::filesystem::path path = dir / fmt::format("{}-{}.gguf", shape, dtype);
  if (std::filesystem::exists(path)) return path.string();
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) fail("--cache-dir {}: cannot create it: {}", dir.string(), ec.message());
  const auto start = std::chrono::steady_clock::now();
  fmt::print(stderr, "bench: writing synthetic {} {} ({:.2f} B parameters) to {}\n", shape, dtype,
             static_cast<double>(synthetic_parameter_count(spec)) / 1e9, path.string());
  write_synthetic_gguf(spec, path.string(), [&](uint64_t done, uint64_t total) {
    if (!show_progress) return;
    fmt::print(stderr, "\rbench: {:.0f}% of {:.2f} GB", 100.0 * static_cast<double>(done) / static_cast<double>(total),
               static_cast<double>(total) / 1e9);
    std::fflush(stderr);
  });
  if (show_progress) fmt::print(stderr, "\n");
  fmt::print(stderr, "bench: written in {:.1f} s\n",
             std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  return path.string();
}

std::vector<int> to_ints(const std::vector<int64_t>& values, std::string_view flag) {
  std::vector<int> out;
  for (int64_t v : values) {
    if (v > (1 << 30)) fail("{} {}: too large", flag, v);
    out.push_back(static_cast<int>(v));
  }
  return out;
}

std::string iso_time_now() {
  const std::time_t now = std::time(nullptr);
  char buffer[32];
  std::strftime(buffer, sizeof buffer, "%FT%TZ", std::gmtime(&now));
  return buffer;
}

std::string cpu_name() {
  FILE* f = std::fopen("/proc/cpuinfo", "r");
  if (f == nullptr) return "";
  char line[512];
  std::string name;
  while (std::fgets(line, sizeof line, f) != nullptr) {
    std::string_view l(line);
    if (l.starts_with("model name")) {
      const auto colon = l.find(':');
      name = std::string(l.substr(colon + 2));
      while (!name.empty() && (name.back() == '\n' || name.back() == ' ')) name.pop_back();
      break;
    }
  }
  std::fclose(f);
  return name;
}

double mean(const std::vector<double>& v) {
  return v.empty() ? 0.0 : std::accumulate(v.begin(), v.end(), 0.0) / static_cast<double>(v.size());
}

double stddev(const std::vector<double>& v) {
  if (v.size() < 2) return 0.0;
  const double m = mean(v);
  double sum = 0;
  for (double x : v) sum += (x - m) * (x - m);
  return std::sqrt(sum / static_cast<double>(v.size() - 1));
}

BenchRecord make_record(const Model& model, const std::string& model_path, const EngineSettings& e,
                        const BenchCase& c, const BenchMeasurement& m, ModelRunner& runner, const MachinePeaks& peaks,
                        const std::string& gpu_info) {
  std::vector<double> samples_ns, samples_ts, gb_s, gflop_s, bytes_per_token, kv_bytes_per_token;
  for (const BenchSample& s : m.samples) {
    samples_ns.push_back(s.seconds * 1e9);
    samples_ts.push_back(s.seconds > 0 ? static_cast<double>(s.tokens) / s.seconds : 0.0);
    gb_s.push_back(s.seconds > 0 ? static_cast<double>(s.bytes) / s.seconds / 1e9 : 0.0);
    gflop_s.push_back(s.seconds > 0 ? s.flops / s.seconds / 1e9 : 0.0);
    bytes_per_token.push_back(s.tokens > 0 ? static_cast<double>(s.bytes) / static_cast<double>(s.tokens) : 0.0);
    kv_bytes_per_token.push_back(s.tokens > 0 ? static_cast<double>(s.kv_bytes) / static_cast<double>(s.tokens)
                                              : 0.0);
  }
  const bool cuda = runner.backend_name() == "cuda";
  BenchRecord r;
  r["build_commit"] = PAGEDLLM_BUILD_COMMIT;
  r["build_number"] = PAGEDLLM_BUILD_NUMBER;
  r["cpu_info"] = cpu_name();
  r["gpu_info"] = gpu_info;
  r["backends"] = cuda ? "CUDA" : "CPU";
  r["model_filename"] = model_path;
  r["model_type"] = model.description();
  r["model_size"] = model.tensor_bytes();
  r["model_n_params"] = model.parameter_count();
  r["n_batch"] = e.n_batch;
  r["n_ubatch"] = e.n_batch;
  r["n_threads"] = e.n_threads;
  r["type_k"] = e.kv_type;
  r["type_v"] = e.kv_type;
  r["n_gpu_layers"] = cuda ? static_cast<int>(model.config.n_layer) + 1 : 0;
  r["flash_attn"] = true;  // the engine's attention is always tiled with an online softmax
  r["use_mmap"] = true;
  r["embeddings"] = false;
  r["n_prompt"] = c.n_prompt;
  r["n_gen"] = c.n_gen;
  r["n_depth"] = c.n_depth;
  r["test_time"] = iso_time_now();
  const double avg_ns = mean(samples_ns);
  r["avg_ns"] = static_cast<uint64_t>(std::llround(avg_ns));
  r["stddev_ns"] = static_cast<uint64_t>(std::llround(stddev(samples_ns)));
  r["avg_ts"] = mean(samples_ts);
  r["stddev_ts"] = stddev(samples_ts);
  r["samples_ns"] = samples_ns;
  r["samples_ts"] = samples_ts;
  // What llama-bench does not say.
  r["n_parallel"] = c.n_parallel;
  r["avg_ts_per_sequence"] = mean(samples_ts) / c.n_parallel;
  r["block_size"] = e.block_size;
  r["kv_layout"] = e.kv_layout;
  r["prefix_cache"] = e.prefix_cache;
  r["device"] = runner.backend_name();
  r["bytes_per_token"] = mean(bytes_per_token);
  r["kv_bytes_per_token"] = mean(kv_bytes_per_token);  // K/V read per token (each token reads its context)
  r["kv_bytes_per_cached_token"] = runner.kv_bytes_per_token();  // one token's K and V rows in every layer
  r["achieved_gb_s"] = mean(gb_s);
  r["peak_gb_s"] = peaks.bandwidth_gb_s;
  r["peak_gb_s_source"] = peaks.bandwidth_source;
  r["bandwidth_percent"] = peaks.bandwidth_gb_s > 0 ? nlohmann::json(100.0 * mean(gb_s) / peaks.bandwidth_gb_s)
                                                    : nlohmann::json(nullptr);
  r["achieved_gflop_s"] = mean(gflop_s);
  r["peak_gflop_s"] = peaks.compute_gflop_s;
  r["peak_gflop_s_source"] = peaks.compute_source;
  r["compute_percent"] = peaks.compute_gflop_s > 0
                             ? nlohmann::json(100.0 * mean(gflop_s) / peaks.compute_gflop_s)
                             : nlohmann::json(nullptr);
  r["kv_mib"] = static_cast<double>(runner.kv_pool_bytes()) / (1024.0 * 1024.0);
  r["kv_blocks_total"] = m.cache.blocks_total;
  r["kv_blocks_used"] = m.cache.blocks_used;
  r["kv_waste_percent"] = m.cache.waste_percent();
  return r;
}

// The first swept field with more than one value, for the chart's x axis; the others tell the lines apart.
std::pair<std::string, std::vector<std::string>> plot_axes(const std::vector<BenchRecord>& records) {
  const std::vector<std::string> candidates = {"n_prompt", "n_gen",     "n_depth",    "n_threads", "n_parallel",
                                               "n_batch",  "block_size", "model_type", "type_k",    "kv_layout",
                                               "prefix_cache", "device"};
  std::vector<std::string> varying;
  for (const std::string& field : candidates) {
    std::set<std::string> values;
    for (const BenchRecord& r : records) values.insert(r.contains(field) ? r[field].dump() : "");
    if (values.size() > 1) varying.push_back(field);
  }
  std::string x;
  for (const std::string& field : varying) {
    const bool numeric = std::all_of(records.begin(), records.end(),
                                     [&](const BenchRecord& r) { return r.contains(field) && r[field].is_number(); });
    if (numeric) {
      x = field;
      break;
    }
  }
  if (x.empty()) fail("--plot: the sweep varies no numeric setting to draw along (sweep -p, -n, -d, -t, -npl, -b or "
                      "--block-size)");
  std::vector<std::string> series;
  for (const std::string& field : varying) {
    if (field != x && field != "n_prompt" && field != "n_gen") series.push_back(field);
  }
  // Different kinds of test (pp and tg) are different lines too.
  series.insert(series.begin(), "test");
  return {x, series};
}

void write_file_atomically(const std::string& path, const std::string& content, const char* flag) {
  const std::string temporary = path + ".partial";
  FILE* f = std::fopen(temporary.c_str(), "wb");
  if (f == nullptr) fail("{} {}: cannot write: {}", flag, path, std::strerror(errno));
  const bool written = std::fwrite(content.data(), 1, content.size(), f) == content.size();
  const bool closed = std::fclose(f) == 0;
  if (!written || !closed || std::rename(temporary.c_str(), path.c_str()) != 0) {
    std::remove(temporary.c_str());
    fail("{} {}: write failed: {}", flag, path, std::strerror(errno));
  }
}

void run_op_benchmarks(const std::vector<std::string>& ops, const BenchOptions& o) {
  OpBenchSettings settings;
  settings.repetitions = o.repetitions;
  settings.progress = o.progress;
  const std::vector<std::string> devices = parse_word_list(o.device, "--device");
  if (devices.size() != 1) fail("--op measures one device at a time (--device gave {})", devices.size());
  settings.device = resolve_device(devices.front());
  if (!o.threads.empty()) {
    const std::vector<int> threads = to_ints(parse_int_list(o.threads, "-t", 1, 1), "-t");
    settings.n_threads = threads.front();
  }
  if (o.dtypes_given) {
    settings.weight_types = parse_word_list(o.dtypes, "--dtype");
    for (const std::string& t : settings.weight_types) parse_dtype(t);
  }
  if (o.n_batch != "2048") settings.batches = to_ints(parse_int_list(o.n_batch, "-b", 1, 64), "-b");
  if (o.n_depth != "0") settings.contexts = to_ints(parse_int_list(o.n_depth, "-d", 1, 64), "-d");
  std::vector<nlohmann::ordered_json> records;
  for (const std::string& op : ops) {
    if (op != "matmul" && op != "attention" && op != "all") fail("--op '{}' is not one of matmul, attention, all", op);
  }
  const bool all = std::find(ops.begin(), ops.end(), "all") != ops.end();
  if (all || std::find(ops.begin(), ops.end(), "matmul") != ops.end()) {
    for (auto& r : run_matmul_benchmarks(settings)) records.push_back(std::move(r));
  }
  if (all || std::find(ops.begin(), ops.end(), "attention") != ops.end()) {
    for (auto& r : run_attention_benchmarks(settings)) records.push_back(std::move(r));
  }
  const std::string rendered = render_op_bench(records, o.output);
  std::fwrite(rendered.data(), 1, rendered.size(), stdout);
}

void run_bench(const BenchOptions& o) {
  // Everything the user can get wrong is checked before anything runs.
  if (o.output != "md" && o.output != "csv" && o.output != "json" && o.output != "jsonl") {
    fail("-o '{}' is not one of md, csv, json, jsonl", o.output);
  }
  if (o.repetitions < 1 || o.repetitions > 1000) fail("-r {}: repetitions must be 1..1000", o.repetitions);
  if (!(o.delay >= 0 && o.delay <= 3600)) fail("--delay {}: seconds between tests must be 0..3600", o.delay);
  if (!o.op.empty()) {
    const std::vector<std::string> ops = parse_word_list(o.op, "--op");
    run_op_benchmarks(ops, o);
    return;
  }
  const std::vector<int> prompts = o.n_prompt == "0" ? std::vector<int>{} : to_ints(parse_int_list(o.n_prompt, "-p", 0), "-p");
  const std::vector<int> gens = o.n_gen == "0" ? std::vector<int>{} : to_ints(parse_int_list(o.n_gen, "-n", 0), "-n");
  std::vector<std::pair<int, int>> prompt_gens;
  for (const std::string& pg : o.prompt_gen) {
    const std::vector<int> values = to_ints(parse_int_list(pg, "-pg", 1), "-pg");
    if (values.size() != 2) fail("-pg '{}': give a prompt and a generation length, e.g. -pg 512,128", pg);
    prompt_gens.emplace_back(values[0], values[1]);
  }
  const std::vector<int> depths = to_ints(parse_int_list(o.n_depth, "-d", 0), "-d");
  const std::vector<int> batches = to_ints(parse_int_list(o.n_batch, "-b", 1), "-b");
  const std::vector<int> threads = o.threads.empty() ? std::vector<int>{default_thread_count()}
                                                     : to_ints(parse_int_list(o.threads, "-t", 1, 64), "-t");
  for (int t : threads) {
    if (t > 1024) fail("-t {}: at most 1024 threads", t);
  }
  const std::vector<int> block_sizes = to_ints(parse_int_list(o.block_size, "--block-size", 1), "--block-size");
  const std::vector<int> parallels = to_ints(parse_int_list(o.n_parallel, "-npl", 1), "-npl");
  const std::vector<std::string> kv_types = parse_word_list(o.kv_type, "--kv-type");
  const std::vector<std::string> layouts = parse_word_list(o.kv_layout, "--kv-layout");
  const std::vector<std::string> prefix_caches = parse_word_list(o.prefix_cache, "--prefix-cache");
  const std::vector<std::string> devices = parse_word_list(o.device, "--device");
  for (const std::string& t : kv_types) {
    if (!parse_kv_dtype(t)) fail("--kv-type '{}' is not supported (use {})", t, kKvDtypeNames);
  }
  for (const std::string& l : layouts) {
    if (l != "paged" && l != "contiguous") fail("--kv-layout '{}' is not one of paged, contiguous", l);
  }
  for (const std::string& p : prefix_caches) {
    if (p != "on" && p != "off") fail("--prefix-cache '{}' is not one of on, off", p);
  }
  for (int b : block_sizes) {
    if (b > 1024) fail("--block-size {} is out of range (1..1024)", b);
  }
  std::vector<DeviceKind> device_kinds;
  for (const std::string& d : devices) device_kinds.push_back(resolve_device(d));
  if (prompts.empty() && gens.empty() && prompt_gens.empty()) fail("nothing to measure: -p, -n and -pg are all empty");

  std::vector<BenchCase> cases;
  for (int npl : parallels) {
    for (int d : depths) {
      for (int p : prompts) {
        if (p > 0) cases.push_back(BenchCase{p, 0, d, npl});
      }
      for (int n : gens) {
        if (n > 0) cases.push_back(BenchCase{0, n, d, npl});
      }
      for (const auto& [p, n] : prompt_gens) cases.push_back(BenchCase{p, n, d, npl});
    }
  }
  if (cases.empty()) fail("nothing to measure: every prompt and generation length is 0");

  std::vector<nlohmann::json> earlier;
  if (!o.compare.empty()) earlier = read_bench_file(o.compare);

  std::vector<ModelSource> models;
  if (!o.synthetic.empty()) {
    const std::filesystem::path dir = o.cache_dir.empty() ? default_cache_dir() : std::filesystem::path(o.cache_dir);
    const std::vector<std::string> shapes = parse_word_list(o.synthetic, "--synthetic");
    const std::vector<std::string> dtypes = parse_word_list(o.dtypes, "--dtype");
    for (const std::string& shape : shapes) synthetic_spec(shape);  // an unknown shape fails before any writing
    for (const std::string& dtype : dtypes) parse_dtype(dtype);
    for (const std::string& shape : shapes) {
      for (const std::string& dtype : dtypes) {
        models.push_back(ModelSource{synthetic_model_file(shape, dtype, dir, true), shape});
      }
    }
  }
  if (!o.models.empty()) {
    for (const std::string& path : parse_word_list(o.models, "-m")) models.push_back(ModelSource{path, ""});
  }
  if (models.empty()) models.push_back(ModelSource{default_model_path(), ""});

  std::string gpu_info;
  {
    std::string why;
    for (const GpuDeviceInfo& d : list_gpu_devices(why)) gpu_info += (gpu_info.empty() ? "" : ", ") + d.name;
  }
  std::vector<BenchRecord> records;
  const size_t total_tests = models.size() * cases.size() * batches.size() * threads.size() * block_sizes.size() *
                             kv_types.size() * layouts.size() * prefix_caches.size() * device_kinds.size();
  size_t test_index = 0;
  const bool show_progress = o.progress;
  for (const ModelSource& source : models) {
    auto model = Model::load(source.path);
    for (const DeviceKind device : device_kinds) {
      for (int n_threads : threads) {
        for (int n_batch : batches) {
          for (int block_size : block_sizes) {
            for (const std::string& kv_type : kv_types) {
              for (const std::string& layout : layouts) {
                for (const std::string& prefix : prefix_caches) {
                  // One engine for the cases that share these settings, sized for the largest of them.
                  int64_t longest = 1;
                  int most_parallel = 1;
                  for (const BenchCase& c : cases) {
                    longest = std::max<int64_t>(longest, c.n_depth + std::max(c.n_prompt, 1) + c.n_gen + 2);
                    most_parallel = std::max(most_parallel, c.n_parallel);
                  }
                  RunnerConfig rc;
                  rc.block_size = block_size;
                  rc.n_ctx = static_cast<int>(longest);
                  rc.n_seq_hint = most_parallel;
                  rc.n_threads = n_threads;
                  rc.kv_dtype = *parse_kv_dtype(kv_type);
                  rc.device = device;
                  SchedulerConfig sc;
                  sc.max_seqs = most_parallel;
                  sc.max_batch_tokens = n_batch;
                  sc.layout = layout == "contiguous" ? KvLayout::Contiguous : KvLayout::Paged;
                  sc.prefix_cache = prefix == "on";
                  Benchmark bench(*model, rc, sc);
                  const MachinePeaks peaks = bench.runner().peaks();
                  for (const BenchCase& c : cases) {
                    ++test_index;
                    EngineSettings e{n_batch, n_threads, block_size, c.n_parallel, kv_type, layout, prefix,
                                     std::string(device == DeviceKind::Cuda ? "cuda" : "cpu")};
                    auto progress = [&](int done, int total) {
                      if (!show_progress) return;
                      fmt::print(stderr, "bench: test {}/{} ({}, {}): {}/{} repetitions\n", test_index, total_tests,
                                 model->description(), bench_test_name(BenchRecord{{"n_prompt", c.n_prompt},
                                                                                   {"n_gen", c.n_gen},
                                                                                   {"n_depth", c.n_depth}}),
                                 done, total);
                    };
                    const BenchMeasurement m = bench.measure(c, o.repetitions, 1234 + test_index * 7919, progress);
                    records.push_back(make_record(*model, source.path, e, c, m, bench.runner(), peaks, gpu_info));
                    if (o.delay > 0 && test_index < total_tests) {
                      std::this_thread::sleep_for(std::chrono::duration<double>(o.delay));
                    }
                  }
                }
              }
            }
          }
        }
      }
    }
  }

  std::string compare_label;
  if (!o.compare.empty()) {
    compare_label = std::filesystem::path(o.compare).filename().string();
    const bool theirs_is_llama = !earlier.empty() && earlier.front().contains("cpu_info") &&
                                 !earlier.front().contains("n_parallel");
    if (theirs_is_llama) compare_label = "llama.cpp";
    const int matched = attach_comparison(records, earlier);
    if (matched == 0) fmt::print(stderr, "warning: --compare {}: no test matches this run's\n", o.compare);
  }
  const std::string rendered = render_bench(records, o.output, compare_label);
  std::fwrite(rendered.data(), 1, rendered.size(), stdout);
  std::fflush(stdout);
  if (!o.plot.empty()) {
    const auto [x, series] = plot_axes(records);
    write_file_atomically(o.plot, render_bench_svg(records, x, series), "--plot");
    fmt::print(stderr, "bench: chart of tokens/s by {} written to {}\n", x, o.plot);
  }
}

}  // namespace

void add_bench_command(CLI::App& app) {
  add_subcommand_with_aliases(
      app, "bench",
      "Measure prompt processing and generation speed (llama-bench's tests) over sweeps of models and settings, "
      "with bandwidth and compute figures in every row",
      {{"-pg", "--pg"}, {"-npl", "--n-parallel"}}, [](CLI::App& cmd) {
        auto o = std::make_shared<BenchOptions>();
        cmd.add_option("-m,--model", o->models, "GGUF files, comma-separated (default: the default model)");
        cmd.add_option("--synthetic", o->synthetic, "Model shapes with random weights instead of files: " +
                                                        fmt::format("{}", fmt::join(synthetic_presets(), ", ")));
        auto* dtype = cmd.add_option("--dtype", o->dtypes, "Weight types of the --synthetic models (and of --op "
                                                           "matmul), e.g. f16,q8_0,q4_0")->capture_default_str();
        cmd.add_option("--cache-dir", o->cache_dir, "Where --synthetic files are written and reused (default: "
                                                    "~/.cache/pagedllm/synthetic)");
        cmd.add_flag("--clean", o->clean, "Remove the cached --synthetic files (all of them) and exit");
        cmd.add_option("-p,--n-prompt", o->n_prompt, "Prompt lengths (lists 1,2,4; ranges 1-8; steps 64-4096*2 or "
                                                     "16-128+16; 0 for none)")->capture_default_str();
        cmd.add_option("-n,--n-gen", o->n_gen, "Generated lengths (0 for none)")->capture_default_str();
        cmd.add_option("--pg", o->prompt_gen, "A prompt then a generation, measured as one: P,N (repeatable; "
                                              "also -pg)");
        cmd.add_option("-d,--n-depth", o->n_depth, "Tokens already in the KV cache before the measured part")
            ->capture_default_str();
        cmd.add_option("-b,--batch-size", o->n_batch, "Tokens per prefill forward")->capture_default_str();
        cmd.add_option("-t,--threads", o->threads, "CPU threads (default: all cores)");
        cmd.add_option("-r,--repetitions", o->repetitions, "Measured repetitions of each test (after one warm-up)")
            ->capture_default_str();
        cmd.add_option("--delay", o->delay, "Seconds to wait between tests (lets a machine cool)")->capture_default_str();
        cmd.add_option("-o,--output", o->output, "md, csv, json or jsonl (llama-bench's field names)")
            ->capture_default_str();
        cmd.add_flag("--progress", o->progress, "Say on stderr which test runs");
        cmd.add_option("--block-size", o->block_size, "KV cache block sizes")->capture_default_str();
        cmd.add_option("--kv-type", o->kv_type, "KV cache element types: f16, f32, q8_0, q4_0")
            ->capture_default_str();
        cmd.add_option("--kv-layout", o->kv_layout, "paged, contiguous")->capture_default_str();
        cmd.add_option("--prefix-cache", o->prefix_cache, "on, off")->capture_default_str();
        cmd.add_option("--device", o->device, "cpu, cuda, auto")->capture_default_str();
        cmd.add_option("--n-parallel", o->n_parallel, "Sequences doing the same test together (aggregate and "
                                                      "per-sequence tokens/s; also -npl)")->capture_default_str();
        cmd.add_option("--compare", o->compare, "An earlier run (ours, or llama-bench -o json/jsonl) to add a ratio "
                                                "column against");
        cmd.add_option("--plot", o->plot, "Write an SVG chart of tokens/s against the swept setting");
        cmd.add_option("--op", o->op, "Benchmark kernels alone instead: matmul, attention or all");
        return [o, dtype] {
          o->dtypes_given = dtype->count() > 0;
          if (o->clean) {
            const std::filesystem::path dir =
                o->cache_dir.empty() ? default_cache_dir() : std::filesystem::path(o->cache_dir);
            std::error_code ec;
            const auto removed = std::filesystem::remove_all(dir, ec);
            if (ec) fail("--clean: cannot remove {}: {}", dir.string(), ec.message());
            fmt::print(stderr, "bench: removed {} ({} entries)\n", dir.string(), removed);
            return;
          }
          run_bench(*o);
        };
      });
}

}  // namespace pagedllm::cli
