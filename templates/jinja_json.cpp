// Python's json.dumps for Jinja values, as Hugging Face's tojson filter calls it (see jinja_builtins.h): the same
// separators (", " and ": ", or "," when indenting), the same float spelling (repr, NaN, Infinity), dict keys
// coerced to strings the way Python does, and non-serialisable values reported as TypeErrors.
#include <algorithm>
#include <cmath>

#include "templates/jinja_builtins.h"
#include "templates/jinja_error.h"
#include "templates/jinja_limits.h"
#include "templates/jinja_text.h"

namespace pagedllm::jinja {
namespace {

constexpr int kMaxJsonDepth = 500;

[[noreturn]] void fail_runtime(const std::string& message) {
  throw TemplateError(TemplateError::Kind::runtime, message);
}

std::string json_float(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value < 0 ? "-Infinity" : "Infinity";
  return text::format_float(value);
}

std::string json_key(const Value& key) {
  switch (key.kind()) {
    case Value::Kind::string: return key.as_string();
    case Value::Kind::boolean: return key.as_boolean() ? "true" : "false";
    case Value::Kind::integer: return std::to_string(key.as_integer());
    case Value::Kind::floating: return json_float(key.as_floating());
    case Value::Kind::none: return "null";
    default: fail_runtime("keys must be str, int, float, bool or None, not " + key.type_name());
  }
}

class JsonWriter {
 public:
  JsonWriter(const JsonFormat& format, RenderBudget& budget) : format_(format), budget_(budget) {
    item_separator_ = format.item_separator.value_or(format.indent ? "," : ", ");
  }

  std::string take() { return std::move(out_); }

  void write(const Value& value, int depth) {
    if (depth > kMaxJsonDepth) {
      throw TemplateError(TemplateError::Kind::limit, "a value is nested too deeply to serialise as JSON");
    }
    switch (value.kind()) {
      case Value::Kind::none: add("null"); break;
      case Value::Kind::boolean: add(value.as_boolean() ? "true" : "false"); break;
      case Value::Kind::integer: add(std::to_string(value.as_integer())); break;
      case Value::Kind::floating: add(json_float(value.as_floating())); break;
      case Value::Kind::string: write_string(value.as_string()); break;
      case Value::Kind::list: {
        const auto& items = value.items();
        charge_render_work(items.size() * sizeof(Value));
        if (items.empty()) {
          add("[]");
          break;
        }
        add("[");
        for (size_t i = 0; i < items.size(); ++i) {
          add(i == 0 ? newline(depth + 1) : item_separator_ + newline(depth + 1));
          write(items[i], depth + 1);
        }
        add(newline(depth) + "]");
        break;
      }
      case Value::Kind::dict: {
        std::vector<std::pair<std::string, const Value*>> entries;
        charge_render_work(value.as_dict().size() * 2 * sizeof(Value));
        for (const auto& [key, item] : value.as_dict().entries()) entries.emplace_back(json_key(key), &item);
        if (format_.sort_keys) {
          std::stable_sort(entries.begin(), entries.end(),
                           [](const auto& a, const auto& b) { return a.first < b.first; });
        }
        if (entries.empty()) {
          add("{}");
          break;
        }
        add("{");
        for (size_t i = 0; i < entries.size(); ++i) {
          add(i == 0 ? newline(depth + 1) : item_separator_ + newline(depth + 1));
          write_string(entries[i].first);
          add(format_.key_separator);
          write(*entries[i].second, depth + 1);
        }
        add(newline(depth) + "}");
        break;
      }
      default:
        fail_runtime("Object of type " + value.type_name() + " is not JSON serializable");
    }
  }

 private:
  // Every piece is checked against the value limit before it is appended: separators and indentation are the
  // template's own strings, as long as it likes, repeated for every item and every level.
  void add(std::string_view piece) {
    budget_.check_value_size(out_.size() + piece.size());
    charge_render_work(piece.size());
    out_.append(piece);
  }

  std::string newline(int level) const {
    if (!format_.indent) return "";
    budget_.check_value_size(out_.size() + 1 + format_.indent->size() * static_cast<size_t>(level));
    std::string text = "\n";
    for (int i = 0; i < level; ++i) text += *format_.indent;
    return text;
  }

  void write_string(const std::string& s) {
    out_.push_back('"');
    text::append_json_string(out_, s, format_.ensure_ascii);
    out_.push_back('"');
  }

  const JsonFormat& format_;
  RenderBudget& budget_;
  std::string item_separator_;
  std::string out_;
};

}  // namespace

std::string to_json(const Value& value, const JsonFormat& format, RenderBudget& budget) {
  JsonWriter writer(format, budget);
  writer.write(value, 0);
  std::string out = writer.take();
  budget.charge_bytes(out.size());
  return out;
}

}  // namespace pagedllm::jinja
