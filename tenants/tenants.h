// TenantRegistry: the companies on the platform. Staff create tenants (or installing a license
// does), suspend and resume them, and set their request rate and storage limits. Each change is
// audited (records in tenant.h, SQL in tenant_store.h). The state checked on every request
// (suspended? limits?) is cached in memory.
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "platform/store/database.h"
#include "tenants/tenant.h"
#include "tenants/tenant_store.h"

namespace mh::tenants {

Status validate_tenant_id(std::string_view id);

class TenantRegistry {
 public:
  explicit TenantRegistry(store::Database& db) : store_(db) {}

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
                        const std::function<void(Tenant&)>& apply);
  void remember(const Tenant& tenant) const;

  TenantStore store_;
  mutable std::mutex mutex_;
  mutable std::unordered_map<std::string, std::shared_ptr<const Tenant>> cache_;
};

}  // namespace mh::tenants
