// Jinja parser (see jinja_parser.h). Recursive descent shaped like jinja2's own parser, so that precedence quirks
// (filters bind tighter than unary minus's operand but looser than postfix, `**` is left-associative, an `if`
// statement's test takes no inline conditional) come out the same.
#include "templates/jinja_parser.h"

#include <algorithm>
#include <initializer_list>

#include "templates/jinja_builtins.h"
#include "templates/jinja_error.h"
#include "templates/jinja_lexer.h"

namespace pagedllm::jinja {
namespace {

// Nesting of statements and expressions together; deep enough for any real template, shallow enough that neither
// parsing nor evaluating can exhaust the stack.
constexpr int kMaxParseDepth = 200;
// Operator links (a + b, x | f, obj.attr, a if c else b) within one tag. Each link can add a level to the syntax
// tree, which is checked, evaluated and destroyed recursively, so this bounds the tree's height.
constexpr int kMaxLinksPerTag = 2000;

class Parser {
 public:
  explicit Parser(std::vector<Token> tokens) : tokens_(std::move(tokens)) {}

  Body parse() {
    std::string found;
    Body body = parse_body({}, found);
    if (current().kind != TokenKind::end) fail("unexpected " + describe(current()));
    return body;
  }

 private:
  class DepthGuard {
   public:
    explicit DepthGuard(Parser& parser) : parser_(parser) {
      if (++parser_.depth_ > kMaxParseDepth) {
        parser_.fail("the template is nested too deeply (more than " + std::to_string(kMaxParseDepth) + " levels)");
      }
    }
    ~DepthGuard() { --parser_.depth_; }
    DepthGuard(const DepthGuard&) = delete;
    DepthGuard& operator=(const DepthGuard&) = delete;

   private:
    Parser& parser_;
  };

  // ------------------------------------------------------------------------------------------ token helpers
  const Token& current() const { return tokens_[std::min(pos_, tokens_.size() - 1)]; }
  const Token& peek(size_t ahead = 1) const { return tokens_[std::min(pos_ + ahead, tokens_.size() - 1)]; }
  void advance() {
    if (pos_ < tokens_.size() - 1) ++pos_;
  }
  SourcePosition where() const { return {current().line, current().column}; }

  static bool is_op(const Token& token, std::string_view op) { return token.kind == TokenKind::op && token.text == op; }
  static bool is_name(const Token& token, std::string_view name) {
    return token.kind == TokenKind::name && token.text == name;
  }
  bool at_op(std::string_view op) const { return is_op(current(), op); }
  bool at_name(std::string_view name) const { return is_name(current(), name); }

  static std::string describe(const Token& token) {
    switch (token.kind) {
      case TokenKind::text: return "template text";
      case TokenKind::variable_begin: return "'{{'";
      case TokenKind::variable_end: return "end of print statement '}}'";
      case TokenKind::block_begin: return "'{%'";
      case TokenKind::block_end: return "end of statement block '%}'";
      case TokenKind::name: return "'" + token.text + "'";
      case TokenKind::string: return "string literal";
      case TokenKind::integer:
      case TokenKind::floating: return "number";
      case TokenKind::op: return "'" + token.text + "'";
      case TokenKind::end: return "end of template";
    }
    return "token";
  }

  [[noreturn]] void fail(const std::string& message) const {
    throw TemplateError(TemplateError::Kind::syntax, message, current().line, current().column);
  }

  void add_link() {
    if (++links_in_tag_ > kMaxLinksPerTag) {
      fail("a tag holds more than " + std::to_string(kMaxLinksPerTag) + " operators, filters and accesses");
    }
  }

  void expect_op(std::string_view op) {
    if (!at_op(op)) fail("expected '" + std::string(op) + "', got " + describe(current()));
    advance();
  }
  void expect_name(std::string_view name) {
    if (!at_name(name)) fail("expected '" + std::string(name) + "', got " + describe(current()));
    advance();
  }
  std::string take_name(std::string_view what) {
    if (current().kind != TokenKind::name) fail("expected " + std::string(what) + ", got " + describe(current()));
    std::string name = current().text;
    advance();
    return name;
  }
  void expect_block_end() {
    if (current().kind != TokenKind::block_end) {
      fail("expected end of statement block '%}', got " + describe(current()));
    }
    advance();
  }

  // ------------------------------------------------------------------------------------------ statements

  // Parses statements until a `{% name %}` with name in `end_tags`; consumes `{%` and the name, stores the name in
  // `found`. With no end tags, parses to the end of the template.
  Body parse_body(std::initializer_list<std::string_view> end_tags, std::string& found) {
    DepthGuard guard(*this);
    Body body;
    while (true) {
      const Token& token = current();
      switch (token.kind) {
        case TokenKind::text:
          body.push_back(std::make_unique<TextStatement>(where(), token.text));
          advance();
          break;
        case TokenKind::variable_begin: {
          SourcePosition at = where();
          advance();
          links_in_tag_ = 0;
          ExpressionPtr expression = parse_tuple(true, false, {});
          if (current().kind != TokenKind::variable_end) {
            fail("expected end of print statement '}}', got " + describe(current()));
          }
          advance();
          body.push_back(std::make_unique<OutputStatement>(at, std::move(expression)));
          break;
        }
        case TokenKind::block_begin: {
          const Token& tag = peek();
          if (tag.kind == TokenKind::name &&
              std::find(end_tags.begin(), end_tags.end(), std::string_view(tag.text)) != end_tags.end()) {
            found = tag.text;
            advance();
            advance();
            return body;
          }
          advance();
          links_in_tag_ = 0;
          body.push_back(parse_statement());
          break;
        }
        case TokenKind::end:
          if (end_tags.size() != 0) {
            std::string wanted;
            for (std::string_view tag : end_tags) wanted += (wanted.empty() ? "'" : " or '") + std::string(tag) + "'";
            fail("unexpected end of template: the '" + open_blocks_.back().first + "' block opened at line " +
                 std::to_string(open_blocks_.back().second) + " needs " + wanted);
          }
          return body;
        default:
          fail("unexpected " + describe(token));
      }
    }
  }

  StatementPtr parse_statement() {
    SourcePosition at = where();
    if (current().kind != TokenKind::name) fail("expected a statement name after '{%', got " + describe(current()));
    std::string tag = current().text;
    advance();
    open_blocks_.emplace_back(tag, at.line);
    StatementPtr statement;
    if (tag == "if") statement = parse_if(at);
    else if (tag == "for") statement = parse_for(at);
    else if (tag == "set") statement = parse_set(at);
    else if (tag == "macro") statement = parse_macro(at);
    else if (tag == "call") statement = parse_call_block(at);
    else if (tag == "filter") statement = parse_filter_block(at);
    else if (tag == "with") statement = parse_with(at);
    else if (tag == "break" || tag == "continue") {
      if (loop_depth_ == 0) fail("'" + tag + "' outside of a for loop");
      expect_block_end();
      statement = std::make_unique<LoopControlStatement>(
          tag == "break" ? StatementKind::break_ : StatementKind::continue_, at);
    } else if (tag == "extends" || tag == "include" || tag == "import" || tag == "from" || tag == "block" ||
               tag == "autoescape" || tag == "do" || tag == "trans") {
      fail("the '" + tag + "' tag is not supported in chat templates");
    } else if (tag.rfind("end", 0) == 0 || tag == "else" || tag == "elif") {
      fail("unexpected '" + tag + "' (no open block it could close)");
    } else {
      fail("unknown tag '" + tag + "'");
    }
    open_blocks_.pop_back();
    return statement;
  }

  StatementPtr parse_if(SourcePosition at) {
    auto statement = std::make_unique<IfStatement>(at);
    std::string found;
    ExpressionPtr condition = parse_tuple(false, false, {});
    expect_block_end();
    Body body = parse_body({"elif", "else", "endif"}, found);
    statement->branches.emplace_back(std::move(condition), std::move(body));
    while (found == "elif") {
      ExpressionPtr elif_condition = parse_tuple(false, false, {});
      expect_block_end();
      Body elif_body = parse_body({"elif", "else", "endif"}, found);
      statement->branches.emplace_back(std::move(elif_condition), std::move(elif_body));
    }
    if (found == "else") {
      expect_block_end();
      statement->otherwise = parse_body({"endif"}, found);
    }
    expect_block_end();
    return statement;
  }

  StatementPtr parse_for(SourcePosition at) {
    auto statement = std::make_unique<ForStatement>(at);
    statement->target = parse_assign_target(false, "in");
    expect_name("in");
    statement->iterable = parse_tuple(false, false, {"recursive"});
    if (at_name("if")) {
      advance();
      statement->filter = parse_expression();
    }
    if (at_name("recursive")) fail("recursive for loops are not supported");
    expect_block_end();
    std::string found;
    ++loop_depth_;
    statement->body = parse_body({"endfor", "else"}, found);
    --loop_depth_;
    if (found == "else") {
      expect_block_end();
      statement->otherwise = parse_body({"endfor"}, found);
    }
    expect_block_end();
    return statement;
  }

  StatementPtr parse_set(SourcePosition at) {
    AssignTarget target = parse_assign_target(true, "");
    if (at_op("=")) {
      advance();
      ExpressionPtr value = parse_tuple(true, false, {});
      expect_block_end();
      return std::make_unique<SetStatement>(at, std::move(target), std::move(value));
    }
    auto statement = std::make_unique<SetBlockStatement>(at);
    statement->target = std::move(target);
    while (at_op("|")) {
      advance();
      statement->filters.push_back(parse_filter_call(nullptr));
    }
    expect_block_end();
    std::string found;
    statement->body = parse_body({"endset"}, found);
    expect_block_end();
    return statement;
  }

  std::vector<MacroParameter> parse_parameters() {
    std::vector<MacroParameter> parameters;
    expect_op("(");
    while (!at_op(")")) {
      if (!parameters.empty()) expect_op(",");
      if (at_op(")")) break;
      MacroParameter parameter;
      parameter.name = take_name("a parameter name");
      if (at_op("=")) {
        advance();
        parameter.default_value = parse_expression();
      } else if (!parameters.empty() && parameters.back().default_value) {
        fail("parameter '" + parameter.name + "' without a default follows one with a default");
      }
      parameters.push_back(std::move(parameter));
    }
    expect_op(")");
    return parameters;
  }

  StatementPtr parse_macro(SourcePosition at) {
    auto statement = std::make_unique<MacroStatement>(at);
    statement->name = take_name("a macro name");
    statement->parameters = parse_parameters();
    expect_block_end();
    std::string found;
    int saved_loop_depth = loop_depth_;
    loop_depth_ = 0;  // a macro body is not inside the caller's loop
    statement->body = parse_body({"endmacro"}, found);
    loop_depth_ = saved_loop_depth;
    if (current().kind == TokenKind::name) advance();  // `{% endmacro name %}` is allowed
    expect_block_end();
    return statement;
  }

  StatementPtr parse_call_block(SourcePosition at) {
    auto statement = std::make_unique<CallBlockStatement>(at);
    if (at_op("(")) statement->caller_parameters = parse_parameters();
    ExpressionPtr call = parse_expression();
    if (call->kind != ExpressionKind::call) fail("a call block needs a macro call, like {% call my_macro() %}");
    statement->call.reset(static_cast<CallExpression*>(call.release()));
    expect_block_end();
    std::string found;
    int saved_loop_depth = loop_depth_;
    loop_depth_ = 0;
    statement->body = parse_body({"endcall"}, found);
    loop_depth_ = saved_loop_depth;
    expect_block_end();
    return statement;
  }

  StatementPtr parse_filter_block(SourcePosition at) {
    auto statement = std::make_unique<FilterBlockStatement>(at);
    statement->filters.push_back(parse_filter_call(nullptr));
    while (at_op("|")) {
      advance();
      statement->filters.push_back(parse_filter_call(nullptr));
    }
    expect_block_end();
    std::string found;
    statement->body = parse_body({"endfilter"}, found);
    expect_block_end();
    return statement;
  }

  StatementPtr parse_with(SourcePosition at) {
    auto statement = std::make_unique<WithStatement>(at);
    while (current().kind != TokenKind::block_end) {
      if (!statement->assignments.empty()) expect_op(",");
      AssignTarget target = parse_assign_target(false, "");
      expect_op("=");
      statement->assignments.emplace_back(std::move(target), parse_expression());
    }
    expect_block_end();
    std::string found;
    statement->body = parse_body({"endwith"}, found);
    expect_block_end();
    return statement;
  }

  // `name`, `a, b`, `(a, b)` or (with_namespace) `ns.attr`. `end_name` (e.g. "in") ends a bare tuple.
  AssignTarget parse_assign_target(bool with_namespace, std::string_view end_name) {
    AssignTarget target;
    if (with_namespace && current().kind == TokenKind::name && is_op(peek(), ".") &&
        peek(2).kind == TokenKind::name) {
      target.names.push_back(current().text);
      advance();
      advance();
      target.namespace_attribute = current().text;
      advance();
      return target;
    }
    bool parenthesized = at_op("(");
    if (parenthesized) advance();
    while (true) {
      target.names.push_back(take_name("a variable name to assign to"));
      if (!at_op(",")) break;
      advance();
      target.unpack = true;
      if ((parenthesized && at_op(")")) || (!end_name.empty() && at_name(end_name)) || at_op("=")) break;
    }
    if (parenthesized) {
      expect_op(")");
      target.unpack = true;
    }
    static constexpr std::string_view kReserved[] = {"true", "false", "none", "True", "False", "None"};
    for (const std::string& name : target.names) {
      if (std::find(std::begin(kReserved), std::end(kReserved), name) != std::end(kReserved)) {
        fail("cannot assign to '" + name + "'");
      }
    }
    return target;
  }

  // ------------------------------------------------------------------------------------------ expressions

  bool is_tuple_end(std::initializer_list<std::string_view> extra_end_names) const {
    const Token& token = current();
    if (token.kind == TokenKind::variable_end || token.kind == TokenKind::block_end || is_op(token, ")")) return true;
    for (std::string_view name : extra_end_names) {
      if (is_name(token, name)) return true;
    }
    return false;
  }

  ExpressionPtr parse_tuple(bool with_conditional, bool explicit_parentheses,
                            std::initializer_list<std::string_view> extra_end_names) {
    SourcePosition at = where();
    std::vector<ExpressionPtr> items;
    bool is_tuple = false;
    while (true) {
      if (!items.empty()) expect_op(",");
      if (is_tuple_end(extra_end_names)) break;
      items.push_back(with_conditional ? parse_expression() : parse_or());
      if (at_op(",")) is_tuple = true;
      else break;
    }
    if (!is_tuple) {
      if (!items.empty()) return std::move(items[0]);
      if (!explicit_parentheses) fail("expected an expression, got " + describe(current()));
    }
    auto tuple = std::make_unique<SequenceExpression>(ExpressionKind::tuple, at);
    tuple->items = std::move(items);
    return tuple;
  }

  ExpressionPtr parse_expression() {
    DepthGuard guard(*this);
    SourcePosition at = where();
    ExpressionPtr expression = parse_or();
    while (at_name("if")) {
      add_link();
      advance();
      ExpressionPtr condition = parse_or();
      auto conditional = std::make_unique<ConditionalExpression>(at, std::move(condition), std::move(expression));
      if (at_name("else")) {
        advance();
        conditional->when_false = parse_expression();
      }
      expression = std::move(conditional);
    }
    return expression;
  }

  ExpressionPtr parse_or() {
    ExpressionPtr left = parse_and();
    while (at_name("or")) {
      add_link();
      SourcePosition at = where();
      advance();
      left = std::make_unique<BinaryExpression>(at, BinaryOperator::logical_or, std::move(left), parse_and());
    }
    return left;
  }

  ExpressionPtr parse_and() {
    ExpressionPtr left = parse_not();
    while (at_name("and")) {
      add_link();
      SourcePosition at = where();
      advance();
      left = std::make_unique<BinaryExpression>(at, BinaryOperator::logical_and, std::move(left), parse_not());
    }
    return left;
  }

  ExpressionPtr parse_not() {
    if (at_name("not")) {
      DepthGuard guard(*this);
      SourcePosition at = where();
      advance();
      return std::make_unique<UnaryExpression>(at, UnaryOperator::logical_not, parse_not());
    }
    return parse_compare();
  }

  ExpressionPtr parse_compare() {
    SourcePosition at = where();
    ExpressionPtr first = parse_math1();
    std::unique_ptr<CompareExpression> compare;
    while (true) {
      CompareOperator op;
      if (at_op("==")) op = CompareOperator::equal;
      else if (at_op("!=")) op = CompareOperator::not_equal;
      else if (at_op("<")) op = CompareOperator::less;
      else if (at_op("<=")) op = CompareOperator::less_equal;
      else if (at_op(">")) op = CompareOperator::greater;
      else if (at_op(">=")) op = CompareOperator::greater_equal;
      else if (at_name("in")) op = CompareOperator::in;
      else if (at_name("not") && is_name(peek(), "in")) {
        op = CompareOperator::not_in;
        advance();
      } else {
        break;
      }
      advance();
      if (!compare) compare = std::make_unique<CompareExpression>(at, std::move(first));
      compare->rest.emplace_back(op, parse_math1());
    }
    if (compare) return compare;
    return first;
  }

  ExpressionPtr parse_math1() {
    ExpressionPtr left = parse_concat();
    while (at_op("+") || at_op("-")) {
      add_link();
      SourcePosition at = where();
      BinaryOperator op = at_op("+") ? BinaryOperator::add : BinaryOperator::subtract;
      advance();
      left = std::make_unique<BinaryExpression>(at, op, std::move(left), parse_concat());
    }
    return left;
  }

  ExpressionPtr parse_concat() {
    ExpressionPtr left = parse_math2();
    while (at_op("~")) {
      add_link();
      SourcePosition at = where();
      advance();
      left = std::make_unique<BinaryExpression>(at, BinaryOperator::concat, std::move(left), parse_math2());
    }
    return left;
  }

  ExpressionPtr parse_math2() {
    ExpressionPtr left = parse_pow();
    while (at_op("*") || at_op("/") || at_op("//") || at_op("%")) {
      add_link();
      SourcePosition at = where();
      BinaryOperator op = at_op("*")   ? BinaryOperator::multiply
                          : at_op("/") ? BinaryOperator::divide
                          : at_op("//") ? BinaryOperator::floor_divide
                                        : BinaryOperator::modulo;
      advance();
      left = std::make_unique<BinaryExpression>(at, op, std::move(left), parse_pow());
    }
    return left;
  }

  ExpressionPtr parse_pow() {
    ExpressionPtr left = parse_unary(true);
    while (at_op("**")) {
      add_link();
      SourcePosition at = where();
      advance();
      left = std::make_unique<BinaryExpression>(at, BinaryOperator::power, std::move(left), parse_unary(true));
    }
    return left;
  }

  ExpressionPtr parse_unary(bool with_filter) {
    DepthGuard guard(*this);
    SourcePosition at = where();
    ExpressionPtr node;
    if (at_op("-")) {
      advance();
      node = std::make_unique<UnaryExpression>(at, UnaryOperator::negate, parse_unary(false));
    } else if (at_op("+")) {
      advance();
      node = std::make_unique<UnaryExpression>(at, UnaryOperator::plus, parse_unary(false));
    } else {
      node = parse_primary();
    }
    node = parse_postfix(std::move(node));
    if (with_filter) node = parse_filter_expression(std::move(node));
    return node;
  }

  ExpressionPtr parse_primary() {
    SourcePosition at = where();
    const Token& token = current();
    switch (token.kind) {
      case TokenKind::name: {
        std::string name = token.text;
        advance();
        if (name == "true" || name == "True") return std::make_unique<LiteralExpression>(at, Value::boolean(true));
        if (name == "false" || name == "False") return std::make_unique<LiteralExpression>(at, Value::boolean(false));
        if (name == "none" || name == "None") return std::make_unique<LiteralExpression>(at, Value::none());
        return std::make_unique<NameExpression>(at, std::move(name));
      }
      case TokenKind::string: {
        std::string value;
        while (current().kind == TokenKind::string) {  // adjacent literals concatenate, as in Python
          value += current().text;
          advance();
        }
        return std::make_unique<LiteralExpression>(at, Value::string(std::move(value)));
      }
      case TokenKind::integer: {
        int64_t value = token.integer;
        advance();
        return std::make_unique<LiteralExpression>(at, Value::integer(value));
      }
      case TokenKind::floating: {
        double value = token.floating;
        advance();
        return std::make_unique<LiteralExpression>(at, Value::floating(value));
      }
      case TokenKind::op:
        if (token.text == "(") {
          advance();
          ExpressionPtr inner = parse_tuple(true, true, {});
          expect_op(")");
          return inner;
        }
        if (token.text == "[") {
          advance();
          auto list = std::make_unique<SequenceExpression>(ExpressionKind::list, at);
          while (!at_op("]")) {
            if (!list->items.empty()) expect_op(",");
            if (at_op("]")) break;
            list->items.push_back(parse_expression());
          }
          expect_op("]");
          return list;
        }
        if (token.text == "{") {
          advance();
          auto dict = std::make_unique<DictExpression>(at);
          while (!at_op("}")) {
            if (!dict->entries.empty()) expect_op(",");
            if (at_op("}")) break;
            ExpressionPtr key = parse_expression();
            expect_op(":");
            dict->entries.emplace_back(std::move(key), parse_expression());
          }
          expect_op("}");
          return dict;
        }
        break;
      default:
        break;
    }
    fail("unexpected " + describe(token) + " where an expression was expected");
  }

  ExpressionPtr parse_postfix(ExpressionPtr node) {
    while (at_op(".") || at_op("[") || at_op("(")) {
      add_link();
      node = at_op("(") ? parse_call(std::move(node)) : parse_subscript(std::move(node));
    }
    return node;
  }

  ExpressionPtr parse_filter_expression(ExpressionPtr node) {
    while (true) {
      if (at_op("|") || at_name("is") || at_op("(")) add_link();
      if (at_op("|")) {
        advance();
        node = parse_filter_call(std::move(node));
      } else if (at_name("is")) {
        node = parse_test(std::move(node));
      } else if (at_op("(")) {
        node = parse_call(std::move(node));
      } else {
        return node;
      }
    }
  }

  ExpressionPtr parse_subscript(ExpressionPtr node) {
    SourcePosition at = where();
    if (at_op(".")) {
      advance();
      if (current().kind == TokenKind::name) {
        std::string name = current().text;
        advance();
        return std::make_unique<AttributeExpression>(at, std::move(node), std::move(name));
      }
      if (current().kind == TokenKind::integer) {
        auto index = std::make_unique<LiteralExpression>(where(), Value::integer(current().integer));
        advance();
        return std::make_unique<SubscriptExpression>(at, std::move(node), std::move(index));
      }
      fail("expected an attribute name after '.', got " + describe(current()));
    }
    expect_op("[");
    // A single index or slice; several comma-separated indexes form a tuple key (no slices inside).
    ExpressionPtr start;
    if (!at_op(":")) {
      start = parse_expression();
      if (!at_op(":")) {
        if (at_op(",")) {
          auto tuple = std::make_unique<SequenceExpression>(ExpressionKind::tuple, at);
          tuple->items.push_back(std::move(start));
          while (at_op(",")) {
            advance();
            if (at_op("]")) break;
            tuple->items.push_back(parse_expression());
          }
          start = std::move(tuple);
        }
        expect_op("]");
        return std::make_unique<SubscriptExpression>(at, std::move(node), std::move(start));
      }
    }
    auto slice = std::make_unique<SliceExpression>(at, std::move(node));
    slice->start = std::move(start);
    expect_op(":");
    if (!at_op(":") && !at_op("]")) slice->stop = parse_expression();
    if (at_op(":")) {
      advance();
      if (!at_op("]")) slice->step = parse_expression();
    }
    expect_op("]");
    return slice;
  }

  CallArguments parse_call_arguments() {
    CallArguments arguments;
    expect_op("(");
    bool first = true;
    while (!at_op(")")) {
      if (!first) {
        expect_op(",");
        if (at_op(")")) break;
      }
      first = false;
      if (at_op("*") || at_op("**")) fail("*args and **kwargs in calls are not supported");
      if (current().kind == TokenKind::name && is_op(peek(), "=")) {
        std::string name = current().text;
        advance();
        advance();
        arguments.keyword.emplace_back(std::move(name), parse_expression());
      } else {
        if (!arguments.keyword.empty()) fail("positional argument after keyword argument");
        arguments.positional.push_back(parse_expression());
      }
    }
    expect_op(")");
    return arguments;
  }

  ExpressionPtr parse_call(ExpressionPtr callee) {
    auto call = std::make_unique<CallExpression>(where(), std::move(callee));
    call->arguments = parse_call_arguments();
    return call;
  }

  std::string parse_dotted_name(std::string_view what) {
    std::string name = take_name(what);
    while (at_op(".")) {
      advance();
      name += '.';
      name += take_name(what);
    }
    return name;
  }

  // After the `|` (or at the start of a filter block): name and optional arguments.
  std::unique_ptr<FilterExpression> parse_filter_call(ExpressionPtr operand) {
    SourcePosition at = where();
    auto filter = std::make_unique<FilterExpression>(at, std::move(operand), parse_dotted_name("a filter name"));
    if (at_op("(")) filter->arguments = parse_call_arguments();
    return filter;
  }

  ExpressionPtr parse_test(ExpressionPtr operand) {
    SourcePosition at = where();
    expect_name("is");
    bool negated = false;
    if (at_name("not")) {
      advance();
      negated = true;
    }
    auto test = std::make_unique<TestExpression>(at, std::move(operand), parse_dotted_name("a test name"));
    test->negated = negated;
    const Token& next = current();
    if (at_op("(")) {
      test->arguments = parse_call_arguments();
    } else if ((next.kind == TokenKind::name || next.kind == TokenKind::string || next.kind == TokenKind::integer ||
                next.kind == TokenKind::floating || is_op(next, "[") || is_op(next, "{")) &&
               !is_name(next, "else") && !is_name(next, "or") && !is_name(next, "and")) {
      // `x is divisibleby 3`, `x is equalto 'user'`: one argument without parentheses.
      if (is_name(next, "is")) fail("tests cannot be chained with 'is'");
      test->arguments.positional.push_back(parse_postfix(parse_primary()));
    }
    return test;
  }

  std::vector<Token> tokens_;
  size_t pos_ = 0;
  int depth_ = 0;
  int loop_depth_ = 0;
  int links_in_tag_ = 0;
  std::vector<std::pair<std::string, int>> open_blocks_;  // tag name, line: for "never closed" messages
};

// jinja2 rejects an unknown filter or test when it compiles the template, except inside an `if` (statement or
// inline), where it waits until the code runs so that a template can guard with `'name' is filter`. Nested
// frames (loop bodies, macros, with blocks) are strict again.
class NameChecker {
 public:
  void check_body(const Body& body, bool soft) {
    for (const StatementPtr& statement : body) check_statement(*statement, soft);
  }

 private:
  [[noreturn]] static void fail(const std::string& message, SourcePosition where) {
    throw TemplateError(TemplateError::Kind::syntax, message, where.line, where.column);
  }

  void check_arguments(const CallArguments& arguments, bool soft) {
    for (const ExpressionPtr& argument : arguments.positional) check_expression(argument.get(), soft);
    for (const auto& keyword : arguments.keyword) check_expression(keyword.second.get(), soft);
  }

  void check_filters(const FilterChain& filters, bool soft) {
    for (const auto& filter : filters) check_expression(filter.get(), soft);
  }

  void check_expression(const Expression* expression, bool soft) {
    if (expression == nullptr) return;
    switch (expression->kind) {
      case ExpressionKind::literal:
      case ExpressionKind::name:
        return;
      case ExpressionKind::list:
      case ExpressionKind::tuple:
        for (const ExpressionPtr& item : static_cast<const SequenceExpression*>(expression)->items) {
          check_expression(item.get(), soft);
        }
        return;
      case ExpressionKind::dict:
        for (const auto& [key, value] : static_cast<const DictExpression*>(expression)->entries) {
          check_expression(key.get(), soft);
          check_expression(value.get(), soft);
        }
        return;
      case ExpressionKind::unary:
        check_expression(static_cast<const UnaryExpression*>(expression)->operand.get(), soft);
        return;
      case ExpressionKind::binary: {
        const auto* node = static_cast<const BinaryExpression*>(expression);
        check_expression(node->left.get(), soft);
        check_expression(node->right.get(), soft);
        return;
      }
      case ExpressionKind::compare: {
        const auto* node = static_cast<const CompareExpression*>(expression);
        check_expression(node->first.get(), soft);
        for (const auto& part : node->rest) check_expression(part.second.get(), soft);
        return;
      }
      case ExpressionKind::attribute:
        check_expression(static_cast<const AttributeExpression*>(expression)->object.get(), soft);
        return;
      case ExpressionKind::subscript: {
        const auto* node = static_cast<const SubscriptExpression*>(expression);
        check_expression(node->object.get(), soft);
        check_expression(node->index.get(), soft);
        return;
      }
      case ExpressionKind::slice: {
        const auto* node = static_cast<const SliceExpression*>(expression);
        check_expression(node->object.get(), soft);
        check_expression(node->start.get(), soft);
        check_expression(node->stop.get(), soft);
        check_expression(node->step.get(), soft);
        return;
      }
      case ExpressionKind::call: {
        const auto* node = static_cast<const CallExpression*>(expression);
        check_expression(node->callee.get(), soft);
        check_arguments(node->arguments, soft);
        return;
      }
      case ExpressionKind::filter: {
        const auto* node = static_cast<const FilterExpression*>(expression);
        if (!soft && !has_filter(node->name)) fail("no filter named '" + node->name + "'", node->where);
        check_expression(node->operand.get(), soft);
        check_arguments(node->arguments, soft);
        return;
      }
      case ExpressionKind::test: {
        const auto* node = static_cast<const TestExpression*>(expression);
        if (!soft && !has_test(node->name)) fail("no test named '" + node->name + "'", node->where);
        check_expression(node->operand.get(), soft);
        check_arguments(node->arguments, soft);
        return;
      }
      case ExpressionKind::conditional: {
        const auto* node = static_cast<const ConditionalExpression*>(expression);
        check_expression(node->condition.get(), true);
        check_expression(node->when_true.get(), true);
        check_expression(node->when_false.get(), true);
        return;
      }
    }
  }

  void check_parameters(const std::vector<MacroParameter>& parameters) {
    for (const MacroParameter& parameter : parameters) check_expression(parameter.default_value.get(), false);
  }

  void check_statement(const Statement& statement, bool soft) {
    switch (statement.kind) {
      case StatementKind::text:
      case StatementKind::break_:
      case StatementKind::continue_:
        return;
      case StatementKind::output:
        check_expression(static_cast<const OutputStatement&>(statement).expression.get(), soft);
        return;
      case StatementKind::if_: {
        const auto& node = static_cast<const IfStatement&>(statement);
        for (const auto& [condition, body] : node.branches) {
          check_expression(condition.get(), true);
          check_body(body, true);
        }
        check_body(node.otherwise, true);
        return;
      }
      case StatementKind::for_: {
        const auto& node = static_cast<const ForStatement&>(statement);
        check_expression(node.iterable.get(), soft);
        check_expression(node.filter.get(), false);
        check_body(node.body, false);
        check_body(node.otherwise, soft);
        return;
      }
      case StatementKind::set:
        check_expression(static_cast<const SetStatement&>(statement).value.get(), soft);
        return;
      case StatementKind::set_block: {
        const auto& node = static_cast<const SetBlockStatement&>(statement);
        check_filters(node.filters, soft);
        check_body(node.body, soft);
        return;
      }
      case StatementKind::macro: {
        const auto& node = static_cast<const MacroStatement&>(statement);
        check_parameters(node.parameters);
        check_body(node.body, false);
        return;
      }
      case StatementKind::call_block: {
        const auto& node = static_cast<const CallBlockStatement&>(statement);
        check_parameters(node.caller_parameters);
        check_expression(node.call.get(), soft);
        check_body(node.body, false);
        return;
      }
      case StatementKind::filter_block: {
        const auto& node = static_cast<const FilterBlockStatement&>(statement);
        check_filters(node.filters, soft);
        check_body(node.body, soft);
        return;
      }
      case StatementKind::with: {
        const auto& node = static_cast<const WithStatement&>(statement);
        for (const auto& assignment : node.assignments) check_expression(assignment.second.get(), soft);
        check_body(node.body, false);
        return;
      }
    }
  }
};

}  // namespace

Body parse_template(std::string_view source) {
  Body body = Parser(tokenize(source)).parse();
  NameChecker().check_body(body, false);
  return body;
}

}  // namespace pagedllm::jinja
