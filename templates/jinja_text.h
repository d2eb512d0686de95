#pragma once
// Python's str semantics over UTF-8 bytes, as far as chat templates reach: templates index, slice, strip, split and
// case-map strings the way Python does, by code point, and print floats and strings the way repr() does. Bytes that
// are not valid UTF-8 are carried through unchanged (decoded to U+DC80+byte, Python's "surrogateescape", and
// encoded back to the same byte), so no input is ever altered or rejected merely for being malformed.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pagedllm::jinja::text {

std::u32string decode(std::string_view utf8);
std::string encode(std::u32string_view codepoints);
void append_codepoint(std::string& out, char32_t codepoint);
size_t codepoint_count(std::string_view utf8);
// Byte offset where code point `codepoint_index` starts (the length in bytes when it is past the end).
size_t byte_offset_of(std::string_view utf8, size_t codepoint_index);
// Python's s[index] for one code point (a negative index counts from the end); nullopt when out of range.
std::optional<std::string> codepoint_at(std::string_view utf8, int64_t index);
// Byte offset of the first occurrence of `needle` at or after `from` (npos when none), in time linear in the
// lengths whatever the text (glibc's memmem): std::string::find compares the needle again at every position, so
// one search of a long, repetitive needle could stall a render. rfind_bytes: the last occurrence.
size_t find_bytes(std::string_view haystack, std::string_view needle, size_t from);
size_t rfind_bytes(std::string_view haystack, std::string_view needle);
// The text cut to about `max_bytes` (on a character boundary) with its full length noted, for error messages that
// quote a value.
std::string abbreviate(std::string_view text, size_t max_bytes = 200);
// Code point index of a byte offset that lies on a character boundary.
size_t codepoint_index(std::string_view utf8, size_t byte_offset);

// str.isspace() / the \s of Python's re: ASCII whitespace, \x1c-\x1f and the Unicode space separators.
bool is_space(char32_t c);
bool is_alpha(char32_t c);   // str.isalpha(): a Unicode letter
bool is_digit(char32_t c);   // str.isdigit(), approximated by the Unicode number categories
bool is_word(char32_t c);    // \w of Python's re: letter, number or underscore
bool is_printable(char32_t c);  // str.isprintable() for one character (what repr() leaves unescaped)
// Simple one-to-one case mapping for ASCII, Latin-1, Latin Extended-A, Greek and Cyrillic; other scripts unchanged.
char32_t to_upper(char32_t c);
char32_t to_lower(char32_t c);
bool is_cased(char32_t c);

std::string upper(std::string_view s);       // str.upper()
std::string lower(std::string_view s);       // str.lower()
std::string title(std::string_view s);       // str.title()
std::string capitalize(std::string_view s);  // str.capitalize()
bool is_lower(std::string_view s);           // str.islower()
bool is_upper(std::string_view s);           // str.isupper()

// str.strip / lstrip / rstrip: `chars` absent strips whitespace, present strips any of its code points.
std::string strip(std::string_view s, const std::optional<std::string>& chars, bool left, bool right);
// str.split / str.rsplit: no separator splits on whitespace runs; max_split < 0 means no limit. An empty separator
// is the caller's error to report (Python raises ValueError).
std::vector<std::string> split(std::string_view s, const std::optional<std::string>& separator, int64_t max_split);
std::vector<std::string> rsplit(std::string_view s, const std::optional<std::string>& separator, int64_t max_split);
std::vector<std::string> splitlines(std::string_view s, bool keep_ends);
// str.replace: count < 0 replaces every occurrence; an empty `old` inserts `replacement` between code points.
std::string replace(std::string_view s, std::string_view old, std::string_view replacement, int64_t count);
// str.find / str.rfind / str.count, in code points; -1 when absent.
int64_t find(std::string_view s, std::string_view needle);
int64_t rfind(std::string_view s, std::string_view needle);
int64_t count(std::string_view s, std::string_view needle);
std::string center(std::string_view s, int64_t width, char32_t fill = U' ');

// repr(float) / str(float): the shortest text that reads back to the same double, in Python's layout ("1.0",
// "0.0001", "1e-05", "1e+16", "inf", "nan").
std::string format_float(double value);
// repr(str): quoted with ' (or " when that avoids escaping), non-printable characters escaped.
std::string repr_string(std::string_view s);
// The body of a JSON string as Python's json.dumps writes it (without the quotes).
void append_json_string(std::string& out, std::string_view s, bool ensure_ascii);

// Python's int(text, base) and float(text); nullopt where Python raises ValueError (or the value overflows int64).
std::optional<int64_t> parse_int(std::string_view text, int base);
std::optional<double> parse_float(std::string_view text);

}  // namespace pagedllm::jinja::text
