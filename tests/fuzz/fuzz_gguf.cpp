// libFuzzer target for the GGUF reader: any byte string must end in a parsed file or a pagedllm::Error, never a
// crash, a read past the input, undefined behaviour, a hang or a huge allocation. Built by scripts/fuzz.sh with
// clang, AddressSanitizer and UndefinedBehaviorSanitizer.
//
// With PAGEDLLM_FUZZ_WRITE_SEEDS=DIR in the environment the binary instead writes its synthetic seed files
// (writer-made models and metadata of every type) into DIR and exits, so the seeds always match the writer.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <span>
#include <string>
#include <vector>

#include "common/error.h"
#include "tensor/dequantize.h"
#include "model_loader/gguf.h"
#include "model_loader/gguf_writer.h"
#include "model_loader/model_config.h"
#include "model_loader/synthetic_model.h"

namespace {

using namespace pagedllm;

void save(const std::string& dir, const std::string& name, const std::vector<uint8_t>& bytes) {
  std::ofstream out(dir + "/" + name, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  if (!out) {
    std::fprintf(stderr, "cannot write seed %s/%s\n", dir.c_str(), name.c_str());
    std::exit(1);
  }
}

SyntheticModelSpec micro_spec(GgmlType type, int64_t n_embd) {
  SyntheticModelSpec s;
  s.name = "fuzz-seed";
  s.n_vocab = 260;
  s.n_embd = n_embd;
  s.n_layer = 1;
  s.n_head = 4;
  s.n_head_kv = 2;
  s.n_ff = n_embd * 2;
  s.n_ctx = 64;
  s.weight_type = type;
  return s;
}

void write_seeds(const std::string& dir) {
  save(dir, "synthetic_f32.gguf", build_synthetic_gguf(micro_spec(GgmlType::F32, 32)));
  save(dir, "synthetic_q4_0.gguf", build_synthetic_gguf(micro_spec(GgmlType::Q4_0, 64)));
  save(dir, "synthetic_q8_0.gguf", build_synthetic_gguf(micro_spec(GgmlType::Q8_0, 32)));
  SyntheticModelSpec k_quant = micro_spec(GgmlType::Q4_K, 256);
  k_quant.tied_embeddings = true;
  save(dir, "synthetic_q4_k_tied.gguf", build_synthetic_gguf(k_quant));
  save(dir, "synthetic_q6_k.gguf", build_synthetic_gguf(micro_spec(GgmlType::Q6_K, 256)));
  save(dir, "synthetic_f16.gguf", build_synthetic_gguf(micro_spec(GgmlType::F16, 32)));

  // Metadata of every value type (nested arrays too), GGUF v2, a non-default alignment, odd tensor shapes.
  GgufWriter w(2);
  w.set_alignment(64);
  w.set("u8", gguf_value::u8(1));
  w.set("i8", gguf_value::i8(-1));
  w.set("u16", gguf_value::u16(2));
  w.set("i16", gguf_value::i16(-2));
  w.set("u32", gguf_value::u32(3));
  w.set("i32", gguf_value::i32(-3));
  w.set("u64", gguf_value::u64(4));
  w.set("i64", gguf_value::i64(-4));
  w.set("f32", gguf_value::f32(0.5f));
  w.set("f64", gguf_value::f64(0.25));
  w.set("bool", gguf_value::boolean(true));
  w.set("string", gguf_value::string("text"));
  w.set("strings", gguf_value::string_array({"a", "bc", ""}));
  w.set("nested", gguf_value::array(GgufValueType::ARRAY,
                                    {gguf_value::array(GgufValueType::INT16, {gguf_value::i16(7)}),
                                     gguf_value::array(GgufValueType::STRING, {gguf_value::string("x")})}));
  w.add_tensor("rank4", {32, 1, 2, 1}, GgmlType::Q8_0, std::vector<uint8_t>(34 * 2, 1));
  w.add_tensor("empty", {0, 3}, GgmlType::F32, std::vector<uint8_t>());
  w.add_tensor("bf16", {3}, GgmlType::BF16, std::vector<uint8_t>(6, 0x3f));
  save(dir, "every_value_type_v2.gguf", w.to_bytes());

  // A complete llama file of a few KB: small inputs run fastest, so most mutations start from this one.
  GgufWriter micro;
  micro.set_string("general.architecture", "llama");
  micro.set_u32("llama.context_length", 16);
  micro.set_u32("llama.embedding_length", 8);
  micro.set_u32("llama.block_count", 1);
  micro.set_u32("llama.feed_forward_length", 16);
  micro.set_u32("llama.attention.head_count", 2);
  micro.set_u32("llama.attention.head_count_kv", 1);
  micro.set_f32("llama.attention.layer_norm_rms_epsilon", 1e-5f);
  micro.set_string("tokenizer.ggml.model", "llama");
  micro.set("tokenizer.ggml.tokens", gguf_value::string_array({"<unk>", "<s>", "</s>", "a", "b", "ab"}));
  const float scores[] = {0, 0, 0, -1, -2, -3};
  micro.set("tokenizer.ggml.scores", gguf_value::f32_array(scores));
  auto f32_tensor = [&](const std::string& name, std::vector<int64_t> ne) {
    int64_t n = 1;
    for (int64_t d : ne) n *= d;
    micro.add_tensor_f32(name, std::move(ne), std::vector<float>(static_cast<size_t>(n), 0.5f));
  };
  f32_tensor("token_embd.weight", {8, 6});
  f32_tensor("output_norm.weight", {8});
  for (const char* name : {"attn_norm", "ffn_norm"}) f32_tensor(std::string("blk.0.") + name + ".weight", {8});
  f32_tensor("blk.0.attn_q.weight", {8, 8});
  f32_tensor("blk.0.attn_k.weight", {8, 4});
  f32_tensor("blk.0.attn_v.weight", {8, 4});
  f32_tensor("blk.0.attn_output.weight", {8, 8});
  f32_tensor("blk.0.ffn_gate.weight", {8, 16});
  f32_tensor("blk.0.ffn_up.weight", {8, 16});
  f32_tensor("blk.0.ffn_down.weight", {16, 8});
  save(dir, "micro_llama.gguf", micro.to_bytes());

  GgufWriter vocab_only;
  vocab_only.set_string("tokenizer.ggml.model", "llama");
  vocab_only.set("tokenizer.ggml.tokens", gguf_value::string_array(synthetic_vocab(300)));
  save(dir, "vocab_only.gguf", vocab_only.to_bytes());
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  if (const char* dir = std::getenv("PAGEDLLM_FUZZ_WRITE_SEEDS")) {
    try {
      write_seeds(dir);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "writing seeds failed: %s\n", e.what());
      std::exit(1);
    }
    std::exit(0);
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace pagedllm;
  try {
    const auto file = GgufFile::from_memory(std::span<const uint8_t>(data, size), "fuzz.gguf");
    // Every byte of every tensor: AddressSanitizer checks the whole source range of a memcpy, so one copy per
    // tensor reports any pointer or size that leaves the input (a byte loop would cost more than the parse,
    // because the fuzzer instruments every comparison in it).
    static std::vector<uint8_t> scratch;  // [largest tensor seen]
    uint64_t checksum = 0;
    for (const GgufTensorInfo& t : file->tensors()) {
      if (t.n_bytes == 0) continue;
      if (scratch.size() < t.n_bytes) scratch.resize(t.n_bytes);
      std::memcpy(scratch.data(), t.data, t.n_bytes);
      checksum += scratch[t.n_bytes - 1];
      // Decode the first row of computable types, as an embedding lookup would.
      if (type_traits(t.type).can_compute && t.n_bytes > 0 && t.ne[0] <= 1 << 16) {
        std::vector<float> row(static_cast<size_t>(t.ne[0]));  // [ne0]
        dequantize_row(t.type, t.data, row.data(), t.ne[0]);
        for (float x : row) checksum += static_cast<uint64_t>(x == x);
      }
    }
    for (const auto& [key, value] : file->metadata()) checksum += format_value(value).size();
    try {
      const ModelConfig config = read_model_config(*file);
      checksum += static_cast<uint64_t>(config.kv_bytes_per_token(2));
    } catch (const Error&) {
    }
    // Keep the reads from being optimised away.
    volatile uint64_t sink = checksum;
    (void)sink;
  } catch (const Error&) {
  }
  return 0;
}
