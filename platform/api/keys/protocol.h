// Keys on the wire: platform-admin keys (tenants/admin_keys.h) and tenants' API keys
// (tenants/api_keys.h). A key just made carries its secret, shown this once, as "key".
#pragma once

#include <optional>
#include <string>

#include <boost/json/object.hpp>

#include "platform/base/status.h"
#include "tenants/admin_keys.h"
#include "tenants/api_keys.h"
#include "tenants/roles.h"

namespace mh::api {

struct KeyRequest {
  std::string name;
  tenants::Role role = tenants::Role::kDeveloper;
};

// A tenant key's {"name", "role"}: `name` is required unless `default_name` is given; `role`
// is owner, developer or viewer, `default_role` when absent.
Result<KeyRequest> parse_key_request(const boost::json::object& body,
                                     std::optional<std::string> default_name,
                                     tenants::Role default_role);
// An admin key's {"name"}, required.
Result<std::string> parse_admin_key_request(const boost::json::object& body);

boost::json::object key_json(const tenants::TenantKey& key);
boost::json::object admin_key_json(const tenants::AdminKey& key);
// The record of a key just made, with its secret as "key".
boost::json::object created_key_json(boost::json::object record, const std::string& secret);

}  // namespace mh::api
