// The routes of keys (protocol in protocol.h; the services are tenants/admin_keys.h and
// tenants/api_keys.h, beside each other).
//   staff:   POST/GET /v1/admin/keys, DELETE /v1/admin/keys/{id} (platform-admin keys);
//            POST /v1/admin/tenants/{id}/keys (a tenant's first key, an owner by default)
//   tenants: GET/POST /v1/keys, DELETE /v1/keys/{id}
#pragma once

#include "platform/api/transport.h"
#include "tenants/admin_keys.h"
#include "tenants/api_keys.h"

namespace mh::api {

void add_key_routes(Router& router, tenants::AdminKeys& admin_keys,
                    tenants::TenantKeys& tenant_keys);

}  // namespace mh::api
