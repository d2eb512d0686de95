#include "tokenizer/special_tokens.h"

#include <algorithm>

namespace pagedllm {

SpecialTokenSplitter::SpecialTokenSplitter(const Vocabulary& vocab) {
  for (int32_t id = 0; id < vocab.size(); ++id) {
    const TokenType type = vocab.type(id);
    if (type == TokenType::Control || type == TokenType::UserDefined || type == TokenType::Unknown) {
      candidates_.push_back({id, vocab.text(id), type == TokenType::UserDefined});
    }
  }
  std::stable_sort(candidates_.begin(), candidates_.end(), [](const Candidate& a, const Candidate& b) {
    return a.text.size() > b.text.size();
  });
}

std::vector<Fragment> SpecialTokenSplitter::split(std::string_view text, bool parse_special) const {
  std::vector<Fragment> fragments;
  if (text.empty()) return fragments;

  // Claimed occurrences, sorted by position and never overlapping. Instead of re-cutting a fragment list for
  // every candidate (quadratic in the number of fragments), each candidate scans the whole text once and keeps
  // the occurrences that fall in unclaimed text: the same result, linear per candidate.
  std::vector<Fragment> claimed;
  std::vector<Fragment> found;
  for (const Candidate& candidate : candidates_) {
    if (!candidate.always && !parse_special) continue;
    const std::string_view needle = candidate.text;
    if (needle.empty() || needle.size() > text.size()) continue;
    found.clear();
    size_t next_claimed = 0;  // first claimed occurrence that ends after the search position
    size_t position = text.find(needle);
    while (position != std::string_view::npos) {
      const size_t end = position + needle.size();
      while (next_claimed < claimed.size() && claimed[next_claimed].end <= position) ++next_claimed;
      if (next_claimed < claimed.size() && claimed[next_claimed].begin < end) {
        // Overlaps text that a longer candidate claimed: try the next position.
        position = text.find(needle, position + 1);
        continue;
      }
      found.push_back({candidate.id, static_cast<uint32_t>(position), static_cast<uint32_t>(end)});
      position = text.find(needle, end);
    }
    if (found.empty()) continue;
    const size_t old_size = claimed.size();
    claimed.insert(claimed.end(), found.begin(), found.end());
    std::inplace_merge(claimed.begin(), claimed.begin() + static_cast<std::ptrdiff_t>(old_size), claimed.end(),
                       [](const Fragment& a, const Fragment& b) { return a.begin < b.begin; });
  }

  uint32_t position = 0;
  for (const Fragment& token : claimed) {
    if (token.begin > position) fragments.push_back({-1, position, token.begin});
    fragments.push_back(token);
    position = token.end;
  }
  if (position < text.size()) fragments.push_back({-1, position, static_cast<uint32_t>(text.size())});
  return fragments;
}

}  // namespace pagedllm
