#include "licensing/seat_leases.h"

#include <fmt/format.h>
#include <boost/json.hpp>

#include "platform/base/crypto.h"
#include "platform/base/time.h"

namespace mh::licensing {

namespace json = boost::json;

namespace {

constexpr int64_t kMaxTtl = 24 * 3600;
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

}  // namespace

Result<Lease> SeatLeases::checkout(const std::optional<std::string>& caller,
                                   std::string_view license_id, std::string_view instance,
                                   std::optional<int64_t> ttl_seconds, std::string_view actor) {
  if (instance.empty() || instance.size() > 200) {
    return invalid_argument("instance must be 1 to 200 characters", "instance");
  }
  const int64_t ttl = ttl_seconds.value_or(default_ttl_);
  if (ttl < 1 || ttl > kMaxTtl) {
    return invalid_argument(fmt::format("ttl_seconds must be from 1 to {}", kMaxTtl),
                            "ttl_seconds");
  }
  MH_ASSIGN_OR_RETURN(int64_t now, clock_.now());
  Lease lease;
  Status refusal;
  MH_TRY(db_.write([&](store::Session& s) -> Status {
    MH_ASSIGN_OR_RETURN(const std::string tenant, license_tenant(s, caller, license_id));
    auto entitlement = entitlements_.find(tenant);
    if (entitlement && entitlement->license.terms.id != license_id) {
      refusal = conflict(fmt::format("license {} is no longer tenant {}'s license ({} is)",
                                     license_id, tenant, entitlement->license.terms.id));
      return {};
    }
    refusal = entitlements_.check(tenant, "", now);
    if (!refusal.ok()) return {};
    const int64_t seats = entitlement->license.terms.limits.seats;
    MH_ASSIGN_OR_RETURN(auto live, s.query_one("SELECT COUNT(*), MIN(expires_at) FROM leases "
                                               "WHERE license_id = ? AND released_at IS NULL "
                                               "AND expires_at > ?",
                                               {std::string(license_id), now}, "count"));
    if (live.integer(0) >= seats) {
      refusal = Status(Code::kResourceExhausted,
                       seats == 0 ? fmt::format("license {} grants no seats", license_id)
                                  : fmt::format("all {} seats of license {} are in use; one frees "
                                                "when a lease is released or expires (the next "
                                                "at {})",
                                                seats, license_id, rfc3339(live.integer(1))));
      return {};
    }
    lease = {"lease_" + secure_random_base64url(12),
             std::string(license_id),
             tenant,
             std::string(instance),
             ttl,
             now,
             now + ttl,
             std::nullopt};
    MH_TRY(s.exec("INSERT INTO leases (id, license_id, instance, ttl_seconds, created_at, "
                  "expires_at) VALUES (?, ?, ?, ?, ?, ?)",
                  {lease.id, lease.license_id, lease.instance, ttl, now, lease.expires_at})
               .status());
    return {};
  }));
  if (!refusal.ok()) {
    MH_TRY(audit_.record(actor, "lease.refuse", license_id,
                         {{"instance", instance}, {"reason", refusal.message()}}));
    return refusal;
  }
  return lease;
}

Result<Lease> SeatLeases::heartbeat(const std::optional<std::string>& caller,
                                    std::string_view lease_id) {
  MH_ASSIGN_OR_RETURN(int64_t now, clock_.now());
  Lease lease;
  Status refusal;
  MH_TRY(db_.write([&](store::Session& s) -> Status {
    MH_ASSIGN_OR_RETURN(lease, find_lease(s, caller, lease_id));
    if (lease.released_at) {
      refusal = conflict(fmt::format("lease {} was released at {}; check out a new one", lease.id,
                                     rfc3339(*lease.released_at)));
      return {};
    }
    if (lease.expires_at <= now) {
      refusal =
          conflict(fmt::format("lease {} expired at {} and its seat may be taken; check out "
                               "a new one",
                               lease.id, rfc3339(lease.expires_at)));
      return {};
    }
    auto entitlement = entitlements_.find(lease.tenant);
    if (entitlement && entitlement->license.terms.id != lease.license_id) {
      refusal = conflict(fmt::format("license {} was superseded by {}; check out a seat on it",
                                     lease.license_id, entitlement->license.terms.id));
    } else {
      refusal = entitlements_.check(lease.tenant, "", now);
    }
    if (!refusal.ok()) {
      lease.released_at = now;
      return s.exec("UPDATE leases SET released_at = ? WHERE id = ?", {now, lease.id}).status();
    }
    lease.expires_at = now + lease.ttl_seconds;
    return s.exec("UPDATE leases SET expires_at = ? WHERE id = ?", {lease.expires_at, lease.id})
        .status();
  }));
  if (!refusal.ok()) return refusal;
  return lease;
}

Result<Lease> SeatLeases::release(const std::optional<std::string>& caller,
                                  std::string_view lease_id) {
  Lease lease;
  MH_TRY(db_.write([&](store::Session& s) -> Status {
    MH_ASSIGN_OR_RETURN(lease, find_lease(s, caller, lease_id));
    if (lease.released_at) return {};
    lease.released_at = unix_seconds();
    return s.exec("UPDATE leases SET released_at = ? WHERE id = ?", {*lease.released_at, lease.id})
        .status();
  }));
  return lease;
}

Result<std::vector<Lease>> SeatLeases::live(const std::optional<std::string>& caller,
                                            std::string_view license_id) {
  MH_ASSIGN_OR_RETURN(int64_t now, clock_.now());
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
