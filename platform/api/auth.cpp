#include "platform/api/auth.h"

#include <fmt/format.h>
#include <algorithm>
#include <cctype>
#include <cmath>

#include "tenants/roles.h"

namespace mh::api {

Result<std::string_view> bearer_token(const Request& request) {
  std::string_view header = request.header("authorization");
  if (header.empty()) {
    return unauthenticated("missing API key: send the header 'Authorization: Bearer <key>'");
  }
  constexpr std::string_view kScheme = "Bearer ";
  if (header.size() <= kScheme.size() ||
      !std::equal(kScheme.begin(), kScheme.end(), header.begin(),
                  [](char a, char b) { return std::tolower(a) == std::tolower(b); })) {
    return unauthenticated("malformed Authorization header: expected 'Bearer <key>'");
  }
  return header.substr(kScheme.size());
}


Authenticator make_authenticator(const tenants::AdminKeys& admin_keys,
                                 const tenants::TenantKeys& keys,
                                 const tenants::TenantRegistry& registry,
                                 tenants::RateLimiter& limiter) {
  return [&admin_keys, &keys, &registry, &limiter](
             const Request& request, Access access,
             bool may_block) -> std::optional<Result<Principal>> {
    MH_ASSIGN_OR_RETURN(std::string_view token, bearer_token(request));
    if (token.starts_with(tenants::kAdminKeyPrefix)) {
      if (!may_block) return std::nullopt;  // staff keys are few and read from the store
      MH_ASSIGN_OR_RETURN(tenants::AdminKey key, admin_keys.authenticate(token));
      if (access.kind == Access::Kind::kTenant) {
        return permission_denied(
            "this route acts as a tenant: call it with one of the tenant's "
            "API keys, not a platform-admin key");
      }
      return Principal{Principal::Kind::kPlatformAdmin, key.id, {}, {}};
    }
    if (!token.starts_with(tenants::kTenantKeyPrefix)) {
      return unauthenticated(
          "invalid API key: Macrohard keys start with mh_live_ (tenants) or "
          "mh_admin_ (platform staff)");
    }
    std::optional<tenants::TenantKey> known = keys.remembered(token);
    if (!known && !may_block) return std::nullopt;
    MH_ASSIGN_OR_RETURN(tenants::TenantKey key,
                        known ? Result<tenants::TenantKey>(*known) : keys.authenticate(token));
    auto tenant = may_block ? registry.cached(key.tenant) : registry.remembered(key.tenant);
    if (!tenant && !may_block) return std::nullopt;
    if (!tenant) return unauthenticated("invalid or revoked API key");
    if (tenant->suspended_at) {
      return permission_denied(
          fmt::format("tenant '{}' is suspended: {}", tenant->id, tenant->suspend_reason));
    }
    if (access.kind == Access::Kind::kAdmin) {
      return permission_denied("this route is for platform staff (an mh_admin_ key)");
    }
    const auto permission = static_cast<tenants::Permission>(access.permission);
    if (!tenants::allows(key.role, permission)) {
      return permission_denied(fmt::format("the role '{}' may not {} (key {})",
                                           tenants::role_name(key.role),
                                           tenants::permission_name(permission), key.id));
    }
    if (auto wait = limiter.acquire(tenant->id, tenant->rate_limit_rps,
                                    static_cast<double>(tenant->rate_limit_burst))) {
      int64_t seconds = std::max<int64_t>(1, (wait->count() + 999) / 1000);
      return Status(
          Code::kResourceExhausted,
          fmt::format("tenant '{}' is over its request rate of {:g}/s (burst {}); retry "
                      "in {} s",
                      tenant->id, tenant->rate_limit_rps, tenant->rate_limit_burst, seconds),
          std::to_string(seconds));
    }
    return Principal{Principal::Kind::kTenant, key.id, key.tenant,
                     std::string(tenants::role_name(key.role))};
  };
}

}  // namespace mh::api
