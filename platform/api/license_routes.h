// The routes of installed licenses (platform staff's): install, read, list and revoke through
// LicenseRegistry (licensing/registry.h).
#pragma once

#include <boost/json/object.hpp>
#include <cstdint>

#include "licensing/registry.h"
#include "licensing/trusted_clock.h"
#include "platform/api/transport.h"

namespace mh::api {

boost::json::object license_json(const licensing::LicenseRecord& record, int64_t now);

// POST /v1/admin/licenses, GET /v1/admin/licenses[/{id}], POST /v1/admin/licenses/{id}/revoke.
void add_license_routes(Router& router, licensing::LicenseRegistry& registry,
                        licensing::TrustedClock& clock);

}  // namespace mh::api
