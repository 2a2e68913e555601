// The routes of floating seats (protocol in protocol.h; the service is licensing/seat_leases.h):
// POST /v1/leases, POST /v1/leases/{id}/heartbeat, DELETE /v1/leases/{id}, GET /v1/leases.
// A tenant's key sees its own leases; a platform-admin key any.
#pragma once

#include "licensing/seat_leases.h"
#include "platform/api/transport.h"

namespace mh::api {

void add_lease_routes(Router& router, licensing::SeatLeases& leases);

}  // namespace mh::api
