// Roles and what each may do: the one table (kRoleTable in roles.cpp) that every tenant route's
// access check reads, mirrored in docs/tenants.md.
#pragma once

#include <optional>
#include <string_view>

namespace mh::tenants {

enum class Role { kOwner, kDeveloper, kViewer };

enum class Permission {
  kRead,        // list and read the tenant's resources, usage and quotas
  kWrite,       // create, change and delete resources: files, jobs, models, deployments
  kInfer,       // call completions on the tenant's deployments
  kHoldSeat,    // check out and renew SDK seat leases
  kManageKeys,  // create, list and revoke the tenant's API keys
};

bool allows(Role role, Permission permission);
std::string_view role_name(Role role);
std::optional<Role> parse_role(std::string_view name);
std::string_view permission_name(Permission permission);

}  // namespace mh::tenants
