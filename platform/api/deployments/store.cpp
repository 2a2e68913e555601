#include "platform/api/deployments/store.h"

#include <fmt/format.h>

#include "tenants/tenant_scope.h"

namespace mh::api {

namespace {

constexpr std::string_view kColumns =
    "id, tenant_id, model, pool, replicas, devices_per_replica, status, error, created_at, "
    "updated_at";

DeploymentRecord from_row(const store::Row& r) {
  DeploymentRecord d;
  d.id = r.text(0);
  d.tenant = r.is_null(1) ? std::string() : r.text(1);  // NULL: staff's, for every tenant
  d.model = r.text(2);
  d.pool = r.text(3);
  d.replicas = r.integer(4);
  d.devices_per_replica = r.integer(5);
  // A name the store holds that is no status (written by a newer daemon): starting, which
  // the supervisor corrects at its first tick.
  d.status = parse_deployment_status(r.text(6)).value_or(DeploymentStatus::kStarting);
  d.error = r.is_null(7) ? std::string() : r.text(7);
  d.created_at = r.integer(8);
  d.updated_at = r.integer(9);
  return d;
}

// Runs `admit` (if set) in the session's transaction, its count of the tenant's other serving
// deployments read there.
Status run_admit(store::Session& s, const DeploymentRecord& d,
                 const DeploymentStore::Admit& admit) {
  if (!admit) return {};
  return admit([&]() -> Result<int64_t> {
    MH_ASSIGN_OR_RETURN(auto row,
                        s.query_one("SELECT COUNT(*) FROM deployments WHERE tenant_id = ? "
                                    "AND replicas > 0 AND id <> ?",
                                    {d.tenant, d.id}, "count"));
    return row.integer(0);
  });
}

}  // namespace

Result<std::vector<DeploymentRecord>> DeploymentStore::all() const {
  std::vector<DeploymentRecord> all;
  MH_TRY(db_.read([&](store::Session& s) -> Status {
    MH_ASSIGN_OR_RETURN(
        auto rows,
        s.query(fmt::format("SELECT {} FROM deployments ORDER BY created_at, id", kColumns)));
    for (const auto& r : rows) all.push_back(from_row(r));
    return {};
  }));
  return all;
}

Result<DeploymentRecord> DeploymentStore::get(std::string_view tenant, std::string_view id) const {
  DeploymentRecord d;
  MH_TRY(db_.read([&](store::Session& s) -> Status {
    if (tenant.empty()) {
      MH_ASSIGN_OR_RETURN(auto rows, s.query(fmt::format("SELECT {} FROM deployments WHERE id = ? "
                                                         "AND tenant_id IS NULL",
                                                         kColumns),
                                             {std::string(id)}));
      if (rows.empty()) return not_found(fmt::format("deployment '{}' not found", id));
      d = from_row(rows[0]);
      return {};
    }
    tenants::TenantScope scope(s, std::string(tenant));
    MH_ASSIGN_OR_RETURN(auto row, scope.get("deployments", kColumns, id, "deployment"));
    d = from_row(row);
    return {};
  }));
  return d;
}

Result<std::vector<DeploymentRecord>> DeploymentStore::list(std::string_view tenant,
                                                            std::string_view after, int64_t limit,
                                                            bool* has_more) const {
  std::vector<DeploymentRecord> out;
  MH_TRY(db_.read([&](store::Session& s) -> Status {
    if (tenant.empty()) {  // staff's: every one, in the order they were made
      MH_ASSIGN_OR_RETURN(
          auto rows,
          s.query(fmt::format("SELECT {} FROM deployments WHERE tenant_id IS NULL AND rowid > "
                              "coalesce((SELECT rowid FROM deployments WHERE id = ?), 0) ORDER BY "
                              "rowid LIMIT ?",
                              kColumns),
                  {std::string(after), limit + 1}));
      *has_more = static_cast<int64_t>(rows.size()) > limit;
      for (size_t i = 0; i < rows.size() && static_cast<int64_t>(i) < limit; ++i) {
        out.push_back(from_row(rows[i]));
      }
      return {};
    }
    tenants::TenantScope scope(s, std::string(tenant));
    MH_ASSIGN_OR_RETURN(auto rows, scope.page("deployments", kColumns, after, limit, has_more));
    for (const auto& r : rows) out.push_back(from_row(r));
    return {};
  }));
  return out;
}

Status DeploymentStore::insert(const DeploymentRecord& d, const Admit& admit) {
  return db_.write([&](store::Session& s) -> Status {
    MH_TRY(run_admit(s, d, admit));
    return s
        .exec(fmt::format("INSERT INTO deployments ({}) VALUES (?, ?, ?, ?, ?, ?, ?, NULL, ?, ?)",
                          kColumns),
              {d.id, store::text_or_null(d.tenant), d.model, d.pool, d.replicas,
               d.devices_per_replica, std::string(status_name(d.status)), d.created_at,
               d.updated_at})
        .status();
  });
}

Status DeploymentStore::update(const DeploymentRecord& d, const Admit& admit) {
  return db_.write([&](store::Session& s) -> Status {
    MH_TRY(run_admit(s, d, admit));
    return s
        .exec("UPDATE deployments SET replicas = ?, status = ?, error = ?, updated_at = ? "
              "WHERE id = ?",
              {d.replicas, std::string(status_name(d.status)), store::text_or_null(d.error),
               d.updated_at, d.id})
        .status();
  });
}

Status DeploymentStore::set_status(std::string_view id, DeploymentStatus status,
                                   const std::string& error) {
  return db_.write([&](store::Session& s) -> Status {
    return s
        .exec("UPDATE deployments SET status = ?, error = ? WHERE id = ?",
              {std::string(status_name(status)), store::text_or_null(error), std::string(id)})
        .status();
  });
}

Status DeploymentStore::remove(std::string_view id) {
  return db_.write([&](store::Session& s) -> Status {
    return s.exec("DELETE FROM deployments WHERE id = ?", {std::string(id)}).status();
  });
}

Status DeploymentStore::write_usage(const std::vector<tenants::UsageRecord>& usage, bool accrue) {
  if (usage.empty()) return {};
  return db_.write([&](store::Session& s) -> Status {
    for (const tenants::UsageRecord& r : usage) {
      MH_TRY(accrue ? tenants::UsageLedger::accrue(s, r) : tenants::UsageLedger::record(s, r));
    }
    return {};
  });
}

}  // namespace mh::api
