// The routes of tenants (protocol in protocol.h; the service is tenants/tenants.h).
//   staff:   POST/GET /v1/admin/tenants, GET /v1/admin/tenants/{id},
//            POST /v1/admin/tenants/{id}/suspend|resume|limits
//   tenants: GET /v1/tenant (who am I: the tenant, the key's role, the licence's state)
// A tenant's keys are keys/routes.h's.
#pragma once

#include "licensing/entitlements.h"
#include "licensing/trusted_clock.h"
#include "platform/api/transport.h"
#include "tenants/tenants.h"

namespace mh::api {

void add_tenant_routes(Router& router, tenants::TenantRegistry& registry,
                       const licensing::Entitlements& entitlements,
                       licensing::TrustedClock& clock);

}  // namespace mh::api
