// jinja2's built-in tests (`x is defined`, `x is divisibleby 3`, ...), see jinja_builtins.h. Type tests follow
// Python's isinstance: a bool is a number (but not an integer, as jinja2 special-cases), an Undefined is iterable
// and a sequence (it has __iter__, __len__ and __getitem__), a dict is a sequence and a mapping.
#include <unordered_map>

#include "templates/jinja_arguments.h"
#include "templates/jinja_builtins.h"
#include "templates/jinja_error.h"
#include "templates/jinja_operators.h"
#include "templates/jinja_text.h"

namespace pagedllm::jinja {
namespace {

using TestFunction = bool (*)(const Value& input, Arguments& arguments);

Value one_argument(std::string_view test, Arguments& arguments) {
  BoundArguments bound(test, arguments, {"other"});
  if (!bound.has(0)) bound.fail("the '" + std::string(test) + "' test needs an argument");
  return bound.get(0);
}

void no_arguments(std::string_view test, Arguments& arguments) { BoundArguments(test, arguments, {}); }

Value modulo(const Value& input, const Value& divisor) {
  RenderBudget budget{RenderLimits{}};  // number % number allocates nothing
  return binary_operation(BinaryOperator::modulo, input, divisor, budget);
}

bool test_defined(const Value& v, Arguments& a) { no_arguments("defined", a); return !v.is_undefined(); }
bool test_undefined(const Value& v, Arguments& a) { no_arguments("undefined", a); return v.is_undefined(); }
bool test_none(const Value& v, Arguments& a) { no_arguments("none", a); return v.is_none(); }
bool test_boolean(const Value& v, Arguments& a) { no_arguments("boolean", a); return v.kind() == Value::Kind::boolean; }
bool test_false(const Value& v, Arguments& a) {
  no_arguments("false", a);
  return v.kind() == Value::Kind::boolean && !v.as_boolean();
}
bool test_true(const Value& v, Arguments& a) {
  no_arguments("true", a);
  return v.kind() == Value::Kind::boolean && v.as_boolean();
}
bool test_integer(const Value& v, Arguments& a) { no_arguments("integer", a); return v.kind() == Value::Kind::integer; }
bool test_float(const Value& v, Arguments& a) { no_arguments("float", a); return v.kind() == Value::Kind::floating; }
bool test_number(const Value& v, Arguments& a) { no_arguments("number", a); return v.is_number(); }
bool test_string(const Value& v, Arguments& a) { no_arguments("string", a); return v.is_string(); }
bool test_mapping(const Value& v, Arguments& a) { no_arguments("mapping", a); return v.is_dict(); }
bool test_sequence(const Value& v, Arguments& a) {
  no_arguments("sequence", a);
  return v.is_undefined() || v.is_string() || v.is_list() || v.is_dict();
}
bool test_iterable(const Value& v, Arguments& a) {
  no_arguments("iterable", a);
  return v.is_undefined() || v.is_string() || v.is_list() || v.is_dict() ||
         (v.is_object() && v.as_object().type_name == "LoopContext");
}
bool test_callable(const Value& v, Arguments& a) { no_arguments("callable", a); return v.is_function(); }
bool test_escaped(const Value&, Arguments& a) { no_arguments("escaped", a); return false; }  // no Markup here
bool test_lower(const Value& v, Arguments& a) { no_arguments("lower", a); return text::is_lower(v.str()); }
bool test_upper(const Value& v, Arguments& a) { no_arguments("upper", a); return text::is_upper(v.str()); }
bool test_odd(const Value& v, Arguments& a) {
  no_arguments("odd", a);
  return modulo(v, Value::integer(2)).equals(Value::integer(1));
}
bool test_even(const Value& v, Arguments& a) {
  no_arguments("even", a);
  return modulo(v, Value::integer(2)).equals(Value::integer(0));
}
bool test_divisibleby(const Value& v, Arguments& a) {
  return modulo(v, one_argument("divisibleby", a)).equals(Value::integer(0));
}
bool test_equal(const Value& v, Arguments& a) { return v.equals(one_argument("eq", a)); }
bool test_not_equal(const Value& v, Arguments& a) { return !v.equals(one_argument("ne", a)); }
bool test_greater(const Value& v, Arguments& a) {
  return compare_values(CompareOperator::greater, v, one_argument("gt", a));
}
bool test_greater_equal(const Value& v, Arguments& a) {
  return compare_values(CompareOperator::greater_equal, v, one_argument("ge", a));
}
bool test_less(const Value& v, Arguments& a) { return compare_values(CompareOperator::less, v, one_argument("lt", a)); }
bool test_less_equal(const Value& v, Arguments& a) {
  return compare_values(CompareOperator::less_equal, v, one_argument("le", a));
}
bool test_in(const Value& v, Arguments& a) { return contains(one_argument("in", a), v); }
bool test_sameas(const Value& v, Arguments& a) { return v.same_object(one_argument("sameas", a)); }
bool test_filter(const Value& v, Arguments& a) {
  no_arguments("filter", a);
  return v.is_string() && has_filter(v.as_string());
}
bool test_test(const Value& v, Arguments& a) {
  no_arguments("test", a);
  return v.is_string() && has_test(v.as_string());
}

const std::unordered_map<std::string_view, TestFunction>& test_table() {
  static const std::unordered_map<std::string_view, TestFunction> table = {
      {"defined", test_defined},     {"undefined", test_undefined},   {"none", test_none},
      {"boolean", test_boolean},     {"false", test_false},           {"true", test_true},
      {"integer", test_integer},     {"float", test_float},           {"number", test_number},
      {"string", test_string},       {"mapping", test_mapping},       {"sequence", test_sequence},
      {"iterable", test_iterable},   {"callable", test_callable},     {"escaped", test_escaped},
      {"lower", test_lower},         {"upper", test_upper},           {"odd", test_odd},
      {"even", test_even},           {"divisibleby", test_divisibleby}, {"==", test_equal},
      {"eq", test_equal},            {"equalto", test_equal},         {"!=", test_not_equal},
      {"ne", test_not_equal},        {">", test_greater},             {"gt", test_greater},
      {"greaterthan", test_greater}, {">=", test_greater_equal},      {"ge", test_greater_equal},
      {"<", test_less},              {"lt", test_less},               {"lessthan", test_less},
      {"<=", test_less_equal},       {"le", test_less_equal},         {"in", test_in},
      {"sameas", test_sameas},       {"filter", test_filter},         {"test", test_test},
  };
  return table;
}

}  // namespace

bool has_test(std::string_view name) { return test_table().count(name) != 0; }

bool apply_test(std::string_view name, const Value& input, Arguments& arguments, RenderBudget& budget) {
  auto found = test_table().find(name);
  if (found == test_table().end()) {
    throw TemplateError(TemplateError::Kind::runtime, "no test named '" + std::string(name) + "'");
  }
  budget.charge_steps(1);
  return found->second(input, arguments);
}

}  // namespace pagedllm::jinja
