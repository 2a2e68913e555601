#include "platform/engine/jinja/value.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>

#include "platform/engine/unicode.h"

namespace mh::engine::jinja {

Value Value::from_json(const Json& json) {
  switch (json.type()) {
    case Json::Type::kNull: return Value();
    case Json::Type::kBool: return Value(json.as_bool());
    case Json::Type::kInt: return Value(json.as_int());
    case Json::Type::kDouble: return Value(json.as_double());
    case Json::Type::kString: return Value(json.as_string());
    case Json::Type::kArray: {
      List l;
      for (const Json& j : json.as_array()) l.push_back(from_json(j));
      return Value(std::move(l));
    }
    case Json::Type::kObject: {
      Dict d;
      for (const auto& [k, v] : json.as_object()) d.emplace_back(k, from_json(v));
      return Value(std::move(d));
    }
  }
  return Value();
}

bool Value::truthy() const {
  if (is_undefined() || is_none()) return false;
  if (is_bool()) return as_bool();
  if (is_int()) return as_int() != 0;
  if (is_float()) return as_double() != 0;
  if (is_string()) return !as_string().empty();
  if (is_list()) return !as_list().empty();
  if (is_dict()) return !as_dict().empty();
  return true;
}

std::string python_float(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d > 0 ? "inf" : "-inf";
  if (d == 0) return std::signbit(d) ? "-0.0" : "0.0";
  // The shortest digits that round-trip, placed as Python's repr places them.
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof(buf), d, std::chars_format::scientific);
  std::string s(buf, r.ptr);
  const size_t e = s.find('e');
  const int exponent = std::stoi(s.substr(e + 1));
  std::string mantissa = s.substr(0, e);
  const bool negative = mantissa[0] == '-';
  if (negative) mantissa.erase(0, 1);
  std::string digits;
  for (char c : mantissa) {
    if (c != '.') digits += c;
  }
  std::string out;
  if (exponent >= -4 && exponent < 16) {
    if (exponent < 0) {
      out = "0." + std::string(static_cast<size_t>(-exponent - 1), '0') + digits;
    } else if (static_cast<size_t>(exponent) + 1 >= digits.size()) {
      out = digits + std::string(static_cast<size_t>(exponent) + 1 - digits.size(), '0') + ".0";
    } else {
      out = digits.substr(0, static_cast<size_t>(exponent) + 1) + "." +
            digits.substr(static_cast<size_t>(exponent) + 1);
    }
  }
  if (out.empty()) {
    out = digits.substr(0, 1);
    if (digits.size() > 1) out += "." + digits.substr(1);
    char ebuf[16];
    std::snprintf(ebuf, sizeof(ebuf), "e%c%02d", exponent < 0 ? '-' : '+', std::abs(exponent));
    out += ebuf;
  }
  return negative ? "-" + out : out;
}

namespace {

std::string python_string_repr(std::string_view s) {
  const bool has_single = s.find('\'') != std::string_view::npos;
  const bool has_double = s.find('"') != std::string_view::npos;
  const char quote = has_single && !has_double ? '"' : '\'';
  std::string out(1, quote);
  for (size_t i = 0; i < s.size();) {
    const unicode::Char c = unicode::decode(s, i);
    const int32_t cp = c.cp;
    char buf[16];
    if (cp == '\\' || cp == quote) {
      out += '\\';
      out += static_cast<char>(cp);
    } else if (cp == '\n') {
      out += "\\n";
    } else if (cp == '\r') {
      out += "\\r";
    } else if (cp == '\t') {
      out += "\\t";
    } else if (cp < 0x20 || (cp >= 0x7f && cp < 0xa0)) {
      std::snprintf(buf, sizeof(buf), "\\x%02x", cp < 0 ? static_cast<uint8_t>(s[i]) : cp);
      out += buf;
    } else {
      out.append(s.substr(i, c.len));
    }
    i += c.len;
  }
  out += quote;
  return out;
}

}  // namespace

std::string Value::repr() const {
  if (is_string()) return python_string_repr(as_string());
  if (is_list()) {
    std::string out = "[";
    for (size_t i = 0; i < as_list().size(); ++i) {
      if (i > 0) out += ", ";
      out += as_list()[i].repr();
    }
    return out + "]";
  }
  if (is_dict()) {
    std::string out = "{";
    bool first = true;
    for (const auto& [k, v] : as_dict()) {
      if (!first) out += ", ";
      first = false;
      out += python_string_repr(k) + ": " + v.repr();
    }
    return out + "}";
  }
  return str();
}

std::string Value::str() const {
  if (is_undefined()) return "";
  if (is_none()) return "None";
  if (is_bool()) return as_bool() ? "True" : "False";
  if (is_int()) return std::to_string(as_int());
  if (is_float()) return python_float(as_double());
  if (is_string()) return as_string();
  if (is_list() || is_dict()) return repr();
  if (is_namespace()) return "<Namespace>";
  return "<function>";
}

std::string Value::type_name() const {
  if (is_undefined()) return "Undefined";
  if (is_none()) return "NoneType";
  if (is_bool()) return "bool";
  if (is_int()) return "int";
  if (is_float()) return "float";
  if (is_string()) return "str";
  if (is_list()) return "list";
  if (is_dict()) return "dict";
  if (is_namespace()) return "Namespace";
  return "function";
}

const Value* Value::find(std::string_view key) const {
  if (is_dict()) {
    for (const auto& [k, v] : as_dict()) {
      if (k == key) return &v;
    }
  } else if (is_namespace()) {
    for (const auto& [k, v] : as_namespace().members) {
      if (k == key) return &v;
    }
  }
  return nullptr;
}

bool operator==(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.is_float() || b.is_float()) return a.as_double() == b.as_double();
    return a.as_int() == b.as_int();
  }
  if (a.is_none() || b.is_none()) return a.is_none() && b.is_none();
  if (a.is_undefined() || b.is_undefined()) return a.is_undefined() && b.is_undefined();
  if (a.is_string() && b.is_string()) return a.as_string() == b.as_string();
  if (a.is_list() && b.is_list()) return a.as_list() == b.as_list();
  if (a.is_dict() && b.is_dict()) {
    const Dict &x = a.as_dict(), &y = b.as_dict();
    if (x.size() != y.size()) return false;
    for (const auto& [k, v] : x) {
      const Value* w = b.find(k);
      if (w == nullptr || !(v == *w)) return false;
    }
    return true;
  }
  return false;
}

namespace {

void json_string(std::string& out, std::string_view s, bool ensure_ascii) {
  out += '"';
  for (size_t i = 0; i < s.size();) {
    const unicode::Char c = unicode::decode(s, i);
    const int32_t cp = c.cp < 0 ? 0xfffd : c.cp;
    char buf[16];
    switch (cp) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (cp < 0x20 || (ensure_ascii && cp >= 0x7f)) {
          if (cp >= 0x10000) {
            const int32_t v = cp - 0x10000;
            std::snprintf(buf, sizeof(buf), "\\u%04x\\u%04x", 0xd800 + (v >> 10), 0xdc00 + (v & 0x3ff));
          } else {
            std::snprintf(buf, sizeof(buf), "\\u%04x", cp);
          }
          out += buf;
        } else if (c.cp < 0) {
          out += "\xef\xbf\xbd";
        } else {
          out.append(s.substr(i, c.len));
        }
    }
    i += c.len;
  }
  out += '"';
}

Status dump(std::string& out, const Value& v, const JsonDumpOptions& o, int64_t depth) {
  if (depth > 64) return invalid_argument("tojson: the value nests too deeply");
  auto newline = [&](int64_t level) {
    if (o.indent < 0) return;
    out += '\n';
    out.append(static_cast<size_t>(o.indent * level), ' ');
  };
  if (v.is_none()) {
    out += "null";
  } else if (v.is_bool()) {
    out += v.as_bool() ? "true" : "false";
  } else if (v.is_int()) {
    out += std::to_string(v.as_int());
  } else if (v.is_float()) {
    const double d = v.as_double();
    out += std::isnan(d) ? "NaN" : std::isinf(d) ? (d > 0 ? "Infinity" : "-Infinity") : python_float(d);
  } else if (v.is_string()) {
    json_string(out, v.as_string(), o.ensure_ascii);
  } else if (v.is_list()) {
    if (v.as_list().empty()) return out += "[]", Status();
    out += '[';
    for (size_t i = 0; i < v.as_list().size(); ++i) {
      if (i > 0) out += o.item_separator;
      newline(depth + 1);
      MH_TRY(dump(out, v.as_list()[i], o, depth + 1));
    }
    newline(depth);
    out += ']';
  } else if (v.is_dict() || v.is_namespace()) {
    Dict items = v.is_dict() ? v.as_dict() : v.as_namespace().members;
    if (items.empty()) return out += "{}", Status();
    if (o.sort_keys) {
      std::stable_sort(items.begin(), items.end(),
                       [](const auto& a, const auto& b) { return a.first < b.first; });
    }
    out += '{';
    for (size_t i = 0; i < items.size(); ++i) {
      if (i > 0) out += o.item_separator;
      newline(depth + 1);
      json_string(out, items[i].first, o.ensure_ascii);
      out += o.key_separator;
      MH_TRY(dump(out, items[i].second, o, depth + 1));
    }
    newline(depth);
    out += '}';
  } else {
    return invalid_argument("tojson: a " + v.type_name() + " is not JSON serializable");
  }
  return {};
}

}  // namespace

Result<std::string> json_dumps(const Value& value, const JsonDumpOptions& options) {
  std::string out;
  MH_TRY(dump(out, value, options, 0));
  return out;
}

}  // namespace mh::engine::jinja
