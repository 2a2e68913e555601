#include "platform/api/lease_routes.h"

#include <boost/json.hpp>

#include "tenants/roles.h"

namespace mh::api {

namespace json = boost::json;
using licensing::Lease;
using licensing::SeatLeases;

namespace {

json::object lease_json(const Lease& l) {
  return {{"id", l.id},
          {"object", "lease"},
          {"license_id", l.license_id},
          {"tenant", l.tenant},
          {"instance", l.instance},
          {"ttl_seconds", l.ttl_seconds},
          {"created_at", l.created_at},
          {"expires_at", l.expires_at},
          {"released_at", l.released_at ? json::value(*l.released_at) : json::value(nullptr)}};
}

}  // namespace

namespace {
std::optional<std::string> caller(const Request& request) {
  if (request.principal.is_admin()) return std::nullopt;
  return request.principal.tenant;
}
}  // namespace

void add_lease_routes(Router& router, SeatLeases& leases) {
  router.add(
      "POST", "/v1/leases", Access::any_key(tenants::Permission::kHoldSeat),
      [&leases](Request& request) {
        auto body = parse_json_object(request);
        if (!body.ok()) return Response::error(body.status());
        const json::value* license = body->if_contains("license_id");
        const json::value* instance = body->if_contains("instance");
        if (license == nullptr || !license->is_string()) {
          return Response::error(invalid_argument("'license_id' must be a string", "license_id"));
        }
        if (instance == nullptr || !instance->is_string()) {
          return Response::error(invalid_argument("'instance' must be a string", "instance"));
        }
        std::optional<int64_t> ttl;
        if (const json::value* t = body->if_contains("ttl_seconds")) {
          if (!t->is_int64()) {
            return Response::error(
                invalid_argument("'ttl_seconds' must be an integer", "ttl_seconds"));
          }
          ttl = t->as_int64();
        }
        auto lease = leases.checkout(caller(request), license->as_string(), instance->as_string(),
                                     ttl, request.principal.actor());
        if (!lease.ok()) return Response::error(lease.status());
        return Response::json(201, lease_json(*lease));
      });
  router.add("POST", "/v1/leases/{id}/heartbeat", Access::any_key(tenants::Permission::kHoldSeat),
             [&leases](Request& request) {
               auto lease = leases.heartbeat(caller(request), request.param("id"));
               if (!lease.ok()) return Response::error(lease.status());
               return Response::json(200, lease_json(*lease));
             });
  router.add("DELETE", "/v1/leases/{id}", Access::any_key(tenants::Permission::kHoldSeat),
             [&leases](Request& request) {
               auto lease = leases.release(caller(request), request.param("id"));
               if (!lease.ok()) return Response::error(lease.status());
               return Response::json(200, lease_json(*lease));
             });
  router.add(
      "GET", "/v1/leases", Access::any_key(tenants::Permission::kHoldSeat),
      [&leases](Request& request) {
        auto license = request.query_param("license_id");
        if (!license) return Response::error(invalid_argument("give ?license_id=", "license_id"));
        auto live = leases.live(caller(request), *license);
        if (!live.ok()) return Response::error(live.status());
        json::array data;
        for (const auto& l : *live) data.push_back(lease_json(l));
        return Response::json(
            200, json::object{{"object", "list"}, {"data", std::move(data)}, {"has_more", false}});
      });
}

}  // namespace mh::api
