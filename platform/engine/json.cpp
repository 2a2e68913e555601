#include "platform/engine/json.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "platform/engine/files.h"
#include "platform/engine/unicode.h"

namespace mh::engine {
namespace {

class Parser {
 public:
  Parser(std::string_view text, const JsonLimits& limits) : s_(text), limits_(limits) {}

  Result<Json> document() {
    if (s_.size() > limits_.max_bytes) {
      return invalid_argument("JSON document of " + std::to_string(s_.size()) +
                              " bytes exceeds the limit of " + std::to_string(limits_.max_bytes));
    }
    skip_space();
    Json v;
    if (!value(v, 0)) return error_;
    skip_space();
    if (pos_ != s_.size()) return fail("end of document");
    return v;
  }

 private:
  bool fail_bool(std::string what) {
    error_ = invalid_argument("JSON: expected " + what + " at byte " + std::to_string(pos_));
    return false;
  }
  Status fail(std::string what) {
    fail_bool(std::move(what));
    return error_;
  }

  void skip_space() {
    while (pos_ < s_.size() &&
           (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r')) {
      ++pos_;
    }
  }
  bool literal(std::string_view word) {
    if (s_.substr(pos_, word.size()) != word) return false;
    pos_ += word.size();
    return true;
  }

  bool value(Json& out, size_t depth) {
    if (depth > limits_.max_depth) {
      error_ = invalid_argument("JSON nests deeper than " + std::to_string(limits_.max_depth) +
                                " levels at byte " + std::to_string(pos_));
      return false;
    }
    if (pos_ >= s_.size()) return fail_bool("a value");
    switch (s_[pos_]) {
      case '{':
        return object(out, depth);
      case '[':
        return array(out, depth);
      case '"': {
        std::string str;
        if (!string(str)) return false;
        out = Json(std::move(str));
        return true;
      }
      case 't':
        if (literal("true")) return out = Json(true), true;
        break;
      case 'f':
        if (literal("false")) return out = Json(false), true;
        break;
      case 'n':
        if (literal("null")) return out = Json(), true;
        break;
      default:
        if (s_[pos_] == '-' || (s_[pos_] >= '0' && s_[pos_] <= '9')) return number(out);
    }
    return fail_bool("a value");
  }

  bool object(Json& out, size_t depth) {
    ++pos_;  // {
    JsonObject members;
    skip_space();
    if (pos_ < s_.size() && s_[pos_] == '}') {
      ++pos_;
      out = Json(std::move(members));
      return true;
    }
    for (;;) {
      skip_space();
      if (pos_ >= s_.size() || s_[pos_] != '"') return fail_bool("a member name");
      std::string key;
      if (!string(key)) return false;
      skip_space();
      if (pos_ >= s_.size() || s_[pos_] != ':') return fail_bool("':'");
      ++pos_;
      skip_space();
      Json v;
      if (!value(v, depth + 1)) return false;
      members.emplace_back(std::move(key), std::move(v));
      skip_space();
      if (pos_ < s_.size() && s_[pos_] == ',') {
        ++pos_;
        continue;
      }
      if (pos_ < s_.size() && s_[pos_] == '}') {
        ++pos_;
        if (!unique_keys(members)) return false;
        out = Json(std::move(members));
        return true;
      }
      return fail_bool("',' or '}'");
    }
  }

  // Duplicate member names are refused (readers disagree on which one wins).
  bool unique_keys(const JsonObject& members) {
    std::vector<std::string_view> keys;
    keys.reserve(members.size());
    for (const auto& member : members) keys.push_back(member.first);
    std::sort(keys.begin(), keys.end());
    auto dup = std::adjacent_find(keys.begin(), keys.end());
    if (dup == keys.end()) return true;
    error_ = invalid_argument("JSON: duplicate member \"" + std::string(*dup) +
                              "\" in the object ending at byte " + std::to_string(pos_));
    return false;
  }

  bool array(Json& out, size_t depth) {
    ++pos_;  // [
    JsonArray items;
    skip_space();
    if (pos_ < s_.size() && s_[pos_] == ']') {
      ++pos_;
      out = Json(std::move(items));
      return true;
    }
    for (;;) {
      skip_space();
      Json v;
      if (!value(v, depth + 1)) return false;
      items.push_back(std::move(v));
      skip_space();
      if (pos_ < s_.size() && s_[pos_] == ',') {
        ++pos_;
        continue;
      }
      if (pos_ < s_.size() && s_[pos_] == ']') {
        ++pos_;
        out = Json(std::move(items));
        return true;
      }
      return fail_bool("',' or ']'");
    }
  }

  bool hex4(uint32_t& out) {
    if (pos_ + 4 > s_.size()) return fail_bool("4 hex digits");
    out = 0;
    for (int i = 0; i < 4; ++i) {
      char c = s_[pos_++];
      out <<= 4;
      if (c >= '0' && c <= '9') {
        out |= static_cast<uint32_t>(c - '0');
      } else if (c >= 'a' && c <= 'f') {
        out |= static_cast<uint32_t>(c - 'a' + 10);
      } else if (c >= 'A' && c <= 'F') {
        out |= static_cast<uint32_t>(c - 'A' + 10);
      } else {
        --pos_;
        return fail_bool("a hex digit");
      }
    }
    return true;
  }

  // Length of the valid UTF-8 sequence at pos_, or 0.
  size_t utf8_length() const {
    const auto* p = reinterpret_cast<const unsigned char*>(s_.data()) + pos_;
    const size_t left = s_.size() - pos_;
    const unsigned char c = p[0];
    auto cont = [&](size_t i) { return i < left && (p[i] & 0xC0) == 0x80; };
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) return cont(1) ? 2 : 0;
    if (c >= 0xE0 && c <= 0xEF) {
      if (!cont(1) || !cont(2)) return 0;
      if (c == 0xE0 && p[1] < 0xA0) return 0;   // overlong
      if (c == 0xED && p[1] >= 0xA0) return 0;  // surrogate
      return 3;
    }
    if (c >= 0xF0 && c <= 0xF4) {
      if (!cont(1) || !cont(2) || !cont(3)) return 0;
      if (c == 0xF0 && p[1] < 0x90) return 0;   // overlong
      if (c == 0xF4 && p[1] >= 0x90) return 0;  // past U+10FFFF
      return 4;
    }
    return 0;
  }

  bool string(std::string& out) {
    ++pos_;  // "
    for (;;) {
      if (pos_ >= s_.size()) return fail_bool("'\"' closing the string");
      const char c = s_[pos_];
      if (c == '"') {
        ++pos_;
        return true;
      }
      if (static_cast<unsigned char>(c) < 0x20)
        return fail_bool("no control character in a string");
      if (c != '\\') {
        const size_t n = utf8_length();
        if (n == 0) return fail_bool("valid UTF-8");
        out.append(s_.substr(pos_, n));
        pos_ += n;
        continue;
      }
      ++pos_;
      if (pos_ >= s_.size()) return fail_bool("an escape");
      const char e = s_[pos_++];
      switch (e) {
        case '"':
          out += '"';
          break;
        case '\\':
          out += '\\';
          break;
        case '/':
          out += '/';
          break;
        case 'b':
          out += '\b';
          break;
        case 'f':
          out += '\f';
          break;
        case 'n':
          out += '\n';
          break;
        case 'r':
          out += '\r';
          break;
        case 't':
          out += '\t';
          break;
        case 'u': {
          uint32_t cp = 0;
          if (!hex4(cp)) return false;
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            uint32_t low = 0;
            if (s_.substr(pos_, 2) != "\\u") return fail_bool("a low surrogate escape");
            pos_ += 2;
            if (!hex4(low)) return false;
            if (low < 0xDC00 || low > 0xDFFF) return fail_bool("a low surrogate");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
          } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            return fail_bool("a high surrogate before a low one");
          }
          unicode::append(out, cp);
          break;
        }
        default:
          --pos_;
          return fail_bool("a valid escape");
      }
    }
  }

  bool number(Json& out) {
    const size_t start = pos_;
    if (s_[pos_] == '-') ++pos_;
    auto digits = [&] {
      size_t n = 0;
      while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') ++pos_, ++n;
      return n;
    };
    if (pos_ < s_.size() && s_[pos_] == '0') {
      ++pos_;
    } else if (digits() == 0) {
      return fail_bool("a digit");
    }
    bool integral = true;
    if (pos_ < s_.size() && s_[pos_] == '.') {
      ++pos_;
      integral = false;
      if (digits() == 0) return fail_bool("a digit after '.'");
    }
    if (pos_ < s_.size() && (s_[pos_] == 'e' || s_[pos_] == 'E')) {
      ++pos_;
      integral = false;
      if (pos_ < s_.size() && (s_[pos_] == '+' || s_[pos_] == '-')) ++pos_;
      if (digits() == 0) return fail_bool("a digit in the exponent");
    }
    const std::string_view text = s_.substr(start, pos_ - start);
    if (integral) {
      int64_t i = 0;
      auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), i);
      if (ec == std::errc() && end == text.data() + text.size()) {
        out = Json(i);
        return true;
      }
    }
    // strtod needs a terminated copy; the number is short.
    std::string copy(text);
    char* end = nullptr;
    double d = std::strtod(copy.c_str(), &end);
    if (end != copy.c_str() + copy.size() || !std::isfinite(d)) {
      pos_ = start;
      return fail_bool("a number in range");
    }
    out = Json(d);
    return true;
  }

  std::string_view s_;
  JsonLimits limits_;
  size_t pos_ = 0;
  Status error_;
};

void write(std::string& out, const Json& v) {
  switch (v.type()) {
    case Json::Type::kNull:
      out += "null";
      break;
    case Json::Type::kBool:
      out += v.as_bool() ? "true" : "false";
      break;
    case Json::Type::kInt:
      out += std::to_string(v.as_int());
      break;
    case Json::Type::kDouble: {
      char buf[32];
      auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v.as_double());
      const std::string_view text(buf, ec == std::errc() ? static_cast<size_t>(end - buf) : 0);
      out += text;
      // Keep a double a double when read back ("-0" would come back as the integer 0).
      if (text.find_first_of(".e") == std::string_view::npos) out += ".0";
      break;
    }
    case Json::Type::kString:
      append_json_string(out, v.as_string());
      break;
    case Json::Type::kArray: {
      out += '[';
      bool first = true;
      for (const auto& item : v.as_array()) {
        if (!first) out += ',';
        first = false;
        write(out, item);
      }
      out += ']';
      break;
    }
    case Json::Type::kObject: {
      out += '{';
      bool first = true;
      for (const auto& [k, item] : v.as_object()) {
        if (!first) out += ',';
        first = false;
        append_json_string(out, k);
        out += ':';
        write(out, item);
      }
      out += '}';
      break;
    }
  }
}

}  // namespace

const Json* Json::find(std::string_view key) const {
  if (!is_object()) return nullptr;
  for (const auto& [k, v] : as_object()) {
    if (k == key) return &v;
  }
  return nullptr;
}

Result<Json> parse_json(std::string_view text, const JsonLimits& limits) {
  return Parser(text, limits).document();
}

void append_json_string(std::string& out, std::string_view s) {
  out += '"';
  for (char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(c));
          out += buf;
        } else {
          out += c;
        }
    }
  }
  out += '"';
}

std::string to_json(const Json& value) {
  std::string out;
  write(out, value);
  return out;
}

Result<int64_t> json_int(const Json& object, std::string_view key) {
  const Json* v = object.find(key);
  if (v == nullptr) return invalid_argument("missing \"" + std::string(key) + "\"");
  if (v->is_int()) return v->as_int();
  if (v->type() == Json::Type::kDouble && std::floor(v->as_double()) == v->as_double() &&
      std::fabs(v->as_double()) < 9.0e15) {
    return static_cast<int64_t>(v->as_double());
  }
  return invalid_argument("\"" + std::string(key) + "\" must be an integer");
}

Result<double> json_number(const Json& object, std::string_view key) {
  const Json* v = object.find(key);
  if (v == nullptr) return invalid_argument("missing \"" + std::string(key) + "\"");
  if (!v->is_number()) return invalid_argument("\"" + std::string(key) + "\" must be a number");
  return v->as_double();
}

Result<std::string> json_string(const Json& object, std::string_view key) {
  const Json* v = object.find(key);
  if (v == nullptr) return invalid_argument("missing \"" + std::string(key) + "\"");
  if (!v->is_string()) return invalid_argument("\"" + std::string(key) + "\" must be a string");
  return v->as_string();
}

Result<Json> read_json_file(const std::filesystem::path& path, const JsonLimits& limits) {
  MH_ASSIGN_OR_RETURN(std::string text, read_text_file(path, limits.max_bytes));
  auto json = parse_json(text, limits);
  if (!json.ok())
    return invalid_argument(path.filename().string() + ": " + json.status().message());
  return json;
}

}  // namespace mh::engine
