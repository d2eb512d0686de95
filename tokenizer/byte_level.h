#pragma once
// GPT-2's byte <-> code point map: byte-level BPE vocabularies spell every byte as one
// printable code point, e.g. space 0x20 -> U+0120 "Ġ", LF 0x0A -> U+010A "Ċ".
#include <cstdint>
#include <string>
#include <string_view>

namespace pagedllm::byte_level {

// The code point that stands for `byte`.
uint32_t codepoint_of_byte(uint8_t byte);
// The byte a code point stands for, or -1 when it stands for none.
int byte_of_codepoint(uint32_t codepoint);

// A token's text back to raw bytes. A code point outside the map becomes the marker
// "[UNK_BYTE_0x<hex of its UTF-8 bytes><the whole token text>]", as llama.cpp writes it.
std::string decode_token_text(std::string_view token_text);

}  // namespace pagedllm::byte_level
