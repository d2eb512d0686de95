#pragma once
// Python's operators on Jinja values: arithmetic (+ - * / // % **, with str/list concatenation and repetition),
// `~`, comparisons (== and ordering, chained by the interpreter), `in`, and the printf-style `%` formatting that
// `"%s" % x` and the `format` filter use. Errors are TemplateErrors worded like Python's TypeError messages; using
// an Undefined in arithmetic fails the way jinja2's default Undefined does ("'x' is undefined").
#include <string>
#include <string_view>

#include "templates/jinja_ast.h"
#include "templates/jinja_limits.h"
#include "templates/jinja_value.h"

namespace pagedllm::jinja {

// Every BinaryOperator except logical_and / logical_or (which short-circuit in the interpreter).
Value binary_operation(BinaryOperator op, const Value& left, const Value& right, RenderBudget& budget);
Value unary_operation(UnaryOperator op, const Value& operand);
bool compare_values(CompareOperator op, const Value& left, const Value& right);
// Python's `item in container`.
bool contains(const Value& container, const Value& item);
// Python's `format % arguments`: a tuple supplies positional values, a dict named ones (%(name)s), anything else
// is the single value.
std::string printf_format(std::string_view format, const Value& arguments, RenderBudget& budget);

// The Undefined's reason ("'x' is undefined") as a runtime TemplateError (jinja2's UndefinedError).
[[noreturn]] void fail_undefined(const Value& undefined);

}  // namespace pagedllm::jinja
