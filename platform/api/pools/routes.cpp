#include "platform/api/pools/routes.h"

#include <boost/json.hpp>

#include "platform/api/pools/protocol.h"
#include "tenants/roles.h"

namespace mh::api {

namespace json = boost::json;

void add_pool_routes(Router& router, Pools& pools) {
  router.add("GET", "/v1/admin/pools", Access::kAdmin,
             [&pools](Request&) { return Response::json(200, pools_json(pools.pools())); });
  router.add("PUT", "/v1/admin/tenants/{id}/quotas/{pool}", Access::kAdmin,
             [&pools](Request& request) {
               auto body = parse_json_object(request);
               if (!body.ok()) return Response::error(body.status());
               auto quota = parse_quota(*body);
               if (!quota.ok()) return Response::error(quota.status());
               Status s = pools.set_quota(std::string(request.param("id")),
                                          std::string(request.param("pool")), *quota);
               if (!s.ok()) return Response::error(s);
               const std::string tenant(request.param("id"));
               return Response::json(200, quotas_json(pools.quotas(tenant)));
             });
  router.add("POST", "/v1/admin/pools", Access::kAdmin, [&pools](Request& request) {
    auto body = parse_json_object(request);
    if (!body.ok()) return Response::error(body.status());
    auto pool = parse_slurm_pool(*body);
    if (!pool.ok()) return Response::error(pool.status());
    if (Status s = pools.add_slurm_pool(*pool); !s.ok()) return Response::error(s);
    return Response::json(201, pools_json(pools.pools()));
  });
  router.add("POST", "/v1/admin/pools/{pool}/nodes/{node}/drain", Access::kAdmin,
             [&pools](Request& request) {
               auto body = parse_json_object(request);
               if (!body.ok()) return Response::error(body.status());
               const json::value* v = body->if_contains("draining");
               if (v == nullptr || !v->is_bool()) {
                 return Response::error(
                     invalid_argument("send {\"draining\": true} or false", "draining"));
               }
               Status s = pools.set_draining(std::string(request.param("pool")),
                                             std::string(request.param("node")), v->as_bool());
               if (!s.ok()) return Response::error(s);
               return Response::json(200, pools_json(pools.pools()));
             });
  router.add("GET", "/v1/quotas", Access::tenant(tenants::Permission::kRead),
             [&pools](Request& request) {
               return Response::json(200, quotas_json(pools.quotas(request.principal.tenant)));
             });
}

}  // namespace mh::api
