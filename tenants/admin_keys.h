// AdminKeys: the platform-admin API keys that guard /v1/admin/* (beside the tenants' keys,
// api_keys.h; records in key.h, SQL in key_store.h). The first one is made when the daemon
// first starts (bootstrap); admins can make more and revoke old ones.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "platform/store/database.h"
#include "tenants/key.h"
#include "tenants/key_store.h"

namespace mh::tenants {

class AdminKeys {
 public:
  explicit AdminKeys(store::Database& db) : store_(db) {}

  // Creates the first key when the platform has never had one; nullopt after that.
  Result<std::optional<NewAdminKey>> bootstrap();
  Result<NewAdminKey> create(std::string name, std::string_view actor);
  // The live key this secret belongs to, or unauthenticated.
  Result<AdminKey> authenticate(std::string_view secret) const;
  // Keys by creation order, after the id `after` ("": from the first), at most `limit`.
  Result<std::vector<AdminKey>> list(std::string_view after, int64_t limit,
                                     bool* has_more) const;
  // Revokes a key at once. The last live key cannot be revoked (it would lock staff out).
  Result<AdminKey> revoke(std::string_view id, std::string_view actor);

 private:
  KeyStore store_;
};

}  // namespace mh::tenants
