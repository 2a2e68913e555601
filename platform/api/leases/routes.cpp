#include "platform/api/leases/routes.h"

#include <boost/json.hpp>

#include "platform/api/leases/protocol.h"
#include "tenants/roles.h"

namespace mh::api {

namespace json = boost::json;
using licensing::Lease;

namespace {

// The tenant whose leases the caller may touch; nullopt for staff (any).
std::optional<std::string> caller(const Request& request) {
  if (request.principal.is_admin()) return std::nullopt;
  return request.principal.tenant;
}

Response lease_response(int status, const Result<Lease>& lease) {
  if (!lease.ok()) return Response::error(lease.status());
  return Response::json(status, lease_json(*lease));
}

}  // namespace

void add_lease_routes(Router& router, licensing::SeatLeases& leases) {
  const Access seat = Access::any_key(tenants::Permission::kHoldSeat);
  router.add("POST", "/v1/leases", seat, [&leases](Request& request) {
    auto body = parse_json_object(request);
    if (!body.ok()) return Response::error(body.status());
    auto asked = parse_lease_request(*body);
    if (!asked.ok()) return Response::error(asked.status());
    return lease_response(201, leases.checkout(caller(request), asked->license_id,
                                               asked->instance, asked->ttl_seconds,
                                               request.principal.actor()));
  });
  router.add("POST", "/v1/leases/{id}/heartbeat", seat, [&leases](Request& request) {
    return lease_response(200, leases.heartbeat(caller(request), request.param("id")));
  });
  router.add("DELETE", "/v1/leases/{id}", seat, [&leases](Request& request) {
    return lease_response(200, leases.release(caller(request), request.param("id")));
  });
  router.add("GET", "/v1/leases", seat, [&leases](Request& request) {
    auto license = request.query_param("license_id");
    if (!license) return Response::error(invalid_argument("give ?license_id=", "license_id"));
    auto live = leases.live(caller(request), *license);
    if (!live.ok()) return Response::error(live.status());
    json::array data;
    for (const auto& l : *live) data.push_back(lease_json(l));
    return list_response(std::move(data), false);
  });
}

}  // namespace mh::api
