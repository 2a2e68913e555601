// The protocols of the rooms whose services live in tenants/ and licensing/: keys, tenants,
// licences, leases, usage and the audit log. Each request is read with its refusals naming the
// field, and each record written in the shape docs/api.md gives.
#include <doctest/doctest.h>

#include <boost/json.hpp>

#include "platform/api/audit/protocol.h"
#include "platform/api/fields.h"
#include "platform/api/keys/protocol.h"
#include "platform/api/leases/protocol.h"
#include "platform/api/licenses/protocol.h"
#include "platform/api/tenants/protocol.h"
#include "platform/api/usage/protocol.h"

namespace mh::api {
namespace {

namespace json = boost::json;
using tenants::Role;

json::object body_of(std::string_view text) { return json::parse(text).as_object(); }

template <typename T>
std::string refused(const Result<T>& r) {
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().code() == Code::kInvalidArgument);
  return r.status().param();
}

Request get(std::string query) {
  Request r;
  r.method = "GET";
  r.path = "/v1/usage";
  r.query = std::move(query);
  return r;
}

TEST_CASE("the fields of a body: absent, null, or of the wrong type, named") {
  auto body = body_of(R"({"s": "x", "n": 2.5, "i": 7, "z": null, "bad": []})");
  CHECK(*optional_string(body, "s") == "x");
  CHECK_FALSE(optional_string(body, "missing")->has_value());
  CHECK_FALSE(optional_string(body, "z")->has_value());
  CHECK(refused(optional_string(body, "bad")) == "bad");
  CHECK(**optional_number(body, "n") == 2.5);
  CHECK(refused(optional_number(body, "s")) == "s");
  CHECK(**optional_integer(body, "i") == 7);
  CHECK(refused(optional_integer(body, "n")) == "n");
  CHECK(*required_string(body, "s") == "x");
  auto missing = required_string(body, "license", "must be the license file's text");
  CHECK(refused(missing) == "license");
  CHECK(missing.status().message() == "'license' must be the license file's text");
  Request empty;
  CHECK(body_or_empty(empty)->empty());
  Request broken;
  broken.body = "{";
  CHECK_FALSE(body_or_empty(broken).ok());
}

TEST_CASE("keys: a tenant's by name and role, an admin's by name, the secret shown once") {
  auto asked = parse_key_request(body_of(R"({"name": "ci", "role": "viewer"})"), std::nullopt,
                                 Role::kDeveloper);
  REQUIRE(asked.ok());
  CHECK(asked->name == "ci");
  CHECK(asked->role == Role::kViewer);
  CHECK(parse_key_request(body_of("{}"), "owner", Role::kOwner)->role == Role::kOwner);
  CHECK(parse_key_request(body_of("{}"), "owner", Role::kOwner)->name == "owner");
  CHECK(refused(parse_key_request(body_of("{}"), std::nullopt, Role::kDeveloper)) == "name");
  CHECK(refused(parse_key_request(body_of(R"({"name": "a", "role": "root"})"), std::nullopt,
                                  Role::kDeveloper)) == "role");
  CHECK(refused(parse_admin_key_request(body_of(R"({"name": 3})"))) == "name");

  tenants::TenantKey key{"key_1", "acme", "ci", Role::kViewer, "mh_live_ab", 100, "admin",
                         std::nullopt};
  json::object out = created_key_json(key_json(key), "mh_live_secret");
  CHECK(out.at("object") == "api_key");
  CHECK(out.at("role") == "viewer");
  CHECK(out.at("revoked_at").is_null());
  CHECK(out.at("key") == "mh_live_secret");
  CHECK_FALSE(key_json(key).contains("key"));
  tenants::AdminKey admin;
  admin.id = "akey_1";
  admin.revoked_at = 5;
  CHECK(admin_key_json(admin).at("object") == "admin_key");
  CHECK(admin_key_json(admin).at("revoked_at") == 5);
}

TEST_CASE("tenants: an id is required, limits are numbers, the licence's state is explained") {
  auto asked = parse_tenant_request(body_of(R"({"id": "acme", "rate_limit_rps": 5})"));
  REQUIRE(asked.ok());
  CHECK(asked->name == "acme");  // the id when no name is given
  CHECK(*asked->limits.rate_limit_rps == 5);
  CHECK_FALSE(asked->limits.storage_limit_bytes);
  CHECK(refused(parse_tenant_request(body_of(R"({"name": "Acme"})"))) == "id");
  CHECK(refused(parse_tenant_request(body_of(R"({"id": 1})"))) == "id");
  CHECK(refused(parse_limits(body_of(R"({"storage_limit_bytes": "1G"})"))) ==
        "storage_limit_bytes");
  CHECK(*parse_suspend_request(body_of(R"({"reason": "unpaid"})")) == "unpaid");
  CHECK(*parse_suspend_request(body_of("{}")) == "");

  tenants::Tenant t;
  t.id = "acme";
  t.suspended_at = 9;
  t.suspend_reason = "unpaid";
  json::object out = tenant_json(t);
  CHECK(out.at("suspend_reason") == "unpaid");
  CHECK(out.at("limits").as_object().at("rate_limit_burst") == 100);
  CHECK(license_state_json(nullptr, {}).at("reason") == "no license installed");
  licensing::Entitlement e;
  e.license.terms.id = "lic_1";
  e.license.terms.expires_at = 2000;
  json::object expired = license_state_json(&e, failed_precondition("license lic_1 expired"));
  CHECK(expired.at("in_force") == false);
  CHECK(expired.at("reason") == "license lic_1 expired");
  CHECK(license_state_json(&e, {}).at("reason").is_null());
}

TEST_CASE("licences: installed from the file's text, shown with their standing at a time") {
  CHECK(*parse_install_request(body_of(R"({"license": "-----BEGIN"})")) == "-----BEGIN");
  CHECK(refused(parse_install_request(body_of("{}"))) == "license");
  CHECK(*parse_revoke_request(body_of("{}")) == "");
  CHECK(refused(parse_revoke_request(body_of(R"({"reason": 1})"))) == "reason");

  licensing::LicenseRecord r;
  r.license.terms.id = "lic_1";
  r.license.terms.not_before = 100;
  r.license.terms.expires_at = 200;
  r.license.key_id = "k1";
  r.active = true;
  CHECK(license_json(r, 150).at("status") == "valid");
  CHECK(license_json(r, 50).at("status") == "not yet valid");
  CHECK(license_json(r, 150).at("key_id") == "k1");
  r.invalid_reason = "its key is no longer trusted";
  CHECK(license_json(r, 150).at("status") == "invalid");
  r.revoked_at = 160;
  r.revoke_reason = "breach";
  CHECK(license_json(r, 150).at("status") == "revoked");
  CHECK(license_json(r, 150).at("revoke_reason") == "breach");
}

TEST_CASE("leases: a licence and an instance are required, the time to live an integer") {
  auto asked =
      parse_lease_request(body_of(R"({"license_id": "lic_1", "instance": "host-a:1"})"));
  REQUIRE(asked.ok());
  CHECK(asked->instance == "host-a:1");
  CHECK_FALSE(asked->ttl_seconds);
  CHECK(*parse_lease_request(
              body_of(R"({"license_id": "l", "instance": "i", "ttl_seconds": 30})"))
             ->ttl_seconds == 30);
  CHECK(refused(parse_lease_request(body_of(R"({"instance": "i"})"))) == "license_id");
  CHECK(refused(parse_lease_request(body_of(R"({"license_id": "l"})"))) == "instance");
  CHECK(refused(parse_lease_request(
            body_of(R"({"license_id": "l", "instance": "i", "ttl_seconds": 1.5})"))) ==
        "ttl_seconds");
  licensing::Lease l;
  l.id = "lease_1";
  CHECK(lease_json(l).at("object") == "lease");
  CHECK(lease_json(l).at("released_at").is_null());
}

TEST_CASE("usage: a period of at most 366 days, buckets, grouping and a dimension by name") {
  const int64_t now = 10'000'000;
  auto asked = parse_usage_request(get(""), now);
  REQUIRE(asked.ok());
  CHECK(asked->query.end == now + 1);
  CHECK(asked->query.end - asked->query.start == 30 * 86400);
  CHECK(asked->query.bucket_seconds == 86400);
  auto hourly = parse_usage_request(
      get("start_time=100&end_time=7300&bucket_width=1h&group_by=subject&dimension=input_tokens"),
      now);
  REQUIRE(hourly.ok());
  CHECK(hourly->query.bucket_seconds == 3600);
  CHECK(hourly->query.by_subject);
  CHECK(*hourly->query.dimension == tenants::UsageDimension::kInputTokens);
  CHECK(refused(parse_usage_request(get("end_time=-1"), now)) == "end_time");
  CHECK(refused(parse_usage_request(get("start_time=5&end_time=5"), now)) == "end_time");
  CHECK(refused(parse_usage_request(get("start_time=0&end_time=40000000"), now)) ==
        "start_time");
  CHECK(refused(parse_usage_request(get("bucket_width=1w"), now)) == "bucket_width");
  CHECK(refused(parse_usage_request(get("group_by=model"), now)) == "group_by");
  CHECK(refused(parse_usage_request(get("dimension=watts"), now)) == "dimension");

  auto total = parse_usage_request(get("start_time=0&end_time=1000&bucket_width=total"), now);
  std::vector<tenants::UsageTotal> lines(2);
  lines[0].dimension = tenants::UsageDimension::kInputTokens;
  lines[0].quantity = 10;
  lines[1].dimension = tenants::UsageDimension::kInputTokens;
  lines[1].quantity = 5;
  json::object out = usage_json("acme", *total, lines);
  CHECK(out.at("totals").as_object().at("input_tokens").to_number<double>() == 15);
  CHECK(out.at("data").as_array()[0].as_object().at("end_time") == 1000);  // one bucket: all
  CHECK_FALSE(out.at("data").as_array()[0].as_object().contains("subject_id"));
}

TEST_CASE("the audit log: pages after a seq, with the chain's head") {
  CHECK(*parse_audit_after("") == 0);
  CHECK(*parse_audit_after("42") == 42);
  CHECK(refused(parse_audit_after("-1")) == "after");
  CHECK(refused(parse_audit_after("1234567890123456789")) == "after");
  licensing::AuditEntry e;
  e.seq = 1;
  e.action = "license.install";
  licensing::ChainHead head;
  head.seq = 1;
  head.hash = "ab";
  json::object out = audit_page_json({e}, true, head);
  CHECK(out.at("has_more") == true);
  CHECK(out.at("data").as_array()[0].as_object().at("action") == "license.install");
  CHECK(out.at("head").as_object().at("hash") == "ab");
}

}  // namespace
}  // namespace mh::api
