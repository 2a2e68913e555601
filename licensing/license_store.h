// LicenseStore: the installed licences' typed queries (table licenses; in meta, the trusted keys
// noted and the trusted clock's mark), and the only place their SQL is written. It keeps licence files as stored;
// verifying them against today's keys is the registry's (registry.h). Each change is audited in
// the transaction that makes it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "licensing/license.h"
#include "platform/base/status.h"
#include "platform/store/database.h"

namespace mh::licensing {

// A licence as stored: the file's text and where it stands on this platform.
struct StoredLicense {
  std::string text;
  int64_t installed_at = 0;
  bool active = false;  // the tenant's licence in force (one per tenant)
  std::optional<int64_t> revoked_at;
  std::string revoke_reason;
};

// A public key the platform trusts, to note in the audit log the first time it is trusted.
struct TrustedKey {
  std::string id;
  std::string fingerprint;
  std::optional<int64_t> retired_at;
};

class LicenseStore {
 public:
  explicit LicenseStore(store::Database& db) : db_(db) {}

  // Audits each key not trusted before (or trusted before with another fingerprint), once.
  Status note_trusted(const std::vector<TrustedKey>& keys);
  // The licences in force, one per tenant.
  Result<std::vector<StoredLicense>> active() const;
  Result<StoredLicense> get(std::string_view id) const;
  Result<std::vector<StoredLicense>> list(std::string_view after, int64_t limit,
                                          bool* has_more) const;
  // Installs the verified `license`, whose file is `text`, at `now` in one write: its tenant is
  // created if new, and the licence it supersedes stops (its live leases end now). The same
  // file installed before comes back as stored, nothing changed; conflict for another file of
  // that id, permission_denied for a revoked one. Returns nullopt when newly installed.
  Result<std::optional<StoredLicense>> install(const License& license, std::string_view text,
                                               int64_t now, std::string_view actor);
  // Revokes at `now`, ending its leases; one revoked before comes back unchanged.
  Result<StoredLicense> revoke(std::string_view id, std::string_view reason, int64_t now,
                               std::string_view actor);

  // The latest time the trusted clock has seen (trusted_clock.h), 0 before the first; raising
  // it never lowers it.
  Result<int64_t> clock_mark() const;
  Status raise_clock_mark(int64_t seen);

 private:
  store::Database& db_;
};

}  // namespace mh::licensing
