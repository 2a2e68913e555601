#include "platform/http/router.h"

#include <doctest/doctest.h>

#include <boost/json.hpp>
#include <functional>
#include <stdexcept>
#include <thread>
#include <vector>

namespace mh::http {
namespace {

Request make(std::string method, std::string path) {
  Request r;
  r.method = std::move(method);
  r.path = std::move(path);
  r.target = r.path;
  r.request_id = "req_test";
  return r;
}

Response echo(Request& r) {
  std::string out = r.method + " " + r.path;
  for (const auto& [k, v] : r.path_params) out += " " + k + "=" + v;
  return Response::text(200, out);
}

TEST_CASE("literal and parameter routes match — parameters are decoded") {
  Router router;
  router.add("GET", "/v1/files", Access::kPublic, echo);
  router.add("GET", "/v1/files/{id}", Access::kPublic, echo);
  router.add("GET", "/v1/files/{id}/content", Access::kPublic, echo);
  std::string_view route;

  Request list = make("GET", "/v1/files");
  CHECK(router.dispatch(list, &route).body == "GET /v1/files");
  CHECK(route == "/v1/files");

  Request one = make("GET", "/v1/files/file%2Dabc");
  CHECK(router.dispatch(one, &route).body == "GET /v1/files/file%2Dabc id=file-abc");
  CHECK(route == "/v1/files/{id}");

  Request content = make("GET", "/v1/files/f1/content");
  CHECK(router.dispatch(content, &route).body == "GET /v1/files/f1/content id=f1");

  for (const char* path : {"/v1/files/", "/v1/files/a/b", "/v1", "/", "/v1/files/%zz"}) {
    CAPTURE(path);
    Request r = make("GET", path);
    Response response = router.dispatch(r, &route);
    CHECK(response.status == 404);
    CHECK(route == "unmatched");
    CHECK(response.body.find(R"("code":"not_found")") != std::string::npos);
  }
}

TEST_CASE("a known path with another method answers 405 with Allow") {
  Router router;
  router.add("GET", "/v1/keys", Access::kPublic, echo);
  router.add("POST", "/v1/keys", Access::kPublic, echo);
  router.add("DELETE", "/v1/keys/{id}", Access::kPublic, echo);
  std::string_view route;
  Request put = make("PUT", "/v1/keys");
  Response response = router.dispatch(put, &route);
  CHECK(response.status == 405);
  REQUIRE(response.headers.size() == 1);
  CHECK(response.headers[0].first == "Allow");
  CHECK(response.headers[0].second == "GET, POST");
  Request get = make("GET", "/v1/keys/k1");
  CHECK(router.dispatch(get, &route).status == 405);
}

TEST_CASE("protected routes run the authenticator first — public ones never do") {
  Router router;
  int calls = 0;
  router.set_authenticator(
      [&](const Request& r, Access, bool) -> std::optional<Result<Principal>> {
        ++calls;
        if (r.header("authorization") == "Bearer good") {
          return Principal{Principal::Kind::kPlatformAdmin, "akey_1", {}, {}};
        }
        return unauthenticated("no");
      });
  router.add("GET", "/open", Access::kPublic, echo);
  router.add("GET", "/admin", Access::kAdmin,
             [](Request& r) { return Response::text(200, r.principal.key_id); });
  std::string_view route;
  Request open = make("GET", "/open");
  CHECK(router.dispatch(open, &route).status == 200);
  CHECK(calls == 0);
  Request denied = make("GET", "/admin");
  CHECK(router.dispatch(denied, &route).status == 401);
  Request allowed = make("GET", "/admin");
  allowed.headers.emplace_back("Authorization", "Bearer good");
  Response ok = router.dispatch(allowed, &route);
  CHECK(ok.status == 200);
  CHECK(ok.body == "akey_1");
  CHECK(calls == 2);
}

TEST_CASE("a handler that throws answers 500 naming the request id") {
  Router router;
  router.add("GET", "/boom", Access::kPublic,
             [](Request&) -> Response { throw std::runtime_error("kaboom"); });
  std::string_view route;
  Request r = make("GET", "/boom");
  Response response = router.dispatch(r, &route);
  CHECK(response.status == 500);
  CHECK(response.body.find("req_test") != std::string::npos);
  CHECK(response.body.find("kaboom") == std::string::npos);  // internals stay inside
}

TEST_CASE("internal and store errors reach the client without the server's paths or SQL") {
  Router router;
  router.add("GET", "/internal", Access::kPublic, [](Request&) {
    return Response::error(internal_error("reading /srv/macrohard/data/blobs/ab/abcd: EIO"));
  });
  router.add("DELETE", "/constraint", Access::kPublic, [](Request&) {
    return Response::error(
        Status(Code::kConflict, "store: executing statement: FOREIGN KEY constraint failed"));
  });
  router.add("GET", "/busy", Access::kPublic, [](Request&) {
    return Response::error(Status(Code::kUnavailable, "store: BEGIN IMMEDIATE: database is locked"));
  });
  std::string_view route;
  Request a = make("GET", "/internal");
  Response internal = router.dispatch(a, &route);
  CHECK(internal.status == 500);
  CHECK(internal.body.find("req_test") != std::string::npos);
  CHECK(internal.body.find("/srv/") == std::string::npos);
  Request b = make("DELETE", "/constraint");
  Response constraint = router.dispatch(b, &route);
  CHECK(constraint.status == 500);  // a constraint the store caught is a bug of ours, not a 409
  CHECK(constraint.body.find("FOREIGN KEY") == std::string::npos);
  CHECK(constraint.body.find("req_test") != std::string::npos);
  Request c = make("GET", "/busy");
  Response busy = router.dispatch(c, &route);
  CHECK(busy.status == 503);
  CHECK(busy.body.find("try again") != std::string::npos);
  CHECK(busy.body.find("BEGIN") == std::string::npos);
}

TEST_CASE("an answer given later, from another thread, is sent whole and concealed like any") {
  Router router;
  std::vector<std::function<void(Response)>> replies;
  router.add("POST", "/later/{what}", Access::kPublic, [&replies](Request& r) {
    Later later = answer_later(r);
    replies.push_back(std::move(later.reply));
    return std::move(later.response);
  });
  std::string_view route;
  Request a = make("POST", "/later/ok");
  Response ok = router.dispatch(a, &route);
  Request b = make("POST", "/later/broken");
  Response broken = router.dispatch(b, &route);
  REQUIRE(ok.stream);
  REQUIRE(broken.stream);
  CHECK_FALSE(ok.stream->take().began);  // nothing until the reply comes

  std::thread([&] {
    replies[0](Response::json(200, boost::json::object{{"id", "ftjob-1"}}));
    replies[1](Response::error(internal_error("reading /srv/macrohard/data/jobs: EIO")));
  }).join();
  ResponseStream::Pending sent = ok.stream->take();
  CHECK(sent.began);
  CHECK(sent.ended);
  CHECK(sent.status == 200);
  CHECK(sent.content_type == "application/json");
  CHECK(sent.data == R"({"id":"ftjob-1"})");
  ResponseStream::Pending concealed = broken.stream->take();
  CHECK(concealed.status == 500);
  CHECK(concealed.data.find("req_test") != std::string::npos);
  CHECK(concealed.data.find("/srv/") == std::string::npos);
}

}  // namespace
}  // namespace mh::http
