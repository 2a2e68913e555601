// Admission of work that holds devices (training jobs, inference replicas): the one place the
// license's device terms are checked. DeviceHoldings is what each tenant holds now, by holder.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>

#include "licensing/entitlements.h"
#include "licensing/trusted_clock.h"
#include "platform/base/status.h"
#include "tenants/tenants.h"
#include "tenants/usage_ledger.h"

namespace mh::api {

class DeviceHoldings {
 public:
  // `holder` (a job or deployment id) of `tenant` holds `devices` now (0 releases).
  void set(const std::string& tenant, const std::string& holder, int64_t devices);
  // What the tenant holds, leaving out `except` (the holder asking for a new amount).
  int64_t held(std::string_view tenant, std::string_view except = {}) const;

 private:
  mutable std::mutex mutex_;
  std::map<std::string, std::pair<std::string, int64_t>> by_holder_;  // holder -> (tenant, n)
};

// Device-seconds the tenant used this calendar month (UTC), from the usage ledger.
Result<double> gpu_seconds_this_month(const tenants::UsageLedger& ledger, const std::string& tenant,
                                      int64_t now);

// OK when the tenant's license is in force and grants `feature`, includes `pool`, leaves room
// for `devices` more beside what the tenant holds apart from `holder` (max_gpus), and the
// GPU-hours used this calendar month (UTC) are under gpu_hours_per_month. Refusals are
// permission_denied (403: waiting and retrying will not change a licence's limit) and name the
// limit and by how much it would be passed. `holdings` may be null: work that queues (a job)
// is refused only if it could never run (more devices than max_gpus); the scheduler keeps the
// tenant under the cap over time.
Status admit_devices(const licensing::Entitlements& entitlements,
                     const tenants::UsageLedger& ledger, const DeviceHoldings* holdings,
                     const std::string& tenant, std::string_view feature, std::string_view pool,
                     std::string_view holder, int64_t devices, int64_t now);

// Whether a tenant's work may run now: its licence in force (not revoked, not past its expiry's
// grace, already valid), the tenant not suspended, and this calendar month's GPU-hours (UTC) not
// spent. The scheduler asks before it starts work; the owners of running work (jobs,
// replicas) ask as it runs, and stop it when the answer is no. The licence and the suspension
// are read from memory on every call; the month's usage is a ledger query, made at most every
// kUsageRecheck per tenant, so many jobs and replicas of a tenant cost one.
class LicenceWatch {
 public:
  static constexpr int64_t kUsageRecheck = 5;  // seconds

  LicenceWatch(const licensing::Entitlements& entitlements, const tenants::UsageLedger& ledger,
               const tenants::TenantRegistry& tenants, licensing::TrustedClock& clock)
      : entitlements_(entitlements), ledger_(ledger), tenants_(tenants), clock_(clock) {}

  // Why the tenant's work must stop or wait ("license lic_a was revoked at …"), or "" while it
  // may run. The platform's own work (tenant "") always may. A clock that cannot be trusted
  // stops no running work (the licence decisions it blocks are new ones).
  std::string held(const std::string& tenant);

 private:
  const licensing::Entitlements& entitlements_;
  const tenants::UsageLedger& ledger_;
  const tenants::TenantRegistry& tenants_;
  licensing::TrustedClock& clock_;
  struct Spent {
    int64_t checked_at = 0, limit = -1;
    std::string reason;  // "" while under the limit
  };
  std::mutex mutex_;
  std::map<std::string, Spent, std::less<>> spent_;
};

}  // namespace mh::api
