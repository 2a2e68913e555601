#include "platform/api/tenant_routes.h"

#include <fmt/format.h>
#include <boost/json.hpp>

#include "tenants/roles.h"

namespace mh::api {

namespace json = boost::json;
using tenants::Permission;

namespace {

// The tenant's license as its entitlement check sees it now.
json::object license_state(const licensing::Entitlements& entitlements,
                           licensing::TrustedClock& clock, const std::string& tenant) {
  auto entitlement = entitlements.find(tenant);
  if (!entitlement)
    return {{"id", nullptr}, {"in_force", false}, {"reason", "no license installed"}};
  auto now = clock.now_in_memory();  // it may answer on an I/O thread (GET /v1/tenant)
  Status in_force = now.ok() ? entitlements.check(tenant, "", *now) : now.status();
  return {{"id", entitlement->license.terms.id},
          {"in_force", in_force.ok()},
          {"reason", in_force.ok() ? json::value(nullptr) : json::value(in_force.message())},
          {"expires_at", entitlement->license.terms.expires_at}};
}

json::object tenant_json(const tenants::Tenant& t) {
  return {{"id", t.id},
          {"object", "tenant"},
          {"name", t.name},
          {"created_at", t.created_at},
          {"suspended_at", t.suspended_at ? json::value(*t.suspended_at) : json::value(nullptr)},
          {"suspend_reason", t.suspended_at ? json::value(t.suspend_reason) : json::value(nullptr)},
          {"limits", json::object{{"rate_limit_rps", t.rate_limit_rps},
                                  {"rate_limit_burst", t.rate_limit_burst},
                                  {"storage_limit_bytes", t.storage_limit_bytes}}}};
}

json::object key_json(const tenants::TenantKey& k) {
  return {{"id", k.id},
          {"object", "api_key"},
          {"tenant", k.tenant},
          {"name", k.name},
          {"role", tenants::role_name(k.role)},
          {"prefix", k.prefix},
          {"created_at", k.created_at},
          {"created_by", k.created_by},
          {"revoked_at", k.revoked_at ? json::value(*k.revoked_at) : json::value(nullptr)}};
}

template <typename T, typename ToJson>
Response list_of(const std::vector<T>& items, bool has_more, ToJson to_json) {
  json::array data;
  for (const auto& item : items) data.push_back(to_json(item));
  return list_response(std::move(data), has_more);
}

// Optional string/number fields of a JSON body, with type errors naming the field.
Result<std::optional<std::string>> opt_string(const json::object& o, std::string_view key) {
  const json::value* v = o.if_contains(key);
  if (v == nullptr || v->is_null()) return std::optional<std::string>();
  if (!v->is_string())
    return invalid_argument(fmt::format("'{}' must be a string", key), std::string(key));
  return std::optional<std::string>(std::string(v->as_string()));
}
Result<std::optional<double>> opt_number(const json::object& o, std::string_view key) {
  const json::value* v = o.if_contains(key);
  if (v == nullptr || v->is_null()) return std::optional<double>();
  if (!v->is_number())
    return invalid_argument(fmt::format("'{}' must be a number", key), std::string(key));
  return std::optional<double>(v->to_number<double>());
}

Result<tenants::TenantLimits> limits_from(const json::object& body) {
  tenants::TenantLimits limits;
  MH_ASSIGN_OR_RETURN(limits.rate_limit_rps, opt_number(body, "rate_limit_rps"));
  MH_ASSIGN_OR_RETURN(auto burst, opt_number(body, "rate_limit_burst"));
  MH_ASSIGN_OR_RETURN(auto storage, opt_number(body, "storage_limit_bytes"));
  if (burst) limits.rate_limit_burst = static_cast<int64_t>(*burst);
  if (storage) limits.storage_limit_bytes = static_cast<int64_t>(*storage);
  return limits;
}

Result<tenants::Role> role_from(const json::object& body, tenants::Role fallback) {
  MH_ASSIGN_OR_RETURN(auto name, opt_string(body, "role"));
  if (!name) return fallback;
  auto role = tenants::parse_role(*name);
  if (!role) return invalid_argument("role must be owner, developer or viewer", "role");
  return *role;
}

// Body parsing that tolerates an empty body (for suspend/resume/revoke-style calls).
Result<json::object> body_or_empty(const Request& request) {
  if (request.body.empty()) return json::object{};
  return parse_json_object(request);
}

#define MH_RESPOND_IF_ERROR(expr)             \
  do {                                        \
    if (auto&& mh_r_ = (expr); !mh_r_.ok()) { \
      return Response::error(mh_r_.status()); \
    }                                         \
  } while (0)

}  // namespace

void add_tenant_routes(Router& router, tenants::TenantRegistry& registry, tenants::TenantKeys& keys,
                       const licensing::Entitlements& entitlements,
                       licensing::TrustedClock& clock) {
  router.add("POST", "/v1/admin/tenants", Access::kAdmin, [&registry](Request& request) {
    auto body = parse_json_object(request);
    MH_RESPOND_IF_ERROR(body);
    auto id = opt_string(*body, "id");
    auto name = opt_string(*body, "name");
    MH_RESPOND_IF_ERROR(id);
    MH_RESPOND_IF_ERROR(name);
    if (!*id) return Response::error(invalid_argument("'id' is required", "id"));
    auto limits = limits_from(*body);
    MH_RESPOND_IF_ERROR(limits);
    auto tenant = registry.create(**id, name->value_or(**id), *limits, request.principal.actor());
    MH_RESPOND_IF_ERROR(tenant);
    return Response::json(201, tenant_json(*tenant));
  });
  router.add("GET", "/v1/admin/tenants", Access::kAdmin, [&registry](Request& request) {
    auto page = parse_page(request);
    MH_RESPOND_IF_ERROR(page);
    bool has_more = false;
    auto list = registry.list(page->after, page->limit, &has_more);
    MH_RESPOND_IF_ERROR(list);
    return list_of(*list, has_more, tenant_json);
  });
  router.add("GET", "/v1/admin/tenants/{id}", Access::kAdmin,
             [&registry, &entitlements, &clock](Request& request) {
               auto tenant = registry.get(request.param("id"));
               MH_RESPOND_IF_ERROR(tenant);
               json::object out = tenant_json(*tenant);
               out["license"] = license_state(entitlements, clock, tenant->id);
               return Response::json(200, out);
             });
  router.add(
      "POST", "/v1/admin/tenants/{id}/suspend", Access::kAdmin, [&registry](Request& request) {
        auto body = body_or_empty(request);
        MH_RESPOND_IF_ERROR(body);
        auto reason = opt_string(*body, "reason");
        MH_RESPOND_IF_ERROR(reason);
        auto tenant =
            registry.suspend(request.param("id"), reason->value_or(""), request.principal.actor());
        MH_RESPOND_IF_ERROR(tenant);
        return Response::json(200, tenant_json(*tenant));
      });
  router.add("POST", "/v1/admin/tenants/{id}/resume", Access::kAdmin,
             [&registry](Request& request) {
               auto tenant = registry.resume(request.param("id"), request.principal.actor());
               MH_RESPOND_IF_ERROR(tenant);
               return Response::json(200, tenant_json(*tenant));
             });
  router.add(
      "POST", "/v1/admin/tenants/{id}/limits", Access::kAdmin, [&registry](Request& request) {
        auto body = parse_json_object(request);
        MH_RESPOND_IF_ERROR(body);
        auto limits = limits_from(*body);
        MH_RESPOND_IF_ERROR(limits);
        auto tenant = registry.set_limits(request.param("id"), *limits, request.principal.actor());
        MH_RESPOND_IF_ERROR(tenant);
        return Response::json(200, tenant_json(*tenant));
      });
  // Staff make a tenant's first key (an owner, unless another role is asked for).
  router.add("POST", "/v1/admin/tenants/{id}/keys", Access::kAdmin, [&keys](Request& request) {
    auto body = body_or_empty(request);
    MH_RESPOND_IF_ERROR(body);
    auto name = opt_string(*body, "name");
    MH_RESPOND_IF_ERROR(name);
    auto role = role_from(*body, tenants::Role::kOwner);
    MH_RESPOND_IF_ERROR(role);
    auto created =
        keys.create(request.param("id"), name->value_or("owner"), *role, request.principal.actor());
    MH_RESPOND_IF_ERROR(created);
    json::object out = key_json(created->record);
    out["key"] = created->secret;
    return Response::json(201, out);
  });

  // Inline: the tenant, its licence and the clock's mark are all in memory.
  router.add(
      "GET", "/v1/tenant", Access::tenant(Permission::kRead),
      [&registry, &entitlements, &clock](Request& request) {
        auto tenant = registry.cached(request.principal.tenant);
        if (!tenant) return Response::error(not_found("tenant not found"));
        json::object out = tenant_json(*tenant);
        out["key"] =
            json::object{{"id", request.principal.key_id}, {"role", request.principal.role}};
        out["license"] = license_state(entitlements, clock, tenant->id);
        return Response::json(200, out);
      },
      Runs::kInline);
  router.add("GET", "/v1/keys", Access::tenant(Permission::kManageKeys), [&keys](Request& request) {
    auto page = parse_page(request);
    MH_RESPOND_IF_ERROR(page);
    bool has_more = false;
    auto list = keys.list(request.principal.tenant, page->after, page->limit, &has_more);
    MH_RESPOND_IF_ERROR(list);
    return list_of(*list, has_more, key_json);
  });
  router.add("POST", "/v1/keys", Access::tenant(Permission::kManageKeys),
             [&keys](Request& request) {
               auto body = parse_json_object(request);
               MH_RESPOND_IF_ERROR(body);
               auto name = opt_string(*body, "name");
               MH_RESPOND_IF_ERROR(name);
               if (!*name) return Response::error(invalid_argument("'name' is required", "name"));
               auto role = role_from(*body, tenants::Role::kDeveloper);
               MH_RESPOND_IF_ERROR(role);
               auto created =
                   keys.create(request.principal.tenant, **name, *role, request.principal.actor());
               MH_RESPOND_IF_ERROR(created);
               json::object out = key_json(created->record);
               out["key"] = created->secret;
               return Response::json(201, out);
             });
  router.add("DELETE", "/v1/keys/{id}", Access::tenant(Permission::kManageKeys),
             [&keys](Request& request) {
               auto revoked = keys.revoke(request.principal.tenant, request.param("id"),
                                          request.principal.actor());
               MH_RESPOND_IF_ERROR(revoked);
               return Response::json(200, key_json(*revoked));
             });
}

}  // namespace mh::api
