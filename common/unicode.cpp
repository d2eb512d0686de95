#include "common/unicode.h"

#include <memory>

namespace pagedllm::unicode {

const uint8_t* flag_table() {
  // A flat byte per code point (1.1 MB) keeps the pre-tokenizer's inner loops to one load per character.
  static const std::unique_ptr<uint8_t[]> table = [] {
    auto flags = std::make_unique<uint8_t[]>(kCodepointCount);  // [kCodepointCount], zero = Undefined
    for (size_t i = 0; i < tables::kCategoryRangeCount; ++i) {
      const CategoryRange& range = tables::kCategoryRanges[i];
      for (uint32_t cp = range.first; cp <= range.last; ++cp) flags[cp] = static_cast<uint8_t>(range.category);
    }
    for (size_t i = 0; i < tables::kWhiteSpaceCount; ++i) {
      flags[tables::kWhiteSpace[i]] |= CodepointFlags::kWhitespaceBit;
    }
    return flags;
  }();
  return table.get();
}

std::vector<uint32_t> decode_utf8(std::string_view text) {
  std::vector<uint32_t> codepoints;
  codepoints.reserve(text.size());
  const auto* bytes = reinterpret_cast<const uint8_t*>(text.data());
  const size_t size = text.size();
  auto is_continuation = [&](size_t i) { return i < size && (bytes[i] & 0xC0) == 0x80; };
  size_t i = 0;
  while (i < size) {
    const uint8_t lead = bytes[i];
    if (lead < 0x80) {
      codepoints.push_back(lead);
      i += 1;
    } else if ((lead & 0xE0) == 0xC0 && is_continuation(i + 1)) {
      codepoints.push_back((uint32_t(lead & 0x1F) << 6) | (bytes[i + 1] & 0x3F));
      i += 2;
    } else if ((lead & 0xF0) == 0xE0 && is_continuation(i + 1) && is_continuation(i + 2)) {
      codepoints.push_back((uint32_t(lead & 0x0F) << 12) | (uint32_t(bytes[i + 1] & 0x3F) << 6) |
                           (bytes[i + 2] & 0x3F));
      i += 3;
    } else if ((lead & 0xF8) == 0xF0 && is_continuation(i + 1) && is_continuation(i + 2) &&
               is_continuation(i + 3)) {
      const uint32_t cp = (uint32_t(lead & 0x07) << 18) | (uint32_t(bytes[i + 1] & 0x3F) << 12) |
                          (uint32_t(bytes[i + 2] & 0x3F) << 6) | (bytes[i + 3] & 0x3F);
      codepoints.push_back(cp < kCodepointCount ? cp : kReplacementCharacter);
      i += 4;
    } else {
      codepoints.push_back(kReplacementCharacter);
      i += 1;
    }
  }
  return codepoints;
}

void append_utf8(std::string& out, uint32_t codepoint) {
  if (codepoint < 0x80) {
    out.push_back(static_cast<char>(codepoint));
  } else if (codepoint < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (codepoint >> 6)));
    out.push_back(static_cast<char>(0x80 | (codepoint & 0x3F)));
  } else if (codepoint < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (codepoint >> 12)));
    out.push_back(static_cast<char>(0x80 | ((codepoint >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (codepoint & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (codepoint >> 18)));
    out.push_back(static_cast<char>(0x80 | ((codepoint >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((codepoint >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (codepoint & 0x3F)));
  }
}

size_t complete_prefix_length(std::string_view bytes) {
  const auto* data = reinterpret_cast<const uint8_t*>(bytes.data());
  const size_t size = bytes.size();
  // Only the last three bytes can belong to an unfinished character; look back for its lead byte.
  for (size_t back = 1; back <= 3 && back <= size; ++back) {
    const uint8_t byte = data[size - back];
    if ((byte & 0xC0) == 0x80) continue;  // a continuation byte: keep looking for the lead
    size_t needed = 0;
    if ((byte & 0xE0) == 0xC0) needed = 2;
    else if ((byte & 0xF0) == 0xE0) needed = 3;
    else if ((byte & 0xF8) == 0xF0) needed = 4;
    // An ASCII or malformed lead byte, or a character that is already complete: nothing to hold back.
    if (needed == 0 || back >= needed) return size;
    return size - back;
  }
  return size;
}

}  // namespace pagedllm::unicode
