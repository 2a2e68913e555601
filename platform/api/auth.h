// The platform's authenticator: tells a platform-admin key ("mh_admin_…") from a tenant's key
// ("mh_live_…"), checks the route's access (role table, tenants/roles.h), refuses suspended
// tenants at once, and applies each tenant's request rate limit.
#pragma once

#include "platform/api/transport.h"
#include "tenants/admin_keys.h"
#include "tenants/api_keys.h"
#include "tenants/rate_limiter.h"
#include "tenants/tenants.h"

namespace mh::api {

// The bearer token of an Authorization header; unauthenticated when absent or malformed.
Result<std::string_view> bearer_token(const Request& request);

Authenticator make_authenticator(const tenants::AdminKeys& admin_keys,
                                 const tenants::TenantKeys& keys,
                                 const tenants::TenantRegistry& registry,
                                 tenants::RateLimiter& limiter);

}  // namespace mh::api
