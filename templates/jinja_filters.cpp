// jinja2's built-in filters, with Hugging Face's tojson (see jinja_builtins.h). Each follows the Python source of
// jinja2 3.1: the same parameters in the same order, the same defaults and the same corner cases (for example
// `sort` and `unique` ignore case unless told otherwise, `round` rounds half to even like Python's round()).
// Not provided: filesizeformat, groupby, random, urlencode, urlize, wordwrap, xmlattr.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <unordered_map>
#include <unordered_set>

#include "templates/jinja_arguments.h"
#include "templates/jinja_builtins.h"
#include "templates/jinja_error.h"
#include "templates/jinja_operators.h"
#include "templates/jinja_text.h"

namespace pagedllm::jinja {
namespace {

[[noreturn]] void fail_runtime(const std::string& message) {
  throw TemplateError(TemplateError::Kind::runtime, message);
}

using FilterFunction = Value (*)(const Value& input, Arguments& arguments, RenderBudget& budget);

Value string_result(std::string s, RenderBudget& budget) {
  budget.charge_bytes(s.size());
  return Value::string(std::move(s));
}

Value list_result(std::vector<Value> items, RenderBudget& budget) {
  budget.charge_bytes(items.size() * sizeof(Value));
  return Value::list(std::move(items));
}

// jinja2's make_attrgetter: "a.b.0" looks up a, then b, then index 0, each item-first.
Value lookup_attribute_path(const Value& item, const Value& attribute) {
  if (attribute.is_none() || attribute.is_undefined()) return item;
  if (!attribute.is_string()) return get_item(item, attribute);
  Value current = item;
  for (const std::string& part : text::split(attribute.as_string(), std::string("."), -1)) {
    bool is_index = !part.empty() && std::all_of(part.begin(), part.end(), [](char c) { return c >= '0' && c <= '9'; });
    if (!is_index) {
      current = get_item(current, Value::string(part));
      continue;
    }
    // An index too large for 64 bits indexes nothing (std::stoll would throw a foreign exception).
    std::optional<int64_t> index = text::parse_int(part, 10);
    current = index ? get_item(current, Value::integer(*index))
                    : Value::undefined("no element " + text::abbreviate(part) + " (the index is out of range)");
  }
  return current;
}

// A lowered copy of every key lives for the whole sort: counted before it exists.
Value ignore_case(const Value& value) {
  if (!value.is_string()) return value;
  charge_render_bytes(value.as_string().size() + kStringValueOverhead);
  return Value::string(text::lower(value.as_string()));
}

// The sort key of jinja2's sort/min/max/unique: the attribute (or several, comma-separated), case-folded unless
// case_sensitive.
Value sort_key(const Value& item, const Value& attribute, bool case_sensitive, bool multiple_attributes) {
  if (multiple_attributes && attribute.is_string() && attribute.as_string().find(',') != std::string::npos) {
    std::vector<Value> parts;
    for (const std::string& name : text::split(attribute.as_string(), std::string(","), -1)) {
      Value part = lookup_attribute_path(item, Value::string(name));
      parts.push_back(case_sensitive ? part : ignore_case(part));
    }
    return Value::list(std::move(parts));
  }
  Value key = lookup_attribute_path(item, attribute);
  return case_sensitive ? key : ignore_case(key);
}

bool less_than(const Value& a, const Value& b) { return compare_values(CompareOperator::less, a, b); }

std::vector<Value> sorted_by_keys(std::vector<Value> items, const std::vector<Value>& keys, bool reverse) {
  std::vector<size_t> order(items.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  // Python's sorted(reverse=True) is stable too: equal keys keep their input order.
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return reverse ? less_than(keys[b], keys[a]) : less_than(keys[a], keys[b]);
  });
  std::vector<Value> out;
  out.reserve(items.size());
  for (size_t index : order) out.push_back(std::move(items[index]));
  return out;
}

int64_t python_len(const Value& value) {
  switch (value.kind()) {
    case Value::Kind::undefined: return 0;
    case Value::Kind::string: return static_cast<int64_t>(text::codepoint_count(value.as_string()));
    case Value::Kind::list: return static_cast<int64_t>(value.items().size());
    case Value::Kind::dict: return static_cast<int64_t>(value.as_dict().size());
    default: fail_runtime("object of type '" + value.type_name() + "' has no len()");
  }
}

std::string html_escape(std::string_view s, RenderBudget& budget) {
  // An entity is up to five times longer than its character: size the result before building it.
  size_t escaped_size = 0;
  for (char c : s) {
    switch (c) {
      case '&': case '<': case '>': escaped_size += 4 + (c == '&'); break;
      case '"': case '\'': escaped_size += 5; break;
      default: escaped_size += 1;
    }
  }
  budget.charge_bytes(escaped_size);
  std::string out;
  out.reserve(escaped_size);
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&#34;"; break;
      case '\'': out += "&#39;"; break;
      default: out.push_back(c);
    }
  }
  return out;
}

// Python's round(x, ndigits) for a float: correctly rounded, ties to even on the exact binary value.
double python_round(double value, int64_t digits) {
  if (!std::isfinite(value)) return value;
  if (digits == 0) return std::nearbyint(value);
  if (digits > 0) {
    if (digits > 300) return value;
    char buffer[512];
    std::snprintf(buffer, sizeof(buffer), "%.*f", static_cast<int>(digits), value);  // glibc rounds exactly
    return std::strtod(buffer, nullptr);
  }
  if (digits < -308) return std::copysign(0.0, value);
  double scale = std::pow(10.0, static_cast<double>(-digits));
  return std::nearbyint(value / scale) * scale;
}

// ------------------------------------------------------------------------------------------------ the filters

Value filter_abs(const Value& input, Arguments& arguments, RenderBudget&) {
  BoundArguments("abs", arguments, {});
  if (input.kind() == Value::Kind::floating) return Value::floating(std::fabs(input.as_floating()));
  if (input.kind() == Value::Kind::integer || input.kind() == Value::Kind::boolean) {
    int64_t value = input.as_integer();
    if (value == INT64_MIN) fail_runtime("integer overflow in abs");
    return Value::integer(value < 0 ? -value : value);
  }
  fail_runtime("bad operand type for abs(): '" + input.type_name() + "'");
}

Value filter_attr(const Value& input, Arguments& arguments, RenderBudget&) {
  BoundArguments bound("attr", arguments, {"name"});
  std::string name = bound.get(0).str();
  // Only a true attribute, never a dict key: for dicts that leaves their methods.
  if (input.is_dict()) {
    Value attribute = get_attribute(input, name);
    return attribute.is_function() ? attribute
                                   : Value::undefined("'dict object' has no attribute '" + name + "'");
  }
  return get_attribute(input, name);
}

Value filter_batch(const Value& input, Arguments& arguments, RenderBudget& budget) {
  BoundArguments bound("batch", arguments, {"linecount", "fill_with"});
  int64_t line_count = bound.get_integer(0, 0);
  if (line_count <= 0) fail_runtime("batch() needs a positive line count");
  std::vector<Value> rows;
  std::vector<Value> row;
  for (Value& item : iterate(input)) {
    if (static_cast<int64_t>(row.size()) == line_count) {
      budget.charge_bytes(kContainerValueOverhead + row.size() * sizeof(Value));
      rows.push_back(Value::list(std::exchange(row, {})));
    }
    row.push_back(std::move(item));
  }
  if (!row.empty()) {
    if (bound.has(1) && !bound.get(1).is_none()) {
      budget.charge_bytes(static_cast<size_t>(line_count - static_cast<int64_t>(row.size())) * sizeof(Value));
      while (static_cast<int64_t>(row.size()) < line_count) row.push_back(bound.get(1));
    }
    rows.push_back(Value::list(std::move(row)));
  }
  return list_result(std::move(rows), budget);
}

Value filter_capitalize(const Value& input, Arguments& arguments, RenderBudget& budget) {
  BoundArguments("capitalize", arguments, {});
  return string_result(text::capitalize(input.str()), budget);
}

Value filter_center(const Value& input, Arguments& arguments, RenderBudget& budget) {
  BoundArguments bound("center", arguments, {"width"});
  int64_t width = bound.get_integer(0, 80);
  budget.charge_bytes(static_cast<size_t>(std::max<int64_t>(width, 0)));
  return string_result(text::center(input.str(), width), budget);
}

Value filter_length(const Value& input, Arguments& arguments, RenderBudget&) {
  BoundArguments("length", arguments, {});
  return Value::integer(python_len(input));
}

Value filter_default(const Value& input, Arguments& arguments, RenderBudget&) {
  BoundArguments bound("default", arguments, {"default_value", "boolean"});
  if (input.is_undefined() || (bound.get_boolean(1, false) && !input.truthy())) {
    return bound.get_or(0, Value::string(""));
  }
  return input;
}

Value filter_dictsort(const Value& input, Arguments& arguments, RenderBudget& budget) {
  BoundArguments bound("dictsort", arguments, {"case_sensitive", "by", "reverse"});
  if (!input.is_dict()) fail_runtime("dictsort needs a dict, not " + input.type_name());
  std::string by = bound.get_string(1).value_or("key");
  if (by != "key" && by != "value") fail_runtime("You can only sort by either \"key\" or \"value\"");
  bool case_sensitive = bound.get_boolean(0, false);
  budget.charge_bytes(input.as_dict().size() * (3 * sizeof(Value) + kContainerValueOverhead));
  std::vector<Value> pairs;
  std::vector<Value> keys;
  for (const auto& [key, value] : input.as_dict().entries()) {
    pairs.push_back(Value::tuple({key, value}));
    const Value& sort_on = by == "key" ? key : value;
    keys.push_back(case_sensitive ? sort_on : ignore_case(sort_on));
  }
  return list_result(sorted_by_keys(std::move(pairs), keys, bound.get_boolean(2, false)), budget);
}

Value filter_escape(const Value& input, Arguments& arguments, RenderBudget& budget) {
  BoundArguments("escape", arguments, {});
  return Value::string(html_escape(input.str(), budget));
}

Value filter_first(const Value& input, Arguments& arguments, RenderBudget&) {
  BoundArguments("first", arguments, {});
  if (input.is_list()) {
    return input.items().empty() ? Value::undefined("No first item, sequence was empty.") : input.items().front();
  }
  if (input.is_string()) {  // one character, without a value for every other one
    std::optional<std::string> first = text::codepoint_at(input.as_string(), 0);
    return first ? Value::string(std::move(*first)) : Value::undefined("No first item, sequence was empty.");
  }
  std::vector<Value> items = iterate(input);
  return items.empty() ? Value::undefined("No first item, sequence was empty.") : items.front();
}

Value filter_last(const Value& input, Arguments& arguments, RenderBudget&) {
  BoundArguments("last", arguments, {});
  if (input.is_list()) {
    return input.items().empty() ? Value::undefined("No last item, sequence was empty.") : input.items().back();
  }
  if (input.is_string()) {
    std::optional<std::string> last = text::codepoint_at(input.as_string(), -1);
    return last ? Value::string(std::move(*last)) : Value::undefined("No last item, sequence was empty.");
  }
  std::vector<Value> items = iterate(input);
  return items.empty() ? Value::undefined("No last item, sequence was empty.") : items.back();
}

Value filter_float(const Value& input, Arguments& arguments, RenderBudget&) {
  BoundArguments bound("float", arguments, {"default"});
  if (input.is_number()) return Value::floating(input.as_floating());
  if (input.is_string()) {
    if (std::optional<double> value = text::parse_float(input.as_string())) return Value::floating(*value);
  }
  return bound.get_or(0, Value::floating(0.0));
}

Value filter_int(const Value& input, Arguments& arguments, RenderBudget&) {
  BoundArguments bound("int", arguments, {"default", "base"});
  Value fallback = bound.get_or(0, Value::integer(0));
  if (input.kind() == Value::Kind::integer || input.kind() == Value::Kind::boolean) {
    return Value::integer(input.as_integer());
  }
  double number = 0;
  if (input.kind() == Value::Kind::floating) {
    number = input.as_floating();
  } else if (input.is_string()) {
    if (std::optional<int64_t> value = text::parse_int(input.as_string(), static_cast<int>(bound.get_integer(1, 10)))) {
      return Value::integer(*value);
    }
    std::optional<double> parsed = text::parse_float(input.as_string());  // "42.23"|int is 42, as in jinja2
    if (!parsed) return fallback;
    number = *parsed;
  } else {
    return fallback;
  }
  if (!std::isfinite(number) || std::fabs(number) >= 9.2e18) return fallback;
  return Value::integer(static_cast<int64_t>(std::trunc(number)));
}

Value filter_format(const Value& input, Arguments& arguments, RenderBudget& budget) {
  if (!arguments.positional.empty() && !arguments.keyword.empty()) {
    fail_runtime("format can't handle positional and keyword arguments at the same time");
  }
  Value values;
  if (!arguments.keyword.empty()) {
    Dict dict;
    for (const auto& [key, value] : arguments.keyword) dict.set(Value::string(key), value);
    values = Value::dict(std::move(dict));
  } else {
    values = Value::tuple(arguments.positional);
  }
  return Value::string(printf_format(input.str(), values, budget));
}

Value filter_indent(const Value& input, Arguments& arguments, RenderBudget& budget) {
  BoundArguments bound("indent", arguments, {"width", "first", "blank"});
  if (!input.is_string()) fail_runtime("indent needs a string, not " + input.type_name());  // jinja2 fails too
  std::string indentation;
  Value width = bound.get_or(0, Value::integer(4));
  if (width.is_string()) {
    indentation = width.as_string();
  } else {
    int64_t spaces = bound.get_integer(0, 4);
    if (spaces > 4096) fail_runtime("indent width too large");
    indentation.assign(static_cast<size_t>(std::max<int64_t>(spaces, 0)), ' ');
  }
  // jinja2 appends a newline first so that splitlines() keeps a trailing empty line.
  std::vector<std::string> lines = text::splitlines(input.as_string() + "\n", false);
  // Every line may gain the indentation: size the result before building it.
  size_t indented_size = indentation.size();
  for (const std::string& line : lines) indented_size += line.size() + 1 + indentation.size();
  budget.charge_bytes(indented_size);
  std::string out;
  if (bound.get_boolean(2, false)) {
    for (size_t i = 0; i < lines.size(); ++i) {
      if (i > 0) out += "\n" + indentation;
      out += lines[i];
    }
  } else {
    out = lines.empty() ? std::string() : lines[0];
    for (size_t i = 1; i < lines.size(); ++i) {
      out += "\n";
      if (!lines[i].empty()) out += indentation;
      out += lines[i];
    }
  }
  if (bound.get_boolean(1, false)) out = indentation + out;
  return string_result(std::move(out), budget);
}

Value filter_items(const Value& input, Arguments& arguments, RenderBudget& budget) {
  BoundArguments("items", arguments, {});
  if (input.is_undefined()) return Value::list({});
  if (!input.is_dict()) fail_runtime("Can only get item pairs from a mapping.");
  budget.charge_bytes(input.as_dict().size() * (2 * sizeof(Value) + kContainerValueOverhead));
  std::vector<Value> pairs;
  for (const auto& [key, value] : input.as_dict().entries()) pairs.push_back(Value::tuple({key, value}));
  return list_result(std::move(pairs), budget);
}

Value filter_join(const Value& input, Arguments& arguments, RenderBudget& budget) {
  BoundArguments bound("join", arguments, {"d", "attribute"});
  std::string separator = bound.get_string(0).value_or("");
  Value attribute = bound.get_or(1, Value::none());
  std::string out;
  bool first = true;
  for (const Value& item : iterate(input)) {
    Value part = lookup_attribute_path(item, attribute);
    std::string converted = part.is_string() ? std::string() : part.str();
    const std::string& text = part.is_string() ? part.as_string() : converted;
    const size_t added = (first ? 0 : separator.size()) + text.size();
    budget.charge_bytes(added);  // before the bytes exist, and failing as soon as the result is too long
    budget.check_value_size(out.size() + added);
    if (!first) out += separator;
    first = false;
    out += text;
  }
  return Value::string(std::move(out));
}

Value filter_list(const Value& input, Arguments& arguments, RenderBudget& budget) {
  BoundArguments("list", arguments, {});
  return list_result(iterate(input), budget);
}

Value filter_lower(const Value& input, Arguments& arguments, RenderBudget& budget) {
  BoundArguments("lower", arguments, {});
  return string_result(text::lower(input.str()), budget);
}

Value filter_upper(const Value& input, Arguments& arguments, RenderBudget& budget) {
  BoundArguments("upper", arguments, {});
  return string_result(text::upper(input.str()), budget);
}

Value filter_map(const Value& input, Arguments& arguments, RenderBudget& budget) {
  std::vector<Value> out;
  if (!input.truthy()) return Value::list({});  // jinja2 maps nothing over a falsy value, even a non-iterable
  if (arguments.positional.empty()) {
    BoundArguments bound("map", arguments, {"attribute", "default"});
    if (!bound.has(0)) fail_runtime("map requires a filter argument");
    Value fallback = bound.get_or(1, Value::none());
    for (const Value& item : iterate(input)) {
      Value mapped = lookup_attribute_path(item, bound.get(0));
      out.push_back(mapped.is_undefined() && !fallback.is_none() ? fallback : mapped);
    }
    return list_result(std::move(out), budget);
  }
  if (!arguments.positional[0].is_string()) fail_runtime("map expects a filter name");
  std::string filter = arguments.positional[0].as_string();
  Arguments rest;
  rest.positional.assign(arguments.positional.begin() + 1, arguments.positional.end());
  rest.keyword = arguments.keyword;
  for (const Value& item : iterate(input)) {
    Arguments call = rest;
    out.push_back(apply_filter(filter, item, call, budget));
  }
  return list_result(std::move(out), budget);
}

Value min_or_max(const Value& input, Arguments& arguments, RenderBudget&, bool want_max) {
  BoundArguments bound(want_max ? "max" : "min", arguments, {"case_sensitive", "attribute"});
  std::vector<Value> items = iterate(input);
  if (items.empty()) return Value::undefined("No aggregated item, sequence was empty.");
  bool case_sensitive = bound.get_boolean(0, false);
  Value attribute = bound.get_or(1, Value::none());
  size_t best = 0;
  Value best_key = sort_key(items[0], attribute, case_sensitive, false);
  for (size_t i = 1; i < items.size(); ++i) {
    Value key = sort_key(items[i], attribute, case_sensitive, false);
    // Python's max/min keep the first of equal items.
    if (want_max ? less_than(best_key, key) : less_than(key, best_key)) {
      best = i;
      best_key = std::move(key);
    }
  }
  return items[best];
}

Value filter_max(const Value& input, Arguments& arguments, RenderBudget& budget) {
  return min_or_max(input, arguments, budget, true);
}

Value filter_min(const Value& input, Arguments& arguments, RenderBudget& budget) {
  return min_or_max(input, arguments, budget, false);
}

Value filter_pprint(const Value& input, Arguments& arguments, RenderBudget& budget) {
  BoundArguments("pprint", arguments, {});
  return string_result(input.repr(), budget);
}

Value filter_replace(const Value& input, Arguments& arguments, RenderBudget& budget) {
  BoundArguments bound("replace", arguments, {"old", "new", "count"});
  std::string s = input.str();
  std::string old = bound.get(0).str();
  std::string replacement = bound.get(1).str();
  int64_t count = bound.get_integer(2, -1);
  // Bound the result before building it: every occurrence may grow the text.
  if (replacement.size() > old.size()) {
    size_t occurrences = old.empty() ? s.size() + 1 : static_cast<size_t>(text::count(s, old));
    budget.charge_bytes(s.size() + occurrences * (replacement.size() - old.size()));
  }
  return string_result(text::replace(s, old, replacement, count), budget);
}

Value filter_reverse(const Value& input, Arguments& arguments, RenderBudget& budget) {
  BoundArguments("reverse", arguments, {});
  if (input.is_string()) {
    std::u32string chars = text::decode(input.as_string());
    std::reverse(chars.begin(), chars.end());
    return string_result(text::encode(chars), budget);
  }
  std::vector<Value> items = iterate(input);
  std::reverse(items.begin(), items.end());
  return list_result(std::move(items), budget);
}

Value filter_round(const Value& input, Arguments& arguments, RenderBudget&) {
  BoundArguments bound("round", arguments, {"precision", "method"});
  int64_t precision = bound.get_integer(0, 0);
  std::string method = bound.get_string(1).value_or("common");
  if (method != "common" && method != "ceil" && method != "floor") {
    fail_runtime("method must be common, ceil or floor");
  }
  if (!input.is_number()) fail_runtime("type " + input.type_name() + " doesn't define __round__ method");
  if (method == "common") {
    if (input.kind() != Value::Kind::floating) {
      // round(int, n) stays an int in Python; a negative n rounds to tens, hundreds, ... (ties to even).
      int64_t value = input.as_integer();
      if (precision >= 0 || precision < -18) return Value::integer(precision < -18 ? 0 : value);
      int64_t scale = 1;
      for (int64_t i = 0; i < -precision; ++i) scale *= 10;
      int64_t quotient = value / scale;
      int64_t remainder = value % scale;
      if (remainder < 0) {
        quotient -= 1;
        remainder += scale;
      }
      if (remainder * 2 > scale || (remainder * 2 == scale && (quotient & 1))) quotient += 1;
      return Value::integer(quotient * scale);
    }
    return Value::floating(python_round(input.as_floating(), precision));
  }
  double scale = std::pow(10.0, static_cast<double>(precision));
  double scaled = input.as_floating() * scale;
  return Value::floating((method == "ceil" ? std::ceil(scaled) : std::floor(scaled)) / scale);
}

Value filter_safe(const Value& input, Arguments& arguments, RenderBudget&) {
  BoundArguments("safe", arguments, {});
  // Without autoescaping (HF's environment), Markup behaves as the plain string.
  return input.is_string() ? input : Value::string(input.str());
}

Value select_or_reject(const Value& input, Arguments& arguments, RenderBudget& budget, bool keep_matches,
                       bool by_attribute) {
  if (!input.truthy()) return Value::list({});
  size_t offset = 0;
  Value attribute = Value::none();
  if (by_attribute) {
    if (arguments.positional.empty()) fail_runtime("Missing parameter for attribute name");
    attribute = arguments.positional[0];
    offset = 1;
  }
  std::optional<std::string> test;
  Arguments test_arguments;
  if (arguments.positional.size() > offset) {
    test = arguments.positional[offset].str();
    test_arguments.positional.assign(arguments.positional.begin() + static_cast<std::ptrdiff_t>(offset) + 1,
                                     arguments.positional.end());
  }
  test_arguments.keyword = arguments.keyword;
  std::vector<Value> out;
  for (const Value& item : iterate(input)) {
    Value subject = by_attribute ? lookup_attribute_path(item, attribute) : item;
    bool matches;
    if (test) {
      Arguments call = test_arguments;
      matches = apply_test(*test, subject, call, budget);
    } else {
      matches = subject.truthy();
    }
    if (matches == keep_matches) out.push_back(item);
  }
  return list_result(std::move(out), budget);
}

Value filter_select(const Value& input, Arguments& arguments, RenderBudget& budget) {
  return select_or_reject(input, arguments, budget, true, false);
}
Value filter_reject(const Value& input, Arguments& arguments, RenderBudget& budget) {
  return select_or_reject(input, arguments, budget, false, false);
}
Value filter_selectattr(const Value& input, Arguments& arguments, RenderBudget& budget) {
  return select_or_reject(input, arguments, budget, true, true);
}
Value filter_rejectattr(const Value& input, Arguments& arguments, RenderBudget& budget) {
  return select_or_reject(input, arguments, budget, false, true);
}

Value filter_slice(const Value& input, Arguments& arguments, RenderBudget& budget) {
  BoundArguments bound("slice", arguments, {"slices", "fill_with"});
  int64_t slices = bound.get_integer(0, 0);
  if (slices <= 0 || slices > 100000) fail_runtime("slice() needs a positive number of slices");
  std::vector<Value> items = iterate(input);
  int64_t length = static_cast<int64_t>(items.size());
  int64_t per_slice = length / slices;
  int64_t with_extra = length % slices;
  int64_t offset = 0;
  budget.charge_bytes(static_cast<size_t>(slices) * (kContainerValueOverhead + sizeof(Value) * 2) +
                      items.size() * sizeof(Value));
  std::vector<Value> out;
  for (int64_t number = 0; number < slices; ++number) {
    int64_t start = offset + number * per_slice;
    if (number < with_extra) ++offset;
    int64_t end = offset + (number + 1) * per_slice;
    std::vector<Value> part(items.begin() + start, items.begin() + end);
    if (bound.has(1) && !bound.get(1).is_none() && number >= with_extra) part.push_back(bound.get(1));
    out.push_back(Value::list(std::move(part)));
  }
  return list_result(std::move(out), budget);
}

Value filter_sort(const Value& input, Arguments& arguments, RenderBudget& budget) {
  BoundArguments bound("sort", arguments, {"reverse", "case_sensitive", "attribute"});
  std::vector<Value> items = iterate(input);
  bool case_sensitive = bound.get_boolean(1, false);
  Value attribute = bound.get_or(2, Value::none());
  std::vector<Value> keys;
  keys.reserve(items.size());
  for (const Value& item : items) keys.push_back(sort_key(item, attribute, case_sensitive, true));
  budget.charge_steps(static_cast<int64_t>(items.size()) * 20);
  return list_result(sorted_by_keys(std::move(items), keys, bound.get_boolean(0, false)), budget);
}

Value filter_string(const Value& input, Arguments& arguments, RenderBudget& budget) {
  BoundArguments("string", arguments, {});
  return input.is_string() ? input : string_result(input.str(), budget);
}

// markupsafe's striptags loop: while the text has `open` at s and `close` at or after s, cut [s, end of close).
// Each search starts again at the front, but the text kept so far holds no `open` except across the last cut, so
// only its last open.size() - 1 bytes need a second look: one pass instead of moving the rest of the text (and
// searching it again) once per tag.
std::string remove_spans(std::string_view text, std::string_view open, std::string_view close) {
  std::string kept;
  std::string_view rest = text;
  constexpr size_t npos = std::string_view::npos;
  while (true) {
    // Positions below are in the window: the last `tail` bytes of `kept`, then `rest`.
    const size_t tail = std::min(kept.size(), open.size() - 1);
    auto at = [&](size_t i) { return i < tail ? kept[kept.size() - tail + i] : rest[i - tail]; };
    auto find = [&](std::string_view needle, size_t from) -> size_t {
      for (size_t i = from; i < tail && i + needle.size() <= tail + rest.size(); ++i) {
        size_t k = 0;
        while (k < needle.size() && at(i + k) == needle[k]) ++k;
        if (k == needle.size()) return i;
      }
      const size_t found = text::find_bytes(rest, needle, from > tail ? from - tail : 0);
      return found == npos ? npos : found + tail;
    };
    const size_t start = find(open, 0);
    if (start == npos) break;
    const size_t end = find(close, start);
    if (end == npos) break;
    const size_t cut_end = end + close.size();
    if (cut_end <= tail) {
      kept.erase(kept.size() - tail + start, cut_end - start);
      continue;
    }
    if (start < tail) kept.resize(kept.size() - tail + start);
    else kept.append(rest.substr(0, start - tail));
    rest.remove_prefix(cut_end - tail);
  }
  kept.append(rest);
  return kept;
}

Value filter_striptags(const Value& input, Arguments& arguments, RenderBudget& budget) {
  BoundArguments("striptags", arguments, {});
  std::string value = remove_spans(remove_spans(input.str(), "<!--", "-->"), "<", ">");
  std::string out;
  for (const std::string& word : text::split(value, std::nullopt, -1)) out += (out.empty() ? "" : " ") + word;
  static constexpr std::pair<std::string_view, std::string_view> kEntities[] = {
      {"&lt;", "<"}, {"&gt;", ">"}, {"&quot;", "\""}, {"&#34;", "\""}, {"&#39;", "'"}, {"&amp;", "&"}};
  for (const auto& [entity, character] : kEntities) out = text::replace(out, entity, character, -1);
  return string_result(std::move(out), budget);
}

Value filter_sum(const Value& input, Arguments& arguments, RenderBudget& budget) {
  BoundArguments bound("sum", arguments, {"attribute", "start"});
  Value total = bound.get_or(1, Value::integer(0));
  Value attribute = bound.get_or(0, Value::none());
  for (const Value& item : iterate(input)) {
    total = binary_operation(BinaryOperator::add, total, lookup_attribute_path(item, attribute), budget);
  }
  return total;
}

Value filter_title(const Value& input, Arguments& arguments, RenderBudget& budget) {
  BoundArguments("title", arguments, {});
  // jinja2 splits on runs of whitespace, '-', and opening brackets; each other run starts upper, continues lower.
  std::string out;
  bool at_word_start = true;
  for (char32_t c : text::decode(input.str())) {
    bool separator = text::is_space(c) || c == U'-' || c == U'(' || c == U'{' || c == U'[' || c == U'<';
    if (separator) {
      text::append_codepoint(out, c);
      at_word_start = true;
    } else {
      text::append_codepoint(out, at_word_start ? text::to_upper(c) : text::to_lower(c));
      at_word_start = false;
    }
  }
  return string_result(std::move(out), budget);
}

Value filter_tojson(const Value& input, Arguments& arguments, RenderBudget& budget) {
  // Hugging Face replaces jinja2's tojson with json.dumps(x, ensure_ascii=False, indent=None, separators=None,
  // sort_keys=False): non-ASCII stays as it is, no HTML escaping, keys in insertion order.
  BoundArguments bound("tojson", arguments, {"ensure_ascii", "indent", "separators", "sort_keys"});
  JsonFormat format;
  format.ensure_ascii = bound.get_boolean(0, false);
  Value indent = bound.get_or(1, Value::none());
  if (indent.is_string()) {
    format.indent = indent.as_string();
  } else if (!indent.is_none()) {
    int64_t spaces = bound.get_integer(1, 0);
    if (spaces > 4096) fail_runtime("tojson indent too large");
    format.indent = std::string(static_cast<size_t>(std::max<int64_t>(spaces, 0)), ' ');
  }
  Value separators = bound.get_or(2, Value::none());
  if (!separators.is_none()) {
    if (!separators.is_list() || separators.items().size() != 2 || !separators.items()[0].is_string() ||
        !separators.items()[1].is_string()) {
      fail_runtime("tojson separators must be a pair of strings");
    }
    format.item_separator = separators.items()[0].as_string();
    format.key_separator = separators.items()[1].as_string();
  }
  format.sort_keys = bound.get_boolean(3, false);
  return Value::string(to_json(input, format, budget));
}

Value filter_trim(const Value& input, Arguments& arguments, RenderBudget& budget) {
  BoundArguments bound("trim", arguments, {"chars"});
  return string_result(text::strip(input.str(), bound.get_string(0), true, true), budget);
}

Value filter_truncate(const Value& input, Arguments& arguments, RenderBudget& budget) {
  BoundArguments bound("truncate", arguments, {"length", "killwords", "end", "leeway"});
  int64_t length = bound.get_integer(0, 255);
  bool kill_words = bound.get_boolean(1, false);
  std::u32string end = text::decode(bound.get_string(2).value_or("..."));
  int64_t leeway = bound.get_integer(3, 5);
  if (length < static_cast<int64_t>(end.size())) fail_runtime("expected length >= " + std::to_string(end.size()));
  if (leeway < 0) fail_runtime("expected leeway >= 0");
  if (!input.is_string()) {
    // jinja2 measures len(s) and returns a short non-string unchanged; it cannot cut anything but a string.
    if (python_len(input) <= length + leeway) return input;
    fail_runtime("truncate needs a string, not " + input.type_name());
  }
  std::u32string s = text::decode(input.as_string());
  if (static_cast<int64_t>(s.size()) <= length + leeway) return string_result(text::encode(s), budget);
  std::u32string kept = s.substr(0, static_cast<size_t>(length) - end.size());
  if (!kill_words) {
    size_t last_space = kept.rfind(U' ');
    if (last_space != std::u32string::npos) kept.resize(last_space);
  }
  return string_result(text::encode(kept + end), budget);
}

Value filter_unique(const Value& input, Arguments& arguments, RenderBudget& budget) {
  BoundArguments bound("unique", arguments, {"case_sensitive", "attribute"});
  bool case_sensitive = bound.get_boolean(0, false);
  Value attribute = bound.get_or(1, Value::none());
  std::vector<Value> out;
  std::unordered_set<std::string> seen_strings;
  std::vector<Value> seen_others;
  for (const Value& item : iterate(input)) {
    Value key = sort_key(item, attribute, case_sensitive, false);
    if (key.is_string()) {
      budget.charge_bytes(key.as_string().size());  // hashed, and kept in the set
      if (!seen_strings.insert(key.as_string()).second) continue;
    } else {
      if (key.is_dict() || (key.is_list() && !key.is_tuple())) {
        fail_runtime("unhashable type: '" + key.type_name() + "'");
      }
      bool seen = std::any_of(seen_others.begin(), seen_others.end(), [&](const Value& v) { return v.equals(key); });
      budget.charge_steps(static_cast<int64_t>(seen_others.size()));
      if (seen) continue;
      seen_others.push_back(key);
    }
    out.push_back(item);
  }
  return list_result(std::move(out), budget);
}

Value filter_wordcount(const Value& input, Arguments& arguments, RenderBudget&) {
  BoundArguments("wordcount", arguments, {});
  int64_t words = 0;
  bool in_word = false;
  for (char32_t c : text::decode(input.str())) {
    bool word_char = text::is_word(c);
    if (word_char && !in_word) ++words;
    in_word = word_char;
  }
  return Value::integer(words);
}

const std::unordered_map<std::string_view, FilterFunction>& filter_table() {
  static const std::unordered_map<std::string_view, FilterFunction> table = {
      {"abs", filter_abs},
      {"attr", filter_attr},
      {"batch", filter_batch},
      {"capitalize", filter_capitalize},
      {"center", filter_center},
      {"count", filter_length},
      {"d", filter_default},
      {"default", filter_default},
      {"dictsort", filter_dictsort},
      {"e", filter_escape},
      {"escape", filter_escape},
      {"first", filter_first},
      {"float", filter_float},
      {"forceescape", filter_escape},
      {"format", filter_format},
      {"indent", filter_indent},
      {"int", filter_int},
      {"items", filter_items},
      {"join", filter_join},
      {"last", filter_last},
      {"length", filter_length},
      {"list", filter_list},
      {"lower", filter_lower},
      {"map", filter_map},
      {"max", filter_max},
      {"min", filter_min},
      {"pprint", filter_pprint},
      {"reject", filter_reject},
      {"rejectattr", filter_rejectattr},
      {"replace", filter_replace},
      {"reverse", filter_reverse},
      {"round", filter_round},
      {"safe", filter_safe},
      {"select", filter_select},
      {"selectattr", filter_selectattr},
      {"slice", filter_slice},
      {"sort", filter_sort},
      {"string", filter_string},
      {"striptags", filter_striptags},
      {"sum", filter_sum},
      {"title", filter_title},
      {"tojson", filter_tojson},
      {"trim", filter_trim},
      {"truncate", filter_truncate},
      {"unique", filter_unique},
      {"upper", filter_upper},
      {"wordcount", filter_wordcount},
  };
  return table;
}

}  // namespace

bool has_filter(std::string_view name) { return filter_table().count(name) != 0; }

Value apply_filter(std::string_view name, const Value& input, Arguments& arguments, RenderBudget& budget) {
  auto found = filter_table().find(name);
  if (found == filter_table().end()) fail_runtime("no filter named '" + std::string(name) + "'");
  budget.charge_steps(1);
  return found->second(input, arguments, budget);
}

}  // namespace pagedllm::jinja
