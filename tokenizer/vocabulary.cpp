#include "tokenizer/vocabulary.h"

#include <algorithm>
#include <bit>
#include <cstring>

#include "common/error.h"

namespace pagedllm {

uint64_t hash_bytes(std::string_view bytes) {
  const char* data = bytes.data();
  const size_t size = bytes.size();
  uint64_t hash = 0x9E3779B97F4A7C15ull ^ (size * 0xFF51AFD7ED558CCDull);
  size_t i = 0;
  for (; i + 8 <= size; i += 8) {
    uint64_t word;
    std::memcpy(&word, data + i, 8);
    hash = (hash ^ word) * 0xBF58476D1CE4E5B9ull;
    hash ^= hash >> 31;
  }
  uint64_t tail = 0;
  std::memcpy(&tail, data + i, size - i);
  hash = (hash ^ tail) * 0x94D049BB133111EBull;
  hash ^= hash >> 29;
  return hash;
}

std::optional<std::pair<int32_t, int32_t>> TokenIndex::build(const std::vector<std::string>& texts) {
  std::optional<std::pair<int32_t, int32_t>> duplicate;
  const uint64_t capacity = std::bit_ceil(std::max<uint64_t>(16, texts.size() * 2));
  slots_.assign(capacity, -1);
  mask_ = capacity - 1;
  for (size_t id = 0; id < texts.size(); ++id) {
    uint64_t slot = hash_bytes(texts[id]) & mask_;
    while (slots_[slot] >= 0 && texts[slots_[slot]] != texts[id]) slot = (slot + 1) & mask_;
    if (slots_[slot] < 0) {
      slots_[slot] = static_cast<int32_t>(id);
    } else if (!duplicate) {
      duplicate = std::make_pair(slots_[slot], static_cast<int32_t>(id));
    }
  }
  return duplicate;
}

int32_t TokenIndex::find(const std::vector<std::string>& texts, std::string_view text) const {
  if (slots_.empty()) return -1;
  uint64_t slot = hash_bytes(text) & mask_;
  while (true) {
    const int32_t id = slots_[slot];
    if (id < 0) return -1;
    if (texts[id] == text) return id;
    slot = (slot + 1) & mask_;
  }
}

Vocabulary::Vocabulary(std::vector<std::string> texts, std::vector<float> scores, std::vector<TokenType> types)
    : texts_(std::move(texts)), scores_(std::move(scores)), types_(std::move(types)) {
  if (auto duplicate = index_.build(texts_)) {
    // llama.cpp aborts on such a vocabulary; one text must name one token.
    fail("tokenizer.ggml.tokens: tokens {} and {} have the same text '{}'", duplicate->first, duplicate->second,
         texts_[duplicate->first]);
  }
}

}  // namespace pagedllm
