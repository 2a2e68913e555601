#include "platform/api/deployments.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <boost/json.hpp>
#include <thread>

#include "platform/api/deployment_runtime.h"
#include "platform/base/crypto.h"
#include "platform/base/enum_names.h"
#include "platform/base/files.h"
#include "platform/base/time.h"
#include "platform/executor/launcher.h"
#include "platform/executor/worker_contract.h"
#include "tenants/roles.h"
#include "tenants/tenant_scope.h"

namespace mh::api {

namespace json = boost::json;
namespace fs = std::filesystem;
using SteadyClock = std::chrono::steady_clock;

namespace {

constexpr std::string_view kColumns =
    "id, tenant_id, model, pool, replicas, devices_per_replica, status, error, created_at, "
    "updated_at";
constexpr std::string_view kDefaultPool = "default";
constexpr int64_t kMaxReplicas = 64;
constexpr int64_t kMaxDevicesPerReplica = 8;
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

DeploymentRecord from_row(const store::Row& r) {
  DeploymentRecord d;
  d.id = r.text(0);
  d.tenant = r.is_null(1) ? std::string() : r.text(1);  // NULL: staff's, for every tenant
  d.model = r.text(2);
  d.pool = r.text(3);
  d.replicas = r.integer(4);
  d.devices_per_replica = r.integer(5);
  // A name the store holds that is no status (written by a newer daemon): starting, which
  // the supervisor corrects at its first tick.
  d.status = parse_deployment_status(r.text(6)).value_or(DeploymentStatus::kStarting);
  d.error = r.is_null(7) ? std::string() : r.text(7);
  d.created_at = r.integer(8);
  d.updated_at = r.integer(9);
  return d;
}

Result<int64_t> replicas_field(const json::object& body, int64_t fallback, int64_t lo) {
  const json::value* v = body.if_contains("replicas");
  if (v == nullptr || v->is_null()) return fallback;
  if (!v->is_int64() || v->as_int64() < lo || v->as_int64() > kMaxReplicas) {
    return invalid_argument(
        fmt::format("\"replicas\" must be an integer in [{}, {}]", lo, kMaxReplicas), "replicas");
  }
  return v->as_int64();
}

// A local worker's pid, for operators (null for a worker elsewhere).
json::value pid_of(const executor::Worker* w) {
  if (w == nullptr) return nullptr;
  const std::string handle = w->handle();
  if (!handle.starts_with("pid:")) return nullptr;
  return std::atoll(handle.c_str() + 4);
}

}  // namespace

namespace {
constexpr EnumNames<DeploymentStatus, 5> kStatusNames(
    {"starting", "ready", "stopped", "failed", "deleted"});
constexpr EnumNames<ReplicaState, 6> kStateNames(
    {"pending", "starting", "ready", "restarting", "failed", "stopped"});
}  // namespace

std::string_view status_name(DeploymentStatus status) { return kStatusNames.name(status); }

std::optional<DeploymentStatus> parse_deployment_status(std::string_view name) {
  return kStatusNames.parse(name);
}

std::string_view state_name(ReplicaState state) { return kStateNames.name(state); }

Deployments::Deployments(store::Database& db, ModelStore& models,
                         const licensing::Entitlements& entitlements, tenants::UsageLedger& ledger,
                         DeviceHoldings& holdings, LicenceWatch& watch, Pools& pools,
                         licensing::TrustedClock& clock, boost::asio::io_context& io,
                         DeploymentOptions options)
    : db_(db),
      models_(models),
      entitlements_(entitlements),
      ledger_(ledger),
      holdings_(holdings),
      watch_(watch),
      pools_(pools),
      clock_(clock),
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
  std::vector<DeploymentRecord> all;
  MH_TRY(db_.read([&](store::Session& s) -> Status {
    MH_ASSIGN_OR_RETURN(
        auto rows,
        s.query(fmt::format("SELECT {} FROM deployments ORDER BY created_at, id", kColumns)));
    for (const auto& r : rows) all.push_back(from_row(r));
    return {};
  }));
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

Status Deployments::admit(store::Session& s, const std::string& tenant,
                          const DeploymentRecord& wanted, const std::string& replacing) const {
  MH_ASSIGN_OR_RETURN(int64_t now, clock_.now());
  // Several devices for one replica is multi-GPU work, licensed as a job's ranks are.
  if (wanted.devices_per_replica > 1) MH_TRY(entitlements_.check(tenant, "multi_gpu", now));
  MH_TRY(admit_devices(entitlements_, ledger_, &holdings_, tenant, "deploy", wanted.pool, replacing,
                       wanted.replicas * wanted.devices_per_replica, now));
  // max_deployments counts the deployments that serve (replicas > 0): one scaled to zero holds
  // nothing and does not count until it is scaled up again.
  if (wanted.replicas == 0) return {};
  MH_ASSIGN_OR_RETURN(auto row, s.query_one("SELECT COUNT(*) FROM deployments WHERE tenant_id = ? "
                                            "AND replicas > 0 AND id <> ?",
                                            {tenant, replacing}, "count"));
  const int64_t deployments = row.integer(0);
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
  const json::value* model = body.if_contains("model");
  if (model == nullptr || !model->is_string() || model->as_string().empty()) {
    return invalid_argument("\"model\" must name one of your models", "model");
  }
  d.model = std::string(model->as_string());
  MH_ASSIGN_OR_RETURN(d.replicas, replicas_field(body, 1, 1));
  d.pool = std::string(kDefaultPool);
  if (const json::value* v = body.if_contains("pool"); v != nullptr && !v->is_null()) {
    if (!v->is_string()) return invalid_argument("\"pool\" must be a pool's name", "pool");
    d.pool = std::string(v->as_string());
    if (!pools_.has_pool(d.pool)) {
      return not_found(fmt::format("pool '{}' does not exist", d.pool));
    }
  }
  if (const json::value* v = body.if_contains("devices_per_replica");
      v != nullptr && !v->is_null()) {
    if (!v->is_int64() || v->as_int64() < 1 || v->as_int64() > kMaxDevicesPerReplica) {
      return invalid_argument(fmt::format("\"devices_per_replica\" must be an integer in [1, {}]",
                                          kMaxDevicesPerReplica),
                              "devices_per_replica");
    }
    d.devices_per_replica = v->as_int64();
  }
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
  const Status stored = db_.write([&](store::Session& s) -> Status {
    if (!shared) MH_TRY(admit(s, tenant, d, ""));
    MH_TRY(s.exec(fmt::format("INSERT INTO deployments ({}) VALUES (?, ?, ?, ?, ?, ?, ?, NULL, "
                              "?, ?)",
                              kColumns),
                  {d.id, store::text_or_null(d.tenant), d.model, d.pool, d.replicas,
                   d.devices_per_replica, std::string(status_name(d.status)), d.created_at,
                   d.updated_at})
               .status());
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
  DeploymentRecord d;
  MH_TRY(db_.read([&](store::Session& s) -> Status {
    if (tenant.empty()) {
      MH_ASSIGN_OR_RETURN(auto rows, s.query(fmt::format("SELECT {} FROM deployments WHERE id = ? "
                                                         "AND tenant_id IS NULL",
                                                         kColumns),
                                             {std::string(id)}));
      if (rows.empty()) return not_found(fmt::format("deployment '{}' not found", id));
      d = from_row(rows[0]);
      return {};
    }
    tenants::TenantScope scope(s, std::string(tenant));
    MH_ASSIGN_OR_RETURN(auto row, scope.get("deployments", kColumns, id, "deployment"));
    d = from_row(row);
    return {};
  }));
  return d;
}

Result<std::vector<DeploymentRecord>> Deployments::list(std::string_view tenant,
                                                        std::string_view after, int64_t limit,
                                                        bool* has_more) const {
  std::vector<DeploymentRecord> out;
  MH_TRY(db_.read([&](store::Session& s) -> Status {
    if (tenant.empty()) {  // staff's: every one, in the order they were made
      MH_ASSIGN_OR_RETURN(
          auto rows,
          s.query(fmt::format("SELECT {} FROM deployments WHERE tenant_id IS NULL AND rowid > "
                              "coalesce((SELECT rowid FROM deployments WHERE id = ?), 0) ORDER BY "
                              "rowid LIMIT ?",
                              kColumns),
                  {std::string(after), limit + 1}));
      *has_more = static_cast<int64_t>(rows.size()) > limit;
      for (size_t i = 0; i < rows.size() && static_cast<int64_t>(i) < limit; ++i) {
        out.push_back(from_row(rows[i]));
      }
      return {};
    }
    tenants::TenantScope scope(s, std::string(tenant));
    MH_ASSIGN_OR_RETURN(auto rows, scope.page("deployments", kColumns, after, limit, has_more));
    for (const auto& r : rows) out.push_back(from_row(r));
    return {};
  }));
  return out;
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
  const Status stored = db_.write([&](store::Session& s) -> Status {
    if (replicas > scaled_from && !d.tenant.empty()) MH_TRY(admit(s, d.tenant, wanted, d.id));
    MH_TRY(s.exec("UPDATE deployments SET replicas = ?, status = ?, error = ?, updated_at = ? "
                  "WHERE id = ?",
                  {d.replicas, std::string(status_name(d.status)), store::text_or_null(d.error),
                   d.updated_at, d.id})
               .status());
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
  MH_TRY(db_.write([&](store::Session& s) -> Status {
    return s.exec("DELETE FROM deployments WHERE id = ?", {d.id}).status();
  }));
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

json::object Deployments::describe(const DeploymentRecord& d) const {
  json::object o{{"object", "deployment"},
                 {"id", d.id},
                 {"owned_by", d.tenant.empty() ? std::string("macrohard") : d.tenant},
                 {"model", d.model},
                 {"pool", d.pool},
                 {"replicas", d.replicas},
                 {"devices_per_replica", d.devices_per_replica},
                 {"status", status_name(d.status)},
                 {"created_at", d.created_at},
                 {"updated_at", d.updated_at},
                 {"error", d.error.empty() ? json::value(nullptr) : json::value(d.error)}};
  json::array replicas;
  int64_t ready = 0;
  {
    std::lock_guard lock(mutex_);
    if (auto it = live_.find(d.id); it != live_.end()) {
      o["status"] = status_name(it->second->record.status);
      o["error"] = it->second->record.error.empty() ? json::value(nullptr)
                                                    : json::value(it->second->record.error);
      int64_t queued = 0;
      for (const auto& [t, q] : it->second->queues) queued += static_cast<int64_t>(q.size());
      o["queued_requests"] = queued;
      for (const auto& r : it->second->replicas) {
        if (r->state == ReplicaState::kReady) ++ready;
        json::object ro{
            {"index", r->index},
            {"state", state_name(r->state)},
            {"pid", pid_of(r->process.get())},
            {"worker", r->process ? json::value(r->process->handle()) : json::value(nullptr)},
            {"restarts", r->restarts},
            {"started_at", r->started_at},
            {"in_flight", r->in_flight},
            {"last_exit", r->last_exit.empty() ? json::value(nullptr) : json::value(r->last_exit)}};
        ro["stats"] = r->stats;
        if (r->state == ReplicaState::kPending) {
          if (auto info = pools_.pending(replica_key(d.id, r->index))) {
            ro["queue"] = {{"position", info->position}, {"reason", info->reason}};
          }
        }
        replicas.push_back(std::move(ro));
      }
    }
  }
  o["ready_replicas"] = ready;
  o["replica_status"] = std::move(replicas);
  return o;
}

void Deployments::set_status(Live& live, DeploymentStatus status, const std::string& error) {
  if (live.record.status == status && live.record.error == error && !live.status_unsaved) return;
  live.record.status = status;
  live.record.error = error;
  spdlog::info("deployment {}: {}{}", live.record.id, status_name(status),
               error.empty() ? "" : ": " + error);
  const Status saved = db_.write([&](store::Session& s) -> Status {
    return s
        .exec("UPDATE deployments SET status = ?, error = ? WHERE id = ?",
              {std::string(status_name(status)), store::text_or_null(error), live.record.id})
        .status();
  });
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
  spec.sandbox.read = {model.directory};
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
  Status written = db_.write([&](store::Session& s) -> Status {
    return for_each_usage(pending, *now, [&s](const tenants::UsageRecord& r) {
      return tenants::UsageLedger::accrue(s, r);
    });
  });
  if (!written.ok()) spdlog::warn("deployments: usage not accrued: {}", written.message());
}

Status Deployments::for_each_usage(
    const std::map<std::pair<std::string, std::string>, Pending>& pending, int64_t at,
    const std::function<Status(const tenants::UsageRecord&)>& f) {
  for (const auto& [key, p] : pending) {
    const auto& [tenant, deployment] = key;
    auto one = [&](tenants::UsageDimension dim, double q) -> Status {
      // A staff deployment's device time is the platform's own; its tokens are the callers'.
      if (q <= 0 || tenant.empty()) return {};
      return f({tenant, at, dim, q, "deployment", deployment});
    };
    MH_TRY(one(tenants::UsageDimension::kGpuSeconds, p.device_seconds));
    MH_TRY(one(tenants::UsageDimension::kInputTokens, static_cast<double>(p.input_tokens)));
    MH_TRY(one(tenants::UsageDimension::kOutputTokens, static_cast<double>(p.output_tokens)));
  }
  return {};
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
  Status written = db_.write([&](store::Session& s) -> Status {
    return for_each_usage(pending, *now, [&s](const tenants::UsageRecord& r) {
      return tenants::UsageLedger::record(s, r);
    });
  });
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

namespace {

// The deployment routes under `prefix`, for the deployments of whoever `owner` names: the
// caller's tenant (/v1/deployments), or "" for staff's (/v1/admin/deployments).
void add_crud_routes(Router& router, Deployments& deployments, const std::string& prefix,
                     Access read, Access write, std::string (*owner)(const Request&)) {
  router.add("POST", prefix, write, [&deployments, owner](Request& request) {
    auto body = parse_json_object(request);
    if (!body.ok()) return Response::error(body.status());
    auto d = deployments.create(owner(request), *body);
    if (!d.ok()) return Response::error(d.status());
    return Response::json(200, deployments.describe(*d));
  });
  router.add("GET", prefix, read, [&deployments, owner](Request& request) {
    auto page = parse_page(request, 20, 100);
    if (!page.ok()) return Response::error(page.status());
    bool has_more = false;
    auto list = deployments.list(owner(request), page->after, page->limit, &has_more);
    if (!list.ok()) return Response::error(list.status());
    json::array data;
    for (const auto& d : *list) data.push_back(deployments.describe(d));
    return list_response(std::move(data), has_more);
  });
  router.add("GET", prefix + "/{id}", read, [&deployments, owner](Request& request) {
    auto d = deployments.get(owner(request), request.param("id"));
    if (!d.ok()) return Response::error(d.status());
    return Response::json(200, deployments.describe(*d));
  });
  router.add("PATCH", prefix + "/{id}", write, [&deployments, owner](Request& request) {
    auto body = parse_json_object(request);
    if (!body.ok()) return Response::error(body.status());
    if (!body->contains("replicas")) {
      return Response::error(invalid_argument("send {\"replicas\": n} to scale", "replicas"));
    }
    auto n = replicas_field(*body, 0, 0);
    if (!n.ok()) return Response::error(n.status());
    auto d = deployments.scale(owner(request), request.param("id"), *n);
    if (!d.ok()) return Response::error(d.status());
    return Response::json(200, deployments.describe(*d));
  });
  router.add("DELETE", prefix + "/{id}", write, [&deployments, owner](Request& request) {
    auto d = deployments.remove(owner(request), request.param("id"));
    if (!d.ok()) return Response::error(d.status());
    return Response::json(200,
                          json::object{{"id", d->id}, {"object", "deployment"}, {"deleted", true}});
  });
}

}  // namespace

void add_deployment_routes(Router& router, Deployments& deployments) {
  using tenants::Permission;
  add_crud_routes(router, deployments, "/v1/deployments", Access::tenant(Permission::kRead),
                  Access::tenant(Permission::kWrite),
                  [](const Request& r) { return r.principal.tenant; });
  // Staff deployments of base models, which every tenant may call.
  add_crud_routes(router, deployments, "/v1/admin/deployments", Access::kAdmin, Access::kAdmin,
                  [](const Request&) { return std::string(); });
  router.add("POST", "/v1/completions", Access::tenant(Permission::kInfer),
             [&deployments](Request& request) { return deployments.infer(request, false); });
  router.add("POST", "/v1/chat/completions", Access::tenant(Permission::kInfer),
             [&deployments](Request& request) { return deployments.infer(request, true); });
}

}  // namespace mh::api
