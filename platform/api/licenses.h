// LicenseRegistry: licenses installed on this platform. Installing verifies the file against
// the configured public keys, creates the license's tenant if it is new and makes the license
// that tenant's active one; revoking takes effect at once for every check. Each change lands in
// the audit log in the same transaction. The verified licenses are served to admission points
// through licensing::Entitlements.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "licensing/entitlements.h"
#include "licensing/keys.h"
#include "platform/api/transport.h"
#include "platform/api/trusted_clock.h"
#include "platform/store/audit_log.h"
#include "platform/store/database.h"

namespace mh::api {

struct LicenseRecord {
  licensing::License license;
  int64_t installed_at = 0;
  bool active = false;
  std::optional<int64_t> revoked_at;
  std::string revoke_reason;
  // Set when a stored license no longer verifies (its key was removed from the configuration).
  std::string invalid_reason;
};

class LicenseRegistry {
 public:
  LicenseRegistry(store::Database& db, const licensing::KeyRing& keys,
                  licensing::Entitlements& entitlements, TrustedClock& clock)
      : db_(db), keys_(keys), entitlements_(entitlements), clock_(clock) {}

  // At start: records newly trusted public keys in the audit log and loads every tenant's
  // active license into the entitlements, re-verified against today's keys.
  Status load();
  Result<LicenseRecord> install(std::string_view text, std::string_view actor);
  Result<LicenseRecord> get(std::string_view id) const;
  Result<std::vector<LicenseRecord>> list(const PageRequest& page, bool* has_more) const;
  Result<LicenseRecord> revoke(std::string_view id, std::string_view reason,
                               std::string_view actor);

 private:
  Result<LicenseRecord> record_from_row(const store::Row& row) const;
  void publish(const LicenseRecord& record);

  store::Database& db_;
  const licensing::KeyRing& keys_;
  licensing::Entitlements& entitlements_;
  TrustedClock& clock_;
};

boost::json::object license_json(const LicenseRecord& record, int64_t now);

// POST /v1/admin/licenses, GET /v1/admin/licenses[/{id}], POST /v1/admin/licenses/{id}/revoke.
void add_license_routes(Router& router, LicenseRegistry& registry, TrustedClock& clock);

}  // namespace mh::api
