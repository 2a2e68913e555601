// TenantKeys: a tenant's API keys (records in key.h, SQL in key_store.h). Staff make a tenant's
// first key; its owners make and revoke more, each with a role (roles.h). A key is 256 random
// bits after "mh_live_"; revocation is immediate because every request looks the key up.
#pragma once

#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "platform/store/database.h"
#include "tenants/key.h"
#include "tenants/key_store.h"
#include "tenants/roles.h"

namespace mh::tenants {

class TenantKeys {
 public:
  // Verified keys are remembered by hash, so a request costs no store read; revoke() forgets a
  // key at once. (This daemon is the only writer of keys, so the memory cannot go stale.)
  explicit TenantKeys(store::Database& db) : store_(db) {}

  // not_found if the tenant does not exist.
  Result<NewTenantKey> create(std::string_view tenant, std::string name, Role role,
                              std::string_view actor);
  // The live key this secret is, or unauthenticated.
  Result<TenantKey> authenticate(std::string_view secret) const;
  // The same from memory alone: the key if it was verified before and not revoked since,
  // nullopt when only the store can say.
  std::optional<TenantKey> remembered(std::string_view secret) const;
  Result<std::vector<TenantKey>> list(std::string_view tenant, std::string_view after,
                                      int64_t limit, bool* has_more) const;
  // Revokes one of the tenant's keys (another tenant's key is not found). The tenant's last
  // live owner key cannot be revoked: nobody could manage its keys afterwards.
  Result<TenantKey> revoke(std::string_view tenant, std::string_view id, std::string_view actor);

 private:
  KeyStore store_;
  // Forgets `id` and moves the generation on, so lookups that read the store before a
  // revocation committed cannot put the key back.
  void forget(const std::string& id);

  mutable std::mutex mutex_;
  mutable std::unordered_map<std::string, TenantKey> verified_;  // by the key's SHA-256
  mutable uint64_t generation_ = 0;
};

}  // namespace mh::tenants
