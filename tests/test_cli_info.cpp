// `pagedllm info` run as a user runs it (the built binary, through the shell): the stories260K facts of issue 2 in
// text and JSON, the tensor listing, a writer-made synthetic model, and one "error:" line for bad input.
#include <doctest/doctest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "required_files.h"

#include "model_loader/gguf_writer.h"
#include "model_loader/synthetic_model.h"

namespace fs = std::filesystem;
using namespace pagedllm;

namespace {

const std::string kStories = std::string(PAGEDLLM_SHARED_DIR) + "/models/stories260K.gguf";

struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::temp_directory_path() / ("pagedllm_test_cli_info_" + std::to_string(::getpid()));
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
};

std::string quoted(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

struct RunResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

// Runs `pagedllm ARGS` with stdout captured through popen and stderr through a file.
RunResult run_pagedllm(const std::string& args) {
  REQUIRE_MESSAGE(fs::exists(PAGEDLLM_BINARY), "the pagedllm binary is not built: " << PAGEDLLM_BINARY);
  static int counter = 0;
  const fs::path err_path =
      fs::temp_directory_path() / ("pagedllm_cli_info_stderr_" + std::to_string(::getpid()) + "_" +
                                   std::to_string(counter++));
  const std::string command = quoted(PAGEDLLM_BINARY) + " " + args + " 2>" + quoted(err_path.string());
  RunResult result;
  FILE* pipe = ::popen(command.c_str(), "r");
  REQUIRE(pipe != nullptr);
  char buffer[4096];
  size_t n;
  while ((n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0) result.out.append(buffer, n);
  const int status = ::pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  std::ifstream err(err_path);
  std::stringstream text;
  text << err.rdbuf();
  result.err = text.str();
  fs::remove(err_path);
  return result;
}

bool contains_word_value(const std::string& text, const std::string& name, const std::string& value) {
  return std::regex_search(text, std::regex("(^|[^a-z_])" + name + "[ :=]+" + value + "([^0-9]|$)"));
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::stringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

void expect_one_error_line(const RunResult& r, const std::string& must_contain) {
  CAPTURE(r.out);
  CAPTURE(r.err);
  CHECK(r.exit_code != 0);
  CHECK(r.exit_code < 128);  // an error exit, not a signal
  const auto lines = lines_of(r.err);
  REQUIRE(lines.size() == 1);
  CHECK(lines[0].rfind("error: ", 0) == 0);
  CHECK(lines[0].find(must_contain) != std::string::npos);
}

}  // namespace

TEST_CASE("info on stories260K shows the GQA config and 292,800 parameters") {
  const RunResult r = run_pagedllm("info -m " + quoted(kStories));
  CAPTURE(r.out);
  CAPTURE(r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(r.err.empty());
  CHECK(contains_word_value(r.out, "n_head", "8"));
  CHECK(contains_word_value(r.out, "n_head_kv", "4"));
  CHECK(contains_word_value(r.out, "head_dim", "8"));
  CHECK(contains_word_value(r.out, "n_layer", "5"));
  CHECK(contains_word_value(r.out, "n_ff", "172"));
  CHECK(std::regex_search(r.out, std::regex("292,?800")));
  CHECK(r.out.find("llama") != std::string::npos);
}

TEST_CASE("info on the Gemma 3 270M file shows MQA, head_dim 256 and the sliding window of 15 of 18 layers") {
  pagedllm::test::require_gemma3();
  const RunResult r = run_pagedllm("info -m " + quoted(pagedllm::test::kGemma3Path));
  CAPTURE(r.out);
  CAPTURE(r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(contains_word_value(r.out, "head_dim", "256"));
  CHECK(r.out.find("(MQA)") != std::string::npos);
  CHECK(r.out.find("sliding window: 512 keys in 15 of 18 layers (RoPE base 10000), the other 3 global") !=
        std::string::npos);
  CHECK(r.out.find("GELU (tanh) gated FFN") != std::string::npos);
  const RunResult j = run_pagedllm("info --json -m " + quoted(pagedllm::test::kGemma3Path));
  REQUIRE(j.exit_code == 0);
  const nlohmann::json info = nlohmann::json::parse(j.out);
  CHECK(info.at("config").at("sliding_window") == 512);
  CHECK(info.at("config").at("sliding_window_pattern") == 6);
}

TEST_CASE("info --json on stories260K parses and holds the same values") {
  const RunResult r = run_pagedllm("info --json -m " + quoted(kStories));
  CAPTURE(r.err);
  REQUIRE(r.exit_code == 0);
  nlohmann::json j;
  REQUIRE_NOTHROW(j = nlohmann::json::parse(r.out));
  CHECK(j.at("parameters").get<int64_t>() == 292800);
  CHECK(j.at("tensor_count").get<int64_t>() == 48);
  CHECK(j.at("file_size").get<int64_t>() == 1185376);
  CHECK(j.at("architecture") == "llama");
  const auto& config = j.at("config");
  CHECK(config.at("n_head").get<int>() == 8);
  CHECK(config.at("n_head_kv").get<int>() == 4);
  CHECK(config.at("head_dim").get<int>() == 8);
  CHECK(config.at("n_embd").get<int>() == 64);
  CHECK(config.at("n_vocab").get<int>() == 512);
  CHECK(config.at("rope_freq_base").get<double>() == 10000.0);
  CHECK(j.at("tokenizer").at("model") == "llama");
  CHECK(j.at("tokenizer").at("vocab_size").get<int>() == 512);
  CHECK(j.at("dtypes").at("F32").at("tensors").get<int>() == 48);
}

TEST_CASE("info --tensors lists all 48 tensors with shape, dtype and offset") {
  const RunResult r = run_pagedllm("info --tensors -m " + quoted(kStories));
  REQUIRE(r.exit_code == 0);
  const std::regex tensor_line(R"(^(token_embd|output_norm|output|blk\.[0-4]\.[a-z_]+)\.weight\s)");
  int listed = 0;
  for (const std::string& line : lines_of(r.out)) listed += std::regex_search(line, tensor_line);
  CHECK(listed == 48);
  CHECK(std::regex_search(r.out, std::regex(R"(token_embd\.weight\s+\[64, 512\]\s+F32\s+0\s)")));
  CHECK(std::regex_search(r.out, std::regex(R"(output\.weight\s+\[64, 512\]\s+F32\s+131328\s)")));

  const RunResult json_run = run_pagedllm("info --tensors --json -m " + quoted(kStories));
  REQUIRE(json_run.exit_code == 0);
  const auto j = nlohmann::json::parse(json_run.out);
  REQUIRE(j.at("tensors").size() == 48);
  const auto& first = j.at("tensors").at(0);
  CHECK(first.at("name") == "token_embd.weight");
  CHECK(first.at("shape") == nlohmann::json::array({64, 512}));
  CHECK(first.at("dtype") == "F32");
  CHECK(first.at("offset").get<int64_t>() == 0);
}

TEST_CASE("info describes a writer-made synthetic model (config and dtypes from the spec)") {
  TempDir dir;
  SyntheticModelSpec spec = synthetic_spec("tiny");
  spec.weight_type = GgmlType::Q8_0;
  spec.tied_embeddings = true;
  const std::string path = (dir.path / "tiny_q8_0.gguf").string();
  write_synthetic_gguf(spec, path);
  const RunResult r = run_pagedllm("info --json -m " + quoted(path));
  CAPTURE(r.err);
  REQUIRE(r.exit_code == 0);
  const auto j = nlohmann::json::parse(r.out);
  CHECK(j.at("parameters").get<int64_t>() == synthetic_parameter_count(spec));
  CHECK(j.at("config").at("n_head").get<int64_t>() == spec.n_head);
  CHECK(j.at("config").at("n_head_kv").get<int64_t>() == spec.n_head_kv);
  CHECK(j.at("config").at("n_vocab").get<int64_t>() == spec.n_vocab);
  CHECK(j.at("config").at("tied_embeddings") == true);
  // 2-D weights in Q8_0 (1 embedding + 7 per layer), norms in F32 (1 + 2 per layer).
  CHECK(j.at("dtypes").at("Q8_0").at("tensors").get<int64_t>() == 1 + 7 * spec.n_layer);
  CHECK(j.at("dtypes").at("F32").at("tensors").get<int64_t>() == 1 + 2 * spec.n_layer);
  CHECK(j.at("tokenizer").at("vocab_size").get<int64_t>() == spec.n_vocab);
}

TEST_CASE("info shows each family's settings: rope layout, q/k/v biases, per-head q/k norm") {
  TempDir dir;
  struct Family {
    const char* preset;
    const char* bias;
    const char* qk_norm;
  };
  for (const Family& f : {Family{"qwen2-tiny", "q/k/v bias yes", "per-head q/k RMSNorm no"},
                          Family{"qwen3-tiny", "q/k/v bias no", "per-head q/k RMSNorm yes (before RoPE)"},
                          Family{"tiny", "q/k/v bias no", "per-head q/k RMSNorm no"}}) {
    CAPTURE(f.preset);
    const SyntheticModelSpec spec = synthetic_spec(f.preset);
    const std::string path = (dir.path / (std::string(f.preset) + ".gguf")).string();
    write_synthetic_gguf(spec, path);
    const RunResult text = run_pagedllm("info -m " + quoted(path));
    CAPTURE(text.err);
    REQUIRE(text.exit_code == 0);
    CHECK(text.out.find("architecture:    " + spec.architecture + "\n") != std::string::npos);
    const bool llama = spec.architecture == "llama";
    CHECK(text.out.find(llama ? "rope: norm layout" : "rope: neox layout") != std::string::npos);
    CHECK(text.out.find(f.bias) != std::string::npos);
    CHECK(text.out.find(f.qk_norm) != std::string::npos);
    CHECK(text.out.find(llama ? "tokenizer:       llama vocabulary" : "gpt2 vocabulary of 800 tokens, "
                                                                        "pre-tokenizer qwen2") != std::string::npos);

    const RunResult json = run_pagedllm("info --json -m " + quoted(path));
    REQUIRE(json.exit_code == 0);
    const auto j = nlohmann::json::parse(json.out);
    CHECK(j.at("parameters").get<int64_t>() == synthetic_parameter_count(spec));
    CHECK(j.at("config").at("rope_layout") == (llama ? "norm" : "neox"));
    CHECK(j.at("config").at("qkv_bias") == (spec.architecture == "qwen2"));
    CHECK(j.at("config").at("qk_norm") == (spec.architecture == "qwen3"));
    CHECK(j.at("config").at("head_dim").get<int64_t>() == spec.head_dim());
  }
}

TEST_CASE("an unsupported architecture: info still describes the file, run exits with one error naming it") {
  TempDir dir;
  GgufWriter w = synthetic_model_writer(synthetic_spec("tiny"));
  w.set_string("general.architecture", "gemma2");
  const std::string path = (dir.path / "gemma2.gguf").string();
  w.write_file(path);
  const RunResult info = run_pagedllm("info -m " + quoted(path));
  CHECK(info.exit_code == 0);
  CHECK(info.out.find("unsupported architecture 'gemma2' (supported: llama, qwen2, qwen3, gemma3)") != std::string::npos);
  const RunResult run = run_pagedllm("run -m " + quoted(path) + " -p hi -n 1");
  expect_one_error_line(run, "unsupported architecture 'gemma2' (supported: llama, qwen2, qwen3, gemma3)");
}

TEST_CASE("a missing file and a malformed file exit non-zero with one error line") {
  TempDir dir;
  const std::string missing = (dir.path / "no_such_model.gguf").string();
  const RunResult no_file = run_pagedllm("info -m " + quoted(missing));
  expect_one_error_line(no_file, "no_such_model.gguf");
  CHECK(no_file.out.empty());

  GgufWriter w;
  w.set_string("general.architecture", "llama");
  w.add_tensor_f32("token_embd.weight", {4, 2}, std::vector<float>(8, 1.0f));
  std::vector<uint8_t> image = w.to_bytes();
  image[0] = 'X';  // bad magic
  const std::string bad = (dir.path / "bad_magic.gguf").string();
  std::ofstream(bad, std::ios::binary).write(reinterpret_cast<const char*>(image.data()),
                                             static_cast<std::streamsize>(image.size()));
  const RunResult bad_run = run_pagedllm("info -m " + quoted(bad));
  expect_one_error_line(bad_run, "magic");
  CHECK(bad_run.err.find("bad_magic.gguf") != std::string::npos);

  const std::string truncated = (dir.path / "truncated.gguf").string();
  image[0] = 'G';
  std::ofstream(truncated, std::ios::binary).write(reinterpret_cast<const char*>(image.data()),
                                                   static_cast<std::streamsize>(image.size() - 5));
  expect_one_error_line(run_pagedllm("info -m " + quoted(truncated)), "truncated.gguf");
  expect_one_error_line(run_pagedllm("info --json -m " + quoted(truncated)), "lies outside the file");
}
