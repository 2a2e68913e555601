#include "licensing/seat_leases.h"

#include <fmt/format.h>

#include "platform/base/crypto.h"
#include "platform/base/time.h"

namespace mh::licensing {

namespace {

constexpr int64_t kMaxTtl = 24 * 3600;

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
  Lease lease{"lease_" + secure_random_base64url(12),
              std::string(license_id),
              "",
              std::string(instance),
              ttl,
              now,
              now + ttl,
              std::nullopt};
  Status refusal;
  MH_TRY(store_.checkout(
      caller, lease,
      [&](const std::string& tenant, const LiveSeats& live) -> Status {
        auto entitlement = entitlements_.find(tenant);
        if (entitlement && entitlement->license.terms.id != license_id) {
          return conflict(fmt::format("license {} is no longer tenant {}'s license ({} is)",
                                      license_id, tenant, entitlement->license.terms.id));
        }
        MH_TRY(entitlements_.check(tenant, "", now));
        const int64_t seats = entitlement->license.terms.limits.seats;
        if (live.count < seats) return {};
        return Status(Code::kResourceExhausted,
                      seats == 0
                          ? fmt::format("license {} grants no seats", license_id)
                          : fmt::format("all {} seats of license {} are in use; one frees when a "
                                        "lease is released or expires (the next at {})",
                                        seats, license_id, rfc3339(live.next_expiry)));
      },
      &refusal));
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
  Status refusal;
  MH_ASSIGN_OR_RETURN(
      Lease lease,
      store_.heartbeat(
          caller, lease_id, now,
          [&](const Lease& lease) -> Status {
            if (lease.released_at) {
              return conflict(fmt::format("lease {} was released at {}; check out a new one",
                                          lease.id, rfc3339(*lease.released_at)));
            }
            if (lease.expires_at <= now) {
              return conflict(fmt::format("lease {} expired at {} and its seat may be taken; "
                                          "check out a new one",
                                          lease.id, rfc3339(lease.expires_at)));
            }
            auto entitlement = entitlements_.find(lease.tenant);
            if (entitlement && entitlement->license.terms.id != lease.license_id) {
              return conflict(
                  fmt::format("license {} was superseded by {}; check out a seat on it",
                              lease.license_id, entitlement->license.terms.id));
            }
            return entitlements_.check(lease.tenant, "", now);
          },
          &refusal));
  if (!refusal.ok()) return refusal;
  return lease;
}

Result<Lease> SeatLeases::release(const std::optional<std::string>& caller,
                                  std::string_view lease_id) {
  return store_.release(caller, lease_id, unix_seconds());
}

Result<std::vector<Lease>> SeatLeases::live(const std::optional<std::string>& caller,
                                            std::string_view license_id) {
  MH_ASSIGN_OR_RETURN(int64_t now, clock_.now());
  return store_.live(caller, license_id, now);
}

}  // namespace mh::licensing
