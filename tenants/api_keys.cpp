#include "tenants/api_keys.h"

#include <fmt/format.h>

#include "platform/base/api_key.h"
#include "platform/base/crypto.h"
#include "platform/base/time.h"

namespace mh::tenants {
namespace {

constexpr size_t kMaxName = 200;

}  // namespace

Result<NewTenantKey> TenantKeys::create(std::string_view tenant, std::string name, Role role,
                                        std::string_view actor) {
  if (name.empty() || name.size() > kMaxName) {
    return invalid_argument(fmt::format("name must be 1 to {} characters", kMaxName), "name");
  }
  ApiKeySecret key = new_api_key(kTenantKeyPrefix);
  NewTenantKey created{{"key_" + secure_random_base64url(12), std::string(tenant),
                        std::move(name), role, key.display_prefix, unix_seconds(),
                        std::string(actor), std::nullopt},
                       key.secret};
  MH_TRY(store_.insert(created.record, key.sha256));
  return created;
}

std::optional<TenantKey> TenantKeys::remembered(std::string_view secret) const {
  const std::string hash = sha256_hex(secret);
  std::lock_guard lock(mutex_);
  if (auto it = verified_.find(hash); it != verified_.end()) return it->second;
  return std::nullopt;
}

Result<TenantKey> TenantKeys::authenticate(std::string_view secret) const {
  const std::string hash = sha256_hex(secret);
  uint64_t generation = 0;
  {
    std::lock_guard lock(mutex_);
    if (auto it = verified_.find(hash); it != verified_.end()) return it->second;
    generation = generation_;
  }
  Result<TenantKey> found = store_.live_tenant_key(hash);
  if (found.ok()) {
    std::lock_guard lock(mutex_);
    if (generation_ == generation) verified_.emplace(hash, *found);
  }
  return found;
}

Result<std::vector<TenantKey>> TenantKeys::list(std::string_view tenant, std::string_view after,
                                                int64_t limit, bool* has_more) const {
  return store_.list(tenant, after, limit, has_more);
}

Result<TenantKey> TenantKeys::revoke(std::string_view tenant, std::string_view id,
                                     std::string_view actor) {
  // Forgotten before the revocation commits, and again after it: a lookup that read the store
  // in between cannot put the key back (see forget()).
  forget(std::string(id));
  Result<TenantKey> key = store_.revoke(tenant, id, unix_seconds(), actor);
  forget(std::string(id));
  return key;
}

void TenantKeys::forget(const std::string& id) {
  std::lock_guard lock(mutex_);
  std::erase_if(verified_, [&](const auto& entry) { return entry.second.id == id; });
  ++generation_;
}

}  // namespace mh::tenants
