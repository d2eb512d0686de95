#include "tokenizer/spm.h"

#include <algorithm>

#include "common/error.h"
#include "common/unicode.h"
#include "tokenizer/word_cache.h"

namespace pagedllm {

SpmEncoder::SpmEncoder(const Vocabulary& vocab) : vocab_(vocab) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  for (int byte = 0; byte < 256; ++byte) {
    const char name[6] = {'<', '0', 'x', kHex[byte >> 4], kHex[byte & 15], '>'};
    int32_t id = vocab.find(std::string_view(name, 6));
    if (id < 0) {
      const char single = static_cast<char>(byte);
      id = vocab.find(std::string_view(&single, 1));
    }
    byte_tokens_[byte] = id;
  }
  static constexpr std::string_view kSpaceMarker = "\xE2\x96\x81";
  for (int32_t id = 0; id < vocab.size(); ++id) {
    const std::string& text = vocab.text(id);
    for (size_t k = text.find(kSpaceMarker, 1); k != std::string::npos; k = text.find(kSpaceMarker, k + 1)) {
      for (size_t length = 1; length <= 4 && length <= k; ++length) joins_space_marker_.insert(text.substr(k - length, length));
    }
  }
}

std::string SpmEncoder::escape_spaces(std::string_view text, bool add_leading_space) {
  static constexpr std::string_view kSpaceMarker = "\xE2\x96\x81";  // U+2581
  std::string escaped;
  escaped.reserve(text.size() + 16);
  if (add_leading_space) escaped += kSpaceMarker;
  for (char c : text) {
    if (c == ' ') {
      escaped += kSpaceMarker;
    } else {
      escaped += c;
    }
  }
  return escaped;
}

void SpmEncoder::emit_bytes(std::string_view text, std::vector<int32_t>& out) const {
  for (char c : text) {
    const int32_t id = byte_tokens_[static_cast<uint8_t>(c)];
    if (id < 0) {
      fail("the vocabulary has no token for byte 0x{:02X} (neither <0x{:02X}> nor the byte itself), needed to "
           "encode a character it does not contain", static_cast<uint8_t>(c), static_cast<uint8_t>(c));
    }
    out.push_back(id);
  }
}

namespace {

struct Symbol {
  uint32_t begin;  // byte offset in the text
  uint32_t size;   // bytes; 0 once merged into its left neighbour
  int32_t prev;    // index of the previous live symbol, -1 at the start
  int32_t next;    // index of the next live symbol, -1 at the end
};

struct Bigram {
  float score;
  int32_t left;
  int32_t right;
  uint32_t size;  // bytes of left + right when queued; a different sum later means the entry is stale
};

// Highest score first; among equal scores the leftmost pair.
struct BigramOrder {
  bool operator()(const Bigram& a, const Bigram& b) const {
    return a.score < b.score || (a.score == b.score && a.left > b.left);
  }
};

}  // namespace

void SpmEncoder::encode(std::string_view text, std::vector<int32_t>& out) const {
  if (text.empty()) return;
  static constexpr std::string_view kSpaceMarker = "\xE2\x96\x81";
  std::vector<Symbol> symbols;  // [n_characters]
  symbols.reserve(text.size());
  for (size_t offset = 0; offset < text.size();) {
    const size_t size = std::min(unicode::sequence_length(static_cast<uint8_t>(text[offset])), text.size() - offset);
    const auto index = static_cast<int32_t>(symbols.size());
    symbols.push_back({static_cast<uint32_t>(offset), static_cast<uint32_t>(size), index - 1, index + 1});
    offset += size;
  }
  symbols.back().next = -1;
  auto symbol_text = [&](int32_t i) { return text.substr(symbols[i].begin, symbols[i].size); };

  // llama.cpp merges the whole fragment in one priority queue: the highest-scoring adjacent pair anywhere first.
  // Merges only ever join neighbours into vocabulary tokens, so text on the two sides of a boundary that no token
  // spans evolves independently, and merging each side on its own gives the same symbols. Cutting before every
  // "▁" that follows a character no token puts before "▁" keeps each queue word-sized (cache-friendly) instead of
  // one queue over megabytes.
  std::vector<Bigram> queue;  // a heap ordered by BigramOrder, reused for every segment
  auto try_add_bigram = [&](int32_t left, int32_t right) {
    if (left < 0 || right < 0) return;
    // Symbols are contiguous in the text, so the pair's text is one substring.
    const uint32_t size = symbols[left].size + symbols[right].size;
    const int32_t id = vocab_.find(text.substr(symbols[left].begin, size));
    if (id < 0) return;
    queue.push_back({vocab_.score(id), left, right, size});
    std::push_heap(queue.begin(), queue.end(), BigramOrder{});
  };

  WordCache cache;
  const auto n_symbols = static_cast<int32_t>(symbols.size());
  int32_t segment_begin = 0;
  while (segment_begin < n_symbols) {
    int32_t segment_end = segment_begin + 1;
    while (segment_end < n_symbols &&
           !(symbol_text(segment_end) == kSpaceMarker &&
             !joins_space_marker_.contains(std::string(symbol_text(segment_end - 1))))) {
      ++segment_end;
    }
    const std::string_view segment =
        text.substr(symbols[segment_begin].begin,
                    symbols[segment_end - 1].begin + symbols[segment_end - 1].size - symbols[segment_begin].begin);
    if (cache.append_cached(segment, out)) {
      segment_begin = segment_end;
      continue;
    }
    const size_t first_output = out.size();
    symbols[segment_begin].prev = -1;
    symbols[segment_end - 1].next = -1;

    queue.clear();
    for (int32_t i = segment_begin + 1; i < segment_end; ++i) try_add_bigram(i - 1, i);
    while (!queue.empty()) {
      std::pop_heap(queue.begin(), queue.end(), BigramOrder{});
      const Bigram bigram = queue.back();
      queue.pop_back();
      Symbol& left = symbols[bigram.left];
      Symbol& right = symbols[bigram.right];
      if (left.size == 0 || right.size == 0 || left.size + right.size != bigram.size) continue;
      left.size += right.size;
      right.size = 0;
      left.next = right.next;
      if (right.next >= 0) symbols[right.next].prev = bigram.left;
      try_add_bigram(left.prev, bigram.left);
      try_add_bigram(bigram.left, left.next);
    }

    for (int32_t i = segment_begin; i != -1; i = symbols[i].next) {
      const std::string_view piece = symbol_text(i);
      const int32_t id = vocab_.find(piece);
      if (id >= 0) {
        out.push_back(id);
      } else {
        // Only single characters can be missing (every merge makes a vocabulary token): fall back to bytes.
        emit_bytes(piece, out);
      }
    }
    cache.insert(segment, std::span<const int32_t>(out).subspan(first_output));
    segment_begin = segment_end;
  }
}

}  // namespace pagedllm
