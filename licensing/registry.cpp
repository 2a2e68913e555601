#include "licensing/registry.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <boost/json.hpp>

#include "platform/base/crypto.h"
#include "platform/base/time.h"

namespace mh::licensing {

namespace json = boost::json;

namespace {

constexpr std::string_view kColumns = "text, installed_at, active, revoked_at, revoke_reason";
constexpr size_t kMaxLicenseBytes = 64 * 1024;


}  // namespace

Result<LicenseRecord> LicenseRegistry::record_from_row(const store::Row& row) const {
  LicenseRecord r;
  // Stored licenses were verified on install; re-verify so that a key removed from the
  // configuration stops its licenses too.
  auto verified = verify_license(row.text(0), keys_);
  if (verified.ok()) {
    r.license = std::move(*verified);
  } else {
    MH_ASSIGN_OR_RETURN(r.license, read_unverified(row.text(0)));
    r.invalid_reason = "it no longer verifies: " + verified.status().message();
  }
  r.installed_at = row.integer(1);
  r.active = row.integer(2) != 0;
  if (!row.is_null(3)) {
    r.revoked_at = row.integer(3);
    r.revoke_reason = row.text(4);
  }
  return r;
}

void LicenseRegistry::publish(const LicenseRecord& r) {
  if (!r.active) return;
  if (!r.invalid_reason.empty()) {
    entitlements_.put({r.license, r.installed_at, r.invalid_reason});
  } else {
    entitlements_.put({r.license, r.revoked_at, r.revoke_reason});
  }
}

Status LicenseRegistry::load() {
  // Record keys trusted for the first time (a key import), once each.
  MH_TRY(db_.write([&](store::Session& s) -> Status {
    for (const std::string& id : keys_.ids()) {
      const PublicKey* key = keys_.find(id);
      const std::string meta_key = "trusted_key:" + id;
      MH_ASSIGN_OR_RETURN(auto rows, s.query("SELECT value FROM meta WHERE key = ?", {meta_key}));
      if (!rows.empty() && rows[0].text(0) == key->fingerprint()) continue;
      MH_TRY(store::AuditLog::append(s, "system", "key.trust", id,
                                     {{"fingerprint", key->fingerprint()},
                                      {"retired_at", key->retired_at ? json::value(*key->retired_at)
                                                                     : json::value(nullptr)}}));
      MH_TRY(s.exec("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE "
                    "SET value = excluded.value",
                    {meta_key, key->fingerprint()})
                 .status());
    }
    return {};
  }));
  return db_.read([&](store::Session& s) -> Status {
    MH_ASSIGN_OR_RETURN(auto rows,
                        s.query(fmt::format("SELECT {} FROM licenses WHERE active = 1", kColumns)));
    for (const auto& row : rows) {
      auto record = record_from_row(row);
      if (!record.ok()) {
        spdlog::error("stored license unreadable: {}", record.status().message());
        continue;
      }
      if (!record->invalid_reason.empty()) {
        spdlog::warn("license {}: {}", record->license.terms.id, record->invalid_reason);
      }
      publish(*record);
    }
    return {};
  });
}

Result<LicenseRecord> LicenseRegistry::install(std::string_view text, std::string_view actor) {
  if (text.size() > kMaxLicenseBytes) {
    return Status(Code::kPayloadTooLarge, "a license file is at most 64 KiB");
  }
  MH_ASSIGN_OR_RETURN(int64_t now, clock_.now());
  MH_ASSIGN_OR_RETURN(License license, verify_license(text, keys_));
  const auto& terms = license.terms;
  if (standing_at(terms, now) == Standing::kExpired) {
    return check_in_force(terms, now);  // says when it expired
  }
  LicenseRecord record;
  record.license = license;
  record.installed_at = now;
  record.active = true;
  bool replayed = false;
  MH_TRY(db_.write([&](store::Session& s) -> Status {
    MH_ASSIGN_OR_RETURN(
        auto existing,
        s.query(fmt::format("SELECT {} FROM licenses WHERE id = ?", kColumns), {terms.id}));
    if (!existing.empty()) {
      if (existing[0].text(0) != text) {
        return conflict(
            fmt::format("a different license with id {} is already installed", terms.id));
      }
      if (!existing[0].is_null(3)) {
        return permission_denied(
            fmt::format("license {} was revoked at {}: {}; a revoked license "
                        "cannot be installed again",
                        terms.id, rfc3339(existing[0].integer(3)), existing[0].text(4)));
      }
      replayed = true;  // the same file again: nothing to change
      MH_ASSIGN_OR_RETURN(record, record_from_row(existing[0]));
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
  if (!replayed) publish(record);
  return record;
}

Result<LicenseRecord> LicenseRegistry::get(std::string_view id) const {
  Result<LicenseRecord> out = not_found("");
  MH_TRY(db_.read([&](store::Session& s) -> Status {
    MH_ASSIGN_OR_RETURN(auto row,
                        s.query_one(fmt::format("SELECT {} FROM licenses WHERE id = ?", kColumns),
                                    {std::string(id)}, fmt::format("license '{}'", id)));
    out = record_from_row(row);
    return {};
  }));
  return out;
}

Result<std::vector<LicenseRecord>> LicenseRegistry::list(const std::string& after, int64_t limit,
                                                         bool* has_more) const {
  std::vector<LicenseRecord> out;
  MH_TRY(db_.read([&](store::Session& s) -> Status {
    MH_ASSIGN_OR_RETURN(
        auto rows, store::select_page(s, "licenses", kColumns, after, limit, has_more));
    for (const auto& row : rows) {
      MH_ASSIGN_OR_RETURN(auto record, record_from_row(row));
      out.push_back(std::move(record));
    }
    return {};
  }));
  return out;
}

Result<LicenseRecord> LicenseRegistry::revoke(std::string_view id, std::string_view reason,
                                              std::string_view actor) {
  if (reason.size() > 500) return invalid_argument("reason is at most 500 characters", "reason");
  LicenseRecord record;
  MH_TRY(db_.write([&](store::Session& s) -> Status {
    MH_ASSIGN_OR_RETURN(auto row,
                        s.query_one(fmt::format("SELECT {} FROM licenses WHERE id = ?", kColumns),
                                    {std::string(id)}, fmt::format("license '{}'", id)));
    MH_ASSIGN_OR_RETURN(record, record_from_row(row));
    if (!row.is_null(3)) return {};  // already revoked
    record.revoked_at = unix_seconds();
    record.revoke_reason = reason.empty() ? "revoked by platform staff" : std::string(reason);
    MH_TRY(s.exec("UPDATE licenses SET revoked_at = ?, revoke_reason = ? WHERE id = ?",
                  {*record.revoked_at, record.revoke_reason, std::string(id)})
               .status());
    MH_TRY(s.exec("UPDATE leases SET released_at = ? WHERE license_id = ? AND released_at IS NULL",
                  {*record.revoked_at, std::string(id)})
               .status());
    return store::AuditLog::append(
        s, actor, "license.revoke", id,
        {{"tenant", record.license.terms.tenant}, {"reason", record.revoke_reason}});
  }));
  publish(record);
  return record;
}

}  // namespace mh::licensing
