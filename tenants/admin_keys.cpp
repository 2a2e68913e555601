#include "tenants/admin_keys.h"

#include <fmt/format.h>

#include "platform/base/api_key.h"
#include "platform/base/crypto.h"
#include "platform/base/time.h"
#include "platform/store/audit_log.h"

namespace mh::tenants {

namespace {

constexpr std::string_view kBootstrapMeta = "admin_bootstrapped_at";
constexpr size_t kMaxNameLength = 200;

AdminKey key_from_row(const store::Row& row) {
  AdminKey key{row.text(0), row.text(1), row.text(2), row.integer(3), std::nullopt};
  if (!row.is_null(4)) key.revoked_at = row.integer(4);
  return key;
}

constexpr std::string_view kColumns = "id, name, key_prefix, created_at, revoked_at";

}  // namespace

Result<NewAdminKey> AdminKeys::insert(store::Session& session, std::string name,
                                      std::string_view actor) {
  NewAdminKey created;
  ApiKeySecret key = new_api_key(kAdminKeyPrefix);
  created.secret = key.secret;
  created.record.id = "akey_" + secure_random_base64url(12);
  created.record.name = std::move(name);
  created.record.prefix = key.display_prefix;
  created.record.created_at = unix_seconds();
  MH_TRY(session
             .exec("INSERT INTO admin_keys (id, name, key_hash, key_prefix, created_at) "
                   "VALUES (?, ?, ?, ?, ?)",
                   {created.record.id, created.record.name, key.sha256, created.record.prefix,
                    created.record.created_at})
             .status());
  MH_TRY(
      store::AuditLog::append(session, actor, "admin_key.create", created.record.id,
                              {{"name", created.record.name}, {"prefix", created.record.prefix}}));
  return created;
}

Result<std::optional<NewAdminKey>> AdminKeys::bootstrap() {
  std::optional<NewAdminKey> created;
  MH_TRY(db_.write([&](store::Session& s) -> Status {
    MH_ASSIGN_OR_RETURN(
        auto rows, s.query("SELECT value FROM meta WHERE key = ?", {std::string(kBootstrapMeta)}));
    if (!rows.empty()) return {};
    MH_ASSIGN_OR_RETURN(created, insert(s, "bootstrap", "system"));
    return s
        .exec("INSERT INTO meta (key, value) VALUES (?, ?)",
              {std::string(kBootstrapMeta), std::to_string(unix_seconds())})
        .status();
  }));
  return created;
}

Result<NewAdminKey> AdminKeys::create(std::string name, std::string_view actor) {
  if (name.empty() || name.size() > kMaxNameLength) {
    return invalid_argument(fmt::format("name must be 1 to {} characters", kMaxNameLength), "name");
  }
  NewAdminKey created;
  MH_TRY(db_.write([&](store::Session& s) -> Status {
    MH_ASSIGN_OR_RETURN(created, insert(s, std::move(name), actor));
    return {};
  }));
  return created;
}

Result<AdminKey> AdminKeys::authenticate(std::string_view secret) const {
  if (!secret.starts_with(kAdminKeyPrefix)) {
    return unauthenticated("invalid API key for this route: an admin key starts with mh_admin_");
  }
  const std::string hash = sha256_hex(secret);
  Result<AdminKey> found = unauthenticated("invalid or revoked admin API key");
  MH_TRY(db_.read([&](store::Session& s) -> Status {
    MH_ASSIGN_OR_RETURN(
        auto rows,
        s.query(fmt::format("SELECT {}, key_hash FROM admin_keys WHERE key_hash = ?", kColumns),
                {hash}));
    // The lookup is by hash, so timing reveals nothing of the key; compare anyway.
    if (rows.size() == 1 && constant_time_equal(rows[0].text(5), hash) && rows[0].is_null(4)) {
      found = key_from_row(rows[0]);
    }
    return {};
  }));
  return found;
}

Result<std::vector<AdminKey>> AdminKeys::list(std::string_view after, int64_t limit,
                                              bool* has_more) const {
  std::vector<AdminKey> keys;
  MH_TRY(db_.read([&](store::Session& s) -> Status {
    MH_ASSIGN_OR_RETURN(auto rows, store::select_page(s, "admin_keys", kColumns,
                                                      std::string(after), limit, has_more));
    for (const auto& row : rows) keys.push_back(key_from_row(row));
    return {};
  }));
  return keys;
}

Result<AdminKey> AdminKeys::revoke(std::string_view id, std::string_view actor) {
  AdminKey key;
  MH_TRY(db_.write([&](store::Session& s) -> Status {
    MH_ASSIGN_OR_RETURN(auto row,
                        s.query_one(fmt::format("SELECT {} FROM admin_keys WHERE id = ?", kColumns),
                                    {std::string(id)}, fmt::format("admin key '{}'", id)));
    key = key_from_row(row);
    if (key.revoked_at) return {};
    MH_ASSIGN_OR_RETURN(auto live, s.query_one("SELECT COUNT(*) FROM admin_keys "
                                               "WHERE revoked_at IS NULL",
                                               {}, "count"));
    if (live.integer(0) <= 1) {
      return conflict("cannot revoke the last live admin key: create another one first");
    }
    key.revoked_at = unix_seconds();
    MH_TRY(s.exec("UPDATE admin_keys SET revoked_at = ? WHERE id = ?", {*key.revoked_at, key.id})
               .status());
    return store::AuditLog::append(s, actor, "admin_key.revoke", key.id, {{"name", key.name}});
  }));
  return key;
}

}  // namespace mh::tenants
