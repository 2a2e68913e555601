#include "platform/api/fields.h"

#include <fmt/format.h>
#include <boost/json.hpp>

namespace mh::api {

namespace json = boost::json;

namespace {

Status wrong_type(std::string_view key, std::string_view what) {
  return invalid_argument(fmt::format("'{}' {}", key, what), std::string(key));
}

}  // namespace

Result<std::optional<std::string>> optional_string(const json::object& body,
                                                   std::string_view key) {
  const json::value* v = body.if_contains(key);
  if (v == nullptr || v->is_null()) return std::optional<std::string>();
  if (!v->is_string()) return wrong_type(key, "must be a string");
  return std::optional<std::string>(std::string(v->as_string()));
}

Result<std::optional<double>> optional_number(const json::object& body, std::string_view key) {
  const json::value* v = body.if_contains(key);
  if (v == nullptr || v->is_null()) return std::optional<double>();
  if (!v->is_number()) return wrong_type(key, "must be a number");
  return std::optional<double>(v->to_number<double>());
}

Result<std::optional<int64_t>> optional_integer(const json::object& body, std::string_view key) {
  const json::value* v = body.if_contains(key);
  if (v == nullptr) return std::optional<int64_t>();
  if (!v->is_int64()) return wrong_type(key, "must be an integer");
  return std::optional<int64_t>(v->as_int64());
}

Result<std::string> required_string(const json::object& body, std::string_view key,
                                    std::string_view what) {
  const json::value* v = body.if_contains(key);
  if (v == nullptr || !v->is_string()) return wrong_type(key, what);
  return std::string(v->as_string());
}

Result<json::object> body_or_empty(const Request& request) {
  if (request.body.empty()) return json::object{};
  return parse_json_object(request);
}

}  // namespace mh::api
