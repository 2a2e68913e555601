#include "platform/api/licenses.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <boost/json.hpp>

#include "platform/base/crypto.h"
#include "platform/base/time.h"

namespace mh::api {

namespace json = boost::json;
using licensing::License;

namespace {

constexpr std::string_view kColumns = "text, installed_at, active, revoked_at, revoke_reason";
constexpr size_t kMaxLicenseBytes = 64 * 1024;

std::string actor_of(const Request& request) { return request.principal.actor(); }

}  // namespace

json::object license_json(const LicenseRecord& r, int64_t now) {
  std::string status =
      r.revoked_at ? "revoked"
      : !r.invalid_reason.empty()
          ? "invalid"
          : std::string(licensing::standing_name(licensing::standing_at(r.license.terms, now)));
  json::object out = licensing::terms_json(r.license.terms);
  out["object"] = "license";
  out["key_id"] = r.license.key_id;
  out["status"] = status;
  out["active"] = r.active;
  out["installed_at"] = r.installed_at;
  out["revoked_at"] = r.revoked_at ? json::value(*r.revoked_at) : json::value(nullptr);
  out["revoke_reason"] = r.revoked_at ? json::value(r.revoke_reason) : json::value(nullptr);
  out["invalid_reason"] =
      r.invalid_reason.empty() ? json::value(nullptr) : json::value(r.invalid_reason);
  return out;
}

Result<LicenseRecord> LicenseRegistry::record_from_row(const store::Row& row) const {
  LicenseRecord r;
  // Stored licenses were verified on install; re-verify so that a key removed from the
  // configuration stops its licenses too.
  auto verified = licensing::verify_license(row.text(0), keys_);
  if (verified.ok()) {
    r.license = std::move(*verified);
  } else {
    MH_ASSIGN_OR_RETURN(r.license, licensing::read_unverified(row.text(0)));
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
      const licensing::PublicKey* key = keys_.find(id);
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
  MH_ASSIGN_OR_RETURN(License license, licensing::verify_license(text, keys_));
  const auto& terms = license.terms;
  if (licensing::standing_at(terms, now) == licensing::Standing::kExpired) {
    return licensing::check_in_force(terms, now);  // says when it expired
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

Result<std::vector<LicenseRecord>> LicenseRegistry::list(const PageRequest& page,
                                                         bool* has_more) const {
  std::vector<LicenseRecord> out;
  MH_TRY(db_.read([&](store::Session& s) -> Status {
    MH_ASSIGN_OR_RETURN(
        auto rows, store::select_page(s, "licenses", kColumns, page.after, page.limit, has_more));
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

void add_license_routes(Router& router, LicenseRegistry& registry, TrustedClock& clock) {
  auto now = [&clock] { return clock.high_water() > 0 ? clock.high_water() : unix_seconds(); };
  router.add("POST", "/v1/admin/licenses", Access::kAdmin, [&registry, now](Request& request) {
    auto body = parse_json_object(request);
    if (!body.ok()) return Response::error(body.status());
    const json::value* text = body->if_contains("license");
    if (text == nullptr || !text->is_string()) {
      return Response::error(
          invalid_argument("'license' must be the license file's text", "license"));
    }
    auto installed = registry.install(text->as_string(), actor_of(request));
    if (!installed.ok()) return Response::error(installed.status());
    return Response::json(201, license_json(*installed, now()));
  });
  router.add("GET", "/v1/admin/licenses", Access::kAdmin, [&registry, now](Request& request) {
    auto page = parse_page(request);
    if (!page.ok()) return Response::error(page.status());
    bool has_more = false;
    auto records = registry.list(*page, &has_more);
    if (!records.ok()) return Response::error(records.status());
    json::array data;
    for (const auto& r : *records) data.push_back(license_json(r, now()));
    return list_response(std::move(data), has_more);
  });
  router.add("GET", "/v1/admin/licenses/{id}", Access::kAdmin, [&registry, now](Request& request) {
    auto record = registry.get(request.param("id"));
    if (!record.ok()) return Response::error(record.status());
    return Response::json(200, license_json(*record, now()));
  });
  router.add(
      "POST", "/v1/admin/licenses/{id}/revoke", Access::kAdmin, [&registry, now](Request& request) {
        std::string reason;
        if (!request.body.empty()) {
          auto body = parse_json_object(request);
          if (!body.ok()) return Response::error(body.status());
          if (const json::value* r = body->if_contains("reason")) {
            if (!r->is_string()) {
              return Response::error(invalid_argument("'reason' must be a string", "reason"));
            }
            reason = r->as_string();
          }
        }
        auto record = registry.revoke(request.param("id"), reason, actor_of(request));
        if (!record.ok()) return Response::error(record.status());
        return Response::json(200, license_json(*record, now()));
      });
}

}  // namespace mh::api
