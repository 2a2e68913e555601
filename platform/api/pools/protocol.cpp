#include "platform/api/pools/protocol.h"

#include <boost/json.hpp>

#include <optional>

namespace mh::api {

namespace json = boost::json;

Result<scheduler::Quota> parse_quota(const json::object& body) {
  auto number = [&](const char* key, double fallback) -> std::optional<double> {
    const json::value* v = body.if_contains(key);
    if (v == nullptr) return fallback;
    if (!v->is_number()) return std::nullopt;
    return v->to_number<double>();
  };
  auto nominal = number("nominal", 0), borrowing = number("borrowing_limit", 0),
       weight = number("weight", 1);
  if (!nominal || !borrowing || !weight) {
    return invalid_argument("nominal, borrowing_limit and weight must be numbers");
  }
  return scheduler::Quota{static_cast<int64_t>(*nominal), static_cast<int64_t>(*borrowing),
                          *weight};
}

Result<PoolConfig> parse_slurm_pool(const json::object& body) {
  const json::value* name = body.if_contains("name");
  const json::value* executor = body.if_contains("executor");
  const json::value* nodes = body.if_contains("nodes");
  if (name == nullptr || !name->is_string() || nodes == nullptr || !nodes->is_array()) {
    return invalid_argument(
        "send {\"name\", \"executor\": \"slurm\", \"partition\"?, \"nodes\": "
        "[{\"name\", \"devices\", \"nvlink_domain\"?}]}");
  }
  if (executor == nullptr || !executor->is_string() || executor->as_string() != "slurm") {
    return invalid_argument("pools added here run through Slurm: \"executor\": \"slurm\"",
                            "executor");
  }
  PoolConfig pool;
  pool.name = std::string(name->as_string());
  if (const json::value* part = body.if_contains("partition"); part && part->is_string()) {
    pool.slurm_options.partition = std::string(part->as_string());
  }
  for (const auto& n : nodes->as_array()) {
    const json::object* o = n.if_object();
    const json::value* node = o ? o->if_contains("name") : nullptr;
    const json::value* devices = o ? o->if_contains("devices") : nullptr;
    const json::value* domain = o ? o->if_contains("nvlink_domain") : nullptr;
    if (node == nullptr || !node->is_string() || devices == nullptr || !devices->is_int64() ||
        (domain != nullptr && !domain->is_int64())) {
      return invalid_argument("each node is {\"name\", \"devices\", \"nvlink_domain\"?}", "nodes");
    }
    pool.nodes.push_back({std::string(node->as_string()),
                          static_cast<int32_t>(devices->as_int64()),
                          domain ? static_cast<int32_t>(domain->as_int64())
                                 : static_cast<int32_t>(pool.nodes.size())});
  }
  return pool;
}

json::object pools_json(const std::vector<PoolView>& pools) {
  json::array data;
  for (const PoolView& p : pools) {
    json::array nodes;
    for (const auto& n : p.nodes) {
      nodes.push_back({{"name", n.name},
                       {"devices", n.devices},
                       {"nvlink_domain", n.domain},
                       {"draining", n.draining}});
    }
    data.push_back({{"object", "pool"},
                    {"name", p.name},
                    {"kind", p.gpus ? "gpu" : "cpu"},
                    {"devices", p.devices},
                    {"free", p.free},
                    {"nodes", std::move(nodes)}});
  }
  return {{"object", "list"}, {"data", std::move(data)}};
}

json::object quotas_json(const std::vector<QuotaView>& quotas) {
  json::array data;
  for (const QuotaView& q : quotas) {
    data.push_back({{"pool", q.pool},
                    {"nominal", q.quota.nominal},
                    {"borrowing_limit", q.quota.borrowing_limit},
                    {"weight", q.quota.weight},
                    {"in_use", q.in_use},
                    {"queued", q.queued},
                    {"pool_devices", q.pool_devices},
                    {"pool_free", q.pool_free}});
  }
  return {{"object", "list"}, {"data", std::move(data)}};
}

}  // namespace mh::api
