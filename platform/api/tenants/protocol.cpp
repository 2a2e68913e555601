#include "platform/api/tenants/protocol.h"

#include <boost/json.hpp>

#include "platform/api/fields.h"

namespace mh::api {

namespace json = boost::json;

Result<tenants::TenantLimits> parse_limits(const json::object& body) {
  tenants::TenantLimits limits;
  MH_ASSIGN_OR_RETURN(limits.rate_limit_rps, optional_number(body, "rate_limit_rps"));
  MH_ASSIGN_OR_RETURN(auto burst, optional_number(body, "rate_limit_burst"));
  MH_ASSIGN_OR_RETURN(auto storage, optional_number(body, "storage_limit_bytes"));
  if (burst) limits.rate_limit_burst = static_cast<int64_t>(*burst);
  if (storage) limits.storage_limit_bytes = static_cast<int64_t>(*storage);
  return limits;
}

Result<TenantRequest> parse_tenant_request(const json::object& body) {
  MH_ASSIGN_OR_RETURN(auto id, optional_string(body, "id"));
  MH_ASSIGN_OR_RETURN(auto name, optional_string(body, "name"));
  if (!id) return invalid_argument("'id' is required", "id");
  MH_ASSIGN_OR_RETURN(auto limits, parse_limits(body));
  std::string display = name.value_or(*id);
  return TenantRequest{std::move(*id), std::move(display), limits};
}

Result<std::string> parse_suspend_request(const json::object& body) {
  MH_ASSIGN_OR_RETURN(auto reason, optional_string(body, "reason"));
  return reason.value_or("");
}

json::object tenant_json(const tenants::Tenant& t) {
  return {{"id", t.id},
          {"object", "tenant"},
          {"name", t.name},
          {"created_at", t.created_at},
          {"suspended_at", t.suspended_at ? json::value(*t.suspended_at) : json::value(nullptr)},
          {"suspend_reason", t.suspended_at ? json::value(t.suspend_reason) : json::value(nullptr)},
          {"limits", json::object{{"rate_limit_rps", t.rate_limit_rps},
                                  {"rate_limit_burst", t.rate_limit_burst},
                                  {"storage_limit_bytes", t.storage_limit_bytes}}}};
}

json::object license_state_json(const licensing::Entitlement* entitlement,
                                const Status& in_force) {
  if (entitlement == nullptr) {
    return {{"id", nullptr}, {"in_force", false}, {"reason", "no license installed"}};
  }
  return {{"id", entitlement->license.terms.id},
          {"in_force", in_force.ok()},
          {"reason", in_force.ok() ? json::value(nullptr) : json::value(in_force.message())},
          {"expires_at", entitlement->license.terms.expires_at}};
}

}  // namespace mh::api
