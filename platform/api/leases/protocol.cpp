#include "platform/api/leases/protocol.h"

#include <boost/json.hpp>

#include "platform/api/fields.h"

namespace mh::api {

namespace json = boost::json;

Result<LeaseRequest> parse_lease_request(const json::object& body) {
  LeaseRequest out;
  MH_ASSIGN_OR_RETURN(out.license_id, required_string(body, "license_id"));
  MH_ASSIGN_OR_RETURN(out.instance, required_string(body, "instance"));
  MH_ASSIGN_OR_RETURN(out.ttl_seconds, optional_integer(body, "ttl_seconds"));
  return out;
}

json::object lease_json(const licensing::Lease& l) {
  return {{"id", l.id},
          {"object", "lease"},
          {"license_id", l.license_id},
          {"tenant", l.tenant},
          {"instance", l.instance},
          {"ttl_seconds", l.ttl_seconds},
          {"created_at", l.created_at},
          {"expires_at", l.expires_at},
          {"released_at", l.released_at ? json::value(*l.released_at) : json::value(nullptr)}};
}

}  // namespace mh::api
