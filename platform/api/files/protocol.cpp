#include "platform/api/files/protocol.h"

#include <fmt/format.h>

#include <boost/json.hpp>

namespace mh::api {

namespace json = boost::json;

namespace {
constexpr std::string_view kPurposes[] = {"fine-tune", "model"};
}  // namespace

Status check_purpose(std::string_view purpose) {
  for (auto known : kPurposes) {
    if (known == purpose) return {};
  }
  return invalid_argument(
      fmt::format("purpose '{}' is not supported; use fine-tune or model", purpose), "purpose");
}

json::object file_json(const FileRecord& f) {
  return {{"id", f.id},
          {"object", "file"},
          {"bytes", f.bytes},
          {"created_at", f.created_at},
          {"filename", f.filename},
          {"purpose", f.purpose},
          {"status", "processed"},
          {"status_details", nullptr},
          {"sha256", f.sha256}};
}

json::object file_deleted_json(const FileRecord& f) {
  return {{"id", f.id}, {"object", "file"}, {"deleted", true}};
}

}  // namespace mh::api
