// Jinja lexer (see jinja_lexer.h). The whitespace rules follow jinja2's lexer exactly, because chat-template output
// must match Python byte for byte:
//  - `{%-`/`{{-`/`{#-` strip all whitespace before the tag; `-%}`/`-}}`/`-#}` strip all whitespace after it;
//  - trim_blocks: a block or comment tag eats the one newline right after it (not with `+%}`);
//  - lstrip_blocks: spaces and tabs between the start of a line and a block or comment tag are dropped (not with
//    `{%+`, never for `{{`); "start of a line" includes the start of the template and the text right after a tag
//    that itself ended with a newline;
//  - newlines are normalised to \n and one trailing newline of the template is dropped.
#include "templates/jinja_lexer.h"

#include <algorithm>
#include <charconv>

#include "templates/jinja_error.h"
#include "templates/jinja_text.h"

namespace pagedllm::jinja {
namespace {

bool is_tag_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }
bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_name_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool is_name_char(char c) { return is_name_start(c) || is_digit(c); }

// Everything from `from` on is Python whitespace (and there is at least one character).
bool all_python_space(std::string_view s) {
  if (s.empty()) return false;
  std::u32string codepoints = text::decode(s);
  return std::all_of(codepoints.begin(), codepoints.end(), [](char32_t c) { return text::is_space(c); });
}

std::string rstrip_python_space(std::string_view s) { return text::strip(s, std::nullopt, false, true); }

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool is_hex_digit(char c) { return hex_value(c) >= 0; }
bool is_octal_digit(char c) { return c >= '0' && c <= '7'; }
bool is_binary_digit(char c) { return c == '0' || c == '1'; }

class Lexer {
 public:
  explicit Lexer(std::string_view source) {
    source_.reserve(source.size());
    for (size_t i = 0; i < source.size(); ++i) {
      if (source[i] == '\r') {
        source_.push_back('\n');
        if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
      } else {
        source_.push_back(source[i]);
      }
    }
    if (!source_.empty() && source_.back() == '\n') source_.pop_back();
    line_starts_.push_back(0);
    for (size_t i = 0; i < source_.size(); ++i) {
      if (source_[i] == '\n') line_starts_.push_back(i + 1);
    }
  }

  std::vector<Token> run() {
    const size_t n = source_.size();
    while (pos_ < n) {
      size_t tag = find_tag_start(pos_);
      if (tag == std::string::npos) {
        emit_text(source_.substr(pos_), pos_);
        pos_ = n;
        break;
      }
      char kind = source_[tag + 1];
      size_t after = tag + 2;
      char sign = 0;
      if (after < n && (source_[after] == '-' || source_[after] == '+')) sign = source_[after++];

      size_t raw_body_start = 0;
      bool raw = kind == '%' && match_raw_begin(after, raw_body_start);

      std::string text = source_.substr(pos_, tag - pos_);
      if (sign == '-') {
        text = rstrip_python_space(text);
      } else if (sign != '+' && kind != '{') {
        text = lstrip_line(std::move(text));
      }
      emit_text(std::move(text), pos_);

      if (raw) {
        lex_raw(tag, raw_body_start);
      } else if (kind == '#') {
        lex_comment(tag, after);
      } else {
        lex_tag(tag, after, kind == '%');
      }
    }
    Token end;
    end.kind = TokenKind::end;
    set_position(end, source_.size());
    tokens_.push_back(std::move(end));
    return std::move(tokens_);
  }

 private:
  [[noreturn]] void fail_at(size_t offset, const std::string& message) const {
    auto [line, column] = position(offset);
    throw TemplateError(TemplateError::Kind::syntax, message, line, column);
  }

  std::pair<int, int> position(size_t offset) const {
    auto next_line = std::upper_bound(line_starts_.begin(), line_starts_.end(), offset);
    size_t line_index = static_cast<size_t>(next_line - line_starts_.begin()) - 1;
    return {static_cast<int>(line_index) + 1, static_cast<int>(offset - line_starts_[line_index]) + 1};
  }

  void set_position(Token& token, size_t offset) const {
    auto [line, column] = position(offset);
    token.line = line;
    token.column = column;
  }

  size_t find_tag_start(size_t from) const {
    for (size_t i = source_.find('{', from); i != std::string::npos; i = source_.find('{', i + 1)) {
      if (i + 1 < source_.size() && (source_[i + 1] == '{' || source_[i + 1] == '%' || source_[i + 1] == '#')) {
        return i;
      }
    }
    return std::string::npos;
  }

  bool starts_with(size_t at, std::string_view what) const {
    return source_.compare(at, what.size(), what) == 0;
  }

  // lstrip_blocks: drop the whitespace between the last line start and the tag.
  std::string lstrip_line(std::string text) const {
    size_t newline = text.rfind('\n');
    size_t line_start = newline == std::string::npos ? 0 : newline + 1;
    if ((line_start > 0 || line_starting_) && all_python_space(std::string_view(text).substr(line_start))) {
      text.resize(line_start);
    }
    return text;
  }

  void emit_text(std::string text, size_t offset) {
    if (text.empty()) return;
    Token token;
    token.kind = TokenKind::text;
    token.text = std::move(text);
    set_position(token, offset);
    tokens_.push_back(std::move(token));
  }

  void emit(TokenKind kind, size_t offset, std::string spelling = {}) {
    Token token;
    token.kind = kind;
    token.text = std::move(spelling);
    set_position(token, offset);
    tokens_.push_back(std::move(token));
  }

  size_t skip_python_space(size_t at) const {
    while (at < source_.size()) {
      unsigned char c = static_cast<unsigned char>(source_[at]);
      if (c < 0x80) {
        if (!text::is_space(c)) break;
        ++at;
        continue;
      }
      // One multi-byte character: decode it to ask whether it is a Unicode space.
      size_t length = (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 1;
      std::u32string decoded = text::decode(std::string_view(source_).substr(at, length));
      if (decoded.size() != 1 || !text::is_space(decoded[0])) break;
      at += length;
    }
    return at;
  }

  // `{% raw %}` (after the sign): sets `body_start` past the tag.
  bool match_raw_begin(size_t at, size_t& body_start) const {
    while (at < source_.size() && is_tag_space(source_[at])) ++at;
    if (!starts_with(at, "raw")) return false;
    at += 3;
    if (at < source_.size() && is_name_char(source_[at])) return false;  // e.g. {% rawness %}
    while (at < source_.size() && is_tag_space(source_[at])) ++at;
    if (starts_with(at, "-%}")) {
      body_start = skip_python_space(at + 3);
      return true;
    }
    if (starts_with(at, "%}")) {
      body_start = at + 2;  // jinja2 does not apply trim_blocks to the raw tag itself
      return true;
    }
    return false;
  }

  void lex_raw(size_t tag, size_t body_start) {
    line_starting_ = body_start > 0 && source_[body_start - 1] == '\n';
    for (size_t at = find_tag_start(body_start); at != std::string::npos; at = find_tag_start(at + 1)) {
      if (source_[at + 1] != '%') continue;
      size_t cursor = at + 2;
      char sign = 0;
      if (cursor < source_.size() && (source_[cursor] == '-' || source_[cursor] == '+')) sign = source_[cursor++];
      while (cursor < source_.size() && is_tag_space(source_[cursor])) ++cursor;
      if (!starts_with(cursor, "endraw")) continue;
      cursor += 6;
      while (cursor < source_.size() && is_tag_space(source_[cursor])) ++cursor;
      size_t end = 0;
      if (starts_with(cursor, "+%}")) end = cursor + 3;
      else if (starts_with(cursor, "-%}")) end = skip_python_space(cursor + 3);
      else if (starts_with(cursor, "%}")) end = cursor + 2 + (starts_with(cursor + 2, "\n") ? 1 : 0);
      else continue;
      std::string body = source_.substr(body_start, at - body_start);
      if (sign == '-') body = rstrip_python_space(body);
      else if (sign != '+') body = lstrip_line(std::move(body));
      emit_text(std::move(body), body_start);
      pos_ = end;
      line_starting_ = source_[end - 1] == '\n';
      return;
    }
    fail_at(tag, "missing end of raw directive ({% endraw %})");
  }

  void lex_comment(size_t tag, size_t content_start) {
    size_t close = source_.find("#}", content_start);
    if (close == std::string::npos) fail_at(tag, "missing end of comment tag (#})");
    size_t end = close + 2;
    if (close > content_start && source_[close - 1] == '-') {
      end = skip_python_space(end);
    } else if (!(close > content_start && source_[close - 1] == '+')) {
      if (starts_with(end, "\n")) ++end;
    }
    pos_ = end;
    line_starting_ = source_[end - 1] == '\n';
  }

  void lex_tag(size_t tag, size_t after, bool is_block) {
    emit(is_block ? TokenKind::block_begin : TokenKind::variable_begin, tag);
    std::vector<std::pair<char, size_t>> open_brackets;  // expected closer, where it opened
    size_t at = after;
    const size_t n = source_.size();
    while (true) {
      while (at < n && is_tag_space(source_[at])) ++at;
      if (at >= n) {
        fail_at(tag, std::string("the ") + (is_block ? "{% tag" : "{{ expression") +
                         " opened here is never closed");
      }
      if (open_brackets.empty()) {
        size_t end = 0;
        if (is_block) {
          if (starts_with(at, "+%}")) end = at + 3;
          else if (starts_with(at, "-%}")) end = skip_python_space(at + 3);
          else if (starts_with(at, "%}")) end = at + 2 + (starts_with(at + 2, "\n") ? 1 : 0);
        } else {
          if (starts_with(at, "-}}")) end = skip_python_space(at + 3);
          else if (starts_with(at, "}}")) end = at + 2;
        }
        if (end != 0) {
          emit(is_block ? TokenKind::block_end : TokenKind::variable_end, at);
          pos_ = end;
          line_starting_ = source_[end - 1] == '\n';
          return;
        }
      }
      at = lex_expression_token(at, open_brackets);
    }
  }

  size_t lex_expression_token(size_t at, std::vector<std::pair<char, size_t>>& open_brackets) {
    char c = source_[at];
    if (c == '\'' || c == '"') return lex_string(at);
    if (is_digit(c)) return lex_number(at);
    if (is_name_start(c)) {
      size_t end = at;
      while (end < source_.size() && is_name_char(source_[end])) ++end;
      emit(TokenKind::name, at, source_.substr(at, end - at));
      return end;
    }
    static constexpr std::string_view kTwoCharOperators[] = {"**", "//", "==", "!=", "<=", ">="};
    for (std::string_view op : kTwoCharOperators) {
      if (starts_with(at, op)) {
        emit(TokenKind::op, at, std::string(op));
        return at + 2;
      }
    }
    static constexpr std::string_view kOneCharOperators = "+-*/%~[](){}<>=.:|,;";
    if (kOneCharOperators.find(c) == std::string_view::npos) {
      if (static_cast<unsigned char>(c) >= 0x80) fail_at(at, "unexpected non-ASCII character in a tag");
      fail_at(at, std::string("unexpected character '") + c + "' in a tag");
    }
    if (c == '(' || c == '[' || c == '{') {
      open_brackets.emplace_back(c == '(' ? ')' : c == '[' ? ']' : '}', at);
    } else if (c == ')' || c == ']' || c == '}') {
      if (open_brackets.empty()) fail_at(at, std::string("unexpected '") + c + "'");
      if (open_brackets.back().first != c) {
        fail_at(at, std::string("unexpected '") + c + "', expected '" + open_brackets.back().first + "'");
      }
      open_brackets.pop_back();
    }
    emit(TokenKind::op, at, std::string(1, c));
    return at + 1;
  }

  size_t lex_string(size_t at) {
    char quote = source_[at];
    size_t end = at + 1;
    while (end < source_.size() && source_[end] != quote) {
      end += source_[end] == '\\' ? 2 : 1;
    }
    if (end >= source_.size()) fail_at(at, "unterminated string literal");
    Token token;
    token.kind = TokenKind::string;
    token.text = unescape(at, std::string_view(source_).substr(at + 1, end - at - 1));
    set_position(token, at);
    tokens_.push_back(std::move(token));
    return end + 1;
  }

  // Python's unicode-escape decoding, which is what jinja2 applies to string literals.
  std::string unescape(size_t offset, std::string_view body) const {
    std::string out;
    out.reserve(body.size());
    for (size_t i = 0; i < body.size(); ++i) {
      if (body[i] != '\\' || i + 1 >= body.size()) {
        out.push_back(body[i]);
        continue;
      }
      char e = body[++i];
      switch (e) {
        case '\n': break;  // line continuation
        case '\\': out.push_back('\\'); break;
        case '\'': out.push_back('\''); break;
        case '"': out.push_back('"'); break;
        case 'a': out.push_back('\a'); break;
        case 'b': out.push_back('\b'); break;
        case 'f': out.push_back('\f'); break;
        case 'n': out.push_back('\n'); break;
        case 'r': out.push_back('\r'); break;
        case 't': out.push_back('\t'); break;
        case 'v': out.push_back('\v'); break;
        case 'x': case 'u': case 'U': {
          size_t digits = e == 'x' ? 2 : e == 'u' ? 4 : 8;
          char32_t value = 0;
          for (size_t k = 0; k < digits; ++k) {
            int h = i + 1 + k < body.size() ? hex_value(body[i + 1 + k]) : -1;
            if (h < 0) fail_at(offset, std::string("truncated \\") + e + " escape in a string literal");
            value = value * 16 + static_cast<char32_t>(h);
          }
          if (value > 0x10FFFF) fail_at(offset, "illegal Unicode character in a string literal escape");
          text::append_codepoint(out, value);
          i += digits;
          break;
        }
        case 'N': fail_at(offset, "\\N{...} escapes are not supported in string literals");
        default:
          if (e >= '0' && e <= '7') {
            char32_t value = static_cast<char32_t>(e - '0');
            for (int k = 0; k < 2 && i + 1 < body.size() && body[i + 1] >= '0' && body[i + 1] <= '7'; ++k) {
              value = value * 8 + static_cast<char32_t>(body[++i] - '0');
            }
            text::append_codepoint(out, value);
          } else {
            out.push_back('\\');  // unknown escapes stay as written
            out.push_back(e);
          }
      }
    }
    return out;
  }

  // digits with single underscores between them, starting at `at`; returns the end, appends digits to `out`.
  size_t scan_digits(size_t at, std::string& out, bool (*is_valid)(char)) const {
    size_t i = at;
    while (i < source_.size()) {
      if (is_valid(source_[i])) {
        out.push_back(source_[i++]);
      } else if (source_[i] == '_' && i > at && i + 1 < source_.size() && is_valid(source_[i + 1])) {
        ++i;
      } else {
        break;
      }
    }
    return i;
  }

  size_t lex_number(size_t at) {
    Token token;
    set_position(token, at);
    std::string digits;
    if (source_[at] == '0' && at + 1 < source_.size()) {
      char prefix = static_cast<char>(source_[at + 1] | 0x20);
      int base = prefix == 'x' ? 16 : prefix == 'o' ? 8 : prefix == 'b' ? 2 : 0;
      if (base != 0) {
        size_t i = at + 2;
        if (i < source_.size() && source_[i] == '_') ++i;
        bool (*valid)(char) = base == 16 ? is_hex_digit : base == 8 ? is_octal_digit : is_binary_digit;
        size_t end = scan_digits(i, digits, valid);
        if (digits.empty()) fail_at(at, "invalid integer literal");
        auto result = std::from_chars(digits.data(), digits.data() + digits.size(), token.integer, base);
        if (result.ec != std::errc()) fail_at(at, "integer literal too large");
        token.kind = TokenKind::integer;
        tokens_.push_back(std::move(token));
        return end;
      }
    }
    size_t end = scan_digits(at, digits, is_digit);
    bool is_float = false;
    if (end + 1 < source_.size() && source_[end] == '.' && is_digit(source_[end + 1])) {
      digits.push_back('.');
      end = scan_digits(end + 1, digits, is_digit);
      is_float = true;
    }
    if (end < source_.size() && (source_[end] == 'e' || source_[end] == 'E')) {
      size_t exponent_at = end + 1;
      std::string exponent = "e";
      if (exponent_at < source_.size() && (source_[exponent_at] == '+' || source_[exponent_at] == '-')) {
        exponent.push_back(source_[exponent_at++]);
      }
      if (exponent_at < source_.size() && is_digit(source_[exponent_at])) {
        end = scan_digits(exponent_at, exponent, is_digit);
        digits += exponent;
        is_float = true;
      }
    }
    if (is_float) {
      std::optional<double> value = text::parse_float(digits);
      if (!value) fail_at(at, "invalid float literal");
      token.kind = TokenKind::floating;
      token.floating = *value;
    } else {
      if (digits.size() > 1 && digits[0] == '0') fail_at(at, "integer literals may not have leading zeros");
      auto result = std::from_chars(digits.data(), digits.data() + digits.size(), token.integer);
      if (result.ec != std::errc()) fail_at(at, "integer literal too large");
      token.kind = TokenKind::integer;
    }
    tokens_.push_back(std::move(token));
    return end;
  }

  std::string source_;
  std::vector<size_t> line_starts_;  // offset of each line's first byte
  size_t pos_ = 0;
  bool line_starting_ = true;  // the previous tag ended with a newline (or nothing precedes)
  std::vector<Token> tokens_;
};

}  // namespace

std::vector<Token> tokenize(std::string_view source) { return Lexer(source).run(); }

}  // namespace pagedllm::jinja
