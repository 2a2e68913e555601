#include "tenants/admin_keys.h"

#include <fmt/format.h>

#include "platform/base/api_key.h"
#include "platform/base/crypto.h"
#include "platform/base/time.h"

namespace mh::tenants {

namespace {

constexpr size_t kMaxNameLength = 200;

// A new key named `name`: its record, its secret and the hash the store keeps.
NewAdminKey make_key(std::string name, std::string* sha256) {
  ApiKeySecret key = new_api_key(kAdminKeyPrefix);
  *sha256 = key.sha256;
  return {{"akey_" + secure_random_base64url(12), std::move(name), key.display_prefix,
           unix_seconds(), std::nullopt},
          key.secret};
}

}  // namespace

Result<std::optional<NewAdminKey>> AdminKeys::bootstrap() {
  std::string sha256;
  NewAdminKey created = make_key("bootstrap", &sha256);
  MH_ASSIGN_OR_RETURN(bool inserted, store_.bootstrap(created.record, sha256, unix_seconds()));
  if (!inserted) return std::optional<NewAdminKey>();
  return std::optional<NewAdminKey>(std::move(created));
}

Result<NewAdminKey> AdminKeys::create(std::string name, std::string_view actor) {
  if (name.empty() || name.size() > kMaxNameLength) {
    return invalid_argument(fmt::format("name must be 1 to {} characters", kMaxNameLength), "name");
  }
  std::string sha256;
  NewAdminKey created = make_key(std::move(name), &sha256);
  MH_TRY(store_.insert(created.record, sha256, actor));
  return created;
}

Result<AdminKey> AdminKeys::authenticate(std::string_view secret) const {
  if (!secret.starts_with(kAdminKeyPrefix)) {
    return unauthenticated("invalid API key for this route: an admin key starts with mh_admin_");
  }
  return store_.live_admin_key(sha256_hex(secret));
}

Result<std::vector<AdminKey>> AdminKeys::list(std::string_view after, int64_t limit,
                                              bool* has_more) const {
  return store_.list_admin_keys(after, limit, has_more);
}

Result<AdminKey> AdminKeys::revoke(std::string_view id, std::string_view actor) {
  return store_.revoke_admin_key(id, unix_seconds(), actor);
}

}  // namespace mh::tenants
