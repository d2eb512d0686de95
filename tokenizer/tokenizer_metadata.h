#pragma once
// Everything a tokenizer is built from, as read from a GGUF file's tokenizer.* keys, before
// any validation. Kept apart from the GGUF reader so that tests and synthetic models can build tokenizers directly.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace pagedllm {

class GgufFile;

struct TokenizerMetadata {
  std::string source;  // where it came from (file path), for messages

  std::string model;                                 // tokenizer.ggml.model: "llama" or "gpt2"
  std::optional<std::string> pre;                    // tokenizer.ggml.pre
  std::vector<std::string> tokens;                   // tokenizer.ggml.tokens: [n_vocab]
  std::optional<std::vector<float>> scores;          // tokenizer.ggml.scores: [n_vocab]
  std::optional<std::vector<int64_t>> token_types;   // tokenizer.ggml.token_type: [n_vocab]
  std::optional<std::vector<std::string>> merges;    // tokenizer.ggml.merges (gpt2 only)

  // A special token id as stored (any integer), with the key it was read from.
  struct StoredId {
    int64_t id = -1;
    std::string key;
  };
  // Out-of-range ids are ignored by the tokenizer: the default stays, with a warning naming the key and the value
  // (as llama.cpp does), except for -1 and its 32-bit unsigned form, which converters write for "no such token".
  std::optional<StoredId> bos_id, eos_id, eot_id, eom_id, unknown_id, separator_id, padding_id;
  std::optional<StoredId> fim_prefix_id, fim_suffix_id, fim_middle_id, fim_pad_id, fim_repo_id, fim_separator_id;

  std::optional<bool> add_bos, add_eos, add_space_prefix;
  std::string chat_template;  // tokenizer.chat_template, "" when absent
};

// Reads the tokenizer keys. Throws pagedllm::Error when a key has the wrong type or tokenizer.ggml.model /
// tokenizer.ggml.tokens is missing; everything else is checked when the tokenizer is built.
TokenizerMetadata read_tokenizer_metadata(const GgufFile& file);

}  // namespace pagedllm
