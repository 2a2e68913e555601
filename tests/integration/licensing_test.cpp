// Licensing on a real daemon: install, revoke, expiry, the clock guard, seats and the audit log.
#include <doctest/doctest.h>

#include <atomic>
#include <boost/json.hpp>
#include <thread>

#include "licensing/license.h"
#include "platform/base/files.h"
#include "platform/base/time.h"
#include "tests/support/harness.h"

#include <macrohard/macrohard.hpp>

namespace mh::test {
namespace {

namespace json = boost::json;
using licensing::LicenseTerms;
using licensing::PrivateKey;

// A signing key on disk, and a daemon that trusts it.
struct Platform {
  TempDir dir;
  PrivateKey key = licensing::generate_key("staff-2026").value();
  std::filesystem::path pub = dir.path() / "staff-2026.pub";
  std::unique_ptr<Daemon> daemon;

  explicit Platform(std::vector<std::string> extra = {}) {
    REQUIRE(write_new_file(pub, licensing::encode_public_key(key.public_key().value()), 0644).ok());
    start(std::move(extra));
  }
  void start(std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"--license-public-key", pub.string()};
    args.insert(args.end(), extra.begin(), extra.end());
    DaemonOptions options = with_args(args);
    options.data_dir = dir.path() / "data";
    daemon = std::make_unique<Daemon>(options);
  }
  std::map<std::string, std::string> admin() const {
    return {{"Authorization", "Bearer " + daemon->admin_key()},
            {"Content-Type", "application/json"}};
  }
  RawResponse post(const std::string& path, const json::object& body) const {
    return http_request(daemon->port(), "POST", path, json::serialize(body), admin());
  }
  RawResponse get(const std::string& path) const {
    return http_request(daemon->port(), "GET", path, "", admin());
  }
  RawResponse install(const std::string& text) const {
    return post("/v1/admin/licenses", {{"license", text}});
  }
  RawResponse lease(const std::string& license_id, const std::string& instance,
                    int64_t ttl = 300) const {
    return post("/v1/leases",
                {{"license_id", license_id}, {"instance", instance}, {"ttl_seconds", ttl}});
  }
  std::string sqlite(const std::string& sql) const {
    ProcessResult r =
        run_process({"/usr/bin/sqlite3", (dir.path() / "data/macrohard.db").string(), sql});
    REQUIRE_MESSAGE(r.exit_code == 0, r.output);
    return r.output;
  }
};

LicenseTerms terms(const std::string& id, int64_t seats = 3) {
  const int64_t now = unix_seconds();
  LicenseTerms t;
  t.id = id;
  t.licensee = "Acme Corporation";
  t.tenant = "acme";
  t.issued_at = now - 60;
  t.not_before = now - 60;
  t.expires_at = now + 30 * 86400;
  t.grace_seconds = 86400;
  t.features = {"train", "deploy"};
  t.limits = {8, 1000, 2, 1'000'000'000, seats};
  return t;
}

std::string message_of(const RawResponse& r) {
  return std::string(json::parse(r.body).at("error").at("message").as_string());
}

TEST_CASE("installing a license creates its tenant, and it is listed and shown") {
  Platform p;
  std::string text = licensing::issue_license(terms("lic_a"), p.key).value();
  RawResponse installed = p.install(text);
  REQUIRE_MESSAGE(installed.status == 201, installed.body);
  auto l = json::parse(installed.body).as_object();
  CHECK(l.at("tenant") == "acme");
  CHECK(l.at("status") == "valid");
  CHECK(l.at("active") == true);
  CHECK(l.at("limits").at("seats") == 3);
  CHECK(p.install(text).status == 201);  // the same file again changes nothing
  auto list = json::parse(p.get("/v1/admin/licenses").body).as_object();
  CHECK(list.at("data").as_array().size() == 1);
  CHECK(p.get("/v1/admin/licenses/lic_a").status == 200);
  CHECK(p.get("/v1/admin/licenses/lic_missing").status == 404);
  // A second license for the tenant replaces the first as its active one.
  REQUIRE(p.install(licensing::issue_license(terms("lic_b"), p.key).value()).status == 201);
  CHECK(json::parse(p.get("/v1/admin/licenses/lic_a").body).at("active") == false);
  CHECK(json::parse(p.get("/v1/admin/licenses/lic_b").body).at("active") == true);
}

TEST_CASE("forged, tampered, unknown-key, expired and malformed licenses are refused") {
  Platform p;
  PrivateKey stranger = licensing::generate_key("staff-2026").value();
  RawResponse forged = p.install(licensing::issue_license(terms("lic_f"), stranger).value());
  CHECK(forged.status == 403);
  CHECK(message_of(forged).find("signature does not match") != std::string::npos);

  PrivateKey other = licensing::generate_key("other-key").value();
  RawResponse unknown = p.install(licensing::issue_license(terms("lic_u"), other).value());
  CHECK(unknown.status == 403);
  CHECK(message_of(unknown).find("'other-key', which is not a trusted key") != std::string::npos);

  std::string text = licensing::issue_license(terms("lic_t"), p.key).value();
  text[text.find("Payload: ") + 20] ^= 0x01;
  CHECK(p.install(text).status / 100 == 4);

  LicenseTerms old = terms("lic_old");
  old.not_before = unix_seconds() - 100 * 86400;
  old.issued_at = old.not_before;
  old.expires_at = unix_seconds() - 10 * 86400;
  old.grace_seconds = 86400;
  RawResponse expired = p.install(licensing::issue_license(old, p.key).value());
  CHECK(expired.status == 403);
  CHECK(message_of(expired).find("lic_old expired at") != std::string::npos);

  CHECK(p.install("hello").status == 400);
  CHECK(p.post("/v1/admin/licenses", {{"license", 5}}).status == 400);
  CHECK(json::parse(p.get("/v1/admin/licenses").body).at("data").as_array().empty());
}

TEST_CASE("revocation takes effect at once for leases and heartbeats, and sticks") {
  Platform p;
  std::string text = licensing::issue_license(terms("lic_r"), p.key).value();
  REQUIRE(p.install(text).status == 201);
  RawResponse lease = p.lease("lic_r", "worker-1");
  REQUIRE(lease.status == 201);
  std::string lease_id(json::parse(lease.body).at("id").as_string());
  RawResponse revoked = p.post("/v1/admin/licenses/lic_r/revoke", {{"reason", "non-payment"}});
  REQUIRE(revoked.status == 200);
  CHECK(json::parse(revoked.body).at("status") == "revoked");
  RawResponse refused = p.lease("lic_r", "worker-2");
  CHECK(refused.status == 403);
  CHECK(message_of(refused).find("lic_r was revoked") != std::string::npos);
  CHECK(message_of(refused).find("non-payment") != std::string::npos);
  CHECK(p.post("/v1/leases/" + lease_id + "/heartbeat", {}).status == 409);  // released
  RawResponse again = p.install(text);
  CHECK(again.status == 403);
  CHECK(message_of(again).find("cannot be installed again") != std::string::npos);
  // Still revoked after a restart.
  CHECK(p.daemon->stop() == 0);
  p.start();
  CHECK(p.lease("lic_r", "worker-3").status == 403);
}

TEST_CASE("a superseded license's leases end and stop renewing: seats never exceed the new one") {
  Platform p;
  REQUIRE(p.install(licensing::issue_license(terms("lic_old", 2), p.key).value()).status == 201);
  std::vector<std::string> old_leases;
  for (const char* instance : {"a", "b"}) {
    RawResponse r = p.lease("lic_old", instance);
    REQUIRE(r.status == 201);
    old_leases.emplace_back(json::parse(r.body).at("id").as_string());
  }
  REQUIRE(p.install(licensing::issue_license(terms("lic_new", 2), p.key).value()).status == 201);
  // The old leases ended with the install, and say why when renewed.
  for (const std::string& id : old_leases) {
    RawResponse beat = p.post("/v1/leases/" + id + "/heartbeat", {});
    CHECK(beat.status == 409);
  }
  CHECK(json::parse(p.get("/v1/leases?license_id=lic_old").body).at("data").as_array().empty());
  // The old licence grants nothing now; the new one grants its two seats and no more.
  CHECK(p.lease("lic_old", "c").status == 409);
  CHECK(p.lease("lic_new", "a").status == 201);
  CHECK(p.lease("lic_new", "b").status == 201);
  CHECK(p.lease("lic_new", "c").status == 429);
  // The audit trail records the supersession.
  const std::string audit = p.get("/v1/admin/audit?limit=100").body;
  CHECK(audit.find("license.supersede") != std::string::npos);
}

TEST_CASE("an expired license stops new work once its grace period ends") {
  Platform p;
  LicenseTerms t = terms("lic_short");
  t.expires_at = unix_seconds() + 1;
  t.grace_seconds = 1;
  REQUIRE(p.install(licensing::issue_license(t, p.key).value()).status == 201);
  CHECK(p.lease("lic_short", "w1").status == 201);
  std::this_thread::sleep_for(std::chrono::milliseconds(3200));
  RawResponse late = p.lease("lic_short", "w2");
  CHECK(late.status == 403);
  CHECK(message_of(late).find("lic_short expired at") != std::string::npos);
  CHECK(json::parse(p.get("/v1/admin/licenses/lic_short").body).at("status") == "expired");
}

TEST_CASE("a clock set back is detected and license decisions stop") {
  Platform p;
  REQUIRE(p.install(licensing::issue_license(terms("lic_c"), p.key).value()).status == 201);
  CHECK(p.daemon->stop() == 0);
  // The platform has "seen" a time an hour ahead: the clock now looks rolled back.
  p.sqlite("INSERT INTO meta (key, value) VALUES ('clock_high_water', '" +
           std::to_string(unix_seconds() + 3600) +
           "') ON CONFLICT (key) DO UPDATE SET value = excluded.value;");
  p.start();
  RawResponse lease = p.lease("lic_c", "w1");
  CHECK(lease.status == 422);
  CHECK(message_of(lease).find("the clock was set back") != std::string::npos);
  CHECK(p.install(licensing::issue_license(terms("lic_d"), p.key).value()).status == 422);
  CHECK(p.daemon->output().find("the clock was set back") != std::string::npos);
}

TEST_CASE("seats hold under concurrent checkouts from many threads") {
  Platform p;
  REQUIRE(p.install(licensing::issue_license(terms("lic_s", 5), p.key).value()).status == 201);
  std::atomic<int> granted{0}, refused{0}, other{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 24; ++i) {
    threads.emplace_back([&, i] {
      int status = p.lease("lic_s", "instance-" + std::to_string(i)).status;
      (status == 201 ? granted : status == 429 ? refused : other)++;
    });
  }
  for (auto& t : threads) t.join();
  CHECK(granted == 5);
  CHECK(refused == 19);
  CHECK(other == 0);
  auto live = json::parse(p.get("/v1/leases?license_id=lic_s").body);
  CHECK(live.at("data").as_array().size() == 5);
}

TEST_CASE("a lease not renewed expires on time and frees its seat") {
  Platform p;
  REQUIRE(p.install(licensing::issue_license(terms("lic_l", 1), p.key).value()).status == 201);
  RawResponse first = p.lease("lic_l", "a", 2);
  REQUIRE(first.status == 201);
  std::string id(json::parse(first.body).at("id").as_string());
  CHECK(p.post("/v1/leases/" + id + "/heartbeat", {}).status == 200);  // renewed for 2 s more
  RawResponse full = p.lease("lic_l", "b", 2);
  CHECK(full.status == 429);
  CHECK(message_of(full).find("all 1 seats of license lic_l are in use") != std::string::npos);
  std::this_thread::sleep_for(std::chrono::milliseconds(3100));
  CHECK(p.lease("lic_l", "b", 2).status == 201);  // nobody released; the lease ran out
  CHECK(p.post("/v1/leases/" + id + "/heartbeat", {}).status == 409);
  // Releasing frees the seat at once.
  CHECK(p.lease("lic_l", "c", 60).status == 429);
  auto live = json::parse(p.get("/v1/leases?license_id=lic_l").body).at("data").as_array();
  REQUIRE(live.size() == 1);
  std::string holder(live[0].at("id").as_string());
  CHECK(http_request(p.daemon->port(), "DELETE", "/v1/leases/" + holder, "", p.admin()).status ==
        200);
  CHECK(p.lease("lic_l", "c", 60).status == 201);
}

TEST_CASE("the audit chain records changes and detects an edited or deleted entry") {
  Platform p;
  REQUIRE(p.install(licensing::issue_license(terms("lic_x", 1), p.key).value()).status == 201);
  REQUIRE(p.lease("lic_x", "a").status == 201);
  CHECK(p.lease("lic_x", "b").status == 429);  // a refusal is recorded
  REQUIRE(p.post("/v1/admin/licenses/lic_x/revoke", {}).status == 200);
  auto mhctl = [&] {
    return run_process({mhctl_path().string(), "--url", p.daemon->url(), "--api-key",
                        p.daemon->admin_key(), "admin", "audit", "verify"});
  };
  ProcessResult ok = mhctl();
  CHECK_MESSAGE(ok.exit_code == 0, ok.output);
  CHECK(ok.output.find("audit log intact: 6 entries") != std::string::npos);
  auto entries = json::parse(p.get("/v1/admin/audit").body).at("data").as_array();
  std::vector<std::string> actions;
  for (const auto& e : entries) actions.emplace_back(e.at("action").as_string());
  CHECK(actions == std::vector<std::string>{"key.trust", "admin_key.create", "tenant.create",
                                            "license.install", "lease.refuse", "license.revoke"});

  // The store refuses to rewrite history through SQL...
  ProcessResult blocked =
      run_process({"/usr/bin/sqlite3", (p.dir.path() / "data/macrohard.db").string(),
                   "UPDATE audit_log SET detail = '{}' WHERE seq = 4;"});
  CHECK(blocked.exit_code != 0);
  CHECK(blocked.output.find("append-only") != std::string::npos);
  // ...and someone who goes around that is caught by the chain.
  CHECK(p.daemon->stop() == 0);
  p.sqlite(
      "DROP TRIGGER audit_log_no_update; UPDATE audit_log SET detail = "
      "'{\"tenant\":\"someone-else\"}' WHERE seq = 4;");
  p.start();
  ProcessResult edited = mhctl();
  CHECK(edited.exit_code == 1);
  CHECK(edited.output.find("broken at entry 4") != std::string::npos);
  CHECK(edited.output.find("edited") != std::string::npos);

  CHECK(p.daemon->stop() == 0);
  p.sqlite("DROP TRIGGER audit_log_no_delete; DELETE FROM audit_log WHERE seq = 2;");
  p.start();
  ProcessResult deleted = mhctl();
  CHECK(deleted.exit_code == 1);
  CHECK(deleted.output.find("BROKEN") != std::string::npos);
}

TEST_CASE("rotation: a license signed with the old key keeps working beside the new key") {
  TempDir keys;
  PrivateKey old_key = licensing::generate_key("staff-2025").value();
  licensing::PublicKey old_pub = old_key.public_key().value();
  old_pub.retired_at = unix_seconds();
  REQUIRE(
      write_new_file(keys.path() / "old.pub", licensing::encode_public_key(old_pub), 0644).ok());
  Platform p({"--license-public-key", (keys.path() / "old.pub").string()});
  LicenseTerms t = terms("lic_old_key");
  t.issued_at = unix_seconds() - 86400;  // before the key was retired
  CHECK(p.install(licensing::issue_license(t, old_key).value()).status == 201);
  LicenseTerms u = terms("lic_new_key");
  u.tenant = "globex";
  CHECK(p.install(licensing::issue_license(u, p.key).value()).status == 201);
  LicenseTerms late = terms("lic_late");
  late.tenant = "initech";
  late.issued_at = unix_seconds() + 60;  // signed with the old key after its retirement
  RawResponse refused = p.install(licensing::issue_license(late, old_key).value());
  CHECK(refused.status == 403);
  CHECK(message_of(refused).find("retired") != std::string::npos);
  CHECK(p.lease("lic_old_key", "w").status == 201);
  CHECK(p.lease("lic_new_key", "w").status == 201);
}

}  // namespace
}  // namespace mh::test

namespace mh::test {
namespace {

std::string pub_text(const PrivateKey& key) {
  return licensing::encode_public_key(key.public_key().value());
}

TEST_CASE("the SDK verifies a license offline and says why one is refused") {
  PrivateKey key = licensing::generate_key("staff-2026").value();
  std::string text = licensing::issue_license(terms("lic_sdk", 4), key).value();
  macrohard::LicenseInfo info = macrohard::verify_license(text, {pub_text(key)});
  CHECK(info.id == "lic_sdk");
  CHECK(info.tenant == "acme");
  CHECK(info.status == "valid");
  CHECK(info.seats == 4);
  CHECK(info.has_feature("train"));
  CHECK_FALSE(info.has_feature("multi_gpu"));

  auto refusal = [&](const std::string& t, const std::vector<std::string>& keys, int64_t now) {
    try {
      macrohard::verify_license(t, keys, now);
    } catch (const macrohard::Error& e) {
      return std::string(e.code_name()) + ": " + e.what();
    }
    return std::string("accepted");
  };
  std::string tampered = text;
  // Another base64 letter in the middle of the signature: still canonical base64, so the
  // refusal must come from the signature check itself.
  char& c = tampered[tampered.find("Signature: ") + 15];
  c = c == 'A' ? 'B' : 'A';
  CHECK(refusal(tampered, {pub_text(key)}, 0).find("permission_denied: license rejected") == 0);
  CHECK(refusal(text, {}, 0).find("not a trusted key") != std::string::npos);
  CHECK(refusal(text, {pub_text(key)}, unix_seconds() + 400 * 86400).find("expired") !=
        std::string::npos);
  CHECK(refusal(text, {pub_text(key)}, unix_seconds() - 86400).find("not valid yet") !=
        std::string::npos);
  CHECK(refusal("garbage", {pub_text(key)}, 0).find("invalid_argument") == 0);

  // A client with a bad license fails when it is made, before any network I/O (nothing listens
  // on port 1, yet the error is the license's, not the network's).
  try {
    macrohard::Client c(macrohard::ClientOptions()
                            .base_url("http://127.0.0.1:1")
                            .trusted_key(pub_text(key))
                            .license(tampered));
    FAIL("expected a license error");
  } catch (const macrohard::Error& e) {
    CHECK(e.code() == macrohard::Code::permission_denied);
  }
}

TEST_CASE("a licensed SDK client holds a seat, renews it, and gives it back") {
  Platform p({"--lease-ttl-s", "3"});
  std::string text = licensing::issue_license(terms("lic_seat", 1), p.key).value();
  REQUIRE(p.install(text).status == 201);
  auto options = [&](const std::string& instance) {
    macrohard::ClientOptions o;
    o.base_url(p.daemon->url())
        .api_key(p.daemon->admin_key())
        .trusted_key(pub_text(p.key))
        .license(text)
        .instance_name(instance)
        .max_retries(0);
    return o;
  };
  auto live = [&] {
    return json::parse(p.get("/v1/leases?license_id=lic_seat").body).at("data").as_array();
  };
  {
    macrohard::Client first(options("first"));
    CHECK(first.license()->id == "lic_seat");
    CHECK(first.seat_lease_id().empty());  // nothing checked out before the first request
    CHECK(first.server_info().compatible);
    CHECK(first.seat_lease_id().starts_with("lease_"));
    REQUIRE(live().size() == 1);
    CHECK(live()[0].at("instance") == "first");

    macrohard::Client second(options("second"));
    try {
      second.server_info();
      FAIL("the only seat is taken");
    } catch (const macrohard::Error& e) {
      CHECK(e.code() == macrohard::Code::resource_exhausted);
      CHECK(std::string(e.what()).find("cannot hold a seat") != std::string::npos);
    }
    // Heartbeats keep the seat past its 3 s TTL.
    std::this_thread::sleep_for(std::chrono::milliseconds(4500));
    CHECK(live().size() == 1);
    CHECK_THROWS_AS(second.server_info(), macrohard::Error);
  }
  CHECK(live().empty());  // released when the client went away
  macrohard::Client third(options("third"));
  CHECK(third.server_info().compatible);

  // Revocation: the platform drops the seat, the heartbeat notices, and the client is refused.
  REQUIRE(p.post("/v1/admin/licenses/lic_seat/revoke", {{"reason", "test"}}).status == 200);
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));
  try {
    third.server_info();
    FAIL("the license is revoked");
  } catch (const macrohard::Error& e) {
    CHECK(e.code() == macrohard::Code::permission_denied);
    CHECK(std::string(e.what()).find("revoked") != std::string::npos);
  }
}

}  // namespace
}  // namespace mh::test

namespace mh::test {
namespace {

TEST_CASE("tenant keys lease only their own tenant's seats — another's license is not found") {
  Platform p;
  REQUIRE(p.install(licensing::issue_license(terms("lic_acme"), p.key).value()).status == 201);
  LicenseTerms g = terms("lic_globex");
  g.tenant = "globex";
  REQUIRE(p.install(licensing::issue_license(g, p.key).value()).status == 201);
  auto owner_key = [&](const std::string& tenant) {
    RawResponse r = p.post("/v1/admin/tenants/" + tenant + "/keys", {{"name", "owner"}});
    REQUIRE(r.status == 201);
    return std::string(json::parse(r.body).at("key").as_string());
  };
  std::string acme = owner_key("acme"), globex = owner_key("globex");
  auto as = [&](const std::string& key, const std::string& method, const std::string& path,
                const json::object& body) {
    return http_request(p.daemon->port(), method, path, body.empty() ? "" : json::serialize(body),
                        {{"Authorization", "Bearer " + key}, {"Content-Type", "application/json"}});
  };
  RawResponse mine =
      as(acme, "POST", "/v1/leases", {{"license_id", "lic_acme"}, {"instance", "a"}});
  REQUIRE(mine.status == 201);
  std::string lease(json::parse(mine.body).at("id").as_string());
  RawResponse theirs =
      as(globex, "POST", "/v1/leases", {{"license_id", "lic_acme"}, {"instance", "g"}});
  RawResponse missing =
      as(globex, "POST", "/v1/leases", {{"license_id", "lic_nothing"}, {"instance", "g"}});
  CHECK(theirs.status == 404);
  CHECK(missing.status == 404);
  CHECK(as(globex, "POST", "/v1/leases/" + lease + "/heartbeat", {}).status == 404);
  CHECK(as(globex, "DELETE", "/v1/leases/" + lease, {}).status == 404);
  CHECK(as(globex, "GET", "/v1/leases?license_id=lic_acme", {}).status == 404);
  CHECK(as(acme, "POST", "/v1/leases/" + lease + "/heartbeat", {}).status == 200);
  CHECK(
      as(globex, "POST", "/v1/leases", {{"license_id", "lic_globex"}, {"instance", "g"}}).status ==
      201);
  // A refusal is audited with the tenant's key as its actor.
  CHECK(as(acme, "POST", "/v1/leases", {{"license_id", "lic_acme"}, {"instance", "b"}}).status ==
        201);
  CHECK(as(acme, "POST", "/v1/leases", {{"license_id", "lic_acme"}, {"instance", "c"}}).status ==
        201);
  CHECK(as(acme, "POST", "/v1/leases", {{"license_id", "lic_acme"}, {"instance", "d"}}).status ==
        429);
  auto entries = json::parse(p.get("/v1/admin/audit?limit=1000").body).at("data").as_array();
  const auto& last = entries.back().as_object();
  CHECK(last.at("action") == "lease.refuse");
  CHECK(last.at("actor").as_string().starts_with("tenant:acme/key_"));
}

}  // namespace
}  // namespace mh::test
