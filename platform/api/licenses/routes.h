// The routes of installed licences, platform staff's (protocol in protocol.h; the service is
// licensing/registry.h): POST /v1/admin/licenses, GET /v1/admin/licenses[/{id}],
// POST /v1/admin/licenses/{id}/revoke.
#pragma once

#include "licensing/registry.h"
#include "licensing/trusted_clock.h"
#include "platform/api/transport.h"

namespace mh::api {

void add_license_routes(Router& router, licensing::LicenseRegistry& registry,
                        licensing::TrustedClock& clock);

}  // namespace mh::api
