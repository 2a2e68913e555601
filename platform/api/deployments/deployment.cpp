#include "platform/api/deployments/deployment.h"

#include "platform/base/enum_names.h"

namespace mh::api {

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

}  // namespace mh::api
