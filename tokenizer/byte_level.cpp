#include "tokenizer/byte_level.h"

#include <array>

#include <fmt/format.h>

#include "common/unicode.h"

namespace pagedllm::byte_level {
namespace {

bool is_printable_byte(uint32_t byte) {
  return (byte >= 0x21 && byte <= 0x7E) || (byte >= 0xA1 && byte <= 0xAC) || (byte >= 0xAE && byte <= 0xFF);
}

struct ByteMap {
  std::array<uint32_t, 256> codepoint_of_byte{};
  std::array<int16_t, 0x100 + 68> byte_of_codepoint{};  // [U+0000 .. U+0143]

  ByteMap() {
    byte_of_codepoint.fill(-1);
    uint32_t next_extra = 0x100;  // the 68 non-printable bytes, in increasing order, map to U+0100, U+0101, ...
    for (uint32_t byte = 0; byte < 256; ++byte) {
      const uint32_t codepoint = is_printable_byte(byte) ? byte : next_extra++;
      codepoint_of_byte[byte] = codepoint;
      byte_of_codepoint[codepoint] = static_cast<int16_t>(byte);
    }
  }
};

const ByteMap& byte_map() {
  static const ByteMap map;
  return map;
}

}  // namespace

uint32_t codepoint_of_byte(uint8_t byte) { return byte_map().codepoint_of_byte[byte]; }

int byte_of_codepoint(uint32_t codepoint) {
  const auto& table = byte_map().byte_of_codepoint;
  return codepoint < table.size() ? table[codepoint] : -1;
}

std::string decode_token_text(std::string_view token_text) {
  std::string bytes;
  bytes.reserve(token_text.size());
  for (uint32_t codepoint : unicode::decode_utf8(token_text)) {
    const int byte = byte_of_codepoint(codepoint);
    if (byte >= 0) {
      bytes.push_back(static_cast<char>(byte));
      continue;
    }
    std::string utf8;
    unicode::append_utf8(utf8, codepoint);
    bytes += "[UNK_BYTE_0x";
    for (char c : utf8) bytes += fmt::format("{:02x}", static_cast<uint8_t>(c));
    bytes += token_text;
    bytes += ']';
  }
  return bytes;
}

}  // namespace pagedllm::byte_level
