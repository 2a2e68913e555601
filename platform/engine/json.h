// A strict JSON reader for the engine's inputs (config.json, tokenizer.json, safetensors
// headers, JSONL datasets): RFC 8259 only, UTF-8 checked, bounded depth and size, duplicate
// object keys refused. The engine builds with nothing but a C++ compiler, so it has its own.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include <filesystem>

#include "platform/base/status.h"

namespace mh::engine {

class Json;
using JsonArray = std::vector<Json>;
// Members in document order (tokenizer.json's vocab order matters to nobody, but a stable
// order makes errors and round trips predictable).
using JsonObject = std::vector<std::pair<std::string, Json>>;

class Json {
 public:
  enum class Type { kNull, kBool, kInt, kDouble, kString, kArray, kObject };

  Json() = default;
  explicit Json(bool b) : v_(b) {}
  explicit Json(int64_t i) : v_(i) {}
  explicit Json(double d) : v_(d) {}
  explicit Json(std::string s) : v_(std::move(s)) {}
  explicit Json(JsonArray a) : v_(std::make_shared<JsonArray>(std::move(a))) {}
  explicit Json(JsonObject o) : v_(std::make_shared<JsonObject>(std::move(o))) {}

  Type type() const { return static_cast<Type>(v_.index()); }
  bool is_null() const { return type() == Type::kNull; }
  bool is_bool() const { return type() == Type::kBool; }
  bool is_int() const { return type() == Type::kInt; }
  bool is_number() const { return type() == Type::kInt || type() == Type::kDouble; }
  bool is_string() const { return type() == Type::kString; }
  bool is_array() const { return type() == Type::kArray; }
  bool is_object() const { return type() == Type::kObject; }

  // Accessors assume the type was checked.
  bool as_bool() const { return std::get<bool>(v_); }
  int64_t as_int() const { return std::get<int64_t>(v_); }
  double as_double() const {
    return is_int() ? static_cast<double>(as_int()) : std::get<double>(v_);
  }
  const std::string& as_string() const { return std::get<std::string>(v_); }
  const JsonArray& as_array() const { return *std::get<std::shared_ptr<JsonArray>>(v_); }
  const JsonObject& as_object() const { return *std::get<std::shared_ptr<JsonObject>>(v_); }

  // The member `key` of an object, or nullptr (also when this is not an object).
  const Json* find(std::string_view key) const;

 private:
  std::variant<std::monostate, bool, int64_t, double, std::string, std::shared_ptr<JsonArray>,
               std::shared_ptr<JsonObject>>
      v_;
};

struct JsonLimits {
  size_t max_depth = 128;
  size_t max_bytes = size_t{1} << 30;
};

// Parses one JSON document (surrounding whitespace allowed, nothing else). Errors give the
// byte offset and what was expected.
Result<Json> parse_json(std::string_view text, const JsonLimits& limits = {});

// Serializes compactly (no spaces), keys in stored order; strings escaped as JSON requires.
std::string to_json(const Json& value);
// Appends `s` as a quoted JSON string.
void append_json_string(std::string& out, std::string_view s);

// A file parsed as one JSON document; errors name the file.
Result<Json> read_json_file(const std::filesystem::path& path, const JsonLimits& limits = {});

// Typed reads of an object's members, with errors naming the member.
Result<int64_t> json_int(const Json& object, std::string_view key);
Result<double> json_number(const Json& object, std::string_view key);
Result<std::string> json_string(const Json& object, std::string_view key);

}  // namespace mh::engine
