#pragma once
// What a Jinja template can reach besides its own syntax: attribute and item access (including the str, list and
// dict methods templates call), iteration and slicing, jinja2's built-in filters and tests, its default globals,
// and JSON serialisation the way Hugging Face's `tojson` does it. All of it behaves as Python/jinja2 would inside
// HF's ImmutableSandboxedEnvironment; the few documented differences are noted where they are implemented.
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "templates/jinja_limits.h"
#include "templates/jinja_value.h"

namespace pagedllm::jinja {

// ------------------------------------------------------------------------------------------------ access

// The values a `for` loop or an iterating filter sees: list/tuple items, dict keys, the characters of a string;
// an Undefined is empty. Anything else is a TemplateError ("'int' object is not iterable").
std::vector<Value> iterate(const Value& iterable);

// `object.name`: an attribute (methods of str/list/dict, namespace and loop attributes) before a dict key.
// What is missing is an Undefined saying so (`d.no_such_key is defined` is False). An Undefined object itself has
// no attributes: as with jinja2's default Undefined, reaching into one throws its reason ("'x' is undefined"), so
// `x.attribute is defined` fails when x is undefined instead of answering False.
Value get_attribute(const Value& object, std::string_view name);
// `object[key]`: a dict key or list/str index before an attribute. Throws only when `object` is an Undefined.
Value get_item(const Value& object, const Value& key);
// `object[start:stop:step]` with Python's slice rules; absent bounds are None. Throws for a zero step, non-integer
// bounds, an Undefined or an unsliceable value.
Value slice(const Value& object, const Value& start, const Value& stop, const Value& step, RenderBudget& budget);

// range, dict, namespace, joiner (jinja2's default globals); an Undefined for any other name.
Value builtin_global(std::string_view name);

// ------------------------------------------------------------------------------------------------ filters, tests

bool has_filter(std::string_view name);
// Throws TemplateError for an unknown filter or bad arguments.
Value apply_filter(std::string_view name, const Value& input, Arguments& arguments, RenderBudget& budget);

bool has_test(std::string_view name);
bool apply_test(std::string_view name, const Value& input, Arguments& arguments, RenderBudget& budget);

// ------------------------------------------------------------------------------------------------ JSON

// Python's json.dumps options as HF's tojson filter exposes them.
struct JsonFormat {
  std::optional<std::string> indent;  // none: one line
  std::optional<std::string> item_separator;  // default ", " (or "," when indenting)
  std::string key_separator = ": ";
  bool sort_keys = false;
  bool ensure_ascii = false;
};
std::string to_json(const Value& value, const JsonFormat& format, RenderBudget& budget);

}  // namespace pagedllm::jinja
