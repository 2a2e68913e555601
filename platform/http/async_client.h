// AsyncHttpConnection: an HTTP/1.1 client connection over plain TCP that runs on an io_context,
// holding no thread: the daemon relays inference requests to its replicas with it, and the
// response body reaches the caller piece by piece as it arrives, so a stream stays a stream and
// costs a socket, not a thread. It connects on its first request and is kept alive between
// requests. Its handlers run on a strand of its own.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "platform/base/status.h"
#include "platform/http/http.h"
#include "platform/http/http_client.h"

namespace boost::asio {
class io_context;
}

namespace mh::http {

class AsyncHttpConnection : public std::enable_shared_from_this<AsyncHttpConnection> {
 public:
  using Head = HttpConnection::Head;
  using OnHead = std::function<void(const Head&)>;
  // Each piece of the (de-chunked) body; false abandons the response, and the connection.
  using OnData = std::function<bool(std::string_view)>;
  // Last, exactly once: ok, or unavailable naming where it broke.
  using OnDone = std::function<void(Status)>;

  // A connection to an address or a host name (a replica on another node), not yet made.
  static std::shared_ptr<AsyncHttpConnection> create(boost::asio::io_context& ioc,
                                                     std::string host, uint16_t port);
  ~AsyncHttpConnection();
  AsyncHttpConnection(const AsyncHttpConnection&) = delete;
  AsyncHttpConnection& operator=(const AsyncHttpConnection&) = delete;

  // Connects first when it is not (within `connect_timeout`), then sends one request and reads
  // its response. One request at a time.
  void request(std::chrono::milliseconds connect_timeout, std::string method, std::string target,
               Headers headers, std::string body, OnHead on_head, OnData on_data,
               OnDone on_done);
  // Whether the last request left the connection fit for another.
  bool reusable() const { return reusable_; }
  // Thread-safe: breaks the connection; a request on it ends (its on_done says so).
  void abort();

 private:
  struct Impl;
  AsyncHttpConnection(boost::asio::io_context& ioc, std::string host, uint16_t port);
  void connect(std::chrono::milliseconds timeout);
  void send();
  void read_head();
  void read_body();
  void done(Status status);

  std::unique_ptr<Impl> impl_;
  bool reusable_ = false;
};

}  // namespace mh::http
