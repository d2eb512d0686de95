// The Jinja interpreter (see jinja_interpreter.h): walks the syntax tree with a chain of scopes, charging every
// statement, expression and loop iteration to the render's budget.
#include "templates/jinja_interpreter.h"

#include <unordered_set>

#include <fmt/format.h>

#include "templates/jinja_builtins.h"
#include "templates/jinja_error.h"
#include "templates/jinja_operators.h"
#include "templates/jinja_parser.h"
#include "templates/jinja_text.h"

namespace pagedllm::jinja {
namespace {

[[noreturn]] void fail_runtime(const std::string& message) {
  throw TemplateError(TemplateError::Kind::runtime, message);
}

// Variables of one frame: the template's top level, one loop iteration, one macro call, one `with` block.
// Shared so that a macro can outlive the iteration that defined it (`set ns.m = m` carries it out).
struct Scope {
  std::shared_ptr<Scope> parent;
  std::vector<std::pair<std::string, Value>> variables;  // few per frame: a linear search beats hashing

  explicit Scope(std::shared_ptr<Scope> enclosing) : parent(std::move(enclosing)) {}

  const Value* find_local(std::string_view name) const {
    for (const auto& [variable, value] : variables) {
      if (variable == name) return &value;
    }
    return nullptr;
  }

  void set(const std::string& name, Value value) {
    for (auto& [variable, current] : variables) {
      if (variable == name) {
        current = std::move(value);
        return;
      }
    }
    variables.emplace_back(name, std::move(value));
  }
};
using ScopePtr = std::shared_ptr<Scope>;

enum class Flow { normal, break_loop, continue_loop };

class Interpreter {
 public:
  Interpreter(const Variables& globals, RenderBudget& budget) : globals_(globals), budget_(budget) {}
  Interpreter(const Interpreter&) = delete;
  Interpreter& operator=(const Interpreter&) = delete;

  // Values can form reference cycles that shared pointers never free: a macro holds the scope it was defined in,
  // which holds the macro; a namespace can hold itself, or a macro. Nothing made during a render is reachable after
  // it (it returns text), so the render breaks every cycle it could have made when it ends, thrown out or not.
  ~Interpreter() {
    for (const ScopePtr& scope : macro_scopes_) {
      scope->variables.clear();
      scope->parent.reset();
    }
    for (const Value& holder : assigned_namespaces_) holder.as_object().attributes.clear();
  }

  std::string render(const Body& body) {
    auto root = std::make_shared<Scope>(nullptr);
    std::string out;
    execute_body(body, root, out);
    return out;
  }

 private:
  // Counts nesting of execute/evaluate calls (macros included) so that no template can exhaust the stack.
  class DepthGuard {
   public:
    DepthGuard(Interpreter& interpreter, int line) : interpreter_(interpreter) {
      if (++interpreter_.depth_ > interpreter_.budget_.limits().max_depth) {
        --interpreter_.depth_;
        throw TemplateError(TemplateError::Kind::limit,
                            "evaluation nested more than " +
                                std::to_string(interpreter_.budget_.limits().max_depth) +
                                " levels deep (runaway recursion?)",
                            line);
      }
    }
    ~DepthGuard() { --interpreter_.depth_; }
    DepthGuard(const DepthGuard&) = delete;
    DepthGuard& operator=(const DepthGuard&) = delete;

   private:
    Interpreter& interpreter_;
  };

  // Errors raised without a position (by operators, filters, methods) get the line of the innermost node.
  [[noreturn]] static void rethrow_with_position(const TemplateError& error, SourcePosition where) {
    if (error.line() != 0 || where.line == 0) throw error;
    throw TemplateError(error.kind(), error.detail(), where.line, where.column);
  }

  void append(std::string& out, std::string_view text, int line) {
    if (out.size() + text.size() > budget_.limits().max_output_bytes) {
      throw TemplateError(TemplateError::Kind::limit,
                          "the rendered text would exceed " + std::to_string(budget_.limits().max_output_bytes) +
                              " bytes",
                          line);
    }
    budget_.charge_bytes(text.size(), line);
    out.append(text);
  }

  // ---------------------------------------------------------------------------------------- names

  Value lookup(const std::string& name, const ScopePtr& scope) const {
    for (const Scope* frame = scope.get(); frame != nullptr; frame = frame->parent.get()) {
      if (const Value* value = frame->find_local(name)) return *value;
    }
    for (const auto& [variable, value] : globals_) {
      if (variable == name) return value;
    }
    return builtin_global(name);
  }

  void assign(const AssignTarget& target, const Value& value, const ScopePtr& scope) {
    if (!target.namespace_attribute.empty()) {
      Value holder = lookup(target.names[0], scope);
      if (!holder.is_object() || !holder.as_object().assignable) {
        fail_runtime("cannot assign attribute on non-namespace object '" + target.names[0] + "' (a " +
                     holder.type_name() + ")");
      }
      holder.as_object().set(target.namespace_attribute, value);
      if (remembered_namespaces_.insert(&holder.as_object()).second) {
        budget_.charge_bytes(kKeptAliveBytes);  // it lives until the render ends
        assigned_namespaces_.push_back(holder);
      }
      return;
    }
    if (!target.unpack) {
      scope->set(target.names[0], value);
      return;
    }
    std::vector<Value> parts = iterate(value);
    if (parts.size() != target.names.size()) {
      fail_runtime(parts.size() < target.names.size()
                       ? "not enough values to unpack (expected " + std::to_string(target.names.size()) + ", got " +
                             std::to_string(parts.size()) + ")"
                       : "too many values to unpack (expected " + std::to_string(target.names.size()) + ")");
    }
    for (size_t i = 0; i < parts.size(); ++i) scope->set(target.names[i], parts[i]);
  }

  // ---------------------------------------------------------------------------------------- statements

  Flow execute_body(const Body& body, const ScopePtr& scope, std::string& out) {
    for (const StatementPtr& statement : body) {
      Flow flow = execute(*statement, scope, out);
      if (flow != Flow::normal) return flow;
    }
    return Flow::normal;
  }

  Flow execute(const Statement& statement, const ScopePtr& scope, std::string& out) {
    DepthGuard guard(*this, statement.where.line);
    budget_.charge_steps(1, statement.where.line);
    try {
      switch (statement.kind) {
        case StatementKind::text:
          append(out, static_cast<const TextStatement&>(statement).text, statement.where.line);
          return Flow::normal;
        case StatementKind::output: {
          Value value = evaluate(*static_cast<const OutputStatement&>(statement).expression, scope);
          if (value.is_string()) append(out, value.as_string(), statement.where.line);
          else append(out, value.str(), statement.where.line);
          return Flow::normal;
        }
        case StatementKind::if_: {
          const auto& node = static_cast<const IfStatement&>(statement);
          for (const auto& [condition, body] : node.branches) {
            if (evaluate(*condition, scope).truthy()) return execute_body(body, scope, out);
          }
          return execute_body(node.otherwise, scope, out);
        }
        case StatementKind::for_:
          execute_for(static_cast<const ForStatement&>(statement), scope, out);
          return Flow::normal;
        case StatementKind::set: {
          const auto& node = static_cast<const SetStatement&>(statement);
          assign(node.target, evaluate(*node.value, scope), scope);
          return Flow::normal;
        }
        case StatementKind::set_block: {
          const auto& node = static_cast<const SetBlockStatement&>(statement);
          std::string captured;
          execute_body(node.body, scope, captured);
          assign(node.target, apply_filter_chain(node.filters, Value::string(std::move(captured)), scope), scope);
          return Flow::normal;
        }
        case StatementKind::macro: {
          const auto& node = static_cast<const MacroStatement&>(statement);
          scope->set(node.name, make_macro(node.name, node.parameters, node.body, scope));
          return Flow::normal;
        }
        case StatementKind::call_block:
          execute_call_block(static_cast<const CallBlockStatement&>(statement), scope, out);
          return Flow::normal;
        case StatementKind::filter_block: {
          const auto& node = static_cast<const FilterBlockStatement&>(statement);
          std::string captured;
          execute_body(node.body, scope, captured);
          Value filtered = apply_filter_chain(node.filters, Value::string(std::move(captured)), scope);
          append(out, filtered.str(), statement.where.line);
          return Flow::normal;
        }
        case StatementKind::with: {
          const auto& node = static_cast<const WithStatement&>(statement);
          auto inner = std::make_shared<Scope>(scope);
          std::vector<Value> values;  // all evaluated in the outer scope first, as jinja2 does
          for (const auto& [target, expression] : node.assignments) values.push_back(evaluate(*expression, scope));
          for (size_t i = 0; i < values.size(); ++i) assign(node.assignments[i].first, values[i], inner);
          return execute_body(node.body, inner, out);
        }
        case StatementKind::break_: return Flow::break_loop;
        case StatementKind::continue_: return Flow::continue_loop;
      }
    } catch (const TemplateError& error) {
      rethrow_with_position(error, statement.where);
    }
    return Flow::normal;
  }

  Value make_loop_object(size_t index, const std::vector<Value>& items, const Value& cycle, const Value& changed) {
    size_t length = items.size();
    auto loop = std::make_shared<Object>("LoopContext", false);
    auto integer = [](size_t n) { return Value::integer(static_cast<int64_t>(n)); };
    loop->attributes = {
        {"index", integer(index + 1)},
        {"index0", integer(index)},
        {"revindex", integer(length - index)},
        {"revindex0", integer(length - index - 1)},
        {"first", Value::boolean(index == 0)},
        {"last", Value::boolean(index + 1 == length)},
        {"length", integer(length)},
        {"depth", Value::integer(1)},
        {"depth0", Value::integer(0)},
        {"previtem", index > 0 ? items[index - 1] : Value::undefined("there is no previous item")},
        {"nextitem", index + 1 < length ? items[index + 1] : Value::undefined("there is no next item")},
        {"cycle", cycle},
        {"changed", changed},
    };
    return Value::object(std::move(loop));
  }

  void execute_for(const ForStatement& node, const ScopePtr& scope, std::string& out) {
    std::vector<Value> items = iterate(evaluate(*node.iterable, scope));
    if (node.filter) {
      std::vector<Value> kept;
      for (Value& item : items) {
        budget_.charge_steps(1, node.where.line);
        auto probe = std::make_shared<Scope>(scope);
        assign(node.target, item, probe);
        if (evaluate(*node.filter, probe).truthy()) kept.push_back(std::move(item));
      }
      items = std::move(kept);
    }
    if (items.empty()) {
      execute_body(node.otherwise, scope, out);
      return;
    }
    // loop.cycle and loop.changed read the position and remember the last value across iterations.
    auto position = std::make_shared<size_t>(0);
    auto last_seen = std::make_shared<std::optional<Value>>();
    // loop.changed(loop) would make a cycle through the loop object: let go of the last value when the loop ends.
    struct ForgetLastSeen {
      std::shared_ptr<std::optional<Value>> last_seen;
      ~ForgetLastSeen() { last_seen->reset(); }
    } forget_last_seen{last_seen};
    Value cycle = Value::function("loop.cycle", [position](Arguments& arguments, RenderBudget&) {
      if (arguments.positional.empty()) fail_runtime("no items for cycling given");
      return arguments.positional[*position % arguments.positional.size()];
    });
    Value changed = Value::function("loop.changed", [last_seen](Arguments& arguments, RenderBudget&) {
      Value now = Value::tuple(arguments.positional);
      if (*last_seen && (*last_seen)->equals(now)) return Value::boolean(false);
      *last_seen = now;
      return Value::boolean(true);
    });
    for (size_t i = 0; i < items.size(); ++i) {
      budget_.charge_steps(1, node.where.line);
      *position = i;
      auto iteration = std::make_shared<Scope>(scope);
      assign(node.target, items[i], iteration);
      iteration->set("loop", make_loop_object(i, items, cycle, changed));
      if (execute_body(node.body, iteration, out) == Flow::break_loop) break;
    }
  }

  // A macro (or a call block's `caller`): a function that renders `body` in a fresh frame over `definition`.
  Value make_macro(const std::string& name, const std::vector<MacroParameter>& parameters, const Body& body,
                   const ScopePtr& definition) {
    budget_.charge_bytes(kKeptAliveBytes);  // the scope lives until the render ends
    macro_scopes_.push_back(definition);
    return Value::function(name, [this, name, &parameters, &body, definition](Arguments& arguments, RenderBudget&) {
      if (macro_depth_ >= budget_.limits().max_macro_depth) {
        throw TemplateError(TemplateError::Kind::limit, "macros nested more than " +
                                                            std::to_string(budget_.limits().max_macro_depth) +
                                                            " calls deep (runaway recursion?)");
      }
      ++macro_depth_;
      struct Exit {
        int& depth;
        ~Exit() { --depth; }
      } exit{macro_depth_};
      auto frame = std::make_shared<Scope>(definition);
      std::vector<bool> given(parameters.size(), false);
      std::vector<Value> extra_positional;
      for (size_t i = 0; i < arguments.positional.size(); ++i) {
        if (i < parameters.size()) {
          frame->set(parameters[i].name, arguments.positional[i]);
          given[i] = true;
        } else {
          extra_positional.push_back(arguments.positional[i]);
        }
      }
      Dict extra_keywords;
      for (const auto& [keyword, value] : arguments.keyword) {
        size_t index = 0;
        while (index < parameters.size() && parameters[index].name != keyword) ++index;
        if (index < parameters.size()) {
          if (given[index]) fail_runtime("macro '" + name + "' got multiple values for argument '" + keyword + "'");
          frame->set(keyword, value);
          given[index] = true;
        } else if (keyword == "caller") {
          frame->set("caller", value);
        } else {
          extra_keywords.set(Value::string(keyword), value);
        }
      }
      for (size_t i = 0; i < parameters.size(); ++i) {
        if (given[i]) continue;
        frame->set(parameters[i].name,
                   parameters[i].default_value
                       ? evaluate(*parameters[i].default_value, frame)
                       : Value::undefined("parameter '" + parameters[i].name + "' was not provided"));
      }
      frame->set("varargs", Value::tuple(std::move(extra_positional)));
      frame->set("kwargs", Value::dict(std::move(extra_keywords)));
      std::string rendered;
      execute_body(body, frame, rendered);
      return Value::string(std::move(rendered));
    });
  }

  void execute_call_block(const CallBlockStatement& node, const ScopePtr& scope, std::string& out) {
    Value callee = evaluate(*node.call->callee, scope);
    Arguments arguments = evaluate_arguments(node.call->arguments, scope);
    arguments.keyword.emplace_back("caller", make_macro("caller", node.caller_parameters, node.body, scope));
    Value result = call(callee, arguments);
    append(out, result.str(), node.where.line);
  }

  Value apply_filter_chain(const FilterChain& filters, Value value, const ScopePtr& scope) {
    for (const auto& filter : filters) {
      Arguments arguments = evaluate_arguments(filter->arguments, scope);
      value = apply_filter(filter->name, value, arguments, budget_);
    }
    return value;
  }

  // ---------------------------------------------------------------------------------------- expressions

  Arguments evaluate_arguments(const CallArguments& call_arguments, const ScopePtr& scope) {
    Arguments arguments;
    arguments.positional.reserve(call_arguments.positional.size());
    for (const ExpressionPtr& expression : call_arguments.positional) {
      arguments.positional.push_back(evaluate(*expression, scope));
    }
    for (const auto& [name, expression] : call_arguments.keyword) {
      arguments.keyword.emplace_back(name, evaluate(*expression, scope));
    }
    return arguments;
  }

  Value call(const Value& callee, Arguments& arguments) {
    if (callee.is_function()) return callee.as_function().call(arguments, budget_);
    if (callee.is_undefined()) fail_undefined(callee);
    fail_runtime(fmt::format("'{}' object is not callable", callee.type_name()));
  }

  Value evaluate(const Expression& expression, const ScopePtr& scope) {
    DepthGuard guard(*this, expression.where.line);
    budget_.charge_steps(1, expression.where.line);
    try {
      return evaluate_unguarded(expression, scope);
    } catch (const TemplateError& error) {
      rethrow_with_position(error, expression.where);
    }
  }

  Value evaluate_unguarded(const Expression& expression, const ScopePtr& scope) {
    switch (expression.kind) {
      case ExpressionKind::literal:
        return static_cast<const LiteralExpression&>(expression).value;
      case ExpressionKind::name: {
        const auto& node = static_cast<const NameExpression&>(expression);
        Value value = lookup(node.name, scope);
        if (value.is_undefined() && value.undefined_reason().empty()) {
          return Value::undefined("'" + node.name + "' is undefined");
        }
        return value;
      }
      case ExpressionKind::list:
      case ExpressionKind::tuple: {
        const auto& node = static_cast<const SequenceExpression&>(expression);
        std::vector<Value> items;
        items.reserve(node.items.size());
        for (const ExpressionPtr& item : node.items) items.push_back(evaluate(*item, scope));
        budget_.charge_bytes(items.size() * sizeof(Value), expression.where.line);
        return expression.kind == ExpressionKind::list ? Value::list(std::move(items))
                                                       : Value::tuple(std::move(items));
      }
      case ExpressionKind::dict: {
        const auto& node = static_cast<const DictExpression&>(expression);
        Dict dict;
        for (const auto& [key, value] : node.entries) dict.set(evaluate(*key, scope), evaluate(*value, scope));
        budget_.charge_bytes(dict.size() * 2 * sizeof(Value), expression.where.line);
        return Value::dict(std::move(dict));
      }
      case ExpressionKind::unary: {
        const auto& node = static_cast<const UnaryExpression&>(expression);
        return unary_operation(node.op, evaluate(*node.operand, scope));
      }
      case ExpressionKind::binary: {
        const auto& node = static_cast<const BinaryExpression&>(expression);
        Value left = evaluate(*node.left, scope);
        // Python's and/or return an operand, not a bool, and skip the right side when the left decides.
        if (node.op == BinaryOperator::logical_and) return left.truthy() ? evaluate(*node.right, scope) : left;
        if (node.op == BinaryOperator::logical_or) return left.truthy() ? left : evaluate(*node.right, scope);
        return binary_operation(node.op, left, evaluate(*node.right, scope), budget_);
      }
      case ExpressionKind::compare: {
        const auto& node = static_cast<const CompareExpression&>(expression);
        Value left = evaluate(*node.first, scope);
        for (const auto& [op, operand] : node.rest) {
          Value right = evaluate(*operand, scope);
          if (!compare_values(op, left, right)) return Value::boolean(false);
          left = std::move(right);
        }
        return Value::boolean(true);
      }
      case ExpressionKind::attribute: {
        const auto& node = static_cast<const AttributeExpression&>(expression);
        return get_attribute(evaluate(*node.object, scope), node.name);
      }
      case ExpressionKind::subscript: {
        const auto& node = static_cast<const SubscriptExpression&>(expression);
        Value object = evaluate(*node.object, scope);
        return get_item(object, evaluate(*node.index, scope));
      }
      case ExpressionKind::slice: {
        const auto& node = static_cast<const SliceExpression&>(expression);
        Value object = evaluate(*node.object, scope);
        auto bound = [&](const ExpressionPtr& part) { return part ? evaluate(*part, scope) : Value::none(); };
        Value start = bound(node.start);
        Value stop = bound(node.stop);
        Value step = bound(node.step);
        return slice(object, start, stop, step, budget_);
      }
      case ExpressionKind::call: {
        const auto& node = static_cast<const CallExpression&>(expression);
        Value callee = evaluate(*node.callee, scope);
        Arguments arguments = evaluate_arguments(node.arguments, scope);
        return call(callee, arguments);
      }
      case ExpressionKind::filter: {
        const auto& node = static_cast<const FilterExpression&>(expression);
        Value input = node.operand ? evaluate(*node.operand, scope) : Value();
        Arguments arguments = evaluate_arguments(node.arguments, scope);
        return apply_filter(node.name, input, arguments, budget_);
      }
      case ExpressionKind::test: {
        const auto& node = static_cast<const TestExpression&>(expression);
        Value input = evaluate(*node.operand, scope);
        Arguments arguments = evaluate_arguments(node.arguments, scope);
        bool result = apply_test(node.name, input, arguments, budget_);
        return Value::boolean(node.negated ? !result : result);
      }
      case ExpressionKind::conditional: {
        const auto& node = static_cast<const ConditionalExpression&>(expression);
        if (evaluate(*node.condition, scope).truthy()) return evaluate(*node.when_true, scope);
        if (node.when_false) return evaluate(*node.when_false, scope);
        return Value::undefined("the inline if expression on line " + std::to_string(expression.where.line) +
                                " evaluated to false and no else section was defined");
      }
    }
    fail_runtime("unknown expression");
  }

  const Variables& globals_;
  RenderBudget& budget_;
  // About what keeping a scope or a namespace until the end of the render costs (its few variables, the loop object).
  static constexpr size_t kKeptAliveBytes = 1024;
  std::vector<ScopePtr> macro_scopes_;  // scopes macros were defined in, emptied when the render ends
  std::vector<Value> assigned_namespaces_;  // namespaces given an attribute, emptied when the render ends
  std::unordered_set<const Object*> remembered_namespaces_;
  int depth_ = 0;
  int macro_depth_ = 0;
};

}  // namespace

Template::Template(std::string_view source) : body_(std::make_shared<const Body>(parse_template(source))) {}

std::string Template::render(const Variables& variables, const RenderLimits& limits) const {
  RenderBudget budget(limits);
  return render(variables, budget);
}

std::string Template::render(const Variables& variables, RenderBudget& budget) const {
  RenderBudget::Activation active(budget);
  Interpreter interpreter(variables, budget);
  return interpreter.render(*body_);
}

Value raise_exception_function() {
  return Value::function("raise_exception", [](Arguments& arguments, RenderBudget&) -> Value {
    std::string message = arguments.positional.empty() ? std::string() : arguments.positional[0].str();
    // The message is shown to the user (and in the chatml fallback's notice): the start of a huge one will do.
    throw TemplateError(TemplateError::Kind::raised, text::abbreviate(message, 4096));
  });
}

}  // namespace pagedllm::jinja
