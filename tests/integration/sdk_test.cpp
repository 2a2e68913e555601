// The SDK (C++ layer over the C ABI) against a real daemon, over HTTP and HTTPS.
#include <doctest/doctest.h>

#include <boost/json.hpp>
#include <macrohard/macrohard.hpp>

#include "tests/support/harness.h"

namespace mh::test {
namespace {

namespace json = boost::json;

macrohard::ClientOptions options_for(const Daemon& daemon) {
  macrohard::ClientOptions options;
  options.base_url(daemon.url()).max_retries(1).initial_backoff(std::chrono::milliseconds(10));
  return options;
}

TEST_CASE("version and health through the SDK") {
  Daemon daemon;
  macrohard::Client client(options_for(daemon));
  macrohard::ServerInfo info = client.server_info();
  CHECK(info.version == macrohard::library_version());
  CHECK(info.compatible);
  REQUIRE(info.api_versions.size() == 1);
  CHECK(info.api_versions[0] == "v1");
  macrohard::Health health = client.health();
  CHECK(health.live);
  CHECK(health.ready);
  CHECK(health.detail.empty());
}

TEST_CASE("server errors arrive as typed errors with code, status and request id") {
  Daemon daemon;
  macrohard::Client anonymous(options_for(daemon));
  try {
    anonymous.request_json("GET", "/v1/admin/status");
    FAIL("expected an error");
  } catch (const macrohard::Error& e) {
    CHECK(e.code() == macrohard::Code::unauthenticated);
    CHECK(std::string(e.code_name()) == "unauthenticated");
    CHECK(e.http_status() == 401);
    CHECK(e.request_id().starts_with("req_"));
    CHECK(std::string(e.what()).find("Bearer") != std::string::npos);
  }
  macrohard::Client admin(options_for(daemon).api_key(daemon.admin_key()));
  auto status = json::parse(admin.request_json("GET", "/v1/admin/status")).as_object();
  CHECK(status.at("object") == "admin.status");
  try {
    admin.request_json("POST", "/v1/admin/keys", R"({"name": ""})");
    FAIL("expected an error");
  } catch (const macrohard::Error& e) {
    CHECK(e.code() == macrohard::Code::invalid_argument);
    CHECK(e.param() == "name");
  }
  CHECK_THROWS_AS(admin.request_json("GET", "/v1/nope"), macrohard::Error);
  CHECK_THROWS_AS(admin.request_json("GET", "no-slash"), macrohard::Error);
  auto created = json::parse(admin.request_json("POST", "/v1/admin/keys", R"({"name":"sdk"})"));
  CHECK(created.as_object().at("name") == "sdk");
}

TEST_CASE("bad client options are refused before any I/O") {
  CHECK_THROWS_AS(macrohard::ClientOptions().base_url("127.0.0.1:8080"), macrohard::Error);
  CHECK_THROWS_AS(macrohard::ClientOptions().api_key("has space"), macrohard::Error);
  CHECK_THROWS_AS(macrohard::ClientOptions().max_retries(-1), macrohard::Error);
  CHECK_THROWS_AS(macrohard::ClientOptions().request_timeout(std::chrono::milliseconds(0)),
                  macrohard::Error);
  CHECK_THROWS_AS(macrohard::Client(macrohard::ClientOptions()), macrohard::Error);
}

TEST_CASE("a daemon that is gone is unavailable — one that stops mid-session too") {
  auto daemon = std::make_unique<Daemon>();
  macrohard::Client client(options_for(*daemon));
  CHECK(client.health().live);
  CHECK(daemon->stop() == 0);
  try {
    client.server_info();
    FAIL("expected an error");
  } catch (const macrohard::Error& e) {
    CHECK(e.code() == macrohard::Code::unavailable);
    CHECK(e.http_status() == 0);
  }
}

TEST_CASE("HTTPS: certificates are verified by default — a trusted CA file makes it work") {
  TempDir certs;
  ProcessResult made =
      run_process({mhctl_path().string(), "certs", "--out-dir", certs.path().string(), "--host",
                   "localhost", "--host", "127.0.0.1"});
  REQUIRE_MESSAGE(made.exit_code == 0, made.output);
  const std::string cert = (certs.path() / "server.crt").string();
  Daemon daemon(with_args({"--tls-cert", cert, "--tls-key", (certs.path() / "server.key").string()},
                          "https"));

  macrohard::Client trusted(options_for(daemon).ca_file(cert));
  CHECK(trusted.server_info().version == macrohard::library_version());
  CHECK(trusted.health().ready);
  auto status =
      json::parse(macrohard::Client(options_for(daemon).ca_file(cert).api_key(daemon.admin_key()))
                      .request_json("GET", "/v1/admin/status"));
  CHECK(status.as_object().at("tls") == true);

  macrohard::Client untrusted(options_for(daemon));
  try {
    untrusted.server_info();
    FAIL("expected a certificate error");
  } catch (const macrohard::Error& e) {
    CHECK(e.code() == macrohard::Code::unavailable);
    CHECK(std::string(e.what()).find("not trusted") != std::string::npos);
  }

  macrohard::Client unverified(options_for(daemon).verify_tls(false));
  CHECK(unverified.health().live);

  // Plain HTTP to the TLS port fails cleanly rather than hanging.
  macrohard::Client plain(macrohard::ClientOptions()
                              .base_url("http://127.0.0.1:" + std::to_string(daemon.port()))
                              .max_retries(0)
                              .request_timeout(std::chrono::milliseconds(3000)));
  CHECK_THROWS_AS(plain.server_info(), macrohard::Error);
  CHECK(trusted.health().live);  // and the server is unharmed
}

}  // namespace
}  // namespace mh::test
