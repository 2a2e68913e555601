// The routes of platform-admin keys (tenants/admin_keys.h): POST/GET /v1/admin/keys,
// DELETE /v1/admin/keys/{id}.
#pragma once

#include "platform/api/transport.h"
#include "tenants/admin_keys.h"

namespace mh::api {

void add_admin_key_routes(Router& router, tenants::AdminKeys& keys);

}  // namespace mh::api
