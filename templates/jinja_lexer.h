#pragma once
// Jinja lexer: template source -> text and tag tokens, with the whitespace rules of the environment HF renders chat
// templates in (trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=False) and the per-tag controls `{%-`,
// `-%}`, `{%+`, `+%}` applied here, so that the parser and interpreter never think about whitespace.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace pagedllm::jinja {

enum class TokenKind {
  text,            // template data, already trimmed
  variable_begin,  // {{
  variable_end,    // }}
  block_begin,     // {%
  block_end,       // %}
  name,            // identifier (keywords are names too; the parser tells them apart)
  string,          // literal, escapes already resolved
  integer,
  floating,
  op,              // operator or punctuation: + - * / // % ** ~ == != < <= > >= = . : | , ( ) [ ] { }
  end,             // end of the template
};

struct Token {
  TokenKind kind = TokenKind::end;
  std::string text;  // text data, name, string value or operator spelling
  int64_t integer = 0;
  double floating = 0.0;
  int line = 1;
  int column = 1;
};

// Throws TemplateError (syntax) for an unterminated tag, comment or string, or an unknown character in a tag.
std::vector<Token> tokenize(std::string_view source);

}  // namespace pagedllm::jinja
