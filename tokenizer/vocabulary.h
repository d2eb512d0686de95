#pragma once
// The token table of a tokenizer: text, score and type per id, and a fast text -> id index.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pagedllm {

// tokenizer.ggml.token_type values, as llama.cpp numbers them.
enum class TokenType : int32_t {
  Undefined = 0, Normal = 1, Unknown = 2, Control = 3, UserDefined = 4, Unused = 5, Byte = 6,
};

// Open-addressing hash index from token text to id. Lookups take a string_view, so the hot loops of the
// encoders look up substrings of their input without building strings.
class TokenIndex {
 public:
  TokenIndex() = default;
  // Indexes `texts`; a duplicate text keeps its first id and is returned as (first id, duplicate id).
  std::optional<std::pair<int32_t, int32_t>> build(const std::vector<std::string>& texts);
  // `texts` must be the vector the index was built from (passed in, so that the owner stays movable).
  int32_t find(const std::vector<std::string>& texts, std::string_view text) const;  // -1 when absent

 private:
  std::vector<int32_t> slots_;  // [capacity], -1 = empty; capacity is a power of two >= 2 x n_tokens
  uint64_t mask_ = 0;
};

uint64_t hash_bytes(std::string_view bytes);

class Vocabulary {
 public:
  Vocabulary() = default;
  // Sizes must match (the caller has validated them). Throws pagedllm::Error on a duplicate token text.
  Vocabulary(std::vector<std::string> texts, std::vector<float> scores, std::vector<TokenType> types);

  int32_t size() const { return static_cast<int32_t>(texts_.size()); }
  bool contains(int32_t id) const { return id >= 0 && id < size(); }
  const std::string& text(int32_t id) const { return texts_[id]; }
  float score(int32_t id) const { return scores_[id]; }
  TokenType type(int32_t id) const { return types_[id]; }
  void set_type(int32_t id, TokenType type) { types_[id] = type; }
  int32_t find(std::string_view text) const { return index_.find(texts_, text); }  // -1 when absent

 private:
  std::vector<std::string> texts_;  // [n_vocab]
  std::vector<float> scores_;       // [n_vocab]
  std::vector<TokenType> types_;    // [n_vocab]
  TokenIndex index_;
};

}  // namespace pagedllm
