#include "platform/api/tenants/routes.h"

#include <boost/json.hpp>

#include "platform/api/fields.h"
#include "platform/api/tenants/protocol.h"
#include "tenants/roles.h"

namespace mh::api {

namespace json = boost::json;
using tenants::Permission;

namespace {

// The tenant's licence as its entitlement check sees it now, from memory alone (it may answer
// on an I/O thread: GET /v1/tenant).
json::object license_state(const licensing::Entitlements& entitlements,
                           licensing::TrustedClock& clock, const std::string& tenant) {
  auto entitlement = entitlements.find(tenant);
  if (!entitlement) return license_state_json(nullptr, {});
  auto now = clock.now_in_memory();
  return license_state_json(entitlement.get(),
                            now.ok() ? entitlements.check(tenant, "", *now) : now.status());
}

Response tenant_response(const Result<tenants::Tenant>& tenant) {
  if (!tenant.ok()) return Response::error(tenant.status());
  return Response::json(200, tenant_json(*tenant));
}

}  // namespace

void add_tenant_routes(Router& router, tenants::TenantRegistry& registry,
                       const licensing::Entitlements& entitlements,
                       licensing::TrustedClock& clock) {
  router.add("POST", "/v1/admin/tenants", Access::kAdmin, [&registry](Request& request) {
    auto body = parse_json_object(request);
    if (!body.ok()) return Response::error(body.status());
    auto asked = parse_tenant_request(*body);
    if (!asked.ok()) return Response::error(asked.status());
    auto tenant = registry.create(asked->id, asked->name, asked->limits, request.principal.actor());
    if (!tenant.ok()) return Response::error(tenant.status());
    return Response::json(201, tenant_json(*tenant));
  });
  router.add("GET", "/v1/admin/tenants", Access::kAdmin, [&registry](Request& request) {
    auto page = parse_page(request);
    if (!page.ok()) return Response::error(page.status());
    bool has_more = false;
    auto list = registry.list(page->after, page->limit, &has_more);
    if (!list.ok()) return Response::error(list.status());
    json::array data;
    for (const auto& t : *list) data.push_back(tenant_json(t));
    return list_response(std::move(data), has_more);
  });
  router.add("GET", "/v1/admin/tenants/{id}", Access::kAdmin,
             [&registry, &entitlements, &clock](Request& request) {
               auto tenant = registry.get(request.param("id"));
               if (!tenant.ok()) return Response::error(tenant.status());
               json::object out = tenant_json(*tenant);
               out["license"] = license_state(entitlements, clock, tenant->id);
               return Response::json(200, out);
             });
  router.add("POST", "/v1/admin/tenants/{id}/suspend", Access::kAdmin,
             [&registry](Request& request) {
               auto body = body_or_empty(request);
               if (!body.ok()) return Response::error(body.status());
               auto reason = parse_suspend_request(*body);
               if (!reason.ok()) return Response::error(reason.status());
               return tenant_response(
                   registry.suspend(request.param("id"), *reason, request.principal.actor()));
             });
  router.add("POST", "/v1/admin/tenants/{id}/resume", Access::kAdmin,
             [&registry](Request& request) {
               return tenant_response(
                   registry.resume(request.param("id"), request.principal.actor()));
             });
  router.add("POST", "/v1/admin/tenants/{id}/limits", Access::kAdmin,
             [&registry](Request& request) {
               auto body = parse_json_object(request);
               if (!body.ok()) return Response::error(body.status());
               auto limits = parse_limits(*body);
               if (!limits.ok()) return Response::error(limits.status());
               return tenant_response(
                   registry.set_limits(request.param("id"), *limits, request.principal.actor()));
             });

  // Inline: the tenant, its licence and the clock's mark are all in memory.
  router.add(
      "GET", "/v1/tenant", Access::tenant(Permission::kRead),
      [&registry, &entitlements, &clock](Request& request) {
        auto tenant = registry.cached(request.principal.tenant);
        if (!tenant) return Response::error(not_found("tenant not found"));
        json::object out = tenant_json(*tenant);
        out["key"] =
            json::object{{"id", request.principal.key_id}, {"role", request.principal.role}};
        out["license"] = license_state(entitlements, clock, tenant->id);
        return Response::json(200, out);
      },
      Runs::kInline);
}

}  // namespace mh::api
