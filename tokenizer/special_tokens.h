#pragma once
// The first step of every encode: cut special tokens out of the raw text before the model's
// own tokenizer sees it.
#include <cstdint>
#include <string_view>
#include <vector>

#include "tokenizer/vocabulary.h"

namespace pagedllm {

// A piece of the input: a special token (token >= 0) or raw text bytes [begin, end) (token == -1).
struct Fragment {
  int32_t token = -1;
  uint32_t begin = 0;
  uint32_t end = 0;
};

class SpecialTokenSplitter {
 public:
  // Candidates: every CONTROL, USER_DEFINED and UNKNOWN token, longest text first (equal lengths by id).
  explicit SpecialTokenSplitter(const Vocabulary& vocab);

  // llama.cpp's rule: each candidate in turn (longest first) claims every occurrence, left to right and without
  // overlap, that lies wholly inside text no earlier candidate claimed. CONTROL and UNKNOWN candidates take part
  // only with `parse_special`; USER_DEFINED ones always. Empty text gives no fragment.
  std::vector<Fragment> split(std::string_view text, bool parse_special) const;

 private:
  struct Candidate {
    int32_t id;
    std::string_view text;  // into the vocabulary, which outlives the splitter
    bool always;            // USER_DEFINED: split out even without parse_special
  };
  std::vector<Candidate> candidates_;
};

}  // namespace pagedllm
