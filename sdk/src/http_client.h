// HttpClient: the SDK's connection to macrohardd. One kept-alive connection (plain or TLS) per
// client, used under a mutex; every operation has a timeout; failed attempts are retried as
// macrohard.h describes (safe requests on network errors, every request on 429/503).
#pragma once

#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "platform/base/status.h"

namespace mh::sdk {

struct ClientConfig {
  std::string base_url;  // as given, for messages
  bool https = false;
  std::string host;
  std::string port;
  std::string base_path;  // prefix of every request path, "" or "/gateway"
  std::string api_key;
  std::string ca_file;
  bool verify_tls = true;
  std::chrono::milliseconds connect_timeout{10'000};
  std::chrono::milliseconds request_timeout{60'000};
  int max_retries = 3;
  std::chrono::milliseconds initial_backoff{200};
  std::chrono::milliseconds max_backoff{30'000};
  std::string user_agent;  // appended product token
};

// Fills the scheme, host, port and base path of `config` from a URL.
Status parse_base_url(std::string_view url, ClientConfig* config);

struct HttpResponse {
  int status = 0;
  std::string body;
  std::string request_id;
  std::string retry_after;  // the raw header, "" if absent
};

// An error from a client call: a Status plus what the server said about it.
struct CallError {
  Status status;
  int http_status = 0;
  std::string request_id;
};

template <typename T>
using CallResult = std::variant<T, CallError>;

// Called as a transfer moves: bytes done so far and the total (0 when unknown). Returning false
// cancels the transfer (the call then fails with Code::kCancelled).
using ProgressFn = std::function<bool(uint64_t done, uint64_t total)>;

// A request body streamed from a file: `prefix`, the file's bytes, `suffix` (a multipart frame).
struct FileBody {
  std::string content_type;
  std::string prefix;
  std::filesystem::path file;
  std::string suffix;
};

class HttpClient {
 public:
  explicit HttpClient(ClientConfig config);
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // Sends a request with retries. A response with any status is a success here; see
  // error_from_response for turning a 4xx/5xx into an error.
  CallResult<HttpResponse> send(
      std::string_view method, std::string_view path, std::string_view body = {},
      const std::vector<std::pair<std::string, std::string>>& headers = {});
  // send(), then a non-2xx status becomes a CallError carrying the server's envelope.
  CallResult<HttpResponse> call(std::string_view method, std::string_view path,
                                std::string_view body = {});
  // Sends a body from a file in chunks, in constant memory. The header goes first with
  // "Expect: 100-continue", so a refusal arrives before any of the body is sent. Retried (the
  // file sent again) only on 429/503; a non-2xx status becomes a CallError.
  CallResult<HttpResponse> upload(std::string_view method, std::string_view path,
                                  const FileBody& body, const ProgressFn& progress);
  // GET `path` into the file `destination`, written under a temporary name beside it and
  // renamed into place once complete: a failed or cancelled download leaves no file. Retried
  // from the start on network failures like any GET. A non-2xx status becomes a CallError.
  CallResult<HttpResponse> download(std::string_view path, const std::filesystem::path& destination,
                                    const ProgressFn& progress);

  // Sends a JSON request whose answer arrives over time (server-sent events): each piece of a
  // 2xx response's body goes to `on_piece` as it comes; returning false cancels (the connection
  // is closed, which the server takes as the client going away). Retried only on 429/503.
  using PieceFn = std::function<Result<bool>(std::string_view piece)>;
  CallResult<HttpResponse> stream(std::string_view method, std::string_view path,
                                  std::string_view body, const PieceFn& on_piece);

  const ClientConfig& config() const { return config_; }

 private:
  class Connection;
  // One attempt: `exchange` runs on an open connection; a kept-alive connection the server has
  // since closed is replaced and the exchange tried once more.
  Result<HttpResponse> attempt(const std::function<Result<HttpResponse>(Connection&)>& exchange);
  // Runs attempts, retrying as macrohard.h describes.
  CallResult<HttpResponse> with_retries(
      bool idempotent, const std::function<Result<HttpResponse>(Connection&)>& exchange);

  ClientConfig config_;
  std::mutex mutex_;
  std::unique_ptr<Connection> connection_;
};

// The CallError a non-2xx response stands for, from its error envelope when it has one.
CallError error_from_response(const HttpResponse& response);
// The delay a Retry-After header asks for (delta-seconds or an HTTP date), if it parses.
std::optional<std::chrono::milliseconds> parse_retry_after(std::string_view value);

}  // namespace mh::sdk
