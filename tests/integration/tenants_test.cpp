// Tenants on a real daemon: two tenants side by side, keys and roles, suspension, rate limits.
#include <doctest/doctest.h>

#include <boost/json.hpp>

#include "platform/base/time.h"
#include "platform/store/sqlite_database.h"
#include "tenants/usage_ledger.h"
#include "tests/support/harness.h"

namespace mh::test {
namespace {

namespace json = boost::json;

struct TwoTenants {
  Daemon daemon;
  std::string acme_owner, globex_owner;

  TwoTenants() : TwoTenants(std::vector<std::string>{}) {}
  explicit TwoTenants(std::vector<std::string> args) : daemon(with_args(std::move(args))) {
    REQUIRE(admin_post("/v1/admin/tenants", {{"id", "acme"}, {"name", "Acme Corp"}}).status == 201);
    REQUIRE(admin_post("/v1/admin/tenants", {{"id", "globex"},
                                             {"name", "Globex"},
                                             {"rate_limit_rps", 1000},
                                             {"rate_limit_burst", 1000}})
                .status == 201);
    acme_owner = key_of(admin_post("/v1/admin/tenants/acme/keys", {{"name", "first"}}));
    globex_owner = key_of(admin_post("/v1/admin/tenants/globex/keys", {{"name", "first"}}));
  }
  static std::string key_of(const RawResponse& r) {
    REQUIRE_MESSAGE(r.status == 201, r.body);
    return std::string(json::parse(r.body).at("key").as_string());
  }
  RawResponse admin_post(const std::string& path, const json::object& body) {
    return http_request(
        daemon.port(), "POST", path, json::serialize(body),
        {{"Authorization", "Bearer " + daemon.admin_key()}, {"Content-Type", "application/json"}});
  }
  RawResponse as(const std::string& key, const std::string& method, const std::string& path,
                 const json::object& body = {}) {
    return http_request(daemon.port(), method, path, body.empty() ? "" : json::serialize(body),
                        {{"Authorization", "Bearer " + key}, {"Content-Type", "application/json"}});
  }
  std::string new_key(const std::string& owner, const std::string& role) {
    return key_of(as(owner, "POST", "/v1/keys", {{"name", role + "-key"}, {"role", role}}));
  }
};

std::string code_of(const RawResponse& r) {
  return std::string(json::parse(r.body).at("error").at("code").as_string());
}

TEST_CASE("a tenant key sees its own tenant — and another tenant's ids are not found") {
  TwoTenants t;
  auto me = json::parse(t.as(t.acme_owner, "GET", "/v1/tenant").body).as_object();
  CHECK(me.at("id") == "acme");
  CHECK(me.at("key").at("role") == "owner");
  CHECK(me.at("license").at("in_force") == false);

  std::string acme_dev = t.new_key(t.acme_owner, "developer");
  auto acme_keys = json::parse(t.as(t.acme_owner, "GET", "/v1/keys").body).at("data").as_array();
  REQUIRE(acme_keys.size() == 2);
  std::string acme_key_id(acme_keys[1].at("id").as_string());

  // Globex, using Acme's key id: exactly what a missing id gets.
  RawResponse theirs = t.as(t.globex_owner, "DELETE", "/v1/keys/" + acme_key_id);
  RawResponse missing = t.as(t.globex_owner, "DELETE", "/v1/keys/key_doesnotexist");
  CHECK(theirs.status == 404);
  CHECK(missing.status == 404);
  CHECK(code_of(theirs) == code_of(missing));
  auto globex_keys =
      json::parse(t.as(t.globex_owner, "GET", "/v1/keys").body).at("data").as_array();
  CHECK(globex_keys.size() == 1);
  CHECK(t.as(t.globex_owner, "GET", "/v1/keys?after=" + acme_key_id).status == 400);
  CHECK(t.as(acme_dev, "GET", "/v1/tenant").status == 200);  // Acme's key still works
}

TEST_CASE("each role is allowed and refused exactly what the role table says") {
  TwoTenants t;
  std::string developer = t.new_key(t.acme_owner, "developer");
  std::string viewer = t.new_key(t.acme_owner, "viewer");
  struct Case {
    const char* method;
    const char* path;
    bool owner, developer, viewer;
  };
  // read: GET /v1/tenant; manage_keys: GET /v1/keys; hold_seat: GET /v1/leases (400 without a
  // license id once allowed, 403 when refused).
  const Case cases[] = {
      {"GET", "/v1/tenant", true, true, true},
      {"GET", "/v1/keys", true, false, false},
      {"GET", "/v1/leases?license_id=none", true, true, false},
  };
  for (const Case& c : cases) {
    CAPTURE(c.path);
    for (auto [key, allowed] : {std::pair{t.acme_owner, c.owner}, std::pair{developer, c.developer},
                                std::pair{viewer, c.viewer}}) {
      int status = t.as(key, c.method, c.path).status;
      if (allowed) {
        CHECK(status != 403);
      } else {
        CHECK(status == 403);
      }
    }
  }
  RawResponse refused = t.as(viewer, "POST", "/v1/keys", {{"name", "x"}});
  CHECK(refused.status == 403);
  CHECK(json::parse(refused.body)
            .at("error")
            .at("message")
            .as_string()
            .find("the role 'viewer' may not manage_keys") != std::string::npos);
  // Tenant keys never reach staff routes, and admin keys do not act as a tenant.
  CHECK(t.as(t.acme_owner, "GET", "/v1/admin/tenants").status == 403);
  CHECK(t.as(t.daemon.admin_key(), "GET", "/v1/keys").status == 403);
  CHECK(t.as("mh_live_not-a-real-key", "GET", "/v1/tenant").status == 401);
  CHECK(t.as("sk-something-else", "GET", "/v1/tenant").status == 401);
}

TEST_CASE("a revoked key and a suspended tenant are refused at once") {
  TwoTenants t;
  std::string developer = t.new_key(t.acme_owner, "developer");
  CHECK(t.as(developer, "GET", "/v1/tenant").status == 200);
  auto keys = json::parse(t.as(t.acme_owner, "GET", "/v1/keys").body).at("data").as_array();
  std::string developer_id(keys.back().at("id").as_string());
  CHECK(t.as(t.acme_owner, "DELETE", "/v1/keys/" + developer_id).status == 200);
  CHECK(t.as(developer, "GET", "/v1/tenant").status == 401);
  // The last owner key cannot be revoked.
  std::string owner_id(keys.front().at("id").as_string());
  CHECK(t.as(t.acme_owner, "DELETE", "/v1/keys/" + owner_id).status == 409);

  RawResponse suspended = t.admin_post("/v1/admin/tenants/acme/suspend", {{"reason", "unpaid"}});
  REQUIRE(suspended.status == 200);
  RawResponse refused = t.as(t.acme_owner, "GET", "/v1/tenant");
  CHECK(refused.status == 403);
  CHECK(json::parse(refused.body).at("error").at("message") ==
        "tenant 'acme' is suspended: unpaid");
  CHECK(t.as(t.globex_owner, "GET", "/v1/tenant").status == 200);  // others unaffected
  CHECK(t.admin_post("/v1/admin/tenants/acme/resume", {}).status == 200);
  CHECK(t.as(t.acme_owner, "GET", "/v1/tenant").status == 200);
  CHECK(t.admin_post("/v1/admin/tenants/nobody/suspend", {}).status == 404);
}

TEST_CASE("a tenant over its rate limit gets 429 with Retry-After — and slows nobody else") {
  TwoTenants t;
  REQUIRE(t.admin_post("/v1/admin/tenants/acme/limits",
                       {{"rate_limit_rps", 1}, {"rate_limit_burst", 3}})
              .status == 200);
  int ok = 0, limited = 0;
  std::string retry_after;
  for (int i = 0; i < 6; ++i) {
    RawResponse r = t.as(t.acme_owner, "GET", "/v1/tenant");
    if (r.status == 200) ++ok;
    if (r.status == 429) {
      ++limited;
      retry_after = r.header("retry-after");
      CHECK(code_of(r) == "resource_exhausted");
    }
  }
  CHECK(ok == 3);
  CHECK(limited == 3);
  CHECK(retry_after == "1");
  for (int i = 0; i < 20; ++i) CHECK(t.as(t.globex_owner, "GET", "/v1/tenant").status == 200);
}

TEST_CASE("tenant administration: bad input is refused and changes nothing") {
  TwoTenants t;
  CHECK(t.admin_post("/v1/admin/tenants", {{"id", "acme"}}).status == 409);
  CHECK(t.admin_post("/v1/admin/tenants", {{"id", "Not Valid"}}).status == 400);
  CHECK(t.admin_post("/v1/admin/tenants", {{"name", "no id"}}).status == 400);
  CHECK(t.admin_post("/v1/admin/tenants", {{"id", "x"}, {"rate_limit_rps", -1}}).status == 400);
  CHECK(t.admin_post("/v1/admin/tenants/acme/keys", {{"role", "superuser"}}).status == 400);
  CHECK(t.admin_post("/v1/admin/tenants/nobody/keys", {}).status == 404);
  auto list = json::parse(http_request(t.daemon.port(), "GET", "/v1/admin/tenants", "",
                                       {{"Authorization", "Bearer " + t.daemon.admin_key()}})
                              .body);
  CHECK(list.at("data").as_array().size() == 2);
}

}  // namespace
}  // namespace mh::test

namespace mh::test {
namespace {

TEST_CASE("usage recorded through the ledger is read back by its tenant only, and exported") {
  TempDir dir;
  auto data = dir.path() / "data";
  std::string acme, globex;
  {
    DaemonOptions options;
    options.data_dir = data;
    Daemon daemon(options);
    auto admin = [&](const std::string& path, const json::object& body) {
      return http_request(daemon.port(), "POST", path, json::serialize(body),
                          {{"Authorization", "Bearer " + daemon.admin_key()},
                           {"Content-Type", "application/json"}});
    };
    REQUIRE(admin("/v1/admin/tenants", {{"id", "acme"}}).status == 201);
    REQUIRE(admin("/v1/admin/tenants", {{"id", "globex"}}).status == 201);
    acme = TwoTenants::key_of(admin("/v1/admin/tenants/acme/keys", {}));
    globex = TwoTenants::key_of(admin("/v1/admin/tenants/globex/keys", {}));
    CHECK(daemon.stop() == 0);
  }
  {
    // A producer writes through the ledger into the platform's own store.
    auto db = store::open_sqlite(data / "macrohard.db");
    REQUIRE(db.ok());
    tenants::UsageLedger ledger(**db);
    const int64_t now = unix_seconds();
    REQUIRE(ledger
                .record({"acme", now - 100, tenants::UsageDimension::kGpuSeconds, 3600, "job",
                         "ftjob-1"})
                .ok());
    REQUIRE(ledger
                .record({"acme", now - 50, tenants::UsageDimension::kOutputTokens, 512, "replica",
                         "dep-1/0"})
                .ok());
    REQUIRE(
        ledger
            .record({"globex", now - 10, tenants::UsageDimension::kGpuSeconds, 7, "job", "ftjob-2"})
            .ok());
  }
  DaemonOptions options;
  options.data_dir = data;
  Daemon daemon(options);
  auto get = [&](const std::string& key, const std::string& path) {
    return http_request(daemon.port(), "GET", path, "", {{"Authorization", "Bearer " + key}});
  };
  auto usage = json::parse(get(acme, "/v1/usage?bucket_width=total").body).as_object();
  CHECK(usage.at("tenant") == "acme");
  CHECK(usage.at("totals").at("gpu_seconds").to_number<double>() == 3600);
  CHECK(usage.at("totals").at("output_tokens").to_number<double>() == 512);
  auto theirs = json::parse(get(globex, "/v1/usage?bucket_width=total").body).as_object();
  CHECK(theirs.at("totals").at("gpu_seconds").to_number<double>() == 7);
  CHECK_FALSE(theirs.at("totals").as_object().contains("output_tokens"));
  auto by_subject = json::parse(
      get(acme, "/v1/usage?bucket_width=total&group_by=subject&dimension=gpu_seconds").body);
  CHECK(by_subject.at("data").at(0).at("subject_id") == "ftjob-1");
  CHECK(get(acme, "/v1/usage?bucket_width=2w").status == 400);
  CHECK(get(acme, "/v1/usage?start_time=10&end_time=5").status == 400);
  CHECK(get(acme, "/v1/usage?dimension=bananas").status == 400);
  RawResponse csv = get(daemon.admin_key(), "/v1/admin/usage/export?tenant=acme");
  CHECK(csv.status == 200);
  CHECK(csv.header("content-type").starts_with("text/csv"));
  CHECK(csv.body.find("acme,") != std::string::npos);
  CHECK(csv.body.find("globex") == std::string::npos);
  CHECK(get(acme, "/v1/admin/usage/export").status == 403);

  ProcessResult mine = run_process({mhctl_path().string(), "--url", daemon.url(), "--api-key", acme,
                                    "usage", "--group-by", "subject"});
  CHECK_MESSAGE(mine.exit_code == 0, mine.output);
  CHECK(mine.output.find("usage of acme") != std::string::npos);
  CHECK(mine.output.find("job ftjob-1") != std::string::npos);
  ProcessResult exported = run_process({mhctl_path().string(), "--url", daemon.url(), "--api-key",
                                        daemon.admin_key(), "admin", "usage", "export"});
  CHECK(exported.exit_code == 0);
  CHECK(exported.output.starts_with("tenant,at,dimension,quantity,subject_kind,subject_id\n"));
  CHECK(exported.output.find("globex,") != std::string::npos);
}

}  // namespace
}  // namespace mh::test
