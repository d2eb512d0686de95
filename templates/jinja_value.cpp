// Jinja values: construction, Python truthiness, str()/repr(), equality (see jinja_value.h).
#include "templates/jinja_value.h"

#include <nlohmann/json.hpp>

#include "templates/jinja_error.h"
#include "templates/jinja_limits.h"
#include "templates/jinja_text.h"

namespace pagedllm::jinja {
namespace {

// Deep enough for any real data, shallow enough that printing or comparing never exhausts the stack.
constexpr int kMaxPrintDepth = 500;

[[noreturn]] void fail_too_deep() {
  throw TemplateError(TemplateError::Kind::limit, "a value is nested too deeply (more than " +
                                                      std::to_string(kMaxPrintDepth) + " levels)");
}

bool is_container(const Value& value) {
  return value.is_list() || value.is_dict() || value.is_object();
}

// Containers are released through a queue rather than by recursion: a list nested a million levels deep (which a
// loop can build) would otherwise overflow the stack in its destructor.
thread_local std::vector<Value>* t_release_queue = nullptr;

template <typename Take>
void release_contents(size_t count, Take take) {
  if (t_release_queue != nullptr) {
    for (size_t i = 0; i < count; ++i) {
      if (Value* child = take(i)) t_release_queue->push_back(std::move(*child));
    }
    return;
  }
  std::vector<Value> queue;
  t_release_queue = &queue;
  for (size_t i = 0; i < count; ++i) {
    if (Value* child = take(i)) queue.push_back(std::move(*child));
  }
  while (!queue.empty()) {
    Value last = std::move(queue.back());
    queue.pop_back();
    // `last` dies here; if it was the final owner, its own children land in `queue` instead of recursing.
  }
  t_release_queue = nullptr;
}

Value from_json_at_depth(const nlohmann::ordered_json& json, int depth) {
  if (depth > kMaxPrintDepth) fail_too_deep();
  switch (json.type()) {
    case nlohmann::ordered_json::value_t::null:
    case nlohmann::ordered_json::value_t::discarded:
      return Value::none();
    case nlohmann::ordered_json::value_t::boolean:
      return Value::boolean(json.get<bool>());
    case nlohmann::ordered_json::value_t::number_integer:
      return Value::integer(json.get<int64_t>());
    case nlohmann::ordered_json::value_t::number_unsigned: {
      uint64_t value = json.get<uint64_t>();
      if (value > static_cast<uint64_t>(INT64_MAX)) return Value::floating(static_cast<double>(value));
      return Value::integer(static_cast<int64_t>(value));
    }
    case nlohmann::ordered_json::value_t::number_float:
      return Value::floating(json.get<double>());
    case nlohmann::ordered_json::value_t::string: {
      const auto& text = json.get_ref<const std::string&>();
      charge_render_bytes(text.size() + kStringValueOverhead);
      return Value::string(text);
    }
    case nlohmann::ordered_json::value_t::array: {
      charge_render_bytes(kContainerValueOverhead + json.size() * sizeof(Value));
      std::vector<Value> items;
      items.reserve(json.size());
      for (const auto& item : json) items.push_back(from_json_at_depth(item, depth + 1));
      return Value::list(std::move(items));
    }
    case nlohmann::ordered_json::value_t::object: {
      charge_render_bytes(kContainerValueOverhead + json.size() * 2 * sizeof(Value));
      Dict dict;
      for (const auto& [key, item] : json.items()) {
        charge_render_bytes(key.size() + kStringValueOverhead);
        dict.set(Value::string(key), from_json_at_depth(item, depth + 1));
      }
      return Value::dict(std::move(dict));
    }
    case nlohmann::ordered_json::value_t::binary: {
      charge_render_bytes(kContainerValueOverhead + json.get_binary().size() * sizeof(Value));
      std::vector<Value> bytes;
      for (uint8_t byte : json.get_binary()) bytes.push_back(Value::integer(byte));
      return Value::list(std::move(bytes));
    }
  }
  return Value::none();
}

// repr() appends to one buffer, checking its size against the render's value limit before each piece: a list
// holding the same 30 MB string a thousand times must fail before 30 GB exist, and nested containers must not copy
// their contents once per level.
class ReprWriter {
 public:
  ReprWriter() : limit_(render_value_limit()) {}

  std::string take() {
    charge_render_bytes(out_.size());
    return std::move(out_);
  }

  void append(std::string_view piece) {
    if (out_.size() + piece.size() > limit_) fail_render_value_size(out_.size() + piece.size());
    out_.append(piece);
  }

  void write(const Value& value, int depth) {
    if (depth > kMaxPrintDepth) fail_too_deep();
    switch (value.kind()) {
      case Value::Kind::undefined: append("Undefined"); return;
      case Value::Kind::none: append("None"); return;
      case Value::Kind::boolean: append(value.as_boolean() ? "True" : "False"); return;
      case Value::Kind::integer: append(std::to_string(value.as_integer())); return;
      case Value::Kind::floating: append(text::format_float(value.as_floating())); return;
      case Value::Kind::string: append(text::repr_string(value.as_string())); return;
      case Value::Kind::list: {
        const List& list = value.as_list();
        charge_render_work(list.items.size() * sizeof(Value));
        append(list.is_tuple ? "(" : "[");
        write_items(list.items, depth);
        if (list.is_tuple && list.items.size() == 1) append(",");
        append(list.is_tuple ? ")" : "]");
        return;
      }
      case Value::Kind::dict: {
        charge_render_work(value.as_dict().size() * 2 * sizeof(Value));
        append("{");
        bool first = true;
        for (const auto& [key, item] : value.as_dict().entries()) {
          if (!first) append(", ");
          first = false;
          write(key, depth + 1);
          append(": ");
          write(item, depth + 1);
        }
        append("}");
        return;
      }
      case Value::Kind::object: {
        const Object& object = value.as_object();
        if (object.type_name == "LoopContext") {
          const Value* index = object.find("index");
          const Value* length = object.find("length");
          append("<LoopContext " + (index ? index->str() : "?") + "/" + (length ? length->str() : "?") + ">");
          return;
        }
        append("<" + object.type_name + " {");
        for (size_t i = 0; i < object.attributes.size(); ++i) {
          if (i > 0) append(", ");
          append(text::repr_string(object.attributes[i].first));
          append(": ");
          write(object.attributes[i].second, depth + 1);
        }
        append("}>");
        return;
      }
      case Value::Kind::function: append("<function " + value.as_function().name + ">"); return;
    }
  }

 private:
  void write_items(const std::vector<Value>& items, int depth) {
    for (size_t i = 0; i < items.size(); ++i) {
      if (i > 0) append(", ");
      write(items[i], depth + 1);
    }
  }

  size_t limit_;
  std::string out_;
};

std::string repr_of(const Value& value) {
  ReprWriter writer;
  writer.write(value, 0);
  return writer.take();
}

bool equals_at_depth(const Value& a, const Value& b, int depth) {
  if (depth > kMaxPrintDepth) fail_too_deep();
  if (a.is_number() && b.is_number()) {
    if (a.kind() == Value::Kind::floating || b.kind() == Value::Kind::floating) {
      return a.as_floating() == b.as_floating();
    }
    return a.as_integer() == b.as_integer();
  }
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case Value::Kind::undefined:
    case Value::Kind::none:
      return true;
    case Value::Kind::string: {
      if (a.same_object(b)) return true;  // as Python's identity shortcut: a string equals itself at no cost
      const std::string& left = a.as_string();
      const std::string& right = b.as_string();
      if (left.size() != right.size()) return false;
      charge_render_work(left.size());
      return left == right;
    }
    case Value::Kind::list: {
      if (a.is_tuple() != b.is_tuple()) return false;  // Python: (1,) != [1]
      const auto& left = a.items();
      const auto& right = b.items();
      if (left.size() != right.size()) return false;
      charge_render_work(left.size() * sizeof(Value));
      for (size_t i = 0; i < left.size(); ++i) {
        if (!equals_at_depth(left[i], right[i], depth + 1)) return false;
      }
      return true;
    }
    case Value::Kind::dict: {
      const Dict& left = a.as_dict();
      const Dict& right = b.as_dict();
      if (left.size() != right.size()) return false;
      charge_render_work(left.size() * 2 * sizeof(Value));
      for (const auto& [key, item] : left.entries()) {
        const Value* other = right.find(key);
        if (other == nullptr || !equals_at_depth(item, *other, depth + 1)) return false;
      }
      return true;
    }
    default:
      return a.same_object(b);
  }
}

}  // namespace

List::~List() {
  release_contents(items.size(), [this](size_t i) { return is_container(items[i]) ? &items[i] : nullptr; });
}

Dict::~Dict() {
  release_contents(entries_.size(), [this](size_t i) {
    return is_container(entries_[i].second) ? &entries_[i].second : nullptr;
  });
}

Object::~Object() {
  release_contents(attributes.size(), [this](size_t i) {
    return is_container(attributes[i].second) ? &attributes[i].second : nullptr;
  });
}

Value Value::undefined(std::string reason) {
  return Value(UndefinedTag{reason.empty() ? nullptr : std::make_shared<const std::string>(std::move(reason))});
}
Value Value::none() { return Value(Storage(nullptr)); }
Value Value::boolean(bool value) { return Value(Storage(value)); }
Value Value::integer(int64_t value) { return Value(Storage(value)); }
Value Value::floating(double value) { return Value(Storage(value)); }
Value Value::string(std::string value) {
  return Value(Storage(std::make_shared<const std::string>(std::move(value))));
}
Value Value::list(std::vector<Value> items) {
  return Value(Storage(ListPtr(std::make_shared<const List>(std::move(items), false))));
}
Value Value::tuple(std::vector<Value> items) {
  return Value(Storage(ListPtr(std::make_shared<const List>(std::move(items), true))));
}
Value Value::dict(Dict entries) { return Value(Storage(DictPtr(std::make_shared<const Dict>(std::move(entries))))); }
Value Value::object(std::shared_ptr<Object> object) { return Value(Storage(ObjectPtr(std::move(object)))); }
Value Value::function(std::string name, NativeFunction call) {
  return Value(Storage(FunctionPtr(std::make_shared<const Function>(Function{std::move(name), std::move(call)}))));
}

Value Value::from_json(const nlohmann::ordered_json& json) { return from_json_at_depth(json, 0); }

bool Value::is_tuple() const { return is_list() && as_list().is_tuple; }

int64_t Value::as_integer() const {
  if (kind() == Kind::boolean) return as_boolean() ? 1 : 0;
  return std::get<int64_t>(storage_);
}

double Value::as_floating() const {
  if (kind() == Kind::floating) return std::get<double>(storage_);
  return static_cast<double>(as_integer());
}

const std::vector<Value>& Value::items() const { return as_list().items; }

const std::string& Value::undefined_reason() const {
  static const std::string kNoReason;
  const auto& reason = std::get<UndefinedTag>(storage_).reason;
  return reason ? *reason : kNoReason;
}

bool Value::truthy() const {
  switch (kind()) {
    case Kind::undefined:
    case Kind::none: return false;
    case Kind::boolean: return as_boolean();
    case Kind::integer: return as_integer() != 0;
    case Kind::floating: return as_floating() != 0.0;
    case Kind::string: return !as_string().empty();
    case Kind::list: return !items().empty();
    case Kind::dict: return !as_dict().empty();
    case Kind::object:
    case Kind::function: return true;
  }
  return false;
}

std::string Value::str() const {
  switch (kind()) {
    case Kind::undefined: return "";
    case Kind::string: charge_render_work(as_string().size()); return as_string();
    default: return repr_of(*this);
  }
}

std::string Value::repr() const { return repr_of(*this); }

std::string Value::type_name() const {
  switch (kind()) {
    case Kind::undefined: return "Undefined";
    case Kind::none: return "NoneType";
    case Kind::boolean: return "bool";
    case Kind::integer: return "int";
    case Kind::floating: return "float";
    case Kind::string: return "str";
    case Kind::list: return is_tuple() ? "tuple" : "list";
    case Kind::dict: return "dict";
    case Kind::object: return as_object().type_name;
    case Kind::function: return "function";
  }
  return "object";
}

bool Value::equals(const Value& other) const { return equals_at_depth(*this, other, 0); }

bool Value::same_object(const Value& other) const {
  if (kind() != other.kind()) return false;
  switch (kind()) {
    case Kind::undefined:
    case Kind::none: return true;
    case Kind::boolean: return as_boolean() == other.as_boolean();
    case Kind::integer: return as_integer() == other.as_integer();  // CPython caches small ints; close enough
    case Kind::floating: return std::get<double>(storage_) == std::get<double>(other.storage_);
    case Kind::string: return std::get<StringPtr>(storage_) == std::get<StringPtr>(other.storage_);
    case Kind::list: return std::get<ListPtr>(storage_) == std::get<ListPtr>(other.storage_);
    case Kind::dict: return std::get<DictPtr>(storage_) == std::get<DictPtr>(other.storage_);
    case Kind::object: return std::get<ObjectPtr>(storage_) == std::get<ObjectPtr>(other.storage_);
    case Kind::function: return std::get<FunctionPtr>(storage_) == std::get<FunctionPtr>(other.storage_);
  }
  return false;
}

void Dict::set(Value key, Value value) {
  switch (key.kind()) {
    case Value::Kind::list:
      if (!key.is_tuple()) break;
      [[fallthrough]];
    case Value::Kind::none:
    case Value::Kind::boolean:
    case Value::Kind::integer:
    case Value::Kind::floating:
    case Value::Kind::string: {
      if (key.is_string()) {
        // Hashing reads the whole key, and the index keeps a copy of it.
        charge_render_bytes(key.as_string().size());
        auto [at, inserted] = string_index_.try_emplace(key.as_string(), entries_.size());
        if (!inserted) {
          entries_[at->second].second = std::move(value);
          return;
        }
        entries_.emplace_back(std::move(key), std::move(value));
        return;
      }
      charge_render_work(entries_.size() * sizeof(Value));  // other keys are found by a linear scan
      for (auto& entry : entries_) {
        if (entry.first.equals(key)) {
          entry.second = std::move(value);
          return;
        }
      }
      entries_.emplace_back(std::move(key), std::move(value));
      return;
    }
    default:
      break;
  }
  throw TemplateError(TemplateError::Kind::runtime, "unhashable type: '" + key.type_name() + "' used as a dict key");
}

const Value* Dict::find(std::string_view key) const {
  charge_render_work(key.size());  // hashing reads the whole key
  auto at = string_index_.find(key);
  return at == string_index_.end() ? nullptr : &entries_[at->second].second;
}

const Value* Dict::find(const Value& key) const {
  if (key.is_string()) return find(std::string_view(key.as_string()));
  if (key.is_undefined() || key.is_dict() || (key.is_list() && !key.is_tuple()) || key.is_object()) return nullptr;
  charge_render_work(entries_.size() * sizeof(Value));
  for (const auto& entry : entries_) {
    if (!entry.first.is_string() && entry.first.equals(key)) return &entry.second;
  }
  return nullptr;
}

const Value* Object::find(std::string_view name) const {
  for (const auto& [attribute, value] : attributes) {
    if (attribute == name) return &value;
  }
  return nullptr;
}

void Object::set(std::string name, Value value) {
  for (auto& [attribute, current] : attributes) {
    if (attribute == name) {
      current = std::move(value);
      return;
    }
  }
  attributes.emplace_back(std::move(name), std::move(value));
}

}  // namespace pagedllm::jinja
