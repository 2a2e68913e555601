// The pools' wire format: staff's requests (a tenant's quota on a pool, a pool of Slurm nodes)
// into typed values, refused by name; pools and a tenant's quotas as the API shows them.
#pragma once

#include <boost/json/object.hpp>

#include <vector>

#include "platform/api/pools/pool.h"
#include "platform/base/status.h"

namespace mh::api {

// PUT /v1/admin/tenants/{id}/quotas/{pool}: {"nominal", "borrowing_limit", "weight"}, each a
// number (absent: 0, 0 and 1).
Result<scheduler::Quota> parse_quota(const boost::json::object& body);
// POST /v1/admin/pools: {"name", "executor": "slurm", "partition"?, "nodes": [{"name",
// "devices", "nvlink_domain"?}]}. (Names and sizes are checked against the pools there are.)
Result<PoolConfig> parse_slurm_pool(const boost::json::object& body);

// {"object": "list", "data": [{"object": "pool", …}]}
boost::json::object pools_json(const std::vector<PoolView>& pools);
// {"object": "list", "data": [{"pool", "nominal", …}]}
boost::json::object quotas_json(const std::vector<QuotaView>& quotas);

}  // namespace mh::api
