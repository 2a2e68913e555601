// Usage on the wire (the service is tenants/usage_ledger.h): the query a tenant asks in the URL,
// and the totals it gets back, per bucket of time and per dimension (or subject).
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <boost/json/object.hpp>

#include "platform/api/transport.h"
#include "platform/base/status.h"
#include "tenants/usage_ledger.h"

namespace mh::api {

// ?start_time=&end_time= in Unix seconds, at most 366 days apart; by default the 30 days up to
// `now`.
Result<std::pair<int64_t, int64_t>> parse_period(const Request& request, int64_t now);

struct UsageRequest {
  tenants::UsageQuery query;
  std::string bucket_width;  // "1h", "1d" or "total"
};
// GET /v1/usage: the period, ?bucket_width=1h|1d|total (1d), ?group_by=subject,
// ?dimension=gpu_seconds|input_tokens|output_tokens|stored_bytes.
Result<UsageRequest> parse_usage_request(const Request& request, int64_t now);

// {"object": "usage", "tenant", "start_time", "end_time", "bucket_width", "data": lines,
// "totals": {dimension: sum}}.
boost::json::object usage_json(const std::string& tenant, const UsageRequest& asked,
                               const std::vector<tenants::UsageTotal>& totals);

}  // namespace mh::api
