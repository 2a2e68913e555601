// KeyStore: the typed queries of API keys, tenants' (table api_keys) and platform admins'
// (admin_keys), and the only place their SQL is written. A key is found by its SHA-256; each
// change is audited in the transaction that makes it.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "platform/base/status.h"
#include "platform/store/database.h"
#include "tenants/key.h"

namespace mh::tenants {

class KeyStore {
 public:
  explicit KeyStore(store::Database& db) : db_(db) {}

  // Tenants' keys. insert: not_found if the tenant does not exist.
  Status insert(const TenantKey& key, const std::string& sha256);
  // The live key with this hash; unauthenticated when there is none.
  Result<TenantKey> live_tenant_key(const std::string& sha256) const;
  Result<std::vector<TenantKey>> list(std::string_view tenant, std::string_view after,
                                      int64_t limit, bool* has_more) const;
  // Revokes one of the tenant's keys at `now` (another tenant's key is not found) and returns
  // it; one revoked before comes back unchanged. Conflict for the tenant's last live owner key.
  Result<TenantKey> revoke(std::string_view tenant, std::string_view id, int64_t now,
                           std::string_view actor);

  // Platform admins' keys.
  Status insert(const AdminKey& key, const std::string& sha256, std::string_view actor);
  // Inserts `key` as the platform's first, made by the system, unless the platform has had
  // one before: false then, and nothing is written.
  Result<bool> bootstrap(const AdminKey& key, const std::string& sha256, int64_t now);
  Result<AdminKey> live_admin_key(const std::string& sha256) const;
  Result<std::vector<AdminKey>> list_admin_keys(std::string_view after, int64_t limit,
                                                bool* has_more) const;
  // Revokes at `now`; conflict for the last live admin key (staff would be locked out).
  Result<AdminKey> revoke_admin_key(std::string_view id, int64_t now, std::string_view actor);

 private:
  store::Database& db_;
};

}  // namespace mh::tenants
