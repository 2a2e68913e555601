#include "tenants/tenant_store.h"

#include <fmt/format.h>
#include <boost/json.hpp>

#include "platform/store/audit_log.h"

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

json::object limits_json(const Tenant& t) {
  return {{"rate_limit_rps", t.rate_limit_rps},
          {"rate_limit_burst", t.rate_limit_burst},
          {"storage_limit_bytes", t.storage_limit_bytes}};
}

Result<Tenant> select(store::Session& s, std::string_view id) {
  MH_ASSIGN_OR_RETURN(auto row,
                      s.query_one(fmt::format("SELECT {} FROM tenants WHERE id = ?", kColumns),
                                  {std::string(id)}, fmt::format("tenant '{}'", id)));
  return from_row(row);
}

}  // namespace

Status TenantStore::insert(const Tenant& t, std::string_view actor) {
  return db_.write([&](store::Session& s) -> Status {
    MH_ASSIGN_OR_RETURN(auto existing, s.query("SELECT id FROM tenants WHERE id = ?", {t.id}));
    if (!existing.empty()) return conflict(fmt::format("tenant '{}' already exists", t.id));
    MH_TRY(s.exec("INSERT INTO tenants (id, name, created_at, rate_limit_rps, rate_limit_burst, "
                  "storage_limit_bytes) VALUES (?, ?, ?, ?, ?, ?)",
                  {t.id, t.name, t.created_at, t.rate_limit_rps, t.rate_limit_burst,
                   t.storage_limit_bytes})
               .status());
    json::object detail = limits_json(t);
    detail["name"] = t.name;
    return store::AuditLog::append(s, actor, "tenant.create", t.id, detail);
  });
}

Result<Tenant> TenantStore::get(std::string_view id) const {
  Result<Tenant> out = not_found("");
  MH_TRY(db_.read([&](store::Session& s) -> Status {
    out = select(s, id);
    return out.status();
  }));
  return out;
}

Result<std::vector<Tenant>> TenantStore::list(std::string_view after, int64_t limit,
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

Result<Tenant> TenantStore::update(std::string_view id, std::string_view action,
                                   std::string_view actor,
                                   const std::function<void(Tenant&)>& apply) {
  Tenant t;
  MH_TRY(db_.write([&](store::Session& s) -> Status {
    MH_ASSIGN_OR_RETURN(t, select(s, id));
    apply(t);
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
  return t;
}

}  // namespace mh::tenants
