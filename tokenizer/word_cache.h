#pragma once
// Ids of the words already encoded during one encode() call. Text repeats its words, and a word's tokens depend on
// its bytes alone (BPE words are merged in isolation; SPM words are cut where no merge can cross), so a repeat
// costs one hash lookup instead of a merge loop. The cache lives only as long as the call: nothing is shared
// between threads.
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace pagedllm {

class WordCache {
 public:
  static constexpr size_t kMaxWordBytes = 64;     // longer words are rare and not worth keeping
  static constexpr size_t kMaxEntries = 1 << 17;  // bounds the memory for huge inputs with endless new words

  // Appends the ids of `word` to `out` and returns true when the word was seen before.
  bool append_cached(std::string_view word, std::vector<int32_t>& out) const {
    const auto it = entries_.find(word);
    if (it == entries_.end()) return false;
    out.insert(out.end(), ids_.begin() + it->second.first, ids_.begin() + it->second.first + it->second.second);
    return true;
  }

  void insert(std::string_view word, std::span<const int32_t> ids) {
    if (word.size() > kMaxWordBytes || entries_.size() >= kMaxEntries) return;
    entries_.emplace(std::string(word), std::make_pair(static_cast<uint32_t>(ids_.size()),
                                                       static_cast<uint32_t>(ids.size())));
    ids_.insert(ids_.end(), ids.begin(), ids.end());
  }

 private:
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view text) const { return std::hash<std::string_view>{}(text); }
  };
  std::unordered_map<std::string, std::pair<uint32_t, uint32_t>, Hash, std::equal_to<>> entries_;  // -> ids_ range
  std::vector<int32_t> ids_;  // the cached words' ids, back to back
};

}  // namespace pagedllm
