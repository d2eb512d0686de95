#pragma once
// Renders parsed Jinja templates: the interpreter of the Jinja subset chat templates use, with the scoping rules of
// jinja2 (a `for` body gets a fresh scope every iteration, so `set` inside a loop does not leak out; `if` shares
// its scope; macros see their defining scope as it is at call time; namespaces are the way to carry state out of
// a loop) and the Undefined of jinja2's default environment (prints as "", is falsy, iterates as empty; fails when
// used in arithmetic or called).
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "templates/jinja_ast.h"
#include "templates/jinja_limits.h"
#include "templates/jinja_value.h"

namespace pagedllm::jinja {

using Variables = std::vector<std::pair<std::string, Value>>;

class Template {
 public:
  // Parses `source`. Throws TemplateError (syntax) for a template that cannot run: a syntax error, an unknown tag,
  // or an unknown filter or test outside an `if` (jinja2 rejects those at compile time too).
  explicit Template(std::string_view source);

  // Renders with `variables` as the global context, over jinja2's default globals (range, dict, namespace, joiner).
  // Throws TemplateError (runtime, raised or limit).
  std::string render(const Variables& variables, const RenderLimits& limits = {}) const;
  // The same, charging `budget`, which may already hold what building `variables` cost.
  std::string render(const Variables& variables, RenderBudget& budget) const;

 private:
  std::shared_ptr<const Body> body_;
};

// Hugging Face's raise_exception(message): ends the render with a TemplateError of kind `raised` whose detail() is
// exactly `message`.
Value raise_exception_function();

}  // namespace pagedllm::jinja
