#include "platform/api/keys/routes.h"

#include <boost/json.hpp>

#include "platform/api/fields.h"
#include "platform/api/keys/protocol.h"
#include "tenants/roles.h"

namespace mh::api {

namespace json = boost::json;
using tenants::Permission;
using tenants::Role;

namespace {

// A page of keys: `list(after, limit, &has_more)` read with the request's page.
template <typename List, typename ToJson>
Response page_of(const Request& request, List list, ToJson to_json) {
  auto page = parse_page(request);
  if (!page.ok()) return Response::error(page.status());
  bool has_more = false;
  auto items = list(page->after, page->limit, &has_more);
  if (!items.ok()) return Response::error(items.status());
  json::array data;
  for (const auto& item : *items) data.push_back(to_json(item));
  return list_response(std::move(data), has_more);
}

// Makes a key for `tenant` from the request's body.
Response create_key(tenants::TenantKeys& keys, const Request& request, std::string_view tenant,
                    std::optional<std::string> default_name, Role default_role) {
  auto body = default_name ? body_or_empty(request) : parse_json_object(request);
  if (!body.ok()) return Response::error(body.status());
  auto asked = parse_key_request(*body, std::move(default_name), default_role);
  if (!asked.ok()) return Response::error(asked.status());
  auto created = keys.create(tenant, asked->name, asked->role, request.principal.actor());
  if (!created.ok()) return Response::error(created.status());
  return Response::json(201, created_key_json(key_json(created->record), created->secret));
}

}  // namespace

void add_key_routes(Router& router, tenants::AdminKeys& admin_keys,
                    tenants::TenantKeys& tenant_keys) {
  router.add("POST", "/v1/admin/keys", Access::kAdmin, [&admin_keys](Request& request) {
    auto body = parse_json_object(request);
    if (!body.ok()) return Response::error(body.status());
    auto name = parse_admin_key_request(*body);
    if (!name.ok()) return Response::error(name.status());
    auto created = admin_keys.create(*name, request.principal.actor());
    if (!created.ok()) return Response::error(created.status());
    return Response::json(201, created_key_json(admin_key_json(created->record), created->secret));
  });
  router.add("GET", "/v1/admin/keys", Access::kAdmin, [&admin_keys](Request& request) {
    return page_of(
        request,
        [&](std::string_view after, int64_t limit, bool* more) {
          return admin_keys.list(after, limit, more);
        },
        admin_key_json);
  });
  router.add("DELETE", "/v1/admin/keys/{id}", Access::kAdmin, [&admin_keys](Request& request) {
    auto revoked = admin_keys.revoke(request.param("id"), request.principal.actor());
    if (!revoked.ok()) return Response::error(revoked.status());
    return Response::json(200, admin_key_json(*revoked));
  });

  // Staff make a tenant's first key (an owner, unless another role is asked for).
  router.add("POST", "/v1/admin/tenants/{id}/keys", Access::kAdmin,
             [&tenant_keys](Request& request) {
               return create_key(tenant_keys, request, request.param("id"), "owner", Role::kOwner);
             });
  router.add("GET", "/v1/keys", Access::tenant(Permission::kManageKeys),
             [&tenant_keys](Request& request) {
               return page_of(
                   request,
                   [&](std::string_view after, int64_t limit, bool* more) {
                     return tenant_keys.list(request.principal.tenant, after, limit, more);
                   },
                   key_json);
             });
  router.add("POST", "/v1/keys", Access::tenant(Permission::kManageKeys),
             [&tenant_keys](Request& request) {
               return create_key(tenant_keys, request, request.principal.tenant, std::nullopt,
                                 Role::kDeveloper);
             });
  router.add("DELETE", "/v1/keys/{id}", Access::tenant(Permission::kManageKeys),
             [&tenant_keys](Request& request) {
               auto revoked = tenant_keys.revoke(request.principal.tenant, request.param("id"),
                                                 request.principal.actor());
               if (!revoked.ok()) return Response::error(revoked.status());
               return Response::json(200, key_json(*revoked));
             });
}

}  // namespace mh::api
