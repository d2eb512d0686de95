#pragma once
// One step of a BPE pre-tokenizer: re-split every current piece of the text by one regex into its matches and the
// unmatched gaps between them (nothing is dropped). Two regexes have hand-written splitters
// (as in llama.cpp); every other one runs on PCRE2.
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace pagedllm {

// A word: code points [begin, end) of the text being split.
struct WordSpan {
  uint32_t begin = 0;
  uint32_t end = 0;
};

// The text being pre-tokenized, plus the derived forms that the regex splitters run on, each built on first use
// and shared by all steps.
class SplitInput {
 public:
  explicit SplitInput(std::span<const uint32_t> codepoints) : codepoints_(codepoints) {}

  std::span<const uint32_t> codepoints() const { return codepoints_; }

  // One byte per code point, as llama.cpp collapses text for a regex with \p{..} classes: ASCII stays itself,
  // non-ASCII whitespace becomes 0x0B, other non-ASCII code points a byte per category class (0xD1 number,
  // 0xD2 letter, 0xD3 punctuation, 0xD4 mark, 0xD5 symbol, 0xD0 anything else).
  const std::string& collapsed();

  // UTF-8 for a regex without \p{..}: like the text, but non-ASCII whitespace becomes 0x0B (llama.cpp's wregex
  // path, whose \s is ASCII-only) and surrogates U+FFFD (so that PCRE2 accepts the subject).
  const std::string& utf8();
  // Byte offset in utf8() of each code point, plus the total: [n_codepoints + 1].
  const std::vector<uint32_t>& utf8_offsets();

 private:
  std::span<const uint32_t> codepoints_;
  bool have_collapsed_ = false;
  bool have_utf8_ = false;
  std::string collapsed_;              // [n_codepoints]
  std::string utf8_;                   // [utf8_offsets_.back()]
  std::vector<uint32_t> utf8_offsets_; // [n_codepoints + 1]
};

class WordSplitter {
 public:
  virtual ~WordSplitter() = default;
  // Appends to `out` the re-split of every piece in `pieces` (in order; the output covers the same code points).
  virtual void split(SplitInput& input, std::span<const WordSpan> pieces, std::vector<WordSpan>& out) const = 0;
};

// The hand-written splitters for the GPT-2 regex and the LLAMA3 regex, which llama.cpp also runs by hand
// rather than through a regex engine.
std::unique_ptr<WordSplitter> make_gpt2_splitter();
std::unique_ptr<WordSplitter> make_llama3_splitter();

// Any other regex, on PCRE2 with JIT. A regex that uses \p{N}, \p{L}, \p{P}, \p{M} or \p{S} runs on the collapsed
// text with each class rewritten to its marker byte plus its ASCII members (so it must be pure ASCII); any other
// regex runs on utf8(). Throws pagedllm::Error when the regex does not compile.
std::unique_ptr<WordSplitter> make_regex_splitter(std::string_view regex);

}  // namespace pagedllm
