#include "tenants/roles.h"

#include <array>

namespace mh::tenants {
namespace {

struct RoleRow {
  Role role;
  std::string_view name;
  bool read, write, infer, hold_seat, manage_keys;
};

// What each role may do. Change it here and in docs/tenants.md together.
constexpr std::array kRoleTable{
    //      role              name         read  write  infer  seat   keys
    RoleRow{Role::kOwner,     "owner",     true, true,  true,  true,  true},
    RoleRow{Role::kDeveloper, "developer", true, true,  true,  true,  false},
    RoleRow{Role::kViewer,    "viewer",    true, false, false, false, false},
};

const RoleRow& row(Role role) {
  for (const auto& r : kRoleTable) {
    if (r.role == role) return r;
  }
  return kRoleTable.back();  // unreachable: every role has a row
}

}  // namespace

bool allows(Role role, Permission permission) {
  const RoleRow& r = row(role);
  switch (permission) {
    case Permission::kRead: return r.read;
    case Permission::kWrite: return r.write;
    case Permission::kInfer: return r.infer;
    case Permission::kHoldSeat: return r.hold_seat;
    case Permission::kManageKeys: return r.manage_keys;
  }
  return false;
}

std::string_view role_name(Role role) { return row(role).name; }

std::optional<Role> parse_role(std::string_view name) {
  for (const auto& r : kRoleTable) {
    if (r.name == name) return r.role;
  }
  return std::nullopt;
}

std::string_view permission_name(Permission permission) {
  switch (permission) {
    case Permission::kRead: return "read";
    case Permission::kWrite: return "write";
    case Permission::kInfer: return "infer";
    case Permission::kHoldSeat: return "hold_seat";
    case Permission::kManageKeys: return "manage_keys";
  }
  return "unknown";
}

}  // namespace mh::tenants
