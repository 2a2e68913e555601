#include "platform/scheduler/scheduler.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <map>
#include <queue>
#include <set>
#include <sstream>
#include <tuple>

namespace mh::scheduler {

int64_t Placement::size() const {
  int64_t n = 0;
  for (const auto& p : parts) n += std::popcount(p.devices);
  return n;
}

namespace {

// Nodes kept in buckets by their free device count, each with its position in its bucket, so
// that a node moves between buckets in O(1) and "the fullest node with at least n free" is a
// scan over at most 65 buckets. Positions are kept by slot: a node's id for the pool's buckets,
// its index within its domain for the domain's (so each domain's table is its own size).
class Buckets {
 public:
  void init(size_t slots, int32_t max_free) {
    buckets_.assign(static_cast<size_t>(max_free) + 1, {});
    where_.assign(slots, {-1, 0});
  }
  void put(NodeId node, size_t slot, int32_t free) {
    auto& b = buckets_[static_cast<size_t>(free)];
    where_[slot] = {free, b.size()};
    b.push_back({node, slot});
  }
  void remove(size_t slot) {
    auto [free, at] = where_[slot];
    if (free < 0) return;
    auto& b = buckets_[static_cast<size_t>(free)];
    const auto last = b.back();
    b[at] = last;
    where_[last.second].second = at;
    b.pop_back();
    where_[slot] = {-1, 0};
  }
  // A node with the fewest free devices that is still at least `n` (best fit), or -1.
  NodeId best_fit(int32_t n) const {
    for (size_t f = static_cast<size_t>(std::max(n, 1)); f < buckets_.size(); ++f) {
      if (!buckets_[f].empty()) return buckets_[f].back().first;
    }
    return -1;
  }
  // A node with the most free devices, or -1.
  NodeId fullest_free() const {
    for (size_t f = buckets_.size(); f-- > 1;) {
      if (!buckets_[f].empty()) return buckets_[f].back().first;
    }
    return -1;
  }

 private:
  std::vector<std::vector<std::pair<NodeId, size_t>>> buckets_;  // (node, slot)
  std::vector<std::pair<int32_t, size_t>> where_;  // by slot: (bucket, index); bucket -1: absent
};

struct Node {
  int32_t devices = 0;
  int32_t domain = 0;
  int32_t local = 0;  // its index within its domain
  uint64_t free = 0;  // bit i set: device i is free
  bool draining = false;
  int32_t free_count() const { return draining ? 0 : std::popcount(free); }
};

struct Domain {
  int64_t free = 0;
  Buckets nodes;
};

struct Pool {
  std::string name;
  std::vector<Node> nodes;
  std::vector<Domain> domains;
  Buckets nodes_by_free;
  std::set<std::pair<int64_t, int32_t>> domains_by_free;  // (free, domain)
  int64_t total = 0, free = 0;
  int32_t max_node = 0;

  // A domain's free count changes together with its key in domains_by_free.
  void add_domain_free(int32_t domain, int64_t delta) {
    Domain& d = domains[static_cast<size_t>(domain)];
    domains_by_free.erase({d.free, domain});
    d.free += delta;
    domains_by_free.insert({d.free, domain});
  }
  void unlink(NodeId id) {
    Node& n = nodes[static_cast<size_t>(id)];
    nodes_by_free.remove(static_cast<size_t>(id));
    domains[static_cast<size_t>(n.domain)].nodes.remove(static_cast<size_t>(n.local));
    add_domain_free(n.domain, -n.free_count());
    free -= n.free_count();
  }
  void link(NodeId id) {
    Node& n = nodes[static_cast<size_t>(id)];
    const int32_t f = n.free_count();
    nodes_by_free.put(id, static_cast<size_t>(id), f);
    domains[static_cast<size_t>(n.domain)].nodes.put(id, static_cast<size_t>(n.local), f);
    add_domain_free(n.domain, f);
    free += f;
  }
  // Takes `count` free devices of a node (its lowest-numbered ones).
  uint64_t take(NodeId id, int32_t count) {
    unlink(id);
    Node& n = nodes[static_cast<size_t>(id)];
    uint64_t got = 0;
    for (int32_t i = 0; i < count; ++i) {
      const uint64_t bit = n.free & (~n.free + 1);  // the lowest free device
      got |= bit;
      n.free &= ~bit;
    }
    link(id);
    return got;
  }
  void give_back(const Placement& p) {
    for (const auto& part : p.parts) {
      unlink(part.node);
      nodes[static_cast<size_t>(part.node)].free |= part.devices;
      link(part.node);
    }
  }
  void take_exact(const Placement& p) {
    for (const auto& part : p.parts) {
      unlink(part.node);
      nodes[static_cast<size_t>(part.node)].free &= ~part.devices;
      link(part.node);
    }
  }

  // `n` devices from one NVLink domain: whole free nodes first, then the best-fitting node for
  // what is left.
  void take_in_domain(int32_t domain, int64_t n, Placement* out) {
    Domain& d = domains[static_cast<size_t>(domain)];
    while (n > 0) {
      NodeId id = d.nodes.best_fit(static_cast<int32_t>(std::min<int64_t>(n, max_node)));
      if (id < 0 || nodes[static_cast<size_t>(id)].free_count() < std::min<int64_t>(n, max_node)) {
        id = d.nodes.fullest_free();
      }
      const int32_t from_node =
          static_cast<int32_t>(std::min<int64_t>(n, nodes[static_cast<size_t>(id)].free_count()));
      out->parts.push_back({id, take(id, from_node)});
      n -= from_node;
    }
  }

  // Places a gang of `n` devices, or returns false and changes nothing.
  bool place(int64_t n, Placement* out) {
    out->parts.clear();
    if (n <= 0 || n > free) return false;
    // One node, the fullest that fits.
    if (n <= max_node) {
      const NodeId id = nodes_by_free.best_fit(static_cast<int32_t>(n));
      if (id >= 0) {
        out->parts.push_back({id, take(id, static_cast<int32_t>(n))});
        return true;
      }
    }
    // One NVLink domain, the fullest that fits.
    auto it = domains_by_free.lower_bound({n, -1});
    if (it != domains_by_free.end()) {
      take_in_domain(it->second, n, out);
      return true;
    }
    // Across domains: the emptiest domains whole, then the best fit for the rest.
    int64_t left = n;
    while (left > 0) {
      auto fit = domains_by_free.lower_bound({left, -1});
      if (fit != domains_by_free.end()) {
        take_in_domain(fit->second, left, out);
        break;
      }
      auto largest = std::prev(domains_by_free.end());
      const int64_t take_here = largest->first;
      take_in_domain(largest->second, take_here, out);
      left -= take_here;
    }
    return true;
  }
  // The largest gang that could be placed now (for explanations).
  int64_t largest_domain_free() const {
    return domains_by_free.empty() ? 0 : std::prev(domains_by_free.end())->first;
  }
};

struct TenantPool {
  Quota quota;
  int64_t in_use = 0;
  double history = 0;  // decayed borrowed device-seconds
  int64_t history_at = 0;
  // Waiting jobs: priority high first, then oldest, then id.
  std::set<std::tuple<int32_t, int64_t, JobId>> queue;
  std::vector<JobId> running;  // its jobs holding devices in the pool (running or stopping)
};

struct Tenant {
  TenantSpec spec;
  int64_t in_use = 0;
  std::vector<TenantPool> pools;
};

struct Job {
  JobSpec spec;
  JobState state = JobState::kPending;
  Placement placement;
  int64_t started = 0;
  PendingInfo info;
  JobId reclaiming_for = -1;    // kPreempting: the job its devices go to
  int32_t victims_pending = 0;  // waiting: preempted jobs still to stop for it
  int64_t reserved = 0;         // waiting: devices held back for it while victims stop
};

std::tuple<int32_t, int64_t, JobId> queue_key(JobId id, const JobSpec& s) {
  return {-s.priority, s.submitted, id};
}

}  // namespace

struct Scheduler::Impl {
  Options options;
  std::vector<Pool> pools;
  std::vector<Tenant> tenants;
  std::unordered_map<JobId, Job> jobs;
  std::vector<int64_t> reserved;  // per pool: devices held back for reclaiming jobs
  size_t waiting = 0;

  TenantPool& tp(TenantId t, int32_t pool) {
    auto& ps = tenants[static_cast<size_t>(t)].pools;
    if (ps.size() <= static_cast<size_t>(pool)) ps.resize(static_cast<size_t>(pool) + 1);
    return ps[static_cast<size_t>(pool)];
  }

  void decay(TenantPool& p, int64_t now) {
    if (now <= p.history_at) return;
    const double dt = static_cast<double>(now - p.history_at);
    const double borrowed = static_cast<double>(std::max<int64_t>(0, p.in_use - p.quota.nominal));
    p.history = p.history * std::exp2(-dt / options.usage_half_life_seconds) + borrowed * dt;
    p.history_at = now;
  }

  void hold(JobId id, Job& j, int64_t now) {
    TenantPool& p = tp(j.spec.tenant, j.spec.pool);
    decay(p, now);
    p.running.push_back(id);
    p.in_use += j.spec.devices;
    tenants[static_cast<size_t>(j.spec.tenant)].in_use += j.spec.devices;
  }
  void release(JobId id, Job& j, int64_t now) {
    TenantPool& p = tp(j.spec.tenant, j.spec.pool);
    decay(p, now);
    auto at = std::find(p.running.begin(), p.running.end(), id);
    if (at != p.running.end()) {
      *at = p.running.back();
      p.running.pop_back();
    }
    p.in_use -= j.spec.devices;
    tenants[static_cast<size_t>(j.spec.tenant)].in_use -= j.spec.devices;
    pools[static_cast<size_t>(j.spec.pool)].give_back(j.placement);
    j.placement.parts.clear();
  }
  void enqueue(JobId id, Job& j) {
    j.state = JobState::kPending;
    tp(j.spec.tenant, j.spec.pool).queue.insert(queue_key(id, j.spec));
    ++waiting;
  }
  void dequeue(JobId id, Job& j) {
    tp(j.spec.tenant, j.spec.pool).queue.erase(queue_key(id, j.spec));
    --waiting;
  }
  void drop_reservation(Job& j) {
    reserved[static_cast<size_t>(j.spec.pool)] -= j.reserved;
    j.reserved = 0;
    j.victims_pending = 0;
  }

  double share(TenantId t, const TenantPool& p, int64_t request) const {
    const double borrowed =
        static_cast<double>(std::max<int64_t>(0, p.in_use + request - p.quota.nominal));
    const double weight = p.quota.weight > 0 ? p.quota.weight : 1e-9;
    (void)t;
    return (borrowed + options.history_weight * p.history / 3600.0) / weight;
  }

  // Why the tenant's limits keep `j` waiting, or "" if they do not.
  std::string limit_reason(const Job& j, bool* borrowing) const {
    const Tenant& t = tenants[static_cast<size_t>(j.spec.tenant)];
    const auto& ps = t.pools;
    const TenantPool empty;
    const TenantPool& p =
        static_cast<size_t>(j.spec.pool) < ps.size() ? ps[static_cast<size_t>(j.spec.pool)] : empty;
    std::ostringstream why;
    if (!t.spec.held.empty()) return "tenant " + t.spec.name + ": " + t.spec.held;
    if (t.in_use + j.spec.devices > t.spec.max_devices) {
      why << "tenant " << t.spec.name << ": license max_gpus " << t.spec.max_devices << ", in use "
          << t.in_use << ", this job needs " << j.spec.devices;
      return why.str();
    }
    const int64_t after = p.in_use + j.spec.devices;
    *borrowing = after > p.quota.nominal;
    if (after > p.quota.nominal + p.quota.borrowing_limit) {
      why << "tenant " << t.spec.name << ": nominal " << p.quota.nominal << ", in use " << p.in_use
          << ", borrowing limit " << p.quota.borrowing_limit << "; this job needs "
          << j.spec.devices;
      return why.str();
    }
    return "";
  }

  // Running jobs of the pool that may give their devices to `for_job`, in the order they
  // are taken: borrowed (their tenant over its nominal), past their minimum runtime, lowest
  // priority first, then youngest.
  std::vector<JobId> victims_for(const Job& for_job, int64_t now) {
    // (priority, -started, -submitted, -id): the lowest priority, then the youngest.
    std::vector<std::pair<std::tuple<int32_t, int64_t, int64_t, JobId>, JobId>> candidates;
    for (size_t t = 0; t < tenants.size(); ++t) {
      if (static_cast<TenantId>(t) == for_job.spec.tenant) continue;
      const TenantPool& p = tp(static_cast<TenantId>(t), for_job.spec.pool);
      if (p.in_use <= p.quota.nominal) continue;  // only borrowers give devices back
      for (JobId id : p.running) {
        const Job& j = jobs.at(id);
        if (j.state != JobState::kRunning || !j.spec.preemptible) continue;
        if (now - j.started < options.min_runtime_seconds) continue;
        candidates.push_back({{j.spec.priority, -j.started, -j.spec.submitted, -id}, id});
      }
    }
    std::sort(candidates.begin(), candidates.end());
    std::vector<JobId> out;
    out.reserve(candidates.size());
    for (auto& c : candidates) out.push_back(c.second);
    return out;
  }

  // Picks victims until `j` would fit; returns them (empty if it cannot be made to fit).
  std::vector<JobId> reclaim(Job& j, int64_t now) {
    Pool& pool = pools[static_cast<size_t>(j.spec.pool)];
    std::vector<JobId> chosen;
    std::map<TenantId, int64_t> taken;  // devices taken from each tenant so far
    bool fits = false;
    for (JobId v : victims_for(j, now)) {
      Job& victim = jobs.at(v);
      const TenantPool& p = tp(victim.spec.tenant, victim.spec.pool);
      // Only while its tenant is still borrowing: a guarantee is never taken.
      if (p.in_use - taken[victim.spec.tenant] <= p.quota.nominal) continue;
      taken[victim.spec.tenant] += victim.spec.devices;
      chosen.push_back(v);
      pool.give_back(victim.placement);
      Placement trial;
      if (pool.free - reserved[static_cast<size_t>(j.spec.pool)] >= j.spec.devices &&
          pool.place(j.spec.devices, &trial)) {
        pool.give_back(trial);
        fits = true;
        break;
      }
    }
    for (JobId v : chosen) pool.take_exact(jobs.at(v).placement);  // they run until they stop
    if (!fits) chosen.clear();
    return chosen;
  }

  void admit(JobId id, Job& j, Placement placement, int64_t now, std::vector<Decision>* out) {
    dequeue(id, j);
    drop_reservation(j);
    j.placement = std::move(placement);
    j.state = JobState::kRunning;
    j.started = now;
    j.info = {};
    hold(id, j, now);
    out->push_back({Decision::Kind::kAdmit, id, j.placement, -1});
  }

  std::vector<Decision> pass(int64_t now);
};

std::vector<Decision> Scheduler::Impl::pass(int64_t now) {
  std::vector<Decision> out;
  for (auto& t : tenants) {
    for (auto& p : t.pools) decay(p, now);
  }
  for (size_t pool_index = 0; pool_index < pools.size(); ++pool_index) {
    const auto pool_id = static_cast<int32_t>(pool_index);
    Pool& pool = pools[pool_index];
    int64_t rank = 0;
    std::vector<TenantId> blocked;  // tenants whose head waits this pass
    auto head = [&](TenantId t) -> JobId {
      auto& q = tp(t, pool_id).queue;
      return q.empty() ? -1 : std::get<2>(*q.begin());
    };
    auto wait = [&](JobId id, std::string reason) {
      Job& j = jobs.at(id);
      j.info = {++rank, std::move(reason)};
    };

    // 1. Within guarantees, by priority then age across tenants.
    using Key = std::tuple<int32_t, int64_t, JobId, TenantId>;
    std::priority_queue<Key, std::vector<Key>, std::greater<>> guaranteed;
    std::vector<TenantId> borrowers;
    auto classify = [&](TenantId t) {
      const JobId id = head(t);
      if (id < 0) return;
      Job& j = jobs.at(id);
      bool borrowing = false;
      std::string limit = limit_reason(j, &borrowing);
      if (!limit.empty()) {
        wait(id, std::move(limit));
        blocked.push_back(t);
      } else if (borrowing) {
        borrowers.push_back(t);
      } else {
        guaranteed.push({-j.spec.priority, j.spec.submitted, id, t});
      }
    };
    for (size_t t = 0; t < tenants.size(); ++t) classify(static_cast<TenantId>(t));
    while (!guaranteed.empty()) {
      const auto [neg_priority, submitted, id, t] = guaranteed.top();
      guaranteed.pop();
      Job& j = jobs.at(id);
      Placement placement;
      // Devices reclaimed for it are its own: the reservation is released as it is placed.
      reserved[pool_index] -= j.reserved;
      const bool room = pool.free - reserved[pool_index] >= j.spec.devices;
      reserved[pool_index] += j.reserved;
      if (room && pool.place(j.spec.devices, &placement)) {
        admit(id, j, std::move(placement), now, &out);
        classify(t);
        continue;
      }
      blocked.push_back(t);
      if (j.victims_pending > 0) {
        wait(id, "reclaiming " + std::to_string(j.spec.devices) + " devices from borrowers: " +
                     std::to_string(j.victims_pending) + " preempted jobs still checkpointing");
        continue;
      }
      std::vector<JobId> victims = reclaim(j, now);
      if (victims.empty()) {
        std::ostringstream why;
        why << "pool " << pool.name << " full: " << pool.free << " of " << pool.total
            << " devices free";
        if (reserved[pool_index] > 0) why << " (" << reserved[pool_index] << " held for others)";
        why << ", largest NVLink domain free " << pool.largest_domain_free()
            << "; nothing borrowed to reclaim";
        wait(id, why.str());
        continue;
      }
      for (JobId v : victims) {
        Job& victim = jobs.at(v);
        victim.state = JobState::kPreempting;
        victim.reclaiming_for = id;
        out.push_back({Decision::Kind::kPreempt, v, {}, id});
      }
      drop_reservation(j);
      j.victims_pending = static_cast<int32_t>(victims.size());
      j.reserved = j.spec.devices;
      reserved[pool_index] += j.reserved;
      wait(id, "reclaiming " + std::to_string(j.spec.devices) + " devices from borrowers: " +
                   std::to_string(victims.size()) + " jobs told to checkpoint");
    }

    // 2. Borrowing, the tenant with the lowest weighted share first.
    using Share = std::pair<double, TenantId>;
    std::priority_queue<Share, std::vector<Share>, std::greater<>> by_share;
    for (TenantId t : borrowers) {
      const JobId id = head(t);
      by_share.push({share(t, tp(t, pool_id), jobs.at(id).spec.devices), t});
    }
    while (!by_share.empty()) {
      const TenantId t = by_share.top().second;
      by_share.pop();
      const JobId id = head(t);
      if (id < 0) continue;
      Job& j = jobs.at(id);
      bool borrowing = false;
      std::string limit = limit_reason(j, &borrowing);
      if (!limit.empty()) {
        wait(id, std::move(limit));
        continue;
      }
      Placement placement;
      if (pool.free - reserved[pool_index] >= j.spec.devices &&
          pool.place(j.spec.devices, &placement)) {
        admit(id, j, std::move(placement), now, &out);
        const JobId next = head(t);
        if (next >= 0) by_share.push({share(t, tp(t, pool_id), jobs.at(next).spec.devices), t});
        continue;
      }
      std::ostringstream why;
      why << "pool " << pool.name << " has no room to lend: " << pool.free << " of " << pool.total
          << " devices free";
      if (reserved[pool_index] > 0) {
        why << ", " << reserved[pool_index] << " held for guaranteed jobs";
      }
      why << ", largest NVLink domain free " << pool.largest_domain_free() << "; this job needs "
          << j.spec.devices;
      wait(id, why.str());
    }
  }
  return out;
}

Scheduler::Scheduler(Options options) : impl_(std::make_unique<Impl>()) {
  impl_->options = options;
}
Scheduler::~Scheduler() = default;

int32_t Scheduler::add_pool(const PoolSpec& spec) {
  Pool pool;
  pool.name = spec.name;
  int32_t domains = 0;
  for (const auto& n : spec.nodes) {
    Node node;
    node.devices = std::clamp(n.devices, 0, 64);
    node.domain = std::max(0, n.domain);
    node.free = node.devices == 64 ? ~uint64_t{0} : ((uint64_t{1} << node.devices) - 1);
    pool.nodes.push_back(node);
    pool.max_node = std::max(pool.max_node, node.devices);
    pool.total += node.devices;
    domains = std::max(domains, node.domain + 1);
  }
  pool.domains.resize(static_cast<size_t>(domains));
  std::vector<int32_t> per_domain(static_cast<size_t>(domains), 0);
  for (auto& node : pool.nodes) node.local = per_domain[static_cast<size_t>(node.domain)]++;
  pool.nodes_by_free.init(pool.nodes.size(), pool.max_node);
  for (size_t d = 0; d < pool.domains.size(); ++d) {
    pool.domains[d].nodes.init(static_cast<size_t>(per_domain[d]), pool.max_node);
  }
  for (size_t i = 0; i < pool.nodes.size(); ++i) pool.link(static_cast<NodeId>(i));
  impl_->pools.push_back(std::move(pool));
  impl_->reserved.push_back(0);
  return static_cast<int32_t>(impl_->pools.size() - 1);
}

TenantId Scheduler::add_tenant(const TenantSpec& spec) {
  impl_->tenants.push_back({spec, 0, {}});
  return static_cast<TenantId>(impl_->tenants.size() - 1);
}

void Scheduler::update_tenant(TenantId tenant, const TenantSpec& spec) {
  impl_->tenants.at(static_cast<size_t>(tenant)).spec = spec;
}

void Scheduler::set_quota(TenantId tenant, int32_t pool, const Quota& quota) {
  impl_->tp(tenant, pool).quota = quota;
}

void Scheduler::set_draining(int32_t pool, NodeId node, bool draining) {
  Pool& p = impl_->pools.at(static_cast<size_t>(pool));
  p.unlink(node);
  p.nodes.at(static_cast<size_t>(node)).draining = draining;
  p.link(node);
}

bool Scheduler::draining(int32_t pool, NodeId node) const {
  return impl_->pools.at(static_cast<size_t>(pool)).nodes.at(static_cast<size_t>(node)).draining;
}

std::vector<JobId> Scheduler::jobs_on(int32_t pool, NodeId node) const {
  std::vector<JobId> out;
  for (const auto& [id, j] : impl_->jobs) {
    if (j.spec.pool != pool || j.state == JobState::kPending) continue;
    for (const auto& part : j.placement.parts) {
      if (part.node == node) {
        out.push_back(id);
        break;
      }
    }
  }
  return out;
}

void Scheduler::submit(JobId id, const JobSpec& spec) {
  Job& j = impl_->jobs[id];
  j.spec = spec;
  impl_->enqueue(id, j);
}

void Scheduler::restore_running(JobId id, const JobSpec& spec, const Placement& placement,
                                int64_t since) {
  Job& j = impl_->jobs[id];
  j.spec = spec;
  j.placement = placement;
  j.state = JobState::kRunning;
  j.started = since;
  impl_->pools.at(static_cast<size_t>(spec.pool)).take_exact(placement);
  impl_->hold(id, j, since);
}

void Scheduler::finish(JobId id, int64_t now) {
  auto it = impl_->jobs.find(id);
  if (it == impl_->jobs.end()) return;
  Job& j = it->second;
  if (j.state == JobState::kPending) {
    impl_->dequeue(id, j);
    impl_->drop_reservation(j);
  } else {
    impl_->release(id, j, now);
    if (j.state == JobState::kPreempting) {
      auto f = impl_->jobs.find(j.reclaiming_for);
      if (f != impl_->jobs.end() && f->second.victims_pending > 0) --f->second.victims_pending;
    }
  }
  impl_->jobs.erase(it);
}

void Scheduler::requeue(JobId id, int64_t now) {
  Job& j = impl_->jobs.at(id);
  if (j.state == JobState::kPending) return;
  if (j.state == JobState::kPreempting) {
    auto f = impl_->jobs.find(j.reclaiming_for);
    if (f != impl_->jobs.end() && f->second.victims_pending > 0) --f->second.victims_pending;
    j.reclaiming_for = -1;
  }
  impl_->release(id, j, now);
  impl_->enqueue(id, j);
}

std::vector<Decision> Scheduler::pass(int64_t now) { return impl_->pass(now); }

std::optional<PendingInfo> Scheduler::pending_info(JobId id) const {
  auto it = impl_->jobs.find(id);
  if (it == impl_->jobs.end() || it->second.state != JobState::kPending) return std::nullopt;
  const Job& j = it->second;
  const auto& q = impl_->tenants[static_cast<size_t>(j.spec.tenant)]
                      .pools[static_cast<size_t>(j.spec.pool)]
                      .queue;
  const JobId first = std::get<2>(*q.begin());
  const PendingInfo& head = impl_->jobs.at(first).info;
  if (head.reason.empty()) return PendingInfo{0, "waiting for the next scheduling pass"};
  if (first == id) return head;
  // Not its tenant's first: it waits behind those.
  const auto ahead = std::distance(q.begin(), q.find(queue_key(id, j.spec)));
  return PendingInfo{head.position + ahead,
                     "behind " + std::to_string(ahead) +
                         " earlier jobs of the same tenant; the first waits: " + head.reason};
}

std::optional<JobState> Scheduler::state(JobId id) const {
  auto it = impl_->jobs.find(id);
  if (it == impl_->jobs.end()) return std::nullopt;
  return it->second.state;
}

std::optional<Placement> Scheduler::placement(JobId id) const {
  auto it = impl_->jobs.find(id);
  if (it == impl_->jobs.end() || it->second.state == JobState::kPending) return std::nullopt;
  return it->second.placement;
}

int64_t Scheduler::in_use(TenantId tenant, int32_t pool) const {
  const auto& ps = impl_->tenants.at(static_cast<size_t>(tenant)).pools;
  return static_cast<size_t>(pool) < ps.size() ? ps[static_cast<size_t>(pool)].in_use : 0;
}
int64_t Scheduler::in_use(TenantId tenant) const {
  return impl_->tenants.at(static_cast<size_t>(tenant)).in_use;
}
int64_t Scheduler::free_devices(int32_t pool) const {
  return impl_->pools.at(static_cast<size_t>(pool)).free;
}
int64_t Scheduler::total_devices(int32_t pool) const {
  return impl_->pools.at(static_cast<size_t>(pool)).total;
}
size_t Scheduler::waiting() const { return impl_->waiting; }

}  // namespace mh::scheduler
