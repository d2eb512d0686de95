#pragma once
// SentencePiece-style BPE driven by token scores, with byte fallback (tokenizer.ggml.model "llama").
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "tokenizer/vocabulary.h"

namespace pagedllm {

class SpmEncoder {
 public:
  // Keeps a reference to `vocab`, which must outlive the encoder.
  explicit SpmEncoder(const Vocabulary& vocab);

  // Encodes one raw-text fragment whose spaces are already escaped to U+2581 (see escape_spaces), appending ids.
  void encode(std::string_view escaped_text, std::vector<int32_t>& out) const;

  // Replaces every ASCII space with U+2581 "▁" (no other normalization), after an optional leading space.
  static std::string escape_spaces(std::string_view text, bool add_leading_space);

 private:
  void emit_bytes(std::string_view text, std::vector<int32_t>& out) const;

  const Vocabulary& vocab_;
  std::array<int32_t, 256> byte_tokens_;  // <0xNN> token, else the one-byte token, else -1
  // Every 1-4 byte string that some token has right before a "▁" (in SentencePiece vocabularies usually only
  // "▁" itself, from tokens like "▁▁▁▁"). A symbol boundary "X|▁" with X not in this set can never be merged
  // across, which lets the encoder merge word by word (see encode()).
  std::unordered_set<std::string> joins_space_marker_;
};

}  // namespace pagedllm
