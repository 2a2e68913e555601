#include "platform/api/models/routes.h"

#include <boost/json.hpp>

#include "platform/api/models/protocol.h"
#include "tenants/roles.h"

namespace mh::api {

namespace json = boost::json;
namespace fs = std::filesystem;

void add_model_routes(Router& router, Models& models) {
  using tenants::Permission;
  router.add("GET", "/v1/models", Access::tenant(Permission::kRead), [&models](Request& request) {
    auto page = parse_page(request, 20, 1000);
    if (!page.ok()) return Response::error(page.status());
    bool has_more = false;
    auto list = models.list(request.principal.tenant, page->after, page->limit, &has_more);
    if (!list.ok()) return Response::error(list.status());
    json::array data;
    for (const auto& m : *list) data.push_back(model_json(m));
    return list_response(std::move(data), has_more);
  });
  router.add("POST", "/v1/models", Access::tenant(Permission::kWrite), [&models](Request& request) {
    auto body = parse_json_object(request);
    if (!body.ok()) return Response::error(body.status());
    auto m = models.register_custom(request.principal.tenant, *body);
    if (!m.ok()) return Response::error(m.status());
    return Response::json(201, model_json(*m));
  });
  router.add("GET", "/v1/models/{id}", Access::tenant(Permission::kRead),
             [&models](Request& request) {
               auto m = models.get(request.principal.tenant, request.param("id"));
               if (!m.ok()) return Response::error(m.status());
               return Response::json(200, model_json(*m));
             });
  router.add("POST", "/v1/models/{id}/merge", Access::tenant(Permission::kWrite),
             [&models](Request& request) {
               auto body = parse_json_object(request);
               if (!body.ok()) return Response::error(body.status());
               auto m = models.merge(request.principal.tenant, request.param("id"), *body);
               if (!m.ok()) return Response::error(m.status());
               return Response::json(201, model_json(*m));
             });
  router.add("GET", "/v1/admin/base-models", Access::kAdmin, [&models](Request&) {
    json::array data;
    for (const auto& m : models.base_models()) data.push_back(model_json(m));
    return list_response(std::move(data), false);
  });
  router.add("POST", "/v1/admin/base-models", Access::kAdmin, [&models](Request& request) {
    auto body = parse_json_object(request);
    if (!body.ok()) return Response::error(body.status());
    const json::value* name = body->if_contains("name");
    const json::value* dir = body->if_contains("directory");
    if (name == nullptr || !name->is_string() || dir == nullptr || !dir->is_string()) {
      return Response::error(invalid_argument(
          "send {\"name\": \"…\", \"directory\": \"<a directory on the platform's host>\"}"));
    }
    auto m = models.publish_base(std::string(name->as_string()),
                                 fs::path(std::string(dir->as_string())));
    if (!m.ok()) return Response::error(m.status());
    return Response::json(201, model_json(*m));
  });
  router.add("DELETE", "/v1/models/{id}", Access::tenant(Permission::kWrite),
             [&models](Request& request) {
               auto m = models.remove(request.principal.tenant, request.param("id"));
               if (!m.ok()) return Response::error(m.status());
               return Response::json(
                   200, json::object{{"id", m->id}, {"object", "model"}, {"deleted", true}});
             });
}

}  // namespace mh::api
