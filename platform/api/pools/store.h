// PoolStore: the pools' typed queries, and the only place their SQL is written: the quotas
// staff set for tenants (tenant_quotas) and the pools added through the API (pools).
#pragma once

#include <string>
#include <vector>

#include "platform/api/pools/pool.h"
#include "platform/base/status.h"
#include "platform/store/database.h"

namespace mh::api {

class PoolStore {
 public:
  explicit PoolStore(store::Database& db) : db_(db) {}

  struct TenantQuota {
    std::string tenant, pool;
    scheduler::Quota quota;
  };
  Result<std::vector<TenantQuota>> quotas() const;
  // Sets the tenant's quota on the pool; not_found for a tenant that does not exist.
  Status put_quota(const std::string& tenant, const std::string& pool,
                   const scheduler::Quota& quota);
  // The Slurm pools added through the API, in the order they were added (without launchers).
  Result<std::vector<PoolConfig>> added_pools() const;
  Status add_pool(const PoolConfig& pool);

 private:
  store::Database& db_;
};

}  // namespace mh::api
