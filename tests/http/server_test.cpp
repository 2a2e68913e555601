// The server keeps its I/O threads free: handlers that may block run on its handler pool and
// answer on their connection's strand; inline handlers answer on the I/O thread.
#include <doctest/doctest.h>

#include <boost/asio/io_context.hpp>

#include <atomic>
#include <chrono>
#include <future>
#include <mutex>
#include <thread>

#include "platform/http/http_client.h"
#include "platform/http/http_server.h"

namespace mh::http {
namespace {

using namespace std::chrono_literals;

// A server on a free loopback port with one I/O thread, whose id the tests compare with the
// threads handlers ran on.
struct Server {
  Router router;
  HttpMetrics metrics;
  boost::asio::io_context ioc;
  std::unique_ptr<HttpServer> server;
  std::thread io;
  std::thread::id io_id;

  void start() {
    ServerOptions options;
    options.host = "127.0.0.1";
    options.port = 0;
    options.access_log = false;
    options.handler_threads = 2;
    server = std::make_unique<HttpServer>(ioc, options, router, metrics);
    REQUIRE(server->start().ok());
    std::promise<std::thread::id> id;
    io = std::thread([this, &id] {
      id.set_value(std::this_thread::get_id());
      ioc.run();
    });
    io_id = id.get_future().get();
  }
  ~Server() {
    ioc.stop();
    if (io.joinable()) io.join();
    server.reset();  // joins the handler pool
  }

  // One request on a connection of its own: the status, and the body in *body.
  int call(std::string_view method, std::string_view target, std::string_view body = {},
           std::string* out = nullptr, Headers headers = {}) {
    auto connection = HttpConnection::connect("127.0.0.1", server->port(), 5s);
    REQUIRE(connection.ok());
    int status = 0;
    std::string received;
    Status sent = (*connection)->request(
        method, target, headers, body, [&](const HttpConnection::Head& h) { status = h.status; },
        [&](std::string_view piece) {
          received += piece;
          return true;
        });
    REQUIRE(sent.ok());
    if (out != nullptr) *out = std::move(received);
    return status;
  }
};

TEST_CASE("a handler that blocks runs on the pool while the I/O thread answers others") {
  Server s;
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::atomic<bool> entered{false};
  std::thread::id slow_thread, fast_thread;
  s.router.add("GET", "/slow", Access::kPublic, [&](Request&) {
    slow_thread = std::this_thread::get_id();
    entered = true;
    released.wait_for(10s);
    return Response::text(200, "slow");
  });
  s.router.add(
      "GET", "/fast", Access::kPublic,
      [&](Request&) {
        fast_thread = std::this_thread::get_id();
        return Response::text(200, "fast");
      },
      Runs::kInline);
  s.start();

  std::string slow_body;
  std::thread slow_client([&] { CHECK(s.call("GET", "/slow", {}, &slow_body) == 200); });
  while (!entered) std::this_thread::sleep_for(1ms);
  // The one I/O thread is free: an inline route and a 404 answer while /slow still waits.
  std::string fast_body;
  CHECK(s.call("GET", "/fast", {}, &fast_body) == 200);
  CHECK(fast_body == "fast");
  CHECK(s.call("GET", "/nowhere") == 404);
  release.set_value();
  slow_client.join();
  CHECK(slow_body == "slow");
  CHECK(fast_thread == s.io_id);
  CHECK(slow_thread != s.io_id);
}

TEST_CASE("an inline route whose caller is not known from memory is answered from the pool") {
  Server s;
  std::mutex mutex;
  std::vector<bool> asked;  // may_block, per call of the authenticator
  s.router.set_authenticator([&](const Request& r, Access,
                                 bool may_block) -> std::optional<Result<Principal>> {
    {
      std::lock_guard lock(mutex);
      asked.push_back(may_block);
    }
    if (r.header("authorization") == "Bearer remembered" || may_block) {
      return Principal{Principal::Kind::kPlatformAdmin, "k", {}, {}};
    }
    return std::nullopt;  // only the store could say
  });
  std::thread::id ran_on;
  s.router.add(
      "GET", "/infer", Access::kAdmin,
      [&](Request&) {
        ran_on = std::this_thread::get_id();
        return Response::text(200, "ok");
      },
      Runs::kInline);
  s.start();

  CHECK(s.call("GET", "/infer", {}, nullptr, {{"Authorization", "Bearer remembered"}}) == 200);
  CHECK(ran_on == s.io_id);
  {
    std::lock_guard lock(mutex);
    CHECK(asked == std::vector<bool>{false});
  }
  CHECK(s.call("GET", "/infer", {}, nullptr, {{"Authorization", "Bearer new"}}) == 200);
  CHECK(ran_on != s.io_id);
  std::lock_guard lock(mutex);
  CHECK(asked == std::vector<bool>{false, false, true});
}

// Keeps what it is given and the threads it was called on.
class RecordingSink : public BodySink {
 public:
  struct Seen {
    std::mutex mutex;
    std::string bytes;
    std::vector<size_t> writes;
    std::vector<std::thread::id> threads;
  };
  explicit RecordingSink(Seen& seen) : seen_(seen) {}
  Status write(std::string_view chunk) override {
    std::lock_guard lock(seen_.mutex);
    seen_.bytes += chunk;
    seen_.writes.push_back(chunk.size());
    seen_.threads.push_back(std::this_thread::get_id());
    return {};
  }
  Response finish() override {
    std::lock_guard lock(seen_.mutex);
    seen_.threads.push_back(std::this_thread::get_id());
    return Response::text(200, std::to_string(seen_.bytes.size()));
  }

 private:
  Seen& seen_;
};

TEST_CASE("an upload's sink is made, written and finished on the pool, a chunk at a time") {
  Server s;
  RecordingSink::Seen seen;
  std::thread::id made_on;
  s.router.add_upload("POST", "/upload", Access::kPublic,
                      [&](Request&) -> Result<std::unique_ptr<BodySink>> {
                        made_on = std::this_thread::get_id();
                        return std::unique_ptr<BodySink>(std::make_unique<RecordingSink>(seen));
                      });
  s.start();

  std::string body(3 * (1 << 20) + 12345, '\0');
  for (size_t i = 0; i < body.size(); ++i) body[i] = static_cast<char>((i * 131) >> 3);
  std::string answer;
  CHECK(s.call("POST", "/upload", body, &answer) == 200);
  CHECK(answer == std::to_string(body.size()));
  CHECK(made_on != s.io_id);
  std::lock_guard lock(seen.mutex);
  CHECK(seen.bytes == body);
  CHECK(seen.writes.size() == 4);  // three full chunks of 1 MiB and the rest
  for (size_t n : seen.writes) CHECK(n <= size_t{1} << 20);
  for (const auto& id : seen.threads) CHECK(id != s.io_id);
}

}  // namespace
}  // namespace mh::http
