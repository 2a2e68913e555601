// macrohardd's HTTP behaviour, driven over raw sockets so that the requests can be as broken,
// slow or oversized as real clients' sometimes are. Each bad request gets its 4xx and the
// server goes on serving.
#include <doctest/doctest.h>

#include <boost/json.hpp>
#include <fstream>
#include <set>
#include <thread>

#include "tests/support/harness.h"

namespace mh::test {
namespace {

namespace json = boost::json;

std::string error_code_of(const RawResponse& response) {
  return json::value_to<std::string>(
      json::parse(response.body).as_object().at("error").as_object().at("code"));
}

void check_still_serving(uint16_t port) {
  CHECK(http_request(port, "GET", "/healthz").status == 200);
}

TEST_CASE("keep-alive: several requests, pipelined too, on one connection") {
  Daemon daemon;
  RawConnection conn(daemon.port());
  std::set<std::string> ids;
  for (int i = 0; i < 3; ++i) {
    conn.send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    auto response = conn.read_response();
    REQUIRE(response);
    CHECK(response->status == 200);
    CHECK(response->body == R"({"status":"ok"})");
    CHECK(response->header("connection") != "close");
    ids.insert(response->header("x-request-id"));
  }
  CHECK(ids.size() == 3);  // every response has its own id
  conn.send(
      "GET /v1/version HTTP/1.1\r\nHost: x\r\nx-request-id: my-trace-1\r\n\r\n"
      "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
  auto first = conn.read_response();
  auto second = conn.read_response();
  REQUIRE(first);
  REQUIRE(second);
  CHECK(first->header("x-request-id") == "my-trace-1");
  CHECK(json::parse(first->body).as_object().at("api_versions").as_array().at(0) == "v1");
  CHECK(second->status == 200);
  // An HTTP/1.0 client without keep-alive gets its answer and a closed connection.
  RawConnection old(daemon.port());
  old.send("GET /healthz HTTP/1.0\r\n\r\n");
  REQUIRE(old.read_response());
  CHECK(old.closed_by_peer(2s));
}

TEST_CASE("unknown routes are 404, wrong methods 405, both in the error envelope") {
  Daemon daemon;
  RawResponse missing = http_request(daemon.port(), "GET", "/v1/nothing-here");
  CHECK(missing.status == 404);
  CHECK(error_code_of(missing) == "not_found");
  CHECK(missing.header("content-type") == "application/json");
  CHECK_FALSE(missing.header("x-request-id").empty());
  RawResponse wrong = http_request(daemon.port(), "DELETE", "/healthz");
  CHECK(wrong.status == 405);
  CHECK(wrong.header("allow") == "GET");
  CHECK(error_code_of(wrong) == "method_not_allowed");
}

TEST_CASE("malformed requests get 400 and the server keeps serving") {
  Daemon daemon;
  for (const char* raw : {"GARBAGE\r\n\r\n", "GET /healthz HTTP/9.9\r\nHost: x\r\n\r\n",
                          "GET /healthz HTTP/1.1\r\nBad Header Line\r\n\r\n",
                          "GET http://elsewhere/healthz HTTP/1.1\r\nHost: x\r\n\r\n",
                          "POST /healthz HTTP/1.1\r\nContent-Length: nope\r\n\r\n"}) {
    CAPTURE(raw);
    RawConnection conn(daemon.port());
    conn.send(raw);
    auto response = conn.read_response();
    REQUIRE(response);
    CHECK(response->status == 400);
    CHECK(error_code_of(*response) == "invalid_argument");
    CHECK(conn.closed_by_peer(2s));
    check_still_serving(daemon.port());
  }
}

TEST_CASE("malformed JSON bodies are 400 with a message that says so") {
  Daemon daemon;
  std::map<std::string, std::string> auth = {{"Authorization", "Bearer " + daemon.admin_key()},
                                             {"Content-Type", "application/json"}};
  for (const char* body : {"{bad", "[]", R"({"name": 5})", "{\"name\":\"x\"", ""}) {
    CAPTURE(body);
    RawResponse response = http_request(daemon.port(), "POST", "/v1/admin/keys", body, auth);
    CHECK(response.status == 400);
    CHECK(error_code_of(response) == "invalid_argument");
  }
  RawResponse response = http_request(daemon.port(), "POST", "/v1/admin/keys", "{bad", auth);
  CHECK(response.body.find("malformed JSON") != std::string::npos);
  check_still_serving(daemon.port());
}

TEST_CASE("oversized headers get 431 and oversized bodies 413, and nothing changes") {
  Daemon daemon(with_args({"--max-header-bytes", "4096", "--max-body-bytes", "2048"}));
  {
    RawConnection conn(daemon.port());
    conn.send("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(8000, 'a') + "\r\n\r\n");
    auto response = conn.read_response();
    REQUIRE(response);
    CHECK(response->status == 431);
    CHECK(error_code_of(*response) == "payload_too_large");
  }
  {
    RawConnection conn(daemon.port());
    conn.send("POST /v1/admin/keys HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " +
              daemon.admin_key() +
              "\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n");
    auto response = conn.read_response();
    REQUIRE(response);
    CHECK(response->status == 413);
    CHECK(response->body.find("2048") != std::string::npos);
  }
  // The refused creation left no key behind: only the bootstrap key is listed.
  RawResponse keys = http_request(daemon.port(), "GET", "/v1/admin/keys", "",
                                  {{"Authorization", "Bearer " + daemon.admin_key()}});
  CHECK(json::parse(keys.body).as_object().at("data").as_array().size() == 1);
  check_still_serving(daemon.port());
}

TEST_CASE("a slow client is cut off by the read timeout, an idle one by the idle timeout") {
  Daemon daemon(with_args({"--read-timeout-ms", "400", "--idle-timeout-ms", "600"}));
  {
    // Slowloris: a header that never ends, one byte at a time.
    RawConnection conn(daemon.port());
    conn.send("GET /healthz HTTP/1.1\r\n");
    auto start = std::chrono::steady_clock::now();
    bool closed = false;
    for (int i = 0; i < 40 && !closed; ++i) {
      try {
        conn.send("X");
      } catch (const std::exception&) {
        closed = true;
        break;
      }
      closed = conn.closed_by_peer(100ms);
    }
    CHECK(closed);
    CHECK(std::chrono::steady_clock::now() - start < 3s);
  }
  {
    RawConnection conn(daemon.port());
    conn.send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    REQUIRE(conn.read_response());
    CHECK(conn.closed_by_peer(3s));  // idle after its request
  }
  {
    RawConnection silent(daemon.port());
    CHECK(silent.closed_by_peer(3s));  // never says anything
  }
  check_still_serving(daemon.port());
}

TEST_CASE("one client address holds at most its share of the connections") {
  Daemon daemon(with_args({"--max-connections-per-address", "3"}));
  std::vector<std::unique_ptr<RawConnection>> held;
  for (int i = 0; i < 3; ++i) {
    held.push_back(std::make_unique<RawConnection>(daemon.port()));
    held.back()->send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    REQUIRE(held.back()->read_response());  // open and served (kept alive)
  }
  {
    RawConnection fourth(daemon.port());
    CHECK(fourth.closed_by_peer(3s));  // refused at accept
  }
  held.pop_back();  // one goes: its place is free again
  bool served = false;
  for (int i = 0; i < 50 && !served; ++i) {
    RawConnection again(daemon.port());
    again.send("GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    auto r = again.read_response(1s);
    served = r && r->status == 200;
    if (!served) std::this_thread::sleep_for(20ms);
  }
  CHECK(served);
}

TEST_CASE("SIGTERM stops accepting, closes idle connections and finishes requests in flight") {
  Daemon daemon(with_args({"--shutdown-grace-ms", "10000"}));
  RawConnection idle(daemon.port());
  idle.send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
  REQUIRE(idle.read_response());

  // A request in flight: its header is in, its body is not yet.
  const std::string body = R"({"name":"during shutdown"})";
  RawConnection busy(daemon.port());
  busy.send("POST /v1/admin/keys HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " +
            daemon.admin_key() + "\r\nContent-Type: application/json\r\nContent-Length: " +
            std::to_string(body.size()) + "\r\n\r\n" + body.substr(0, 5));
  std::this_thread::sleep_for(100ms);
  ::kill(daemon.pid(), SIGTERM);

  CHECK(idle.closed_by_peer(3s));
  std::this_thread::sleep_for(200ms);
  CHECK_THROWS(RawConnection(daemon.port()));  // no longer accepting
  CHECK(daemon.running());                     // still finishing the request in flight

  busy.send(body.substr(5));
  auto response = busy.read_response();
  REQUIRE(response);
  CHECK(response->status == 201);
  CHECK(response->header("connection") == "close");
  CHECK(json::parse(response->body).as_object().at("name") == "during shutdown");
  CHECK(daemon.wait_exit(10s) == 0);
  CHECK(daemon.output().find("macrohardd stopped") != std::string::npos);
}

TEST_CASE("admin routes need a live admin key") {
  Daemon daemon;
  const uint16_t port = daemon.port();
  auto get_status = [&](const std::string& authorization) {
    std::map<std::string, std::string> headers;
    if (!authorization.empty()) headers["Authorization"] = authorization;
    return http_request(port, "GET", "/v1/admin/status", "", headers);
  };
  RawResponse none = get_status("");
  CHECK(none.status == 401);
  CHECK(none.body.find("Authorization: Bearer") != std::string::npos);
  CHECK(get_status("Bearer mh_admin_not-a-real-key").status == 401);
  CHECK(get_status("Basic " + daemon.admin_key()).status == 401);
  CHECK(get_status("Bearer " + daemon.admin_key().substr(0, 20)).status == 401);
  RawResponse ok = get_status("Bearer " + daemon.admin_key());
  REQUIRE(ok.status == 200);
  auto status = json::parse(ok.body).as_object();
  CHECK(status.at("ready") == true);
  CHECK(status.at("store").as_object().at("schema_version").as_int64() >= 1);

  // A second key works until it is revoked, then at once it does not.
  std::map<std::string, std::string> admin = {{"Authorization", "Bearer " + daemon.admin_key()},
                                              {"Content-Type", "application/json"}};
  RawResponse created = http_request(port, "POST", "/v1/admin/keys", R"({"name":"ops"})", admin);
  REQUIRE(created.status == 201);
  auto key = json::parse(created.body).as_object();
  std::string secret = json::value_to<std::string>(key.at("key"));
  std::string id = json::value_to<std::string>(key.at("id"));
  CHECK(secret.starts_with("mh_admin_"));
  CHECK(get_status("Bearer " + secret).status == 200);
  RawResponse listed = http_request(port, "GET", "/v1/admin/keys?limit=1", "", admin);
  auto page = json::parse(listed.body).as_object();
  CHECK(page.at("has_more") == true);
  CHECK(page.at("data").as_array().size() == 1);
  CHECK(listed.body.find(secret) == std::string::npos);  // never shown again
  CHECK(http_request(port, "DELETE", "/v1/admin/keys/" + id, "", admin).status == 200);
  CHECK(get_status("Bearer " + secret).status == 401);
  CHECK(http_request(port, "DELETE", "/v1/admin/keys/akey_missing", "", admin).status == 404);

  // The last live key cannot be revoked.
  std::string bootstrap_id = json::value_to<std::string>(
      json::parse(http_request(port, "GET", "/v1/admin/keys", "", admin).body)
          .as_object()
          .at("first_id"));
  RawResponse last = http_request(port, "DELETE", "/v1/admin/keys/" + bootstrap_id, "", admin);
  CHECK(last.status == 409);
  CHECK(get_status("Bearer " + daemon.admin_key()).status == 200);
}

TEST_CASE("state survives a restart — the admin key is made only on the first start") {
  TempDir dir;
  std::string first_key;
  {
    Daemon daemon(with_data_dir(dir.path() / "data"));
    first_key = daemon.admin_key();
    CHECK(daemon.output().find(first_key) != std::string::npos);
    CHECK(daemon.stop() == 0);
  }
  std::filesystem::remove(dir.path() / "admin.key");
  Daemon again(with_data_dir(dir.path() / "data"));
  CHECK_FALSE(std::filesystem::exists(dir.path() / "admin.key"));
  CHECK(again.output().find("first start") == std::string::npos);
  RawResponse status = http_request(again.port(), "GET", "/v1/admin/status", "",
                                    {{"Authorization", "Bearer " + first_key}});
  CHECK(status.status == 200);
}

TEST_CASE("a second daemon on the same data directory is refused") {
  Daemon first;
  ProcessResult second = run_process({macrohardd_path().string(), "--data-dir",
                                      first.data_dir().string(), "--listen", "127.0.0.1:0"},
                                     {}, 20s);
  CHECK(second.exit_code == 1);
  CHECK(second.output.find("another macrohardd") != std::string::npos);
  check_still_serving(first.port());
}

TEST_CASE("readyz reports its checks — metrics count requests by route and status") {
  Daemon daemon;
  RawResponse ready = http_request(daemon.port(), "GET", "/readyz");
  CHECK(ready.status == 200);
  CHECK(json::parse(ready.body).as_object().at("checks").as_object().at("store") == "ok");
  for (int i = 0; i < 3; ++i) http_request(daemon.port(), "GET", "/healthz");
  http_request(daemon.port(), "GET", "/missing");
  // A request is counted once its response is written, which can be a moment after the client
  // has read it: look again for a little while.
  const std::string healthz =
      R"(mh_http_requests_total{route="/healthz",method="GET",status="200"} 3)";
  RawResponse metrics;
  for (int i = 0; i < 200; ++i) {
    metrics = http_request(daemon.port(), "GET", "/metrics");
    if (metrics.body.find(healthz) != std::string::npos &&
        metrics.body.find(R"(route="unmatched",method="GET",status="404"} 1)") !=
            std::string::npos) {
      break;
    }
    std::this_thread::sleep_for(10ms);
  }
  CHECK(metrics.status == 200);
  CHECK(metrics.header("content-type").starts_with("text/plain; version=0.0.4"));
  CHECK(metrics.body.find(healthz) != std::string::npos);
  CHECK(metrics.body.find(
            R"(mh_http_requests_total{route="unmatched",method="GET",status="404"} 1)") !=
        std::string::npos);
  CHECK(metrics.body.find("mh_http_request_duration_seconds_bucket") != std::string::npos);
  CHECK(metrics.body.find("mh_http_open_connections") != std::string::npos);
}

TEST_CASE("bad configuration is refused at start with a clear message") {
  ProcessResult bad_listen = run_process({macrohardd_path().string(), "--listen", "nowhere"});
  CHECK(bad_listen.exit_code != 0);
  CHECK(bad_listen.output.find("--listen") != std::string::npos);
  TempDir dir;
  std::ofstream(dir.path() / "cert.pem") << "not a certificate";
  ProcessResult bad_tls =
      run_process({macrohardd_path().string(), "--data-dir", (dir.path() / "d").string(),
                   "--listen", "127.0.0.1:0", "--tls-cert", (dir.path() / "cert.pem").string(),
                   "--tls-key", (dir.path() / "cert.pem").string()});
  CHECK(bad_tls.exit_code == 1);
  CHECK(bad_tls.output.find("TLS certificate") != std::string::npos);
  // Flags, environment and file all reach the daemon.
  ProcessResult help = run_process({macrohardd_path().string(), "--help"});
  CHECK(help.exit_code == 0);
  CHECK(help.output.find("MACROHARD_DATA_DIR") != std::string::npos);
  ProcessResult bad_env =
      run_process({macrohardd_path().string()}, {{"MACROHARD_LISTEN", "nowhere"}});
  CHECK(bad_env.exit_code != 0);
  CHECK(bad_env.output.find("--listen") != std::string::npos);
  std::ofstream(dir.path() / "macrohardd.toml") << "max-body-bytes = 1024\n";
  Daemon daemon(with_args({"--config", (dir.path() / "macrohardd.toml").string()}));
  RawResponse big = http_request(daemon.port(), "POST", "/v1/admin/keys", std::string(1500, ' '),
                                 {{"Authorization", "Bearer " + daemon.admin_key()}});
  CHECK(big.status == 413);
}

}  // namespace
}  // namespace mh::test
