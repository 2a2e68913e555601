#include "platform/api/files/routes.h"

#include <boost/json.hpp>

#include "platform/api/files/protocol.h"
#include "tenants/roles.h"

namespace mh::api {

namespace json = boost::json;

void add_file_routes(Router& router, Files& files) {
  using tenants::Permission;
  router.add_upload("POST", "/v1/files", Access::tenant(Permission::kWrite),
                    [&files](Request& request) { return files.begin_upload(request); });
  router.add("GET", "/v1/files", Access::tenant(Permission::kRead), [&files](Request& request) {
    auto page = parse_page(request, 20, 10000);
    if (!page.ok()) return Response::error(page.status());
    bool has_more = false;
    auto list = files.list(request.principal.tenant, request.query_param("purpose").value_or(""),
                           page->after, page->limit, &has_more);
    if (!list.ok()) return Response::error(list.status());
    json::array data;
    for (const auto& f : *list) data.push_back(file_json(f));
    return list_response(std::move(data), has_more);
  });
  router.add("GET", "/v1/files/{id}", Access::tenant(Permission::kRead),
             [&files](Request& request) {
               auto f = files.get(request.principal.tenant, request.param("id"));
               if (!f.ok()) return Response::error(f.status());
               return Response::json(200, file_json(*f));
             });
  router.add("GET", "/v1/files/{id}/content", Access::tenant(Permission::kRead),
             [&files](Request& request) {
               auto path = files.content(request.principal.tenant, request.param("id"));
               if (!path.ok()) return Response::error(path.status());
               return Response::file(path->string(), "application/octet-stream");
             });
  router.add("DELETE", "/v1/files/{id}", Access::tenant(Permission::kWrite),
             [&files](Request& request) {
               auto f = files.remove(request.principal.tenant, request.param("id"));
               if (!f.ok()) return Response::error(f.status());
               return Response::json(200, file_deleted_json(*f));
             });
}

}  // namespace mh::api
