#include "platform/api/pools/service.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <bit>
#include <limits>

namespace mh::api {

Pools::Pools(const Context& context, std::vector<PoolConfig> pools, scheduler::Options options)
    : context_(context),
      store_(context.db),
      pools_(pools.begin(), pools.end()),
      scheduler_(options) {
  for (auto& p : pools_) {
    give_launcher(p);
    scheduler_.add_pool({p.name, p.nodes});
  }
}

void Pools::give_launcher(PoolConfig& pool) {
  pool.launcher = pool.slurm ? executor::make_slurm_launcher(pool.slurm_options)
                             : executor::make_local_launcher();
}

Pools::~Pools() { stop(); }

void Pools::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (loop_.joinable() && loop_.get_id() != std::this_thread::get_id()) loop_.join();
}

void Pools::poke() {
  {
    std::lock_guard lock(mutex_);
    poked_ = true;
  }
  wake_.notify_all();
}

void Pools::loop() {
  for (;;) {
    {
      std::unique_lock lock(mutex_);
      // When something changed, and at least once a second: a running job passing its minimum
      // runtime can make a preemption possible with nothing else happening.
      wake_.wait_for(lock, std::chrono::seconds(1), [&] { return stopping_ || poked_; });
      if (stopping_) return;
      poked_ = false;
    }
    pass();
  }
}

Status Pools::start() {
  MH_TRY(read_pools());
  MH_TRY(read_quotas());
  loop_ = std::thread([this] { loop(); });
  return {};
}

Status Pools::read_quotas() {
  MH_ASSIGN_OR_RETURN(const auto quotas, store_.quotas());
  std::lock_guard lock(mutex_);
  for (const auto& q : quotas) quotas_[{q.tenant, q.pool}] = q.quota;
  return {};
}

bool Pools::has_pool(std::string_view pool) const {
  std::lock_guard lock(mutex_);
  return std::any_of(pools_.begin(), pools_.end(), [&](const auto& p) { return p.name == pool; });
}

bool Pools::gpu_pool(std::string_view pool) const {
  std::lock_guard lock(mutex_);
  for (const auto& p : pools_) {
    if (p.name == pool) return p.gpus;
  }
  return false;
}

int Pools::largest_node(std::string_view pool) const {
  std::lock_guard lock(mutex_);
  int most = 0;
  for (const auto& p : pools_) {
    if (p.name != pool) continue;
    for (const auto& n : p.nodes) most = std::max(most, static_cast<int>(n.devices));
  }
  return most;
}

const executor::Launcher& Pools::launcher(std::string_view pool) const {
  static const std::unique_ptr<executor::Launcher> local = executor::make_local_launcher();
  std::lock_guard lock(mutex_);
  for (const auto& p : pools_) {
    if (p.name == pool) return *p.launcher;  // pools_ elements never move or change
  }
  return *local;
}

const char* Pools::worker_device(std::string_view pool) const {
  std::lock_guard lock(mutex_);
  for (const auto& p : pools_) {
    if (p.name == pool) return p.slurm ? "auto" : p.gpus ? "cuda" : "cpu";
  }
  return "auto";
}

scheduler::Quota Pools::quota_of(const std::string& tenant, size_t pool) const {
  auto it = quotas_.find({tenant, pools_[pool].name});
  if (it != quotas_.end()) return it->second;
  // No quota set: nothing guaranteed, everything borrowable, an equal weight.
  return {0, scheduler_.total_devices(static_cast<int32_t>(pool)), 1.0};
}

scheduler::TenantId Pools::tenant_id(const std::string& tenant) {
  auto it = tenants_.find(tenant);
  if (it != tenants_.end()) return it->second;
  const scheduler::TenantId id = scheduler_.add_tenant({tenant, 0, ""});
  for (size_t p = 0; p < pools_.size(); ++p) {
    scheduler_.set_quota(id, static_cast<int32_t>(p), quota_of(tenant, p));
  }
  tenants_.emplace(tenant, id);
  return id;
}

void Pools::submit(const Work& work, std::function<void(Allocation)> on_admit,
                   std::function<void()> on_preempt,
                   std::function<void(const std::string&)> on_waiting) {
  {
    std::lock_guard lock(mutex_);
    if (job_ids_.count(work.id)) return;
    int32_t pool_index = 0;
    for (size_t p = 0; p < pools_.size(); ++p) {
      if (pools_[p].name == work.pool) pool_index = static_cast<int32_t>(p);
    }
    const scheduler::JobId id = next_id_++;
    job_ids_[work.id] = id;
    job_names_[id] = work.id;
    job_tenants_[work.id] = work.tenant;
    job_pool_[id] = pool_index;
    callbacks_[work.id] = {std::move(on_admit), std::move(on_preempt), std::move(on_waiting), {}};
    scheduler_.submit(id, {tenant_id(work.tenant), pool_index, work.devices, work.priority,
                           work.submitted, work.preemptible});
    poked_ = true;
  }
  wake_.notify_all();
}

void Pools::finish(const std::string& job) {
  {
    std::lock_guard lock(mutex_);
    auto it = job_ids_.find(job);
    if (it == job_ids_.end()) return;
    auto now = context_.clock.now();
    scheduler_.finish(it->second, now.ok() ? *now : 0);
    job_names_.erase(it->second);
    job_pool_.erase(it->second);
    job_tenants_.erase(job);
    callbacks_.erase(job);
    job_ids_.erase(it);
    poked_ = true;
  }
  wake_.notify_all();
}

void Pools::requeue(const std::string& job) {
  {
    std::lock_guard lock(mutex_);
    auto it = job_ids_.find(job);
    if (it == job_ids_.end()) return;
    auto now = context_.clock.now();
    scheduler_.requeue(it->second, now.ok() ? *now : 0);
    poked_ = true;
  }
  wake_.notify_all();
}

void Pools::pass() {
  auto now = context_.clock.now();
  const int64_t t = now.ok() ? *now : 0;
  std::vector<std::pair<std::function<void(Allocation)>, Allocation>> admitted;
  std::vector<std::function<void()>> preempted;
  std::vector<std::pair<std::function<void(const std::string&)>, std::string>> waiting;
  {
    std::lock_guard lock(mutex_);
    // The license caps as they stand, and whether each tenant's work may run at all; the
    // platform's own work ("") has no cap.
    for (const auto& [name, id] : tenants_) {
      scheduler::TenantSpec spec{name, name.empty() ? std::numeric_limits<int64_t>::max() : 0, ""};
      if (!name.empty()) {
        spec.held = context_.watch.held(name);
        if (auto e = context_.entitlements.find(name); e && spec.held.empty()) {
          spec.max_devices = e->license.terms.limits.max_gpus;
        }
      }
      scheduler_.update_tenant(id, spec);
    }
    for (const auto& d : scheduler_.pass(t)) {
      const std::string& job = job_names_.at(d.job);
      Callbacks& c = callbacks_.at(job);
      c.told.clear();  // admitted or preempted: if it waits again, it is told again
      if (d.kind == scheduler::Decision::Kind::kPreempt) {
        if (c.on_preempt) preempted.push_back(c.on_preempt);
        continue;
      }
      // Work runs on one node (a worker is one process); a gang over several would need
      // ranks on each, which the platform does not start yet.
      Allocation a;
      for (const auto& part : d.placement.parts) {
        const size_t pool = static_cast<size_t>(job_pool_.at(d.job));
        if (a.node.empty()) a.node = pools_[pool].nodes[static_cast<size_t>(part.node)].name;
        for (int i = 0; i < 64; ++i) {
          if (part.devices >> i & 1) a.devices.push_back(i);
        }
      }
      admitted.emplace_back(c.on_admit, std::move(a));
    }
    for (auto& [job, c] : callbacks_) {
      if (!c.on_waiting) continue;
      auto id = job_ids_.find(job);
      if (id == job_ids_.end()) continue;
      const auto info = scheduler_.pending_info(id->second);
      if (!info || info->reason.empty() || info->reason == c.told) continue;
      c.told = info->reason;
      waiting.emplace_back(c.on_waiting, info->reason);
    }
  }
  for (auto& f : preempted) f();
  for (auto& [f, allocation] : admitted) f(std::move(allocation));
  for (auto& [f, reason] : waiting) f(reason);
}

std::optional<scheduler::PendingInfo> Pools::pending(const std::string& job) const {
  std::lock_guard lock(mutex_);
  auto it = job_ids_.find(job);
  if (it == job_ids_.end()) return std::nullopt;
  return scheduler_.pending_info(it->second);
}

Status Pools::set_quota(const std::string& tenant, const std::string& pool,
                        const scheduler::Quota& quota) {
  if (!has_pool(pool)) return not_found(fmt::format("pool '{}' does not exist", pool));
  if (quota.nominal < 0 || quota.borrowing_limit < 0 || !(quota.weight > 0)) {
    return invalid_argument("nominal and borrowing_limit must be >= 0 and weight > 0");
  }
  MH_TRY(store_.put_quota(tenant, pool, quota));
  std::lock_guard lock(mutex_);
  quotas_[{tenant, pool}] = quota;
  const scheduler::TenantId id = tenant_id(tenant);
  for (size_t p = 0; p < pools_.size(); ++p) {
    if (pools_[p].name == pool) scheduler_.set_quota(id, static_cast<int32_t>(p), quota);
  }
  return {};
}

Status Pools::validate(const PoolConfig& pool) const {
  if (pool.name.empty() || pool.name.size() > 63 ||
      pool.name.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789-_") != std::string::npos) {
    return invalid_argument("a pool's name is 1-63 of a-z 0-9 - _", "name");
  }
  for (const auto& p : pools_) {
    if (p.name == pool.name) return conflict(fmt::format("pool '{}' exists", pool.name));
  }
  if (pool.nodes.empty()) return invalid_argument("a pool needs nodes", "nodes");
  for (const auto& n : pool.nodes) {
    if (n.name.empty() || n.devices < 1 || n.devices > 64 || n.domain < 0) {
      return invalid_argument("each node needs a name, 1-64 devices and an nvlink_domain >= 0",
                              "nodes");
    }
  }
  return {};
}

Status Pools::read_pools() {
  MH_ASSIGN_OR_RETURN(std::vector<PoolConfig> added, store_.added_pools());
  std::lock_guard lock(mutex_);
  for (auto& p : added) {
    if (!validate(p).ok()) continue;  // a configured pool of the same name wins
    p.slurm_options.env = slurm_env_;
    give_launcher(p);
    scheduler_.add_pool({p.name, p.nodes});
    pools_.push_back(std::move(p));
  }
  return {};
}

Status Pools::add_slurm_pool(const PoolConfig& given) {
  PoolConfig pool = given;
  pool.gpus = pool.slurm = true;
  {
    std::lock_guard lock(mutex_);
    MH_TRY(validate(pool));
  }
  MH_TRY(store_.add_pool(pool));
  std::lock_guard lock(mutex_);
  pool.slurm_options.env = slurm_env_;
  give_launcher(pool);
  scheduler_.add_pool({pool.name, pool.nodes});
  pools_.push_back(std::move(pool));
  poked_ = true;
  spdlog::info("pool {} added: {} Slurm nodes", pools_.back().name, pools_.back().nodes.size());
  return {};
}

Status Pools::set_draining(const std::string& pool, const std::string& node, bool draining) {
  std::vector<std::function<void()>> to_move;
  {
    std::lock_guard lock(mutex_);
    int32_t p = -1;
    scheduler::NodeId n = -1;
    for (size_t i = 0; i < pools_.size(); ++i) {
      if (pools_[i].name != pool) continue;
      p = static_cast<int32_t>(i);
      for (size_t k = 0; k < pools_[i].nodes.size(); ++k) {
        if (pools_[i].nodes[k].name == node) n = static_cast<scheduler::NodeId>(k);
      }
    }
    if (p < 0) return not_found(fmt::format("pool '{}' does not exist", pool));
    if (n < 0) return not_found(fmt::format("pool '{}' has no node '{}'", pool, node));
    scheduler_.set_draining(p, n, draining);
    if (draining) {
      for (scheduler::JobId id : scheduler_.jobs_on(p, n)) {
        const Callbacks& c = callbacks_.at(job_names_.at(id));
        if (c.on_preempt) to_move.push_back(c.on_preempt);
      }
    }
    poked_ = true;
  }
  spdlog::warn("pool {} node {}: {}{}", pool, node, draining ? "draining" : "back in service",
               draining ? fmt::format(", moving {} pieces of work", to_move.size()) : "");
  for (auto& f : to_move) f();
  wake_.notify_all();
  return {};
}

std::vector<PoolView> Pools::pools() const {
  std::lock_guard lock(mutex_);
  std::vector<PoolView> out;
  for (size_t p = 0; p < pools_.size(); ++p) {
    const auto index = static_cast<int32_t>(p);
    PoolView view{pools_[p].name, pools_[p].gpus, scheduler_.total_devices(index),
                  scheduler_.free_devices(index), {}};
    for (size_t n = 0; n < pools_[p].nodes.size(); ++n) {
      const auto& node = pools_[p].nodes[n];
      view.nodes.push_back({node.name, node.devices, node.domain,
                            scheduler_.draining(index, static_cast<scheduler::NodeId>(n))});
    }
    out.push_back(std::move(view));
  }
  return out;
}

std::vector<QuotaView> Pools::quotas(const std::string& tenant) const {
  std::lock_guard lock(mutex_);
  std::vector<QuotaView> out;
  auto known = tenants_.find(tenant);
  for (size_t p = 0; p < pools_.size(); ++p) {
    const auto index = static_cast<int32_t>(p);
    int64_t queued = 0;
    for (const auto& [job, owner] : job_tenants_) {
      if (owner == tenant && scheduler_.state(job_ids_.at(job)) == scheduler::JobState::kPending) {
        ++queued;
      }
    }
    out.push_back({pools_[p].name, quota_of(tenant, p),
                   known == tenants_.end() ? 0 : scheduler_.in_use(known->second, index), queued,
                   scheduler_.total_devices(index), scheduler_.free_devices(index)});
  }
  return out;
}

}  // namespace mh::api
