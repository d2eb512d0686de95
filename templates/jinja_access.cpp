// Attribute and item access, methods of str/list/dict, iteration, slicing and the default globals of the Jinja
// interpreter (see jinja_builtins.h).
#include <algorithm>
#include <charconv>
#include <cmath>

#include <fmt/format.h>

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

// jinja2's object_type_repr: "dict object", "None", ...
std::string object_description(const Value& object) {
  if (object.is_none()) return "None";
  if (object.is_object()) return object.as_object().type_name + " object";
  return object.type_name() + " object";
}

// Messages quote at most the start of a name or key: a template can look up a 30 MB string in a loop.
Value missing_attribute(const Value& object, std::string_view name) {
  return Value::undefined(
      fmt::format("'{}' has no attribute '{}'", object_description(object), text::abbreviate(name)));
}

Value missing_element(const Value& object, const Value& key) {
  std::string key_text = key.is_string() ? text::repr_string(text::abbreviate(key.as_string())) : key.repr();
  return Value::undefined(object_description(object) + " has no element " + text::abbreviate(key_text));
}

// The sandbox HF renders in refuses methods that modify lists and dicts; using one fails with this message.
bool is_mutating_method(const Value& object, std::string_view name) {
  static constexpr std::string_view kListMethods[] = {"append", "extend", "insert", "pop", "remove", "reverse",
                                                      "sort", "clear"};
  static constexpr std::string_view kDictMethods[] = {"pop", "popitem", "setdefault", "update", "clear"};
  if (object.is_list() && !object.is_tuple()) {
    return std::find(std::begin(kListMethods), std::end(kListMethods), name) != std::end(kListMethods);
  }
  if (object.is_dict()) {
    return std::find(std::begin(kDictMethods), std::end(kDictMethods), name) != std::end(kDictMethods);
  }
  return false;
}

const std::string& require_string(const Value& value, std::string_view method, std::string_view what) {
  if (!value.is_string()) {
    fail_runtime(std::string(method) + "() " + std::string(what) + " must be str, not " + value.type_name());
  }
  return value.as_string();
}

std::optional<std::string> optional_chars(const BoundArguments& bound, size_t index, std::string_view method) {
  if (!bound.has(index) || bound.get(index).is_none()) return std::nullopt;
  return require_string(bound.get(index), method, "argument");
}

// startswith/endswith accept one prefix or a tuple of them.
bool matches_affix(const std::string& s, const Value& affixes, bool at_start, std::string_view method) {
  std::vector<Value> candidates = affixes.is_tuple() ? affixes.items() : std::vector<Value>{affixes};
  for (const Value& candidate : candidates) {
    const std::string& affix = require_string(candidate, method, "argument");
    if (affix.size() > s.size()) continue;
    charge_render_work(affix.size());
    if (at_start ? s.compare(0, affix.size(), affix) == 0
                 : s.compare(s.size() - affix.size(), affix.size(), affix) == 0) {
      return true;
    }
  }
  return false;
}

// str.format's format spec, the common part: [[fill]align][width][.precision][type] with type s, d, f or none.
std::string apply_format_spec(const Value& value, std::string_view spec) {
  if (spec.empty()) return value.str();
  std::u32string chars = text::decode(spec);
  size_t i = 0;
  char32_t fill = U' ';
  char32_t align = 0;
  auto is_align = [](char32_t c) { return c == U'<' || c == U'>' || c == U'^'; };
  if (chars.size() >= 2 && is_align(chars[1])) {
    fill = chars[0];
    align = chars[1];
    i = 2;
  } else if (!chars.empty() && is_align(chars[0])) {
    align = chars[0];
    i = 1;
  }
  int64_t width = 0;
  while (i < chars.size() && chars[i] >= U'0' && chars[i] <= U'9') width = width * 10 + (chars[i++] - U'0');
  int64_t precision = -1;
  if (i < chars.size() && chars[i] == U'.') {
    precision = 0;
    ++i;
    while (i < chars.size() && chars[i] >= U'0' && chars[i] <= U'9') precision = precision * 10 + (chars[i++] - U'0');
  }
  char32_t type = i < chars.size() ? chars[i++] : 0;
  if (i != chars.size() || width > 4096 || precision > 4096) {
    fail_runtime("unsupported format spec '" + std::string(spec) + "' in str.format");
  }
  std::string body;
  if (type == U'f' || (type == 0 && precision >= 0 && value.is_number())) {
    if (!value.is_number()) fail_runtime("format code 'f' needs a number, not " + value.type_name());
    body = fmt::format("{:.{}f}", value.as_floating(), precision < 0 ? 6 : precision);
  } else if (type == U'd') {
    if (!value.is_number() || value.kind() == Value::Kind::floating) {
      fail_runtime("format code 'd' needs an integer, not " + value.type_name());
    }
    body = std::to_string(value.as_integer());
  } else if (type == 0 || type == U's') {
    body = value.str();
    if (precision >= 0) body = text::encode(text::decode(body).substr(0, static_cast<size_t>(precision)));
  } else {
    fail_runtime("unsupported format spec '" + std::string(spec) + "' in str.format");
  }
  int64_t length = static_cast<int64_t>(text::codepoint_count(body));
  if (width <= length) return body;
  if (align == 0) align = value.is_number() ? U'>' : U'<';
  int64_t margin = width - length;
  int64_t left = align == U'>' ? margin : align == U'^' ? margin / 2 : 0;
  std::string fill_text;
  text::append_codepoint(fill_text, fill);
  std::string out;
  for (int64_t k = 0; k < left; ++k) out += fill_text;
  out += body;
  for (int64_t k = 0; k < margin - left; ++k) out += fill_text;
  return out;
}

// str.format: {} {0} {name} {name.attr} {name[key]} with !r/!s and a simple spec; {{ and }} are literal braces.
std::string python_str_format(const std::string& format, const Arguments& arguments, RenderBudget& budget) {
  std::string out;
  auto add = [&](std::string_view piece) {
    budget.check_value_size(out.size() + piece.size());
    out.append(piece);
  };
  size_t auto_index = 0;
  for (size_t i = 0; i < format.size(); ++i) {
    char c = format[i];
    if (c == '}') {
      if (i + 1 < format.size() && format[i + 1] == '}') {
        out.push_back('}');
        ++i;
        continue;
      }
      fail_runtime("single '}' encountered in format string");
    }
    if (c != '{') {
      out.push_back(c);
      continue;
    }
    if (i + 1 < format.size() && format[i + 1] == '{') {
      out.push_back('{');
      ++i;
      continue;
    }
    size_t close = format.find('}', i);
    if (close == std::string::npos) fail_runtime("single '{' encountered in format string");
    std::string field = format.substr(i + 1, close - i - 1);
    i = close;
    std::string spec;
    if (size_t colon = field.find(':'); colon != std::string::npos) {
      spec = field.substr(colon + 1);
      field.resize(colon);
    }
    char conversion = 0;
    if (size_t bang = field.find('!'); bang != std::string::npos) {
      if (bang + 2 != field.size()) fail_runtime("invalid conversion in format string");
      conversion = field[bang + 1];
      field.resize(bang);
    }
    size_t name_end = std::min(field.find('.'), field.find('['));
    std::string name = field.substr(0, name_end);
    Value value;
    if (name.empty() || std::all_of(name.begin(), name.end(), [](char d) { return d >= '0' && d <= '9'; })) {
      // Digits past what an index can be (std::stoul would throw a foreign exception) are simply out of range.
      size_t index = auto_index;
      if (name.empty()) {
        ++auto_index;
      } else if (std::from_chars(name.data(), name.data() + name.size(), index).ec != std::errc()) {
        index = SIZE_MAX;
      }
      if (index >= arguments.positional.size()) {
        fail_runtime("str.format: replacement index " + (name.empty() ? std::to_string(index) : text::abbreviate(name)) +
                     " out of range");
      }
      value = arguments.positional[index];
    } else {
      auto found = std::find_if(arguments.keyword.begin(), arguments.keyword.end(),
                                [&](const auto& entry) { return entry.first == name; });
      if (found == arguments.keyword.end()) fail_runtime("str.format: no argument named '" + name + "'");
      value = found->second;
    }
    for (size_t at = name_end; at < field.size();) {
      if (field[at] == '.') {
        size_t end = std::min(field.find('.', at + 1), field.find('[', at + 1));
        value = get_attribute(value, field.substr(at + 1, end == std::string::npos ? std::string::npos : end - at - 1));
        at = end == std::string::npos ? field.size() : end;
      } else {
        size_t end = field.find(']', at);
        if (end == std::string::npos) fail_runtime("missing ']' in format string");
        std::string key = field.substr(at + 1, end - at - 1);
        std::optional<int64_t> index = text::parse_int(key, 10);
        value = get_item(value, index ? Value::integer(*index) : Value::string(key));
        at = end + 1;
      }
    }
    if (conversion == 'r') value = Value::string(value.repr());
    else if (conversion == 's') value = Value::string(value.str());
    else if (conversion != 0) fail_runtime(std::string("unknown conversion specifier ") + conversion);
    add(apply_format_spec(value, spec));
  }
  budget.charge_bytes(out.size());
  return out;
}

Value string_list(std::vector<std::string> parts, RenderBudget& budget) {
  budget.charge_bytes(parts.size() * sizeof(Value));
  std::vector<Value> items;
  items.reserve(parts.size());
  for (std::string& part : parts) items.push_back(Value::string(std::move(part)));
  return Value::list(std::move(items));
}

Value bound_method(const std::string& type, std::string_view name, NativeFunction call) {
  return Value::function(type + "." + std::string(name), std::move(call));
}

// Each method holds the string value (a shared pointer), not a copy of its text: `big.startswith(x)` in a loop
// must not copy a 30 MB string per call.
Value string_method(const Value& object, std::string_view name) {
  std::string method(name);
  auto make = [&](NativeFunction call) { return bound_method("str", name, std::move(call)); };
  auto no_arguments = [method](const Arguments& arguments) { BoundArguments(method, arguments, {}); };
  if (name == "upper" || name == "lower" || name == "title" || name == "capitalize" || name == "swapcase") {
    return make([object, method, no_arguments](Arguments& arguments, RenderBudget& budget) {
      const std::string& s = object.as_string();
      no_arguments(arguments);
      budget.charge_bytes(s.size() * 2);
      if (method == "upper") return Value::string(text::upper(s));
      if (method == "lower") return Value::string(text::lower(s));
      if (method == "title") return Value::string(text::title(s));
      if (method == "capitalize") return Value::string(text::capitalize(s));
      std::string out;
      for (char32_t c : text::decode(s)) text::append_codepoint(out, text::to_lower(c) != c ? text::to_lower(c)
                                                                                             : text::to_upper(c));
      return Value::string(std::move(out));
    });
  }
  if (name == "strip" || name == "lstrip" || name == "rstrip") {
    return make([object, method](Arguments& arguments, RenderBudget& budget) {
      const std::string& s = object.as_string();
      BoundArguments bound(method, arguments, {"chars"});
      std::string out = text::strip(s, optional_chars(bound, 0, method), method != "rstrip", method != "lstrip");
      budget.charge_bytes(out.size());
      return Value::string(std::move(out));
    });
  }
  if (name == "split" || name == "rsplit") {
    return make([object, method](Arguments& arguments, RenderBudget& budget) {
      const std::string& s = object.as_string();
      BoundArguments bound(method, arguments, {"sep", "maxsplit"});
      std::optional<std::string> separator = optional_chars(bound, 0, method);
      if (separator && separator->empty()) fail_runtime("empty separator");
      int64_t max_split = bound.get_integer(1, -1);
      return string_list(method == "split" ? text::split(s, separator, max_split)
                                           : text::rsplit(s, separator, max_split),
                         budget);
    });
  }
  if (name == "splitlines") {
    return make([object](Arguments& arguments, RenderBudget& budget) {
      const std::string& s = object.as_string();
      BoundArguments bound("splitlines", arguments, {"keepends"});
      return string_list(text::splitlines(s, bound.get_boolean(0, false)), budget);
    });
  }
  if (name == "startswith" || name == "endswith") {
    return make([object, method](Arguments& arguments, RenderBudget&) {
      const std::string& s = object.as_string();
      BoundArguments bound(method, arguments, {"affix"});
      if (!bound.has(0)) fail_runtime(method + "() takes at least 1 argument (0 given)");
      return Value::boolean(matches_affix(s, bound.get(0), method == "startswith", method));
    });
  }
  if (name == "replace") {
    return make([object](Arguments& arguments, RenderBudget& budget) {
      const std::string& s = object.as_string();
      BoundArguments bound("replace", arguments, {"old", "new", "count"});
      const Value old_value = bound.get(0);
      const Value replacement_value = bound.get(1);
      const std::string& old = require_string(old_value, "replace", "argument 1");
      const std::string& replacement = require_string(replacement_value, "replace", "argument 2");
      std::string out = text::replace(s, old, replacement, bound.get_integer(2, -1));
      budget.charge_bytes(out.size());
      return Value::string(std::move(out));
    });
  }
  if (name == "find" || name == "rfind" || name == "index" || name == "rindex" || name == "count") {
    return make([object, method](Arguments& arguments, RenderBudget&) {
      const std::string& s = object.as_string();
      BoundArguments bound(method, arguments, {"sub"});
      const Value needle_value = bound.get(0);
      const std::string& needle = require_string(needle_value, method, "argument");
      if (method == "count") return Value::integer(text::count(s, needle));
      int64_t at = (method == "find" || method == "index") ? text::find(s, needle) : text::rfind(s, needle);
      if (at < 0 && (method == "index" || method == "rindex")) fail_runtime("substring not found");
      return Value::integer(at);
    });
  }
  if (name == "join") {
    return make([object](Arguments& arguments, RenderBudget& budget) {
      const std::string& s = object.as_string();
      BoundArguments bound("join", arguments, {"iterable"});
      std::vector<Value> items = iterate(bound.get(0));
      size_t total = items.empty() ? 0 : s.size() * (items.size() - 1);
      for (size_t i = 0; i < items.size(); ++i) {
        if (!items[i].is_string()) {
          fail_runtime("sequence item " + std::to_string(i) + ": expected str instance, " + items[i].type_name() +
                       " found");
        }
        total += items[i].as_string().size();
        budget.check_value_size(total);
      }
      budget.charge_bytes(total);
      std::string out;
      out.reserve(total);
      for (size_t i = 0; i < items.size(); ++i) {
        if (i > 0) out += s;
        out += items[i].as_string();
      }
      return Value::string(std::move(out));
    });
  }
  if (name == "format") {
    return make([object](Arguments& arguments, RenderBudget& budget) {
      const std::string& s = object.as_string();
      return Value::string(python_str_format(s, arguments, budget));
    });
  }
  if (name == "isalpha" || name == "isdigit" || name == "isnumeric" || name == "isdecimal" || name == "isalnum" ||
      name == "isspace" || name == "islower" || name == "isupper") {
    return make([object, method, no_arguments](Arguments& arguments, RenderBudget&) {
      const std::string& s = object.as_string();
      no_arguments(arguments);
      if (method == "islower") return Value::boolean(text::is_lower(s));
      if (method == "isupper") return Value::boolean(text::is_upper(s));
      std::u32string chars = text::decode(s);
      auto test = [&](char32_t c) {
        if (method == "isalpha") return text::is_alpha(c);
        if (method == "isalnum") return text::is_alpha(c) || text::is_digit(c);
        if (method == "isspace") return text::is_space(c);
        return text::is_digit(c);
      };
      return Value::boolean(!chars.empty() && std::all_of(chars.begin(), chars.end(), test));
    });
  }
  if (name == "center" || name == "ljust" || name == "rjust" || name == "zfill") {
    return make([object, method](Arguments& arguments, RenderBudget& budget) {
      const std::string& s = object.as_string();
      BoundArguments bound(method, arguments, {"width", "fillchar"});
      int64_t width = bound.get_integer(0, 0);
      budget.charge_bytes(static_cast<size_t>(std::max<int64_t>(width, 0)) * 4);
      std::u32string fill_chars = text::decode(bound.get_string(1).value_or(" "));
      if (fill_chars.size() != 1) fail_runtime("the fill character must be exactly one character long");
      int64_t length = static_cast<int64_t>(text::codepoint_count(s));
      if (method == "center") return Value::string(text::center(s, width, fill_chars[0]));
      if (width <= length) return Value::string(s);
      std::string padding;
      char32_t fill = method == "zfill" ? U'0' : fill_chars[0];
      for (int64_t k = 0; k < width - length; ++k) text::append_codepoint(padding, fill);
      if (method == "ljust") return Value::string(s + padding);
      if (method == "zfill" && !s.empty() && (s[0] == '-' || s[0] == '+')) {
        return Value::string(s.substr(0, 1) + padding + s.substr(1));
      }
      return Value::string(padding + s);
    });
  }
  if (name == "removeprefix" || name == "removesuffix") {
    return make([object, method](Arguments& arguments, RenderBudget&) {
      const std::string& s = object.as_string();
      BoundArguments bound(method, arguments, {"affix"});
      const Value affix_value = bound.get(0);
      const std::string& affix = require_string(affix_value, method, "argument");
      charge_render_work(s.size());
      if (affix.size() <= s.size()) {
        if (method == "removeprefix" && s.compare(0, affix.size(), affix) == 0) {
          return Value::string(s.substr(affix.size()));
        }
        if (method == "removesuffix" && s.compare(s.size() - affix.size(), affix.size(), affix) == 0) {
          return Value::string(s.substr(0, s.size() - affix.size()));
        }
      }
      return Value::string(s);
    });
  }
  return missing_attribute(object, name);
}

Value dict_method(const Value& object, std::string_view name) {
  auto make = [&](NativeFunction call) { return bound_method("dict", name, std::move(call)); };
  std::string method(name);
  if (name == "items" || name == "keys" || name == "values") {
    // Python returns views; a list of the same elements prints a little differently but iterates the same.
    return make([object, method](Arguments& arguments, RenderBudget& budget) {
      BoundArguments(method, arguments, {});
      const Dict& dict = object.as_dict();
      const size_t per_entry = method == "items" ? sizeof(Value) * 3 + kContainerValueOverhead : sizeof(Value);
      budget.charge_bytes(kContainerValueOverhead + dict.size() * per_entry);
      std::vector<Value> out;
      out.reserve(dict.size());
      for (const auto& [key, value] : dict.entries()) {
        if (method == "items") out.push_back(Value::tuple({key, value}));
        else out.push_back(method == "keys" ? key : value);
      }
      return Value::list(std::move(out));
    });
  }
  if (name == "get") {
    return make([object](Arguments& arguments, RenderBudget&) {
      BoundArguments bound("get", arguments, {"key", "default"});
      const Value* found = object.as_dict().find(bound.get(0));
      return found ? *found : bound.get_or(1, Value::none());
    });
  }
  if (name == "copy") {
    return make([object](Arguments& arguments, RenderBudget&) {
      BoundArguments("copy", arguments, {});
      return object;  // values are immutable, so sharing is a copy
    });
  }
  return Value();
}

Value list_method(const Value& object, std::string_view name) {
  std::string type = object.type_name();
  auto make = [&](NativeFunction call) { return bound_method(type, name, std::move(call)); };
  if (name == "index") {
    return make([object](Arguments& arguments, RenderBudget&) {
      BoundArguments bound("index", arguments, {"value"});
      const auto& items = object.items();
      charge_render_work(items.size() * sizeof(Value));
      for (size_t i = 0; i < items.size(); ++i) {
        if (items[i].equals(bound.get(0))) return Value::integer(static_cast<int64_t>(i));
      }
      fail_runtime(text::abbreviate(bound.get(0).repr()) + " is not in " + object.type_name());
    });
  }
  if (name == "count") {
    return make([object](Arguments& arguments, RenderBudget&) {
      BoundArguments bound("count", arguments, {"value"});
      const auto& items = object.items();
      charge_render_work(items.size() * sizeof(Value));
      return Value::integer(std::count_if(items.begin(), items.end(),
                                          [&](const Value& item) { return item.equals(bound.get(0)); }));
    });
  }
  if (name == "copy" && !object.is_tuple()) {
    return make([object](Arguments& arguments, RenderBudget&) {
      BoundArguments("copy", arguments, {});
      return object;
    });
  }
  return Value();
}

int64_t slice_bound(const Value& bound, std::string_view what) {
  if (bound.kind() == Value::Kind::integer || bound.kind() == Value::Kind::boolean) return bound.as_integer();
  fail_runtime("slice indices must be integers or None (the " + std::string(what) + " is " + bound.type_name() + ")");
}

// Python's slice index adjustment (PySlice_AdjustIndices).
int64_t adjust_slice_index(const Value& bound, int64_t length, int64_t step, bool is_start, std::string_view what) {
  if (bound.is_none()) {
    if (is_start) return step < 0 ? length - 1 : 0;
    return step < 0 ? -1 : length;
  }
  int64_t index = slice_bound(bound, what);
  if (index < 0) {
    index += length;
    if (index < 0) index = step < 0 ? -1 : 0;
  } else if (index >= length) {
    index = step < 0 ? length - 1 : length;
  }
  return index;
}

// The positions a slice takes, as Python's slice.indices() gives them: first, first + stride, ... (count of them).
struct SlicePositions {
  int64_t first = 0;
  int64_t stride = 1;
  int64_t count = 0;
  size_t at(int64_t k) const { return static_cast<size_t>(first + k * stride); }
};

SlicePositions slice_positions(int64_t length, const Value& start, const Value& stop, const Value& step) {
  SlicePositions positions;
  positions.stride = step.is_none() ? 1 : slice_bound(step, "step");
  if (positions.stride == 0) fail_runtime("slice step cannot be zero");
  if (positions.stride == INT64_MIN) positions.stride = -INT64_MAX;  // the same positions, and negatable
  positions.first = adjust_slice_index(start, length, positions.stride, true, "start");
  const int64_t last = adjust_slice_index(stop, length, positions.stride, false, "stop");
  const int64_t span = positions.stride > 0 ? last - positions.first : positions.first - last;
  const int64_t stride_size = positions.stride > 0 ? positions.stride : -positions.stride;
  positions.count = span <= 0 ? 0 : (span - 1) / stride_size + 1;
  return positions;
}

Value make_range(Arguments& arguments, RenderBudget& budget) {
  if (!arguments.keyword.empty()) fail_runtime("range() takes no keyword arguments");
  const auto& args = arguments.positional;
  if (args.empty() || args.size() > 3) fail_runtime("range() expects 1 to 3 integer arguments");
  for (const Value& arg : args) {
    if (arg.kind() != Value::Kind::integer && arg.kind() != Value::Kind::boolean) {
      fail_runtime("range() arguments must be integers, not " + arg.type_name());
    }
  }
  int64_t start = args.size() == 1 ? 0 : args[0].as_integer();
  int64_t stop = args.size() == 1 ? args[0].as_integer() : args[1].as_integer();
  int64_t step = args.size() == 3 ? args[2].as_integer() : 1;
  if (step == 0) fail_runtime("range() arg 3 must not be zero");
  long double span = step > 0 ? static_cast<long double>(stop) - start : static_cast<long double>(start) - stop;
  long double count_estimate = span <= 0 ? 0 : std::ceil(span / std::abs(static_cast<long double>(step)));
  const long double bytes = count_estimate * sizeof(Value);
  budget.charge_bytes(bytes >= static_cast<long double>(SIZE_MAX) ? SIZE_MAX : static_cast<size_t>(bytes));
  std::vector<Value> items;
  items.reserve(static_cast<size_t>(count_estimate));
  for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) {
    items.push_back(Value::integer(i));
    if ((step > 0 && i > INT64_MAX - step) || (step < 0 && i < INT64_MIN - step)) break;
  }
  return Value::list(std::move(items));
}

void copy_mapping_into(const Value& mapping, const std::string& function,
                       const std::function<void(Value, Value)>& put) {
  if (!mapping.is_dict()) fail_runtime(function + "() positional argument must be a dict, not " + mapping.type_name());
  for (const auto& [key, value] : mapping.as_dict().entries()) put(key, value);
}

}  // namespace

std::vector<Value> iterate(const Value& iterable) {
  switch (iterable.kind()) {
    case Value::Kind::undefined: return {};
    case Value::Kind::list:
      charge_render_work(iterable.items().size() * sizeof(Value));
      return iterable.items();
    case Value::Kind::dict: {
      charge_render_work(iterable.as_dict().size() * sizeof(Value));
      std::vector<Value> keys;
      keys.reserve(iterable.as_dict().size());
      for (const auto& entry : iterable.as_dict().entries()) keys.push_back(entry.first);
      return keys;
    }
    case Value::Kind::string: {
      // One string value per character: ~100 bytes for each byte of text, counted before any exists.
      const size_t n_characters = text::codepoint_count(iterable.as_string());
      charge_render_bytes(n_characters * (sizeof(Value) + kStringValueOverhead));
      std::vector<Value> characters;
      characters.reserve(n_characters);
      for (char32_t c : text::decode(iterable.as_string())) {
        std::string character;
        text::append_codepoint(character, c);
        characters.push_back(Value::string(std::move(character)));
      }
      return characters;
    }
    default:
      fail_runtime("'" + iterable.type_name() + "' object is not iterable");
  }
}

Value get_attribute(const Value& object, std::string_view name) {
  switch (object.kind()) {
    case Value::Kind::undefined:
      fail_undefined(object);
    case Value::Kind::string:
      return string_method(object, name);
    case Value::Kind::dict: {
      if (Value method = dict_method(object, name); !method.is_undefined()) return method;
      if (is_mutating_method(object, name)) break;
      const Value* found = object.as_dict().find(name);
      return found ? *found : missing_attribute(object, name);
    }
    case Value::Kind::list: {
      if (Value method = list_method(object, name); !method.is_undefined()) return method;
      break;
    }
    case Value::Kind::object: {
      const Value* found = object.as_object().find(name);
      return found ? *found : missing_attribute(object, name);
    }
    default:
      break;
  }
  if (is_mutating_method(object, name)) {
    return Value::undefined("access to attribute '" + std::string(name) + "' of '" + object.type_name() +
                            "' object is unsafe.");
  }
  return missing_attribute(object, name);
}

Value get_item(const Value& object, const Value& key) {
  switch (object.kind()) {
    case Value::Kind::undefined:
      fail_undefined(object);
    case Value::Kind::dict: {
      const Value* found = object.as_dict().find(key);
      if (found) return *found;
      break;
    }
    case Value::Kind::list:
    case Value::Kind::string: {
      if (key.kind() != Value::Kind::integer && key.kind() != Value::Kind::boolean) break;
      int64_t index = key.as_integer();
      if (object.is_list()) {
        int64_t length = static_cast<int64_t>(object.items().size());
        if (index < 0) index += length;
        if (index < 0 || index >= length) return missing_element(object, key);
        return object.items()[static_cast<size_t>(index)];
      }
      std::optional<std::string> character = text::codepoint_at(object.as_string(), index);
      if (!character) return missing_element(object, key);
      return Value::string(std::move(*character));
    }
    default:
      break;
  }
  // jinja2 falls back to the attribute of that name (d['items'] is the method when there is no such key).
  if (key.is_string()) {
    Value attribute = get_attribute(object, key.as_string());
    if (!attribute.is_undefined() || object.is_object()) return attribute;
    return Value::undefined("'" + object_description(object) + "' has no attribute '" +
                            text::abbreviate(key.as_string()) + "'");
  }
  return missing_element(object, key);
}

Value slice(const Value& object, const Value& start, const Value& stop, const Value& step, RenderBudget& budget) {
  if (object.is_undefined()) fail_undefined(object);

  if (object.is_list()) {
    const auto& items = object.items();
    const SlicePositions positions = slice_positions(static_cast<int64_t>(items.size()), start, stop, step);
    budget.charge_bytes(kContainerValueOverhead + static_cast<size_t>(positions.count) * sizeof(Value));
    std::vector<Value> out;
    out.reserve(static_cast<size_t>(positions.count));
    for (int64_t k = 0; k < positions.count; ++k) out.push_back(items[positions.at(k)]);
    return object.is_tuple() ? Value::tuple(std::move(out)) : Value::list(std::move(out));
  }
  if (object.is_string()) {
    const std::string& s = object.as_string();
    const SlicePositions positions = slice_positions(static_cast<int64_t>(text::codepoint_count(s)), start, stop, step);
    if (positions.stride == 1) {
      // The common s[a:b] is one byte range: no decoding, no copy but the result.
      const size_t begin = text::byte_offset_of(s, positions.at(0));
      const size_t end = text::byte_offset_of(s, positions.at(0) + static_cast<size_t>(positions.count));
      budget.charge_bytes(end - begin);
      return Value::string(s.substr(begin, end - begin));
    }
    std::u32string chars = text::decode(s);
    std::u32string out;
    out.reserve(static_cast<size_t>(positions.count));
    for (int64_t k = 0; k < positions.count; ++k) out.push_back(chars[positions.at(k)]);
    size_t encoded_bytes = 0;  // at most: a malformed byte carried through takes one byte, not three
    for (char32_t c : out) encoded_bytes += c < 0x80 ? 1 : c < 0x800 ? 2 : c < 0x10000 ? 3 : 4;
    budget.charge_bytes(encoded_bytes);
    return Value::string(text::encode(out));
  }
  // jinja2 compiles a slice to a plain Python subscript (no Undefined fallback, unlike obj[key]).
  if (object.is_dict()) fail_runtime("unhashable type: 'slice'");
  fail_runtime("'" + object.type_name() + "' object is not subscriptable");
}

Value builtin_global(std::string_view name) {
  if (name == "range") return Value::function("range", make_range);
  if (name == "dict") {
    return Value::function("dict", [](Arguments& arguments, RenderBudget& budget) {
      if (arguments.positional.size() > 1) fail_runtime("dict() takes at most 1 positional argument");
      Dict dict;
      auto put = [&](Value key, Value value) { dict.set(std::move(key), std::move(value)); };
      if (!arguments.positional.empty()) copy_mapping_into(arguments.positional[0], "dict", put);
      for (const auto& [key, value] : arguments.keyword) put(Value::string(key), value);
      budget.charge_bytes(dict.size() * 2 * sizeof(Value));
      return Value::dict(std::move(dict));
    });
  }
  if (name == "namespace") {
    return Value::function("namespace", [](Arguments& arguments, RenderBudget& budget) {
      if (arguments.positional.size() > 1) fail_runtime("namespace() takes at most 1 positional argument");
      auto object = std::make_shared<Object>("Namespace", true);
      auto put = [&](Value key, Value value) {
        if (!key.is_string()) fail_runtime("namespace() keys must be strings");
        object->set(key.as_string(), std::move(value));
      };
      if (!arguments.positional.empty()) copy_mapping_into(arguments.positional[0], "namespace", put);
      for (const auto& [key, value] : arguments.keyword) object->set(key, value);
      budget.charge_bytes(sizeof(Object) + object->attributes.size() * sizeof(Value));
      return Value::object(std::move(object));
    });
  }
  if (name == "joiner") {
    return Value::function("joiner", [](Arguments& arguments, RenderBudget&) {
      BoundArguments bound("joiner", arguments, {"sep"});
      std::string separator = bound.get_string(0).value_or(", ");
      auto used = std::make_shared<bool>(false);
      return Value::function("joiner", [separator, used](Arguments& call_arguments, RenderBudget&) {
        BoundArguments("joiner", call_arguments, {});
        if (!*used) {
          *used = true;
          return Value::string("");
        }
        return Value::string(separator);
      });
    });
  }
  return Value::undefined("'" + std::string(name) + "' is undefined");
}

}  // namespace pagedllm::jinja
