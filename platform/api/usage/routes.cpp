#include "platform/api/usage/routes.h"

#include <boost/json.hpp>

#include "platform/api/usage/protocol.h"
#include "platform/base/time.h"
#include "tenants/roles.h"

namespace mh::api {

void add_usage_routes(Router& router, const tenants::UsageLedger& ledger) {
  router.add("GET", "/v1/usage", Access::tenant(tenants::Permission::kRead),
             [&ledger](Request& request) {
               auto asked = parse_usage_request(request, unix_seconds());
               if (!asked.ok()) return Response::error(asked.status());
               auto totals = ledger.totals(request.principal.tenant, asked->query);
               if (!totals.ok()) return Response::error(totals.status());
               return Response::json(200, usage_json(request.principal.tenant, *asked, *totals));
             });
  router.add("GET", "/v1/admin/usage/export", Access::kAdmin, [&ledger](Request& request) {
    auto period = parse_period(request, unix_seconds());
    if (!period.ok()) return Response::error(period.status());
    auto csv = ledger.export_csv(request.query_param("tenant"), period->first, period->second);
    if (!csv.ok()) return Response::error(csv.status());
    Response response = Response::text(200, std::move(*csv), "text/csv; charset=utf-8");
    response.headers.emplace_back("Content-Disposition", "attachment; filename=\"usage.csv\"");
    return response;
  });
}

}  // namespace mh::api
