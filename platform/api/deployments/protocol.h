// The deployments' wire format: a creation or scaling request into typed values, refused by
// name, and the "deployment" object with its replicas as they stand.
#pragma once

#include <boost/json/object.hpp>

#include <optional>
#include <string>
#include <vector>

#include "platform/api/deployments/deployment.h"
#include "platform/base/status.h"

namespace mh::api {

inline constexpr int64_t kMaxReplicas = 64;
inline constexpr int64_t kMaxDevicesPerReplica = 8;

// POST /v1/deployments: {"model", "replicas"?, "pool"?, "devices_per_replica"?}, checked for
// form (whether the model and pool exist is the service's to say).
struct DeploymentRequest {
  std::string model;
  int64_t replicas = 1;
  std::optional<std::string> pool;
  int64_t devices_per_replica = 1;
};
Result<DeploymentRequest> parse_deployment_request(const boost::json::object& body);
// PATCH /v1/deployments/{id}: {"replicas": n}, 0 to stop serving.
Result<int64_t> parse_scale_request(const boost::json::object& body);

// A deployment as it stands: its record, and while the daemon runs it, its replicas.
struct DeploymentView {
  struct Replica {
    int index = 0;
    ReplicaState state = ReplicaState::kStarting;
    std::optional<int64_t> pid;         // a local worker's
    std::optional<std::string> worker;  // its launcher's handle
    int restarts = 0;
    int64_t started_at = 0;
    int in_flight = 0;
    std::string last_exit;
    boost::json::object stats;
    // While it waits for devices: its place in the queue and why.
    std::optional<std::pair<int64_t, std::string>> queue;
  };
  DeploymentRecord record;
  bool live = false;  // the daemon runs it (the rest is then set)
  int64_t queued_requests = 0;
  std::vector<Replica> replicas;
};
boost::json::object deployment_json(const DeploymentView& deployment);
boost::json::object deployment_deleted_json(const DeploymentRecord& deployment);

}  // namespace mh::api
