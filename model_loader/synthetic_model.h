#pragma once
// Synthetic models: real shapes (Llama-3-8B, Mistral-7B, ...) with random weights, written by GgufWriter in each
// supported architecture's exact layout (tensor names and metadata keys as llama.cpp reads them). A llama model
// gets a minimal SentencePiece-style vocabulary; qwen2 and qwen3 models a Qwen-style byte-level BPE vocabulary
// (synthetic_bpe.h). Complete enough to load and run end to end, in this engine and in llama.cpp, so unit tests,
// golden files and benchmarks can use any shape without downloading anything.
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "model_loader/gguf_writer.h"
#include "tensor/tensor_types.h"

namespace pagedllm {

struct SyntheticModelSpec {
  std::string name = "tiny";
  std::string architecture = "llama";  // "llama", "qwen2" (q/k/v biases) or "qwen3" (per-head q/k RMSNorm)
  int64_t n_vocab = 320;  // llama: at least 259 (<unk>, <s>, </s> and the 256 byte tokens); qwen: the size of the
                          // BPE vocabulary (256 bytes + learned tokens + 5 specials; the training text allows ~950)
  int64_t n_embd = 256;
  int64_t n_layer = 2;
  int64_t n_head = 4;
  int64_t n_head_kv = 2;
  int64_t n_ff = 512;
  int64_t n_ctx = 512;
  int64_t key_length = 0;  // head_dim written as attention.key_length/value_length; 0: n_embd / n_head, not written
  GgmlType weight_type = GgmlType::F32;  // 2-D weights; norms are always F32
  bool tied_embeddings = false;           // no output.weight: the output projection reuses token_embd.weight
  float rope_freq_base = 10000.0f;
  float rms_eps = 1e-5f;
  uint64_t seed = 42;
  float weight_stddev = 0.02f;  // of the 2-D weights (a larger one spreads the logits, so greedy steps are no ties)
  // Norm gains (and the qwen3 q/k norm gains) uniform in [1 - s, 1 + s]; 0: all ones. Biases (qwen2) are
  // N(0, bias_stddev).
  float norm_gain_spread = 0.0f;
  float bias_stddev = 0.5f;

  int64_t head_dim() const { return key_length > 0 ? key_length : n_embd / n_head; }
};

// Presets with the real hyper-parameters: "llama-3-8b", "llama-2-7b", "mistral-7b", "smollm2-135m",
// "tinyllama-1.1b", "llama-3.2-1b", "stories260k", and "tiny", "qwen2-tiny",
// "qwen3-tiny" (a few MB, for unit and golden tests: GQA 4/2, head_dim 64, two layers, random norm gains and
// biases; qwen3-tiny has head_dim * n_head != n_embd, as Qwen3 does). Unknown names are an Error listing the presets. Tensors over 16M elements repeat their first 256 rows (fast to write, the same to
// read for a benchmark).
SyntheticModelSpec synthetic_spec(std::string_view preset);
std::vector<std::string> synthetic_presets();

// Throws pagedllm::Error when the shape is unusable (heads not dividing, vocab too small, ...).
void validate_synthetic_spec(const SyntheticModelSpec& spec);

// The type a 2-D weight of `spec.weight_type` gets when its row length `ne0` is not a multiple of that type's
// block size (e.g. SmolLM2's n_embd 576 with a K-quant), following llama.cpp's quantizer's fallbacks.
GgmlType weight_type_for_row(GgmlType wanted, int64_t ne0);

// The writer holding the whole model; tensor data is generated only when the writer writes, straight into its
// output. Generation is deterministic in `spec.seed` (independent of thread count).
GgufWriter synthetic_model_writer(const SyntheticModelSpec& spec);
// Convenience: the file image in memory (peak memory about the file size).
std::vector<uint8_t> build_synthetic_gguf(const SyntheticModelSpec& spec);
// Streams the model to `path` (peak memory about the largest tensor); the file appears only when complete.
// `progress(bytes_written, total_bytes)` is called after each tensor.
void write_synthetic_gguf(const SyntheticModelSpec& spec, const std::string& path,
                          const std::function<void(uint64_t, uint64_t)>& progress = {});

// The vocabulary written into synthetic models: "<unk>", "<s>", "</s>", "<0x00>".."<0xFF>", "▁", then distinct
// letter pieces ("a", "▁a", ..., "▁ab", ...) up to n_vocab. Every piece's prefixes are themselves pieces, so the
// SPM merge procedure can reach each one.
std::vector<std::string> synthetic_vocab(int64_t n_vocab);

// FNV-1a (64-bit) of a file image: golden files record it for the synthetic model llama.cpp ran, so a test that
// regenerates the model knows it is the same file, byte for byte.
uint64_t fnv1a64(std::span<const uint8_t> bytes);

// Parameter count of the model the spec describes (all tensors, output.weight included unless tied).
int64_t synthetic_parameter_count(const SyntheticModelSpec& spec);

}  // namespace pagedllm
