// SeatLeases: floating seats. An SDK instance checks out a seat of a license for a TTL and
// renews it with heartbeats; at most `seats` leases of a license are live at once, and a lease
// not renewed in time simply expires, freeing its seat without anyone calling release. (Records
// and SQL in lease_store.h.)
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "licensing/entitlements.h"
#include "licensing/lease_store.h"
#include "licensing/trusted_clock.h"
#include "platform/store/audit_log.h"
#include "platform/store/database.h"

namespace mh::licensing {

class SeatLeases {
 public:
  SeatLeases(store::Database& db, const Entitlements& entitlements, TrustedClock& clock,
             store::AuditLog& audit, int64_t default_ttl_seconds)
      : store_(db),
        entitlements_(entitlements),
        clock_(clock),
        audit_(audit),
        default_ttl_(default_ttl_seconds) {}

  // `tenant` is the caller's tenant (nullopt for platform staff): a license or lease of another
  // tenant is not found, exactly as a missing one.
  //
  // A seat of the license, if one is free and the license is in force; refusals (no seat,
  // revoked, expired) are recorded in the audit log.
  Result<Lease> checkout(const std::optional<std::string>& tenant, std::string_view license_id,
                         std::string_view instance, std::optional<int64_t> ttl_seconds,
                         std::string_view actor);
  Result<Lease> heartbeat(const std::optional<std::string>& tenant, std::string_view lease_id);
  Result<Lease> release(const std::optional<std::string>& tenant, std::string_view lease_id);
  Result<std::vector<Lease>> live(const std::optional<std::string>& tenant,
                                  std::string_view license_id);

 private:
  LeaseStore store_;
  const Entitlements& entitlements_;
  TrustedClock& clock_;
  store::AuditLog& audit_;
  const int64_t default_ttl_;
};

}  // namespace mh::licensing
