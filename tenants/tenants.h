// TenantRegistry: the companies on the platform. Staff create tenants (or installing a license
// does), suspend and resume them, and set their request rate and storage limits. Each change is
// audited. The state checked on every request (suspended? limits?) is cached in memory.
#pragma once

#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "platform/store/audit_log.h"
#include "platform/store/database.h"

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

struct TenantLimits {
  std::optional<double> rate_limit_rps;
  std::optional<int64_t> rate_limit_burst;
  std::optional<int64_t> storage_limit_bytes;
};

Status validate_tenant_id(std::string_view id);

class TenantRegistry {
 public:
  explicit TenantRegistry(store::Database& db) : db_(db) {}

  Result<Tenant> create(const std::string& id, const std::string& name, const TenantLimits& limits,
                        std::string_view actor);
  Result<Tenant> get(std::string_view id) const;
  Result<std::vector<Tenant>> list(std::string_view after, int64_t limit, bool* has_more) const;
  Result<Tenant> suspend(std::string_view id, std::string_view reason, std::string_view actor);
  Result<Tenant> resume(std::string_view id, std::string_view actor);
  Result<Tenant> set_limits(std::string_view id, const TenantLimits& limits,
                            std::string_view actor);

  // The tenant's current state for per-request checks; read through to the store on a miss
  // (tenants created by a license install appear without telling the registry).
  std::shared_ptr<const Tenant> cached(std::string_view id) const;
  // From memory alone: nullptr when the tenant was not read since the daemon started.
  std::shared_ptr<const Tenant> remembered(std::string_view id) const;

 private:
  Result<Tenant> change(std::string_view id, std::string_view actor, std::string_view action,
                        const std::function<Status(store::Session&, Tenant&)>& apply);
  void remember(const Tenant& tenant) const;

  store::Database& db_;
  mutable std::mutex mutex_;
  mutable std::unordered_map<std::string, std::shared_ptr<const Tenant>> cache_;
};

}  // namespace mh::tenants
