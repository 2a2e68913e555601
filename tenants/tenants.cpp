#include "tenants/tenants.h"

#include <fmt/format.h>

#include "platform/base/time.h"

namespace mh::tenants {

namespace {

Status validate_limits(const TenantLimits& l) {
  if (l.rate_limit_rps && (*l.rate_limit_rps <= 0 || *l.rate_limit_rps > 1e6)) {
    return invalid_argument("rate_limit_rps must be above 0 and at most 1000000", "rate_limit_rps");
  }
  if (l.rate_limit_burst && (*l.rate_limit_burst < 1 || *l.rate_limit_burst > 1'000'000)) {
    return invalid_argument("rate_limit_burst must be from 1 to 1000000", "rate_limit_burst");
  }
  if (l.storage_limit_bytes && *l.storage_limit_bytes < 0) {
    return invalid_argument("storage_limit_bytes must not be negative", "storage_limit_bytes");
  }
  return {};
}

}  // namespace

Status validate_tenant_id(std::string_view id) {
  bool ok = !id.empty() && id.size() <= 63;
  for (size_t i = 0; ok && i < id.size(); ++i) {
    char c = id[i];
    ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
         (i > 0 && (c == '-' || c == '_' || c == '.'));
  }
  if (!ok) {
    return invalid_argument("a tenant id is 1 to 63 of a-z, 0-9, '.', '_', '-', starting with a "
                            "letter or digit",
                            "id");
  }
  return {};
}

void TenantRegistry::remember(const Tenant& tenant) const {
  std::lock_guard lock(mutex_);
  cache_[tenant.id] = std::make_shared<const Tenant>(tenant);
}

Result<Tenant> TenantRegistry::create(const std::string& id, const std::string& name,
                                      const TenantLimits& limits, std::string_view actor) {
  MH_TRY(validate_tenant_id(id));
  if (name.empty() || name.size() > 200) {
    return invalid_argument("name must be 1 to 200 characters", "name");
  }
  MH_TRY(validate_limits(limits));
  Tenant t;
  t.id = id;
  t.name = name;
  t.created_at = unix_seconds();
  t.rate_limit_rps = limits.rate_limit_rps.value_or(t.rate_limit_rps);
  t.rate_limit_burst = limits.rate_limit_burst.value_or(t.rate_limit_burst);
  t.storage_limit_bytes = limits.storage_limit_bytes.value_or(t.storage_limit_bytes);
  MH_TRY(store_.insert(t, actor));
  remember(t);
  return t;
}

Result<Tenant> TenantRegistry::get(std::string_view id) const {
  Result<Tenant> out = store_.get(id);
  if (out.ok()) remember(*out);
  return out;
}

Result<std::vector<Tenant>> TenantRegistry::list(std::string_view after, int64_t limit,
                                                 bool* has_more) const {
  return store_.list(after, limit, has_more);
}

Result<Tenant> TenantRegistry::change(std::string_view id, std::string_view actor,
                                      std::string_view action,
                                      const std::function<void(Tenant&)>& apply) {
  MH_ASSIGN_OR_RETURN(Tenant t, store_.update(id, action, actor, apply));
  remember(t);
  return t;
}

Result<Tenant> TenantRegistry::suspend(std::string_view id, std::string_view reason,
                                       std::string_view actor) {
  if (reason.size() > 500) return invalid_argument("reason is at most 500 characters", "reason");
  return change(id, actor, "tenant.suspend", [&](Tenant& t) {
    t.suspended_at = unix_seconds();
    t.suspend_reason = reason.empty() ? "suspended by platform staff" : std::string(reason);
  });
}

Result<Tenant> TenantRegistry::resume(std::string_view id, std::string_view actor) {
  return change(id, actor, "tenant.resume", [](Tenant& t) {
    t.suspended_at.reset();
    t.suspend_reason.clear();
  });
}

Result<Tenant> TenantRegistry::set_limits(std::string_view id, const TenantLimits& limits,
                                          std::string_view actor) {
  MH_TRY(validate_limits(limits));
  return change(id, actor, "tenant.limits", [&](Tenant& t) {
    t.rate_limit_rps = limits.rate_limit_rps.value_or(t.rate_limit_rps);
    t.rate_limit_burst = limits.rate_limit_burst.value_or(t.rate_limit_burst);
    t.storage_limit_bytes = limits.storage_limit_bytes.value_or(t.storage_limit_bytes);
  });
}

std::shared_ptr<const Tenant> TenantRegistry::remembered(std::string_view id) const {
  std::lock_guard lock(mutex_);
  auto it = cache_.find(std::string(id));
  return it == cache_.end() ? nullptr : it->second;
}

std::shared_ptr<const Tenant> TenantRegistry::cached(std::string_view id) const {
  {
    std::lock_guard lock(mutex_);
    if (auto it = cache_.find(std::string(id)); it != cache_.end()) return it->second;
  }
  auto loaded = get(id);
  if (!loaded.ok()) return nullptr;
  std::lock_guard lock(mutex_);
  return cache_[std::string(id)];
}

}  // namespace mh::tenants
