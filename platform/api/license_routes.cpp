#include "platform/api/license_routes.h"

#include <fmt/format.h>
#include <boost/json.hpp>

#include "platform/base/time.h"

namespace mh::api {

namespace json = boost::json;
using licensing::LicenseRecord;
using licensing::LicenseRegistry;
using licensing::TrustedClock;

namespace {

std::string actor_of(const Request& request) { return request.principal.actor(); }

}  // namespace

json::object license_json(const LicenseRecord& r, int64_t now) {
  std::string status =
      r.revoked_at ? "revoked"
      : !r.invalid_reason.empty()
          ? "invalid"
          : std::string(standing_name(standing_at(r.license.terms, now)));
  json::object out = terms_json(r.license.terms);
  out["object"] = "license";
  out["key_id"] = r.license.key_id;
  out["status"] = status;
  out["active"] = r.active;
  out["installed_at"] = r.installed_at;
  out["revoked_at"] = r.revoked_at ? json::value(*r.revoked_at) : json::value(nullptr);
  out["revoke_reason"] = r.revoked_at ? json::value(r.revoke_reason) : json::value(nullptr);
  out["invalid_reason"] =
      r.invalid_reason.empty() ? json::value(nullptr) : json::value(r.invalid_reason);
  return out;
}

void add_license_routes(Router& router, LicenseRegistry& registry, TrustedClock& clock) {
  auto now = [&clock] { return clock.high_water() > 0 ? clock.high_water() : unix_seconds(); };
  router.add("POST", "/v1/admin/licenses", Access::kAdmin, [&registry, now](Request& request) {
    auto body = parse_json_object(request);
    if (!body.ok()) return Response::error(body.status());
    const json::value* text = body->if_contains("license");
    if (text == nullptr || !text->is_string()) {
      return Response::error(
          invalid_argument("'license' must be the license file's text", "license"));
    }
    auto installed = registry.install(text->as_string(), actor_of(request));
    if (!installed.ok()) return Response::error(installed.status());
    return Response::json(201, license_json(*installed, now()));
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
  router.add("GET", "/v1/admin/licenses/{id}", Access::kAdmin, [&registry, now](Request& request) {
    auto record = registry.get(request.param("id"));
    if (!record.ok()) return Response::error(record.status());
    return Response::json(200, license_json(*record, now()));
  });
  router.add(
      "POST", "/v1/admin/licenses/{id}/revoke", Access::kAdmin, [&registry, now](Request& request) {
        std::string reason;
        if (!request.body.empty()) {
          auto body = parse_json_object(request);
          if (!body.ok()) return Response::error(body.status());
          if (const json::value* r = body->if_contains("reason")) {
            if (!r->is_string()) {
              return Response::error(invalid_argument("'reason' must be a string", "reason"));
            }
            reason = r->as_string();
          }
        }
        auto record = registry.revoke(request.param("id"), reason, actor_of(request));
        if (!record.ok()) return Response::error(record.status());
        return Response::json(200, license_json(*record, now()));
      });
}

}  // namespace mh::api
