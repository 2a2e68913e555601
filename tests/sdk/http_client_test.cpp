// The SDK's HTTP client against a scripted loopback server that plays back canned answers,
// including the failures a real network produces: resets, silence, 429s and 503s.
#include "sdk/src/http_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <deque>
#include <mutex>
#include <thread>

namespace mh::sdk {
namespace {

using namespace std::chrono_literals;

struct Action {
  enum Kind { kRespond, kReset, kHang } kind;
  std::string response;  // a raw HTTP response for kRespond
  bool close_after = false;
};

Action respond(int status, std::string body, std::string extra = {}, bool close_after = false) {
  std::string raw = "HTTP/1.1 " + std::to_string(status) +
                    " X\r\nContent-Length: " + std::to_string(body.size()) +
                    "\r\nx-request-id: req_s" + std::to_string(status) + "\r\n" + extra + "\r\n" +
                    body;
  return {Action::kRespond, raw, close_after};
}

class ScriptedServer {
 public:
  explicit ScriptedServer(std::deque<Action> script) : script_(std::move(script)) {
    listener_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(listener_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    REQUIRE(::listen(listener_, 16) == 0);
    socklen_t len = sizeof addr;
    ::getsockname(listener_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { serve(); });
  }
  ~ScriptedServer() {
    stop_ = true;
    thread_.join();
    ::close(listener_);
  }
  uint16_t port() const { return port_; }
  int requests() const { return requests_; }
  int connections() const { return connections_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

 private:
  bool wait_readable(int fd) {
    while (!stop_) {
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, 20) > 0) return true;
    }
    return false;
  }
  void serve() {
    while (wait_readable(listener_)) {
      int fd = ::accept(listener_, nullptr, nullptr);
      if (fd < 0) continue;
      ++connections_;
      std::string buffer;
      bool open = true;
      while (open && wait_readable(fd)) {
        char chunk[4096];
        ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
        if (n <= 0) break;
        buffer.append(chunk, n);
        size_t end;
        while (open && (end = buffer.find("\r\n\r\n")) != std::string::npos) {
          size_t length = 0;
          if (auto cl = buffer.find("Content-Length: "); cl != std::string::npos && cl < end) {
            length = std::stoul(buffer.substr(cl + 16));
          }
          if (buffer.size() < end + 4 + length) break;
          buffer.erase(0, end + 4 + length);
          ++requests_;
          Action action{Action::kReset, {}, true};
          if (!script_.empty()) {
            action = script_.front();
            script_.pop_front();
          }
          if (action.kind == Action::kHang) {
            while (!stop_) std::this_thread::sleep_for(5ms);
            open = false;
          } else if (action.kind == Action::kReset) {
            open = false;
          } else {
            (void)::send(fd, action.response.data(), action.response.size(), MSG_NOSIGNAL);
            if (action.close_after) open = false;
          }
        }
      }
      ::close(fd);
    }
  }

  std::deque<Action> script_;
  int listener_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> requests_{0};
  std::atomic<int> connections_{0};
  std::thread thread_;
};

ClientConfig config_for(const std::string& url) {
  ClientConfig config;
  REQUIRE(parse_base_url(url, &config).ok());
  config.initial_backoff = 1ms;
  config.max_backoff = 50ms;
  config.request_timeout = 2s;
  config.connect_timeout = 2s;
  return config;
}

TEST_CASE("base URLs: scheme, host, port and path prefix — bad ones refused") {
  ClientConfig c;
  REQUIRE(parse_base_url("https://api.example.com/gw/", &c).ok());
  CHECK(c.https);
  CHECK(c.host == "api.example.com");
  CHECK(c.port == "443");
  CHECK(c.base_path == "/gw");
  REQUIRE(parse_base_url("http://127.0.0.1:8080", &c).ok());
  CHECK_FALSE(c.https);
  CHECK(c.host == "127.0.0.1");
  CHECK(c.port == "8080");
  CHECK(c.base_path.empty());
  REQUIRE(parse_base_url("http://[::1]:9000", &c).ok());
  CHECK(c.host == "::1");
  for (const char* bad :
       {"", "localhost:8080", "ftp://x", "http://", "http://h/?q=1", "http://user:pw@h/"}) {
    CAPTURE(bad);
    CHECK(parse_base_url(bad, &c).code() == Code::kInvalidArgument);
  }
}

TEST_CASE("Retry-After: seconds and HTTP dates") {
  CHECK(parse_retry_after("3") == std::chrono::milliseconds(3000));
  CHECK(parse_retry_after("0") == std::chrono::milliseconds(0));
  CHECK(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == std::chrono::milliseconds(0));
  CHECK_FALSE(parse_retry_after("").has_value());
  CHECK_FALSE(parse_retry_after("soon").has_value());
  CHECK_FALSE(parse_retry_after("99999999999999").has_value());
}

TEST_CASE("error envelopes become errors with the server's code, message and request id") {
  HttpResponse response{404,
                        R"({"error":{"type":"not_found_error","code":"not_found",)"
                        R"("message":"model 'm' not found","param":"model"}})",
                        "req_1", ""};
  CallError e = error_from_response(response);
  CHECK(e.status.code() == Code::kNotFound);
  CHECK(e.status.message() == "model 'm' not found");
  CHECK(e.status.param() == "model");
  CHECK(e.http_status == 404);
  CHECK(e.request_id == "req_1");
  CallError bare = error_from_response({502, "<html>bad gateway</html>", "", ""});
  CHECK(bare.status.code() == Code::kUnavailable);
  CHECK(bare.status.message().find("502") != std::string::npos);
}

TEST_CASE("503 and 429 are retried, honouring Retry-After") {
  ScriptedServer server({respond(503, "{}", "Retry-After: 0\r\n"), respond(429, "{}"),
                         respond(200, R"({"ok":true})")});
  HttpClient client(config_for(server.url()));
  auto result = client.call("POST", "/v1/x", "{}");
  REQUIRE(std::holds_alternative<HttpResponse>(result));
  CHECK(std::get<HttpResponse>(result).body == R"({"ok":true})");
  CHECK(server.requests() == 3);
}

TEST_CASE("retries stop at max_retries and the last answer is the error") {
  ScriptedServer server(
      {respond(429, R"({"error":{"code":"resource_exhausted","message":"slow down"}})"),
       respond(429, R"({"error":{"code":"resource_exhausted","message":"slow down"}})"),
       respond(429, R"({"error":{"code":"resource_exhausted","message":"slow down"}})")});
  ClientConfig config = config_for(server.url());
  config.max_retries = 2;
  HttpClient client(config);
  auto result = client.call("GET", "/v1/x");
  REQUIRE(std::holds_alternative<CallError>(result));
  const auto& e = std::get<CallError>(result);
  CHECK(e.status.code() == Code::kResourceExhausted);
  CHECK(e.status.message() == "slow down");
  CHECK(e.http_status == 429);
  CHECK(e.request_id == "req_s429");
  CHECK(server.requests() == 3);
}

TEST_CASE("a connection dropped mid-request is retried for GET but not for POST") {
  {
    ScriptedServer server({{Action::kReset, {}, true}, respond(200, "{}")});
    HttpClient client(config_for(server.url()));
    auto result = client.call("GET", "/v1/x");
    CHECK(std::holds_alternative<HttpResponse>(result));
    CHECK(server.requests() == 2);
  }
  {
    ScriptedServer server({{Action::kReset, {}, true}, respond(200, "{}")});
    HttpClient client(config_for(server.url()));
    auto result = client.call("POST", "/v1/x", "{}");
    REQUIRE(std::holds_alternative<CallError>(result));
    CHECK(std::get<CallError>(result).status.code() == Code::kUnavailable);
    CHECK(server.requests() == 1);
  }
  {
    ScriptedServer server({{Action::kReset, {}, true}, respond(200, "{}")});
    HttpClient client(config_for(server.url()));
    auto result = client.send("POST", "/v1/x", "{}", {{"Idempotency-Key", "k1"}});
    CHECK(std::holds_alternative<HttpResponse>(result));
    CHECK(server.requests() == 2);
  }
}

TEST_CASE("a server that never answers times out") {
  ScriptedServer server({{Action::kHang, {}, false}});
  ClientConfig config = config_for(server.url());
  config.request_timeout = 300ms;
  config.max_retries = 0;
  HttpClient client(config);
  auto start = std::chrono::steady_clock::now();
  auto result = client.call("GET", "/v1/x");
  auto took = std::chrono::steady_clock::now() - start;
  REQUIRE(std::holds_alternative<CallError>(result));
  CHECK(std::get<CallError>(result).status.code() == Code::kDeadlineExceeded);
  CHECK(took < 5s);
}

TEST_CASE("keep-alive reuses one connection and recovers when the server closed it") {
  ScriptedServer server(
      {respond(200, "a"), respond(200, "b", "", /*close_after=*/true), respond(200, "c")});
  HttpClient client(config_for(server.url()));
  CHECK(std::get<HttpResponse>(client.call("POST", "/1", "{}")).body == "a");
  CHECK(std::get<HttpResponse>(client.call("POST", "/2", "{}")).body == "b");
  CHECK(server.connections() == 1);
  // The server closed after "b": a POST must still go through, once, on a new connection.
  CHECK(std::get<HttpResponse>(client.call("POST", "/3", "{}")).body == "c");
  CHECK(server.connections() == 2);
  CHECK(server.requests() == 3);
}

TEST_CASE("nothing listening is unavailable, after retries for safe requests") {
  ClientConfig config = config_for("http://127.0.0.1:1");
  config.max_retries = 2;
  HttpClient client(config);
  auto result = client.call("GET", "/healthz");
  REQUIRE(std::holds_alternative<CallError>(result));
  CHECK(std::get<CallError>(result).status.code() == Code::kUnavailable);
  CHECK(std::get<CallError>(result).status.message().find("127.0.0.1:1") != std::string::npos);
}

}  // namespace
}  // namespace mh::sdk
