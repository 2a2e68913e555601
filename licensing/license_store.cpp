#include "licensing/license_store.h"

#include <fmt/format.h>
#include <boost/json.hpp>

#include "platform/base/crypto.h"
#include "platform/base/time.h"
#include "platform/store/audit_log.h"

namespace mh::licensing {

namespace json = boost::json;

namespace {

constexpr std::string_view kColumns = "text, installed_at, active, revoked_at, revoke_reason";
constexpr std::string_view kClockMark = "clock_high_water";

StoredLicense from_row(const store::Row& row) {
  StoredLicense out;
  out.text = row.text(0);
  out.installed_at = row.integer(1);
  out.active = row.integer(2) != 0;
  if (!row.is_null(3)) {
    out.revoked_at = row.integer(3);
    out.revoke_reason = row.text(4);
  }
  return out;
}

Result<StoredLicense> select(store::Session& s, std::string_view id) {
  MH_ASSIGN_OR_RETURN(auto row,
                      s.query_one(fmt::format("SELECT {} FROM licenses WHERE id = ?", kColumns),
                                  {std::string(id)}, fmt::format("license '{}'", id)));
  return from_row(row);
}

}  // namespace

Status LicenseStore::note_trusted(const std::vector<TrustedKey>& keys) {
  return db_.write([&](store::Session& s) -> Status {
    for (const TrustedKey& key : keys) {
      const std::string meta_key = "trusted_key:" + key.id;
      MH_ASSIGN_OR_RETURN(auto rows, s.query("SELECT value FROM meta WHERE key = ?", {meta_key}));
      if (!rows.empty() && rows[0].text(0) == key.fingerprint) continue;
      MH_TRY(store::AuditLog::append(
          s, "system", "key.trust", key.id,
          {{"fingerprint", key.fingerprint},
           {"retired_at", key.retired_at ? json::value(*key.retired_at) : json::value(nullptr)}}));
      MH_TRY(s.exec("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE "
                    "SET value = excluded.value",
                    {meta_key, key.fingerprint})
                 .status());
    }
    return {};
  });
}

Result<std::vector<StoredLicense>> LicenseStore::active() const {
  std::vector<StoredLicense> out;
  MH_TRY(db_.read([&](store::Session& s) -> Status {
    MH_ASSIGN_OR_RETURN(auto rows,
                        s.query(fmt::format("SELECT {} FROM licenses WHERE active = 1", kColumns)));
    for (const auto& row : rows) out.push_back(from_row(row));
    return {};
  }));
  return out;
}

Result<StoredLicense> LicenseStore::get(std::string_view id) const {
  Result<StoredLicense> out = not_found("");
  MH_TRY(db_.read([&](store::Session& s) -> Status {
    out = select(s, id);
    return out.status();
  }));
  return out;
}

Result<std::vector<StoredLicense>> LicenseStore::list(std::string_view after, int64_t limit,
                                                      bool* has_more) const {
  std::vector<StoredLicense> out;
  MH_TRY(db_.read([&](store::Session& s) -> Status {
    MH_ASSIGN_OR_RETURN(auto rows, store::select_page(s, "licenses", kColumns, std::string(after),
                                                      limit, has_more));
    for (const auto& row : rows) out.push_back(from_row(row));
    return {};
  }));
  return out;
}

Result<std::optional<StoredLicense>> LicenseStore::install(const License& license,
                                                           std::string_view text, int64_t now,
                                                           std::string_view actor) {
  const LicenseTerms& terms = license.terms;
  std::optional<StoredLicense> before;
  MH_TRY(db_.write([&](store::Session& s) -> Status {
    MH_ASSIGN_OR_RETURN(
        auto existing,
        s.query(fmt::format("SELECT {} FROM licenses WHERE id = ?", kColumns), {terms.id}));
    if (!existing.empty()) {
      StoredLicense stored = from_row(existing[0]);
      if (stored.text != text) {
        return conflict(
            fmt::format("a different license with id {} is already installed", terms.id));
      }
      if (stored.revoked_at) {
        return permission_denied(
            fmt::format("license {} was revoked at {}: {}; a revoked license "
                        "cannot be installed again",
                        terms.id, rfc3339(*stored.revoked_at), stored.revoke_reason));
      }
      before = std::move(stored);  // the same file again: nothing to change
      return {};
    }
    MH_ASSIGN_OR_RETURN(auto tenant,
                        s.query("SELECT id FROM tenants WHERE id = ?", {terms.tenant}));
    if (tenant.empty()) {
      MH_TRY(s.exec("INSERT INTO tenants (id, name, created_at) VALUES (?, ?, ?)",
                    {terms.tenant, terms.licensee, now})
                 .status());
      MH_TRY(store::AuditLog::append(s, actor, "tenant.create", terms.tenant,
                                     {{"name", terms.licensee}, {"license", terms.id}}));
    }
    // The licence it supersedes stops holding seats: its live leases end now (their holders
    // check out again on this one, within its seats), so the tenant never has both sets.
    MH_ASSIGN_OR_RETURN(auto superseded,
                        s.query("SELECT id FROM licenses WHERE tenant_id = ? AND active = 1",
                                {terms.tenant}));
    for (const auto& old : superseded) {
      MH_ASSIGN_OR_RETURN(
          const int64_t ended,
          s.exec("UPDATE leases SET released_at = ? WHERE license_id = ? AND released_at IS NULL "
                 "AND expires_at > ?",
                 {now, old.text(0), now}));
      MH_TRY(store::AuditLog::append(s, actor, "license.supersede", old.text(0),
                                     {{"tenant", terms.tenant},
                                      {"by", terms.id},
                                      {"leases_ended", ended}}));
    }
    MH_TRY(
        s.exec("UPDATE licenses SET active = 0 WHERE tenant_id = ? AND active = 1", {terms.tenant})
            .status());
    MH_TRY(
        s.exec("INSERT INTO licenses (id, tenant_id, key_id, text, expires_at, installed_at, "
               "active) VALUES (?, ?, ?, ?, ?, ?, 1)",
               {terms.id, terms.tenant, license.key_id, std::string(text), terms.expires_at, now})
            .status());
    return store::AuditLog::append(s, actor, "license.install", terms.id,
                                   {{"tenant", terms.tenant},
                                    {"licensee", terms.licensee},
                                    {"key_id", license.key_id},
                                    {"expires_at", terms.expires_at},
                                    {"payload_sha256", sha256_hex(license.payload)}});
  }));
  return before;
}

Result<StoredLicense> LicenseStore::revoke(std::string_view id, std::string_view reason,
                                           int64_t now, std::string_view actor) {
  StoredLicense stored;
  MH_TRY(db_.write([&](store::Session& s) -> Status {
    MH_ASSIGN_OR_RETURN(stored, select(s, id));
    if (stored.revoked_at) return {};
    MH_ASSIGN_OR_RETURN(auto tenant, s.query_one("SELECT tenant_id FROM licenses WHERE id = ?",
                                                 {std::string(id)}, "license"));
    stored.revoked_at = now;
    stored.revoke_reason = std::string(reason);
    MH_TRY(s.exec("UPDATE licenses SET revoked_at = ?, revoke_reason = ? WHERE id = ?",
                  {now, stored.revoke_reason, std::string(id)})
               .status());
    MH_TRY(s.exec("UPDATE leases SET released_at = ? WHERE license_id = ? AND released_at IS NULL",
                  {now, std::string(id)})
               .status());
    return store::AuditLog::append(s, actor, "license.revoke", id,
                                   {{"tenant", tenant.text(0)}, {"reason", stored.revoke_reason}});
  }));
  return stored;
}

Result<int64_t> LicenseStore::clock_mark() const {
  int64_t mark = 0;
  MH_TRY(db_.read([&](store::Session& s) -> Status {
    MH_ASSIGN_OR_RETURN(auto rows,
                        s.query("SELECT value FROM meta WHERE key = ?", {std::string(kClockMark)}));
    if (!rows.empty()) mark = std::stoll(rows[0].text(0));
    return {};
  }));
  return mark;
}

Status LicenseStore::raise_clock_mark(int64_t seen) {
  return db_.write([&](store::Session& s) {
    return s
        .exec("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET "
              "value = excluded.value WHERE CAST(excluded.value AS INTEGER) > "
              "CAST(meta.value AS INTEGER)",
              {std::string(kClockMark), std::to_string(seen)})
        .status();
  });
}

}  // namespace mh::licensing
