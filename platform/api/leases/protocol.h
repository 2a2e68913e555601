// Seat leases on the wire (the service is licensing/seat_leases.h).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include <boost/json/object.hpp>

#include "licensing/seat_leases.h"
#include "platform/base/status.h"

namespace mh::api {

struct LeaseRequest {
  std::string license_id;
  std::string instance;              // the caller's name for the running copy
  std::optional<int64_t> ttl_seconds;  // the service's default when absent
};

// POST /v1/leases: {"license_id", "instance", "ttl_seconds"}.
Result<LeaseRequest> parse_lease_request(const boost::json::object& body);

boost::json::object lease_json(const licensing::Lease& lease);

}  // namespace mh::api
