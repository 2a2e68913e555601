#include "platform/api/deployments/routes.h"

#include <boost/json.hpp>

#include "platform/api/deployments/protocol.h"
#include "tenants/roles.h"

namespace mh::api {

namespace json = boost::json;

namespace {

// The deployment routes under `prefix`, for the deployments of whoever `owner` names: the
// caller's tenant (/v1/deployments), or "" for staff's (/v1/admin/deployments).
void add_crud_routes(Router& router, Deployments& deployments, const std::string& prefix,
                     Access read, Access write, std::string (*owner)(const Request&)) {
  router.add("POST", prefix, write, [&deployments, owner](Request& request) {
    auto body = parse_json_object(request);
    if (!body.ok()) return Response::error(body.status());
    auto d = deployments.create(owner(request), *body);
    if (!d.ok()) return Response::error(d.status());
    return Response::json(200, deployment_json(deployments.view(*d)));
  });
  router.add("GET", prefix, read, [&deployments, owner](Request& request) {
    auto page = parse_page(request, 20, 100);
    if (!page.ok()) return Response::error(page.status());
    bool has_more = false;
    auto list = deployments.list(owner(request), page->after, page->limit, &has_more);
    if (!list.ok()) return Response::error(list.status());
    json::array data;
    for (const auto& d : *list) data.push_back(deployment_json(deployments.view(d)));
    return list_response(std::move(data), has_more);
  });
  router.add("GET", prefix + "/{id}", read, [&deployments, owner](Request& request) {
    auto d = deployments.get(owner(request), request.param("id"));
    if (!d.ok()) return Response::error(d.status());
    return Response::json(200, deployment_json(deployments.view(*d)));
  });
  router.add("PATCH", prefix + "/{id}", write, [&deployments, owner](Request& request) {
    auto body = parse_json_object(request);
    if (!body.ok()) return Response::error(body.status());
    auto n = parse_scale_request(*body);
    if (!n.ok()) return Response::error(n.status());
    auto d = deployments.scale(owner(request), request.param("id"), *n);
    if (!d.ok()) return Response::error(d.status());
    return Response::json(200, deployment_json(deployments.view(*d)));
  });
  router.add("DELETE", prefix + "/{id}", write, [&deployments, owner](Request& request) {
    auto d = deployments.remove(owner(request), request.param("id"));
    if (!d.ok()) return Response::error(d.status());
    return Response::json(200, deployment_deleted_json(*d));
  });
}

}  // namespace

void add_deployment_routes(Router& router, Deployments& deployments) {
  using tenants::Permission;
  add_crud_routes(router, deployments, "/v1/deployments", Access::tenant(Permission::kRead),
                  Access::tenant(Permission::kWrite),
                  [](const Request& r) { return r.principal.tenant; });
  // Staff deployments of base models, which every tenant may call.
  add_crud_routes(router, deployments, "/v1/admin/deployments", Access::kAdmin, Access::kAdmin,
                  [](const Request&) { return std::string(); });
  // Inline: infer() reads memory only (the live deployments, entitlements, the clock's mark) and
  // hands the relay to the io_context, answering with the stream it will fill.
  router.add(
      "POST", "/v1/completions", Access::tenant(Permission::kInfer),
      [&deployments](Request& request) { return deployments.infer(request, false); },
      Runs::kInline);
  router.add(
      "POST", "/v1/chat/completions", Access::tenant(Permission::kInfer),
      [&deployments](Request& request) { return deployments.infer(request, true); },
      Runs::kInline);
}

}  // namespace mh::api
