// The records of API keys: a tenant's (api_keys.h) and the platform admins' (admin_keys.h),
// kept side by side in one store (key_store.h). A key is 256 random bits after a recognisable
// prefix, shown once at creation and stored only as its SHA-256.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "tenants/roles.h"

namespace mh::tenants {

inline constexpr std::string_view kTenantKeyPrefix = "mh_live_";
inline constexpr std::string_view kAdminKeyPrefix = "mh_admin_";

struct TenantKey {
  std::string id;  // "key_…"
  std::string tenant;
  std::string name;
  Role role = Role::kViewer;
  std::string prefix;  // the key's first characters, to tell keys apart in lists
  int64_t created_at = 0;
  std::string created_by;
  std::optional<int64_t> revoked_at;
};

struct NewTenantKey {
  TenantKey record;
  std::string secret;  // shown once
};

struct AdminKey {
  std::string id;  // "akey_…"
  std::string name;
  std::string prefix;
  int64_t created_at = 0;
  std::optional<int64_t> revoked_at;
};

struct NewAdminKey {
  AdminKey record;
  std::string secret;  // the key itself: shown once, never stored
};

}  // namespace mh::tenants
