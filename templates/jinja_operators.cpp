// Python operators on Jinja values (see jinja_operators.h).
#include "templates/jinja_operators.h"

#include <algorithm>
#include <cmath>
#include <compare>
#include <cstdio>

#include <fmt/format.h>

#include "templates/jinja_error.h"
#include "templates/jinja_limits.h"
#include "templates/jinja_text.h"

namespace pagedllm::jinja {
namespace {

[[noreturn]] void fail_runtime(const std::string& message) {
  throw TemplateError(TemplateError::Kind::runtime, message);
}

const char* symbol(BinaryOperator op) {
  switch (op) {
    case BinaryOperator::add: return "+";
    case BinaryOperator::subtract: return "-";
    case BinaryOperator::multiply: return "*";
    case BinaryOperator::divide: return "/";
    case BinaryOperator::floor_divide: return "//";
    case BinaryOperator::modulo: return "%";
    case BinaryOperator::power: return "**";
    case BinaryOperator::concat: return "~";
    case BinaryOperator::logical_and: return "and";
    case BinaryOperator::logical_or: return "or";
  }
  return "?";
}

[[noreturn]] void fail_operands(BinaryOperator op, const Value& left, const Value& right) {
  fail_runtime(std::string("unsupported operand type(s) for ") + symbol(op) + ": '" + left.type_name() + "' and '" +
               right.type_name() + "'");
}

void check_overflow(bool overflowed) {
  if (overflowed) fail_runtime("integer overflow (the result does not fit in 64 bits)");
}

// a * b, or SIZE_MAX when that does not fit: sizes are checked against the limits before anything is built.
size_t saturating_product(size_t a, size_t b) { return (b != 0 && a > SIZE_MAX / b) ? SIZE_MAX : a * b; }

Value repeat(const Value& sequence, int64_t times, RenderBudget& budget) {
  if (times < 0) times = 0;
  if (sequence.is_string()) {
    const std::string& s = sequence.as_string();
    budget.charge_bytes(saturating_product(s.size(), static_cast<size_t>(times)));
    std::string out;
    out.reserve(s.size() * static_cast<size_t>(times));
    for (int64_t i = 0; i < times; ++i) out += s;
    return Value::string(std::move(out));
  }
  const auto& items = sequence.items();
  budget.charge_bytes(saturating_product(saturating_product(items.size(), static_cast<size_t>(times)), sizeof(Value)));
  std::vector<Value> out;
  out.reserve(items.size() * static_cast<size_t>(times));
  for (int64_t i = 0; i < times; ++i) out.insert(out.end(), items.begin(), items.end());
  return sequence.is_tuple() ? Value::tuple(std::move(out)) : Value::list(std::move(out));
}

// CPython's float floor division and modulo (float_divmod).
std::pair<double, double> float_divmod(double x, double y) {
  double mod = std::fmod(x, y);
  double div = (x - mod) / y;
  if (mod != 0.0) {
    if ((y < 0) != (mod < 0)) {
      mod += y;
      div -= 1.0;
    }
  } else {
    mod = std::copysign(0.0, y);
  }
  double floor_div;
  if (div != 0.0) {
    floor_div = std::floor(div);
    if (div - floor_div > 0.5) floor_div += 1.0;
  } else {
    floor_div = std::copysign(0.0, x / y);
  }
  return {floor_div, mod};
}

int64_t integer_power(int64_t base, int64_t exponent) {
  int64_t result = 1;
  while (exponent > 0) {
    if (exponent & 1) check_overflow(__builtin_mul_overflow(result, base, &result));
    exponent >>= 1;
    if (exponent > 0) check_overflow(__builtin_mul_overflow(base, base, &base));
  }
  return result;
}

Value arithmetic(BinaryOperator op, const Value& left, const Value& right) {
  bool use_float = left.kind() == Value::Kind::floating || right.kind() == Value::Kind::floating;
  if (op == BinaryOperator::divide) {
    double divisor = right.as_floating();
    if (divisor == 0.0) fail_runtime("division by zero");
    return Value::floating(left.as_floating() / divisor);
  }
  if (use_float) {
    double a = left.as_floating();
    double b = right.as_floating();
    switch (op) {
      case BinaryOperator::add: return Value::floating(a + b);
      case BinaryOperator::subtract: return Value::floating(a - b);
      case BinaryOperator::multiply: return Value::floating(a * b);
      case BinaryOperator::floor_divide:
        if (b == 0.0) fail_runtime("float floor division by zero");
        return Value::floating(float_divmod(a, b).first);
      case BinaryOperator::modulo:
        if (b == 0.0) fail_runtime("float modulo by zero");
        return Value::floating(float_divmod(a, b).second);
      case BinaryOperator::power:
        if (a == 0.0 && b < 0) fail_runtime("0.0 cannot be raised to a negative power");
        if (a < 0 && b != std::floor(b)) fail_runtime("a negative number cannot be raised to a fractional power");
        return Value::floating(std::pow(a, b));
      default: break;
    }
    fail_operands(op, left, right);
  }
  int64_t a = left.as_integer();
  int64_t b = right.as_integer();
  int64_t result = 0;
  switch (op) {
    case BinaryOperator::add:
      check_overflow(__builtin_add_overflow(a, b, &result));
      return Value::integer(result);
    case BinaryOperator::subtract:
      check_overflow(__builtin_sub_overflow(a, b, &result));
      return Value::integer(result);
    case BinaryOperator::multiply:
      check_overflow(__builtin_mul_overflow(a, b, &result));
      return Value::integer(result);
    case BinaryOperator::floor_divide:
    case BinaryOperator::modulo: {
      if (b == 0) fail_runtime("integer division or modulo by zero");
      if (a == INT64_MIN && b == -1) {
        if (op == BinaryOperator::modulo) return Value::integer(0);
        fail_runtime("integer overflow (the result does not fit in 64 bits)");
      }
      int64_t quotient = a / b;
      int64_t remainder = a % b;
      if (remainder != 0 && ((remainder < 0) != (b < 0))) {  // Python rounds toward negative infinity
        quotient -= 1;
        remainder += b;
      }
      return Value::integer(op == BinaryOperator::floor_divide ? quotient : remainder);
    }
    case BinaryOperator::power:
      if (b < 0) {
        if (a == 0) fail_runtime("0 cannot be raised to a negative power");
        return Value::floating(std::pow(static_cast<double>(a), static_cast<double>(b)));
      }
      return Value::integer(integer_power(a, b));
    default: break;
  }
  fail_operands(op, left, right);
}

std::partial_ordering order(const Value& left, const Value& right, const char* op_symbol) {
  if (left.is_undefined()) fail_undefined(left);
  if (right.is_undefined()) fail_undefined(right);
  if (left.is_number() && right.is_number()) {
    if (left.kind() == Value::Kind::floating || right.kind() == Value::Kind::floating) {
      return left.as_floating() <=> right.as_floating();
    }
    return left.as_integer() <=> right.as_integer();
  }
  if (left.is_string() && right.is_string()) {
    charge_render_work(std::min(left.as_string().size(), right.as_string().size()));
    int c = left.as_string().compare(right.as_string());  // UTF-8 byte order is code point order
    return c < 0 ? std::partial_ordering::less : c > 0 ? std::partial_ordering::greater
                                                      : std::partial_ordering::equivalent;
  }
  if (left.is_list() && right.is_list() && left.is_tuple() == right.is_tuple()) {
    const auto& a = left.items();
    const auto& b = right.items();
    charge_render_work(std::min(a.size(), b.size()) * sizeof(Value));
    for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
      if (!a[i].equals(b[i])) return order(a[i], b[i], op_symbol);
    }
    return a.size() <=> b.size();
  }
  fail_runtime(std::string("'") + op_symbol + "' not supported between instances of '" + left.type_name() +
               "' and '" + right.type_name() + "'");
}

std::string format_number(const std::string& spec, char conversion, const Value& value) {
  char buffer[512];
  std::string c_format = "%" + spec;
  if (conversion == 'd' || conversion == 'i' || conversion == 'x' || conversion == 'X' || conversion == 'o') {
    if (!value.is_number()) {
      fail_runtime(std::string("%") + conversion + " format: a real number is required, not " + value.type_name());
    }
    int64_t integer = value.kind() == Value::Kind::floating
                          ? static_cast<int64_t>(std::trunc(value.as_floating()))
                          : value.as_integer();
    c_format += conversion == 'i' ? std::string("lld") : std::string("ll") + conversion;
    std::snprintf(buffer, sizeof(buffer), c_format.c_str(), static_cast<long long>(integer));
    return buffer;
  }
  if (!value.is_number()) {
    fail_runtime(std::string("%") + conversion + " format: a real number is required, not " + value.type_name());
  }
  c_format += conversion;
  std::snprintf(buffer, sizeof(buffer), c_format.c_str(), value.as_floating());
  return buffer;
}

std::string pad(std::string body, const std::string& flags, int width) {
  int length = static_cast<int>(text::codepoint_count(body));
  if (width <= length) return body;
  std::string padding(static_cast<size_t>(width - length), ' ');
  return flags.find('-') != std::string::npos ? body + padding : padding + body;
}

}  // namespace

void fail_undefined(const Value& undefined) {
  const std::string& reason = undefined.undefined_reason();
  fail_runtime(reason.empty() ? std::string("an undefined value was used") : reason);
}

Value binary_operation(BinaryOperator op, const Value& left, const Value& right, RenderBudget& budget) {
  if (op == BinaryOperator::concat) {
    // Strings are joined without copying them first; other values are printed (within the value limit) first.
    std::string left_text = left.is_string() ? std::string() : left.str();
    std::string right_text = right.is_string() ? std::string() : right.str();
    const std::string& a = left.is_string() ? left.as_string() : left_text;
    const std::string& b = right.is_string() ? right.as_string() : right_text;
    budget.charge_bytes(a.size() + b.size());
    std::string joined;
    joined.reserve(a.size() + b.size());
    joined.append(a).append(b);
    return Value::string(std::move(joined));
  }
  if (left.is_undefined()) fail_undefined(left);
  if (right.is_undefined()) fail_undefined(right);
  if (left.is_number() && right.is_number()) return arithmetic(op, left, right);
  switch (op) {
    case BinaryOperator::add:
      if (left.is_string() && right.is_string()) {
        budget.charge_bytes(left.as_string().size() + right.as_string().size());
        return Value::string(left.as_string() + right.as_string());
      }
      if (left.is_list() && right.is_list() && left.is_tuple() == right.is_tuple()) {
        budget.charge_bytes((left.items().size() + right.items().size()) * sizeof(Value));
        std::vector<Value> items = left.items();
        items.insert(items.end(), right.items().begin(), right.items().end());
        return left.is_tuple() ? Value::tuple(std::move(items)) : Value::list(std::move(items));
      }
      if (left.is_string() && !right.is_string()) {
        fail_runtime("can only concatenate str (not \"" + right.type_name() + "\") to str");
      }
      break;
    case BinaryOperator::multiply:
      if ((left.is_string() || left.is_list()) && right.is_number() && right.kind() != Value::Kind::floating) {
        return repeat(left, right.as_integer(), budget);
      }
      if ((right.is_string() || right.is_list()) && left.is_number() && left.kind() != Value::Kind::floating) {
        return repeat(right, left.as_integer(), budget);
      }
      break;
    case BinaryOperator::modulo:
      if (left.is_string()) return Value::string(printf_format(left.as_string(), right, budget));
      break;
    default:
      break;
  }
  fail_operands(op, left, right);
}

Value unary_operation(UnaryOperator op, const Value& operand) {
  if (op == UnaryOperator::logical_not) return Value::boolean(!operand.truthy());
  if (operand.is_undefined()) fail_undefined(operand);
  if (!operand.is_number()) {
    fail_runtime(std::string("bad operand type for unary ") + (op == UnaryOperator::negate ? "-" : "+") + ": '" +
                 operand.type_name() + "'");
  }
  if (operand.kind() == Value::Kind::floating) {
    return Value::floating(op == UnaryOperator::negate ? -operand.as_floating() : operand.as_floating());
  }
  int64_t value = operand.as_integer();
  if (op == UnaryOperator::plus) return Value::integer(value);
  if (value == INT64_MIN) fail_runtime("integer overflow (the result does not fit in 64 bits)");
  return Value::integer(-value);
}

bool compare_values(CompareOperator op, const Value& left, const Value& right) {
  switch (op) {
    case CompareOperator::equal: return left.equals(right);
    case CompareOperator::not_equal: return !left.equals(right);
    case CompareOperator::less: return order(left, right, "<") < 0;
    case CompareOperator::less_equal: return order(left, right, "<=") <= 0;
    case CompareOperator::greater: return order(left, right, ">") > 0;
    case CompareOperator::greater_equal: return order(left, right, ">=") >= 0;
    case CompareOperator::in: return contains(right, left);
    case CompareOperator::not_in: return !contains(right, left);
  }
  return false;
}

bool contains(const Value& container, const Value& item) {
  switch (container.kind()) {
    case Value::Kind::undefined: return false;  // iterating an Undefined yields nothing
    case Value::Kind::string:
      if (!item.is_string()) {
        fail_runtime("'in <string>' requires string as left operand, not " + item.type_name());
      }
      return text::find_bytes(container.as_string(), item.as_string(), 0) != std::string_view::npos;
    case Value::Kind::list:
      charge_render_work(container.items().size() * sizeof(Value));
      for (const Value& element : container.items()) {
        if (element.equals(item)) return true;
      }
      return false;
    case Value::Kind::dict:
      if (item.is_dict() || item.is_object() || (item.is_list() && !item.is_tuple())) {
        fail_runtime("unhashable type: '" + item.type_name() + "'");
      }
      return container.as_dict().find(item) != nullptr;
    case Value::Kind::object: return item.is_string() && container.as_object().find(item.as_string()) != nullptr;
    default: fail_runtime("argument of type '" + container.type_name() + "' is not iterable");
  }
}

std::string printf_format(std::string_view format, const Value& arguments, RenderBudget& budget) {
  std::vector<Value> positional;
  if (arguments.is_tuple()) positional = arguments.items();
  else positional.push_back(arguments);
  const Dict* mapping = arguments.is_dict() ? &arguments.as_dict() : nullptr;
  size_t next = 0;
  bool used_mapping = false;
  std::string out;
  auto add = [&](std::string_view piece) {
    budget.check_value_size(out.size() + piece.size());
    out.append(piece);
  };
  charge_render_work(format.size());
  for (size_t i = 0; i < format.size(); ++i) {
    if (format[i] != '%') {
      out.push_back(format[i]);
      continue;
    }
    if (++i >= format.size()) fail_runtime("incomplete format");
    if (format[i] == '%') {
      out.push_back('%');
      continue;
    }
    const Value* value = nullptr;
    if (format[i] == '(') {
      size_t close = format.find(')', i);
      if (close == std::string_view::npos) fail_runtime("incomplete format key");
      if (mapping == nullptr) fail_runtime("format requires a mapping");
      value = mapping->find(format.substr(i + 1, close - i - 1));
      if (value == nullptr) {
        fail_runtime("format key '" + std::string(format.substr(i + 1, close - i - 1)) + "' missing");
      }
      used_mapping = true;
      i = close + 1;
    }
    std::string flags;
    while (i < format.size() && std::string_view("-+ #0").find(format[i]) != std::string_view::npos) {
      flags.push_back(format[i++]);
    }
    int width = 0;
    while (i < format.size() && format[i] >= '0' && format[i] <= '9') width = width * 10 + (format[i++] - '0');
    int precision = -1;
    if (i < format.size() && format[i] == '.') {
      ++i;
      precision = 0;
      while (i < format.size() && format[i] >= '0' && format[i] <= '9') {
        precision = precision * 10 + (format[i++] - '0');
      }
    }
    if (width > 4096 || precision > 4096) fail_runtime("format width or precision too large");
    if (i >= format.size()) fail_runtime("incomplete format");
    char conversion = format[i];
    if (value == nullptr) {
      if (next >= positional.size()) fail_runtime("not enough arguments for format string");
      value = &positional[next++];
    }
    std::string spec = flags + (width > 0 ? std::to_string(width) : "") +
                       (precision >= 0 ? fmt::format(".{}", precision) : std::string());
    switch (conversion) {
      case 's':
      case 'r':
      case 'a': {
        std::string body = conversion == 's' ? value->str() : value->repr();
        if (precision >= 0) body = text::encode(text::decode(body).substr(0, static_cast<size_t>(precision)));
        add(pad(std::move(body), flags, width));
        break;
      }
      case 'c': {
        std::string body;
        if (value->is_string() && text::codepoint_count(value->as_string()) == 1) body = value->as_string();
        else if (value->is_integer() && value->as_integer() >= 0 && value->as_integer() <= 0x10FFFF) {
          text::append_codepoint(body, static_cast<char32_t>(value->as_integer()));
        } else {
          fail_runtime("%c requires an int or a one-character str");
        }
        add(pad(std::move(body), flags, width));
        break;
      }
      case 'd': case 'i': case 'x': case 'X': case 'o': case 'f': case 'F': case 'e': case 'E': case 'g': case 'G':
        add(format_number(spec, conversion, *value));
        break;
      default:
        fail_runtime(std::string("unsupported format character '") + conversion + "'");
    }
  }
  if (!used_mapping && mapping == nullptr && next < positional.size()) {
    fail_runtime("not all arguments converted during string formatting");
  }
  budget.charge_bytes(out.size());
  return out;
}

}  // namespace pagedllm::jinja
