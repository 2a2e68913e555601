#include "platform/api/deployments/protocol.h"

#include <fmt/format.h>

#include <boost/json.hpp>

namespace mh::api {

namespace json = boost::json;

namespace {

Result<int64_t> replicas_field(const json::object& body, int64_t fallback, int64_t lo) {
  const json::value* v = body.if_contains("replicas");
  if (v == nullptr || v->is_null()) return fallback;
  if (!v->is_int64() || v->as_int64() < lo || v->as_int64() > kMaxReplicas) {
    return invalid_argument(
        fmt::format("\"replicas\" must be an integer in [{}, {}]", lo, kMaxReplicas), "replicas");
  }
  return v->as_int64();
}

json::value string_or_null(const std::string& s) {
  return s.empty() ? json::value(nullptr) : json::value(s);
}

}  // namespace

Result<DeploymentRequest> parse_deployment_request(const json::object& body) {
  DeploymentRequest r;
  const json::value* model = body.if_contains("model");
  if (model == nullptr || !model->is_string() || model->as_string().empty()) {
    return invalid_argument("\"model\" must name one of your models", "model");
  }
  r.model = std::string(model->as_string());
  MH_ASSIGN_OR_RETURN(r.replicas, replicas_field(body, 1, 1));
  if (const json::value* v = body.if_contains("pool"); v != nullptr && !v->is_null()) {
    if (!v->is_string()) return invalid_argument("\"pool\" must be a pool's name", "pool");
    r.pool = std::string(v->as_string());
  }
  if (const json::value* v = body.if_contains("devices_per_replica");
      v != nullptr && !v->is_null()) {
    if (!v->is_int64() || v->as_int64() < 1 || v->as_int64() > kMaxDevicesPerReplica) {
      return invalid_argument(fmt::format("\"devices_per_replica\" must be an integer in [1, {}]",
                                          kMaxDevicesPerReplica),
                              "devices_per_replica");
    }
    r.devices_per_replica = v->as_int64();
  }
  return r;
}

Result<int64_t> parse_scale_request(const json::object& body) {
  if (!body.contains("replicas")) {
    return invalid_argument("send {\"replicas\": n} to scale", "replicas");
  }
  return replicas_field(body, 0, 0);
}

json::object deployment_json(const DeploymentView& view) {
  const DeploymentRecord& d = view.record;
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
                 {"error", string_or_null(d.error)}};
  json::array replicas;
  int64_t ready = 0;
  if (view.live) {
    o["queued_requests"] = view.queued_requests;
    for (const auto& r : view.replicas) {
      if (r.state == ReplicaState::kReady) ++ready;
      json::object ro{{"index", r.index},
                      {"state", state_name(r.state)},
                      {"pid", r.pid ? json::value(*r.pid) : json::value(nullptr)},
                      {"worker", r.worker ? json::value(*r.worker) : json::value(nullptr)},
                      {"restarts", r.restarts},
                      {"started_at", r.started_at},
                      {"in_flight", r.in_flight},
                      {"last_exit", string_or_null(r.last_exit)}};
      ro["stats"] = r.stats;
      if (r.queue) ro["queue"] = {{"position", r.queue->first}, {"reason", r.queue->second}};
      replicas.push_back(std::move(ro));
    }
  }
  o["ready_replicas"] = ready;
  o["replica_status"] = std::move(replicas);
  return o;
}

json::object deployment_deleted_json(const DeploymentRecord& d) {
  return {{"id", d.id}, {"object", "deployment"}, {"deleted", true}};
}

}  // namespace mh::api
