// Installed licences on the wire (the service is licensing/registry.h): the signed terms as the
// licence file states them, with where the licence stands on this platform.
#pragma once

#include <cstdint>
#include <string>

#include <boost/json/object.hpp>

#include "licensing/registry.h"
#include "platform/base/status.h"

namespace mh::api {

// POST /v1/admin/licenses: {"license": the licence file's text}.
Result<std::string> parse_install_request(const boost::json::object& body);
// POST /v1/admin/licenses/{id}/revoke: {"reason"}, optional.
Result<std::string> parse_revoke_request(const boost::json::object& body);

// The terms, plus "status" at `now` (the standing's name: "valid", "in its grace period", …;
// or "revoked", "invalid"),
// "active", "installed_at", "revoked_at", "revoke_reason", "invalid_reason".
boost::json::object license_json(const licensing::LicenseRecord& record, int64_t now);

}  // namespace mh::api
