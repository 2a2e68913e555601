// Pools: the daemon's side of the scheduler (records in pool.h, SQL in store.h, the wire format
// in protocol.h, the HTTP routes in routes.h). It owns a scheduler::Scheduler (docs/scheduling.md)
// over this platform's pools, keeps tenants' quotas (the store's tenant_quotas, set by staff)
// and their license caps in it, and speaks in the daemon's ids: jobs are "ftjob-…" strings,
// tenants their names, pools their names.
//
// This machine is a node: a pool "default" of CPU devices (--cpu-devices; each runs one worker
// with the worker thread budget) and, with CUDA devices, a pool "gpu" of them. Pools of Slurm
// nodes (--slurm-pool) run their workers as batch jobs on the node the scheduler chose.
//
//   GET  /v1/admin/pools                              the pools, their nodes and devices
//   POST /v1/admin/pools                              a pool of Slurm nodes
//   PUT  /v1/admin/tenants/{id}/quotas/{pool}         {"nominal","borrowing_limit","weight"}
//   GET  /v1/quotas                                   the tenant's view: quota, in use, queued
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "platform/api/context.h"
#include "platform/api/pools/pool.h"
#include "platform/api/pools/store.h"
#include "platform/executor/launcher.h"
#include "platform/scheduler/scheduler.h"

namespace mh::api {

class Pools {
 public:
  Pools(const Context& context, std::vector<PoolConfig> pools, scheduler::Options options = {});

  ~Pools();  // stops the scheduling loop
  // Stops the scheduling loop (idempotent): owners call it before they go, so that no callback
  // reaches them afterwards.
  void stop();

  // Reads the quotas staff have set, and starts the scheduling loop: a pass whenever something
  // changed (poke()) and at least once a second.
  Status start();

  bool has_pool(std::string_view pool) const;
  bool gpu_pool(std::string_view pool) const;
  // The most devices one node of the pool has (0: no such pool).
  int largest_node(std::string_view pool) const;
  // How the pool's workers start (a pool unknown here: on this machine).
  const executor::Launcher& launcher(std::string_view pool) const;
  // The --device a worker on the pool is started with: "cuda" on this host's GPUs (which the
  // daemon found, so a worker that cannot reach its device fails rather than compute on the
  // CPU), "cpu" on CPU slots, "auto" on Slurm nodes (whose devices Slurm assigns, out of sight).
  const char* worker_device(std::string_view pool) const;

  // Work that wants devices, by its owner's id ("ftjob-…", "dep-…/replica-0"): it waits until a
  // pass admits it, and then `on_admit` runs with where it was placed. If it is
  // preemptible and a pass preempts it, `on_preempt` runs: the owner stops it, then calls
  // requeue(). While it waits, `on_waiting` runs after each pass that changed why it waits
  // (the reason `pending` gives), so that its owner can tell the tenant as it waits.
  // Callbacks run on the scheduling thread, never under the pools' lock.
  struct Work {
    std::string id, tenant, pool;  // tenant "" for the platform's own work: no license cap
    int devices = 1;
    int priority = 0;
    int64_t submitted = 0;
    bool preemptible = true;
  };
  void submit(const Work& work, std::function<void(Allocation)> on_admit,
              std::function<void()> on_preempt = {},
              std::function<void(const std::string& reason)> on_waiting = {});
  // It ended, or was cancelled (waiting or running): its devices are free.
  void finish(const std::string& id);
  // It stopped to give its devices back (or failed and will run again): it waits again.
  void requeue(const std::string& id);
  // Something changed: pass soon.
  void poke();

  // A waiting job's position and why it waits (nullopt if it is not waiting).
  std::optional<scheduler::PendingInfo> pending(const std::string& job) const;

  Status set_quota(const std::string& tenant, const std::string& pool,
                   const scheduler::Quota& quota);
  // The Slurm commands' environment (SLURM_CONF) for pools added through the API.
  void set_slurm_env(std::map<std::string, std::string> env) { slurm_env_ = std::move(env); }
  // A new pool of Slurm nodes, recorded in the store (so the next daemon has it too).
  Status add_slurm_pool(const PoolConfig& pool);
  // Drains a node (a failing device, maintenance): it takes no new work, and the work on it is
  // moved — each owner is told to stop it (on_preempt) and it waits to be placed again.
  // Undraining puts the node back in service.
  Status set_draining(const std::string& pool, const std::string& node, bool draining);
  std::vector<PoolView> pools() const;
  // The tenant's quota on each pool, what it uses and has waiting there.
  std::vector<QuotaView> quotas(const std::string& tenant) const;

 private:
  scheduler::TenantId tenant_id(const std::string& tenant);  // with mutex_ held
  scheduler::Quota quota_of(const std::string& tenant, size_t pool) const;
  Status read_quotas();
  Status read_pools();                            // the pools staff added through the API
  Status validate(const PoolConfig& pool) const;  // with mutex_ held
  static void give_launcher(PoolConfig& pool);
  void loop();
  // One pass: license caps and budgets refreshed, the core's decisions, the owners told.
  void pass();

  const Context context_;
  PoolStore store_;
  std::deque<PoolConfig> pools_;  // grows (add_slurm_pool); elements never move or change
  std::map<std::string, std::string> slurm_env_;

  mutable std::mutex mutex_;
  scheduler::Scheduler scheduler_;
  std::map<std::string, scheduler::TenantId> tenants_;
  std::map<std::pair<std::string, std::string>, scheduler::Quota> quotas_;  // (tenant, pool)
  std::map<std::string, scheduler::JobId> job_ids_;
  std::map<scheduler::JobId, std::string> job_names_;
  std::map<scheduler::JobId, int32_t> job_pool_;
  std::map<std::string, std::string> job_tenants_;
  struct Callbacks {
    std::function<void(Allocation)> on_admit;
    std::function<void()> on_preempt;
    std::function<void(const std::string&)> on_waiting;
    std::string told;  // the reason it was last told it waits ("" once it runs)
  };
  std::map<std::string, Callbacks> callbacks_;
  scheduler::JobId next_id_ = 1;

  std::condition_variable wake_;
  bool poked_ = true, stopping_ = false;
  std::thread loop_;
};

}  // namespace mh::api
