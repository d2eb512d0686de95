#include "tokenizer/bpe.h"

#include <bit>
#include <climits>
#include <cstring>
#include <queue>

#include "tokenizer/byte_level.h"
#include "common/unicode.h"
#include "tokenizer/word_cache.h"

namespace pagedllm {
namespace {

uint64_t pair_key(int32_t left, int32_t right) {
  return (uint64_t(uint32_t(left)) << 32) | uint32_t(right);
}

uint64_t mix(uint64_t key) {
  key ^= key >> 33;
  key *= 0xFF51AFD7ED558CCDull;
  key ^= key >> 33;
  return key;
}

std::string text_pair_key(std::string_view left, std::string_view right) {
  const auto left_size = static_cast<uint32_t>(left.size());
  std::string key(sizeof(left_size), '\0');
  std::memcpy(key.data(), &left_size, sizeof(left_size));
  key += left;
  key += right;
  return key;
}

// Words up to this many bytes merge by scanning their pairs for the best one (cheap for the short words that
// dominate text); longer ones use a priority queue so that a 1 MB word stays O(n log n). Both pick the same merge:
// the lowest rank, then the leftmost pair.
constexpr size_t kScanLimit = 128;

}  // namespace

void BpeMergeTable::build(const Vocabulary& vocab, const std::vector<std::string>& merges) {
  const uint64_t capacity = std::bit_ceil(std::max<uint64_t>(16, merges.size() * 2));
  keys_.assign(capacity, kEmptyKey);
  values_.assign(capacity, Merge{});
  mask_ = capacity - 1;
  n_merges_ = merges.size();
  problems_ = Problems{};
  std::string merged;
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const std::string& entry = merges[rank];
    const size_t space = entry.size() > 1 ? entry.find(' ', 1) : std::string::npos;
    const std::string_view right =
        space == std::string::npos ? std::string_view() : std::string_view(entry).substr(space + 1);
    if (space == std::string::npos || right.empty() || right.find(' ') != std::string_view::npos) {
      if (problems_.malformed++ == 0) problems_.first_malformed = rank;
      continue;
    }
    const std::string_view left = std::string_view(entry).substr(0, space);
    merged.assign(left);
    merged += right;
    const Merge merge{static_cast<int32_t>(rank), vocab.find(merged)};
    const int32_t left_id = vocab.find(left);
    const int32_t right_id = vocab.find(right);
    if (left_id < 0 || right_id < 0) {
      if (problems_.unknown_side++ == 0) problems_.first_unknown_side = rank;
      text_ranks_.emplace(text_pair_key(left, right), merge.rank);
      continue;
    }
    const uint64_t key = pair_key(left_id, right_id);
    uint64_t slot = mix(key) & mask_;
    while (keys_[slot] != kEmptyKey && keys_[slot] != key) slot = (slot + 1) & mask_;
    if (keys_[slot] == kEmptyKey) {
      keys_[slot] = key;
      values_[slot] = merge;
    }
  }
}

std::optional<BpeMergeTable::Merge> BpeMergeTable::find(int32_t left_id, int32_t right_id) const {
  const uint64_t key = pair_key(left_id, right_id);
  uint64_t slot = mix(key) & mask_;
  while (true) {
    if (keys_[slot] == key) return values_[slot];
    if (keys_[slot] == kEmptyKey) return std::nullopt;
    slot = (slot + 1) & mask_;
  }
}

std::optional<BpeMergeTable::Merge> BpeMergeTable::find_text(const Vocabulary& vocab, std::string_view left,
                                                             std::string_view right) const {
  const auto it = text_ranks_.find(text_pair_key(left, right));
  if (it == text_ranks_.end()) return std::nullopt;
  std::string merged(left);
  merged += right;
  return Merge{it->second, vocab.find(merged)};
}

BpeEncoder::BpeEncoder(const Vocabulary& vocab, const std::vector<std::string>& merges,
                       const PreTokenizerSpec& pre)
    : vocab_(vocab), pre_tokenizer_(pre), ignore_merges_(pre.ignore_merges) {
  merges_.build(vocab, merges);
  for (int byte = 0; byte < 256; ++byte) {
    byte_chars_[byte].clear();
    unicode::append_utf8(byte_chars_[byte], byte_level::codepoint_of_byte(static_cast<uint8_t>(byte)));
    byte_char_tokens_[byte] = vocab.find(byte_chars_[byte]);
  }
}

bool BpeEncoder::find_merge(const Scratch& scratch, int32_t left, int32_t right, BpeMergeTable::Merge& merge) const {
  const Symbol& a = scratch.symbols[left];
  const Symbol& b = scratch.symbols[right];
  std::optional<BpeMergeTable::Merge> found;
  if (a.id >= 0 && b.id >= 0) {
    found = merges_.find(a.id, b.id);
  } else if (merges_.has_text_merges()) {
    const std::string_view mapped = scratch.mapped;
    found = merges_.find_text(vocab_, mapped.substr(a.begin, a.size), mapped.substr(b.begin, b.size));
  }
  if (!found) return false;
  merge = *found;
  return true;
}

void BpeEncoder::merge_by_scanning(Scratch& scratch) const {
  std::vector<Symbol>& symbols = scratch.symbols;
  // pair_rank[i]: rank of merging symbol i with its next symbol (INT_MAX: not mergeable).
  int32_t pair_rank[kScanLimit];
  int32_t pair_result[kScanLimit];
  BpeMergeTable::Merge merge;
  auto update_pair = [&](int32_t i) {
    if (i < 0) return;
    const int32_t next = symbols[i].next;
    if (next >= 0 && find_merge(scratch, i, next, merge)) {
      pair_rank[i] = merge.rank;
      pair_result[i] = merge.result;
    } else {
      pair_rank[i] = INT_MAX;
    }
  };
  for (int32_t i = 0; i < static_cast<int32_t>(symbols.size()); ++i) update_pair(i);
  while (true) {
    int32_t best = -1;
    int32_t best_rank = INT_MAX;
    for (int32_t i = 0; i >= 0; i = symbols[i].next) {
      if (pair_rank[i] < best_rank) {
        best_rank = pair_rank[i];
        best = i;
      }
    }
    if (best < 0) break;
    Symbol& left = symbols[best];
    Symbol& right = symbols[left.next];
    left.size += right.size;
    left.id = pair_result[best];
    right.size = 0;
    left.next = right.next;
    if (left.next >= 0) symbols[left.next].prev = best;
    update_pair(left.prev);
    update_pair(best);
  }
}

void BpeEncoder::merge_with_queue(Scratch& scratch) const {
  std::vector<Symbol>& symbols = scratch.symbols;
  struct Candidate {
    int32_t rank;
    int32_t left;
    int32_t right;
    uint32_t size;   // bytes of left + right when queued; a different sum later means the entry is stale
    int32_t result;
  };
  // Lowest rank first; among equal ranks the leftmost pair.
  auto order = [](const Candidate& a, const Candidate& b) {
    return a.rank > b.rank || (a.rank == b.rank && a.left > b.left);
  };
  std::priority_queue<Candidate, std::vector<Candidate>, decltype(order)> queue(order);
  BpeMergeTable::Merge merge;
  auto add_pair = [&](int32_t left, int32_t right) {
    if (left < 0 || right < 0) return;
    if (!find_merge(scratch, left, right, merge)) return;
    queue.push({merge.rank, left, right, symbols[left].size + symbols[right].size, merge.result});
  };
  for (int32_t i = 1; i < static_cast<int32_t>(symbols.size()); ++i) add_pair(i - 1, i);
  while (!queue.empty()) {
    const Candidate candidate = queue.top();
    queue.pop();
    Symbol& left = symbols[candidate.left];
    Symbol& right = symbols[candidate.right];
    if (left.size == 0 || right.size == 0 || left.size + right.size != candidate.size) continue;
    left.size += right.size;
    left.id = candidate.result;
    right.size = 0;
    left.next = right.next;
    if (left.next >= 0) symbols[left.next].prev = candidate.left;
    add_pair(left.prev, candidate.left);
    add_pair(candidate.left, left.next);
  }
}

void BpeEncoder::encode_word(Scratch& scratch, std::vector<int32_t>& out) const {
  if (scratch.symbols.empty()) return;
  if (ignore_merges_) {
    const int32_t id = vocab_.find(scratch.mapped);
    if (id >= 0) {
      out.push_back(id);
      return;
    }
  }
  if (scratch.symbols.size() <= kScanLimit) {
    merge_by_scanning(scratch);
  } else {
    merge_with_queue(scratch);
  }
  const std::string_view mapped = scratch.mapped;
  for (int32_t i = 0; i >= 0; i = scratch.symbols[i].next) {
    const Symbol& symbol = scratch.symbols[i];
    if (symbol.id >= 0) {
      out.push_back(symbol.id);
      continue;
    }
    // Not a token (a byte the vocabulary lacks, or a merge result outside it): llama.cpp looks up each byte of
    // the symbol's text as a one-byte token and drops the bytes that have none.
    for (char c : mapped.substr(symbol.begin, symbol.size)) {
      const int32_t id = vocab_.find(std::string_view(&c, 1));
      if (id >= 0) out.push_back(id);
    }
  }
}

void BpeEncoder::encode(std::string_view text, std::vector<int32_t>& out) const {
  const std::vector<uint32_t> codepoints = unicode::decode_utf8(text);  // [n_codepoints]
  const std::vector<WordSpan> words = pre_tokenizer_.split(codepoints);
  Scratch scratch;
  WordCache cache;
  std::string utf8;
  for (const WordSpan& word : words) {
    utf8.clear();
    for (uint32_t i = word.begin; i < word.end; ++i) unicode::append_utf8(utf8, codepoints[i]);
    if (cache.append_cached(utf8, out)) continue;
    const size_t first_output = out.size();
    scratch.mapped.clear();
    scratch.symbols.clear();
    for (char c : utf8) {
      const auto byte = static_cast<uint8_t>(c);
      const auto index = static_cast<int32_t>(scratch.symbols.size());
      scratch.symbols.push_back({static_cast<uint32_t>(scratch.mapped.size()),
                                 static_cast<uint32_t>(byte_chars_[byte].size()), byte_char_tokens_[byte],
                                 index - 1, index + 1});
      scratch.mapped += byte_chars_[byte];
    }
    if (!scratch.symbols.empty()) scratch.symbols.back().next = -1;
    encode_word(scratch, out);
    cache.insert(utf8, std::span<const int32_t>(out).subspan(first_output));
  }
}

}  // namespace pagedllm
