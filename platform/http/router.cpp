#include "platform/http/router.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <exception>
#include <mutex>
#include <unordered_map>

namespace mh::http {
namespace {

std::vector<std::string_view> split_path(std::string_view path) {
  std::vector<std::string_view> out;
  size_t start = 1;  // paths begin with '/'
  while (start <= path.size()) {
    size_t slash = path.find('/', start);
    if (slash == std::string_view::npos) slash = path.size();
    out.push_back(path.substr(start, slash - start));
    start = slash + 1;
  }
  return out;
}

void log_failure(const Request& request, std::string_view what) {
  spdlog::error("request {}: {} {} failed: {}", request.request_id, request.method, request.path,
                what);
}

Response internal_response(const Request& request) {
  return Response::error(internal_error(
      fmt::format("internal error; quote request id {} when reporting it", request.request_id)));
}

// An internal error's message may name the server's files: it goes to the log, and the client
// gets the request id to quote.
Response conceal_internal(const Request& request, Response response) {
  if (response.status != 500) return response;
  log_failure(request, response.body);
  return internal_response(request);
}

}  // namespace

void Router::add_upload(std::string method, std::string pattern, Access access,
                        UploadHandler handler) {
  add(std::move(method), std::move(pattern), access, nullptr);
  routes_.back().upload = std::move(handler);
}

bool Router::is_upload(const Request& request) const {
  Request probe;
  probe.method = request.method;
  probe.path = request.path;
  std::string allow;
  const Route* route = match(probe, &allow);
  return route != nullptr && route->upload != nullptr;
}

std::optional<Response> Router::begin_upload(Request& request, std::string_view* route_label,
                                             std::unique_ptr<BodySink>* sink) const {
  std::string allow;
  const Route* route = match(request, &allow);
  if (route == nullptr || !route->upload) {
    *route_label = "unmatched";
    return Response::error(internal_error("not an upload route"));
  }
  *route_label = route->pattern;
  std::optional<Response> refused;
  authenticate(*route, request, true, &refused);
  if (refused) return refused;
  try {
    auto created = route->upload(request);
    if (!created.ok()) return Response::error(created.status());
    *sink = std::move(*created);
    return std::nullopt;
  } catch (const std::exception& e) {
    log_failure(request, e.what());
  }
  return internal_response(request);
}

struct Router::InFlight {
  size_t limit = 0;
  std::mutex mutex;
  std::unordered_map<std::string, size_t> by_tenant;
};

void Router::set_tenant_in_flight_limit(size_t limit) {
  if (limit == 0) {
    in_flight_.reset();
    return;
  }
  in_flight_ = std::make_shared<InFlight>();
  in_flight_->limit = limit;
}

bool Router::authenticate(const Route& route, Request& request, bool may_block,
                          std::optional<Response>* refused) const {
  if (route.access.kind == Access::Kind::kPublic || request.authenticated) return true;
  if (!authenticator_) {
    *refused = Response::error(internal_error("no authenticator configured"));
    return true;
  }
  std::optional<Result<Principal>> decided = authenticator_(request, route.access, may_block);
  if (!decided) {
    if (may_block) *refused = Response::error(internal_error("the authenticator did not decide"));
    return may_block;
  }
  Result<Principal>& principal = *decided;
  if (!principal.ok()) {
    Response response = Response::error(principal.status());
    if (principal.status().code() == Code::kResourceExhausted) {
      response.headers.emplace_back("Retry-After", principal.status().param());
      response.body =
          Response::error({Code::kResourceExhausted, principal.status().message()}).body;
    }
    *refused = std::move(response);
    return true;
  }
  request.principal = std::move(*principal);
  request.authenticated = true;
  if (in_flight_ && request.principal.kind == Principal::Kind::kTenant) {
    const std::string& tenant = request.principal.tenant;
    std::lock_guard lock(in_flight_->mutex);
    size_t& count = in_flight_->by_tenant[tenant];
    if (count >= in_flight_->limit) {
      Response response = Response::error(
          {Code::kResourceExhausted,
           fmt::format("tenant {} has {} requests in flight, the most one tenant may have at once; "
                       "retry when one has finished",
                       tenant, count)});
      response.headers.emplace_back("Retry-After", "1");
      *refused = std::move(response);
      return true;
    }
    ++count;
    // The place goes back when the request is dropped, whichever thread drops it.
    std::shared_ptr<InFlight> shared = in_flight_;
    request.in_flight = std::shared_ptr<void>(nullptr, [shared, tenant](void*) {
      std::lock_guard lock(shared->mutex);
      auto it = shared->by_tenant.find(tenant);
      if (it != shared->by_tenant.end() && --it->second == 0) shared->by_tenant.erase(it);
    });
  }
  return true;
}

void Router::add(std::string method, std::string pattern, Access access, Handler handler,
                 Runs runs) {
  Route route{std::move(method), pattern, {}, access, std::move(handler), nullptr, runs};
  bool literal = true;
  for (std::string_view segment : split_path(pattern)) {
    route.segments.emplace_back(segment);
    if (segment.starts_with('{')) literal = false;
  }
  if (literal) literal_[pattern].push_back(routes_.size());
  routes_.push_back(std::move(route));
}

bool Router::match_segments(const Route& route, std::string_view path,
                            std::vector<std::pair<std::string, std::string>>* params) {
  std::vector<std::string_view> parts = split_path(path);
  if (parts.size() != route.segments.size()) return false;
  std::vector<std::pair<std::string, std::string>> found;
  for (size_t i = 0; i < parts.size(); ++i) {
    const std::string& want = route.segments[i];
    if (want.starts_with('{')) {
      auto value = percent_decode(parts[i], false);
      if (!value || value->empty()) return false;
      found.emplace_back(want.substr(1, want.size() - 2), std::move(*value));
    } else if (want != parts[i]) {
      return false;
    }
  }
  if (params != nullptr) *params = std::move(found);
  return true;
}

const Router::Route* Router::match(Request& request, std::string* allow) const {
  auto note_allowed = [&](const Route& route) {
    if (!allow->empty()) *allow += ", ";
    *allow += route.method;
  };
  if (auto it = literal_.find(request.path); it != literal_.end()) {
    for (size_t index : it->second) {
      const Route& route = routes_[index];
      if (route.method == request.method) return &route;
      note_allowed(route);
    }
  }
  for (const Route& route : routes_) {
    if (literal_.contains(route.pattern)) continue;
    std::vector<std::pair<std::string, std::string>> params;
    if (!match_segments(route, request.path, &params)) continue;
    if (route.method == request.method) {
      request.path_params = std::move(params);
      return &route;
    }
    note_allowed(route);
  }
  return nullptr;
}

const Router::Route* Router::find(Request& request, std::string_view* route_label,
                                  Response* answer) const {
  std::string allow;
  const Route* route = match(request, &allow);
  if (route == nullptr) {
    *route_label = "unmatched";
    if (!allow.empty()) {
      *answer = Response::error(
          {Code::kMethodNotAllowed, fmt::format("{} is not allowed on {}; allowed: {}",
                                                request.method, request.path, allow)});
      answer->headers.emplace_back("Allow", allow);
    } else {
      *answer = Response::error(
          not_found(fmt::format("no route for {} {}", request.method, request.path)));
    }
    return nullptr;
  }
  *route_label = route->pattern;
  return route;
}

Response Router::dispatch(Request& request, std::string_view* route_label) const {
  Response answer;
  const Route* route = find(request, route_label, &answer);
  if (route == nullptr) return answer;
  if (route->upload) {
    return Response::error(internal_error("an upload route was dispatched without its body"));
  }
  std::optional<Response> refused;
  authenticate(*route, request, true, &refused);
  if (refused) return std::move(*refused);
  return run(*route, request);
}

std::optional<Response> Router::dispatch_inline(Request& request,
                                                std::string_view* route_label) const {
  Response answer;
  const Route* route = find(request, route_label, &answer);
  if (route == nullptr) return answer;
  std::optional<Response> refused;
  const bool decided = authenticate(*route, request, false, &refused);
  if (refused) return refused;
  if (!decided || route->upload || route->runs != Runs::kInline) return std::nullopt;
  return run(*route, request);
}

Response Router::run(const Route& route, Request& request) const {
  try {
    return conceal_internal(request, route.handler(request));
  } catch (const std::exception& e) {
    log_failure(request, e.what());
  }
  return internal_response(request);
}

Later answer_later(const Request& request) {
  auto stream = std::make_shared<ResponseStream>();
  Request about;  // what conceal_internal() needs of it, without the body
  about.method = request.method;
  about.path = request.path;
  about.request_id = request.request_id;
  return {Response::streamed(stream), [stream, about = std::move(about)](Response response) {
            stream->respond(conceal_internal(about, std::move(response)));
          }};
}

}  // namespace mh::http
