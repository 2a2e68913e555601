#include "platform/api/admin_key_routes.h"

#include <boost/json.hpp>

namespace mh::api {

namespace json = boost::json;
using tenants::AdminKey;
using tenants::AdminKeys;

namespace {

json::object to_json(const AdminKey& key) {
  return {{"id", key.id},
          {"object", "admin_key"},
          {"name", key.name},
          {"prefix", key.prefix},
          {"created_at", key.created_at},
          {"revoked_at", key.revoked_at ? json::value(*key.revoked_at) : json::value(nullptr)}};
}

}  // namespace

void add_admin_key_routes(Router& router, AdminKeys& keys) {
  router.add("POST", "/v1/admin/keys", Access::kAdmin, [&keys](Request& request) {
    auto body = parse_json_object(request);
    if (!body.ok()) return Response::error(body.status());
    const json::value* name = body->if_contains("name");
    if (name == nullptr || !name->is_string()) {
      return Response::error(invalid_argument("'name' must be a string", "name"));
    }
    auto created = keys.create(std::string(name->as_string()), request.principal.actor());
    if (!created.ok()) return Response::error(created.status());
    json::object out = to_json(created->record);
    out["key"] = created->secret;
    return Response::json(201, out);
  });
  router.add("GET", "/v1/admin/keys", Access::kAdmin, [&keys](Request& request) {
    auto page = parse_page(request);
    if (!page.ok()) return Response::error(page.status());
    bool has_more = false;
    auto listed = keys.list(page->after, page->limit, &has_more);
    if (!listed.ok()) return Response::error(listed.status());
    json::array data;
    for (const AdminKey& key : *listed) data.push_back(to_json(key));
    return list_response(std::move(data), has_more);
  });
  router.add("DELETE", "/v1/admin/keys/{id}", Access::kAdmin, [&keys](Request& request) {
    auto revoked = keys.revoke(request.param("id"), request.principal.actor());
    if (!revoked.ok()) return Response::error(revoked.status());
    return Response::json(200, to_json(*revoked));
  });
}

}  // namespace mh::api
