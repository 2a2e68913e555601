#include "platform/http/http_server.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include <atomic>
#include <cstring>
#include <mutex>
#include <optional>
#include <random>
#include <thread>
#include <unordered_map>

#include "platform/base/crypto.h"

namespace mh::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace wire = beast::http;  // Beast's message types
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

namespace {

constexpr size_t kReadChunk = 4096;
constexpr size_t kUploadChunk = 1 << 20;

bool valid_request_id(std::string_view id) {
  if (id.empty() || id.size() > 128) return false;
  for (char c : id) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.' || c == ':';
    if (!ok) return false;
  }
  return true;
}

std::string new_request_id() {
  thread_local std::mt19937_64 rng = [] {
    std::seed_seq::result_type seed[4];
    secure_random(seed, sizeof seed);
    std::seed_seq seq(std::begin(seed), std::end(seed));
    return std::mt19937_64(seq);
  }();
  uint64_t words[2] = {rng(), rng()};
  return "req_" + hex_encode(words, 12);
}

// JSON string escaping for the access log, where paths and ids come from clients.
void append_json_string(std::string& out, std::string_view s) {
  out += '"';
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20 || c == 0x7f) {
      out += fmt::format("\\u{:04x}", c);
    } else {
      out += static_cast<char>(c);
    }
  }
  out += '"';
}

}  // namespace

class SessionBase : public std::enable_shared_from_this<SessionBase> {
 public:
  virtual ~SessionBase() = default;
  // Closes the connection if it is waiting for a next request; safe from any thread.
  virtual void close_if_idle() = 0;
};

class HttpServer::Impl : public std::enable_shared_from_this<Impl> {
 public:
  Impl(asio::io_context& ioc, ServerOptions options, const Router& router, HttpMetrics& metrics)
      : ioc_(ioc),
        options_(std::move(options)),
        router_(router),
        metrics_(metrics),
        acceptor_(asio::make_strand(ioc)),
        handlers_(handler_threads(options_)) {}

  Status start();
  // Where handlers that may block run (see Runs).
  asio::thread_pool& handlers() { return handlers_; }
  void join_handlers() { handlers_.join(); }
  void shutdown(std::function<void()> drained);
  size_t open_connections() const {
    std::lock_guard lock(mutex_);
    return sessions_.size();
  }
  // Counts a connection from `remote` in, or says why it is refused: the server's limit, or
  // the address's share of it (one client cannot hold every connection there is).
  std::optional<std::string> admit(const std::string& remote) {
    std::lock_guard lock(mutex_);
    if (sessions_.size() >= options_.max_connections) {
      return fmt::format("{} open, the limit", options_.max_connections);
    }
    size_t& from = per_address_[remote];
    if (options_.max_connections_per_address > 0 &&
        from >= options_.max_connections_per_address) {
      if (from == 0) per_address_.erase(remote);
      return fmt::format("{} open from {}, the limit per address",
                         options_.max_connections_per_address, remote);
    }
    ++from;
    return std::nullopt;
  }
  void add_session(const std::shared_ptr<SessionBase>& session) {
    std::lock_guard lock(mutex_);
    sessions_.emplace(session.get(), session);
  }
  void remove_session(SessionBase* session, const std::string& remote) {
    std::function<void()> drained;
    {
      std::lock_guard lock(mutex_);
      sessions_.erase(session);
      if (auto it = per_address_.find(remote); it != per_address_.end() && --it->second == 0) {
        per_address_.erase(it);
      }
      if (sessions_.empty() && stopping_) drained = std::exchange(drained_, nullptr);
    }
    if (drained) drained();
  }
  void log_access(const Request& request, std::string_view route, int status, size_t bytes,
                  double seconds) {
    metrics_.observe(route, request.method, status, seconds);
    if (!options_.access_log) return;
    std::string line;
    line.reserve(256);
    line += "\"rid\":";
    append_json_string(line, request.request_id);
    line += ",\"remote\":";
    append_json_string(line, request.remote_address);
    line += ",\"method\":";
    append_json_string(line, request.method);
    line += ",\"target\":";
    append_json_string(line, request.target);
    line += ",\"route\":";
    append_json_string(line, route);
    line += fmt::format(",\"status\":{},\"bytes\":{},\"ms\":{:.3f}", status, bytes, seconds * 1e3);
    if (!request.principal.key_id.empty()) {
      line += ",\"key\":";
      append_json_string(line, request.principal.key_id);
    }
    line += '}';
    access_log_->info(line);
  }

  asio::io_context& ioc_;
  const ServerOptions options_;
  const Router& router_;
  HttpMetrics& metrics_;
  tcp::acceptor acceptor_;
  std::optional<ssl::context> ssl_;
  std::shared_ptr<spdlog::logger> access_log_;
  std::atomic<bool> stopping_{false};
  uint16_t port_ = 0;

 private:
  static size_t handler_threads(const ServerOptions& options) {
    if (options.handler_threads > 0) return options.handler_threads;
    return std::max<size_t>(4, 2 * std::thread::hardware_concurrency());
  }
  asio::thread_pool handlers_;

  void do_accept();
  void on_accept(beast::error_code ec, tcp::socket socket);

  mutable std::mutex mutex_;
  std::unordered_map<SessionBase*, std::weak_ptr<SessionBase>> sessions_;
  std::unordered_map<std::string, size_t> per_address_;  // open connections by remote address
  std::function<void()> drained_;
};

// The request/response loop shared by plain and TLS connections (Beast's flex-server pattern:
// Derived provides stream(), run() and do_close()).
template <class Derived>
class HttpSession : public SessionBase {
 public:
  HttpSession(std::shared_ptr<HttpServer::Impl> server, std::string remote)
      : server_(std::move(server)), remote_(std::move(remote)) {}
  ~HttpSession() override { server_->remove_session(this, remote_); }

  void close_if_idle() override {
    asio::post(derived().stream().get_executor(), [self = self()] {
      if (self->idle_) beast::get_lowest_layer(self->derived().stream()).cancel();
    });
  }

 protected:
  Derived& derived() { return static_cast<Derived&>(*this); }
  std::shared_ptr<Derived> self() {
    return std::static_pointer_cast<Derived>(this->shared_from_this());
  }
  beast::tcp_stream& lowest() { return beast::get_lowest_layer(derived().stream()); }

  void do_read() {
    if (server_->stopping_ && buffer_.size() == 0) return derived().do_close();
    header_parser_.emplace();
    header_parser_->header_limit(static_cast<uint32_t>(server_->options_.max_header_bytes));
    // Body limits depend on the route, known only once the header is in: see on_header.
    header_parser_->body_limit(boost::none);
    if (buffer_.size() > 0) return read_request();
    // Wait for the first byte of the next request under the idle timeout.
    idle_ = true;
    lowest().expires_after(server_->options_.idle_timeout);
    derived().stream().async_read_some(
        buffer_.prepare(kReadChunk),
        beast::bind_front_handler(&HttpSession::on_first_bytes, self()));
  }

  void on_first_bytes(beast::error_code ec, size_t bytes) {
    idle_ = false;
    if (ec) return derived().do_close();
    buffer_.commit(bytes);
    read_request();
  }

  void read_request() {
    lowest().expires_after(server_->options_.read_timeout);
    wire::async_read_header(derived().stream(), buffer_, *header_parser_,
                            beast::bind_front_handler(&HttpSession::on_header, self()));
  }

  // Answers what a failed read deserves: 413/431/400, or nothing (the connection is gone).
  void on_read_error(beast::error_code ec) {
    if (ec == wire::error::end_of_stream) return derived().do_close();
    if (ec == wire::error::body_limit) {
      return send_error(too_large(server_->options_.max_body_bytes), 413);
    }
    if (ec == wire::error::header_limit) {
      return send_error(
          {Code::kPayloadTooLarge, fmt::format("request header exceeds the limit of {} bytes",
                                               server_->options_.max_header_bytes)},
          431);
    }
    if (ec.category() == beast::error_code(wire::error::bad_target).category()) {
      return send_error(invalid_argument("malformed HTTP request: " + ec.message()), 400);
    }
    // Timeouts (the stream is closed already), resets, cancellation.
    derived().do_close();
  }

  static Status too_large(uint64_t limit) {
    return {Code::kPayloadTooLarge,
            fmt::format("request body exceeds the limit of {} bytes", limit)};
  }

  void on_header(beast::error_code ec, size_t) {
    if (ec) return on_read_error(ec);
    if (!start_request(header_parser_->get())) return;
    const bool upload = server_->router_.is_upload(request_);
    const uint64_t limit =
        upload ? server_->options_.max_upload_bytes : server_->options_.max_body_bytes;
    if (auto length = header_parser_->content_length(); length && *length > limit) {
      return send_error(too_large(limit), 413);
    }
    expects_continue_ = header_parser_->get().version() >= 11 &&
                        beast::iequals(header_parser_->get()[wire::field::expect], "100-continue");
    if (upload) {
      std::string_view route;
      if (std::optional<Response> refused = server_->router_.dispatch_inline(request_, &route)) {
        route_ = route;
        keep_alive_ = false;  // the body was not read
        return send(std::move(*refused));
      }
      return begin_upload(limit);
    }
    body_parser_.emplace(std::move(*header_parser_));
    body_parser_->body_limit(limit);  // chunked bodies are checked as they arrive
    continue_if_expected([self = self()] {
      wire::async_read(self->derived().stream(), self->buffer_, *self->body_parser_,
                       beast::bind_front_handler(&HttpSession::on_body, self));
    });
  }

  // A client that sent "Expect: 100-continue" holds its body back until told to send it: it
  // learns of a refusal (401, 413, quota) before it has sent a byte of a large upload.
  template <class Next>
  void continue_if_expected(Next next) {
    if (!expects_continue_) return next();
    static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
    lowest().expires_after(server_->options_.write_timeout);
    asio::async_write(derived().stream(), asio::buffer(kContinue.data(), kContinue.size()),
                      [self = self(), next = std::move(next)](beast::error_code ec, size_t) {
                        if (ec) return self->derived().do_close();
                        self->lowest().expires_after(self->server_->options_.read_timeout);
                        next();
                      });
  }

  void on_body(beast::error_code ec, size_t) {
    if (ec) return on_read_error(ec);
    request_.body = std::move(body_parser_->get().body());
    std::string_view route;
    if (std::optional<Response> answer = server_->router_.dispatch_inline(request_, &route)) {
      route_ = route;
      return send(std::move(*answer));
    }
    off_thread(
        [](HttpSession& s) {
          std::string_view label;
          Response response = s.server_->router_.dispatch(s.request_, &label);
          s.route_ = label;
          return response;
        },
        [](HttpSession& s, Response response) { s.send(std::move(response)); });
  }

  // Runs `work(*this)`, which may block, on the server's handler pool, then `then(*this,
  // result)` back on this connection's strand. No operation of the connection is pending
  // meanwhile, so nothing else touches the session: its deadline is off until `then` sets one.
  template <class Work, class Then>
  void off_thread(Work work, Then then) {
    lowest().expires_never();
    asio::post(server_->handlers(), [self = self(), work = std::move(work),
                                     then = std::move(then)]() mutable {
      auto result = work(*self);
      auto executor = self->derived().stream().get_executor();
      asio::post(executor, [self = std::move(self), then = std::move(then),
                            result = std::move(result)]() mutable {
        then(*self, std::move(result));
      });
    });
  }

  // Upload routes: the body goes to the route's sink in fixed-size chunks, never all in memory.
  // The sink is made, fed and finished on the handler pool (it writes to disk, and finishing
  // may validate the whole file); the next read starts once a chunk is written.
  void begin_upload(uint64_t limit) {
    off_thread(
        [](HttpSession& s) {
          std::string_view route;
          std::optional<Response> refused =
              s.server_->router_.begin_upload(s.request_, &route, &s.sink_);
          s.route_ = route;
          return refused;
        },
        [limit](HttpSession& s, std::optional<Response> refused) {
          if (refused) {
            s.keep_alive_ = false;  // the body was not read
            return s.send(std::move(*refused));
          }
          s.read_upload(limit);
        });
  }

  void read_upload(uint64_t limit) {
    // A body of declared length needs no parser: it is read from the socket straight into
    // chunk_, as much as the socket holds per read (its length was checked against `limit`
    // in on_header). Chunked bodies go through the parser, which enforces the limit.
    raw_remaining_.reset();
    if (header_parser_->chunked()) {
      upload_parser_.emplace(std::move(*header_parser_));
      upload_parser_->body_limit(limit);
    } else {
      raw_remaining_ = header_parser_->content_length().value_or(0);
    }
    chunk_.resize(kUploadChunk);
    filled_ = 0;
    continue_if_expected([self = self()] {
      // A deadline on every read costs a timer start and cancel per chunk (reactor wake-ups);
      // instead one watchdog checks once per read timeout that the upload is still moving.
      self->lowest().expires_never();
      self->upload_seen_ = self->upload_bytes_ = 0;
      self->arm_upload_watchdog();
      if (self->raw_remaining_) return self->read_raw_chunk();
      self->read_upload_chunk();
    });
  }

  void read_raw_chunk() {
    const size_t room = chunk_.size() - filled_;
    const size_t want = static_cast<size_t>(std::min<uint64_t>(room, *raw_remaining_));
    if (buffer_.size() > 0 || want == 0) {  // body bytes that came in with the header
      const size_t n = std::min(buffer_.size(), want);
      std::memcpy(chunk_.data() + filled_, buffer_.data().data(), n);
      buffer_.consume(n);
      return on_raw_chunk({}, n);
    }
    derived().stream().async_read_some(
        asio::buffer(chunk_.data() + filled_, want),
        beast::bind_front_handler(&HttpSession::on_raw_chunk, self()));
  }

  void on_raw_chunk(beast::error_code ec, size_t got) {
    if (ec) return upload_cut_off(ec);
    *raw_remaining_ -= got;
    filled_ += got;
    upload_bytes_ += got;
    const bool last = *raw_remaining_ == 0;
    if (filled_ < chunk_.size() && !last) return read_raw_chunk();
    deliver([last](HttpSession& s) {
      if (last) return s.finish_upload();
      s.read_raw_chunk();
    });
  }

  void arm_upload_watchdog() {
    if (!watchdog_) watchdog_.emplace(derived().stream().get_executor());
    watchdog_->expires_after(server_->options_.read_timeout);
    watchdog_->async_wait([self = self()](beast::error_code ec) {
      if (ec || !self->sink_) return;  // cancelled, or the upload is over
      if (self->upload_bytes_ == self->upload_seen_) {
        spdlog::debug("upload from {} stalled: closing", self->remote_);
        beast::error_code ignored;
        self->lowest().socket().close(ignored);  // the pending read fails; the sink cleans up
        return;
      }
      self->upload_seen_ = self->upload_bytes_;
      self->arm_upload_watchdog();
    });
  }

  void read_upload_chunk() {
    auto& body = upload_parser_->get().body();
    body.data = chunk_.data() + filled_;
    body.size = chunk_.size() - filled_;
    wire::async_read_some(derived().stream(), buffer_, *upload_parser_,
                          beast::bind_front_handler(&HttpSession::on_upload_chunk, self()));
  }

  void on_upload_chunk(beast::error_code ec, size_t) {
    if (ec == wire::error::need_buffer) ec = {};
    if (ec) return upload_cut_off(ec);
    const size_t got = chunk_.size() - filled_ - upload_parser_->get().body().size;
    filled_ += got;
    upload_bytes_ += got;
    const bool last = upload_parser_->is_done();
    if (filled_ < chunk_.size() && !last) return read_upload_chunk();
    deliver([last](HttpSession& s) {
      if (last) return s.finish_upload();
      s.read_upload_chunk();
    });
  }

  // Hands the filled part of chunk_ to the sink on the pool, then `next` here; answers instead
  // if the sink refused it.
  template <class Next>
  void deliver(Next next) {
    if (filled_ == 0) return next(*this);
    off_thread(
        [](HttpSession& s) {
          const size_t n = std::exchange(s.filled_, 0);
          return s.sink_->write(std::string_view(s.chunk_.data(), n));
        },
        [next = std::move(next)](HttpSession& s, Status written) mutable {
          if (written.ok()) return next(s);
          s.sink_.reset();
          if (s.watchdog_) s.watchdog_->cancel();
          s.keep_alive_ = false;  // the rest of the body stays unread
          s.started_ = Clock::now();
          s.send(Response::error(written));
        });
  }

  void upload_cut_off(beast::error_code ec) {
    sink_.reset();  // the sink cleans up
    if (watchdog_) watchdog_->cancel();
    on_read_error(ec);
  }

  void finish_upload() {
    if (watchdog_) watchdog_->cancel();
    off_thread(
        [](HttpSession& s) { return s.sink_->finish(); },
        [](HttpSession& s, Response response) {
          s.sink_.reset();
          s.send(std::move(response));
        });
  }

  // Fills request_ from a parsed header; false (after answering 400) if it cannot be served.
  template <class Message>
  bool start_request(const Message& message) {
    started_ = Clock::now();
    request_ = Request{};
    const Status line = set_request_line(request_, message.method_string(), message.target());
    request_.remote_address = remote_;
    std::string_view incoming_id = message["x-request-id"];
    request_.request_id =
        valid_request_id(incoming_id) ? std::string(incoming_id) : new_request_id();
    version_ = message.version();
    keep_alive_ = message.keep_alive();
    if (!line.ok()) {
      send_error(line, 400);
      return false;
    }
    request_.headers.reserve(8);
    for (const auto& field : message) {
      request_.headers.emplace_back(std::string(field.name_string()), std::string(field.value()));
    }
    return true;
  }

  // An error found before routing: answer it and close, since the stream may be mid-request.
  void send_error(const Status& status, int http_status) {
    if (request_.request_id.empty()) request_.request_id = new_request_id();
    if (request_.method.empty() && header_parser_ && header_parser_->is_header_done()) {
      request_.method = std::string(header_parser_->get().method_string());
      request_.target = std::string(header_parser_->get().target());
    }
    request_.remote_address = remote_;
    started_ = Clock::now();
    route_ = "unmatched";
    keep_alive_ = false;
    Response response = Response::error(status);
    response.status = http_status;
    send(std::move(response));
  }

  void send(Response response) {
    const bool keep_alive = keep_alive_ && !server_->stopping_;
    status_ = response.status;
    if (response.stream) return start_stream(std::move(response.stream), keep_alive);
    auto fill = [&](auto& message) {
      message.version(version_);
      message.result(static_cast<unsigned>(response.status));
      message.set(wire::field::server, server_->options_.server_name);
      message.set(wire::field::content_type, response.content_type);
      message.set("x-request-id", request_.request_id);
      for (auto& [name, value] : response.headers) message.insert(name, value);
      message.keep_alive(keep_alive);
    };
    lowest().expires_after(server_->options_.write_timeout);
    if (!response.body_file.empty()) {
      beast::error_code ec;
      wire::file_body::value_type file;
      file.open(response.body_file.c_str(), beast::file_mode::scan, ec);
      if (ec) {
        response = Response::error(internal_error("cannot open the file to send: " + ec.message()));
      } else {
        file_response_.emplace();
        fill(*file_response_);
        file_response_->body() = std::move(file);
        file_response_->prepare_payload();
        // A large file takes longer than one write timeout: allow a generous rate floor.
        lowest().expires_after(server_->options_.write_timeout +
                               std::chrono::seconds(file_response_->body().size() >> 20));
        return wire::async_write(
            derived().stream(), *file_response_,
            beast::bind_front_handler(&HttpSession::on_write, self(), keep_alive));
      }
    }
    response_ = {};
    fill(response_);
    response_.body() = std::move(response.body);
    response_.prepare_payload();
    wire::async_write(derived().stream(), response_,
                      beast::bind_front_handler(&HttpSession::on_write, self(), keep_alive));
  }

  void on_write(bool keep_alive, beast::error_code ec, size_t bytes) {
    log_response(bytes);
    request_ = Request{};
    file_response_.reset();
    if (ec || !keep_alive) return derived().do_close();
    do_read();
  }

  // A streamed response (see ResponseStream): the head when the producer begins, then each piece
  // as one chunk. Meanwhile a read on the socket watches for the client going away, which
  // cancels the stream. Plain connections stay open for the next request afterwards; TLS ones
  // close, since cancelling a pending TLS read can leave the session mid-record.
  void start_stream(std::shared_ptr<ResponseStream> stream, bool keep_alive) {
    stream_ = std::move(stream);
    stream_keep_alive_ = keep_alive && !Derived::kTls;
    stream_bytes_ = 0;
    head_sent_ = writing_ = stream_end_ = stream_finished_ = stream_done_ = false;
    stream_out_.clear();
    lowest().expires_never();
    watching_ = true;
    derived().stream().async_read_some(buffer_.prepare(kReadChunk),
                                       beast::bind_front_handler(&HttpSession::on_watch, self()));
    std::weak_ptr<SessionBase> weak = this->shared_from_this();
    stream_->set_notify([weak] {
      auto session = weak.lock();
      if (!session) return;
      auto self = std::static_pointer_cast<Derived>(session);
      asio::post(self->derived().stream().get_executor(), [self] { self->pump(); });
    });
  }

  void on_watch(beast::error_code ec, size_t bytes) {
    watching_ = false;
    if (!ec) buffer_.commit(bytes);           // a pipelined request: served after this response
    if (stream_done_) return after_stream();  // cancelled by us once the response was out
    if (!stream_) return;
    if (ec) {  // the client went away (or the connection failed) before the response was out
      stream_->cancel();
      stream_.reset();
      status_ = 499;  // as nginx logs a client that closed the request
      log_response(stream_bytes_);
      return derived().do_close();
    }
  }

  void pump() {
    if (!stream_) return;
    ResponseStream::Pending p = stream_->take();
    if (p.began) {
      status_ = p.status;
      head_.emplace();
      head_->version(version_);
      head_->result(static_cast<unsigned>(p.status));
      head_->set(wire::field::server, server_->options_.server_name);
      head_->set(wire::field::content_type, p.content_type);
      head_->set("x-request-id", request_.request_id);
      for (auto& [name, value] : p.headers) head_->insert(name, value);
      head_->keep_alive(stream_keep_alive_);
      head_->chunked(true);
      head_serializer_.emplace(*head_);
    }
    stream_out_ += p.data;
    stream_end_ = stream_end_ || p.ended;
    if (writing_ || stream_finished_) return;
    if (head_serializer_ && !head_sent_) {
      writing_ = true;
      lowest().expires_after(server_->options_.write_timeout);
      return wire::async_write_header(
          derived().stream(), *head_serializer_,
          beast::bind_front_handler(&HttpSession::on_stream_write, self()));
    }
    if (!head_sent_) return;
    if (!stream_out_.empty()) {
      writing_ = true;
      chunk_out_ = std::move(stream_out_);
      stream_out_.clear();
      stream_bytes_ += chunk_out_.size();
      lowest().expires_after(server_->options_.write_timeout);
      return asio::async_write(derived().stream(), wire::make_chunk(asio::buffer(chunk_out_)),
                               beast::bind_front_handler(&HttpSession::on_stream_write, self()));
    }
    if (stream_end_) {
      writing_ = true;
      stream_finished_ = true;
      lowest().expires_after(server_->options_.write_timeout);
      asio::async_write(derived().stream(), wire::make_chunk_last(),
                        beast::bind_front_handler(&HttpSession::on_stream_write, self()));
    }
  }

  void on_stream_write(beast::error_code ec, size_t) {
    writing_ = false;
    head_sent_ = true;
    lowest().expires_never();
    if (ec) {
      if (stream_) {  // (if the watch saw the client go first, it has logged it)
        stream_->cancel();
        stream_.reset();
        status_ = 499;
        log_response(stream_bytes_);
      }
      return derived().do_close();
    }
    if (!stream_finished_) return pump();
    stream_.reset();
    stream_done_ = true;
    log_response(stream_bytes_);
    if (watching_) {  // the watch must end before the next request is read
      beast::error_code ignored;
      lowest().socket().cancel(ignored);
      return;
    }
    after_stream();
  }

  void after_stream() {
    stream_finished_ = stream_done_ = false;
    head_.reset();
    head_serializer_.reset();
    chunk_out_.clear();
    request_ = Request{};
    if (!stream_keep_alive_) return derived().do_close();
    do_read();
  }

  void log_response(size_t bytes) {
    double seconds = std::chrono::duration<double>(Clock::now() - started_).count();
    server_->log_access(request_, route_, status_, bytes, seconds);
  }

  std::shared_ptr<ResponseStream> stream_;
  std::optional<wire::response<wire::empty_body>> head_;
  std::optional<wire::response_serializer<wire::empty_body>> head_serializer_;
  std::string stream_out_, chunk_out_;
  size_t stream_bytes_ = 0;
  bool stream_keep_alive_ = false, head_sent_ = false, writing_ = false, stream_end_ = false,
       stream_finished_ = false, stream_done_ = false, watching_ = false;

  std::shared_ptr<HttpServer::Impl> server_;
  std::string remote_;
  beast::flat_buffer buffer_;
  std::optional<wire::request_parser<wire::empty_body>> header_parser_;
  std::optional<wire::request_parser<wire::string_body>> body_parser_;
  std::optional<wire::request_parser<wire::buffer_body>> upload_parser_;
  std::unique_ptr<BodySink> sink_;
  bool expects_continue_ = false;          // the request carries Expect: 100-continue
  std::optional<uint64_t> raw_remaining_;  // body bytes still to read, for a declared length
  std::vector<char> chunk_;
  size_t filled_ = 0;  // bytes of chunk_ read and not yet handed to the sink
  std::optional<asio::steady_timer> watchdog_;  // stall detection for uploads
  uint64_t upload_bytes_ = 0, upload_seen_ = 0;
  wire::response<wire::string_body> response_;
  std::optional<wire::response<wire::file_body>> file_response_;
  int status_ = 0;
  Request request_;
  std::string_view route_;
  Clock::time_point started_;
  unsigned version_ = 11;
  bool keep_alive_ = true;
  bool idle_ = false;
};

class PlainSession final : public HttpSession<PlainSession> {
 public:
  static constexpr bool kTls = false;
  PlainSession(tcp::socket&& socket, std::shared_ptr<HttpServer::Impl> server, std::string remote)
      : HttpSession(std::move(server), std::move(remote)), stream_(std::move(socket)) {}

  beast::tcp_stream& stream() { return stream_; }
  void run() {
    asio::dispatch(stream_.get_executor(),
                   beast::bind_front_handler(&PlainSession::do_read, self()));
  }
  void do_close() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
  }

 private:
  beast::tcp_stream stream_;
};

class TlsSession final : public HttpSession<TlsSession> {
 public:
  static constexpr bool kTls = true;
  TlsSession(tcp::socket&& socket, ssl::context& context, std::shared_ptr<HttpServer::Impl> server,
             std::string remote)
      : HttpSession(std::move(server), std::move(remote)), stream_(std::move(socket), context) {}

  beast::ssl_stream<beast::tcp_stream>& stream() { return stream_; }
  void run() {
    asio::dispatch(stream_.get_executor(), [self = self()] {
      self->lowest().expires_after(self->server_->options_.handshake_timeout);
      self->stream_.async_handshake(ssl::stream_base::server,
                                    beast::bind_front_handler(&TlsSession::on_handshake, self));
    });
  }
  void do_close() {
    lowest().expires_after(std::chrono::seconds(5));
    stream_.async_shutdown([self = self()](beast::error_code) {});
  }

 private:
  void on_handshake(beast::error_code ec) {
    if (ec) {
      spdlog::debug("TLS handshake with {} failed: {}", remote_, ec.message());
      return;
    }
    do_read();
  }

  beast::ssl_stream<beast::tcp_stream> stream_;
};

Status HttpServer::Impl::start() {
  access_log_ = spdlog::get("access");
  if (!access_log_) access_log_ = spdlog::default_logger();
  if (!options_.tls_cert_file.empty() || !options_.tls_key_file.empty()) {
    if (options_.tls_cert_file.empty() || options_.tls_key_file.empty()) {
      return invalid_argument("TLS needs both a certificate file and a key file");
    }
    ssl_.emplace(ssl::context::tls_server);
    ssl_->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                      ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 |
                      ssl::context::single_dh_use);
    beast::error_code ec;
    ssl_->use_certificate_chain_file(options_.tls_cert_file, ec);
    if (ec) {
      return invalid_argument(
          fmt::format("TLS certificate {}: {}", options_.tls_cert_file, ec.message()));
    }
    ssl_->use_private_key_file(options_.tls_key_file, ssl::context::pem, ec);
    if (ec) {
      return invalid_argument(fmt::format("TLS key {}: {}", options_.tls_key_file, ec.message()));
    }
  }
  beast::error_code ec;
  auto address = asio::ip::make_address(options_.host, ec);
  if (ec)
    return invalid_argument(fmt::format("listen address '{}': {}", options_.host, ec.message()));
  tcp::endpoint endpoint(address, options_.port);
  std::string where = fmt::format("{}:{}", options_.host, options_.port);
  if (acceptor_.open(endpoint.protocol(), ec); ec) {
    return unavailable(fmt::format("opening {}: {}", where, ec.message()));
  }
  acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
  if (acceptor_.bind(endpoint, ec); ec) {
    return unavailable(fmt::format("binding {}: {}", where, ec.message()));
  }
  if (acceptor_.listen(asio::socket_base::max_listen_connections, ec); ec) {
    return unavailable(fmt::format("listening on {}: {}", where, ec.message()));
  }
  port_ = acceptor_.local_endpoint().port();
  asio::dispatch(acceptor_.get_executor(), [self = shared_from_this()] { self->do_accept(); });
  return {};
}

void HttpServer::Impl::do_accept() {
  acceptor_.async_accept(asio::make_strand(ioc_),
                         beast::bind_front_handler(&Impl::on_accept, shared_from_this()));
}

void HttpServer::Impl::on_accept(beast::error_code ec, tcp::socket socket) {
  if (ec == asio::error::operation_aborted || stopping_) return;
  if (ec) {
    spdlog::warn("accept failed: {}", ec.message());
    return do_accept();
  }
  std::string remote = socket.remote_endpoint(ec).address().to_string();
  if (auto refused = admit(remote)) {
    spdlog::warn("refusing a connection: {}", *refused);
    socket.close(ec);
    return do_accept();
  }
  socket.set_option(tcp::no_delay(true), ec);
  auto self = shared_from_this();
  if (ssl_) {
    auto session = std::make_shared<TlsSession>(std::move(socket), *ssl_, self, std::move(remote));
    add_session(session);
    session->run();
  } else {
    auto session = std::make_shared<PlainSession>(std::move(socket), self, std::move(remote));
    add_session(session);
    session->run();
  }
  do_accept();
}

void HttpServer::Impl::shutdown(std::function<void()> drained) {
  stopping_ = true;
  asio::post(acceptor_.get_executor(), [self = shared_from_this()] {
    beast::error_code ignored;
    self->acceptor_.close(ignored);
  });
  std::vector<std::shared_ptr<SessionBase>> live;
  {
    std::lock_guard lock(mutex_);
    for (auto& [raw, weak] : sessions_) {
      if (auto session = weak.lock()) live.push_back(std::move(session));
    }
  }
  for (auto& session : live) session->close_if_idle();
  live.clear();
  bool now = false;
  {
    std::lock_guard lock(mutex_);
    if (sessions_.empty()) {
      now = true;
    } else {
      drained_ = std::move(drained);
    }
  }
  if (now && drained) drained();
}

HttpServer::HttpServer(asio::io_context& ioc, ServerOptions options, const Router& router,
                       HttpMetrics& metrics)
    : impl_(std::make_shared<Impl>(ioc, std::move(options), router, metrics)) {}

// Handlers still running may use what the server's owner holds: they finish first.
HttpServer::~HttpServer() { impl_->join_handlers(); }
void HttpServer::join_handlers() { impl_->join_handlers(); }
Status HttpServer::start() { return impl_->start(); }
uint16_t HttpServer::port() const { return impl_->port_; }
bool HttpServer::tls() const { return impl_->ssl_.has_value(); }
void HttpServer::shutdown(std::function<void()> drained) { impl_->shutdown(std::move(drained)); }
bool HttpServer::stopping() const { return impl_->stopping_; }
size_t HttpServer::open_connections() const { return impl_->open_connections(); }

}  // namespace mh::http
