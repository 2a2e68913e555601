// Pools: the daemon's side of the scheduler. It owns a scheduler::Scheduler (docs/scheduling.md)
// over this platform's pools, keeps tenants' quotas (the store's tenant_quotas, set by staff)
// and their license caps in it, and speaks in the daemon's ids: jobs are "ftjob-…" strings,
// tenants their names, pools their names.
//
// Today there is one node, this machine: a pool "default" of CPU devices (--cpu-devices; each
// runs one worker with the worker thread budget), or, with CUDA devices, a pool "gpu" of them.
//
//   GET  /v1/admin/pools                              the pools, their nodes and devices
//   PUT  /v1/admin/tenants/{id}/quotas/{pool}         {"nominal","borrowing_limit","weight"}
//   GET  /v1/quotas                                   the tenant's view: quota, in use, queued
#pragma once

#include <boost/json/object.hpp>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "licensing/entitlements.h"
#include "platform/api/router.h"
#include "platform/api/trusted_clock.h"
#include "platform/scheduler/scheduler.h"
#include "platform/store/database.h"
#include "tenants/usage_ledger.h"

namespace mh::api {

struct PoolConfig {
  std::string name;
  std::vector<scheduler::NodeSpec> nodes;
  bool gpus = false;  // devices are CUDA ordinals (else CPU worker slots)
};

class Pools {
 public:
  Pools(store::Database& db, const licensing::Entitlements& entitlements,
        const tenants::UsageLedger& ledger, TrustedClock& clock, std::vector<PoolConfig> pools,
        scheduler::Options options = {});

  // Reads the quotas staff have set.
  Status start();

  bool has_pool(std::string_view pool) const;
  bool gpu_pool(std::string_view pool) const;

  // Work that wants devices: waits until a pass admits it.
  void submit(const std::string& job, const std::string& tenant, const std::string& pool,
              int devices, int priority, int64_t submitted);
  // It ended, or was cancelled (waiting or running): its devices are free.
  void finish(const std::string& job);
  // It stopped to give its devices back (or failed and will run again): it waits again.
  void requeue(const std::string& job);

  struct Admitted {
    std::string job;
    std::vector<int> devices;  // device indexes on this node
  };
  struct Decisions {
    std::vector<Admitted> admitted;
    std::vector<std::string> preempted;  // to checkpoint and stop, then requeue()
  };
  // One scheduling pass: license caps and budgets refreshed, then the core's decisions.
  Decisions pass();

  // A waiting job's position and why it waits (nullopt if it is not waiting).
  std::optional<scheduler::PendingInfo> pending(const std::string& job) const;

  Status set_quota(const std::string& tenant, const std::string& pool,
                   const scheduler::Quota& quota);
  boost::json::object describe_pools() const;
  boost::json::object describe_quotas(const std::string& tenant) const;

 private:
  scheduler::TenantId tenant_id(const std::string& tenant);  // with mutex_ held
  scheduler::Quota quota_of(const std::string& tenant, size_t pool) const;

  store::Database& db_;
  const licensing::Entitlements& entitlements_;
  const tenants::UsageLedger& ledger_;
  TrustedClock& clock_;
  const std::vector<PoolConfig> pools_;

  mutable std::mutex mutex_;
  scheduler::Scheduler scheduler_;
  std::map<std::string, scheduler::TenantId> tenants_;
  std::map<std::pair<std::string, std::string>, scheduler::Quota> quotas_;  // (tenant, pool)
  std::map<std::string, scheduler::JobId> job_ids_;
  std::map<scheduler::JobId, std::string> job_names_;
  std::map<std::string, std::string> job_tenants_;
  scheduler::JobId next_id_ = 1;
};

void add_pool_routes(Router& router, Pools& pools);

}  // namespace mh::api
