// A deployment and its replicas' states, as the deployments service, its store and its protocol
// share them.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace mh::api {

// A deployment's status as the API shows it: starting until a replica is ready, ready while one
// is, stopped at zero replicas, failed when every replica keeps failing; deleted once gone.
enum class DeploymentStatus { kStarting, kReady, kStopped, kFailed, kDeleted };

std::string_view status_name(DeploymentStatus status);
// The status stored as `name`; nullopt for a name that is none.
std::optional<DeploymentStatus> parse_deployment_status(std::string_view name);

// Where a replica stands: waiting for devices (pending), its process started and not yet
// serving (starting), serving (ready), to be started again after a backoff (restarting), given
// up on (failed), or scaled away (stopped).
enum class ReplicaState { kPending, kStarting, kReady, kRestarting, kFailed, kStopped };

std::string_view state_name(ReplicaState state);

struct DeploymentRecord {
  std::string id;  // "dep-…"
  std::string tenant, model, pool;  // tenant "": staff's, for every tenant
  int64_t replicas = 1, devices_per_replica = 1;
  DeploymentStatus status = DeploymentStatus::kStarting;
  std::string error;
  int64_t created_at = 0, updated_at = 0;
};

}  // namespace mh::api
