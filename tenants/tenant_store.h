// TenantStore: the tenants' typed queries (table tenants), and the only place their SQL is
// written. Each change is audited in the transaction that makes it.
#pragma once

#include <functional>
#include <string_view>
#include <vector>

#include "platform/base/status.h"
#include "platform/store/database.h"
#include "tenants/tenant.h"

namespace mh::tenants {

class TenantStore {
 public:
  explicit TenantStore(store::Database& db) : db_(db) {}

  // Conflict when a tenant of that id exists.
  Status insert(const Tenant& tenant, std::string_view actor);
  Result<Tenant> get(std::string_view id) const;
  Result<std::vector<Tenant>> list(std::string_view after, int64_t limit, bool* has_more) const;
  // Reads the tenant, lets `apply` change it, writes it back and audits `action`, in one
  // transaction; the tenant as written.
  Result<Tenant> update(std::string_view id, std::string_view action, std::string_view actor,
                        const std::function<void(Tenant&)>& apply);

 private:
  store::Database& db_;
};

}  // namespace mh::tenants
