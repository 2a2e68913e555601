#include "platform/http/async_client.h"

#include <fmt/format.h>

#include <array>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <optional>
#include <vector>

namespace mh::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace wire = beast::http;  // Beast's message types
using tcp = asio::ip::tcp;

struct AsyncHttpConnection::Impl {
  Impl(asio::io_context& ioc, std::string h, uint16_t p)
      : stream(asio::make_strand(ioc)),
        resolver(stream.get_executor()),
        host(std::move(h)),
        port(p),
        authority(fmt::format("{}:{}", host, port)) {}

  beast::tcp_stream stream;
  tcp::resolver resolver;
  beast::flat_buffer buffer;
  const std::string host;
  const uint16_t port;
  const std::string authority;
  bool connected = false;
  wire::request<wire::string_body> req;
  std::optional<wire::response_parser<wire::buffer_body>> parser;
  std::array<char, 16 * 1024> piece{};
  OnHead on_head;
  OnData on_data;
  OnDone on_done;
};

std::shared_ptr<AsyncHttpConnection> AsyncHttpConnection::create(asio::io_context& ioc,
                                                                 std::string host,
                                                                 uint16_t port) {
  return std::shared_ptr<AsyncHttpConnection>(
      new AsyncHttpConnection(ioc, std::move(host), port));
}

AsyncHttpConnection::AsyncHttpConnection(asio::io_context& ioc, std::string host, uint16_t port)
    : impl_(std::make_unique<Impl>(ioc, std::move(host), port)) {}

AsyncHttpConnection::~AsyncHttpConnection() = default;

void AsyncHttpConnection::request(std::chrono::milliseconds connect_timeout, std::string method,
                                  std::string target, Headers headers, std::string body,
                                  OnHead on_head, OnData on_data, OnDone on_done) {
  Impl& s = *impl_;
  s.req = wire::request<wire::string_body>(wire::string_to_verb(method), target, 11);
  s.req.set(wire::field::host, s.authority);
  for (const auto& [name, value] : headers) s.req.set(name, value);
  s.req.body() = std::move(body);
  s.req.prepare_payload();
  s.req.keep_alive(true);
  s.on_head = std::move(on_head);
  s.on_data = std::move(on_data);
  s.on_done = std::move(on_done);
  reusable_ = false;
  asio::post(s.stream.get_executor(), [self = shared_from_this(), connect_timeout] {
    if (self->impl_->connected) {
      self->send();
    } else {
      self->connect(connect_timeout);
    }
  });
}

void AsyncHttpConnection::connect(std::chrono::milliseconds timeout) {
  Impl& s = *impl_;
  auto connected = [self = shared_from_this()](beast::error_code ec, const tcp::endpoint&) {
    Impl& s = *self->impl_;
    if (ec) {
      return self->done(
          unavailable(fmt::format("connecting to {}: {}", s.authority, ec.message())));
    }
    s.connected = true;
    s.stream.expires_never();
    s.stream.socket().set_option(tcp::no_delay(true), ec);
    self->send();
  };
  s.stream.expires_after(timeout);
  beast::error_code ec;
  if (const auto address = asio::ip::make_address(s.host, ec); !ec) {
    std::vector<tcp::endpoint> endpoints = {{address, s.port}};
    s.stream.async_connect(endpoints, std::move(connected));
    return;
  }
  s.resolver.async_resolve(
      s.host, std::to_string(s.port),
      [self = shared_from_this(), connected = std::move(connected)](
          beast::error_code ec, tcp::resolver::results_type found) mutable {
        Impl& s = *self->impl_;
        if (ec) {
          return self->done(unavailable(fmt::format("resolving {}: {}", s.host, ec.message())));
        }
        s.stream.async_connect(found, std::move(connected));
      });
}

void AsyncHttpConnection::send() {
  Impl& s = *impl_;
  wire::async_write(s.stream, s.req,
                    [self = shared_from_this()](beast::error_code ec, size_t) {
                      if (ec) {
                        return self->done(unavailable(fmt::format(
                            "sending to {}: {}", self->impl_->authority, ec.message())));
                      }
                      self->read_head();
                    });
}

void AsyncHttpConnection::read_head() {
  Impl& s = *impl_;
  s.parser.emplace();
  s.parser->body_limit(boost::none);
  wire::async_read_header(
      s.stream, s.buffer, *s.parser, [self = shared_from_this()](beast::error_code ec, size_t) {
        Impl& s = *self->impl_;
        if (ec) {
          return self->done(
              unavailable(fmt::format("reading from {}: {}", s.authority, ec.message())));
        }
        Head head;
        head.status = static_cast<int>(s.parser->get().result_int());
        head.content_type = std::string(s.parser->get()[wire::field::content_type]);
        s.on_head(head);
        self->read_body();
      });
}

void AsyncHttpConnection::read_body() {
  Impl& s = *impl_;
  if (s.parser->is_done()) {
    reusable_ = s.parser->get().keep_alive();
    return done({});
  }
  s.parser->get().body().data = s.piece.data();
  s.parser->get().body().size = s.piece.size();
  wire::async_read_some(
      s.stream, s.buffer, *s.parser, [self = shared_from_this()](beast::error_code ec, size_t) {
        Impl& s = *self->impl_;
        if (ec == wire::error::need_buffer) ec = {};
        if (ec) {
          return self->done(
              unavailable(fmt::format("reading from {}: {}", s.authority, ec.message())));
        }
        const size_t got = s.piece.size() - s.parser->get().body().size;
        if (got > 0 && !s.on_data(std::string_view(s.piece.data(), got))) {
          beast::error_code ignored;
          s.stream.socket().close(ignored);  // abandoned: the replica sees its client go
          return self->done({});
        }
        self->read_body();
      });
}

void AsyncHttpConnection::done(Status status) {
  Impl& s = *impl_;
  if (!status.ok()) {
    reusable_ = false;
    beast::error_code ignored;
    s.stream.socket().close(ignored);
    s.connected = false;
  }
  OnDone on_done = std::move(s.on_done);
  s.on_head = nullptr;
  s.on_data = nullptr;
  if (on_done) on_done(std::move(status));
}

void AsyncHttpConnection::abort() {
  asio::post(impl_->stream.get_executor(), [self = shared_from_this()] {
    beast::error_code ignored;
    self->impl_->stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
    self->impl_->stream.socket().close(ignored);
  });
}

}  // namespace mh::http
