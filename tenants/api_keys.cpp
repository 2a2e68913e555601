#include "tenants/api_keys.h"

#include <fmt/format.h>

#include "platform/base/api_key.h"
#include "platform/base/crypto.h"
#include "platform/base/time.h"
#include "platform/store/audit_log.h"
#include "tenants/tenant_scope.h"

namespace mh::tenants {
namespace {

constexpr std::string_view kColumns =
    "id, tenant_id, name, role, key_prefix, created_at, created_by, revoked_at";
constexpr size_t kMaxName = 200;

TenantKey from_row(const store::Row& r) {
  TenantKey k;
  k.id = r.text(0);
  k.tenant = r.text(1);
  k.name = r.text(2);
  k.role = parse_role(r.text(3)).value_or(Role::kViewer);
  k.prefix = r.text(4);
  k.created_at = r.integer(5);
  k.created_by = r.text(6);
  if (!r.is_null(7)) k.revoked_at = r.integer(7);
  return k;
}

}  // namespace

Result<NewTenantKey> TenantKeys::create(std::string_view tenant, std::string name, Role role,
                                        std::string_view actor) {
  if (name.empty() || name.size() > kMaxName) {
    return invalid_argument(fmt::format("name must be 1 to {} characters", kMaxName), "name");
  }
  NewTenantKey created;
  MH_TRY(db_.write([&](store::Session& s) -> Status {
    MH_TRY(s.query_one("SELECT id FROM tenants WHERE id = ?", {std::string(tenant)},
                       fmt::format("tenant '{}'", tenant))
               .status());
    ApiKeySecret key = new_api_key(kTenantKeyPrefix);
    created.secret = key.secret;
    TenantKey& r = created.record;
    r = {"key_" + secure_random_base64url(12),
         std::string(tenant),
         std::move(name),
         role,
         key.display_prefix,
         unix_seconds(),
         std::string(actor),
         std::nullopt};
    MH_TRY(s.exec("INSERT INTO api_keys (id, tenant_id, name, role, key_hash, key_prefix, "
                  "created_at, created_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                  {r.id, r.tenant, r.name, std::string(role_name(role)), key.sha256, r.prefix,
                   r.created_at, r.created_by})
               .status());
    return store::AuditLog::append(
        s, actor, "api_key.create", r.id,
        {{"tenant", r.tenant}, {"name", r.name}, {"role", role_name(role)}, {"prefix", r.prefix}});
  }));
  return created;
}

std::optional<TenantKey> TenantKeys::remembered(std::string_view secret) const {
  const std::string hash = sha256_hex(secret);
  std::lock_guard lock(mutex_);
  if (auto it = verified_.find(hash); it != verified_.end()) return it->second;
  return std::nullopt;
}

Result<TenantKey> TenantKeys::authenticate(std::string_view secret) const {
  const std::string hash = sha256_hex(secret);
  uint64_t generation = 0;
  {
    std::lock_guard lock(mutex_);
    if (auto it = verified_.find(hash); it != verified_.end()) return it->second;
    generation = generation_;
  }
  Result<TenantKey> found = unauthenticated("invalid or revoked API key");
  MH_TRY(db_.read([&](store::Session& s) -> Status {
    MH_ASSIGN_OR_RETURN(
        auto rows,
        s.query(fmt::format("SELECT {}, key_hash FROM api_keys WHERE key_hash = ?", kColumns),
                {hash}));
    // Looked up by hash, so timing says nothing of the key; compare in constant time anyway.
    if (rows.size() == 1 && constant_time_equal(rows[0].text(8), hash) && rows[0].is_null(7)) {
      found = from_row(rows[0]);
    }
    return {};
  }));
  if (found.ok()) {
    std::lock_guard lock(mutex_);
    if (generation_ == generation) verified_.emplace(hash, *found);
  }
  return found;
}

Result<std::vector<TenantKey>> TenantKeys::list(std::string_view tenant, std::string_view after,
                                                int64_t limit, bool* has_more) const {
  std::vector<TenantKey> out;
  MH_TRY(db_.read([&](store::Session& s) -> Status {
    TenantScope scope(s, std::string(tenant));
    MH_ASSIGN_OR_RETURN(auto rows, scope.page("api_keys", kColumns, after, limit, has_more));
    for (const auto& row : rows) out.push_back(from_row(row));
    return {};
  }));
  return out;
}

Result<TenantKey> TenantKeys::revoke(std::string_view tenant, std::string_view id,
                                     std::string_view actor) {
  TenantKey key;
  MH_TRY(db_.write([&](store::Session& s) -> Status {
    TenantScope scope(s, std::string(tenant));
    MH_ASSIGN_OR_RETURN(auto row, scope.get("api_keys", kColumns, id, "API key"));
    key = from_row(row);
    if (key.revoked_at) return {};
    if (key.role == Role::kOwner) {
      MH_ASSIGN_OR_RETURN(auto owners,
                          s.query_one("SELECT COUNT(*) FROM api_keys WHERE tenant_id = ? AND "
                                      "role = 'owner' AND revoked_at IS NULL",
                                      {std::string(tenant)}, "count"));
      if (owners.integer(0) <= 1) {
        return conflict(
            "cannot revoke the tenant's last owner key: create another owner key first");
      }
    }
    key.revoked_at = unix_seconds();
    MH_TRY(scope.update("api_keys", "revoked_at = ?", {*key.revoked_at}, id, "API key"));
    forget(key.id);  // before the commit, and again after it (below)
    return store::AuditLog::append(s, actor, "api_key.revoke", key.id,
                                   {{"tenant", key.tenant}, {"name", key.name}});
  }));
  forget(key.id);
  return key;
}

void TenantKeys::forget(const std::string& id) {
  std::lock_guard lock(mutex_);
  std::erase_if(verified_, [&](const auto& entry) { return entry.second.id == id; });
  ++generation_;
}

}  // namespace mh::tenants
