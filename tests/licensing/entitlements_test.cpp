#include "licensing/entitlements.h"

#include <doctest/doctest.h>

#include <thread>

#include "licensing/audit_chain.h"

namespace mh::licensing {
namespace {

constexpr int64_t kNow = 1'795'000'000;

Entitlement entitlement(std::string tenant, std::string id) {
  Entitlement e;
  e.license.terms.id = std::move(id);
  e.license.terms.tenant = std::move(tenant);
  e.license.terms.not_before = kNow - 100;
  e.license.terms.expires_at = kNow + 100;
  e.license.terms.grace_seconds = 50;
  e.license.terms.features = {"train"};
  return e;
}

TEST_CASE("entitlement checks: no license, feature, revocation, expiry") {
  Entitlements ents;
  CHECK(ents.check("acme", "train", kNow).message() == "tenant 'acme' has no license installed");
  ents.put(entitlement("acme", "lic_1"));
  CHECK(ents.check("acme", "train", kNow).ok());
  CHECK(ents.check("acme", "", kNow).ok());
  Status deploy = ents.check("acme", "deploy", kNow);
  CHECK(deploy.code() == Code::kPermissionDenied);
  CHECK(deploy.message() == "license lic_1 does not include the feature 'deploy'");
  CHECK(ents.check("acme", "train", kNow + 120).ok());  // grace
  CHECK(ents.check("acme", "train", kNow + 150).message().find("lic_1 expired") !=
        std::string::npos);
  CHECK(ents.check("globex", "train", kNow).code() == Code::kPermissionDenied);

  Entitlement revoked = entitlement("acme", "lic_1");
  revoked.revoked_at = kNow;
  revoked.revoke_reason = "fraud";
  ents.put(revoked);
  CHECK(ents.check("acme", "train", kNow).message().find("revoked") != std::string::npos);
  CHECK(ents.check("acme", "train", kNow).message().find("fraud") != std::string::npos);
  ents.remove("acme");
  CHECK(ents.find("acme") == nullptr);
}

TEST_CASE("readers see whole snapshots while writers replace licenses") {
  Entitlements ents;
  ents.put(entitlement("acme", "lic_0"));
  std::atomic<bool> stop{false}, bad{false};
  std::thread reader([&] {
    while (!stop) {
      auto e = ents.find("acme");
      if (!e || !e->license.terms.id.starts_with("lic_")) bad = true;
      if (!ents.check("acme", "train", kNow).ok()) bad = true;
    }
  });
  for (int i = 1; i < 2000; ++i) ents.put(entitlement("acme", "lic_" + std::to_string(i)));
  stop = true;
  reader.join();
  CHECK_FALSE(bad.load());
  CHECK(ents.find("acme")->license.terms.id == "lic_1999");
}

std::vector<AuditEntry> chain(int n) {
  std::vector<AuditEntry> entries;
  std::string prev = kGenesisHash;
  for (int i = 1; i <= n; ++i) {
    AuditEntry e{i, kNow + i, "admin:akey_1", "license.install", "lic_" + std::to_string(i),
                 "{}", prev, ""};
    e.hash = audit_entry_hash(e);
    prev = e.hash;
    entries.push_back(e);
  }
  return entries;
}

TEST_CASE("the audit chain verifies and names the first entry at fault") {
  auto entries = chain(5);
  auto head = verify_audit_chain(entries, ChainHead{5, entries.back().hash});
  REQUIRE(head.ok());
  CHECK(head->seq == 5);
  CHECK(verify_audit_chain({}, std::nullopt)->hash == kGenesisHash);

  auto edited = entries;
  edited[2].detail = R"({"x":1})";
  CHECK(verify_audit_chain(edited, std::nullopt).status().message().find("entry 3") !=
        std::string::npos);

  auto rehashed = edited;  // an editor who recomputes that entry's hash breaks the next link
  rehashed[2].hash = audit_entry_hash(rehashed[2]);
  CHECK(verify_audit_chain(rehashed, std::nullopt).status().message().find("entry 4") !=
        std::string::npos);

  auto deleted = entries;
  deleted.erase(deleted.begin() + 1);
  CHECK(verify_audit_chain(deleted, std::nullopt).status().message().find("missing") !=
        std::string::npos);

  auto truncated = entries;
  truncated.pop_back();
  CHECK(verify_audit_chain(truncated, std::nullopt).ok());
  CHECK(verify_audit_chain(truncated, ChainHead{5, entries.back().hash})
            .status().message().find("removed from the end") != std::string::npos);

  // Field boundaries are part of the hash: moving a character between fields changes it.
  AuditEntry a = entries[0], b = entries[0];
  a.actor = "ab";
  a.action = "c";
  b.actor = "a";
  b.action = "bc";
  CHECK(audit_entry_hash(a) != audit_entry_hash(b));
}

}  // namespace
}  // namespace mh::licensing
