#include "platform/http/http.h"

#include <doctest/doctest.h>

#include <boost/json.hpp>

namespace mh::http {
namespace {

TEST_CASE("percent_decode decodes escapes and rejects malformed ones") {
  CHECK(percent_decode("a%20b", false) == "a b");
  CHECK(percent_decode("a+b", true) == "a b");
  CHECK(percent_decode("a+b", false) == "a+b");
  CHECK(percent_decode("%e2%82%AC", false) == "\xe2\x82\xac");
  CHECK_FALSE(percent_decode("%", false).has_value());
  CHECK_FALSE(percent_decode("%2", false).has_value());
  CHECK_FALSE(percent_decode("%zz", false).has_value());
  CHECK_FALSE(percent_decode("ab%4", false).has_value());
}

TEST_CASE("headers are case-insensitive and query parameters decoded") {
  Request r;
  r.headers = {{"Content-Type", "application/json"}, {"X-Thing", "1"}};
  r.query = "limit=5&after=file%2D1&flag&q=a+b";
  CHECK(r.header("content-type") == "application/json");
  CHECK(r.header("x-thing") == "1");
  CHECK(r.header("missing").empty());
  CHECK(r.query_param("limit") == "5");
  CHECK(r.query_param("after") == "file-1");
  CHECK(r.query_param("flag") == "");
  CHECK(r.query_param("q") == "a b");
  CHECK_FALSE(r.query_param("nope").has_value());
}

TEST_CASE("the error envelope has type, code, message and param") {
  Response response = Response::error(invalid_argument("name is too long", "name"));
  CHECK(response.status == 400);
  auto body = boost::json::parse(response.body).as_object();
  auto& error = body.at("error").as_object();
  CHECK(error.at("type") == "invalid_request_error");
  CHECK(error.at("code") == "invalid_argument");
  CHECK(error.at("message") == "name is too long");
  CHECK(error.at("param") == "name");
  auto no_param = boost::json::parse(Response::error(not_found("x")).body).as_object();
  CHECK(no_param.at("error").as_object().at("param").is_null());
}

TEST_CASE("JSON bodies: malformed, wrong type and wrong content type are 400s") {
  Request r;
  r.headers = {{"Content-Type", "application/json; charset=utf-8"}};
  r.body = R"({"name":"x"})";
  CHECK(parse_json_object(r).ok());
  for (const char* bad : {"{bad", "[1,2]", "\"str\"", "", "{\"a\":1} trailing"}) {
    CAPTURE(bad);
    r.body = bad;
    CHECK(parse_json_object(r).status().code() == Code::kInvalidArgument);
  }
  r.body = std::string(100, '[') + std::string(100, ']');
  CHECK(parse_json_object(r).status().code() == Code::kInvalidArgument);  // too deep
  r.headers = {{"Content-Type", "text/plain"}};
  r.body = "{}";
  CHECK(parse_json_object(r).status().message().find("application/json") != std::string::npos);
}

TEST_CASE("pagination: limit bounds and the after cursor") {
  Request r;
  CHECK(parse_page(r)->limit == 20);
  r.query = "limit=100&after=akey_1";
  CHECK(parse_page(r)->limit == 100);
  CHECK(parse_page(r)->after == "akey_1");
  for (const char* q : {"limit=0", "limit=101", "limit=-1", "limit=abc", "limit=5x", "limit="}) {
    CAPTURE(q);
    r.query = q;
    auto page = parse_page(r);
    CHECK(page.status().code() == Code::kInvalidArgument);
    CHECK(page.status().param() == "limit");
  }
}

}  // namespace
}  // namespace mh::http
