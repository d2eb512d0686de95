#pragma once
// Jinja parser: tokens -> syntax tree, with jinja2's grammar and operator precedence (lowest first):
// `x if c else y`, or, and, not, comparisons and `in` (chained like Python), + -, ~, * / // %, ** (left-assoc, as
// in jinja2), unary - +, then postfix `.attr` `[i]` `[a:b:c]` `(args)` and filters/tests `| f(args)` `is t(args)`.
// Statements: if/elif/else, for (unpacking, `if` filter, else), set (plain, namespace attribute, block), macro,
// call, filter, with, break, continue (the loopcontrols extension). Raw blocks are handled by the lexer.
#include <string_view>

#include "templates/jinja_ast.h"

namespace pagedllm::jinja {

// Throws TemplateError (syntax) with the line and column of the offending token.
Body parse_template(std::string_view source);

}  // namespace pagedllm::jinja
