#include "model_loader/synthetic_model.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <optional>
#include <thread>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "common/error.h"
#include "model_loader/synthetic_bpe.h"
#include "tensor/quantize.h"

namespace pagedllm {
namespace {

constexpr int64_t kSpecialTokens = 3;  // <unk>, <s>, </s>
constexpr int64_t kByteTokens = 256;
// Elements generated per work item: large enough to amortise scheduling, small enough that the float scratch
// buffer of each worker stays a few MB. Items are numbered per tensor, so the output does not depend on the
// number of threads.
constexpr int64_t kElementsPerChunk = 1 << 20;

enum TokenType : int32_t { kNormal = 1, kUnknown = 2, kControl = 3, kByte = 6 };

struct Preset {
  std::string_view name;
  int64_t n_vocab, n_embd, n_layer, n_head, n_head_kv, n_ff, n_ctx;
  float rope_freq_base;
  bool tied_embeddings;
  std::string_view architecture = "llama";
  int64_t key_length = 0;
  float rms_eps = 1e-5f;
  GgmlType weight_type = GgmlType::F32;
  float weight_stddev = 0.02f;
  float norm_gain_spread = 0.0f;
};

constexpr Preset kPresets[] = {
    {"llama-3-8b", 128256, 4096, 32, 32, 8, 14336, 8192, 500000.0f, false},
    {"llama-2-7b", 32000, 4096, 32, 32, 32, 11008, 4096, 10000.0f, false},
    {"mistral-7b", 32000, 4096, 32, 32, 8, 14336, 32768, 1000000.0f, false},
    {"smollm2-135m", 49152, 576, 30, 9, 3, 1536, 8192, 100000.0f, true},
    {"tinyllama-1.1b", 32000, 2048, 22, 32, 4, 5632, 2048, 10000.0f, false},
    {"llama-3.2-1b", 128256, 2048, 16, 32, 8, 8192, 131072, 500000.0f, true},
    {"stories260k", 512, 64, 5, 8, 4, 172, 2048, 10000.0f, false},
    {"tiny", 320, 256, 2, 4, 2, 512, 512, 10000.0f, false},
    // The golden-test models of the Qwen families: Qwen's rope base and eps, GQA 4/2 with head_dim 64, the
    // Qwen-style BPE vocabulary, random norm gains; weights stddev 0.06 so that the logits spread over a few units.
    // qwen3-tiny's heads (4 x 64) are wider than its embedding (192), as Qwen3's are, and its embeddings are tied.
    // F16 weights: both engines round the activations to F16 alike, so the comparison with llama.cpp measures the
    // family's own ops (with Q8_0, activation rounding flips made llama.cpp's own two attention paths differ by
    // 0.075 on qwen3-tiny, and a golden test could then only hold the logits to that).
    {"qwen2-tiny", 800, 256, 2, 4, 2, 512, 32768, 1000000.0f, false, "qwen2", 0, 1e-6f, GgmlType::F16, 0.06f, 0.5f},
    {"qwen3-tiny", 800, 192, 2, 4, 2, 512, 40960, 1000000.0f, true, "qwen3", 64, 1e-6f, GgmlType::F16, 0.06f, 0.5f},
};

bool uses_bpe_vocab(const std::string& architecture) { return architecture != "llama"; }

uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Approximately N(0, 1): the sum of four 16-bit uniforms (Irwin-Hall), standardised. One RNG call per sample
// keeps an 8B-parameter model's generation in the tens of seconds; the tails stop at about 3.5 sigma, which is
// fine for weights.
float approx_standard_normal(uint64_t& state) {
  const uint64_t r = splitmix64(state);
  const double sum = static_cast<double>((r & 0xFFFF) + ((r >> 16) & 0xFFFF) + ((r >> 32) & 0xFFFF) + (r >> 48));
  constexpr double kMean = 4 * 65535.0 / 2;
  constexpr double kStddev = 37837.22;  // sqrt(4 * (65536^2 - 1) / 12)
  return static_cast<float>((sum - kMean) / kStddev);
}

// Above this many elements a tensor repeats its first kDistinctRows rows: encoding every row (the K-quant
// quantizers take hundreds of ns per element) would make a 7B model take most of an hour to write, and a
// benchmark reads a repeating tensor from memory just the same.
constexpr int64_t kAllDistinctElements = int64_t{16} << 20;
constexpr int64_t kDistinctRows = 256;

// Fills `out` (a 2-D tensor [ne0, n_rows] of `type`) with N(0, stddev) values, encoded row by row; a large
// tensor's rows cycle through its first kDistinctRows.
void fill_random_rows(std::span<uint8_t> out, GgmlType type, int64_t ne0, int64_t n_rows, float stddev,
                      uint64_t seed) {
  const size_t bytes_per_row = row_bytes(type, ne0);
  const int64_t all_rows = n_rows;
  if (ne0 * n_rows > kAllDistinctElements && n_rows > kDistinctRows) n_rows = kDistinctRows;
  const int64_t rows_per_chunk = std::max<int64_t>(1, kElementsPerChunk / ne0);
  const int64_t n_chunks = (n_rows + rows_per_chunk - 1) / rows_per_chunk;
  std::atomic<int64_t> next_chunk{0};
  auto work = [&] {
    std::vector<float> row(static_cast<size_t>(ne0));  // [ne0] one row before encoding
    for (int64_t chunk = next_chunk++; chunk < n_chunks; chunk = next_chunk++) {
      uint64_t state = seed ^ (0xD1B54A32D192ED03ull * static_cast<uint64_t>(chunk + 1));
      const int64_t first = chunk * rows_per_chunk;
      const int64_t last = std::min(n_rows, first + rows_per_chunk);
      for (int64_t r = first; r < last; ++r) {
        for (float& x : row) x = stddev * approx_standard_normal(state);
        quantize_row(type, row.data(), out.data() + static_cast<size_t>(r) * bytes_per_row, ne0);
      }
    }
  };
  const int64_t n_threads =
      std::min<int64_t>(n_chunks, std::max<unsigned>(1, std::thread::hardware_concurrency()));
  std::vector<std::thread> threads;
  for (int64_t t = 1; t < n_threads; ++t) threads.emplace_back(work);
  work();
  for (std::thread& t : threads) t.join();
  const size_t distinct_bytes = static_cast<size_t>(n_rows) * bytes_per_row;
  for (size_t at = distinct_bytes; at < static_cast<size_t>(all_rows) * bytes_per_row; at += distinct_bytes) {
    std::memcpy(out.data() + at, out.data(), std::min(distinct_bytes, static_cast<size_t>(all_rows) * bytes_per_row - at));
  }
}

uint64_t tensor_seed(uint64_t model_seed, uint64_t tensor_index) {
  uint64_t state = model_seed ^ (tensor_index * 0x9E3779B97F4A7C15ull);
  return splitmix64(state);
}

std::optional<uint32_t> file_type_of(GgmlType type) {
  switch (type) {
    case GgmlType::F32: return 0;
    case GgmlType::F16: return 1;
    case GgmlType::Q4_0: return 2;
    case GgmlType::Q4_1: return 3;
    case GgmlType::Q8_0: return 7;
    case GgmlType::Q5_0: return 8;
    case GgmlType::Q5_1: return 9;
    case GgmlType::Q4_K: return 15;  // Q4_K_M
    case GgmlType::Q5_K: return 17;  // Q5_K_M
    case GgmlType::Q6_K: return 18;
    case GgmlType::BF16: return 32;
    default: return std::nullopt;
  }
}

// Letter strings of length `length` in lexicographic order, index -> string.
std::string letters(int64_t index, int length) {
  std::string s(static_cast<size_t>(length), 'a');
  for (int i = length - 1; i >= 0; --i) {
    s[static_cast<size_t>(i)] = static_cast<char>('a' + index % 26);
    index /= 26;
  }
  return s;
}

}  // namespace

std::vector<std::string> synthetic_presets() {
  std::vector<std::string> names;
  for (const Preset& p : kPresets) names.emplace_back(p.name);
  return names;
}

SyntheticModelSpec synthetic_spec(std::string_view preset) {
  for (const Preset& p : kPresets) {
    if (p.name != preset) continue;
    SyntheticModelSpec spec;
    spec.name = std::string(p.name);
    spec.n_vocab = p.n_vocab;
    spec.n_embd = p.n_embd;
    spec.n_layer = p.n_layer;
    spec.n_head = p.n_head;
    spec.n_head_kv = p.n_head_kv;
    spec.n_ff = p.n_ff;
    spec.n_ctx = p.n_ctx;
    spec.rope_freq_base = p.rope_freq_base;
    spec.tied_embeddings = p.tied_embeddings;
    spec.architecture = std::string(p.architecture);
    spec.key_length = p.key_length;
    spec.rms_eps = p.rms_eps;
    spec.weight_type = p.weight_type;
    spec.weight_stddev = p.weight_stddev;
    spec.norm_gain_spread = p.norm_gain_spread;
    return spec;
  }
  fail("unknown synthetic model preset '{}' (known: {})", preset, fmt::join(synthetic_presets(), ", "));
}

void validate_synthetic_spec(const SyntheticModelSpec& s) {
  const std::string what = fmt::format("synthetic model '{}'", s.name);
  if (s.architecture != "llama" && s.architecture != "qwen2" && s.architecture != "qwen3") {
    fail("{}: architecture '{}' cannot be written (known: llama, qwen2, qwen3)", what, s.architecture);
  }
  if (s.n_vocab < kSpecialTokens + kByteTokens || s.n_vocab > (int64_t{1} << 31)) {
    fail("{}: n_vocab {} must be in {}..2^31 (special and byte tokens come first)", what, s.n_vocab,
         kSpecialTokens + kByteTokens);
  }
  if (s.n_embd <= 0 || s.n_layer <= 0 || s.n_layer > 512 || s.n_ff <= 0 || s.n_ctx <= 0) {
    fail("{}: n_embd {}, n_layer {}, n_ff {}, n_ctx {} must be positive (n_layer at most 512)", what, s.n_embd,
         s.n_layer, s.n_ff, s.n_ctx);
  }
  if (s.n_head <= 0 || (s.key_length == 0 && s.n_embd % s.n_head != 0) || s.key_length < 0 ||
      s.head_dim() % 2 != 0) {
    fail("{}: n_head {} must divide n_embd {} into an even head_dim (or key_length {} must be even)", what, s.n_head,
         s.n_embd, s.key_length);
  }
  if (s.architecture == "qwen2" && s.key_length != 0 && s.key_length * s.n_head != s.n_embd) {
    fail("{}: a qwen2 model's heads must span n_embd (llama.cpp's qwen2 loader assumes attn_q is n_embd x n_embd)",
         what);
  }
  if (!(s.weight_stddev > 0) || !(s.norm_gain_spread >= 0 && s.norm_gain_spread < 1) || !(s.bias_stddev >= 0)) {
    fail("{}: weight_stddev {} must be positive, norm_gain_spread {} in [0, 1), bias_stddev {} non-negative", what,
         s.weight_stddev, s.norm_gain_spread, s.bias_stddev);
  }
  if (s.n_head_kv <= 0 || s.n_head % s.n_head_kv != 0) {
    fail("{}: n_head_kv {} must divide n_head {}", what, s.n_head_kv, s.n_head);
  }
  if (s.n_embd > UINT32_MAX || s.n_ff > UINT32_MAX || s.n_ctx > UINT32_MAX) {
    fail("{}: dimensions must fit the u32 metadata keys", what);
  }
  if (!can_quantize(s.weight_type)) {
    fail("{}: weight type {} cannot be generated (no quantizer for it)", what, type_name(s.weight_type));
  }
}

GgmlType weight_type_for_row(GgmlType wanted, int64_t ne0) {
  const int block_size = type_traits(wanted).block_size;
  if (ne0 % block_size == 0) return wanted;
  // llama.cpp's quantizer replaces a K-quant by a 32-element type of similar quality when a row is not a whole
  // number of super-blocks, and falls back to F16 when even that does not divide the row.
  GgmlType fallback = GgmlType::F16;
  switch (wanted) {
    case GgmlType::Q4_K: fallback = GgmlType::Q5_0; break;
    case GgmlType::Q5_K: fallback = GgmlType::Q5_1; break;
    case GgmlType::Q6_K: case GgmlType::Q8_K: fallback = GgmlType::Q8_0; break;
    default: break;
  }
  if (ne0 % type_traits(fallback).block_size != 0) fallback = GgmlType::F16;
  return fallback;
}

std::vector<std::string> synthetic_vocab(int64_t n_vocab) {
  std::vector<std::string> tokens;
  tokens.reserve(static_cast<size_t>(std::max<int64_t>(n_vocab, 0)));
  tokens.insert(tokens.end(), {"<unk>", "<s>", "</s>"});
  for (int byte = 0; byte < kByteTokens; ++byte) tokens.push_back(fmt::format("<0x{:02X}>", byte));
  const std::string space_marker = "\xE2\x96\x81";  // U+2581, SentencePiece's word-start marker
  if (static_cast<int64_t>(tokens.size()) < n_vocab) tokens.push_back(space_marker);
  // Shorter pieces first, each with and without the word-start marker, so every prefix of a piece is a piece.
  int64_t count_of_length = 26;
  for (int length = 1; static_cast<int64_t>(tokens.size()) < n_vocab; ++length, count_of_length *= 26) {
    for (int64_t i = 0; i < count_of_length && static_cast<int64_t>(tokens.size()) < n_vocab; ++i) {
      const std::string piece = letters(i, length);
      tokens.push_back(space_marker + piece);
      if (static_cast<int64_t>(tokens.size()) < n_vocab) tokens.push_back(piece);
    }
  }
  tokens.resize(static_cast<size_t>(std::max<int64_t>(n_vocab, 0)));
  return tokens;
}

int64_t synthetic_parameter_count(const SyntheticModelSpec& s) {
  const int64_t kv_dim = s.n_head_kv * s.head_dim();
  const int64_t q_dim = s.n_head * s.head_dim();
  const int64_t per_layer = 2 * s.n_embd                                    // attn_norm, ffn_norm
                            + 2 * s.n_embd * q_dim                          // attn_q, attn_output
                            + 2 * s.n_embd * kv_dim                         // attn_k, attn_v
                            + 3 * s.n_embd * s.n_ff                         // ffn_gate, ffn_up, ffn_down
                            + (s.architecture == "qwen2" ? q_dim + 2 * kv_dim : 0)      // q/k/v biases
                            + (s.architecture == "qwen3" ? 2 * s.head_dim() : 0);       // q/k norms
  const int64_t embeddings = s.n_vocab * s.n_embd * (s.tied_embeddings ? 1 : 2);
  return embeddings + s.n_embd + s.n_layer * per_layer;
}

namespace {

// The SentencePiece-style vocabulary of synthetic llama models (see synthetic_vocab).
void write_spm_tokenizer(GgufWriter& writer, const SyntheticModelSpec& spec) {
  const std::vector<std::string> tokens = synthetic_vocab(spec.n_vocab);
  std::vector<float> scores(tokens.size(), 0.0f);     // [n_vocab]
  std::vector<int32_t> token_types(tokens.size());    // [n_vocab]
  token_types[0] = kUnknown;
  token_types[1] = kControl;
  token_types[2] = kControl;
  for (size_t id = kSpecialTokens; id < tokens.size(); ++id) {
    const bool is_byte = id < static_cast<size_t>(kSpecialTokens + kByteTokens);
    token_types[id] = is_byte ? kByte : kNormal;
    // Earlier (shorter) pieces get higher SPM merge priority, as frequent pieces do in a trained vocabulary.
    if (!is_byte) scores[id] = -static_cast<float>(id - (kSpecialTokens + kByteTokens));
  }
  writer.set_string("tokenizer.ggml.model", "llama");
  writer.set("tokenizer.ggml.tokens", gguf_value::string_array(tokens));
  writer.set("tokenizer.ggml.scores", gguf_value::f32_array(scores));
  writer.set("tokenizer.ggml.token_type", gguf_value::i32_array(token_types));
  writer.set_u32("tokenizer.ggml.unknown_token_id", 0);
  writer.set_u32("tokenizer.ggml.bos_token_id", 1);
  writer.set_u32("tokenizer.ggml.eos_token_id", 2);
  writer.set_bool("tokenizer.ggml.add_bos_token", true);
  writer.set_bool("tokenizer.ggml.add_eos_token", false);
}

// The keys a Qwen2/Qwen2.5/Qwen3 instruct GGUF carries: byte-level BPE with the qwen2 pre-tokenizer, BOS and
// padding <|endoftext|>, EOS <|im_end|>, no BOS added. No chat template: the family's fallback applies.
void write_qwen_tokenizer(GgufWriter& writer, const SyntheticModelSpec& spec) {
  const SyntheticBpeVocab vocab = synthetic_bpe_vocab(spec.n_vocab);
  if (static_cast<int64_t>(vocab.tokens.size()) != spec.n_vocab) {
    fail("synthetic model '{}': n_vocab {} is not the size of the BPE vocabulary, which stops at {} tokens", spec.name,
         spec.n_vocab, vocab.tokens.size());
  }
  writer.set_string("tokenizer.ggml.model", "gpt2");
  writer.set_string("tokenizer.ggml.pre", "qwen2");
  writer.set("tokenizer.ggml.tokens", gguf_value::string_array(vocab.tokens));
  writer.set("tokenizer.ggml.token_type", gguf_value::i32_array(vocab.token_types));
  writer.set("tokenizer.ggml.merges", gguf_value::string_array(vocab.merges));
  writer.set_u32("tokenizer.ggml.eos_token_id", static_cast<uint32_t>(vocab.im_end_id));
  writer.set_u32("tokenizer.ggml.padding_token_id", static_cast<uint32_t>(vocab.endoftext_id));
  writer.set_u32("tokenizer.ggml.bos_token_id", static_cast<uint32_t>(vocab.endoftext_id));
  writer.set_bool("tokenizer.ggml.add_bos_token", false);
}

}  // namespace

GgufWriter synthetic_model_writer(const SyntheticModelSpec& spec) {
  validate_synthetic_spec(spec);
  GgufWriter writer(3);
  const std::string& arch = spec.architecture;
  const bool qwen2 = arch == "qwen2", qwen3 = arch == "qwen3";
  writer.set_string("general.architecture", arch);
  writer.set_string("general.name", "synthetic-" + spec.name);
  if (auto file_type = file_type_of(spec.weight_type)) writer.set_u32("general.file_type", *file_type);
  if (arch == "llama") writer.set_u32(arch + ".vocab_size", static_cast<uint32_t>(spec.n_vocab));
  writer.set_u32(arch + ".context_length", static_cast<uint32_t>(spec.n_ctx));
  writer.set_u32(arch + ".embedding_length", static_cast<uint32_t>(spec.n_embd));
  writer.set_u32(arch + ".block_count", static_cast<uint32_t>(spec.n_layer));
  writer.set_u32(arch + ".feed_forward_length", static_cast<uint32_t>(spec.n_ff));
  writer.set_u32(arch + ".attention.head_count", static_cast<uint32_t>(spec.n_head));
  writer.set_u32(arch + ".attention.head_count_kv", static_cast<uint32_t>(spec.n_head_kv));
  if (spec.key_length > 0) {
    writer.set_u32(arch + ".attention.key_length", static_cast<uint32_t>(spec.key_length));
    writer.set_u32(arch + ".attention.value_length", static_cast<uint32_t>(spec.key_length));
  }
  writer.set_u32(arch + ".rope.dimension_count", static_cast<uint32_t>(spec.head_dim()));
  writer.set_f32(arch + ".attention.layer_norm_rms_epsilon", spec.rms_eps);
  writer.set_f32(arch + ".rope.freq_base", spec.rope_freq_base);
  if (uses_bpe_vocab(arch)) {
    write_qwen_tokenizer(writer, spec);
  } else {
    write_spm_tokenizer(writer, spec);
  }

  uint64_t tensor_index = 0;
  auto add_matrix = [&](const std::string& name, int64_t ne0, int64_t ne1) {
    const GgmlType type = weight_type_for_row(spec.weight_type, ne0);
    const uint64_t seed = tensor_seed(spec.seed, tensor_index++);
    const float stddev = spec.weight_stddev;
    writer.add_tensor_generated(name, {ne0, ne1}, type, [=](std::span<uint8_t> out) {
      fill_random_rows(out, type, ne0, ne1, stddev, seed);
    });
  };
  // An F32 vector of n values from `value(state)`, seeded per tensor.
  auto add_vector = [&](const std::string& name, int64_t n, float (*value)(uint64_t&, float), float parameter) {
    const uint64_t seed = tensor_seed(spec.seed, tensor_index++);
    writer.add_tensor_generated(name, {n}, GgmlType::F32, [=](std::span<uint8_t> out) {
      uint64_t state = seed;
      for (size_t at = 0; at + sizeof(float) <= out.size(); at += sizeof(float)) {
        const float x = value(state, parameter);
        std::memcpy(out.data() + at, &x, sizeof x);
      }
    });
  };
  auto gain = [](uint64_t& state, float spread) {
    if (spread == 0.0f) return 1.0f;
    const double u = static_cast<double>(splitmix64(state) >> 11) * 0x1.0p-53;  // [0, 1)
    return static_cast<float>(1.0 + spread * (2.0 * u - 1.0));
  };
  auto normal = [](uint64_t& state, float stddev) { return stddev * approx_standard_normal(state); };
  auto add_norm = [&](const std::string& name, int64_t n) { add_vector(name, n, gain, spec.norm_gain_spread); };

  const int64_t q_dim = spec.n_head * spec.head_dim();
  const int64_t kv_dim = spec.n_head_kv * spec.head_dim();
  add_matrix("token_embd.weight", spec.n_embd, spec.n_vocab);
  add_norm("output_norm.weight", spec.n_embd);
  if (!spec.tied_embeddings) add_matrix("output.weight", spec.n_embd, spec.n_vocab);
  for (int64_t layer = 0; layer < spec.n_layer; ++layer) {
    const std::string blk = fmt::format("blk.{}.", layer);
    add_norm(blk + "attn_norm.weight", spec.n_embd);
    add_matrix(blk + "attn_q.weight", spec.n_embd, q_dim);
    add_matrix(blk + "attn_k.weight", spec.n_embd, kv_dim);
    add_matrix(blk + "attn_v.weight", spec.n_embd, kv_dim);
    if (qwen2) {
      add_vector(blk + "attn_q.bias", q_dim, normal, spec.bias_stddev);
      add_vector(blk + "attn_k.bias", kv_dim, normal, spec.bias_stddev);
      add_vector(blk + "attn_v.bias", kv_dim, normal, spec.bias_stddev);
    }
    if (qwen3) {
      add_norm(blk + "attn_q_norm.weight", spec.head_dim());
      add_norm(blk + "attn_k_norm.weight", spec.head_dim());
    }
    add_matrix(blk + "attn_output.weight", q_dim, spec.n_embd);
    add_norm(blk + "ffn_norm.weight", spec.n_embd);
    add_matrix(blk + "ffn_gate.weight", spec.n_embd, spec.n_ff);
    add_matrix(blk + "ffn_up.weight", spec.n_embd, spec.n_ff);
    add_matrix(blk + "ffn_down.weight", spec.n_ff, spec.n_embd);
  }
  return writer;
}

uint64_t fnv1a64(std::span<const uint8_t> bytes) {
  uint64_t hash = 0xCBF29CE484222325ull;
  for (uint8_t byte : bytes) {
    hash ^= byte;
    hash *= 0x100000001B3ull;
  }
  return hash;
}

std::vector<uint8_t> build_synthetic_gguf(const SyntheticModelSpec& spec) {
  return synthetic_model_writer(spec).to_bytes();
}

void write_synthetic_gguf(const SyntheticModelSpec& spec, const std::string& path,
                          const std::function<void(uint64_t, uint64_t)>& progress) {
  synthetic_model_writer(spec).write_file(path, progress);
}

}  // namespace pagedllm
