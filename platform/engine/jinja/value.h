// Value: what a Jinja template computes with, behaving as the Python objects Jinja2 renders
// (None, bool, int, float, str, list, dict), so that printing, comparing and tojson give the
// same text Python's Jinja2 gives. Lists and dicts are shared, as Python's are; dicts keep their
// insertion order.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "platform/base/status.h"
#include "platform/engine/json.h"

namespace mh::engine::jinja {

class Value;
using List = std::vector<Value>;
using Dict = std::vector<std::pair<std::string, Value>>;

// A function a template calls: a global (range, namespace, raise_exception), a macro, or a
// method bound to its object. Arguments come positional, then by keyword.
struct Call {
  std::vector<Value> args;
  std::vector<std::pair<std::string, Value>> kwargs;
};
using Function = std::function<Result<Value>(Call&)>;

class Value {
 public:
  struct Undefined {
    std::string name;  // what was looked up, for errors
  };
  struct Namespace {
    Dict members;
  };

  Value() : v_(nullptr) {}
  static Value undefined(std::string name = {}) { return Value(Undefined{std::move(name)}); }
  explicit Value(bool b) : v_(b) {}
  explicit Value(int64_t i) : v_(i) {}
  explicit Value(double d) : v_(d) {}
  explicit Value(std::string s) : v_(std::move(s)) {}
  explicit Value(const char* s) : v_(std::string(s)) {}
  explicit Value(List l) : v_(std::make_shared<List>(std::move(l))) {}
  explicit Value(Dict d) : v_(std::make_shared<Dict>(std::move(d))) {}
  explicit Value(std::shared_ptr<Namespace> n) : v_(std::move(n)) {}
  explicit Value(std::shared_ptr<Function> f) : v_(std::move(f)) {}
  static Value from_json(const Json& json);

  bool is_undefined() const { return std::holds_alternative<Undefined>(v_); }
  bool is_none() const { return std::holds_alternative<std::nullptr_t>(v_); }
  bool is_bool() const { return std::holds_alternative<bool>(v_); }
  bool is_int() const { return std::holds_alternative<int64_t>(v_); }
  bool is_float() const { return std::holds_alternative<double>(v_); }
  bool is_number() const { return is_int() || is_float() || is_bool(); }
  bool is_string() const { return std::holds_alternative<std::string>(v_); }
  bool is_list() const { return std::holds_alternative<std::shared_ptr<List>>(v_); }
  bool is_dict() const { return std::holds_alternative<std::shared_ptr<Dict>>(v_); }
  bool is_namespace() const { return std::holds_alternative<std::shared_ptr<Namespace>>(v_); }
  bool is_callable() const { return std::holds_alternative<std::shared_ptr<Function>>(v_); }

  bool as_bool() const { return std::get<bool>(v_); }
  // Numbers as Python converts them (a float truncated); anything else is 0.
  int64_t as_int() const {
    if (is_bool()) return as_bool() ? 1 : 0;
    if (is_float()) {
      const double d = std::get<double>(v_);
      return d != d ? 0 : d >= 9.2e18 ? INT64_MAX : d <= -9.2e18 ? INT64_MIN : static_cast<int64_t>(d);
    }
    return is_int() ? std::get<int64_t>(v_) : 0;
  }
  double as_double() const {
    return is_float() ? std::get<double>(v_) : static_cast<double>(as_int());
  }
  const std::string& as_string() const { return std::get<std::string>(v_); }
  List& as_list() const { return *std::get<std::shared_ptr<List>>(v_); }
  Dict& as_dict() const { return *std::get<std::shared_ptr<Dict>>(v_); }
  Namespace& as_namespace() const { return *std::get<std::shared_ptr<Namespace>>(v_); }
  Function& as_function() const { return *std::get<std::shared_ptr<Function>>(v_); }
  const std::string& undefined_name() const { return std::get<Undefined>(v_).name; }

  // Python's truth value.
  bool truthy() const;
  // Python's str(): what {{ value }} prints.
  std::string str() const;
  // Python's repr(): how a value prints inside a list or dict.
  std::string repr() const;
  // Python's type name, for errors ("str", "dict").
  std::string type_name() const;
  // A dict's member, or nullptr.
  const Value* find(std::string_view key) const;

  // Python's ==.
  friend bool operator==(const Value& a, const Value& b);

 private:
  explicit Value(Undefined u) : v_(std::move(u)) {}
  std::variant<std::nullptr_t, Undefined, bool, int64_t, double, std::string,
               std::shared_ptr<List>, std::shared_ptr<Dict>, std::shared_ptr<Namespace>,
               std::shared_ptr<Function>>
      v_;
};

// Python's repr of a float ("1.0", "0.1", "1e-05", "1e+16").
std::string python_float(double d);

struct JsonDumpOptions {
  int64_t indent = -1;  // -1: none (one line)
  std::string item_separator = ", ", key_separator = ": ";
  bool sort_keys = false;
  bool ensure_ascii = false;
};
// Python's json.dumps(value, ...) as transformers' tojson filter calls it. Fails on what JSON
// cannot hold (a function, an undefined value).
Result<std::string> json_dumps(const Value& value, const JsonDumpOptions& options);

}  // namespace mh::engine::jinja
