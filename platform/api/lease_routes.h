// The routes of floating seats: check out, heartbeat, release and list leases through SeatLeases
// (licensing/seat_leases.h).
#pragma once

#include "licensing/seat_leases.h"
#include "platform/api/transport.h"

namespace mh::api {

// POST /v1/leases, POST /v1/leases/{id}/heartbeat, DELETE /v1/leases/{id}, GET /v1/leases.
void add_lease_routes(Router& router, licensing::SeatLeases& leases);

}  // namespace mh::api
