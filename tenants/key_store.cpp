#include "tenants/key_store.h"

#include <fmt/format.h>

#include "platform/base/crypto.h"
#include "platform/store/audit_log.h"
#include "tenants/tenant_scope.h"

namespace mh::tenants {

namespace {

constexpr std::string_view kTenantKeyColumns =
    "id, tenant_id, name, role, key_prefix, created_at, created_by, revoked_at";
constexpr std::string_view kAdminKeyColumns = "id, name, key_prefix, created_at, revoked_at";
constexpr std::string_view kBootstrapMeta = "admin_bootstrapped_at";

TenantKey tenant_key_from(const store::Row& r) {
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

AdminKey admin_key_from(const store::Row& row) {
  AdminKey key{row.text(0), row.text(1), row.text(2), row.integer(3), std::nullopt};
  if (!row.is_null(4)) key.revoked_at = row.integer(4);
  return key;
}

// The row of the live key with this hash in `table` (whose hash is the column after
// `columns`), or nullptr. The lookup is by hash, so timing reveals nothing of the key; the
// comparison is constant-time anyway.
Result<std::optional<store::Row>> live_by_hash(store::Session& s, std::string_view table,
                                               std::string_view columns, size_t revoked_column,
                                               const std::string& sha256) {
  MH_ASSIGN_OR_RETURN(
      auto rows,
      s.query(fmt::format("SELECT {}, key_hash FROM {} WHERE key_hash = ?", columns, table),
              {sha256}));
  if (rows.size() == 1 && constant_time_equal(rows[0].text(revoked_column + 1), sha256) &&
      rows[0].is_null(revoked_column)) {
    return std::optional<store::Row>(rows[0]);
  }
  return std::optional<store::Row>();
}

Status insert_admin(store::Session& s, const AdminKey& key, const std::string& sha256,
                    std::string_view actor) {
  MH_TRY(s.exec("INSERT INTO admin_keys (id, name, key_hash, key_prefix, created_at) "
                "VALUES (?, ?, ?, ?, ?)",
                {key.id, key.name, sha256, key.prefix, key.created_at})
             .status());
  return store::AuditLog::append(s, actor, "admin_key.create", key.id,
                                 {{"name", key.name}, {"prefix", key.prefix}});
}

}  // namespace

Status KeyStore::insert(const TenantKey& r, const std::string& sha256) {
  return db_.write([&](store::Session& s) -> Status {
    MH_TRY(s.query_one("SELECT id FROM tenants WHERE id = ?", {r.tenant},
                       fmt::format("tenant '{}'", r.tenant))
               .status());
    MH_TRY(s.exec("INSERT INTO api_keys (id, tenant_id, name, role, key_hash, key_prefix, "
                  "created_at, created_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                  {r.id, r.tenant, r.name, std::string(role_name(r.role)), sha256, r.prefix,
                   r.created_at, r.created_by})
               .status());
    return store::AuditLog::append(s, r.created_by, "api_key.create", r.id,
                                   {{"tenant", r.tenant},
                                    {"name", r.name},
                                    {"role", role_name(r.role)},
                                    {"prefix", r.prefix}});
  });
}

Result<TenantKey> KeyStore::live_tenant_key(const std::string& sha256) const {
  Result<TenantKey> found = unauthenticated("invalid or revoked API key");
  MH_TRY(db_.read([&](store::Session& s) -> Status {
    MH_ASSIGN_OR_RETURN(auto row, live_by_hash(s, "api_keys", kTenantKeyColumns, 7, sha256));
    if (row) found = tenant_key_from(*row);
    return {};
  }));
  return found;
}

Result<std::vector<TenantKey>> KeyStore::list(std::string_view tenant, std::string_view after,
                                              int64_t limit, bool* has_more) const {
  std::vector<TenantKey> out;
  MH_TRY(db_.read([&](store::Session& s) -> Status {
    TenantScope scope(s, std::string(tenant));
    MH_ASSIGN_OR_RETURN(auto rows,
                        scope.page("api_keys", kTenantKeyColumns, after, limit, has_more));
    for (const auto& row : rows) out.push_back(tenant_key_from(row));
    return {};
  }));
  return out;
}

Result<TenantKey> KeyStore::revoke(std::string_view tenant, std::string_view id, int64_t now,
                                   std::string_view actor) {
  TenantKey key;
  MH_TRY(db_.write([&](store::Session& s) -> Status {
    TenantScope scope(s, std::string(tenant));
    MH_ASSIGN_OR_RETURN(auto row, scope.get("api_keys", kTenantKeyColumns, id, "API key"));
    key = tenant_key_from(row);
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
    key.revoked_at = now;
    MH_TRY(scope.update("api_keys", "revoked_at = ?", {now}, id, "API key"));
    return store::AuditLog::append(s, actor, "api_key.revoke", key.id,
                                   {{"tenant", key.tenant}, {"name", key.name}});
  }));
  return key;
}

Status KeyStore::insert(const AdminKey& key, const std::string& sha256, std::string_view actor) {
  return db_.write([&](store::Session& s) { return insert_admin(s, key, sha256, actor); });
}

Result<bool> KeyStore::bootstrap(const AdminKey& key, const std::string& sha256, int64_t now) {
  bool inserted = false;
  MH_TRY(db_.write([&](store::Session& s) -> Status {
    MH_ASSIGN_OR_RETURN(
        auto rows, s.query("SELECT value FROM meta WHERE key = ?", {std::string(kBootstrapMeta)}));
    if (!rows.empty()) return {};
    MH_TRY(insert_admin(s, key, sha256, "system"));
    inserted = true;
    return s
        .exec("INSERT INTO meta (key, value) VALUES (?, ?)",
              {std::string(kBootstrapMeta), std::to_string(now)})
        .status();
  }));
  return inserted;
}

Result<AdminKey> KeyStore::live_admin_key(const std::string& sha256) const {
  Result<AdminKey> found = unauthenticated("invalid or revoked admin API key");
  MH_TRY(db_.read([&](store::Session& s) -> Status {
    MH_ASSIGN_OR_RETURN(auto row, live_by_hash(s, "admin_keys", kAdminKeyColumns, 4, sha256));
    if (row) found = admin_key_from(*row);
    return {};
  }));
  return found;
}

Result<std::vector<AdminKey>> KeyStore::list_admin_keys(std::string_view after, int64_t limit,
                                                        bool* has_more) const {
  std::vector<AdminKey> keys;
  MH_TRY(db_.read([&](store::Session& s) -> Status {
    MH_ASSIGN_OR_RETURN(auto rows, store::select_page(s, "admin_keys", kAdminKeyColumns,
                                                      std::string(after), limit, has_more));
    for (const auto& row : rows) keys.push_back(admin_key_from(row));
    return {};
  }));
  return keys;
}

Result<AdminKey> KeyStore::revoke_admin_key(std::string_view id, int64_t now,
                                            std::string_view actor) {
  AdminKey key;
  MH_TRY(db_.write([&](store::Session& s) -> Status {
    MH_ASSIGN_OR_RETURN(
        auto row,
        s.query_one(fmt::format("SELECT {} FROM admin_keys WHERE id = ?", kAdminKeyColumns),
                    {std::string(id)}, fmt::format("admin key '{}'", id)));
    key = admin_key_from(row);
    if (key.revoked_at) return {};
    MH_ASSIGN_OR_RETURN(auto live, s.query_one("SELECT COUNT(*) FROM admin_keys "
                                               "WHERE revoked_at IS NULL",
                                               {}, "count"));
    if (live.integer(0) <= 1) {
      return conflict("cannot revoke the last live admin key: create another one first");
    }
    key.revoked_at = now;
    MH_TRY(s.exec("UPDATE admin_keys SET revoked_at = ? WHERE id = ?", {now, key.id}).status());
    return store::AuditLog::append(s, actor, "admin_key.revoke", key.id, {{"name", key.name}});
  }));
  return key;
}

}  // namespace mh::tenants
