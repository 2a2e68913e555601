// Tenants on the wire (the service is tenants/tenants.h): the tenant with its limits, and the
// state of its licence as the entitlement check sees it.
#pragma once

#include <string>

#include <boost/json/object.hpp>

#include "licensing/entitlements.h"
#include "platform/base/status.h"
#include "tenants/tenants.h"

namespace mh::api {

struct TenantRequest {
  std::string id;
  std::string name;  // the id when absent
  tenants::TenantLimits limits;
};

// POST /v1/admin/tenants: {"id", "name", "rate_limit_rps", "rate_limit_burst",
// "storage_limit_bytes"}.
Result<TenantRequest> parse_tenant_request(const boost::json::object& body);
// The limits alone, each optional (POST /v1/admin/tenants/{id}/limits).
Result<tenants::TenantLimits> parse_limits(const boost::json::object& body);
// {"reason"}, optional (POST /v1/admin/tenants/{id}/suspend).
Result<std::string> parse_suspend_request(const boost::json::object& body);

boost::json::object tenant_json(const tenants::Tenant& tenant);
// {"id", "in_force", "reason", "expires_at"} of the tenant's licence (`entitlement` null when
// none is installed); `in_force` is the entitlement check's answer now.
boost::json::object license_state_json(const licensing::Entitlement* entitlement,
                                       const Status& in_force);

}  // namespace mh::api
