// DeploymentStore: the deployments' typed queries (table deployments), and the only place their
// SQL is written. A tenant "" names staff's deployments (NULL in the store), which serve every
// tenant.
#pragma once

#include <functional>
#include <string_view>
#include <vector>

#include "platform/api/deployments/deployment.h"
#include "platform/base/status.h"
#include "platform/store/database.h"
#include "tenants/usage_ledger.h"

namespace mh::api {

class DeploymentStore {
 public:
  explicit DeploymentStore(store::Database& db) : db_(db) {}

  // Every deployment, oldest first (what a starting daemon brings back).
  Result<std::vector<DeploymentRecord>> all() const;
  // The tenant's deployment (staff's when `tenant` is ""); not_found for another's.
  Result<DeploymentRecord> get(std::string_view tenant, std::string_view id) const;
  Result<std::vector<DeploymentRecord>> list(std::string_view tenant, std::string_view after,
                                             int64_t limit, bool* has_more) const;

  // The licence's say on a change, asked inside the write transaction that makes it (so that
  // parallel requests cannot pass a limit together): `serving` counts the tenant's other
  // deployments that serve (replicas > 0) as of that transaction. An error aborts it.
  using Admit = std::function<Status(const std::function<Result<int64_t>()>& serving)>;
  // A new deployment; `admit`, when set, first.
  Status insert(const DeploymentRecord& deployment, const Admit& admit);
  // Its replica count, status, error and update time as `deployment` has them; `admit`, when
  // set, first.
  Status update(const DeploymentRecord& deployment, const Admit& admit);
  Status set_status(std::string_view id, DeploymentStatus status, const std::string& error);
  Status remove(std::string_view id);

  // Usage the replicas reported, into the ledger in one transaction: recorded, or (`accrue`)
  // accrued beside it until the next record.
  Status write_usage(const std::vector<tenants::UsageRecord>& usage, bool accrue);

 private:
  store::Database& db_;
};

}  // namespace mh::api
