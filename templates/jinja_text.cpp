// Python str semantics over UTF-8 for the Jinja interpreter (see jinja_text.h).
#include "templates/jinja_text.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>

#include <fmt/format.h>

#include "common/unicode.h"
#include "templates/jinja_limits.h"

namespace pagedllm::jinja::text {
namespace {

// Invalid UTF-8 bytes travel as lone low surrogates (U+DC80..U+DCFF), which valid UTF-8 can never produce.
constexpr char32_t kEscapedByteBase = 0xDC00;

bool is_escaped_byte(char32_t c) { return c >= 0xDC80 && c <= 0xDCFF; }

bool is_line_break(char32_t c) {
  switch (c) {
    case U'\n': case U'\r': case 0x0B: case 0x0C: case 0x1C: case 0x1D: case 0x1E: case 0x85: case 0x2028:
    case 0x2029:
      return true;
    default:
      return false;
  }
}

// Python keeps the digits of a number group apart with single underscores ("1_000"); returns the digits alone, or
// nullopt when an underscore is misplaced or a character is not a digit of `base`.
std::optional<std::string> strip_digit_underscores(std::string_view digits, int base) {
  std::string out;
  bool previous_was_digit = false;
  for (char c : digits) {
    if (c == '_') {
      if (!previous_was_digit) return std::nullopt;
      previous_was_digit = false;
      continue;
    }
    int value = -1;
    if (c >= '0' && c <= '9') value = c - '0';
    else if (c >= 'a' && c <= 'z') value = c - 'a' + 10;
    else if (c >= 'A' && c <= 'Z') value = c - 'A' + 10;
    if (value < 0 || value >= base) return std::nullopt;
    out.push_back(c);
    previous_was_digit = true;
  }
  if (!previous_was_digit) return std::nullopt;  // empty, or ends in '_'
  return out;
}

std::string_view trim_python_space(std::string_view text, std::u32string& storage) {
  storage = decode(text);
  size_t begin = 0;
  size_t end = storage.size();
  while (begin < end && is_space(storage[begin])) ++begin;
  while (end > begin && is_space(storage[end - 1])) --end;
  // Re-encode only when something was trimmed at a non-ASCII boundary; byte offsets of ASCII spaces agree anyway.
  size_t leading_bytes = encode(std::u32string_view(storage).substr(0, begin)).size();
  size_t kept_bytes = encode(std::u32string_view(storage).substr(begin, end - begin)).size();
  return text.substr(leading_bytes, kept_bytes);
}

}  // namespace

namespace {

// One code point at byte `at`: the value (an escaped byte when malformed) and how many bytes it took.
std::pair<char32_t, size_t> decode_one(std::string_view utf8, size_t at) {
  const auto* bytes = reinterpret_cast<const unsigned char*>(utf8.data());
  unsigned char lead = bytes[at];
  if (lead < 0x80) return {lead, 1};
  size_t length = 0;
  char32_t codepoint = 0;
  char32_t minimum = 0;
  if ((lead & 0xE0) == 0xC0) { length = 2; codepoint = lead & 0x1F; minimum = 0x80; }
  else if ((lead & 0xF0) == 0xE0) { length = 3; codepoint = lead & 0x0F; minimum = 0x800; }
  else if ((lead & 0xF8) == 0xF0) { length = 4; codepoint = lead & 0x07; minimum = 0x10000; }
  bool valid = length > 0 && at + length <= utf8.size();
  for (size_t k = 1; valid && k < length; ++k) {
    if ((bytes[at + k] & 0xC0) != 0x80) valid = false;
    else codepoint = (codepoint << 6) | (bytes[at + k] & 0x3F);
  }
  // Overlong forms, surrogates and values past U+10FFFF are malformed, exactly as Python's strict decoder says.
  if (valid && (codepoint < minimum || codepoint > 0x10FFFF || (codepoint >= 0xD800 && codepoint <= 0xDFFF))) {
    valid = false;
  }
  if (!valid) return {kEscapedByteBase + lead, 1};
  return {codepoint, length};
}

}  // namespace

std::u32string decode(std::string_view utf8) {
  charge_render_work(utf8.size());
  std::u32string out;
  out.reserve(utf8.size());
  for (size_t i = 0; i < utf8.size();) {
    auto [codepoint, length] = decode_one(utf8, i);
    out.push_back(codepoint);
    i += length;
  }
  return out;
}

void append_codepoint(std::string& out, char32_t c) {
  if (is_escaped_byte(c)) {
    out.push_back(static_cast<char>(c - kEscapedByteBase));
  } else if (c < 0x80) {
    out.push_back(static_cast<char>(c));
  } else if (c < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (c >> 6)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else if (c < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (c >> 12)));
    out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (c >> 18)));
    out.push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  }
}

std::string encode(std::u32string_view codepoints) {
  charge_render_work(codepoints.size());
  std::string out;
  out.reserve(codepoints.size());
  for (char32_t c : codepoints) append_codepoint(out, c);
  return out;
}

size_t codepoint_count(std::string_view utf8) {
  charge_render_work(utf8.size());
  size_t count = 0;
  for (size_t i = 0; i < utf8.size(); ++count) {
    // The same steps as decode(), without building the code points: `len(content)` on a long message stays cheap.
    i += static_cast<unsigned char>(utf8[i]) < 0x80 ? 1 : decode_one(utf8, i).second;
  }
  return count;
}

size_t byte_offset_of(std::string_view utf8, size_t codepoint_index) {
  charge_render_work(utf8.size());
  size_t i = 0;
  for (size_t position = 0; position < codepoint_index && i < utf8.size(); ++position) {
    i += static_cast<unsigned char>(utf8[i]) < 0x80 ? 1 : decode_one(utf8, i).second;
  }
  return i;
}

std::optional<std::string> codepoint_at(std::string_view utf8, int64_t index) {
  if (index < 0) index += static_cast<int64_t>(codepoint_count(utf8));
  if (index < 0) return std::nullopt;
  charge_render_work(utf8.size());
  int64_t position = 0;
  for (size_t i = 0; i < utf8.size(); ++position) {
    auto [codepoint, length] = decode_one(utf8, i);
    if (position == index) {
      std::string character;
      append_codepoint(character, codepoint);
      return character;
    }
    i += length;
  }
  return std::nullopt;
}

size_t find_bytes(std::string_view haystack, std::string_view needle, size_t from) {
  if (from > haystack.size()) return std::string_view::npos;
  const void* found = ::memmem(haystack.data() + from, haystack.size() - from, needle.data(), needle.size());
  const size_t at = found == nullptr ? std::string_view::npos
                                     : static_cast<size_t>(static_cast<const char*>(found) - haystack.data());
  // What the search read: up to the match (repeated searches along one text cost one pass), or all of it.
  charge_render_work((at == std::string_view::npos ? haystack.size() : at) - from + needle.size());
  return at;
}

size_t rfind_bytes(std::string_view haystack, std::string_view needle) {
  if (needle.size() > haystack.size()) return std::string_view::npos;
  // The last occurrence is the first one in the reversed text: one linear search instead of a backward scan that
  // compares the needle again at every position.
  std::string reversed_haystack(haystack.rbegin(), haystack.rend());
  std::string reversed_needle(needle.rbegin(), needle.rend());
  const size_t found = find_bytes(reversed_haystack, reversed_needle, 0);
  return found == std::string_view::npos ? found : haystack.size() - found - needle.size();
}

std::string abbreviate(std::string_view text, size_t max_bytes) {
  if (text.size() <= max_bytes) return std::string(text);
  size_t cut = max_bytes;
  while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut;  // not inside a character
  return std::string(text.substr(0, cut)) + "... (" + std::to_string(text.size()) + " bytes)";
}

size_t codepoint_index(std::string_view utf8, size_t byte_offset) {
  return codepoint_count(utf8.substr(0, std::min(byte_offset, utf8.size())));
}

bool is_space(char32_t c) {
  if (c < 0x80) return c == ' ' || (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x1F);
  switch (c) {
    case 0x85: case 0xA0: case 0x1680: case 0x2028: case 0x2029: case 0x202F: case 0x205F: case 0x3000:
      return true;
    default:
      return c >= 0x2000 && c <= 0x200A;
  }
}

bool is_alpha(char32_t c) {
  if (c < 0x80) return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
  return !is_escaped_byte(c) && unicode::flags_of(c).is_letter();
}

bool is_digit(char32_t c) {
  if (c < 0x80) return c >= '0' && c <= '9';
  return !is_escaped_byte(c) && unicode::flags_of(c).is_number();
}

bool is_word(char32_t c) { return c == '_' || is_alpha(c) || is_digit(c); }

bool is_printable(char32_t c) {
  if (c < 0x80) return c >= 0x20 && c < 0x7F;
  if (is_escaped_byte(c)) return false;
  switch (unicode::flags_of(c).category()) {
    case unicode::Category::Control:
    case unicode::Category::Undefined:
    case unicode::Category::Separator:
      return false;
    default:
      return true;
  }
}

char32_t to_upper(char32_t c) {
  if (c < 0x80) return (c >= 'a' && c <= 'z') ? c - 32 : c;
  if (c >= 0xE0 && c <= 0xFE && c != 0xF7) return c - 32;
  if (c == 0xFF) return 0x178;
  if ((c >= 0x100 && c <= 0x12F) || (c >= 0x132 && c <= 0x137) || (c >= 0x14A && c <= 0x177)) {
    return (c & 1) ? c - 1 : c;
  }
  if ((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E)) return (c & 1) ? c : c - 1;
  if (c >= 0x3B1 && c <= 0x3C9) return c == 0x3C2 ? char32_t{0x3A3} : c - 32;
  if (c >= 0x430 && c <= 0x44F) return c - 32;
  if (c >= 0x450 && c <= 0x45F) return c - 80;
  return c;
}

char32_t to_lower(char32_t c) {
  if (c < 0x80) return (c >= 'A' && c <= 'Z') ? c + 32 : c;
  if (c >= 0xC0 && c <= 0xDE && c != 0xD7) return c + 32;
  if (c == 0x178) return 0xFF;
  if ((c >= 0x100 && c <= 0x12F) || (c >= 0x132 && c <= 0x137) || (c >= 0x14A && c <= 0x177)) {
    return (c & 1) ? c : c + 1;
  }
  if ((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E)) return (c & 1) ? c + 1 : c;
  if (c >= 0x391 && c <= 0x3A9 && c != 0x3A2) return c + 32;
  if (c >= 0x410 && c <= 0x42F) return c + 32;
  if (c >= 0x400 && c <= 0x40F) return c + 80;
  return c;
}

bool is_cased(char32_t c) { return to_upper(c) != c || to_lower(c) != c || c == 0xDF; }

std::string upper(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char32_t c : decode(s)) {
    if (c == 0xDF) out += "SS";  // German sharp s has no one-character capital in Python's mapping
    else append_codepoint(out, to_upper(c));
  }
  return out;
}

std::string lower(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char32_t c : decode(s)) append_codepoint(out, to_lower(c));
  return out;
}

std::string title(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  bool previous_is_cased = false;
  for (char32_t c : decode(s)) {
    append_codepoint(out, previous_is_cased ? to_lower(c) : to_upper(c));
    previous_is_cased = is_cased(c);
  }
  return out;
}

std::string capitalize(std::string_view s) {
  std::u32string codepoints = decode(s);
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < codepoints.size(); ++i) {
    append_codepoint(out, i == 0 ? to_upper(codepoints[i]) : to_lower(codepoints[i]));
  }
  return out;
}

bool is_lower(std::string_view s) {
  bool any_cased = false;
  for (char32_t c : decode(s)) {
    if (to_lower(c) != c) return false;  // an uppercase letter
    if (is_cased(c)) any_cased = true;
  }
  return any_cased;
}

bool is_upper(std::string_view s) {
  bool any_cased = false;
  for (char32_t c : decode(s)) {
    if (to_upper(c) != c || c == 0xDF) return false;  // a lowercase letter
    if (is_cased(c)) any_cased = true;
  }
  return any_cased;
}

std::string strip(std::string_view s, const std::optional<std::string>& chars, bool left, bool right) {
  // Walks in from both ends without decoding the middle: trimming a long message stays cheap.
  std::u32string strip_set;
  if (chars) {
    strip_set = decode(*chars);
    std::sort(strip_set.begin(), strip_set.end());  // a binary search per character, however long `chars` is
  }
  auto strippable = [&](char32_t c) {
    return chars ? std::binary_search(strip_set.begin(), strip_set.end(), c) : is_space(c);
  };
  size_t begin = 0;
  size_t end = s.size();
  if (left) {
    while (begin < end) {
      auto [codepoint, length] = decode_one(s, begin);
      if (!strippable(codepoint)) break;
      begin += length;
    }
  }
  if (right) {
    while (end > begin) {
      size_t start = end - 1;
      while (start > begin && end - start < 4 && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80) --start;
      auto [codepoint, length] = decode_one(s, start);
      if (start + length != end) {  // the last byte is not the end of a whole character: it stands alone
        start = end - 1;
        codepoint = decode_one(s, start).first;
      }
      if (!strippable(codepoint)) break;
      end = start;
    }
  }
  charge_render_work(end - begin);
  return std::string(s.substr(begin, end - begin));
}

namespace {

// Each part becomes a string value of its own: its memory is counted before it exists, since a million one-byte
// parts cost far more than the bytes they hold.
void add_part(std::vector<std::string>& parts, std::string_view part) {
  charge_render_bytes(part.size() + kStringValueOverhead);
  parts.emplace_back(part);
}

}  // namespace

std::vector<std::string> split(std::string_view s, const std::optional<std::string>& separator, int64_t max_split) {
  std::vector<std::string> parts;
  int64_t remaining = max_split < 0 ? INT64_MAX : max_split;
  if (separator) {
    size_t start = 0;
    while (remaining-- > 0) {
      size_t found = find_bytes(s, *separator, start);
      if (found == std::string_view::npos) break;
      add_part(parts, s.substr(start, found - start));
      start = found + separator->size();
    }
    add_part(parts, s.substr(start));
    return parts;
  }
  std::u32string codepoints = decode(s);
  size_t n = codepoints.size();
  size_t i = 0;
  while (remaining-- > 0) {
    while (i < n && is_space(codepoints[i])) ++i;
    if (i == n) break;
    size_t word_start = i;
    while (i < n && !is_space(codepoints[i])) ++i;
    add_part(parts, encode(std::u32string_view(codepoints).substr(word_start, i - word_start)));
  }
  if (i < n) {
    // The split limit was reached: the rest, less its leading whitespace, is the last part.
    while (i < n && is_space(codepoints[i])) ++i;
    if (i != n) add_part(parts, encode(std::u32string_view(codepoints).substr(i)));
  }
  return parts;
}

std::vector<std::string> rsplit(std::string_view s, const std::optional<std::string>& separator, int64_t max_split) {
  std::vector<std::string> parts;
  int64_t remaining = max_split < 0 ? INT64_MAX : max_split;
  if (separator) {
    // Splitting from the right is splitting the reversed text from the left (matches are taken right to left, as
    // Python does, which differs for a separator that overlaps itself), with one linear pass.
    std::string reversed_s(s.rbegin(), s.rend());
    std::string reversed_separator(separator->rbegin(), separator->rend());
    parts = split(reversed_s, reversed_separator, max_split);
    for (std::string& part : parts) std::reverse(part.begin(), part.end());
    std::reverse(parts.begin(), parts.end());
    return parts;
  }
  std::u32string codepoints = decode(s);
  int64_t i = static_cast<int64_t>(codepoints.size()) - 1;
  while (remaining-- > 0) {
    while (i >= 0 && is_space(codepoints[i])) --i;
    if (i < 0) break;
    int64_t word_end = i + 1;
    while (i >= 0 && !is_space(codepoints[i])) --i;
    add_part(parts, encode(std::u32string_view(codepoints).substr(i + 1, word_end - (i + 1))));
  }
  if (i >= 0) {
    while (i >= 0 && is_space(codepoints[i])) --i;
    if (i >= 0) add_part(parts, encode(std::u32string_view(codepoints).substr(0, i + 1)));
  }
  std::reverse(parts.begin(), parts.end());
  return parts;
}

std::vector<std::string> splitlines(std::string_view s, bool keep_ends) {
  std::u32string codepoints = decode(s);
  std::vector<std::string> lines;
  size_t n = codepoints.size();
  size_t line_start = 0;
  size_t i = 0;
  while (i < n) {
    if (!is_line_break(codepoints[i])) {
      ++i;
      continue;
    }
    size_t break_length = (codepoints[i] == U'\r' && i + 1 < n && codepoints[i + 1] == U'\n') ? 2 : 1;
    size_t line_end = keep_ends ? i + break_length : i;
    add_part(lines, encode(std::u32string_view(codepoints).substr(line_start, line_end - line_start)));
    i += break_length;
    line_start = i;
  }
  if (line_start < n) add_part(lines, encode(std::u32string_view(codepoints).substr(line_start)));
  return lines;
}

std::string replace(std::string_view s, std::string_view old, std::string_view replacement, int64_t count) {
  int64_t remaining = count < 0 ? INT64_MAX : count;
  // Every occurrence may grow the text: its size is checked before each piece is added.
  const size_t limit = render_value_limit();
  std::string out;
  auto add = [&](std::string_view piece) {
    if (out.size() + piece.size() > limit) fail_render_value_size(out.size() + piece.size());
    charge_render_work(piece.size());
    out.append(piece);
  };
  if (old.empty()) {
    // Python inserts the replacement before every code point and at the end.
    std::u32string codepoints = decode(s);
    std::string character;
    for (char32_t c : codepoints) {
      if (remaining > 0) {
        add(replacement);
        --remaining;
      }
      character.clear();
      append_codepoint(character, c);
      add(character);
    }
    if (remaining > 0) add(replacement);
    return out;
  }
  size_t start = 0;
  while (remaining > 0) {
    size_t found = find_bytes(s, old, start);
    if (found == std::string_view::npos) break;
    add(s.substr(start, found - start));
    add(replacement);
    start = found + old.size();
    --remaining;
  }
  add(s.substr(start));
  return out;
}

int64_t find(std::string_view s, std::string_view needle) {
  size_t found = find_bytes(s, needle, 0);
  return found == std::string_view::npos ? -1 : static_cast<int64_t>(codepoint_index(s, found));
}

int64_t rfind(std::string_view s, std::string_view needle) {
  size_t found = rfind_bytes(s, needle);
  return found == std::string_view::npos ? -1 : static_cast<int64_t>(codepoint_index(s, found));
}

int64_t count(std::string_view s, std::string_view needle) {
  if (needle.empty()) return static_cast<int64_t>(codepoint_count(s)) + 1;
  int64_t n = 0;
  for (size_t at = find_bytes(s, needle, 0); at != std::string_view::npos;
       at = find_bytes(s, needle, at + needle.size())) {
    ++n;
  }
  return n;
}

std::string center(std::string_view s, int64_t width, char32_t fill) {
  int64_t length = static_cast<int64_t>(codepoint_count(s));
  int64_t margin = width - length;
  if (margin <= 0) return std::string(s);
  // CPython's split of an odd margin: the extra column goes left only when the width is odd too.
  int64_t left = margin / 2 + (margin & width & 1);
  int64_t right = margin - left;
  std::string fill_text;
  append_codepoint(fill_text, fill);
  std::string out;
  for (int64_t i = 0; i < left; ++i) out += fill_text;
  out.append(s);
  for (int64_t i = 0; i < right; ++i) out += fill_text;
  return out;
}

std::string format_float(double value) {
  if (std::isnan(value)) return "nan";
  if (std::isinf(value)) return value < 0 ? "-inf" : "inf";
  char buffer[64];
  // Shortest round-trip digits in scientific form ("-1.2345e+02"); Python lays the same digits out itself.
  auto result = std::to_chars(buffer, buffer + sizeof(buffer), value, std::chars_format::scientific);
  std::string_view scientific(buffer, static_cast<size_t>(result.ptr - buffer));
  bool negative = !scientific.empty() && scientific[0] == '-';
  if (negative) scientific.remove_prefix(1);
  size_t e_at = scientific.find('e');
  std::string digits;
  for (char c : scientific.substr(0, e_at)) {
    if (c != '.') digits.push_back(c);
  }
  int exponent = std::stoi(std::string(scientific.substr(e_at + 1)));
  std::string out = negative ? "-" : "";
  if (exponent >= -4 && exponent < 16) {
    if (exponent >= 0) {
      size_t integer_digits = static_cast<size_t>(exponent) + 1;
      if (digits.size() <= integer_digits) {
        out += digits + std::string(integer_digits - digits.size(), '0') + ".0";
      } else {
        out += digits.substr(0, integer_digits) + "." + digits.substr(integer_digits);
      }
    } else {
      out += "0." + std::string(static_cast<size_t>(-exponent - 1), '0') + digits;
    }
    return out;
  }
  out += digits.substr(0, 1);
  if (digits.size() > 1) {
    out += '.';
    out += digits.substr(1);
  }
  out += fmt::format("e{}{:02d}", exponent < 0 ? '-' : '+', std::abs(exponent));
  return out;
}

std::string repr_string(std::string_view s) {
  bool has_single = s.find('\'') != std::string_view::npos;
  bool has_double = s.find('"') != std::string_view::npos;
  char quote = (has_single && !has_double) ? '"' : '\'';
  std::string out(1, quote);
  // Escapes make the text up to ten times longer than the string: stop at the value limit, not after.
  const size_t limit = render_value_limit();
  for (char32_t c : decode(s)) {
    if (out.size() > limit) fail_render_value_size(out.size());
    if (c == static_cast<char32_t>(quote) || c == U'\\') {
      out.push_back('\\');
      out.push_back(static_cast<char>(c));
    } else if (c == U'\n') {
      out += "\\n";
    } else if (c == U'\r') {
      out += "\\r";
    } else if (c == U'\t') {
      out += "\\t";
    } else if (is_printable(c)) {
      append_codepoint(out, c);
    } else if (c <= 0xFF) {
      out += fmt::format("\\x{:02x}", static_cast<uint32_t>(c));
    } else if (c <= 0xFFFF) {
      out += fmt::format("\\u{:04x}", static_cast<uint32_t>(c));
    } else {
      out += fmt::format("\\U{:08x}", static_cast<uint32_t>(c));
    }
  }
  out.push_back(quote);
  return out;
}

void append_json_string(std::string& out, std::string_view s, bool ensure_ascii) {
  const size_t limit = render_value_limit();
  for (char32_t c : decode(s)) {
    if (out.size() > limit) fail_render_value_size(out.size());
    switch (c) {
      case U'"': out += "\\\""; continue;
      case U'\\': out += "\\\\"; continue;
      case U'\n': out += "\\n"; continue;
      case U'\r': out += "\\r"; continue;
      case U'\t': out += "\\t"; continue;
      case U'\b': out += "\\b"; continue;
      case U'\f': out += "\\f"; continue;
      default: break;
    }
    if (c < 0x20 || (ensure_ascii && c >= 0x7F && !is_escaped_byte(c))) {
      if (c >= 0x10000) {
        char32_t offset = c - 0x10000;
        out += fmt::format("\\u{:04x}\\u{:04x}", 0xD800 + (offset >> 10), 0xDC00 + (offset & 0x3FF));
      } else {
        out += fmt::format("\\u{:04x}", static_cast<uint32_t>(c));
      }
      continue;
    }
    append_codepoint(out, c);
  }
}

std::optional<int64_t> parse_int(std::string_view input, int base) {
  std::u32string storage;
  std::string_view body = trim_python_space(input, storage);
  bool negative = false;
  if (!body.empty() && (body[0] == '+' || body[0] == '-')) {
    negative = body[0] == '-';
    body.remove_prefix(1);
  }
  auto has_prefix = [&](char letter) {
    return body.size() >= 2 && body[0] == '0' && (body[1] == letter || body[1] == letter - 32);
  };
  bool prefixed = false;
  if ((base == 16 || base == 0) && has_prefix('x')) { base = 16; prefixed = true; }
  else if ((base == 8 || base == 0) && has_prefix('o')) { base = 8; prefixed = true; }
  else if ((base == 2 || base == 0) && has_prefix('b')) { base = 2; prefixed = true; }
  if (prefixed) {
    body.remove_prefix(2);
    if (!body.empty() && body[0] == '_') body.remove_prefix(1);  // "0x_ff" is valid Python
  }
  bool base_zero_decimal = base == 0;
  if (base == 0) base = 10;
  if (base < 2 || base > 36) return std::nullopt;
  std::optional<std::string> digits = strip_digit_underscores(body, base);
  if (!digits) return std::nullopt;
  if (base_zero_decimal && digits->size() > 1 && (*digits)[0] == '0' &&
      digits->find_first_not_of('0') != std::string::npos) {
    return std::nullopt;  // int("010", 0) is ambiguous and rejected by Python
  }
  uint64_t magnitude = 0;
  auto [end, error] = std::from_chars(digits->data(), digits->data() + digits->size(), magnitude, base);
  if (error != std::errc() || end != digits->data() + digits->size()) return std::nullopt;
  if (negative) {
    if (magnitude > static_cast<uint64_t>(INT64_MAX) + 1) return std::nullopt;
    return static_cast<int64_t>(0 - magnitude);
  }
  if (magnitude > static_cast<uint64_t>(INT64_MAX)) return std::nullopt;
  return static_cast<int64_t>(magnitude);
}

std::optional<double> parse_float(std::string_view input) {
  std::u32string storage;
  std::string_view body = trim_python_space(input, storage);
  bool negative = false;
  if (!body.empty() && (body[0] == '+' || body[0] == '-')) {
    negative = body[0] == '-';
    body.remove_prefix(1);
  }
  std::string lowered = lower(body);
  double magnitude = 0;
  if (lowered == "inf" || lowered == "infinity") {
    magnitude = HUGE_VAL;
  } else if (lowered == "nan") {
    magnitude = std::nan("");
  } else {
    // [digits][.digits][e[sign]digits], with single underscores allowed between digits.
    std::string cleaned;
    size_t i = 0;
    auto take_digits = [&](bool required) -> bool {
      size_t start = i;
      while (i < body.size() && ((body[i] >= '0' && body[i] <= '9') || body[i] == '_')) ++i;
      if (start == i) return !required;
      std::optional<std::string> digits = strip_digit_underscores(body.substr(start, i - start), 10);
      if (!digits) return false;
      cleaned += *digits;
      return true;
    };
    size_t before_mantissa = i;
    if (!take_digits(false)) return std::nullopt;
    bool has_integer_part = i > before_mantissa;
    bool has_fraction = false;
    if (i < body.size() && body[i] == '.') {
      cleaned.push_back('.');
      ++i;
      size_t before_fraction = i;
      if (!take_digits(false)) return std::nullopt;
      has_fraction = i > before_fraction;
    }
    if (!has_integer_part && !has_fraction) return std::nullopt;
    if (i < body.size() && (body[i] == 'e' || body[i] == 'E')) {
      cleaned.push_back('e');
      ++i;
      if (i < body.size() && (body[i] == '+' || body[i] == '-')) cleaned.push_back(body[i++]);
      if (!take_digits(true)) return std::nullopt;
    }
    if (i != body.size()) return std::nullopt;
    auto [end, error] = std::from_chars(cleaned.data(), cleaned.data() + cleaned.size(), magnitude);
    if (error == std::errc::result_out_of_range) {
      // Python saturates overflow to inf and underflow to 0; from_chars reports both as out of range.
      bool has_negative_exponent = cleaned.find("e-") != std::string::npos;
      magnitude = has_negative_exponent ? 0.0 : HUGE_VAL;
    } else if (error != std::errc() || end != cleaned.data() + cleaned.size()) {
      return std::nullopt;
    }
  }
  return negative ? -magnitude : magnitude;
}

}  // namespace pagedllm::jinja::text
