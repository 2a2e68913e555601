// Deployments: a tenant's model served by replicas (mh-worker serve processes) on a pool, and
// the OpenAI-compatible inference paths that reach them (records in deployment.h, SQL in
// store.h, the wire format in protocol.h, the HTTP routes in routes.h; what the service keeps
// in memory in runtime.h, the request path in inference.cpp).
//
//   POST/GET /v1/deployments, GET/PATCH/DELETE /v1/deployments/{id}
//   POST /v1/completions, POST /v1/chat/completions
//
// A deployment's states: starting (no replica ready yet) -> ready (at least one answers) ->
// failed (replicas keep dying before they are ready) or stopped (scaled to zero replicas).
// A supervisor thread keeps each deployment at its replica count: it starts replicas, restarts
// those that die (with back-off), stops extra ones, meters device-seconds and tokens into the
// usage ledger, and, after a daemon restart, brings every deployment back from the store.
//
// A completion names a deployment id or a model (or a LoRA adapter of the tenant's, which a
// ready deployment of its base answers: many adapters share one deployment); it waits in its
// tenant's queue in front of the deployment until a replica has room (queues are served
// round-robin across tenants, so one tenant's burst does not starve another's requests), then
// is relayed to the replica, streaming as it goes. A client that goes away cancels its request, in the queue or on the replica.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "platform/api/context.h"
#include "platform/api/deployments/deployment.h"
#include "platform/api/deployments/protocol.h"
#include "platform/api/deployments/store.h"
#include "platform/api/models/service.h"
#include "platform/api/pools/service.h"
#include "platform/api/transport.h"
#include "platform/executor/sandbox.h"
#include "platform/executor/worker_process.h"

namespace boost::asio {
class io_context;
}

namespace mh::api {

struct DeploymentOptions {
  std::filesystem::path root;    // replicas' working directories: root/<tenant>/<deployment>/
  std::filesystem::path worker;  // mh-worker
  int threads_per_replica = 0;   // CPU threads per replica (MH_THREADS); 0: the worker decides
  int max_batch = 64;            // sequences a replica decodes at once
  int max_queue = 1024;          // requests waiting per deployment (all tenants) before 429
  int max_queue_per_tenant = 256;  // requests one tenant may have waiting on one deployment
  std::chrono::milliseconds restart_backoff{500};  // doubles per failure in a row, up to 30 s
  int max_start_failures = 5;  // replicas dying before ready this many times: deployment failed
  // What contains a local replica: enabled and the limits (each replica adds its model).
  executor::Sandbox sandbox;
  // Where tenants' LoRA adapters live, a directory per tenant under each root (jobs' outputs,
  // registered models). A tenant's replicas may read that tenant's directories, a staff
  // replica every tenant's; the daemon names in each request an adapter of its tenant alone.
  std::vector<std::filesystem::path> adapter_roots;
  int max_adapters = 8;  // adapters a replica keeps loaded at once
  int prefix_cache_mb = 256;  // MiB of prompts' KV caches a replica keeps for reuse
};

class Deployments {
 public:
  // Requests are relayed to replicas on `io` (the daemon's HTTP io_context), holding no thread;
  // `io` must not run its handlers once this object is gone (the daemon joins its threads
  // first).
  Deployments(const Context& context, Models& models, Pools& pools,
              boost::asio::io_context& io, DeploymentOptions options);
  ~Deployments();  // stops the supervisor and every replica
  Deployments(const Deployments&) = delete;
  Deployments& operator=(const Deployments&) = delete;

  // Loads the deployments a previous daemon left and starts their replicas and the supervisor.
  Status start();

  Result<DeploymentRecord> create(const std::string& tenant, const boost::json::object& body);
  Result<DeploymentRecord> get(std::string_view tenant, std::string_view id) const;
  Result<std::vector<DeploymentRecord>> list(std::string_view tenant, std::string_view after,
                                             int64_t limit, bool* has_more) const;
  Result<DeploymentRecord> scale(std::string_view tenant, std::string_view id, int64_t replicas);
  Result<DeploymentRecord> remove(std::string_view tenant, std::string_view id);
  // The deployment and its replicas as they stand now (what the API shows).
  DeploymentView view(const DeploymentRecord& d) const;

  // POST /v1/completions (chat = false) and /v1/chat/completions: the response streams back
  // from a replica.
  Response infer(Request& request, bool chat);

 private:
  struct Replica;
  struct Call;
  struct Live;

  void supervise();
  // Brings the replicas toward the record; `held` is why the tenant's licence does not let its
  // work run now ("" while it does).
  void reconcile(Live& live, std::chrono::steady_clock::time_point now,
                 std::vector<std::unique_ptr<executor::Worker>>* to_stop, const std::string& held);
  Status start_replica(Live& live, Replica& replica);
  // The scheduler's name for a replica's devices.
  static std::string replica_key(const std::string& deployment, int index);
  void release_devices(const Live& live, const Replica& replica);
  void on_replica_event(const std::string& deployment, int index, uint64_t generation,
                        std::string_view line);
  void apply_replica_event(const std::string& deployment, int index, uint64_t generation,
                           std::string_view line);  // with mutex_ held
  // Sets and saves the deployment's status; a failed save is logged and retried at the next
  // call (the supervisor sets the status every tick).
  void set_status(Live& live, DeploymentStatus status, const std::string& error);
  // A replica a dead daemon ran (`handle`: "pid:<n>"): waited for, and billed from the dead
  // daemon's last accrual to when it is gone.
  void bill_stopped_replica(const DeploymentRecord& d, const std::string& handle);
  void flush_usage();   // pending usage into the ledger, every kFlushEvery
  void accrue_usage();  // and beside it in between, every second
  // The licence's checks on `wanted` (new, or `replacing`'s new replica count), run inside the
  // write transaction that stores it, so parallel requests cannot pass a limit together.
  // `serving`: the tenant's other deployments that serve, as DeploymentStore::Admit gives it.
  Status admit(const std::string& tenant, const DeploymentRecord& wanted,
               const std::string& replacing,
               const std::function<Result<int64_t>()>& serving) const;

  // The request path (inference.cpp).
  void dispatch(Live& live);  // with mutex_ held: starts what the replicas have room for
  void relay(std::shared_ptr<Call> call, std::shared_ptr<Replica> replica);
  void finish_call(const std::string& deployment, const std::shared_ptr<Replica>& replica);

  const Context context_;
  DeploymentStore store_;
  Models& models_;
  const licensing::Entitlements& entitlements_;
  tenants::UsageLedger& ledger_;
  DeviceHoldings& holdings_;
  LicenceWatch& watch_;
  Pools& pools_;
  licensing::TrustedClock& clock_;
  const DeploymentOptions options_;

  mutable std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::map<std::string, std::shared_ptr<Live>> live_;  // by deployment id
  // Usage not yet in the ledger: (tenant, subject) -> (device-seconds, input, output tokens).
  struct Pending {
    double device_seconds = 0;
    int64_t input_tokens = 0, output_tokens = 0;
  };
  std::map<std::pair<std::string, std::string>, Pending> usage_;
  std::chrono::steady_clock::time_point last_flush_, last_accrued_;
  // `pending`'s amounts as the ledger records them, at `at`.
  static std::vector<tenants::UsageRecord> usage_records(
      const std::map<std::pair<std::string, std::string>, Pending>& pending, int64_t at);
  std::thread supervisor_;
  struct ReplicaEvent {
    std::string deployment;
    int index;
    uint64_t generation;
    std::string line;
  };
  std::mutex events_mutex_;
  std::vector<ReplicaEvent> replica_events_;
  std::atomic<bool> events_pending_{false};

  // Relay threads: one per request on a replica, reused.
  boost::asio::io_context& io_;
  // Relays under way (their connections' handlers still to run); the destructor waits for them.
  std::mutex relay_mutex_;
  std::condition_variable relay_done_;
  int relays_ = 0;
};

}  // namespace mh::api
