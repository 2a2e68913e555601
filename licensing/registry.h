// LicenseRegistry: licenses installed on this platform. Installing verifies the file against
// the configured public keys, creates the license's tenant if it is new and makes the license
// that tenant's active one; revoking takes effect at once for every check. Each change lands in
// the audit log in the same transaction (SQL in license_store.h). The verified licenses are
// served to admission points through Entitlements.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "licensing/entitlements.h"
#include "licensing/keys.h"
#include "licensing/license_store.h"
#include "licensing/trusted_clock.h"
#include "platform/store/audit_log.h"
#include "platform/store/database.h"

namespace mh::licensing {

struct LicenseRecord {
  License license;
  int64_t installed_at = 0;
  bool active = false;
  std::optional<int64_t> revoked_at;
  std::string revoke_reason;
  // Set when a stored license no longer verifies (its key was removed from the configuration).
  std::string invalid_reason;
};

class LicenseRegistry {
 public:
  LicenseRegistry(store::Database& db, const KeyRing& keys,
                  Entitlements& entitlements, TrustedClock& clock)
      : store_(db), keys_(keys), entitlements_(entitlements), clock_(clock) {}

  // At start: records newly trusted public keys in the audit log and loads every tenant's
  // active license into the entitlements, re-verified against today's keys.
  Status load();
  Result<LicenseRecord> install(std::string_view text, std::string_view actor);
  Result<LicenseRecord> get(std::string_view id) const;
  // A page of licenses after the id `after` ("": from the first), at most `limit`.
  Result<std::vector<LicenseRecord>> list(const std::string& after, int64_t limit,
                                          bool* has_more) const;
  Result<LicenseRecord> revoke(std::string_view id, std::string_view reason,
                               std::string_view actor);

 private:
  // The stored licence, re-verified against today's keys.
  Result<LicenseRecord> record_from(StoredLicense stored) const;
  void publish(const LicenseRecord& record);

  LicenseStore store_;
  const KeyRing& keys_;
  Entitlements& entitlements_;
  TrustedClock& clock_;
};

}  // namespace mh::licensing
