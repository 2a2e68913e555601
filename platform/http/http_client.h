// HttpConnection: a blocking HTTP/1.1 client connection over plain TCP, kept alive between
// requests, for tools and tests (bench/serving, the server's tests); the daemon's relay uses the
// asynchronous AsyncHttpConnection. The response body reaches the caller piece by piece as it
// arrives, so a stream stays a stream.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "platform/http/http.h"
#include "platform/base/status.h"

namespace mh::http {

class HttpConnection {
 public:
  struct Head {
    int status = 0;
    std::string content_type;
  };

  // Connects to an address or a host name within `timeout`; unavailable naming it otherwise.
  static Result<std::unique_ptr<HttpConnection>> connect(const std::string& host, uint16_t port,
                                                         std::chrono::milliseconds timeout);
  ~HttpConnection();
  HttpConnection(const HttpConnection&) = delete;
  HttpConnection& operator=(const HttpConnection&) = delete;

  // Sends one request and reads its response: on_head once the head is in, then on_data with
  // each piece of the (de-chunked) body. on_data returning false abandons the response, and the
  // connection with it. Fails with unavailable when the connection breaks.
  Status request(std::string_view method, std::string_view target, const Headers& headers,
                 std::string_view body, const std::function<void(const Head&)>& on_head,
                 const std::function<bool(std::string_view)>& on_data);
  // Whether the last request left the connection fit for another.
  bool reusable() const { return reusable_; }
  // Thread-safe: breaks the connection, so a request blocked on it returns at once.
  void abort();

 private:
  class Impl;
  explicit HttpConnection(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
  bool reusable_ = true;
};

}  // namespace mh::http
