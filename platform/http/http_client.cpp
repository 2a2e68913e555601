#include "platform/http/http_client.h"

#include <fmt/format.h>
#include <sys/socket.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <vector>

namespace mh::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace wire = beast::http;  // Beast's message types
using tcp = asio::ip::tcp;

class HttpConnection::Impl {
 public:
  Impl() : stream(ioc) {}
  asio::io_context ioc;
  beast::tcp_stream stream;
  beast::flat_buffer buffer;
  std::string host;
  int fd = -1;
};

HttpConnection::HttpConnection(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
HttpConnection::~HttpConnection() = default;

Result<std::unique_ptr<HttpConnection>> HttpConnection::connect(const std::string& host,
                                                                uint16_t port,
                                                                std::chrono::milliseconds timeout) {
  auto impl = std::make_unique<Impl>();
  beast::error_code ec;
  // An address, or a host name (a replica on another node).
  std::vector<tcp::endpoint> endpoints;
  if (const auto address = asio::ip::make_address(host, ec); !ec) {
    endpoints.emplace_back(address, port);
  } else {
    tcp::resolver resolver(impl->ioc);
    auto found = resolver.resolve(host, std::to_string(port), ec);
    if (ec) return unavailable(fmt::format("resolving {}: {}", host, ec.message()));
    for (const auto& e : found) endpoints.push_back(e.endpoint());
  }
  impl->stream.expires_after(timeout);
  impl->stream.async_connect(endpoints, [&](beast::error_code e, const tcp::endpoint&) { ec = e; });
  impl->ioc.run();
  if (ec) return unavailable(fmt::format("connecting to {}:{}: {}", host, port, ec.message()));
  impl->stream.expires_never();
  impl->stream.socket().set_option(tcp::no_delay(true), ec);
  impl->fd = impl->stream.socket().native_handle();
  impl->host = fmt::format("{}:{}", host, port);
  return std::unique_ptr<HttpConnection>(new HttpConnection(std::move(impl)));
}

Status HttpConnection::request(std::string_view method, std::string_view target,
                               const Headers& headers, std::string_view body,
                               const std::function<void(const Head&)>& on_head,
                               const std::function<bool(std::string_view)>& on_data) {
  reusable_ = false;
  auto& s = impl_->stream;
  wire::request<wire::string_body> req(wire::string_to_verb(method), target, 11);
  req.set(wire::field::host, impl_->host);
  for (const auto& [name, value] : headers) req.set(name, value);
  req.body() = std::string(body);
  req.prepare_payload();
  req.keep_alive(true);
  beast::error_code ec;
  wire::write(s, req, ec);
  if (ec) return unavailable(fmt::format("sending to {}: {}", impl_->host, ec.message()));

  wire::response_parser<wire::buffer_body> parser;
  parser.body_limit(boost::none);
  wire::read_header(s, impl_->buffer, parser, ec);
  if (ec) return unavailable(fmt::format("reading from {}: {}", impl_->host, ec.message()));
  Head head;
  head.status = static_cast<int>(parser.get().result_int());
  head.content_type = std::string(parser.get()[wire::field::content_type]);
  on_head(head);
  char piece[16 * 1024];
  while (!parser.is_done()) {
    parser.get().body().data = piece;
    parser.get().body().size = sizeof piece;
    wire::read_some(s, impl_->buffer, parser, ec);
    if (ec == wire::error::need_buffer) ec = {};
    if (ec) return unavailable(fmt::format("reading from {}: {}", impl_->host, ec.message()));
    const size_t got = sizeof piece - parser.get().body().size;
    if (got > 0 && !on_data(std::string_view(piece, got))) return {};
  }
  reusable_ = parser.get().keep_alive();
  return {};
}

void HttpConnection::abort() {
  if (impl_->fd >= 0) ::shutdown(impl_->fd, SHUT_RDWR);
}

}  // namespace mh::http
