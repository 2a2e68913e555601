#include "licensing/registry.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "platform/base/time.h"

namespace mh::licensing {

namespace {

constexpr size_t kMaxLicenseBytes = 64 * 1024;

}  // namespace

Result<LicenseRecord> LicenseRegistry::record_from(StoredLicense stored) const {
  LicenseRecord r;
  // Stored licenses were verified on install; re-verify so that a key removed from the
  // configuration stops its licenses too.
  auto verified = verify_license(stored.text, keys_);
  if (verified.ok()) {
    r.license = std::move(*verified);
  } else {
    MH_ASSIGN_OR_RETURN(r.license, read_unverified(stored.text));
    r.invalid_reason = "it no longer verifies: " + verified.status().message();
  }
  r.installed_at = stored.installed_at;
  r.active = stored.active;
  r.revoked_at = stored.revoked_at;
  r.revoke_reason = std::move(stored.revoke_reason);
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
  std::vector<TrustedKey> trusted;
  for (const std::string& id : keys_.ids()) {
    const PublicKey* key = keys_.find(id);
    trusted.push_back({id, key->fingerprint(), key->retired_at});
  }
  MH_TRY(store_.note_trusted(trusted));
  MH_ASSIGN_OR_RETURN(auto active, store_.active());
  for (auto& stored : active) {
    auto record = record_from(std::move(stored));
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
}

Result<LicenseRecord> LicenseRegistry::install(std::string_view text, std::string_view actor) {
  if (text.size() > kMaxLicenseBytes) {
    return Status(Code::kPayloadTooLarge, "a license file is at most 64 KiB");
  }
  MH_ASSIGN_OR_RETURN(int64_t now, clock_.now());
  MH_ASSIGN_OR_RETURN(License license, verify_license(text, keys_));
  if (standing_at(license.terms, now) == Standing::kExpired) {
    return check_in_force(license.terms, now);  // says when it expired
  }
  MH_ASSIGN_OR_RETURN(auto before, store_.install(license, text, now, actor));
  if (before) return record_from(std::move(*before));  // the same file again: nothing changed
  LicenseRecord record;
  record.license = std::move(license);
  record.installed_at = now;
  record.active = true;
  publish(record);
  return record;
}

Result<LicenseRecord> LicenseRegistry::get(std::string_view id) const {
  MH_ASSIGN_OR_RETURN(auto stored, store_.get(id));
  return record_from(std::move(stored));
}

Result<std::vector<LicenseRecord>> LicenseRegistry::list(const std::string& after, int64_t limit,
                                                         bool* has_more) const {
  MH_ASSIGN_OR_RETURN(auto rows, store_.list(after, limit, has_more));
  std::vector<LicenseRecord> out;
  for (auto& stored : rows) {
    MH_ASSIGN_OR_RETURN(auto record, record_from(std::move(stored)));
    out.push_back(std::move(record));
  }
  return out;
}

Result<LicenseRecord> LicenseRegistry::revoke(std::string_view id, std::string_view reason,
                                              std::string_view actor) {
  if (reason.size() > 500) return invalid_argument("reason is at most 500 characters", "reason");
  MH_ASSIGN_OR_RETURN(
      auto stored,
      store_.revoke(id, reason.empty() ? "revoked by platform staff" : reason, unix_seconds(),
                    actor));
  MH_ASSIGN_OR_RETURN(LicenseRecord record, record_from(std::move(stored)));
  publish(record);
  return record;
}

}  // namespace mh::licensing
