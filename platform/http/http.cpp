#include "platform/http/http.h"

#include <fmt/format.h>
#include <strings.h>
#include <boost/json.hpp>
#include <spdlog/spdlog.h>
#include <charconv>

namespace mh::http {

namespace json = boost::json;

std::string Principal::actor() const {
  switch (kind) {
    case Kind::kPlatformAdmin:
      return "admin:" + key_id;
    case Kind::kTenant:
      return "tenant:" + tenant + "/" + key_id;
    case Kind::kAnonymous:
      break;
  }
  return "anonymous";
}

std::string_view Request::header(std::string_view name) const {
  for (const auto& [key, value] : headers) {
    if (key.size() == name.size() && ::strncasecmp(key.data(), name.data(), name.size()) == 0) {
      return value;
    }
  }
  return {};
}

std::optional<std::string> Request::query_param(std::string_view name) const {
  std::string_view rest = query;
  while (!rest.empty()) {
    size_t amp = rest.find('&');
    std::string_view pair = rest.substr(0, amp);
    rest = amp == std::string_view::npos ? std::string_view{} : rest.substr(amp + 1);
    size_t eq = pair.find('=');
    auto key = percent_decode(pair.substr(0, eq), true);
    if (key && *key == name) {
      if (eq == std::string_view::npos) return std::string();
      return percent_decode(pair.substr(eq + 1), true);
    }
  }
  return std::nullopt;
}

std::string_view Request::param(std::string_view name) const {
  for (const auto& [key, value] : path_params) {
    if (key == name) return value;
  }
  return {};
}

Response Response::json(int status, const json::value& value) {
  Response response;
  response.status = status;
  response.body = json::serialize(value);
  return response;
}

Response Response::text(int status, std::string body, std::string content_type) {
  Response response;
  response.status = status;
  response.body = std::move(body);
  response.content_type = std::move(content_type);
  return response;
}

Response Response::file(std::string path, std::string content_type) {
  Response response;
  response.body_file = std::move(path);
  response.content_type = std::move(content_type);
  return response;
}

Response Response::streamed(std::shared_ptr<ResponseStream> stream) {
  Response response;
  response.stream = std::move(stream);
  return response;
}

void ResponseStream::begin(int status, std::string content_type, Headers headers) {
  std::function<void()> notify;
  {
    std::lock_guard lock(mutex_);
    if (pending_.began || head_taken_) return;
    pending_.began = true;
    pending_.status = status;
    pending_.content_type = std::move(content_type);
    pending_.headers = std::move(headers);
    notify = notify_;
  }
  if (notify) notify();
}

void ResponseStream::write(std::string piece) {
  if (piece.empty()) return;
  std::function<void()> notify;
  {
    std::lock_guard lock(mutex_);
    if (cancelled_ || pending_.ended) return;
    pending_.data += piece;
    notify = notify_;
  }
  if (notify) notify();
}

void ResponseStream::end() {
  std::function<void()> notify;
  {
    std::lock_guard lock(mutex_);
    if (pending_.ended) return;
    pending_.ended = true;
    notify = notify_;
  }
  if (notify) notify();
}

void ResponseStream::respond(const Response& response) {
  begin(response.status, response.content_type, response.headers);
  write(response.body);
  end();
}

void ResponseStream::fail(const Status& status) { respond(Response::error(status)); }

bool ResponseStream::cancelled() const {
  std::lock_guard lock(mutex_);
  return cancelled_;
}

void ResponseStream::on_cancel(std::function<void()> callback) {
  {
    std::lock_guard lock(mutex_);
    if (!cancelled_) {
      on_cancel_ = std::move(callback);
      return;
    }
  }
  callback();
}

void ResponseStream::set_notify(std::function<void()> notify) {
  {
    std::lock_guard lock(mutex_);
    notify_ = notify;
  }
  notify();  // whatever came before the server looked
}

ResponseStream::Pending ResponseStream::take() {
  std::lock_guard lock(mutex_);
  Pending out;
  out.began = pending_.began && !head_taken_;
  if (out.began) {
    head_taken_ = true;
    out.status = pending_.status;
    out.content_type = std::move(pending_.content_type);
    out.headers = std::move(pending_.headers);
  }
  if (head_taken_) {
    out.data = std::move(pending_.data);
    pending_.data.clear();
    out.ended = pending_.ended;
  }
  return out;
}

void ResponseStream::cancel() {
  std::function<void()> callback;
  {
    std::lock_guard lock(mutex_);
    if (cancelled_) return;
    cancelled_ = true;
    notify_ = nullptr;
    callback = std::exchange(on_cancel_, nullptr);
  }
  if (callback) callback();
}

Status set_request_line(Request& request, std::string_view method, std::string_view target) {
  request.method = std::string(method);
  request.target = std::string(target);
  if (!request.target.starts_with('/')) {
    return invalid_argument("the request target must be an absolute path");
  }
  const size_t q = request.target.find('?');
  request.path = request.target.substr(0, q);
  request.query = q == std::string::npos ? std::string() : request.target.substr(q + 1);
  return {};
}

Response Response::error(const Status& status) {
  // The store's own messages (its SQL, its files) are for the operator's log: a client learns
  // what it can act on, and a constraint the store caught is our bug, answered as one.
  if (status.message().starts_with("store: ")) {
    spdlog::error("{}", status.to_string());
    switch (status.code()) {
      case Code::kUnavailable:
        return error(unavailable("the platform's store is busy; try again"));
      case Code::kResourceExhausted:
        return error(unavailable("the platform's storage is full; try again later"));
      default:
        return error(internal_error("the platform's store failed"));
    }
  }
  json::object error{
      {"type", openai_error_type(status.code())},
      {"code", code_name(status.code())},
      {"message", status.message()},
      {"param", status.param().empty() ? json::value(nullptr) : json::value(status.param())},
  };
  return json(http_status(status.code()), json::object{{"error", std::move(error)}});
}

Response list_response(json::array data, bool has_more) {
  auto id_at = [&](size_t i) -> json::value {
    const json::object* item = data.at(i).if_object();
    const json::value* id = item ? item->if_contains("id") : nullptr;
    return id ? *id : json::value(nullptr);
  };
  json::value first = data.empty() ? json::value(nullptr) : id_at(0);
  json::value last = data.empty() ? json::value(nullptr) : id_at(data.size() - 1);
  return Response::json(200, json::object{{"object", "list"},
                                          {"data", std::move(data)},
                                          {"has_more", has_more},
                                          {"first_id", std::move(first)},
                                          {"last_id", std::move(last)}});
}

Result<json::object> parse_json_object(const Request& request) {
  std::string_view type = request.header("content-type");
  if (!type.empty() && type.substr(0, 16) != "application/json") {
    return invalid_argument(fmt::format("Content-Type must be application/json, not '{}'", type));
  }
  if (request.body.empty()) return invalid_argument("the request body must be a JSON object");
  boost::system::error_code ec;
  json::parse_options options;
  options.max_depth = 64;
  json::value value = json::parse(request.body, ec, {}, options);
  if (ec) {
    return invalid_argument(fmt::format("malformed JSON in the request body: {}", ec.message()));
  }
  if (!value.is_object()) return invalid_argument("the request body must be a JSON object");
  return std::move(value.as_object());
}

Result<PageRequest> parse_page(const Request& request, int64_t def, int64_t max) {
  PageRequest page{def, {}};
  if (auto limit = request.query_param("limit")) {
    int64_t n = 0;
    auto [ptr, ec] = std::from_chars(limit->data(), limit->data() + limit->size(), n);
    if (ec != std::errc() || ptr != limit->data() + limit->size() || n < 1 || n > max) {
      return invalid_argument(fmt::format("limit must be an integer from 1 to {}", max), "limit");
    }
    page.limit = n;
  }
  if (auto after = request.query_param("after")) page.after = *after;
  return page;
}

std::optional<std::string> percent_decode(std::string_view in, bool plus_is_space) {
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::string out;
  out.reserve(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    char c = in[i];
    if (c == '%') {
      if (i + 2 >= in.size()) return std::nullopt;
      int hi = hex(in[i + 1]), lo = hex(in[i + 2]);
      if (hi < 0 || lo < 0) return std::nullopt;
      out += static_cast<char>(hi * 16 + lo);
      i += 2;
    } else if (c == '+' && plus_is_space) {
      out += ' ';
    } else {
      out += c;
    }
  }
  return out;
}

}  // namespace mh::http
