#pragma once
// Byte-level BPE with ranked merges (tokenizer.ggml.model "gpt2").
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tokenizer/pre_tokenizer.h"
#include "tokenizer/vocabulary.h"

namespace pagedllm {

// tokenizer.ggml.merges as a lookup: (left, right) -> rank (the merge's index; lower merges first) and the token
// the merged text is. Pairs of vocabulary tokens are keyed by their ids; the rare merge whose side is not a token
// is kept by text.
class BpeMergeTable {
 public:
  struct Merge {
    int32_t rank = 0;
    int32_t result = -1;  // id of left+right, -1 when that text is not a token
  };

  // Each entry is "left right", split at the first space at position >= 1 (as llama.cpp splits it). An entry
  // without that space, with an empty right side or with a second space can never apply and is skipped. A repeated
  // pair keeps its first rank.
  void build(const Vocabulary& vocab, const std::vector<std::string>& merges);
  size_t size() const { return n_merges_; }

  // Entries that are not what a tokenizer converter writes, counted with the first of each kind: malformed ones
  // (skipped), and ones whose left or right side is no token (kept, merged by text as llama.cpp does).
  struct Problems {
    size_t malformed = 0;
    size_t first_malformed = 0;
    size_t unknown_side = 0;
    size_t first_unknown_side = 0;
  };
  const Problems& problems() const { return problems_; }
  std::optional<Merge> find(int32_t left_id, int32_t right_id) const;
  std::optional<Merge> find_text(const Vocabulary& vocab, std::string_view left, std::string_view right) const;
  bool has_text_merges() const { return !text_ranks_.empty(); }

 private:
  static constexpr uint64_t kEmptyKey = ~uint64_t{0};
  std::vector<uint64_t> keys_;  // [capacity] (left_id << 32 | right_id), kEmptyKey when free
  std::vector<Merge> values_;   // [capacity]
  uint64_t mask_ = 0;
  size_t n_merges_ = 0;
  Problems problems_;
  std::unordered_map<std::string, int32_t> text_ranks_;  // key: 4-byte length of left, left, right
};

class BpeEncoder {
 public:
  // Keeps a reference to `vocab`, which must outlive the encoder.
  BpeEncoder(const Vocabulary& vocab, const std::vector<std::string>& merges, const PreTokenizerSpec& pre);

  // Encodes one raw-text fragment (special tokens already cut out), appending ids.
  void encode(std::string_view text, std::vector<int32_t>& out) const;

  const PreTokenizer& pre_tokenizer() const { return pre_tokenizer_; }
  const BpeMergeTable& merges() const { return merges_; }

 private:
  struct Symbol {
    uint32_t begin;  // byte offset in the mapped word
    uint32_t size;   // bytes; 0 once merged into its left neighbour
    int32_t id;      // token whose text this symbol is, -1 when none
    int32_t prev;
    int32_t next;
  };
  struct Scratch {
    std::string mapped;            // the word in the byte-level alphabet
    std::vector<Symbol> symbols;   // [n_bytes of the word]
  };

  bool find_merge(const Scratch& scratch, int32_t left, int32_t right, BpeMergeTable::Merge& merge) const;
  void merge_by_scanning(Scratch& scratch) const;
  void merge_with_queue(Scratch& scratch) const;
  void encode_word(Scratch& scratch, std::vector<int32_t>& out) const;

  const Vocabulary& vocab_;
  PreTokenizer pre_tokenizer_;
  bool ignore_merges_;
  BpeMergeTable merges_;
  std::array<std::string, 256> byte_chars_;     // UTF-8 of the code point that spells each byte
  std::array<int32_t, 256> byte_char_tokens_;   // token of that one-character text, -1 when none
};

}  // namespace pagedllm
