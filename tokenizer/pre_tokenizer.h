#pragma once
// BPE pre-tokenizers: the regex list and flags that `tokenizer.ggml.pre` selects (llama.cpp's names), and the
// splitter that applies such a list to a text fragment.
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "tokenizer/word_splitter.h"

namespace pagedllm {

struct PreTokenizerSpec {
  std::string_view list_name;                 // e.g. "GPT2", for messages
  std::span<const std::string_view> regexes;  // applied in order
  bool clean_spaces = true;                   // decode post-processing (llama.cpp's clean_spaces)
  bool ignore_merges = false;                 // a piece that is a whole vocabulary token is emitted as is
  bool add_bos = false;                       // default of tokenizer.ggml.add_bos_token
  bool has_bos = true;                        // false: no BOS id by default (chatglm-bpe)
};

// The spec of a tokenizer.ggml.pre value, or nullptr when the name is unknown.
const PreTokenizerSpec* find_pre_tokenizer(std::string_view name);
// Every accepted name, in table order (for the unknown-name error).
std::vector<std::string_view> supported_pre_tokenizer_names();

class PreTokenizer {
 public:
  explicit PreTokenizer(const PreTokenizerSpec& spec);
  ~PreTokenizer();
  PreTokenizer(PreTokenizer&&) noexcept;
  PreTokenizer& operator=(PreTokenizer&&) noexcept;

  const PreTokenizerSpec& spec() const { return *spec_; }
  // Splits the code points of one raw-text fragment into words covering it in order (empty input: no words).
  std::vector<WordSpan> split(std::span<const uint32_t> codepoints) const;

 private:
  const PreTokenizerSpec* spec_;
  std::vector<std::unique_ptr<WordSplitter>> steps_;  // one per regex
};

}  // namespace pagedllm
