#include "licensing/lease_store.h"

#include <fmt/format.h>

namespace mh::licensing {

namespace {

constexpr std::string_view kColumns =
    "l.id, l.license_id, c.tenant_id, l.instance, l.ttl_seconds, l.created_at, l.expires_at, "
    "l.released_at";
constexpr std::string_view kFrom = "FROM leases l JOIN licenses c ON c.id = l.license_id";

store::Value optional_value(const std::optional<std::string>& v) {
  return v ? store::Value(*v) : store::Value(store::kNull);
}

Lease lease_from_row(const store::Row& r) {
  Lease lease{r.text(0),    r.text(1),    r.text(2),    r.text(3),
              r.integer(4), r.integer(5), r.integer(6), std::nullopt};
  if (!r.is_null(7)) lease.released_at = r.integer(7);
  return lease;
}

// The lease, if it exists and (for a tenant caller) is that tenant's.
Result<Lease> find_lease(store::Session& s, const std::optional<std::string>& tenant,
                         std::string_view id) {
  MH_ASSIGN_OR_RETURN(auto row,
                      s.query_one(fmt::format("SELECT {} {} WHERE l.id = ? AND "
                                              "(? IS NULL OR c.tenant_id = ?)",
                                              kColumns, kFrom),
                                  {std::string(id), optional_value(tenant), optional_value(tenant)},
                                  fmt::format("lease '{}'", id)));
  return lease_from_row(row);
}

// The license's tenant, if the license exists and (for a tenant caller) is that tenant's.
Result<std::string> license_tenant(store::Session& s, const std::optional<std::string>& tenant,
                                   std::string_view license_id) {
  MH_ASSIGN_OR_RETURN(auto row, s.query_one("SELECT tenant_id FROM licenses WHERE id = ? AND "
                                            "(? IS NULL OR tenant_id = ?)",
                                            {std::string(license_id), optional_value(tenant),
                                             optional_value(tenant)},
                                            fmt::format("license '{}'", license_id)));
  return row.text(0);
}

Status set_released(store::Session& s, const Lease& lease) {
  return s.exec("UPDATE leases SET released_at = ? WHERE id = ?", {*lease.released_at, lease.id})
      .status();
}

}  // namespace

Status LeaseStore::checkout(const std::optional<std::string>& caller, Lease& lease,
                            const SeatDecision& decide, Status* refusal) {
  return db_.write([&](store::Session& s) -> Status {
    MH_ASSIGN_OR_RETURN(lease.tenant, license_tenant(s, caller, lease.license_id));
    MH_ASSIGN_OR_RETURN(auto live, s.query_one("SELECT COUNT(*), MIN(expires_at) FROM leases "
                                               "WHERE license_id = ? AND released_at IS NULL "
                                               "AND expires_at > ?",
                                               {lease.license_id, lease.created_at}, "count"));
    *refusal = decide(lease.tenant, {live.integer(0), live.is_null(1) ? 0 : live.integer(1)});
    if (!refusal->ok()) return {};
    return s
        .exec("INSERT INTO leases (id, license_id, instance, ttl_seconds, created_at, "
              "expires_at) VALUES (?, ?, ?, ?, ?, ?)",
              {lease.id, lease.license_id, lease.instance, lease.ttl_seconds, lease.created_at,
               lease.expires_at})
        .status();
  });
}

Result<Lease> LeaseStore::heartbeat(const std::optional<std::string>& caller, std::string_view id,
                                    int64_t now, const std::function<Status(const Lease&)>& decide,
                                    Status* refusal) {
  Lease lease;
  MH_TRY(db_.write([&](store::Session& s) -> Status {
    MH_ASSIGN_OR_RETURN(lease, find_lease(s, caller, id));
    *refusal = decide(lease);
    if (!refusal->ok()) {
      if (lease.released_at || lease.expires_at <= now) return {};  // not live: left as it is
      lease.released_at = now;
      return set_released(s, lease);
    }
    lease.expires_at = now + lease.ttl_seconds;
    return s.exec("UPDATE leases SET expires_at = ? WHERE id = ?", {lease.expires_at, lease.id})
        .status();
  }));
  return lease;
}

Result<Lease> LeaseStore::release(const std::optional<std::string>& caller, std::string_view id,
                                  int64_t now) {
  Lease lease;
  MH_TRY(db_.write([&](store::Session& s) -> Status {
    MH_ASSIGN_OR_RETURN(lease, find_lease(s, caller, id));
    if (lease.released_at) return {};
    lease.released_at = now;
    return set_released(s, lease);
  }));
  return lease;
}

Result<std::vector<Lease>> LeaseStore::live(const std::optional<std::string>& caller,
                                            std::string_view license_id, int64_t now) const {
  std::vector<Lease> out;
  MH_TRY(db_.read([&](store::Session& s) -> Status {
    MH_TRY(license_tenant(s, caller, license_id).status());
    MH_ASSIGN_OR_RETURN(auto rows, s.query(fmt::format("SELECT {} {} WHERE l.license_id = ? AND "
                                                       "l.released_at IS NULL AND l.expires_at > ? "
                                                       "ORDER BY l.created_at",
                                                       kColumns, kFrom),
                                           {std::string(license_id), now}));
    for (const auto& row : rows) out.push_back(lease_from_row(row));
    return {};
  }));
  return out;
}

}  // namespace mh::licensing
