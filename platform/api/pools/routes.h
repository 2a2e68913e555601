// The pools' HTTP routes: for staff, GET/POST /v1/admin/pools, PUT
// /v1/admin/tenants/{id}/quotas/{pool}, POST /v1/admin/pools/{pool}/nodes/{node}/drain; for a
// tenant, GET /v1/quotas.
#pragma once

#include "platform/api/pools/service.h"
#include "platform/api/transport.h"

namespace mh::api {

void add_pool_routes(Router& router, Pools& pools);

}  // namespace mh::api
