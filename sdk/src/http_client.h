// HttpClient: the SDK's connection to macrohardd. One kept-alive connection (plain or TLS) per
// client, used under a mutex; every operation has a timeout; failed attempts are retried as
// macrohard.h describes (safe requests on network errors, every request on 429/503).
#pragma once

#include <chrono>
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

  const ClientConfig& config() const { return config_; }

 private:
  class Connection;
  Result<HttpResponse> attempt(std::string_view method, std::string_view target,
                               std::string_view body,
                               const std::vector<std::pair<std::string, std::string>>& headers);

  ClientConfig config_;
  std::mutex mutex_;
  std::unique_ptr<Connection> connection_;
};

// The CallError a non-2xx response stands for, from its error envelope when it has one.
CallError error_from_response(const HttpResponse& response);
// The delay a Retry-After header asks for (delta-seconds or an HTTP date), if it parses.
std::optional<std::chrono::milliseconds> parse_retry_after(std::string_view value);

}  // namespace mh::sdk
