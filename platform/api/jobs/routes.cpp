#include "platform/api/jobs/routes.h"

#include <boost/json.hpp>

#include "platform/api/jobs/protocol.h"
#include "tenants/roles.h"

namespace mh::api {

namespace json = boost::json;

void add_fine_tuning_routes(Router& router, FineTuning& jobs) {
  using tenants::Permission;
  router.add("POST", "/v1/fine_tuning/jobs", Access::tenant(Permission::kWrite),
             [&jobs](Request& request) {
               auto body = parse_json_object(request);
               if (!body.ok()) return Response::error(body.status());
               auto j = jobs.create(request.principal.tenant, *body);
               if (!j.ok()) return Response::error(j.status());
               return Response::json(200, jobs.describe(*j));
             });
  router.add("GET", "/v1/fine_tuning/jobs", Access::tenant(Permission::kRead),
             [&jobs](Request& request) {
               auto page = parse_page(request, 20, 100);
               if (!page.ok()) return Response::error(page.status());
               bool has_more = false;
               auto list = jobs.list(request.principal.tenant, page->after, page->limit, &has_more);
               if (!list.ok()) return Response::error(list.status());
               json::array data;
               for (const auto& j : *list) data.push_back(jobs.describe(j));
               return list_response(std::move(data), has_more);
             });
  router.add("GET", "/v1/fine_tuning/jobs/{id}", Access::tenant(Permission::kRead),
             [&jobs](Request& request) {
               auto j = jobs.get(request.principal.tenant, request.param("id"));
               if (!j.ok()) return Response::error(j.status());
               return Response::json(200, jobs.describe(*j));
             });
  router.add("POST", "/v1/fine_tuning/jobs/{id}/cancel", Access::tenant(Permission::kWrite),
             [&jobs](Request& request) {
               // A running job answers once its worker has stopped: no thread waits for it.
               Later later = answer_later(request);
               jobs.cancel(request.principal.tenant, request.param("id"),
                           [&jobs, reply = std::move(later.reply)](Result<JobRecord> j) {
                             reply(j.ok() ? Response::json(200, jobs.describe(*j))
                                          : Response::error(j.status()));
                           });
               return std::move(later.response);
             });
  router.add("GET", "/v1/fine_tuning/jobs/{id}/checkpoints", Access::tenant(Permission::kRead),
             [&jobs](Request& request) {
               auto page = parse_page(request, 10, 100);
               if (!page.ok()) return Response::error(page.status());
               bool has_more = false;
               const std::string id(request.param("id"));
               auto job = jobs.get(request.principal.tenant, id);
               if (!job.ok()) return Response::error(job.status());
               auto list = jobs.checkpoints(request.principal.tenant, id, page->after, page->limit,
                                            &has_more);
               if (!list.ok()) return Response::error(list.status());
               json::array data;
               for (const auto& c : *list) data.push_back(checkpoint_json(c, *job));
               return list_response(std::move(data), has_more);
             });
  router.add("GET", "/v1/fine_tuning/jobs/{id}/events", Access::tenant(Permission::kRead),
             [&jobs](Request& request) {
               // ?stream=true: the events so far, then each new one as it happens, as
               // server-sent events, until the job ends ("data: [DONE]").
               if (request.query_param("stream").value_or("") == "true") {
                 return jobs.stream_events(request.principal.tenant, request.param("id"),
                                           request.query_param("after").value_or(""));
               }
               auto page = parse_page(request, 20, 1000);
               if (!page.ok()) return Response::error(page.status());
               bool has_more = false;
               auto list = jobs.events(request.principal.tenant, request.param("id"), page->after,
                                       page->limit, &has_more);
               if (!list.ok()) return Response::error(list.status());
               json::array data;
               for (const auto& e : *list) data.push_back(event_json(e));
               return list_response(std::move(data), has_more);
             });
}

}  // namespace mh::api
