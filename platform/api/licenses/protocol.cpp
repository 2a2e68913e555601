#include "platform/api/licenses/protocol.h"

#include <boost/json.hpp>

#include "platform/api/fields.h"

namespace mh::api {

namespace json = boost::json;

Result<std::string> parse_install_request(const json::object& body) {
  return required_string(body, "license", "must be the license file's text");
}

Result<std::string> parse_revoke_request(const json::object& body) {
  MH_ASSIGN_OR_RETURN(auto reason, optional_string(body, "reason"));
  return reason.value_or("");
}

json::object license_json(const licensing::LicenseRecord& r, int64_t now) {
  std::string status =
      r.revoked_at ? "revoked"
      : !r.invalid_reason.empty()
          ? "invalid"
          : std::string(standing_name(standing_at(r.license.terms, now)));
  json::object out = terms_json(r.license.terms);
  out["object"] = "license";
  out["key_id"] = r.license.key_id;
  out["status"] = status;
  out["active"] = r.active;
  out["installed_at"] = r.installed_at;
  out["revoked_at"] = r.revoked_at ? json::value(*r.revoked_at) : json::value(nullptr);
  out["revoke_reason"] = r.revoked_at ? json::value(r.revoke_reason) : json::value(nullptr);
  out["invalid_reason"] =
      r.invalid_reason.empty() ? json::value(nullptr) : json::value(r.invalid_reason);
  return out;
}

}  // namespace mh::api
