// libFuzzer target: any bytes as what a client sends on a connection. They go through the
// server's HTTP parser with its limits (Beast's, 16 KiB of header); a request that parses is
// taken as the server takes it (request line, headers) and routed, with its path parameters
// and query decoded, as every handler sees them.
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "platform/http/router.h"

namespace {

namespace http = boost::beast::http;

const mh::http::Router& router() {
  static const mh::http::Router r = [] {
    mh::http::Router router;
    auto echo = [](mh::http::Request& request) {
      std::string out = request.method + " " + request.path;
      for (const auto& [k, v] : request.path_params) out += " " + k + "=" + v;
      for (const char* key : {"limit", "after", "stream", ""}) {
        if (auto v = request.query_param(key)) out += " " + *v;
      }
      out += std::string(request.header("content-type"));
      return mh::http::Response::text(200, out);
    };
    for (const char* pattern : {"/v1/files", "/v1/files/{id}", "/v1/files/{id}/content",
                                "/v1/fine_tuning/jobs/{id}/events", "/v1/models/{model}"}) {
      router.add("GET", pattern, mh::http::Access::kPublic, echo);
      router.add("POST", pattern, mh::http::Access::kPublic, echo);
    }
    return router;
  }();
  return r;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  http::request_parser<http::string_body> parser;
  parser.header_limit(16 * 1024);
  parser.body_limit(1 << 20);
  parser.eager(true);
  boost::beast::error_code ec;
  size_t used = 0;
  while (used < size && !parser.is_done()) {
    const size_t n =
        parser.put(boost::asio::buffer(data + used, size - used), ec);
    if (ec == http::error::need_more) break;
    if (ec) return 0;
    if (n == 0) break;
    used += n;
  }
  if (!parser.is_header_done()) return 0;
  const auto& message = parser.get();
  mh::http::Request request;
  if (!mh::http::set_request_line(request, message.method_string(), message.target()).ok()) {
    return 0;
  }
  if (request.path.size() > request.target.size()) std::abort();
  for (const auto& field : message) {
    request.headers.emplace_back(std::string(field.name_string()), std::string(field.value()));
  }
  if (parser.is_done()) request.body = message.body();
  std::string_view route;
  const mh::http::Response response = router().dispatch(request, &route);
  if (response.status < 200 || response.status > 599) std::abort();
  return 0;
}
