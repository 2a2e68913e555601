#include "platform/api/licenses/routes.h"

#include <boost/json.hpp>

#include "platform/api/fields.h"
#include "platform/api/licenses/protocol.h"
#include "platform/base/time.h"

namespace mh::api {

namespace json = boost::json;
using licensing::LicenseRecord;

void add_license_routes(Router& router, licensing::LicenseRegistry& registry,
                        licensing::TrustedClock& clock) {
  // A licence's standing is shown at the clock's high-water mark: the latest time seen.
  auto now = [&clock] { return clock.high_water() > 0 ? clock.high_water() : unix_seconds(); };
  auto respond = [now](int status, const Result<LicenseRecord>& record) {
    if (!record.ok()) return Response::error(record.status());
    return Response::json(status, license_json(*record, now()));
  };
  router.add("POST", "/v1/admin/licenses", Access::kAdmin, [&registry, respond](Request& request) {
    auto body = parse_json_object(request);
    if (!body.ok()) return Response::error(body.status());
    auto text = parse_install_request(*body);
    if (!text.ok()) return Response::error(text.status());
    return respond(201, registry.install(*text, request.principal.actor()));
  });
  router.add("GET", "/v1/admin/licenses", Access::kAdmin, [&registry, now](Request& request) {
    auto page = parse_page(request);
    if (!page.ok()) return Response::error(page.status());
    bool has_more = false;
    auto records = registry.list(page->after, page->limit, &has_more);
    if (!records.ok()) return Response::error(records.status());
    json::array data;
    for (const auto& r : *records) data.push_back(license_json(r, now()));
    return list_response(std::move(data), has_more);
  });
  router.add("GET", "/v1/admin/licenses/{id}", Access::kAdmin,
             [&registry, respond](Request& request) {
               return respond(200, registry.get(request.param("id")));
             });
  router.add("POST", "/v1/admin/licenses/{id}/revoke", Access::kAdmin,
             [&registry, respond](Request& request) {
               auto body = body_or_empty(request);
               if (!body.ok()) return Response::error(body.status());
               auto reason = parse_revoke_request(*body);
               if (!reason.ok()) return Response::error(reason.status());
               return respond(200, registry.revoke(request.param("id"), *reason,
                                                   request.principal.actor()));
             });
}

}  // namespace mh::api
