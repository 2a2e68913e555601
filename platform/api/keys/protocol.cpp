#include "platform/api/keys/protocol.h"

#include <boost/json.hpp>

#include "platform/api/fields.h"

namespace mh::api {

namespace json = boost::json;

namespace {

json::value or_null(const std::optional<int64_t>& v) {
  return v ? json::value(*v) : json::value(nullptr);
}

}  // namespace

Result<KeyRequest> parse_key_request(const json::object& body,
                                     std::optional<std::string> default_name,
                                     tenants::Role default_role) {
  KeyRequest out;
  MH_ASSIGN_OR_RETURN(auto name, optional_string(body, "name"));
  if (!name && !default_name) return invalid_argument("'name' is required", "name");
  out.name = name ? std::move(*name) : std::move(*default_name);
  MH_ASSIGN_OR_RETURN(auto role_text, optional_string(body, "role"));
  out.role = default_role;
  if (role_text) {
    auto role = tenants::parse_role(*role_text);
    if (!role) return invalid_argument("role must be owner, developer or viewer", "role");
    out.role = *role;
  }
  return out;
}

Result<std::string> parse_admin_key_request(const json::object& body) {
  return required_string(body, "name");
}

json::object key_json(const tenants::TenantKey& k) {
  return {{"id", k.id},
          {"object", "api_key"},
          {"tenant", k.tenant},
          {"name", k.name},
          {"role", tenants::role_name(k.role)},
          {"prefix", k.prefix},
          {"created_at", k.created_at},
          {"created_by", k.created_by},
          {"revoked_at", or_null(k.revoked_at)}};
}

json::object admin_key_json(const tenants::AdminKey& key) {
  return {{"id", key.id},
          {"object", "admin_key"},
          {"name", key.name},
          {"prefix", key.prefix},
          {"created_at", key.created_at},
          {"revoked_at", or_null(key.revoked_at)}};
}

json::object created_key_json(json::object record, const std::string& secret) {
  record["key"] = secret;
  return record;
}

}  // namespace mh::api
