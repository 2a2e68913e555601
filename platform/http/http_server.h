// HttpServer: HTTP/1.1 with keep-alive on a multi-threaded io_context, optionally over TLS.
// Each connection is a session on its own strand whose chain reads top to bottom:
// wait for a request's first byte (idle timeout) → read it (read timeout, header and body
// limits) → route → write (write timeout) → again, until the client or a stop closes it.
// A handler that may block runs on the server's handler pool instead (see Runs in router.h)
// and answers on its connection's strand, so the I/O threads only ever wait on sockets.
// shutdown() stops accepting, closes idle connections and lets requests in flight finish.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "platform/http/metrics.h"
#include "platform/http/router.h"
#include "platform/base/status.h"

namespace boost::asio {
class io_context;
}

namespace mh::http {

struct ServerOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 8080;  // 0: any free port (see HttpServer::port)
  size_t max_header_bytes = 16 * 1024;
  uint64_t max_body_bytes = 1024 * 1024;                   // JSON and other buffered bodies
  uint64_t max_upload_bytes = 64ull * 1024 * 1024 * 1024;  // streamed bodies (upload routes)
  std::chrono::milliseconds idle_timeout{60'000};   // between requests on a kept-alive connection
  std::chrono::milliseconds read_timeout{30'000};   // from a request's first byte to its last
  std::chrono::milliseconds write_timeout{30'000};  // to write one response
  std::chrono::milliseconds handshake_timeout{10'000};
  size_t max_connections = 10'000;
  // Threads of the handler pool (0: twice the cores, at least 4): how many requests may be in
  // a blocking handler at once; more wait their turn.
  size_t handler_threads = 0;
  size_t max_connections_per_address = 2'500;  // 0: no cap per client address
  std::string tls_cert_file;  // PEM chain; TLS is on when both files are set
  std::string tls_key_file;
  std::string server_name = "macrohardd";
  bool access_log = true;
};

class HttpServer {
 public:
  HttpServer(boost::asio::io_context& ioc, ServerOptions options, const Router& router,
             HttpMetrics& metrics);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds, listens and starts accepting. Errors name the address and the reason.
  Status start();
  uint16_t port() const;
  bool tls() const;
  // Thread-safe. Stops accepting, closes idle connections, marks the rest to close after their
  // response; `drained` runs once the last connection is gone.
  void shutdown(std::function<void()> drained);
  bool stopping() const;
  size_t open_connections() const;
  // Waits for the handlers running or queued on the pool to finish; call it once the
  // io_context has stopped, before what the handlers use is destroyed. The destructor does.
  void join_handlers();

  class Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace mh::http
