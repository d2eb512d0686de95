#pragma once
// The syntax tree the Jinja parser builds and the interpreter walks. Plain data: every node records its kind and
// where it came from (for error messages); the interpreter switches on the kind and casts.
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "templates/jinja_value.h"

namespace pagedllm::jinja {

struct SourcePosition {
  int line = 0;
  int column = 0;
};

// ------------------------------------------------------------------------------------------------ expressions

enum class ExpressionKind {
  literal, name, list, tuple, dict, unary, binary, compare, attribute, subscript, slice, call, filter, test,
  conditional,
};

struct Expression {
  Expression(ExpressionKind k, SourcePosition p) : kind(k), where(p) {}
  virtual ~Expression() = default;
  ExpressionKind kind;
  SourcePosition where;
};
using ExpressionPtr = std::unique_ptr<Expression>;

struct CallArguments {
  std::vector<ExpressionPtr> positional;
  std::vector<std::pair<std::string, ExpressionPtr>> keyword;
};

struct LiteralExpression : Expression {
  LiteralExpression(SourcePosition p, Value v) : Expression(ExpressionKind::literal, p), value(std::move(v)) {}
  Value value;
};

struct NameExpression : Expression {
  NameExpression(SourcePosition p, std::string n) : Expression(ExpressionKind::name, p), name(std::move(n)) {}
  std::string name;
};

// [a, b] (kind list) or (a, b) (kind tuple).
struct SequenceExpression : Expression {
  SequenceExpression(ExpressionKind k, SourcePosition p) : Expression(k, p) {}
  std::vector<ExpressionPtr> items;
};

struct DictExpression : Expression {
  explicit DictExpression(SourcePosition p) : Expression(ExpressionKind::dict, p) {}
  std::vector<std::pair<ExpressionPtr, ExpressionPtr>> entries;
};

enum class UnaryOperator { negate, plus, logical_not };

struct UnaryExpression : Expression {
  UnaryExpression(SourcePosition p, UnaryOperator o, ExpressionPtr x)
      : Expression(ExpressionKind::unary, p), op(o), operand(std::move(x)) {}
  UnaryOperator op;
  ExpressionPtr operand;
};

enum class BinaryOperator {
  add, subtract, multiply, divide, floor_divide, modulo, power, concat, logical_and, logical_or,
};

struct BinaryExpression : Expression {
  BinaryExpression(SourcePosition p, BinaryOperator o, ExpressionPtr l, ExpressionPtr r)
      : Expression(ExpressionKind::binary, p), op(o), left(std::move(l)), right(std::move(r)) {}
  BinaryOperator op;
  ExpressionPtr left;
  ExpressionPtr right;
};

enum class CompareOperator { equal, not_equal, less, less_equal, greater, greater_equal, in, not_in };

// a < b <= c: Python's chained comparison.
struct CompareExpression : Expression {
  CompareExpression(SourcePosition p, ExpressionPtr f) : Expression(ExpressionKind::compare, p), first(std::move(f)) {}
  ExpressionPtr first;
  std::vector<std::pair<CompareOperator, ExpressionPtr>> rest;
};

struct AttributeExpression : Expression {
  AttributeExpression(SourcePosition p, ExpressionPtr o, std::string n)
      : Expression(ExpressionKind::attribute, p), object(std::move(o)), name(std::move(n)) {}
  ExpressionPtr object;
  std::string name;
};

struct SubscriptExpression : Expression {
  SubscriptExpression(SourcePosition p, ExpressionPtr o, ExpressionPtr i)
      : Expression(ExpressionKind::subscript, p), object(std::move(o)), index(std::move(i)) {}
  ExpressionPtr object;
  ExpressionPtr index;
};

// object[start:stop:step]; each bound may be null.
struct SliceExpression : Expression {
  SliceExpression(SourcePosition p, ExpressionPtr o) : Expression(ExpressionKind::slice, p), object(std::move(o)) {}
  ExpressionPtr object;
  ExpressionPtr start;
  ExpressionPtr stop;
  ExpressionPtr step;
};

struct CallExpression : Expression {
  CallExpression(SourcePosition p, ExpressionPtr c) : Expression(ExpressionKind::call, p), callee(std::move(c)) {}
  ExpressionPtr callee;
  CallArguments arguments;
};

// operand | name(arguments). In `{% filter %}` and `{% set x | f %}` blocks the operand is null: the block's
// rendered text is the input.
struct FilterExpression : Expression {
  FilterExpression(SourcePosition p, ExpressionPtr o, std::string n)
      : Expression(ExpressionKind::filter, p), operand(std::move(o)), name(std::move(n)) {}
  ExpressionPtr operand;
  std::string name;
  CallArguments arguments;
};

// operand is [not] name(arguments)
struct TestExpression : Expression {
  TestExpression(SourcePosition p, ExpressionPtr o, std::string n)
      : Expression(ExpressionKind::test, p), operand(std::move(o)), name(std::move(n)) {}
  ExpressionPtr operand;
  std::string name;
  CallArguments arguments;
  bool negated = false;
};

// when_true if condition else when_false (when_false may be null: undefined)
struct ConditionalExpression : Expression {
  ConditionalExpression(SourcePosition p, ExpressionPtr c, ExpressionPtr t)
      : Expression(ExpressionKind::conditional, p), condition(std::move(c)), when_true(std::move(t)) {}
  ExpressionPtr condition;
  ExpressionPtr when_true;
  ExpressionPtr when_false;
};

// ------------------------------------------------------------------------------------------------ statements

enum class StatementKind { text, output, if_, for_, set, set_block, macro, call_block, filter_block, with, break_,
                           continue_ };

struct Statement {
  Statement(StatementKind k, SourcePosition p) : kind(k), where(p) {}
  virtual ~Statement() = default;
  StatementKind kind;
  SourcePosition where;
};
using StatementPtr = std::unique_ptr<Statement>;
using Body = std::vector<StatementPtr>;

// What `set` and `for` assign to: one name, a tuple of names (unpacking), or `namespace_name.attribute`.
struct AssignTarget {
  std::vector<std::string> names;
  bool unpack = false;             // `a, b` (even with one name: `a,`)
  std::string namespace_attribute;  // non-empty for `ns.attr`; then names[0] is the namespace variable
};

struct TextStatement : Statement {
  TextStatement(SourcePosition p, std::string t) : Statement(StatementKind::text, p), text(std::move(t)) {}
  std::string text;
};

struct OutputStatement : Statement {
  OutputStatement(SourcePosition p, ExpressionPtr e) : Statement(StatementKind::output, p), expression(std::move(e)) {}
  ExpressionPtr expression;
};

struct IfStatement : Statement {
  explicit IfStatement(SourcePosition p) : Statement(StatementKind::if_, p) {}
  std::vector<std::pair<ExpressionPtr, Body>> branches;  // if, elif, elif, ...
  Body otherwise;
};

struct ForStatement : Statement {
  explicit ForStatement(SourcePosition p) : Statement(StatementKind::for_, p) {}
  AssignTarget target;
  ExpressionPtr iterable;
  ExpressionPtr filter;  // `for x in xs if cond`; may be null
  Body body;
  Body otherwise;  // runs when nothing was iterated
};

struct SetStatement : Statement {
  SetStatement(SourcePosition p, AssignTarget t, ExpressionPtr v)
      : Statement(StatementKind::set, p), target(std::move(t)), value(std::move(v)) {}
  AssignTarget target;
  ExpressionPtr value;
};

using FilterChain = std::vector<std::unique_ptr<FilterExpression>>;  // each with a null operand

struct SetBlockStatement : Statement {
  explicit SetBlockStatement(SourcePosition p) : Statement(StatementKind::set_block, p) {}
  AssignTarget target;
  FilterChain filters;
  Body body;
};

struct MacroParameter {
  std::string name;
  ExpressionPtr default_value;  // may be null
};

struct MacroStatement : Statement {
  explicit MacroStatement(SourcePosition p) : Statement(StatementKind::macro, p) {}
  std::string name;
  std::vector<MacroParameter> parameters;
  Body body;
};

// {% call(params) macro(args) %}body{% endcall %}: the body becomes `caller` inside the macro.
struct CallBlockStatement : Statement {
  explicit CallBlockStatement(SourcePosition p) : Statement(StatementKind::call_block, p) {}
  std::vector<MacroParameter> caller_parameters;
  std::unique_ptr<CallExpression> call;
  Body body;
};

struct FilterBlockStatement : Statement {
  explicit FilterBlockStatement(SourcePosition p) : Statement(StatementKind::filter_block, p) {}
  FilterChain filters;
  Body body;
};

struct WithStatement : Statement {
  explicit WithStatement(SourcePosition p) : Statement(StatementKind::with, p) {}
  std::vector<std::pair<AssignTarget, ExpressionPtr>> assignments;
  Body body;
};

struct LoopControlStatement : Statement {
  LoopControlStatement(StatementKind k, SourcePosition p) : Statement(k, p) {}
};

}  // namespace pagedllm::jinja
