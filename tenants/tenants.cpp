#include "tenants/tenants.h"

#include <boost/json.hpp>
#include <fmt/format.h>

#include "platform/base/time.h"

namespace mh::tenants {

namespace json = boost::json;

namespace {

constexpr std::string_view kColumns =
    "id, name, created_at, suspended_at, suspend_reason, rate_limit_rps, rate_limit_burst, "
    "storage_limit_bytes";

Tenant from_row(const store::Row& r) {
  Tenant t;
  t.id = r.text(0);
  t.name = r.text(1);
  t.created_at = r.integer(2);
  if (!r.is_null(3)) t.suspended_at = r.integer(3);
  t.suspend_reason = r.text(4);
  t.rate_limit_rps = r.real(5);
  t.rate_limit_burst = r.integer(6);
  t.storage_limit_bytes = r.integer(7);
  return t;
}

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

json::object limits_json(const Tenant& t) {
  return {{"rate_limit_rps", t.rate_limit_rps},
          {"rate_limit_burst", t.rate_limit_burst},
          {"storage_limit_bytes", t.storage_limit_bytes}};
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
  MH_TRY(db_.write([&](store::Session& s) -> Status {
    MH_ASSIGN_OR_RETURN(auto existing, s.query("SELECT id FROM tenants WHERE id = ?", {id}));
    if (!existing.empty()) return conflict(fmt::format("tenant '{}' already exists", id));
    MH_TRY(s.exec("INSERT INTO tenants (id, name, created_at, rate_limit_rps, rate_limit_burst, "
                  "storage_limit_bytes) VALUES (?, ?, ?, ?, ?, ?)",
                  {t.id, t.name, t.created_at, t.rate_limit_rps, t.rate_limit_burst,
                   t.storage_limit_bytes})
               .status());
    json::object detail = limits_json(t);
    detail["name"] = t.name;
    return store::AuditLog::append(s, actor, "tenant.create", t.id, detail);
  }));
  remember(t);
  return t;
}

Result<Tenant> TenantRegistry::get(std::string_view id) const {
  Result<Tenant> out = not_found("");
  MH_TRY(db_.read([&](store::Session& s) -> Status {
    MH_ASSIGN_OR_RETURN(auto row, s.query_one(fmt::format("SELECT {} FROM tenants WHERE id = ?",
                                                          kColumns),
                                              {std::string(id)}, fmt::format("tenant '{}'", id)));
    out = from_row(row);
    return {};
  }));
  if (out.ok()) remember(*out);
  return out;
}

Result<std::vector<Tenant>> TenantRegistry::list(std::string_view after, int64_t limit,
                                                 bool* has_more) const {
  std::vector<Tenant> out;
  MH_TRY(db_.read([&](store::Session& s) -> Status {
    MH_ASSIGN_OR_RETURN(auto rows, store::select_page(s, "tenants", kColumns, after, limit,
                                                      has_more));
    for (const auto& row : rows) out.push_back(from_row(row));
    return {};
  }));
  return out;
}

Result<Tenant> TenantRegistry::change(
    std::string_view id, std::string_view actor, std::string_view action,
    const std::function<Status(store::Session&, Tenant&)>& apply) {
  Tenant t;
  MH_TRY(db_.write([&](store::Session& s) -> Status {
    MH_ASSIGN_OR_RETURN(auto row, s.query_one(fmt::format("SELECT {} FROM tenants WHERE id = ?",
                                                          kColumns),
                                              {std::string(id)}, fmt::format("tenant '{}'", id)));
    t = from_row(row);
    MH_TRY(apply(s, t));
    MH_TRY(s.exec("UPDATE tenants SET suspended_at = ?, suspend_reason = ?, rate_limit_rps = ?, "
                  "rate_limit_burst = ?, storage_limit_bytes = ? WHERE id = ?",
                  {t.suspended_at ? store::Value(*t.suspended_at) : store::Value(store::kNull),
                   t.suspend_reason, t.rate_limit_rps, t.rate_limit_burst, t.storage_limit_bytes,
                   t.id})
               .status());
    json::object detail = limits_json(t);
    detail["suspended"] = t.suspended_at.has_value();
    if (t.suspended_at) detail["reason"] = t.suspend_reason;
    return store::AuditLog::append(s, actor, action, t.id, detail);
  }));
  remember(t);
  return t;
}

Result<Tenant> TenantRegistry::suspend(std::string_view id, std::string_view reason,
                                       std::string_view actor) {
  if (reason.size() > 500) return invalid_argument("reason is at most 500 characters", "reason");
  return change(id, actor, "tenant.suspend", [&](store::Session&, Tenant& t) -> Status {
    t.suspended_at = unix_seconds();
    t.suspend_reason = reason.empty() ? "suspended by platform staff" : std::string(reason);
    return {};
  });
}

Result<Tenant> TenantRegistry::resume(std::string_view id, std::string_view actor) {
  return change(id, actor, "tenant.resume", [](store::Session&, Tenant& t) -> Status {
    t.suspended_at.reset();
    t.suspend_reason.clear();
    return {};
  });
}

Result<Tenant> TenantRegistry::set_limits(std::string_view id, const TenantLimits& limits,
                                          std::string_view actor) {
  MH_TRY(validate_limits(limits));
  return change(id, actor, "tenant.limits", [&](store::Session&, Tenant& t) -> Status {
    t.rate_limit_rps = limits.rate_limit_rps.value_or(t.rate_limit_rps);
    t.rate_limit_burst = limits.rate_limit_burst.value_or(t.rate_limit_burst);
    t.storage_limit_bytes = limits.storage_limit_bytes.value_or(t.storage_limit_bytes);
    return {};
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
