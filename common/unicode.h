#pragma once
// Code point properties and UTF-8 helpers for the tokenizers. Categories come from the tables
// that scripts/gen_unicode_tables.py generates from the Unicode Character Database, so every code point of
// U+0000..U+10FFFF is classified, not only ASCII.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace pagedllm::unicode {

inline constexpr uint32_t kCodepointCount = 0x110000;
inline constexpr uint32_t kReplacementCharacter = 0xFFFD;

// The general category reduced to its first letter (what \p{L}, \p{N}, ... test), with unassigned code points (Cn)
// kept apart. Values are stored in 3 bits of the flag table.
enum class Category : uint8_t {
  Undefined = 0, Number = 1, Letter = 2, Separator = 3, Mark = 4, Punctuation = 5, Symbol = 6, Control = 7,
};

struct CategoryRange {
  uint32_t first;
  uint32_t last;
  Category category;
};

namespace tables {  // common/unicode_tables.cpp (generated)
extern const CategoryRange kCategoryRanges[];
extern const size_t kCategoryRangeCount;
extern const uint32_t kWhiteSpace[];
extern const size_t kWhiteSpaceCount;
}  // namespace tables

// One byte per code point: the Category in bits 0-2, White_Space in bit 3.
class CodepointFlags {
 public:
  static constexpr uint8_t kWhitespaceBit = 0x08;
  constexpr explicit CodepointFlags(uint8_t bits = 0) : bits_(bits) {}
  constexpr Category category() const { return static_cast<Category>(bits_ & 0x07); }
  constexpr bool is_whitespace() const { return (bits_ & kWhitespaceBit) != 0; }
  constexpr bool is_letter() const { return category() == Category::Letter; }
  constexpr bool is_number() const { return category() == Category::Number; }

 private:
  uint8_t bits_;
};

// The flag table, built once on first use: [kCodepointCount] bytes as described for CodepointFlags.
const uint8_t* flag_table();

inline CodepointFlags flags_of(uint32_t codepoint) {
  return CodepointFlags(codepoint < kCodepointCount ? flag_table()[codepoint] : uint8_t{0});
}

// Length of a UTF-8 sequence from its first byte alone, as llama.cpp's tokenizers count it (by the high nibble:
// 0x0-0xB -> 1, 0xC-0xD -> 2, 0xE -> 3, 0xF -> 4). Continuation bytes count as 1.
inline size_t sequence_length(uint8_t lead_byte) {
  static constexpr uint8_t kLengths[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
  return kLengths[lead_byte >> 4];
}

// Decodes UTF-8 the way llama.cpp's pre-tokenizer does: a malformed sequence yields U+FFFD and consumes one byte;
// overlong forms and surrogates are decoded, not rejected. (Values above U+10FFFF, which llama.cpp turns into an
// exception, become U+FFFD here.)
std::vector<uint32_t> decode_utf8(std::string_view text);

// Appends the UTF-8 form of a code point (<= U+10FFFF; surrogates are encoded as three bytes like any value).
void append_utf8(std::string& out, uint32_t codepoint);

// Length of the longest prefix of `bytes` that does not end inside an incomplete multi-byte character: the
// trailing bytes that are the start of a valid sequence still waiting for continuation bytes are excluded.
// Malformed bytes are never held back (no later byte can complete them).
size_t complete_prefix_length(std::string_view bytes);

}  // namespace pagedllm::unicode
