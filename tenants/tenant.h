// The record of a tenant, a company on the platform (the registry is tenants.h, its SQL
// tenant_store.h).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace mh::tenants {

struct Tenant {
  std::string id;  // "acme": 1 to 63 of a-z, 0-9, '.', '_', '-'
  std::string name;
  int64_t created_at = 0;
  std::optional<int64_t> suspended_at;
  std::string suspend_reason;
  double rate_limit_rps = 50;      // sustained requests per second
  int64_t rate_limit_burst = 100;  // requests allowed at once
  int64_t storage_limit_bytes = 10ll << 30;
};

// Limits to set; each absent one is left as it is.
struct TenantLimits {
  std::optional<double> rate_limit_rps;
  std::optional<int64_t> rate_limit_burst;
  std::optional<int64_t> storage_limit_bytes;
};

}  // namespace mh::tenants
