// The scheduler's core: which waiting jobs get devices now, where, and whom to preempt for them.
// Pure computation over an in-memory model of pools, tenants and jobs — no I/O, no clock of its
// own — so that it is exhaustively testable and fast at the scale of a 100,000-device cluster.
// docs/scheduling.md explains the algorithm and why.
//
// A pool is nodes of identical devices, each node in one NVLink domain. A tenant holds, per
// pool, a quota: `nominal` devices guaranteed, up to `borrowing_limit` more borrowed from idle
// capacity, and a fair-share `weight`; across pools, a license cap (max_gpus) and whether its
// GPU-hour budget is spent. A job asks for `devices` all at once (a gang).
//
// Each pass():
//   1. Jobs within their tenant's guarantee go first, by priority, then age. One that does not
//      fit may reclaim devices from borrowers (preemption), never from another guarantee.
//   2. Then borrowing jobs, one at a time, always the one whose tenant has the lowest
//      weighted share: (borrowed now + this job + decayed past borrowing) / weight.
//   3. A job is placed whole or not at all: on the best-fitting single node, else within the
//      best-fitting single NVLink domain (whole free nodes first), else across the fewest
//      domains. Nothing is placed on a draining node.
// Every job left waiting gets its position and a reason that names the numbers behind it.
#pragma once

#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

namespace mh::scheduler {

using NodeId = int32_t;
using TenantId = int32_t;
using JobId = int64_t;

struct NodeSpec {
  std::string name;
  int32_t devices = 8;  // at most 64
  int32_t domain = 0;   // NVLink domain within the pool
};

struct PoolSpec {
  std::string name;
  std::vector<NodeSpec> nodes;
};

struct Quota {
  int64_t nominal = 0;          // guaranteed devices in this pool
  int64_t borrowing_limit = 0;  // devices beyond nominal it may borrow when idle
  double weight = 1.0;          // its share of borrowed capacity, relative to others
};

struct TenantSpec {
  std::string name;
  int64_t max_devices = std::numeric_limits<int64_t>::max();  // the license's max_gpus
  // Why none of its work may run now (its licence not in force, the tenant suspended, the
  // month's GPU-hours spent); "" while it may.
  std::string held;
};

// Where a gang runs: devices (by index on their node) on each node it spans.
struct Placement {
  struct Part {
    NodeId node;
    uint64_t devices;  // bit i: device i of the node
  };
  std::vector<Part> parts;
  int64_t size() const;
};

enum class JobState { kPending, kRunning, kPreempting };

struct JobSpec {
  TenantId tenant = 0;
  int32_t pool = 0;
  int32_t devices = 1;
  int32_t priority = 0;     // higher goes first within a tenant's guarantee
  int64_t submitted = 0;    // seconds; earlier goes first among equals
  bool preemptible = true;  // false: replicas a deployment needs for its minimum
};

struct Decision {
  enum class Kind { kAdmit, kPreempt };
  Kind kind;
  JobId job;
  Placement placement;  // kAdmit: where it runs
  JobId for_job = -1;   // kPreempt: the job the devices are reclaimed for
};

struct PendingInfo {
  int64_t position = 0;  // 1-based, among the pool's waiting jobs, in the order they are tried
  std::string reason;
};

struct Options {
  // A running job is not preempted before it has run this long (no thrashing).
  int64_t min_runtime_seconds = 300;
  // Past borrowing counts in a tenant's share with this half-life.
  double usage_half_life_seconds = 3600;
  // How much a device-second of decayed past borrowing weighs against one borrowed now, per
  // device-hour: share = (borrowed + request + history_weight * decayed_device_hours) / weight.
  double history_weight = 0.1;
};

class Scheduler {
 public:
  explicit Scheduler(Options options = {});
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  int32_t add_pool(const PoolSpec& pool);
  TenantId add_tenant(const TenantSpec& tenant);
  void update_tenant(TenantId tenant, const TenantSpec& spec);
  void set_quota(TenantId tenant, int32_t pool, const Quota& quota);
  // A draining node takes no new work; its running jobs are the caller's to move (jobs_on).
  void set_draining(int32_t pool, NodeId node, bool draining);
  bool draining(int32_t pool, NodeId node) const;
  // The jobs holding devices on a node (running or stopping).
  std::vector<JobId> jobs_on(int32_t pool, NodeId node) const;

  // A new waiting job. Its id is the caller's (unique).
  void submit(JobId id, const JobSpec& job);
  // A job that is already running (after a restart: the store says where).
  void restore_running(JobId id, const JobSpec& job, const Placement& placement, int64_t since);
  // The job ended (or was cancelled): its devices are free again.
  void finish(JobId id, int64_t now);
  // A preempted job has stopped (checkpointed): its devices are free and it waits again.
  void requeue(JobId id, int64_t now);

  // One scheduling pass at time `now` (seconds). Admitted jobs are running from here on;
  // preempted ones are kPreempting until requeue(). Returns the decisions in order.
  std::vector<Decision> pass(int64_t now);

  // Why a waiting job waits, as of the last pass (nullopt if it is not waiting).
  std::optional<PendingInfo> pending_info(JobId id) const;
  std::optional<JobState> state(JobId id) const;
  std::optional<Placement> placement(JobId id) const;

  // What a tenant holds now, in a pool and across pools.
  int64_t in_use(TenantId tenant, int32_t pool) const;
  int64_t in_use(TenantId tenant) const;
  int64_t free_devices(int32_t pool) const;
  int64_t total_devices(int32_t pool) const;
  size_t waiting() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace mh::scheduler
