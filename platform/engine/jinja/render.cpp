// The interpreter: walks a parsed template with Jinja2's scoping (a loop body has a scope of its
// own per iteration, `if` does not, a macro sees the template's top level and its arguments),
// Python's semantics for values and operators, and transformers' globals. Every step, every
// byte written and every nested call is counted against the caller's limits.
#include <algorithm>
#include <cmath>
#include <ctime>
#include <unordered_map>
#include <utf8proc.h>

#include "platform/engine/jinja/ast.h"
#include "platform/engine/jinja/builtins.h"
#include "platform/engine/jinja/template.h"
#include "platform/engine/unicode.h"

namespace mh::engine::jinja {
namespace {

constexpr int64_t kMaxRange = 100000;  // Jinja2's sandbox refuses larger ranges

Status render_error(int line, std::string what) {
  return invalid_argument("chat template line " + std::to_string(line) + ": " + what);
}

// --- Python string helpers (code points, not bytes) ----------------------------------------

std::vector<std::string_view> chars_of(std::string_view s) {
  std::vector<std::string_view> out;
  for (size_t i = 0; i < s.size();) {
    const size_t len = unicode::decode(s, i).len;
    out.push_back(s.substr(i, len));
    i += len;
  }
  return out;
}

bool is_py_space(std::string_view ch) {
  const unicode::Char c = unicode::decode(ch, 0);
  return c.cp >= 0 && (unicode::is_whitespace(c.cp) || (c.cp >= 0x1c && c.cp <= 0x1f));
}

std::string map_case(std::string_view s, bool upper) {
  std::string out;
  for (size_t i = 0; i < s.size();) {
    const unicode::Char c = unicode::decode(s, i);
    if (c.cp < 0) {
      out += s[i];
    } else if (upper && c.cp == 0xdf) {
      out += "SS";
    } else {
      unicode::append(out, static_cast<uint32_t>(upper ? utf8proc_toupper(c.cp) : utf8proc_tolower(c.cp)));
    }
    i += c.len;
  }
  return out;
}

bool is_cased_letter(std::string_view ch) {
  const unicode::Char c = unicode::decode(ch, 0);
  if (c.cp < 0) return false;
  const auto cat = utf8proc_category(c.cp);
  return cat == UTF8PROC_CATEGORY_LU || cat == UTF8PROC_CATEGORY_LL || cat == UTF8PROC_CATEGORY_LT;
}

std::string py_title(std::string_view s) {
  std::string out;
  bool previous_cased = false;
  for (std::string_view ch : chars_of(s)) {
    const bool cased = is_cased_letter(ch);
    out += cased ? map_case(ch, !previous_cased) : std::string(ch);
    previous_cased = cased;
  }
  return out;
}

std::string py_strip(std::string_view s, const Value* chars, bool left, bool right) {
  auto strip_it = [&](std::string_view ch) {
    if (chars == nullptr || chars->is_none()) return is_py_space(ch);
    return chars->as_string().find(ch) != std::string::npos;
  };
  auto cs = chars_of(s);
  size_t b = 0, e = cs.size();
  while (left && b < e && strip_it(cs[b])) ++b;
  while (right && e > b && strip_it(cs[e - 1])) --e;
  std::string out;
  for (size_t i = b; i < e; ++i) out += cs[i];
  return out;
}

List py_split(std::string_view s, const Value* sep, int64_t maxsplit) {
  List out;
  if (sep == nullptr || sep->is_none()) {
    auto cs = chars_of(s);
    size_t i = 0;
    while (i < cs.size()) {
      while (i < cs.size() && is_py_space(cs[i])) ++i;
      if (i >= cs.size()) break;
      if (maxsplit >= 0 && static_cast<int64_t>(out.size()) == maxsplit) {
        std::string rest;
        for (size_t k = i; k < cs.size(); ++k) rest += cs[k];
        // Python keeps the remainder as it is, trailing whitespace stripped only when split.
        out.push_back(Value(py_strip(rest, nullptr, false, true)));
        return out;
      }
      std::string word;
      while (i < cs.size() && !is_py_space(cs[i])) word += cs[i++];
      out.push_back(Value(std::move(word)));
    }
    return out;
  }
  const std::string& d = sep->as_string();
  size_t at = 0;
  while (true) {
    const size_t f = (maxsplit >= 0 && static_cast<int64_t>(out.size()) >= maxsplit) ? std::string::npos : s.find(d, at);
    if (f == std::string::npos) {
      out.push_back(Value(std::string(s.substr(at))));
      return out;
    }
    out.push_back(Value(std::string(s.substr(at, f - at))));
    at = f + d.size();
  }
}

// Python's ordering of two values; an error for types Python does not order.
Result<int> compare(const Value& a, const Value& b, int line) {
  if (a.is_number() && b.is_number()) {
    if (a.is_float() || b.is_float()) {
      return a.as_double() < b.as_double() ? -1 : a.as_double() > b.as_double() ? 1 : 0;
    }
    return a.as_int() < b.as_int() ? -1 : a.as_int() > b.as_int() ? 1 : 0;
  }
  if (a.is_string() && b.is_string()) {
    const int c = a.as_string().compare(b.as_string());
    return c < 0 ? -1 : c > 0 ? 1 : 0;
  }
  if (a.is_list() && b.is_list()) {
    const List &x = a.as_list(), &y = b.as_list();
    for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
      MH_ASSIGN_OR_RETURN(int c, compare(x[i], y[i], line));
      if (c != 0) return c;
    }
    return x.size() < y.size() ? -1 : x.size() > y.size() ? 1 : 0;
  }
  return render_error(line, "'<' is not supported between a " + a.type_name() + " and a " +
                                b.type_name());
}

// What iterating a value yields (a dict: its keys; a string: its characters).
Result<List> iterate(const Value& v, int line) {
  if (v.is_undefined()) return List{};
  if (v.is_list()) return v.as_list();
  if (v.is_dict()) {
    List keys;
    for (const auto& [k, x] : v.as_dict()) keys.push_back(Value(k));
    return keys;
  }
  if (v.is_string()) {
    List cs;
    for (std::string_view c : chars_of(v.as_string())) cs.push_back(Value(std::string(c)));
    return cs;
  }
  return render_error(line, "a " + v.type_name() + " is not iterable");
}

Result<int64_t> length(const Value& v, int line) {
  if (v.is_undefined()) return 0;
  if (v.is_string()) return static_cast<int64_t>(chars_of(v.as_string()).size());
  if (v.is_list()) return static_cast<int64_t>(v.as_list().size());
  if (v.is_dict()) return static_cast<int64_t>(v.as_dict().size());
  return render_error(line, "a " + v.type_name() + " has no length");
}

const Value* arg(Call& c, size_t i, std::string_view name) {
  if (i < c.args.size()) return &c.args[i];
  for (auto& [k, v] : c.kwargs) {
    if (k == name) return &v;
  }
  return nullptr;
}

Value function(Function f) { return Value(std::make_shared<Function>(std::move(f))); }

}  // namespace

bool is_filter(std::string_view name) {
  static const char* kFilters[] = {
      "abs", "capitalize", "count", "d", "default", "e", "escape", "first", "float", "indent",
      "int", "items", "join", "last", "length", "list", "lower", "map", "max", "min", "reject",
      "rejectattr", "replace", "reverse", "round", "safe", "select", "selectattr", "sort",
      "string", "sum", "title", "tojson", "trim", "unique", "upper", "wordcount", "dictsort"};
  return std::find(std::begin(kFilters), std::end(kFilters), name) != std::end(kFilters);
}

bool is_test(std::string_view name) {
  static const char* kTests[] = {
      "defined", "undefined", "none", "string", "number", "integer", "float", "boolean", "true",
      "false", "mapping", "iterable", "sequence", "callable", "equalto", "eq", "==", "ne", "!=",
      "lt", "<", "gt", ">", "le", "<=", "ge", ">=", "in", "divisibleby", "odd", "even", "sameas",
      "lower", "upper"};
  return std::find(std::begin(kTests), std::end(kTests), name) != std::end(kTests);
}

namespace {

class Renderer {
 public:
  Renderer(const RenderLimits& limits, const Dict& context) : limits_(limits) {
    scopes_.emplace_back();
    for (const auto& [k, v] : context) scopes_.back()[k] = v;
  }

  Result<Rendered> run(const Node& root) {
    MH_ASSIGN_OR_RETURN(Flow f, exec_body(root.body));
    (void)f;
    return std::move(out_);
  }

 private:
  enum class Flow { kNormal, kBreak, kContinue };
  using Scope = std::unordered_map<std::string, Value>;

  Status tick(int line) {
    if (++steps_ > limits_.max_steps) {
      return render_error(line, "rendering took more than " + std::to_string(limits_.max_steps) +
                                    " steps");
    }
    return {};
  }

  Status write(std::string_view s, int line) {
    if (out_.text.size() + s.size() > limits_.max_output) {
      return render_error(line, "the rendering is longer than " +
                                    std::to_string(limits_.max_output) + " bytes");
    }
    out_.text.append(s);
    return {};
  }

  Value lookup(const std::string& name) const {
    for (auto it = scopes_.rbegin(); it != scopes_.rend(); ++it) {
      auto f = it->find(name);
      if (f != it->end()) return f->second;
    }
    return global(name);
  }

  Value global(const std::string& name) const {
    if (name == "range") {
      return function([](Call& c) -> Result<Value> {
        int64_t start = 0, stop, step = 1;
        for (const Value& a : c.args) {
          if (!a.is_int() && !a.is_bool()) return invalid_argument("range() takes integers");
        }
        if (c.args.size() == 1) {
          stop = c.args[0].as_int();
        } else if (c.args.size() == 2 || c.args.size() == 3) {
          start = c.args[0].as_int();
          stop = c.args[1].as_int();
          if (c.args.size() == 3) step = c.args[2].as_int();
        } else {
          return invalid_argument("range() takes 1 to 3 arguments");
        }
        if (step == 0) return invalid_argument("range() step must not be zero");
        const double n = std::ceil(static_cast<double>(stop - start) / static_cast<double>(step));
        if (n > kMaxRange) return invalid_argument("range() is too big (more than 100000 items)");
        List out;
        for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) out.push_back(Value(i));
        return Value(std::move(out));
      });
    }
    if (name == "namespace" || name == "dict") {
      const bool ns = name == "namespace";
      return function([ns](Call& c) -> Result<Value> {
        Dict members;
        for (const Value& a : c.args) {
          if (!a.is_dict()) return invalid_argument("namespace() and dict() take a dict or keywords");
          for (const auto& kv : a.as_dict()) members.push_back(kv);
        }
        for (auto& kv : c.kwargs) members.push_back(kv);
        if (!ns) return Value(std::move(members));
        auto n = std::make_shared<Value::Namespace>();
        n->members = std::move(members);
        return Value(n);
      });
    }
    if (name == "raise_exception") {
      return function([](Call& c) -> Result<Value> {
        return invalid_argument("the chat template raised: " +
                                (c.args.empty() ? std::string() : c.args[0].str()));
      });
    }
    if (name == "strftime_now") {
      return function([](Call& c) -> Result<Value> {
        if (c.args.empty() || !c.args[0].is_string()) {
          return invalid_argument("strftime_now() takes a format string");
        }
        const std::time_t now = std::time(nullptr);
        std::tm tm{};
        localtime_r(&now, &tm);
        char buf[256];
        const size_t n = std::strftime(buf, sizeof(buf), c.args[0].as_string().c_str(), &tm);
        return Value(std::string(buf, n));
      });
    }
    return Value::undefined(name);
  }

  // --- statements ---

  Result<Flow> exec_body(const Body& body) {
    for (const NodePtr& n : body) {
      MH_ASSIGN_OR_RETURN(Flow f, exec(*n));
      if (f != Flow::kNormal) return f;
    }
    return Flow::kNormal;
  }

  Result<Flow> exec(const Node& n) {
    MH_TRY(tick(n.line));
    switch (n.kind) {
      case Node::Kind::kBody:
        return exec_body(n.body);
      case Node::Kind::kText:
        MH_TRY(write(n.text, n.line));
        return Flow::kNormal;
      case Node::Kind::kOutput: {
        MH_ASSIGN_OR_RETURN(Value v, eval(*n.expr));
        MH_TRY(write(v.str(), n.line));
        return Flow::kNormal;
      }
      case Node::Kind::kIf:
        for (const auto& [cond, body] : n.branches) {
          MH_ASSIGN_OR_RETURN(Value c, eval(*cond));
          if (c.truthy()) return exec_body(body);
        }
        return exec_body(n.else_body);
      case Node::Kind::kFor:
        return exec_for(n);
      case Node::Kind::kSet: {
        MH_ASSIGN_OR_RETURN(Value v, eval(*n.expr));
        if (!n.attr.empty()) {
          Value ns = lookup(n.targets[0]);
          if (!ns.is_namespace()) {
            return render_error(n.line, "'" + n.targets[0] + "' is not a namespace");
          }
          for (auto& [k, x] : ns.as_namespace().members) {
            if (k == n.attr) {
              x = v;
              return Flow::kNormal;
            }
          }
          ns.as_namespace().members.emplace_back(n.attr, v);
          return Flow::kNormal;
        }
        if (n.targets.size() == 1) {
          scopes_.back()[n.targets[0]] = v;
          return Flow::kNormal;
        }
        MH_ASSIGN_OR_RETURN(List items, iterate(v, n.line));
        if (items.size() != n.targets.size()) {
          return render_error(n.line, "cannot unpack " + std::to_string(items.size()) +
                                          " values into " + std::to_string(n.targets.size()));
        }
        for (size_t i = 0; i < items.size(); ++i) scopes_.back()[n.targets[i]] = items[i];
        return Flow::kNormal;
      }
      case Node::Kind::kSetBlock: {
        const size_t start = out_.text.size();
        MH_ASSIGN_OR_RETURN(Flow f, exec_body(n.body));
        scopes_.back()[n.targets[0]] = Value(out_.text.substr(start));
        out_.text.resize(start);
        return f;
      }
      case Node::Kind::kMacro:
        scopes_.back()[n.name] = make_macro(n);
        return Flow::kNormal;
      case Node::Kind::kBreak:
        return Flow::kBreak;
      case Node::Kind::kContinue:
        return Flow::kContinue;
      case Node::Kind::kGeneration: {
        const size_t start = out_.text.size();
        MH_ASSIGN_OR_RETURN(Flow f, exec_body(n.body));
        out_.generation.emplace_back(start, out_.text.size());
        return f;
      }
    }
    return Flow::kNormal;
  }

  Result<Flow> exec_for(const Node& n) {
    MH_ASSIGN_OR_RETURN(Value iterable, eval(*n.expr));
    if (iterable.is_none()) return render_error(n.line, "'NoneType' object is not iterable");
    MH_ASSIGN_OR_RETURN(List items, iterate(iterable, n.line));
    // Targets bound per item (unpacking a pair for `for k, v in ...`).
    auto bind = [&](Scope& scope, const Value& item) -> Status {
      if (n.targets.size() == 1) {
        scope[n.targets[0]] = item;
        return {};
      }
      MH_ASSIGN_OR_RETURN(List parts, iterate(item, n.line));
      if (parts.size() != n.targets.size()) {
        return render_error(n.line, "cannot unpack " + std::to_string(parts.size()) +
                                        " values into " + std::to_string(n.targets.size()));
      }
      for (size_t i = 0; i < parts.size(); ++i) scope[n.targets[i]] = parts[i];
      return {};
    };
    if (n.filter) {
      List kept;
      for (const Value& item : items) {
        scopes_.emplace_back();
        Status s = bind(scopes_.back(), item);
        Result<Value> keep = s.ok() ? eval(*n.filter) : Result<Value>(s);
        scopes_.pop_back();
        if (!keep.ok()) return keep.status();
        if (keep->truthy()) kept.push_back(item);
      }
      items = std::move(kept);
    }
    if (items.empty()) return exec_body(n.else_body);
    const auto count = static_cast<int64_t>(items.size());
    for (int64_t i = 0; i < count; ++i) {
      MH_TRY(tick(n.line));
      scopes_.emplace_back();
      Scope& scope = scopes_.back();
      Dict loop = {{"index", Value(i + 1)},
                   {"index0", Value(i)},
                   {"revindex", Value(count - i)},
                   {"revindex0", Value(count - i - 1)},
                   {"first", Value(i == 0)},
                   {"last", Value(i == count - 1)},
                   {"length", Value(count)},
                   {"depth", Value(int64_t{1})},
                   {"depth0", Value(int64_t{0})}};
      loop.emplace_back("previtem", i > 0 ? items[static_cast<size_t>(i - 1)] : Value::undefined("previtem"));
      loop.emplace_back("nextitem", i + 1 < count ? items[static_cast<size_t>(i + 1)] : Value::undefined("nextitem"));
      loop.emplace_back("cycle", function([i](Call& c) -> Result<Value> {
                          if (c.args.empty()) return invalid_argument("loop.cycle() needs values");
                          return c.args[static_cast<size_t>(i) % c.args.size()];
                        }));
      scope["loop"] = Value(std::move(loop));
      Status bound = bind(scope, items[static_cast<size_t>(i)]);
      Result<Flow> f = bound.ok() ? exec_body(n.body) : Result<Flow>(bound);
      scopes_.pop_back();
      if (!f.ok()) return f.status();
      if (*f == Flow::kBreak) break;
    }
    return Flow::kNormal;
  }

  Value make_macro(const Node& n) {
    return function([this, &n](Call& c) -> Result<Value> {
      if (++depth_ > limits_.max_depth) {
        return render_error(n.line, "macros call each other more than " +
                                        std::to_string(limits_.max_depth) + " deep");
      }
      Scope args;
      if (c.args.size() > n.params.size()) {
        return render_error(n.line, "macro '" + n.name + "' takes " +
                                        std::to_string(n.params.size()) + " arguments");
      }
      for (size_t i = 0; i < n.params.size(); ++i) {
        const auto& [param, def] = n.params[i];
        const Value* given = arg(c, i, param);
        if (given != nullptr) {
          args[param] = *given;
        } else if (def) {
          MH_ASSIGN_OR_RETURN(args[param], eval(*def));
        } else {
          args[param] = Value::undefined(param);
        }
      }
      // The macro sees the template's top level and its arguments; its output is its value.
      std::vector<Scope> saved = std::move(scopes_);
      scopes_ = {saved.front(), std::move(args)};
      const size_t start = out_.text.size();
      Result<Flow> f = exec_body(n.body);
      std::string text = out_.text.substr(start);
      out_.text.resize(start);
      saved.front() = std::move(scopes_.front());
      scopes_ = std::move(saved);
      --depth_;
      if (!f.ok()) return f.status();
      return Value(std::move(text));
    });
  }

  // --- expressions ---

  Result<Value> eval(const Expr& e) {
    MH_TRY(tick(e.line));
    if (++depth_ > limits_.max_depth + 200) {
      --depth_;
      return render_error(e.line, "the expression nests too deeply");
    }
    Result<Value> r = eval_inner(e);
    --depth_;
    return r;
  }

  Result<Value> eval_inner(const Expr& e) {
    switch (e.kind) {
      case Expr::Kind::kLiteral:
        return e.value;
      case Expr::Kind::kName:
        return lookup(e.name);
      case Expr::Kind::kList:
      case Expr::Kind::kTuple: {
        List l;
        for (const ExprPtr& a : e.args) {
          MH_ASSIGN_OR_RETURN(Value v, eval(*a));
          l.push_back(std::move(v));
        }
        return Value(std::move(l));
      }
      case Expr::Kind::kDict: {
        Dict d;
        for (size_t i = 0; i + 1 < e.args.size(); i += 2) {
          MH_ASSIGN_OR_RETURN(Value k, eval(*e.args[i]));
          MH_ASSIGN_OR_RETURN(Value v, eval(*e.args[i + 1]));
          if (!k.is_string()) return render_error(e.line, "dict keys must be strings here");
          bool replaced = false;
          for (auto& [dk, dv] : d) {
            if (dk == k.as_string()) dv = v, replaced = true;
          }
          if (!replaced) d.emplace_back(k.as_string(), std::move(v));
        }
        return Value(std::move(d));
      }
      case Expr::Kind::kAttr: {
        MH_ASSIGN_OR_RETURN(Value obj, eval(*e.args[0]));
        return get_attr(obj, e.name, e.line);
      }
      case Expr::Kind::kItem: {
        MH_ASSIGN_OR_RETURN(Value obj, eval(*e.args[0]));
        MH_ASSIGN_OR_RETURN(Value key, eval(*e.args[1]));
        return get_item(obj, key, e.line);
      }
      case Expr::Kind::kSlice:
        return eval_slice(e);
      case Expr::Kind::kCall:
        return eval_call(e);
      case Expr::Kind::kFilter: {
        MH_ASSIGN_OR_RETURN(Value input, eval(*e.args[0]));
        MH_ASSIGN_OR_RETURN(Call c, arguments(e));
        return apply_filter(e.name, input, c, e.line);
      }
      case Expr::Kind::kTest: {
        MH_ASSIGN_OR_RETURN(Value input, eval(*e.args[0]));
        MH_ASSIGN_OR_RETURN(Call c, arguments(e));
        MH_ASSIGN_OR_RETURN(bool r, apply_test(e.name, input, c, e.line));
        return Value(r != e.negate);
      }
      case Expr::Kind::kUnary: {
        MH_ASSIGN_OR_RETURN(Value v, eval(*e.args[0]));
        if (e.name == "not") return Value(!v.truthy());
        if (!v.is_number()) return render_error(e.line, "bad operand for unary " + e.name + ": " + v.type_name());
        if (e.name == "+") return v.is_bool() ? Value(v.as_int()) : v;
        return v.is_float() ? Value(-v.as_double()) : Value(-v.as_int());
      }
      case Expr::Kind::kBinary:
        return eval_binary(e);
      case Expr::Kind::kCompare: {
        MH_ASSIGN_OR_RETURN(Value left, eval(*e.args[0]));
        for (size_t i = 0; i < e.ops.size(); ++i) {
          MH_ASSIGN_OR_RETURN(Value right, eval(*e.args[i + 1]));
          MH_ASSIGN_OR_RETURN(bool ok, compare_op(e.ops[i], left, right, e.line));
          if (!ok) return Value(false);
          left = std::move(right);
        }
        return Value(true);
      }
      case Expr::Kind::kCond: {
        MH_ASSIGN_OR_RETURN(Value c, eval(*e.args[1]));
        if (c.truthy()) return eval(*e.args[0]);
        if (!e.args[2]) return Value::undefined();
        return eval(*e.args[2]);
      }
    }
    return Value();
  }

  Result<Call> arguments(const Expr& e) {
    Call c;
    // A call's args[0] is the callee; a filter's or test's is its input.
    for (size_t i = 1; i < e.args.size(); ++i) {
      MH_ASSIGN_OR_RETURN(Value v, eval(*e.args[i]));
      c.args.push_back(std::move(v));
    }
    for (const auto& [k, x] : e.kwargs) {
      MH_ASSIGN_OR_RETURN(Value v, eval(*x));
      c.kwargs.emplace_back(k, std::move(v));
    }
    return c;
  }

  Result<bool> compare_op(const std::string& op, const Value& a, const Value& b, int line) {
    if (op == "==") return a == b;
    if (op == "!=") return !(a == b);
    if (op == "in" || op == "not in") {
      MH_ASSIGN_OR_RETURN(bool in, contains(b, a, line));
      return in == (op == "in");
    }
    MH_ASSIGN_OR_RETURN(int c, compare(a, b, line));
    if (op == "<") return c < 0;
    if (op == ">") return c > 0;
    if (op == "<=") return c <= 0;
    return c >= 0;
  }

  Result<bool> contains(const Value& container, const Value& item, int line) {
    if (container.is_string()) {
      if (!item.is_string()) return render_error(line, "'in <string>' needs a string on the left");
      return container.as_string().find(item.as_string()) != std::string::npos;
    }
    if (container.is_dict()) return item.is_string() && container.find(item.as_string()) != nullptr;
    if (container.is_list()) {
      for (const Value& v : container.as_list()) {
        if (v == item) return true;
      }
      return false;
    }
    if (container.is_undefined()) return false;
    return render_error(line, "a " + container.type_name() + " cannot be searched with 'in'");
  }

  Result<Value> eval_binary(const Expr& e) {
    MH_ASSIGN_OR_RETURN(Value a, eval(*e.args[0]));
    if (e.name == "and") return a.truthy() ? eval(*e.args[1]) : a;
    if (e.name == "or") return a.truthy() ? a : eval(*e.args[1]);
    MH_ASSIGN_OR_RETURN(Value b, eval(*e.args[1]));
    const std::string& op = e.name;
    if (op == "~") return Value(a.str() + b.str());
    if (a.is_undefined() || b.is_undefined()) {
      const Value& u = a.is_undefined() ? a : b;
      return render_error(e.line, "'" + u.undefined_name() + "' is undefined");
    }
    if (op == "+") {
      if (a.is_string() && b.is_string()) return Value(a.as_string() + b.as_string());
      if (a.is_list() && b.is_list()) {
        List l = a.as_list();
        l.insert(l.end(), b.as_list().begin(), b.as_list().end());
        return Value(std::move(l));
      }
    }
    if (op == "*" && (a.is_string() || a.is_list()) && (b.is_int() || b.is_bool())) {
      const int64_t n = b.as_int();
      if (n > 0 && (a.is_string() ? a.as_string().size() : a.as_list().size()) * static_cast<size_t>(n) > limits_.max_output) {
        return render_error(e.line, "a repetition is longer than the output limit");
      }
      if (a.is_string()) {
        std::string s;
        for (int64_t i = 0; i < n; ++i) s += a.as_string();
        return Value(std::move(s));
      }
      List l;
      for (int64_t i = 0; i < n; ++i) l.insert(l.end(), a.as_list().begin(), a.as_list().end());
      return Value(std::move(l));
    }
    if (!a.is_number() || !b.is_number()) {
      return render_error(e.line, "unsupported operand types for " + op + ": " + a.type_name() +
                                      " and " + b.type_name());
    }
    const bool floats = a.is_float() || b.is_float();
    if (op == "/") {
      if (b.as_double() == 0) return render_error(e.line, "division by zero");
      return Value(a.as_double() / b.as_double());
    }
    if (floats) {
      const double x = a.as_double(), y = b.as_double();
      if (op == "+") return Value(x + y);
      if (op == "-") return Value(x - y);
      if (op == "*") return Value(x * y);
      if (op == "**") return Value(std::pow(x, y));
      if (y == 0) return render_error(e.line, "division by zero");
      if (op == "//") return Value(std::floor(x / y));
      if (op == "%") return Value(x - std::floor(x / y) * y);
    }
    // Python's integers do not overflow; past 64 bits this engine refuses.
    const int64_t x = a.as_int(), y = b.as_int();
    int64_t r = 0;
    const Status overflow = render_error(e.line, "integer overflow in " + op);
    if (op == "+") return __builtin_add_overflow(x, y, &r) ? Result<Value>(overflow) : Value(r);
    if (op == "-") return __builtin_sub_overflow(x, y, &r) ? Result<Value>(overflow) : Value(r);
    if (op == "*") return __builtin_mul_overflow(x, y, &r) ? Result<Value>(overflow) : Value(r);
    if (op == "**") {
      if (y < 0) return Value(std::pow(static_cast<double>(x), static_cast<double>(y)));
      r = 1;
      for (int64_t i = 0; i < y; ++i) {
        if (__builtin_mul_overflow(r, x, &r)) return overflow;
        if (r == 0 || r == 1) break;
      }
      if (r == 1 && x == -1 && y % 2 == 1) r = -1;
      return Value(r);
    }
    if (y == 0) return render_error(e.line, "division by zero");
    if (x == INT64_MIN && y == -1) return overflow;
    const int64_t q = x / y - ((x % y != 0) && ((x < 0) != (y < 0)) ? 1 : 0);
    if (op == "//") return Value(q);
    return Value(x - q * y);  // "%": Python's sign follows the divisor
  }

  Result<Value> eval_slice(const Expr& e) {
    MH_ASSIGN_OR_RETURN(Value obj, eval(*e.args[0]));
    int64_t bounds[3] = {0, 0, 1};
    bool given[3] = {false, false, false};
    for (int k = 0; k < 3; ++k) {
      if (!e.args[static_cast<size_t>(k) + 1]) continue;
      MH_ASSIGN_OR_RETURN(Value v, eval(*e.args[static_cast<size_t>(k) + 1]));
      if (v.is_none()) continue;
      if (!v.is_int() && !v.is_bool()) return render_error(e.line, "slice indices must be integers");
      bounds[k] = v.as_int();
      given[k] = true;
    }
    const int64_t step = given[2] ? bounds[2] : 1;
    if (step == 0) return render_error(e.line, "slice step cannot be zero");
    List items;
    std::vector<std::string_view> chars;
    int64_t n;
    if (obj.is_list()) {
      n = static_cast<int64_t>(obj.as_list().size());
    } else if (obj.is_string()) {
      chars = chars_of(obj.as_string());
      n = static_cast<int64_t>(chars.size());
    } else if (obj.is_undefined()) {
      return render_error(e.line, "'" + obj.undefined_name() + "' is undefined");
    } else {
      return render_error(e.line, "a " + obj.type_name() + " cannot be sliced");
    }
    // Python's slice.indices().
    auto clamp = [&](int64_t v, bool is_given, int64_t fallback) {
      if (!is_given) return fallback;
      if (v < 0) v += n;
      if (step > 0) return std::clamp<int64_t>(v, 0, n);
      return std::clamp<int64_t>(v, -1, n - 1);
    };
    const int64_t start = clamp(bounds[0], given[0], step > 0 ? 0 : n - 1);
    const int64_t stop = clamp(bounds[1], given[1], step > 0 ? n : -1);
    std::string s;
    List l;
    for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) {
      if (obj.is_list()) {
        l.push_back(obj.as_list()[static_cast<size_t>(i)]);
      } else {
        s += chars[static_cast<size_t>(i)];
      }
    }
    return obj.is_list() ? Value(std::move(l)) : Value(std::move(s));
  }

  Result<Value> get_attr(const Value& obj, const std::string& name, int line) {
    if (obj.is_undefined()) {
      return render_error(line, "'" + obj.undefined_name() + "' is undefined (reading ." + name + ")");
    }
    if (obj.is_dict() || obj.is_namespace()) {
      if (obj.is_dict() && is_method(obj, name)) return bound_method(obj, name, line);
      const Value* v = obj.find(name);
      return v != nullptr ? *v : Value::undefined(name);
    }
    if (is_method(obj, name)) return bound_method(obj, name, line);
    return Value::undefined(name);
  }

  Result<Value> get_item(const Value& obj, const Value& key, int line) {
    if (obj.is_undefined()) {
      return render_error(line, "'" + obj.undefined_name() + "' is undefined (reading [" + key.repr() + "])");
    }
    if ((obj.is_dict() || obj.is_namespace()) && key.is_string()) {
      const Value* v = obj.find(key.as_string());
      if (v != nullptr) return *v;
      return get_attr(obj, key.as_string(), line);
    }
    if ((obj.is_list() || obj.is_string()) && (key.is_int() || key.is_bool())) {
      int64_t i = key.as_int();
      if (obj.is_list()) {
        const auto n = static_cast<int64_t>(obj.as_list().size());
        if (i < 0) i += n;
        if (i < 0 || i >= n) return Value::undefined("[" + std::to_string(key.as_int()) + "]");
        return obj.as_list()[static_cast<size_t>(i)];
      }
      auto chars = chars_of(obj.as_string());
      const auto n = static_cast<int64_t>(chars.size());
      if (i < 0) i += n;
      if (i < 0 || i >= n) return Value::undefined("[" + std::to_string(key.as_int()) + "]");
      return Value(std::string(chars[static_cast<size_t>(i)]));
    }
    if (key.is_string()) return get_attr(obj, key.as_string(), line);
    return Value::undefined();
  }

  static bool is_method(const Value& obj, const std::string& name) {
    static const char* kString[] = {"startswith", "endswith", "strip", "lstrip", "rstrip", "split",
                                    "rsplit", "upper", "lower", "title", "capitalize", "replace",
                                    "find", "rfind", "count", "join", "splitlines", "isdigit",
                                    "isalpha", "isalnum", "isspace", "islower", "isupper"};
    static const char* kDict[] = {"items", "keys", "values", "get", "copy"};
    static const char* kList[] = {"index", "count", "copy"};
    auto in = [&](auto& list) {
      return std::find(std::begin(list), std::end(list), name) != std::end(list);
    };
    if (obj.is_string()) return in(kString);
    if (obj.is_dict()) return in(kDict);
    if (obj.is_list()) return in(kList);
    return false;
  }

  Value bound_method(const Value& obj, const std::string& name, int line) {
    return function([this, obj, name, line](Call& c) { return call_method(obj, name, c, line); });
  }

  Result<Value> eval_call(const Expr& e) {
    MH_ASSIGN_OR_RETURN(Value callee, eval(*e.args[0]));
    MH_ASSIGN_OR_RETURN(Call c, arguments(e));
    if (callee.is_callable()) return callee.as_function()(c);
    if (callee.is_undefined()) {
      return render_error(e.line, "'" + callee.undefined_name() + "' is undefined or not a function");
    }
    return render_error(e.line, "a " + callee.type_name() + " is not callable");
  }

  Result<Value> call_method(const Value& obj, const std::string& name, Call& c, int line) {
    if (obj.is_dict()) {
      if (name == "items") {
        List l;
        for (const auto& [k, v] : obj.as_dict()) l.push_back(Value(List{Value(k), v}));
        return Value(std::move(l));
      }
      if (name == "keys" || name == "values") {
        List l;
        for (const auto& [k, v] : obj.as_dict()) l.push_back(name == "keys" ? Value(k) : v);
        return Value(std::move(l));
      }
      if (name == "get") {
        const Value* key = arg(c, 0, "key");
        const Value* def = arg(c, 1, "default");
        const Value* v = key != nullptr && key->is_string() ? obj.find(key->as_string()) : nullptr;
        return v != nullptr ? *v : def != nullptr ? *def : Value();
      }
      return Value(Dict(obj.as_dict()));  // copy
    }
    if (obj.is_list()) {
      if (name == "copy") return Value(List(obj.as_list()));
      const Value* x = arg(c, 0, "value");
      if (x == nullptr) return render_error(line, "list." + name + "() needs an argument");
      int64_t count = 0;
      for (size_t i = 0; i < obj.as_list().size(); ++i) {
        if (obj.as_list()[i] == *x) {
          if (name == "index") return Value(static_cast<int64_t>(i));
          ++count;
        }
      }
      if (name == "index") return render_error(line, "list.index(x): x not in list");
      return Value(count);
    }
    const std::string& s = obj.as_string();
    const Value* a0 = arg(c, 0, "");
    auto string_arg = [&](const char* what) -> Result<std::string> {
      if (a0 == nullptr || !a0->is_string()) {
        return render_error(line, "str." + name + "() needs a string " + what);
      }
      return a0->as_string();
    };
    if (name == "startswith" || name == "endswith") {
      if (a0 == nullptr) return render_error(line, "str." + name + "() needs an argument");
      List options = a0->is_list() ? a0->as_list() : List{*a0};
      for (const Value& o : options) {
        if (!o.is_string()) return render_error(line, "str." + name + "() takes strings");
        if (name == "startswith" ? std::string_view(s).starts_with(o.as_string())
                                 : std::string_view(s).ends_with(o.as_string())) {
          return Value(true);
        }
      }
      return Value(false);
    }
    if ((name == "strip" || name == "lstrip" || name == "rstrip") && a0 != nullptr &&
        !a0->is_none() && !a0->is_string()) {
      return render_error(line, "str." + name + "() takes a string or none");
    }
    if (name == "strip") return Value(py_strip(s, a0, true, true));
    if (name == "lstrip") return Value(py_strip(s, a0, true, false));
    if (name == "rstrip") return Value(py_strip(s, a0, false, true));
    if (name == "split" || name == "rsplit") {
      const Value* sep = arg(c, 0, "sep");
      const Value* max = arg(c, 1, "maxsplit");
      if (sep != nullptr && !sep->is_none() && (!sep->is_string() || sep->as_string().empty())) {
        return render_error(line, "str.split() needs a non-empty string separator");
      }
      const int64_t maxsplit = max != nullptr && max->is_int() ? max->as_int() : -1;
      if (name == "rsplit" && maxsplit >= 0) {
        return render_error(line, "str.rsplit() with maxsplit is not implemented");
      }
      return Value(py_split(s, sep, maxsplit));
    }
    if (name == "upper") return Value(map_case(s, true));
    if (name == "lower") return Value(map_case(s, false));
    if (name == "title") return Value(py_title(s));
    if (name == "capitalize") {
      auto cs = chars_of(s);
      std::string out;
      for (size_t i = 0; i < cs.size(); ++i) out += map_case(cs[i], i == 0);
      return Value(out);
    }
    if (name == "replace") {
      MH_ASSIGN_OR_RETURN(std::string from, string_arg("to replace"));
      const Value* to = arg(c, 1, "");
      if (to == nullptr || !to->is_string()) return render_error(line, "str.replace() needs two strings");
      const Value* count = arg(c, 2, "count");
      return Value(replace(s, from, to->as_string(), count != nullptr && count->is_int() ? count->as_int() : -1));
    }
    if (name == "find" || name == "rfind" || name == "count") {
      MH_ASSIGN_OR_RETURN(std::string sub, string_arg("to find"));
      if (name == "count") {
        int64_t n = 0;
        for (size_t at = s.find(sub); at != std::string::npos && !sub.empty(); at = s.find(sub, at + sub.size())) ++n;
        return Value(sub.empty() ? static_cast<int64_t>(chars_of(s).size()) + 1 : n);
      }
      const size_t at = name == "find" ? s.find(sub) : s.rfind(sub);
      if (at == std::string::npos) return Value(int64_t{-1});
      return Value(static_cast<int64_t>(chars_of(s.substr(0, at)).size()));
    }
    if (name == "join") {
      if (a0 == nullptr) return render_error(line, "str.join() needs an iterable");
      MH_ASSIGN_OR_RETURN(List items, iterate(*a0, line));
      std::string out;
      for (size_t i = 0; i < items.size(); ++i) {
        if (!items[i].is_string()) return render_error(line, "str.join() takes strings");
        if (i > 0) out += s;
        out += items[i].as_string();
      }
      return Value(out);
    }
    if (name == "splitlines") {
      List l;
      size_t at = 0;
      while (at < s.size()) {
        size_t e = s.find_first_of("\r\n", at);
        if (e == std::string::npos) {
          l.push_back(Value(s.substr(at)));
          break;
        }
        l.push_back(Value(s.substr(at, e - at)));
        at = e + (s[e] == '\r' && e + 1 < s.size() && s[e + 1] == '\n' ? 2 : 1);
      }
      return Value(std::move(l));
    }
    // isdigit, isalpha, isalnum, isspace, islower, isupper
    auto cs = chars_of(s);
    if (cs.empty()) return Value(false);
    bool all = true, cased = false;
    for (std::string_view ch : cs) {
      const int32_t cp = unicode::decode(ch, 0).cp;
      const auto cat = cp < 0 ? UTF8PROC_CATEGORY_CN : utf8proc_category(cp);
      const bool letter = cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_LO;
      const bool digit = cat == UTF8PROC_CATEGORY_ND;
      if (name == "isdigit") all = all && digit;
      if (name == "isalpha") all = all && letter;
      if (name == "isalnum") all = all && (letter || digit || unicode::is_numeric(cp));
      if (name == "isspace") all = all && is_py_space(ch);
      if (name == "islower") {
        all = all && cat != UTF8PROC_CATEGORY_LU && cat != UTF8PROC_CATEGORY_LT;
        cased = cased || cat == UTF8PROC_CATEGORY_LL;
      }
      if (name == "isupper") {
        all = all && cat != UTF8PROC_CATEGORY_LL && cat != UTF8PROC_CATEGORY_LT;
        cased = cased || cat == UTF8PROC_CATEGORY_LU;
      }
    }
    if (name == "islower" || name == "isupper") return Value(all && cased);
    return Value(all);
  }

  static std::string replace(const std::string& s, const std::string& from, const std::string& to,
                             int64_t count) {
    if (from.empty()) {
      // Python inserts `to` between the characters (and at both ends).
      std::string out = to;
      int64_t done = 1;
      for (std::string_view ch : chars_of(s)) {
        out += ch;
        if (count < 0 || done < count) out += to, ++done;
      }
      return out;
    }
    std::string out;
    size_t at = 0;
    int64_t done = 0;
    while (count < 0 || done < count) {
      const size_t f = s.find(from, at);
      if (f == std::string::npos) break;
      out += s.substr(at, f - at) + to;
      at = f + from.size();
      ++done;
    }
    return out + s.substr(at);
  }

  // --- filters and tests ---

  Result<Value> apply_filter(const std::string& name, const Value& v, Call& c, int line) {
    if (name == "default" || name == "d") {
      const Value* def = arg(c, 0, "default_value");
      const Value* boolean = arg(c, 1, "boolean");
      const bool use = v.is_undefined() || (boolean != nullptr && boolean->truthy() && !v.truthy());
      return use ? (def != nullptr ? *def : Value(std::string())) : v;
    }
    if (name == "tojson") {
      JsonDumpOptions o;
      if (const Value* indent = arg(c, 0, "indent"); indent != nullptr && !indent->is_none()) {
        if (!indent->is_int()) return render_error(line, "tojson's indent must be an integer");
        o.indent = indent->as_int();
        o.item_separator = ",";
      }
      if (const Value* ascii = arg(c, 1, "ensure_ascii")) o.ensure_ascii = ascii->truthy();
      if (const Value* seps = arg(c, 2, "separators"); seps != nullptr && !seps->is_none()) {
        if (!seps->is_list() || seps->as_list().size() != 2 || !seps->as_list()[0].is_string() ||
            !seps->as_list()[1].is_string()) {
          return render_error(line, "tojson's separators must be two strings");
        }
        o.item_separator = seps->as_list()[0].as_string();
        o.key_separator = seps->as_list()[1].as_string();
      }
      if (const Value* sort = arg(c, 3, "sort_keys")) o.sort_keys = sort->truthy();
      auto r = json_dumps(v, o);
      if (!r.ok()) return render_error(line, r.status().message());
      return Value(*r);
    }
    if (name == "trim") {
      const Value* chars = arg(c, 0, "chars");
      if (chars != nullptr && !chars->is_none() && !chars->is_string()) {
        return render_error(line, "trim takes a string or none");
      }
      return Value(py_strip(v.str(), chars, true, true));
    }
    if (name == "length" || name == "count") {
      MH_ASSIGN_OR_RETURN(int64_t n, length(v, line));
      return Value(n);
    }
    if (name == "string") return Value(v.str());
    if (name == "safe") return v;
    if (name == "e" || name == "escape") {
      std::string out;
      for (char ch : v.str()) {
        switch (ch) {
          case '&': out += "&amp;"; break;
          case '<': out += "&lt;"; break;
          case '>': out += "&gt;"; break;
          case '"': out += "&#34;"; break;
          case '\'': out += "&#39;"; break;
          default: out += ch;
        }
      }
      return Value(out);
    }
    if (name == "lower") return Value(map_case(v.str(), false));
    if (name == "upper") return Value(map_case(v.str(), true));
    if (name == "title") return Value(py_title(v.str()));
    if (name == "capitalize") {
      auto cs = chars_of(v.str());
      std::string out;
      for (size_t i = 0; i < cs.size(); ++i) out += map_case(cs[i], i == 0);
      return Value(out);
    }
    if (name == "replace") {
      const Value* from = arg(c, 0, "old");
      const Value* to = arg(c, 1, "new");
      const Value* count = arg(c, 2, "count");
      if (from == nullptr || to == nullptr || !from->is_string() || !to->is_string()) {
        return render_error(line, "replace needs two strings");
      }
      return Value(replace(v.str(), from->as_string(), to->as_string(),
                           count != nullptr && count->is_int() ? count->as_int() : -1));
    }
    if (name == "indent") {
      const Value* width = arg(c, 0, "width");
      const Value* first = arg(c, 1, "first");
      const Value* blank = arg(c, 2, "blank");
      const std::string pad = width == nullptr ? std::string(4, ' ')
                              : width->is_string() ? width->as_string()
                                                   : std::string(static_cast<size_t>(std::max<int64_t>(0, width->as_int())), ' ');
      const std::string s = v.str();
      std::string out;
      size_t at = 0;
      bool first_line = true;
      while (true) {
        const size_t nl = s.find('\n', at);
        const std::string ln = s.substr(at, nl == std::string::npos ? std::string::npos : nl - at);
        const bool indent_it = (!first_line || (first != nullptr && first->truthy())) &&
                               (!ln.empty() || (blank != nullptr && blank->truthy()));
        out += (indent_it ? pad : "") + ln;
        if (nl == std::string::npos) break;
        out += '\n';
        at = nl + 1;
        first_line = false;
      }
      return Value(out);
    }
    if (name == "int" || name == "float") {
      const Value* def = arg(c, 0, "default");
      Value fallback = def != nullptr ? *def : (name == "int" ? Value(int64_t{0}) : Value(0.0));
      if (v.is_number()) return name == "int" ? Value(static_cast<int64_t>(v.as_double())) : Value(v.as_double());
      if (v.is_string()) {
        const std::string s = py_strip(v.as_string(), nullptr, true, true);
        char* end = nullptr;
        if (name == "int") {
          const long long x = std::strtoll(s.c_str(), &end, 10);
          if (!s.empty() && end == s.c_str() + s.size()) return Value(static_cast<int64_t>(x));
          const double d = std::strtod(s.c_str(), &end);
          if (!s.empty() && end == s.c_str() + s.size()) return Value(static_cast<int64_t>(d));
        } else {
          const double d = std::strtod(s.c_str(), &end);
          if (!s.empty() && end == s.c_str() + s.size()) return Value(d);
        }
      }
      return fallback;
    }
    if (name == "abs") {
      if (!v.is_number()) return render_error(line, "abs needs a number");
      return v.is_float() ? Value(std::fabs(v.as_double())) : Value(static_cast<int64_t>(std::llabs(v.as_int())));
    }
    if (name == "round") {
      const Value* precision = arg(c, 0, "precision");
      const Value* method = arg(c, 1, "method");
      if (!v.is_number()) return render_error(line, "round needs a number");
      const double scale = std::pow(10.0, precision != nullptr ? precision->as_double() : 0);
      const double x = v.as_double() * scale;
      const std::string m = method != nullptr ? method->str() : "common";
      const double r = m == "ceil" ? std::ceil(x) : m == "floor" ? std::floor(x) : std::round(x);
      return Value(r / scale);
    }
    if (name == "wordcount") return Value(static_cast<int64_t>(py_split(v.str(), nullptr, -1).size()));
    if (name == "items" || name == "dictsort") {
      if (v.is_undefined()) return Value(List{});
      if (!v.is_dict()) return render_error(line, name + " needs a dict");
      List l;
      for (const auto& [k, x] : v.as_dict()) l.push_back(Value(List{Value(k), x}));
      if (name == "dictsort") {
        std::stable_sort(l.begin(), l.end(), [](const Value& a, const Value& b) {
          return a.as_list()[0].as_string() < b.as_list()[0].as_string();
        });
      }
      return Value(std::move(l));
    }
    // The rest work on the items of an iterable.
    MH_ASSIGN_OR_RETURN(List items, iterate(v, line));
    if (name == "list") return Value(std::move(items));
    if (name == "first" || name == "last") {
      if (items.empty()) return Value::undefined(name);
      return name == "first" ? items.front() : items.back();
    }
    if (name == "reverse") {
      if (v.is_string()) {
        std::string out;
        for (auto it = items.rbegin(); it != items.rend(); ++it) out += it->as_string();
        return Value(out);
      }
      std::reverse(items.begin(), items.end());
      return Value(std::move(items));
    }
    if (name == "join") {
      const Value* sep = arg(c, 0, "d");
      const Value* attribute = arg(c, 1, "attribute");
      std::string out;
      for (size_t i = 0; i < items.size(); ++i) {
        if (i > 0 && sep != nullptr) out += sep->str();
        if (attribute != nullptr) {
          MH_ASSIGN_OR_RETURN(Value a, get_attr(items[i], attribute->str(), line));
          out += a.str();
        } else {
          out += items[i].str();
        }
      }
      return Value(out);
    }
    if (name == "map") {
      const Value* attribute = arg(c, 0, "attribute");
      List out;
      for (const Value& item : items) {
        if (c.args.empty() && attribute != nullptr) {
          MH_ASSIGN_OR_RETURN(Value a, get_attr(item, attribute->str(), line));
          if (a.is_undefined()) {
            if (const Value* def = arg(c, 99, "default")) a = *def;
          }
          out.push_back(a);
        } else if (!c.args.empty() && c.args[0].is_string() && is_filter(c.args[0].as_string())) {
          Call rest;
          rest.args.assign(c.args.begin() + 1, c.args.end());
          rest.kwargs = c.kwargs;
          MH_ASSIGN_OR_RETURN(Value m, apply_filter(c.args[0].as_string(), item, rest, line));
          out.push_back(m);
        } else {
          return render_error(line, "map needs attribute= or the name of a filter");
        }
      }
      return Value(std::move(out));
    }
    if (name == "select" || name == "reject" || name == "selectattr" || name == "rejectattr") {
      const bool by_attr = name.ends_with("attr");
      const bool keep_if = name.starts_with("select");
      size_t first_arg = 0;
      std::string attribute;
      if (by_attr) {
        if (c.args.empty()) return render_error(line, name + " needs an attribute");
        attribute = c.args[0].str();
        first_arg = 1;
      }
      std::string test = c.args.size() > first_arg ? c.args[first_arg].str() : "";
      if (!test.empty() && !is_test(test)) {
        return render_error(line, "the test '" + test + "' is not implemented by this engine");
      }
      Call rest;
      if (c.args.size() > first_arg + 1) rest.args.assign(c.args.begin() + static_cast<long>(first_arg) + 1, c.args.end());
      List out;
      for (const Value& item : items) {
        Value subject = item;
        if (by_attr) {
 MH_ASSIGN_OR_RETURN(subject, get_attr(item, attribute, line));
}
        bool ok;
        if (test.empty()) {
          ok = subject.truthy();
        } else {
          MH_ASSIGN_OR_RETURN(ok, apply_test(test, subject, rest, line));
        }
        if (ok == keep_if) out.push_back(item);
      }
      return Value(std::move(out));
    }
    if (name == "unique") {
      List out;
      for (const Value& item : items) {
        if (std::find(out.begin(), out.end(), item) == out.end()) out.push_back(item);
      }
      return Value(std::move(out));
    }
    if (name == "sort" || name == "max" || name == "min") {
      const Value* reverse = name == "sort" ? arg(c, 0, "reverse") : nullptr;
      const Value* attribute = arg(c, name == "sort" ? 2 : 1, "attribute");
      auto key = [&](const Value& item) -> Result<Value> {
        Value k = item;
        if (attribute != nullptr) {
 MH_ASSIGN_OR_RETURN(k, get_attr(item, attribute->str(), line));
}
        if (k.is_string()) return Value(map_case(k.as_string(), false));  // case_sensitive=False
        return k;
      };
      Status failed;
      auto less = [&](const Value& a, const Value& b) {
        auto ka = key(a), kb = key(b);
        if (!ka.ok() || !kb.ok()) return false;
        auto r = compare(*ka, *kb, line);
        if (!r.ok()) failed = r.status();
        return r.ok() && *r < 0;
      };
      if (name == "sort") {
        std::stable_sort(items.begin(), items.end(), less);
        if (!failed.ok()) return failed;
        if (reverse != nullptr && reverse->truthy()) std::reverse(items.begin(), items.end());
        return Value(std::move(items));
      }
      if (items.empty()) return Value::undefined(name);
      auto it = name == "max" ? std::max_element(items.begin(), items.end(), less)
                              : std::min_element(items.begin(), items.end(), less);
      if (!failed.ok()) return failed;
      return *it;
    }
    if (name == "sum") {
      const Value* attribute = arg(c, 0, "attribute");
      const Value* start = arg(c, 1, "start");
      Value total = start != nullptr ? *start : Value(int64_t{0});
      for (const Value& item : items) {
        Value x = item;
        if (attribute != nullptr) {
 MH_ASSIGN_OR_RETURN(x, get_attr(item, attribute->str(), line));
}
        if (!x.is_number() || !total.is_number()) return render_error(line, "sum needs numbers");
        total = total.is_float() || x.is_float() ? Value(total.as_double() + x.as_double())
                                                 : Value(total.as_int() + x.as_int());
      }
      return total;
    }
    return render_error(line, "the filter '" + name + "' is not implemented by this engine");
  }

  Result<bool> apply_test(const std::string& name, const Value& v, Call& c, int line) {
    const Value* other = arg(c, 0, "");
    auto need_other = [&]() -> Status {
      if (other == nullptr) return render_error(line, "the test '" + name + "' needs an argument");
      return {};
    };
    if (name == "defined") return !v.is_undefined();
    if (name == "undefined") return v.is_undefined();
    if (name == "none") return v.is_none();
    if (name == "string") return v.is_string();
    if (name == "number") return v.is_number();
    if (name == "integer") return v.is_int();
    if (name == "float") return v.is_float();
    if (name == "boolean") return v.is_bool();
    if (name == "true") return v.is_bool() && v.as_bool();
    if (name == "false") return v.is_bool() && !v.as_bool();
    if (name == "mapping") return v.is_dict();
    if (name == "iterable") return v.is_list() || v.is_dict() || v.is_string() || v.is_undefined();
    if (name == "sequence") return v.is_list() || v.is_dict() || v.is_string();
    if (name == "callable") return v.is_callable();
    if (name == "lower" || name == "upper") {
      if (!v.is_string()) return false;
      return map_case(v.as_string(), name == "upper") == v.as_string();
    }
    if (name == "odd" || name == "even" || name == "divisibleby") {
      if (!v.is_number()) return render_error(line, "the test '" + name + "' needs a number");
      if (name == "divisibleby") {
        MH_TRY(need_other());
        if (!other->is_number() || other->as_int() == 0) return render_error(line, "divisibleby needs a non-zero number");
        return v.as_int() % other->as_int() == 0;
      }
      return (v.as_int() % 2 != 0) == (name == "odd");
    }
    MH_TRY(need_other());
    if (name == "equalto" || name == "eq" || name == "==") return v == *other;
    if (name == "ne" || name == "!=") return !(v == *other);
    if (name == "sameas") {
      return (v.is_none() && other->is_none()) || (v.is_bool() && other->is_bool() && v == *other);
    }
    if (name == "in") return contains(*other, v, line);
    MH_ASSIGN_OR_RETURN(int cmp, compare(v, *other, line));
    if (name == "lt" || name == "<") return cmp < 0;
    if (name == "gt" || name == ">") return cmp > 0;
    if (name == "le" || name == "<=") return cmp <= 0;
    return cmp >= 0;
  }

  const RenderLimits& limits_;
  int64_t steps_ = 0, depth_ = 0;
  std::vector<Scope> scopes_;
  Rendered out_;
};

}  // namespace

Result<Rendered> Template::render(const Dict& context, const RenderLimits& limits) const {
  Renderer r(limits, context);
  return r.run(*root_);
}

}  // namespace mh::engine::jinja
