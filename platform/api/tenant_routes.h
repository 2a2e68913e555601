// Routes for tenants and their API keys.
//   staff:   POST/GET /v1/admin/tenants, GET /v1/admin/tenants/{id},
//            POST /v1/admin/tenants/{id}/suspend|resume|limits, POST /v1/admin/tenants/{id}/keys
//   tenants: GET /v1/tenant (who am I), GET/POST /v1/keys, DELETE /v1/keys/{id}
#pragma once

#include "licensing/entitlements.h"
#include "platform/api/transport.h"
#include "licensing/trusted_clock.h"
#include "tenants/api_keys.h"
#include "tenants/tenants.h"

namespace mh::api {

void add_tenant_routes(Router& router, tenants::TenantRegistry& registry, tenants::TenantKeys& keys,
                       const licensing::Entitlements& entitlements, licensing::TrustedClock& clock);

}  // namespace mh::api
