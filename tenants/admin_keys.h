// AdminKeys: the platform-admin API keys that guard /v1/admin/* (beside the tenants' keys,
// api_keys.h). A key is 256 random bits with
// a recognisable prefix, shown once at creation and stored only as its SHA-256. The first one
// is made when the daemon first starts (bootstrap); admins can make more and revoke old ones.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "platform/store/database.h"

namespace mh::tenants {

inline constexpr std::string_view kAdminKeyPrefix = "mh_admin_";

struct AdminKey {
  std::string id;  // "akey_…"
  std::string name;
  std::string prefix;  // the key's first characters, to tell keys apart in lists
  int64_t created_at = 0;
  std::optional<int64_t> revoked_at;
};

struct NewAdminKey {
  AdminKey record;
  std::string secret;  // the key itself: shown once, never stored
};

class AdminKeys {
 public:
  explicit AdminKeys(store::Database& db) : db_(db) {}

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
  Result<NewAdminKey> insert(store::Session& session, std::string name, std::string_view actor);
  store::Database& db_;
};

}  // namespace mh::tenants
