#pragma once
// Binding call arguments to named parameters the way Python does (positional first, then keywords), for the
// built-in filters, tests, methods and globals.
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "templates/jinja_error.h"
#include "templates/jinja_value.h"

namespace pagedllm::jinja {

class BoundArguments {
 public:
  // Throws TemplateError naming `function` for too many positional arguments, an unknown keyword, or a parameter
  // given twice.
  BoundArguments(std::string_view function, const Arguments& arguments,
                 std::initializer_list<std::string_view> parameters)
      : function_(function), values_(parameters.size()) {
    std::vector<std::string_view> names(parameters);
    if (arguments.positional.size() > names.size()) {
      fail(std::string(function) + "() takes at most " + std::to_string(names.size()) + " argument(s) (" +
           std::to_string(arguments.positional.size()) + " given)");
    }
    for (size_t i = 0; i < arguments.positional.size(); ++i) values_[i] = arguments.positional[i];
    for (const auto& [name, value] : arguments.keyword) {
      size_t index = 0;
      while (index < names.size() && names[index] != name) ++index;
      if (index == names.size()) fail(std::string(function) + "() got an unexpected keyword argument '" + name + "'");
      if (values_[index]) fail(std::string(function) + "() got multiple values for argument '" + name + "'");
      values_[index] = value;
    }
  }

  bool has(size_t index) const { return values_[index].has_value(); }
  // The argument, or an Undefined when it was not given.
  Value get(size_t index) const { return values_[index] ? *values_[index] : Value(); }
  Value get_or(size_t index, Value fallback) const { return values_[index] ? *values_[index] : fallback; }
  bool get_boolean(size_t index, bool fallback) const { return values_[index] ? values_[index]->truthy() : fallback; }
  int64_t get_integer(size_t index, int64_t fallback) const {
    if (!values_[index] || values_[index]->is_none()) return fallback;
    const Value& value = *values_[index];
    if (value.kind() == Value::Kind::integer || value.kind() == Value::Kind::boolean) return value.as_integer();
    fail(function_ + "() expects an integer argument, got " + value.type_name());
  }
  // str() of the argument; nullopt when absent or None.
  std::optional<std::string> get_string(size_t index) const {
    if (!values_[index] || values_[index]->is_none()) return std::nullopt;
    return values_[index]->str();
  }

  [[noreturn]] void fail(const std::string& message) const {
    throw TemplateError(TemplateError::Kind::runtime, message);
  }

 private:
  std::string function_;
  std::vector<std::optional<Value>> values_;
};

}  // namespace pagedllm::jinja
