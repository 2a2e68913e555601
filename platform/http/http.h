// Request and Response as handlers see them: plain structs with no Beast types, so route code
// stays quick to compile and easy to test. The server (http_server.cpp) converts at the edge.
#pragma once

#include <boost/json/value.hpp>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "platform/base/status.h"

namespace mh::http {

using Headers = std::vector<std::pair<std::string, std::string>>;

// Who made a request, once authenticated.
struct Principal {
  enum class Kind { kAnonymous, kPlatformAdmin, kTenant };
  Kind kind = Kind::kAnonymous;
  std::string key_id;  // the API key's id, for the audit and access logs
  std::string tenant;  // kTenant: whose key it is
  std::string role;    // kTenant: "owner", "developer", "viewer"

  bool is_admin() const { return kind == Kind::kPlatformAdmin; }
  // "admin:<key id>" or "tenant:<tenant>/<key id>", as the audit log names actors.
  std::string actor() const;
};

struct Request {
  std::string method;  // "GET"
  std::string target;  // as sent: "/v1/files?limit=2"
  std::string path;    // target up to '?', undecoded
  std::string query;   // after '?', undecoded
  Headers headers;
  std::string body;
  std::string request_id;
  std::string remote_address;
  // Filled by the router: decoded values of the pattern's {name} segments.
  std::vector<std::pair<std::string, std::string>> path_params;
  Principal principal;
  // Set by the router once it has decided who is calling (principal is then theirs): on the I/O
  // thread when it could from memory, so that a request counts from its arrival.
  bool authenticated = false;
  // Set by the router for a tenant's request: its place among the tenant's requests in flight,
  // given back when the request is dropped (its response written, or its connection gone).
  std::shared_ptr<void> in_flight;

  // The first header with this name (case-insensitive), or "" if absent.
  std::string_view header(std::string_view name) const;
  // The decoded value of a query parameter, or nullopt if absent.
  std::optional<std::string> query_param(std::string_view name) const;
  // A path parameter by name; "" if the pattern has none of that name.
  std::string_view param(std::string_view name) const;
};

// Fills a request's method, target, path and query from its request line: invalid_argument
// when the target is not an absolute path (the server answers 400).
Status set_request_line(Request& request, std::string_view method, std::string_view target);

struct Response;

// A response made later, on another thread, and sent piece by piece as it is made: server-sent
// events, a reply relayed from a replica. The producer calls begin() once, write() for each
// piece, then end(); the server sends the head as soon as begin() comes, then each piece as a
// chunk. When the client goes away first, cancelled() turns true and the on_cancel callback runs
// (once, on whichever thread saw it go): the producer should stop and may drop what is left.
class ResponseStream {
 public:
  void begin(int status, std::string content_type, Headers headers = {});
  void write(std::string piece);
  void end();
  // begin(), write() and end() in one go: a whole response (neither streamed nor a file) made
  // later, on another thread.
  void respond(const Response& response);
  // respond() with the error envelope (for a failure before begin).
  void fail(const Status& status);
  bool cancelled() const;
  void on_cancel(std::function<void()> callback);  // runs at once when already cancelled

  // The server's side. `notify` runs (on the producer's thread) whenever there is more to send.
  struct Pending {
    bool began = false;  // set once, the first time the head is handed over
    int status = 200;
    std::string content_type;
    Headers headers;
    std::string data;  // pieces written since the last take, concatenated
    bool ended = false;
  };
  void set_notify(std::function<void()> notify);
  Pending take();
  void cancel();

 private:
  mutable std::mutex mutex_;
  Pending pending_;
  bool head_taken_ = false, cancelled_ = false;
  std::function<void()> notify_, on_cancel_;
};

struct Response {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  Headers headers;
  // When set, the body is this file's content, sent from disk (body is ignored).
  std::string body_file;
  // When set, the head and body come later from this stream (status and body are ignored).
  std::shared_ptr<ResponseStream> stream;

  static Response json(int status, const boost::json::value& value);
  static Response text(int status, std::string body, std::string content_type = "text/plain");
  static Response file(std::string path, std::string content_type);
  static Response streamed(std::shared_ptr<ResponseStream> stream);
  // The error envelope of DESIGN.md: {"error":{"type","code","message","param"}}.
  static Response error(const Status& status);
};

// A page of a list, as OpenAI's API shapes it: {"object":"list","data","has_more","first_id",
// "last_id"}; the ids are the first and last items' "id".
Response list_response(boost::json::array data, bool has_more);

// The JSON object in a request's body, or invalid_argument saying what is wrong with it.
Result<boost::json::object> parse_json_object(const Request& request);

// Cursor pagination as in OpenAI's API: `limit` (1..max, default def) and `after` (an id).
struct PageRequest {
  int64_t limit = 20;
  std::string after;
};
Result<PageRequest> parse_page(const Request& request, int64_t def = 20, int64_t max = 100);

// Decodes %XX escapes (and '+' as space when plus_is_space); nullopt for a malformed escape.
std::optional<std::string> percent_decode(std::string_view in, bool plus_is_space);

}  // namespace mh::http
