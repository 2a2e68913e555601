#include "sdk/src/http_client.h"

#include <fcntl.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/json.hpp>
#include <boost/url/parse.hpp>
#include <ctime>
#include <random>
#include <thread>

#include "platform/base/crypto.h"
#include "platform/base/files.h"
#include "platform/base/version.h"
#include "sdk/include/macrohard/macrohard.h"

namespace mh::sdk {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;

namespace {

constexpr uint64_t kMaxResponseBytes = 256ull * 1024 * 1024;
// Streamed transfers move through a buffer of this size: few system calls, bounded memory.
constexpr size_t kTransferChunk = 1 << 20;
// The most of an error body a download keeps.
constexpr size_t kMaxErrorBody = 1 << 20;

bool is_idempotent(std::string_view method,
                   const std::vector<std::pair<std::string, std::string>>& headers) {
  if (method == "GET" || method == "HEAD" || method == "PUT" || method == "DELETE" ||
      method == "OPTIONS") {
    return true;
  }
  for (const auto& [name, value] : headers) {
    if (beast::iequals(name, "Idempotency-Key")) return true;
  }
  return false;
}

std::chrono::milliseconds backoff(const ClientConfig& config, int attempt) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  double cap = static_cast<double>(config.initial_backoff.count()) * std::pow(2.0, attempt);
  cap = std::min(cap, static_cast<double>(config.max_backoff.count()));
  std::uniform_real_distribution<double> jitter(0.0, cap);  // "full jitter"
  return std::chrono::milliseconds(static_cast<int64_t>(jitter(rng)));
}

// The fields every request carries.
void set_common_fields(const ClientConfig& config, http::request_header<>& head,
                       std::string_view method, std::string_view target) {
  head.method(http::string_to_verb(method));
  if (head.method() == http::verb::unknown) head.method_string(method);
  head.target(target);
  head.version(11);
  head.set(http::field::host, config.host);
  std::string agent = fmt::format("macrohard-sdk/{} (api {}.{})", MACROHARD_VERSION,
                                  MH_API_VERSION_MAJOR, MH_API_VERSION_MINOR);
  if (!config.user_agent.empty()) agent += " " + config.user_agent;
  head.set(http::field::user_agent, agent);
  head.set(http::field::accept, "application/json");
  if (!config.api_key.empty()) head.set(http::field::authorization, "Bearer " + config.api_key);
}

Status cancelled(std::string_view what) {
  return {Code::kCancelled, fmt::format("the {} was cancelled", what)};
}

// A file opened for reading, closed on scope exit.
class InputFile {
 public:
  static Result<InputFile> open(const std::filesystem::path& path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      int e = errno;
      if (e == ENOENT) return not_found(fmt::format("{}: no such file", path.string()));
      return invalid_argument(fmt::format("{}: {}", path.string(), std::strerror(e)));
    }
    InputFile file(fd);
    struct stat st {};
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
      return invalid_argument(fmt::format("{} is not a regular file", path.string()));
    }
    file.size_ = static_cast<uint64_t>(st.st_size);
    return file;
  }
  InputFile(InputFile&& o) noexcept : fd_(std::exchange(o.fd_, -1)), size_(o.size_) {}
  InputFile& operator=(InputFile&&) = delete;
  ~InputFile() {
    if (fd_ >= 0) ::close(fd_);
  }
  int fd() const { return fd_; }
  uint64_t size() const { return size_; }

 private:
  explicit InputFile(int fd) : fd_(fd) {}
  int fd_;
  uint64_t size_ = 0;
};

}  // namespace

Status parse_base_url(std::string_view url, ClientConfig* config) {
  auto parsed = boost::urls::parse_absolute_uri(url);
  if (!parsed) {
    return invalid_argument(fmt::format("base URL '{}' is not an absolute URL", url));
  }
  std::string scheme = parsed->scheme();
  if (scheme != "http" && scheme != "https") {
    return invalid_argument(fmt::format("base URL '{}': the scheme must be http or https", url));
  }
  if (parsed->host().empty())
    return invalid_argument(fmt::format("base URL '{}' has no host", url));
  if (parsed->has_query() || parsed->has_fragment() || parsed->has_userinfo()) {
    return invalid_argument(
        fmt::format("base URL '{}' must not carry a query, fragment or user info", url));
  }
  config->base_url = std::string(url);
  config->https = scheme == "https";
  // host_name() is decoded; an IPv6 literal comes without its brackets from host_address().
  config->host = parsed->host_type() == boost::urls::host_type::ipv6
                     ? std::string(parsed->host_address())
                     : std::string(parsed->host_name());
  if (parsed->host_type() == boost::urls::host_type::ipv4) config->host = parsed->host_address();
  config->port = parsed->has_port() ? std::string(parsed->port()) : (config->https ? "443" : "80");
  std::string path(parsed->encoded_path());
  while (!path.empty() && path.back() == '/') path.pop_back();
  config->base_path = path;
  return {};
}

std::optional<std::chrono::milliseconds> parse_retry_after(std::string_view value) {
  if (value.empty()) return std::nullopt;
  if (std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    if (value.size() > 9) return std::nullopt;
    return std::chrono::seconds(std::stoll(std::string(value)));
  }
  std::tm tm{};
  const char* end = strptime(std::string(value).c_str(), "%a, %d %b %Y %H:%M:%S GMT", &tm);
  if (end == nullptr) return std::nullopt;
  auto when = std::chrono::system_clock::from_time_t(timegm(&tm));
  auto delta = std::chrono::duration_cast<std::chrono::milliseconds>(
      when - std::chrono::system_clock::now());
  return std::max(delta, std::chrono::milliseconds(0));
}

CallError error_from_response(const HttpResponse& response) {
  CallError error;
  error.http_status = response.status;
  error.request_id = response.request_id;
  Code code = code_from_http_status(response.status);
  std::string message = fmt::format("the server answered HTTP {}", response.status);
  std::string param;
  boost::system::error_code ec;
  boost::json::value body = boost::json::parse(response.body, ec);
  if (!ec && body.is_object()) {
    if (const auto* envelope = body.as_object().if_contains("error");
        envelope != nullptr && envelope->is_object()) {
      const auto& e = envelope->as_object();
      if (const auto* c = e.if_contains("code"); c != nullptr && c->is_string()) {
        if (auto known = code_from_name(c->as_string())) code = *known;
      }
      if (const auto* m = e.if_contains("message"); m != nullptr && m->is_string()) {
        message = m->as_string();
      }
      if (const auto* p = e.if_contains("param"); p != nullptr && p->is_string()) {
        param = p->as_string();
      }
    }
  }
  error.status = Status(code, std::move(message), std::move(param));
  return error;
}

// One connection to the server. Each operation runs on the client's private io_context with a
// deadline, so a dead server can never hang the caller.
class HttpClient::Connection {
 public:
  explicit Connection(const ClientConfig& config)
      : config_(config), ssl_(ssl::context::tls_client) {
    if (config_.https) {
      ssl_.set_default_verify_paths();
      if (!config_.ca_file.empty()) ssl_.load_verify_file(config_.ca_file);
      ssl_.set_verify_mode(config_.verify_tls ? ssl::verify_peer : ssl::verify_none);
    }
  }

  bool open() const { return plain_.has_value() || tls_.has_value(); }
  bool reused() const { return requests_ > 0; }

  Status connect() {
    close();
    tcp::resolver resolver(ioc_);
    tcp::resolver::results_type endpoints;
    beast::error_code ec;
    resolver.async_resolve(config_.host, config_.port,
                           [&](beast::error_code e, tcp::resolver::results_type r) {
                             ec = e;
                             endpoints = std::move(r);
                           });
    run();
    if (ec) return unreachable("resolving", ec);
    beast::tcp_stream stream(ioc_);
    stream.expires_after(config_.connect_timeout);
    stream.async_connect(endpoints, [&](beast::error_code e, const tcp::endpoint&) { ec = e; });
    run();
    if (ec) return unreachable("connecting to", ec);
    stream.socket().set_option(tcp::no_delay(true), ec);
    if (!config_.https) {
      plain_.emplace(std::move(stream));
      return {};
    }
    tls_.emplace(std::move(stream), ssl_);
    SSL* handle = tls_->native_handle();
    asio::ip::make_address(config_.host, ec);
    bool is_ip = !ec;
    if (!is_ip) SSL_set_tlsext_host_name(handle, config_.host.c_str());
    if (config_.verify_tls) {
      X509_VERIFY_PARAM* param = SSL_get0_param(handle);
      if (is_ip) {
        X509_VERIFY_PARAM_set1_ip_asc(param, config_.host.c_str());
      } else {
        X509_VERIFY_PARAM_set1_host(param, config_.host.c_str(), 0);
      }
    }
    beast::get_lowest_layer(*tls_).expires_after(config_.connect_timeout);
    tls_->async_handshake(ssl::stream_base::client, [&](beast::error_code e) { ec = e; });
    run();
    if (ec) {
      long verify = SSL_get_verify_result(handle);
      close();
      if (verify != X509_V_OK) {
        return unavailable(fmt::format(
            "TLS: the certificate of {} is not trusted ({}); set a CA file that holds it, "
            "or turn verification off for development",
            config_.base_url, X509_verify_cert_error_string(verify)));
      }
      return unreachable("TLS handshake with", ec);
    }
    return {};
  }

  // One request and its response on the open connection.
  Result<HttpResponse> exchange(http::request<http::string_body>& request) {
    return on_stream([&](auto& stream) -> Result<HttpResponse> {
      MH_TRY(write_request(stream, request));
      return read_response(stream, request);
    });
  }

  // The header (with Expect: 100-continue), then, once the server says go on, the body from
  // `file`; a final answer instead of 100 Continue is the server refusing before the body.
  Result<HttpResponse> exchange_upload(http::request<http::empty_body>& head, const FileBody& body,
                                       const InputFile& file, const ProgressFn& progress) {
    return on_stream([&](auto& stream) -> Result<HttpResponse> {
      ++requests_;
      arm();
      beast::error_code ec;
      http::request_serializer<http::empty_body> serializer(head);
      http::async_write_header(stream, serializer, [&](beast::error_code e, size_t) { ec = e; });
      run();
      if (ec) return failed(ec, head);
      MH_ASSIGN_OR_RETURN(HttpResponse interim, read_response(stream, head));
      if (interim.status != 100) return interim;

      if (::lseek(file.fd(), 0, SEEK_SET) != 0) {
        return internal_error(fmt::format("{}: {}", body.file.string(), std::strerror(errno)));
      }
      const uint64_t total = body.prefix.size() + file.size() + body.suffix.size();
      uint64_t done = 0;
      std::vector<char> chunk(kTransferChunk);
      auto send = [&](const char* data, size_t size) -> Status {
        arm();
        asio::async_write(stream, asio::buffer(data, size),
                          [&](beast::error_code e, size_t) { ec = e; });
        run();
        if (ec) return {};  // the server may have answered and closed: read that below
        done += size;
        if (progress && !progress(done, total)) {
          close();
          return cancelled("upload");
        }
        return {};
      };
      MH_TRY(send(body.prefix.data(), body.prefix.size()));
      for (uint64_t left = file.size(); left > 0 && !ec;) {
        ssize_t n = ::read(file.fd(), chunk.data(), std::min<uint64_t>(left, chunk.size()));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
          close();
          return failed_precondition(
              fmt::format("{} changed while it was being uploaded", body.file.string()));
        }
        MH_TRY(send(chunk.data(), static_cast<size_t>(n)));
        left -= static_cast<uint64_t>(n);
      }
      if (!ec) MH_TRY(send(body.suffix.data(), body.suffix.size()));
      const beast::error_code write_error = ec;
      auto response = read_response(stream, head);
      if (!response.ok() && write_error) return failed(write_error, head);
      return response;
    });
  }

  // GET into a staged file renamed to `destination` once complete.
  // Sends `request` and hands the response body to `on_piece` as it arrives (a 2xx response;
  // an error response's body is kept in the result instead). `on_head` runs first, with
  // whether it is a success and the declared length (0 when unknown). on_piece returning false
  // cancels the transfer.
  template <class Body>
  Result<HttpResponse> exchange_pieces(
      http::request<Body>& request, const std::function<Status(bool ok, uint64_t length)>& on_head,
      const std::function<Result<bool>(std::string_view)>& on_piece, std::string_view what) {
    return on_stream([&](auto& stream) -> Result<HttpResponse> {
      MH_TRY(write_request(stream, request));
      beast::error_code ec;
      http::response_parser<http::buffer_body> parser;
      parser.body_limit(boost::none);
      arm();
      http::async_read_header(stream, buffer_, parser,
                              [&](beast::error_code e, size_t) { ec = e; });
      run();
      if (ec) return failed(ec, request);
      HttpResponse response = head_of(parser.get());
      const bool ok = response.status >= 200 && response.status < 300;
      MH_TRY(on_head(ok, parser.content_length().value_or(0)));
      std::vector<char> chunk(kTransferChunk);
      while (!parser.is_done()) {
        parser.get().body().data = chunk.data();
        parser.get().body().size = chunk.size();
        arm();
        http::async_read_some(stream, buffer_, parser,
                              [&](beast::error_code e, size_t) { ec = e; });
        run();
        if (ec == http::error::need_buffer) ec = {};
        if (ec) return failed(ec, request);
        const size_t got = chunk.size() - parser.get().body().size;
        if (!ok) {
          response.body.append(chunk.data(), std::min(got, kMaxErrorBody - response.body.size()));
          continue;
        }
        if (got == 0) continue;
        MH_ASSIGN_OR_RETURN(bool go_on, on_piece(std::string_view(chunk.data(), got)));
        if (!go_on) {
          close();
          return cancelled(what);
        }
      }
      if (!parser.keep_alive()) close();
      return response;
    });
  }

  Result<HttpResponse> exchange_download(http::request<http::empty_body>& request,
                                         const std::filesystem::path& destination,
                                         const ProgressFn& progress) {
    std::optional<StagedFile> staged;  // removes a partial file unless committed
    uint64_t total = 0, done = 0;
    auto on_head = [&](bool ok, uint64_t length) -> Status {
      total = length;
      if (!ok) return {};
      std::filesystem::path temp = destination;
      temp.replace_filename("." + destination.filename().string() + ".part-" +
                            secure_random_base64url(6));
      MH_ASSIGN_OR_RETURN(StagedFile created, StagedFile::create(temp, 0644));
      staged.emplace(std::move(created));
      return {};
    };
    auto on_piece = [&](std::string_view piece) -> Result<bool> {
      MH_TRY(staged->write(piece.data(), piece.size()));
      done += piece.size();
      return !progress || progress(done, total);
    };
    MH_ASSIGN_OR_RETURN(HttpResponse response,
                        exchange_pieces(request, on_head, on_piece, "download"));
    if (staged) MH_TRY(staged->commit(destination));
    return response;
  }

  void close() {
    beast::error_code ignored;
    if (plain_) plain_->socket().close(ignored);
    if (tls_) beast::get_lowest_layer(*tls_).socket().close(ignored);
    plain_.reset();
    tls_.reset();
    buffer_.clear();
    requests_ = 0;
    ioc_.restart();
  }

 private:
  void run() {
    ioc_.restart();
    ioc_.run();
  }
  Status unreachable(std::string_view what, const beast::error_code& ec) const {
    Code code = ec == beast::error::timeout ? Code::kDeadlineExceeded : Code::kUnavailable;
    return {code, fmt::format("{} {} failed: {}", what, config_.base_url, ec.message())};
  }

  template <typename F>
  Result<HttpResponse> on_stream(F&& f) {
    return tls_ ? f(*tls_) : f(*plain_);
  }
  // Every step of an exchange (a write, a read of a header or a chunk) must finish within the
  // request timeout: a transfer that keeps moving may take as long as it needs.
  void arm() {
    if (tls_) {
      beast::get_lowest_layer(*tls_).expires_after(config_.request_timeout);
    } else {
      plain_->expires_after(config_.request_timeout);
    }
  }

  // Closes the connection and describes the failure of `head`'s exchange.
  Status failed(const beast::error_code& ec, const http::request_header<>& head) {
    close();
    if (ec == beast::error::timeout) {
      return Status(Code::kDeadlineExceeded,
                    fmt::format("{} {} timed out after {} ms", head.method_string(), head.target(),
                                config_.request_timeout.count()));
    }
    return unreachable("talking to", ec);
  }

  template <typename Fields>
  static HttpResponse head_of(const http::response_header<Fields>& message) {
    HttpResponse response;
    response.status = static_cast<int>(message.result_int());
    response.request_id = std::string(message["x-request-id"]);
    response.retry_after = std::string(message[http::field::retry_after]);
    return response;
  }

  // Writes a whole request (one whose body, if any, is in memory).
  template <typename Stream, typename Body>
  Status write_request(Stream& stream, http::request<Body>& request) {
    ++requests_;
    arm();
    beast::error_code ec;
    http::async_write(stream, request, [&](beast::error_code e, size_t) { ec = e; });
    run();
    if (ec) return failed(ec, request);
    return {};
  }

  // Reads one whole response (a 100 Continue is one too).
  template <typename Stream>
  Result<HttpResponse> read_response(Stream& stream, const http::request_header<>& head) {
    beast::error_code ec;
    http::response_parser<http::string_body> parser;
    parser.body_limit(kMaxResponseBytes);
    arm();
    http::async_read(stream, buffer_, parser, [&](beast::error_code e, size_t) { ec = e; });
    run();
    if (ec) return failed(ec, head);
    auto& message = parser.get();
    HttpResponse response = head_of(message);
    response.body = std::move(message.body());
    if (response.status >= 200 && !message.keep_alive()) close();
    return response;
  }

  const ClientConfig& config_;
  asio::io_context ioc_{1};
  ssl::context ssl_;
  std::optional<beast::tcp_stream> plain_;
  std::optional<beast::ssl_stream<beast::tcp_stream>> tls_;
  beast::flat_buffer buffer_;
  uint64_t requests_ = 0;
};

HttpClient::HttpClient(ClientConfig config) : config_(std::move(config)) {}
HttpClient::~HttpClient() = default;

Result<HttpResponse> HttpClient::attempt(
    const std::function<Result<HttpResponse>(Connection&)>& exchange) {
  if (!connection_) {
    try {
      connection_ = std::make_unique<Connection>(config_);
    } catch (const std::exception& e) {
      return invalid_argument(
          fmt::format("TLS settings: {} (CA file '{}')", e.what(), config_.ca_file));
    }
  }
  // A kept-alive connection the server has since closed fails at once: retry on a fresh one.
  for (int tries = 0; tries < 2; ++tries) {
    bool reused = connection_->open() && connection_->reused();
    if (!connection_->open()) MH_TRY(connection_->connect());
    auto response = exchange(*connection_);
    if (response.ok() || !reused || response.status().code() != Code::kUnavailable) {
      return response;
    }
  }
  return unavailable("unreachable");  // not reached: the second try is never on a reused one
}

CallResult<HttpResponse> HttpClient::with_retries(
    bool idempotent, const std::function<Result<HttpResponse>(Connection&)>& exchange) {
  for (int attempt_no = 0;; ++attempt_no) {
    Result<HttpResponse> response = attempt(exchange);
    const bool last = attempt_no >= config_.max_retries;
    std::chrono::milliseconds delay = backoff(config_, attempt_no);
    if (response.ok()) {
      int status = response->status;
      bool retry =
          status == 429 || status == 503 || (idempotent && (status == 502 || status == 504));
      if (!retry || last) return std::move(response).value();
      if (auto asked = parse_retry_after(response->retry_after)) {
        delay = std::min(*asked, config_.max_backoff);
      }
    } else {
      Code code = response.status().code();
      bool network = code == Code::kUnavailable || code == Code::kDeadlineExceeded;
      if (!network || !idempotent || last) return CallError{response.status(), 0, {}};
    }
    std::this_thread::sleep_for(delay);
  }
}

CallResult<HttpResponse> HttpClient::send(
    std::string_view method, std::string_view path, std::string_view body,
    const std::vector<std::pair<std::string, std::string>>& headers) {
  std::lock_guard lock(mutex_);
  http::request<http::string_body> request;
  set_common_fields(config_, request, method, config_.base_path + std::string(path));
  for (const auto& [name, value] : headers) request.set(name, value);
  if (!body.empty()) {
    request.set(http::field::content_type, "application/json");
    request.body() = std::string(body);
  }
  request.prepare_payload();
  return with_retries(is_idempotent(method, headers),
                      [&](Connection& c) { return c.exchange(request); });
}

// The response, or the CallError its non-2xx status stands for.
static CallResult<HttpResponse> successful(CallResult<HttpResponse> result) {
  if (auto* response = std::get_if<HttpResponse>(&result)) {
    if (response->status < 200 || response->status >= 300) return error_from_response(*response);
  }
  return result;
}

CallResult<HttpResponse> HttpClient::call(std::string_view method, std::string_view path,
                                          std::string_view body) {
  return successful(send(method, path, body));
}

CallResult<HttpResponse> HttpClient::upload(std::string_view method, std::string_view path,
                                            const FileBody& body, const ProgressFn& progress) {
  auto file = InputFile::open(body.file);
  if (!file.ok()) return CallError{file.status(), 0, {}};
  std::lock_guard lock(mutex_);
  http::request<http::empty_body> head;
  set_common_fields(config_, head, method, config_.base_path + std::string(path));
  head.set(http::field::content_type, body.content_type);
  head.set(http::field::expect, "100-continue");
  head.content_length(body.prefix.size() + file->size() + body.suffix.size());
  return successful(with_retries(/*idempotent=*/false, [&](Connection& c) {
    return c.exchange_upload(head, body, *file, progress);
  }));
}

CallResult<HttpResponse> HttpClient::download(std::string_view path,
                                              const std::filesystem::path& destination,
                                              const ProgressFn& progress) {
  if (destination.filename().empty()) {
    return CallError{
        invalid_argument(fmt::format("'{}' does not name a file", destination.string())), 0, {}};
  }
  std::lock_guard lock(mutex_);
  http::request<http::empty_body> request;
  set_common_fields(config_, request, "GET", config_.base_path + std::string(path));
  request.set(http::field::accept, "*/*");
  return successful(with_retries(/*idempotent=*/true, [&](Connection& c) {
    return c.exchange_download(request, destination, progress);
  }));
}

CallResult<HttpResponse> HttpClient::stream(std::string_view method, std::string_view path,
                                            std::string_view body, const PieceFn& on_piece) {
  std::lock_guard lock(mutex_);
  http::request<http::string_body> request;
  set_common_fields(config_, request, method, config_.base_path + std::string(path));
  request.set(http::field::content_type, "application/json");
  request.set(http::field::accept, "text/event-stream, application/json");
  request.body() = std::string(body);
  request.prepare_payload();
  return successful(with_retries(/*idempotent=*/false, [&](Connection& c) {
    return c.exchange_pieces(
        request, [](bool, uint64_t) { return Status(); }, on_piece, "the request");
  }));
}

}  // namespace mh::sdk
