#pragma once
// Values of the Jinja interpreter: the Python objects a chat template sees (None, bool, int, float, str, list, tuple,
// dict, a namespace, the loop object, functions) plus jinja2's Undefined. Strings and containers are immutable and
// shared (copying a Value is cheap), which matches the sandbox HF renders in: templates cannot mutate lists or dicts,
// only namespaces (`set ns.x = ...`), so Object alone is mutable. Dicts keep insertion order, as Python's do.
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace pagedllm::jinja {

class Value;
class RenderBudget;
struct List;
struct Dict;
struct Object;
struct Function;

// Arguments of a call, as written: `f(1, 2, key=3)`.
struct Arguments {
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> keyword;
};

using NativeFunction = std::function<Value(Arguments& arguments, RenderBudget& budget)>;

class Value {
 public:
  enum class Kind { undefined, none, boolean, integer, floating, string, list, dict, object, function };

  Value() = default;  // undefined, for no stated reason
  // `reason` is the error raised when the value is used where a defined one is needed, in jinja2's words
  // ("'x' is undefined", "'dict object' has no attribute 'y'").
  static Value undefined(std::string reason);
  static Value none();
  static Value boolean(bool value);
  static Value integer(int64_t value);
  static Value floating(double value);
  static Value string(std::string value);
  static Value list(std::vector<Value> items);
  static Value tuple(std::vector<Value> items);
  static Value dict(Dict entries);
  static Value object(std::shared_ptr<Object> object);
  static Value function(std::string name, NativeFunction call);
  // JSON null/bool/number/string/array/object -> None/bool/int or float/str/list/dict, keys in document order.
  // Throws TemplateError when nested deeper than the interpreter can print.
  static Value from_json(const nlohmann::ordered_json& json);

  Kind kind() const { return static_cast<Kind>(storage_.index()); }
  bool is_undefined() const { return kind() == Kind::undefined; }
  bool is_none() const { return kind() == Kind::none; }
  bool is_string() const { return kind() == Kind::string; }
  bool is_integer() const { return kind() == Kind::integer; }  // bool excluded, unlike Python's isinstance
  bool is_number() const { return kind() == Kind::boolean || kind() == Kind::integer || kind() == Kind::floating; }
  bool is_list() const { return kind() == Kind::list; }  // list or tuple
  bool is_tuple() const;
  bool is_dict() const { return kind() == Kind::dict; }
  bool is_object() const { return kind() == Kind::object; }
  bool is_function() const { return kind() == Kind::function; }

  // Accessors; the kind must match (bool counts as an integer for as_integer, any number for as_floating).
  bool as_boolean() const { return std::get<bool>(storage_); }
  int64_t as_integer() const;
  double as_floating() const;
  const std::string& as_string() const { return *std::get<StringPtr>(storage_); }
  const List& as_list() const { return *std::get<ListPtr>(storage_); }
  const std::vector<Value>& items() const;  // the items of a list or tuple
  const Dict& as_dict() const { return *std::get<DictPtr>(storage_); }
  Object& as_object() const { return *std::get<ObjectPtr>(storage_); }
  const Function& as_function() const { return *std::get<FunctionPtr>(storage_); }
  const std::string& undefined_reason() const;

  bool truthy() const;        // Python's bool()
  std::string str() const;    // Python's str(); Undefined prints as ""
  std::string repr() const;   // Python's repr()
  std::string type_name() const;  // Python's type(x).__name__: "str", "int", "NoneType", ...
  bool equals(const Value& other) const;  // Python's ==
  bool same_object(const Value& other) const;  // Python's `is`

 private:
  struct UndefinedTag {
    std::shared_ptr<const std::string> reason;
  };
  using StringPtr = std::shared_ptr<const std::string>;
  using ListPtr = std::shared_ptr<const List>;
  using DictPtr = std::shared_ptr<const Dict>;
  using ObjectPtr = std::shared_ptr<Object>;
  using FunctionPtr = std::shared_ptr<const Function>;
  // Order matches Kind.
  using Storage = std::variant<UndefinedTag, std::nullptr_t, bool, int64_t, double, StringPtr, ListPtr, DictPtr,
                               ObjectPtr, FunctionPtr>;

  explicit Value(Storage storage) : storage_(std::move(storage)) {}

  Storage storage_;
};

struct List {
  std::vector<Value> items;
  bool is_tuple = false;

  List() = default;
  List(std::vector<Value> values, bool tuple) : items(std::move(values)), is_tuple(tuple) {}
  List(const List&) = delete;
  List& operator=(const List&) = delete;
  ~List();
};

// An insertion-ordered dict. Keys are hashable values (str, numbers, None, tuples); string keys are indexed.
struct Dict {
  Dict() = default;
  Dict(Dict&&) = default;
  Dict& operator=(Dict&&) = default;
  ~Dict();

  // Inserts, or replaces the value of an equal key in place (Python keeps the first key's position).
  // Throws TemplateError for an unhashable key (list, dict, namespace, undefined).
  void set(Value key, Value value);
  const Value* find(const Value& key) const;
  const Value* find(std::string_view key) const;
  size_t size() const { return entries_.size(); }
  bool empty() const { return entries_.empty(); }
  const std::vector<std::pair<Value, Value>>& entries() const { return entries_; }

 private:
  // Looks up a string_view without building a std::string.
  struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  std::vector<std::pair<Value, Value>> entries_;
  std::unordered_map<std::string, size_t, StringHash, std::equal_to<>> string_index_;  // key -> position in entries_
};

// A mutable attribute bag: jinja2's Namespace (assignable) and the read-only loop object.
struct Object {
  std::string type_name;
  bool assignable = false;
  std::vector<std::pair<std::string, Value>> attributes;

  Object(std::string type, bool can_assign) : type_name(std::move(type)), assignable(can_assign) {}
  Object(const Object&) = delete;
  Object& operator=(const Object&) = delete;
  ~Object();

  const Value* find(std::string_view name) const;
  void set(std::string name, Value value);
};

struct Function {
  std::string name;
  NativeFunction call;
};

}  // namespace pagedllm::jinja
