#include "platform/api/deployments/service.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <boost/json.hpp>
#include <thread>

#include "platform/api/deployments/runtime.h"
#include "platform/base/crypto.h"
#include "platform/base/files.h"
#include "platform/base/time.h"
#include "platform/executor/launcher.h"
#include "platform/executor/worker_contract.h"

namespace mh::api {

namespace json = boost::json;
namespace fs = std::filesystem;
using SteadyClock = std::chrono::steady_clock;

namespace {

constexpr std::string_view kDefaultPool = "default";
constexpr auto kTick = std::chrono::milliseconds(200);
constexpr auto kFlushEvery = std::chrono::seconds(5);
// Between two flushes, what is pending is accrued beside the ledger this often: the most a
// killed daemon loses (a replica stops with its daemon, before the next one can see it go).
constexpr auto kAccrueEvery = std::chrono::milliseconds(250);
// The most a replica is believed to have run between its daemon's last accrual and the next
// daemon's start.
constexpr double kMaxUnseenTail = 10;
// How long after the daemon gives a replica a tenant's request it believes usage for that
// tenant (longer than any one request's reply: the event comes as it ends).
constexpr auto kUsageWindow = std::chrono::minutes(30);
constexpr auto kStopGrace = std::chrono::seconds(5);
constexpr auto kMaxBackoff = std::chrono::seconds(30);

// A local worker's pid, for operators (null for a worker elsewhere).
std::optional<int64_t> pid_of(const executor::Worker* w) {
  if (w == nullptr) return std::nullopt;
  const std::string handle = w->handle();
  if (!handle.starts_with("pid:")) return std::nullopt;
  return std::atoll(handle.c_str() + 4);
}

}  // namespace

Deployments::Deployments(const Context& context, Models& models, Pools& pools,
                         boost::asio::io_context& io, DeploymentOptions options)
    : context_(context),
      store_(context.db),
      models_(models),
      entitlements_(context.entitlements),
      ledger_(context.usage),
      holdings_(context.holdings),
      watch_(context.watch),
      pools_(pools),
      clock_(context.clock),
      options_(std::move(options)),
      io_(io) {}

Deployments::~Deployments() {
  pools_.stop();  // no admission reaches this object from here on
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (supervisor_.joinable()) supervisor_.join();
  // Replicas stop first, so relays blocked on them return.
  std::vector<std::unique_ptr<executor::Worker>> processes;
  std::vector<std::shared_ptr<Call>> queued;
  {
    std::lock_guard lock(mutex_);
    for (auto& [id, live] : live_) {
      for (auto& r : live->replicas) {
        if (r->process) processes.push_back(std::move(r->process));
      }
      for (auto& [tenant, q] : live->queues) {
        for (auto& c : q) queued.push_back(std::move(c));
      }
      live->queues.clear();
    }
  }
  for (auto& c : queued) c->out->fail(unavailable("the platform is shutting down"));
  for (auto& p : processes) p->cancel(kStopGrace);
  flush_usage();
  // No relay starts from here on (dispatch() stops once stopping_ is set): the ones under way
  // end as their replicas stop, if the io_context still runs their handlers. (The daemon stops
  // it first; its handlers then never run, and none may once this object is gone.)
  std::unique_lock lock(relay_mutex_);
  relay_done_.wait_for(lock, std::chrono::seconds(2), [&] { return relays_ == 0; });
}

Status Deployments::start() {
  MH_ASSIGN_OR_RETURN(std::vector<DeploymentRecord> all, store_.all());
  {
    std::lock_guard lock(mutex_);
    for (auto& d : all) {
      holdings_.set(d.tenant, d.id, d.replicas * d.devices_per_replica);
      // Its replicas start again: it is not ready until one of them is.
      if (d.replicas > 0) d.status = DeploymentStatus::kStarting;
      auto live = std::make_shared<Live>();
      live->record = d;  // (a copy: the records are read again below)
      live_.emplace(live->record.id, std::move(live));
    }
    last_flush_ = last_accrued_ = SteadyClock::now();
  }
  if (!all.empty()) spdlog::info("deployments: bringing back {}", all.size());
  // Replicas a previous daemon ran through Slurm are still there: they are stopped first. A
  // local one was told to stop when its daemon died; the time it ran on after the dead
  // daemon's last accrual of its usage is billed once it is gone.
  for (const auto& d : all) {
    const executor::Launcher& launcher = pools_.launcher(d.pool);
    std::error_code ec;
    const fs::path dir =
        options_.root / (d.tenant.empty() ? std::string(".platform") : d.tenant) / d.id;
    for (const auto& e : fs::directory_iterator(dir, ec)) {
      auto ref = read_small_file(e.path() / "worker.ref", 256);
      if (!ref.ok()) continue;
      std::string handle = *ref;
      while (!handle.empty() && (handle.back() == '\n' || handle.back() == ' ')) handle.pop_back();
      if (handle.starts_with("pid:")) {
        bill_stopped_replica(d, handle);
      } else {
        launcher.reclaim(handle, std::chrono::seconds(30));
      }
      fs::remove(e.path() / "worker.ref", ec);
    }
  }
  supervisor_ = std::thread([this] { supervise(); });
  return {};
}

void Deployments::bill_stopped_replica(const DeploymentRecord& d, const std::string& handle) {
  const auto waiting = SteadyClock::now();
  const bool was_running = pools_.launcher(d.pool).reclaim(handle, std::chrono::seconds(10));
  auto now = clock_.now();
  if (!was_running || d.tenant.empty() || !now.ok()) return;  // staff's devices: the platform's
  const double gone = static_cast<double>(unix_millis()) / 1000;
  const double waited = std::chrono::duration<double>(SteadyClock::now() - waiting).count();
  double seconds = waited;
  if (auto seen = ledger_.last_accrued("deployment", d.id); seen && *seen <= gone) {
    seconds = std::min(gone - *seen, waited + kMaxUnseenTail);  // a clock step is no usage
  }
  Status billed = ledger_.record({d.tenant, *now, tenants::UsageDimension::kGpuSeconds,
                                  seconds * static_cast<double>(d.devices_per_replica),
                                  "deployment", d.id});
  if (!billed.ok()) spdlog::error("deployment {}: usage not recorded: {}", d.id, billed.message());
}

Status Deployments::admit(const std::string& tenant, const DeploymentRecord& wanted,
                          const std::string& replacing,
                          const std::function<Result<int64_t>()>& serving) const {
  MH_ASSIGN_OR_RETURN(int64_t now, clock_.now());
  // Several devices for one replica is multi-GPU work, licensed as a job's ranks are.
  if (wanted.devices_per_replica > 1) MH_TRY(entitlements_.check(tenant, "multi_gpu", now));
  MH_TRY(admit_devices(entitlements_, ledger_, &holdings_, tenant, "deploy", wanted.pool, replacing,
                       wanted.replicas * wanted.devices_per_replica, now));
  // max_deployments counts the deployments that serve (replicas > 0): one scaled to zero holds
  // nothing and does not count until it is scaled up again.
  if (wanted.replicas == 0) return {};
  MH_ASSIGN_OR_RETURN(const int64_t deployments, serving());
  const auto entitlement = entitlements_.find(tenant);
  const licensing::LicenseTerms& terms = entitlement->license.terms;
  if (deployments + 1 > terms.limits.max_deployments) {
    return permission_denied(fmt::format(
        "the tenant has {} deployments serving; license '{}' allows {} (max_deployments): 1 "
        "over; delete one or scale it to zero",
        deployments, terms.id, terms.limits.max_deployments));
  }
  return {};
}

Result<DeploymentRecord> Deployments::create(const std::string& tenant, const json::object& body) {
  MH_ASSIGN_OR_RETURN(int64_t now, clock_.now());
  DeploymentRecord d;
  d.id = "dep-" + secure_random_base64url(12);
  d.tenant = tenant;
  d.created_at = d.updated_at = now;
  MH_ASSIGN_OR_RETURN(DeploymentRequest request, parse_deployment_request(body));
  d.model = request.model;
  d.replicas = request.replicas;
  d.pool = request.pool.value_or(std::string(kDefaultPool));
  if (request.pool && !pools_.has_pool(d.pool)) {
    return not_found(fmt::format("pool '{}' does not exist", d.pool));
  }
  d.devices_per_replica = request.devices_per_replica;
  MH_ASSIGN_OR_RETURN(ModelRecord served, models_.get(tenant, d.model));
  const bool shared = tenant.empty();
  if (shared && served.kind != "base") {
    return failed_precondition(fmt::format(
        "'{}' is not a base model with weights; staff deployments serve those", d.model));
  }
  if (served.kind == "preset") {
    return failed_precondition(fmt::format(
        "'{}' is an architecture without weights: train it first with a fine-tuning job (it "
        "trains from scratch), then deploy the model the job makes",
        d.model));
  }
  // Staff deployments run on the platform's own capacity.
  if (!shared) MH_TRY(check_model_params(entitlements_, tenant, served.parameters));
  d.status = DeploymentStatus::kStarting;
  // The holdings change with the row, under the store's write lock, so the next admission sees
  // them; a failed commit gives them back.
  const Status stored = store_.insert(d, [&](const auto& serving) -> Status {
    if (!shared) MH_TRY(admit(tenant, d, "", serving));
    holdings_.set(d.tenant, d.id, d.replicas * d.devices_per_replica);
    return {};
  });
  if (!stored.ok()) {
    holdings_.set(d.tenant, d.id, 0);
    return stored;
  }
  {
    std::lock_guard lock(mutex_);
    auto live = std::make_shared<Live>();
    live->record = d;
    live_.emplace(d.id, std::move(live));
  }
  wake_.notify_all();
  spdlog::info("deployment {} of {} for {}: {} replicas", d.id, d.model,
               shared ? "every tenant" : tenant, d.replicas);
  return d;
}

Result<DeploymentRecord> Deployments::get(std::string_view tenant, std::string_view id) const {
  return store_.get(tenant, id);
}

Result<std::vector<DeploymentRecord>> Deployments::list(std::string_view tenant,
                                                        std::string_view after, int64_t limit,
                                                        bool* has_more) const {
  return store_.list(tenant, after, limit, has_more);
}

Result<DeploymentRecord> Deployments::scale(std::string_view tenant, std::string_view id,
                                            int64_t replicas) {
  MH_ASSIGN_OR_RETURN(DeploymentRecord d, get(tenant, id));
  MH_ASSIGN_OR_RETURN(int64_t now, clock_.now());
  DeploymentRecord wanted = d;
  wanted.replicas = replicas;
  const int64_t scaled_from = d.replicas;
  d.replicas = replicas;
  d.updated_at = now;
  if (replicas == 0) {
    d.status = DeploymentStatus::kStopped;
    d.error.clear();
  } else if (d.status == DeploymentStatus::kStopped || d.status == DeploymentStatus::kFailed) {
    d.status = DeploymentStatus::kStarting;
    d.error.clear();
  }
  // The holdings change with the row, under the store's write lock (as in create()).
  const Status stored = store_.update(d, [&](const auto& serving) -> Status {
    if (replicas > scaled_from && !d.tenant.empty()) MH_TRY(admit(d.tenant, wanted, d.id, serving));
    holdings_.set(d.tenant, d.id, d.replicas * d.devices_per_replica);
    return {};
  });
  if (!stored.ok()) {
    holdings_.set(d.tenant, d.id, scaled_from * d.devices_per_replica);
    return stored;
  }
  {
    std::lock_guard lock(mutex_);
    if (auto it = live_.find(d.id); it != live_.end()) {
      it->second->record = d;
      // A failed deployment asked to run again gets fresh replicas.
      for (auto& r : it->second->replicas) {
        if (r->state == ReplicaState::kFailed) {
          r->failures = 0;
          r->state = ReplicaState::kRestarting;
        }
      }
    }
  }
  wake_.notify_all();
  return d;
}

Result<DeploymentRecord> Deployments::remove(std::string_view tenant, std::string_view id) {
  MH_ASSIGN_OR_RETURN(DeploymentRecord d, get(tenant, id));
  MH_TRY(store_.remove(d.id));
  holdings_.set(d.tenant, d.id, 0);
  std::vector<std::unique_ptr<executor::Worker>> processes;
  std::vector<std::shared_ptr<Call>> queued;
  {
    std::lock_guard lock(mutex_);
    if (auto it = live_.find(d.id); it != live_.end()) {
      it->second->removed = true;
      for (auto& r : it->second->replicas) {
        if (r->process) processes.push_back(std::move(r->process));
        release_devices(*it->second, *r);
      }
      for (auto& [t, q] : it->second->queues) {
        for (auto& c : q) queued.push_back(std::move(c));
      }
      live_.erase(it);
    }
  }
  for (auto& c : queued) c->out->fail(not_found(fmt::format("deployment '{}' was deleted", d.id)));
  for (auto& p : processes) p->cancel(kStopGrace);
  d.status = DeploymentStatus::kDeleted;
  spdlog::info("deployment {} deleted", d.id);
  return d;
}

DeploymentView Deployments::view(const DeploymentRecord& d) const {
  DeploymentView view;
  view.record = d;
  std::lock_guard lock(mutex_);
  auto it = live_.find(d.id);
  if (it == live_.end()) return view;
  const Live& live = *it->second;
  view.live = true;
  view.record.status = live.record.status;
  view.record.error = live.record.error;
  for (const auto& [t, q] : live.queues) view.queued_requests += static_cast<int64_t>(q.size());
  for (const auto& r : live.replicas) {
    DeploymentView::Replica rv;
    rv.index = r->index;
    rv.state = r->state;
    rv.pid = pid_of(r->process.get());
    if (r->process) rv.worker = r->process->handle();
    rv.restarts = r->restarts;
    rv.started_at = r->started_at;
    rv.in_flight = r->in_flight;
    rv.last_exit = r->last_exit;
    rv.stats = r->stats;
    if (r->state == ReplicaState::kPending) {
      if (auto info = pools_.pending(replica_key(d.id, r->index))) {
        rv.queue.emplace(info->position, info->reason);
      }
    }
    view.replicas.push_back(std::move(rv));
  }
  return view;
}

void Deployments::set_status(Live& live, DeploymentStatus status, const std::string& error) {
  if (live.record.status == status && live.record.error == error && !live.status_unsaved) return;
  live.record.status = status;
  live.record.error = error;
  spdlog::info("deployment {}: {}{}", live.record.id, status_name(status),
               error.empty() ? "" : ": " + error);
  const Status saved = store_.set_status(live.record.id, status, error);
  // Served from memory meanwhile; the supervisor's next call writes it again.
  live.status_unsaved = !saved.ok();
  if (!saved.ok()) {
    spdlog::error("deployment {}: saving status {}: {}", live.record.id, status_name(status),
                  saved.message());
  }
}

Status Deployments::start_replica(Live& live, Replica& r) {
  MH_ASSIGN_OR_RETURN(ModelRecord model, models_.get(live.record.tenant, live.record.model));
  ++r.generation;
  r.token = secure_random_base64url(24);
  r.port = 0;
  r.stats = {};
  executor::WorkerSpec spec;
  executor::ServeArgs args;
  args.model = model.directory;
  args.name = live.record.model;
  args.max_batch = options_.max_batch;
  args.device = pools_.worker_device(live.record.pool);
  std::vector<fs::path> reads = {model.directory};
  if (!model.base.empty()) {  // an adapter: the replica runs its base, the requests name it
    MH_ASSIGN_OR_RETURN(ModelRecord base, models_.get(live.record.tenant, model.base));
    args.model = base.directory;
    reads = {base.directory, model.directory};
  }
  // The adapters requests may name: the tenant's (a staff replica's: every tenant's).
  for (const fs::path& root : options_.adapter_roots) {
    const fs::path dir = live.record.tenant.empty() ? root : root / live.record.tenant;
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) return internal_error(fmt::format("creating {}: {}", dir.string(), ec.message()));
    args.adapter_roots.push_back(dir.string());
    reads.push_back(dir);
  }
  args.max_adapters = options_.max_adapters;
  args.prefix_cache_mb = options_.prefix_cache_mb;
  spec.work_dir = options_.root /
                  (live.record.tenant.empty() ? std::string(".platform") : live.record.tenant) /
                  live.record.id / fmt::format("replica-{}", r.index);
  spec.cpu_threads = options_.threads_per_replica;
  if (pools_.gpu_pool(live.record.pool)) spec.gpus = r.devices;
  spec.env["MH_REPLICA_TOKEN"] = r.token;
  const std::string id = live.record.id;
  const int index = r.index;
  const uint64_t generation = r.generation;
  auto on_event = [this, id, index, generation](std::string_view line) {
    on_replica_event(id, index, generation, line);
  };
  // Contained, here or on a Slurm node: it reads its model, writes its directory, listens for
  // the daemon and connects to no one.
  spec.sandbox = options_.sandbox;
  spec.sandbox.read = reads;
  spec.sandbox.connect = false;
  const executor::Launcher& launcher = pools_.launcher(live.record.pool);
  // CUDA maps huge ranges; a remote node's memory is its cluster's to bound.
  if (!spec.gpus.empty() || launcher.remote()) spec.sandbox.address_space_bytes = 0;
  if (launcher.remote()) {
    // On a node of a cluster: it listens there (every request bears its secret), and the
    // cluster assigns its GPUs from the count asked for.
    spec.gpus = r.devices;
    args.host = "0.0.0.0";
  }
  spec.argv = {options_.worker.string()};
  for (std::string& arg : executor::to_argv(args)) spec.argv.push_back(std::move(arg));
  MH_ASSIGN_OR_RETURN(r.process, launcher.start(spec, 1, r.node, on_event));
  r.host = launcher.remote() ? r.node : "127.0.0.1";
  // For the next daemon, if this one dies: a Slurm job outlives it and is stopped; a local
  // process stops with it, and its last seconds are billed (start()).
  if (Status s = write_file_atomically(spec.work_dir / "worker.ref", r.process->handle() + "\n",
                                      0644);
      !s.ok()) {
    spdlog::warn("deployment {}: replica {}: no worker.ref (a next daemon bills its last "
                 "seconds only to its last accrual): {}", id, index, s.message());
  }
  r.state = ReplicaState::kStarting;
  r.metered = SteadyClock::now();
  MH_ASSIGN_OR_RETURN(r.started_at, clock_.now());
  return {};
}

void Deployments::on_replica_event(const std::string& deployment, int index, uint64_t generation,
                                   std::string_view line) {
  // Called on a worker's reader thread, which the supervisor may be joining while it holds
  // mutex_: the event is only queued here, and applied by the supervisor.
  {
    std::lock_guard lock(events_mutex_);
    replica_events_.push_back({deployment, index, generation, std::string(line)});
    events_pending_ = true;
  }
  wake_.notify_all();
}

void Deployments::apply_replica_event(const std::string& deployment, int index, uint64_t generation,
                                      std::string_view line) {
  auto parsed = executor::parse_worker_event(line);
  if (!parsed.ok()) {
    spdlog::warn("deployment {} replica {}: {}", deployment, index, parsed.status().message());
    return;
  }
  executor::WorkerEvent& e = *parsed;
  auto it = live_.find(deployment);
  if (it == live_.end()) return;
  Live& live = *it->second;
  if (index >= static_cast<int>(live.replicas.size())) return;
  Replica& r = *live.replicas[static_cast<size_t>(index)];
  if (r.generation != generation) return;
  if (e.kind == executor::WorkerEvent::Kind::kReady) {
    r.port = static_cast<uint16_t>(e.port);
    r.state = ReplicaState::kReady;
    r.failures = 0;
    set_status(live, DeploymentStatus::kReady, "");
    dispatch(live);
  } else if (e.kind == executor::WorkerEvent::Kind::kUsage) {
    // A tenant's deployment serves its owner alone: its tokens are the owner's whatever the
    // replica says. A staff deployment's replica names the caller; it is believed only for a
    // tenant whose request the daemon gave it lately.
    std::string who = live.record.tenant;
    if (who.empty() && !e.tenant.empty()) {
      const auto served = r.served.find(e.tenant);
      if (served == r.served.end() || SteadyClock::now() - served->second > kUsageWindow) {
        spdlog::warn("deployment {} replica {}: usage reported for tenant '{}', whose requests "
                     "it was not given; not recorded",
                     deployment, index, e.tenant);
        return;
      }
      who = e.tenant;
    }
    Pending& p = usage_[{who, deployment}];
    p.input_tokens += e.prompt_tokens;
    p.output_tokens += e.completion_tokens;
  } else if (e.kind == executor::WorkerEvent::Kind::kStats) {
    r.stats = std::move(e.stats);
  }
}

void Deployments::reconcile(Live& live, SteadyClock::time_point now,
                            std::vector<std::unique_ptr<executor::Worker>>* to_stop,
                            const std::string& held) {
  DeploymentRecord& d = live.record;
  // Device-seconds, for as long as a replica's process holds its devices.
  auto meter = [&](Replica& r) {
    const double seconds = std::chrono::duration<double>(now - r.metered).count();
    usage_[{d.tenant, d.id}].device_seconds += seconds * static_cast<double>(d.devices_per_replica);
    r.metered = now;
  };
  // Extra replicas go (the newest first); missing ones are added.
  while (static_cast<int64_t>(live.replicas.size()) > d.replicas) {
    auto& r = live.replicas.back();
    if (r->process) to_stop->push_back(std::move(r->process));
    r->state = ReplicaState::kStopped;
    release_devices(live, *r);
    live.replicas.pop_back();
  }
  while (static_cast<int64_t>(live.replicas.size()) < d.replicas) {
    auto r = std::make_shared<Replica>();
    r->index = static_cast<int>(live.replicas.size());
    r->state = ReplicaState::kRestarting;  // started just below
    r->restart_at = now;
    live.replicas.push_back(std::move(r));
  }
  // The licence binds running replicas: while it does not let the tenant's work run (revoked,
  // expired past its grace, the tenant suspended, the month's GPU-hours spent), they stop and
  // give their devices back, and they start again once it does.
  if (!held.empty()) {
    for (auto& rp : live.replicas) {
      Replica& r = *rp;
      if (r.process) {
        meter(r);
        to_stop->push_back(std::move(r.process));
        spdlog::warn("deployment {} replica {} stopped: {}", d.id, r.index, held);
      }
      ++r.generation;
      r.port = 0;
      release_devices(live, r);
      r.submitted = r.admitted = false;
      r.devices.clear();
      r.failures = 0;
      r.state = ReplicaState::kRestarting;
      r.restart_at = now;
    }
    set_status(live, DeploymentStatus::kStopped, held);
    for (auto& [t, q] : live.queues) {
      for (auto& c : q) c->out->fail(unavailable(fmt::format("deployment '{}' is stopped: {}",
                                                             d.id, held)));
      q.clear();
    }
    return;
  }
  std::string last_error;
  for (auto& rp : live.replicas) {
    Replica& r = *rp;
    if (r.move) {  // its node is draining: stop it, give its devices back, ask again
      r.move = false;
      if (r.process) to_stop->push_back(std::move(r.process));
      ++r.generation;
      r.port = 0;
      release_devices(live, r);
      r.submitted = r.admitted = false;
      r.devices.clear();
      r.state = ReplicaState::kRestarting;
      r.restart_at = now;
    }
    if (r.process) {
      meter(r);
      if (auto exit = r.process->wait(std::chrono::milliseconds(0))) {
        const bool was_ready = r.state == ReplicaState::kReady;
        r.last_exit = exit->reason;
        r.process.reset();
        ++r.generation;  // its connections and events are stale now
        ++r.restarts;
        r.failures = was_ready ? 1 : r.failures + 1;
        r.port = 0;
        spdlog::warn("deployment {} replica {} ended: {}", d.id, r.index, exit->reason);
        if (r.failures >= options_.max_start_failures) {
          r.state = ReplicaState::kFailed;
        } else {
          r.state = ReplicaState::kRestarting;
          const auto backoff = std::min<std::chrono::milliseconds>(
              options_.restart_backoff * (int64_t{1} << std::min(r.failures - 1, 16)), kMaxBackoff);
          r.restart_at = now + backoff;
        }
      }
    }
    if (r.state == ReplicaState::kRestarting && now >= r.restart_at && !r.admitted) {
      // Its devices first: the scheduler admits it (a deployment's replicas are never
      // preempted), and it keeps them across restarts of its process.
      if (!r.submitted) {
        r.submitted = true;
        const std::string id = d.id;
        const int index = r.index;
        pools_.submit(
            {replica_key(d.id, r.index), d.tenant, d.pool, static_cast<int>(d.devices_per_replica),
             100, d.created_at, false},
            [this, id, index](Allocation allocation) {
              std::lock_guard lock(mutex_);
              auto it = live_.find(id);
              if (it == live_.end() || index >= static_cast<int>(it->second->replicas.size())) {
                return;
              }
              Replica& replica = *it->second->replicas[static_cast<size_t>(index)];
              replica.admitted = true;
              replica.devices = std::move(allocation.devices);
              replica.node = std::move(allocation.node);
              wake_.notify_all();
            },
            [this, id, index] {  // its node is draining
              std::lock_guard lock(mutex_);
              auto it = live_.find(id);
              if (it == live_.end() || index >= static_cast<int>(it->second->replicas.size())) {
                return;
              }
              it->second->replicas[static_cast<size_t>(index)]->move = true;
              wake_.notify_all();
            });
      }
      r.state = ReplicaState::kPending;
    }
    if (r.state == ReplicaState::kPending && r.admitted) r.state = ReplicaState::kRestarting;
    if (r.state == ReplicaState::kRestarting && now >= r.restart_at && r.admitted) {
      if (Status s = start_replica(live, r); !s.ok()) {
        r.last_exit = s.message();
        r.failures = options_.max_start_failures;  // the model or worker is gone: no retry
        r.state = ReplicaState::kFailed;
      }
    }
    if (r.state == ReplicaState::kFailed) last_error = r.last_exit;
  }
  if (d.replicas == 0) {
    set_status(live, DeploymentStatus::kStopped, "");
    return;
  }
  auto in_state = [](ReplicaState state) {
    return [state](const auto& r) { return r->state == state; };
  };
  const bool any_ready =
      std::any_of(live.replicas.begin(), live.replicas.end(), in_state(ReplicaState::kReady));
  const bool all_failed =
      std::all_of(live.replicas.begin(), live.replicas.end(), in_state(ReplicaState::kFailed));
  if (any_ready) {
    set_status(live, DeploymentStatus::kReady, "");
  } else if (all_failed) {
    set_status(live, DeploymentStatus::kFailed, "replicas keep failing: " + last_error);
    // Nobody can answer the queue now.
    for (auto& [t, q] : live.queues) {
      for (auto& c : q) {
        c->out->fail(unavailable(fmt::format("deployment '{}' failed: {}", d.id, last_error)));
      }
      q.clear();
    }
  } else {
    set_status(live, DeploymentStatus::kStarting, "");
  }
}

std::string Deployments::replica_key(const std::string& deployment, int index) {
  return fmt::format("{}/replica-{}", deployment, index);
}

void Deployments::release_devices(const Live& live, const Replica& replica) {
  if (replica.submitted) pools_.finish(replica_key(live.record.id, replica.index));
}

void Deployments::supervise() {
  for (;;) {
    std::vector<std::unique_ptr<executor::Worker>> to_stop;
    bool flush = false, accrue = false;
    // Whether each tenant's licence lets its replicas run, asked outside the lock (a ledger
    // read may be due).
    std::map<std::string, std::string> held;
    {
      std::lock_guard lock(mutex_);
      for (const auto& [id, live] : live_) {
        if (!live->record.tenant.empty()) held.emplace(live->record.tenant, "");
      }
    }
    for (auto& [tenant, reason] : held) reason = watch_.held(tenant);
    {
      std::unique_lock lock(mutex_);
      wake_.wait_for(lock, kTick, [&] { return stopping_ || events_pending_.load(); });
      if (stopping_) return;
      std::vector<ReplicaEvent> events;
      {
        std::lock_guard events_lock(events_mutex_);
        events.swap(replica_events_);
        events_pending_ = false;
      }
      for (const auto& e : events) {
        apply_replica_event(e.deployment, e.index, e.generation, e.line);
      }
      const auto now = SteadyClock::now();
      for (auto& [id, live] : live_) {
        const auto it = held.find(live->record.tenant);
        reconcile(*live, now, &to_stop, it == held.end() ? std::string() : it->second);
      }
      flush = now - last_flush_ >= kFlushEvery;
      accrue = !flush && now - last_accrued_ >= kAccrueEvery;
      if (accrue) last_accrued_ = now;
    }
    for (auto& p : to_stop) p->cancel(kStopGrace);
    if (flush) flush_usage();
    if (accrue) accrue_usage();
  }
}

// Runs on the supervisor's thread only, as flush_usage() does: what it writes was never
// recorded by a flush that ran after it.
void Deployments::accrue_usage() {
  std::map<std::pair<std::string, std::string>, Pending> pending;
  {
    std::lock_guard lock(mutex_);
    pending = usage_;
  }
  auto now = clock_.now();
  if (!now.ok() || pending.empty()) return;
  Status written = store_.write_usage(usage_records(pending, *now), true);
  if (!written.ok()) spdlog::warn("deployments: usage not accrued: {}", written.message());
}

std::vector<tenants::UsageRecord> Deployments::usage_records(
    const std::map<std::pair<std::string, std::string>, Pending>& pending, int64_t at) {
  std::vector<tenants::UsageRecord> out;
  for (const auto& [key, p] : pending) {
    const auto& [tenant, deployment] = key;
    auto one = [&](tenants::UsageDimension dim, double q) {
      // A staff deployment's device time is the platform's own; its tokens are the callers'.
      if (q <= 0 || tenant.empty()) return;
      out.push_back({tenant, at, dim, q, "deployment", deployment});
    };
    one(tenants::UsageDimension::kGpuSeconds, p.device_seconds);
    one(tenants::UsageDimension::kInputTokens, static_cast<double>(p.input_tokens));
    one(tenants::UsageDimension::kOutputTokens, static_cast<double>(p.output_tokens));
  }
  return out;
}

void Deployments::flush_usage() {
  std::map<std::pair<std::string, std::string>, Pending> pending;
  {
    std::lock_guard lock(mutex_);
    pending.swap(usage_);
    last_flush_ = SteadyClock::now();
  }
  auto now = clock_.now();
  if (!now.ok()) return;
  Status written = store_.write_usage(usage_records(pending, *now), false);
  if (!written.ok()) {
    spdlog::error("deployments: usage not recorded, kept for the next try: {}", written.message());
    std::lock_guard lock(mutex_);
    for (const auto& [key, p] : pending) {
      Pending& q = usage_[key];
      q.device_seconds += p.device_seconds;
      q.input_tokens += p.input_tokens;
      q.output_tokens += p.output_tokens;
    }
  }
}

}  // namespace mh::api
