#pragma once
// The one error type of the Jinja interpreter. A chat template is user input (it comes from a model file or a
// --template-file), so everything that can go wrong with it is a pagedllm::Error with a message that says where.
#include <string>

#include "common/error.h"

namespace pagedllm::jinja {

class TemplateError : public Error {
 public:
  enum class Kind {
    syntax,   // the template could not be parsed
    runtime,  // evaluating it failed (type error, unknown filter, undefined value used in arithmetic, ...)
    raised,   // the template called raise_exception(message)
    limit,    // it ran past a RenderLimits bound (output size, steps, nesting)
  };

  // line/column are 1-based; 0 means unknown.
  TemplateError(Kind kind, std::string detail, int line = 0, int column = 0)
      : Error(compose(kind, detail, line, column)), kind_(kind), detail_(std::move(detail)), line_(line),
        column_(column) {}

  Kind kind() const { return kind_; }
  // The message without the position prefix; for `raised`, exactly the template's own message.
  const std::string& detail() const { return detail_; }
  int line() const { return line_; }
  int column() const { return column_; }

 private:
  static std::string compose(Kind kind, const std::string& detail, int line, int column) {
    switch (kind) {
      case Kind::raised: return "the template raised an exception: " + detail;
      case Kind::syntax:
        if (line > 0) {
          return "template syntax error at line " + std::to_string(line) + ", column " + std::to_string(column) +
                 ": " + detail;
        }
        return "template syntax error: " + detail;
      case Kind::runtime:
      case Kind::limit:
        if (line > 0) return "template error at line " + std::to_string(line) + ": " + detail;
        return "template error: " + detail;
    }
    return detail;
  }

  Kind kind_;
  std::string detail_;
  int line_;
  int column_;
};

}  // namespace pagedllm::jinja
