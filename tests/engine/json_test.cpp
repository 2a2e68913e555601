// The engine's strict JSON reader: what RFC 8259 allows, and a clear error for what it does not.
#include "platform/engine/json.h"

#include <doctest/doctest.h>

namespace mh::engine {
namespace {

TEST_CASE("JSON: values, escapes and surrogate pairs parse, and output round-trips") {
  auto v =
      parse_json(R"( {"a":[1,-2.5e3,true,false,null],"s":"x\"\\\/\n\u00e9\ud83d\ude00","e":{}} )");
  REQUIRE(v.ok());
  const Json* a = v->find("a");
  REQUIRE(a != nullptr);
  REQUIRE(a->as_array().size() == 5);
  CHECK(a->as_array()[0].as_int() == 1);
  CHECK(a->as_array()[1].as_double() == -2500.0);
  CHECK(a->as_array()[2].as_bool());
  CHECK(a->as_array()[4].is_null());
  CHECK(v->find("s")->as_string() == "x\"\\/\n\xc3\xa9\xf0\x9f\x98\x80");
  auto again = parse_json(to_json(*v));
  REQUIRE(again.ok());
  CHECK(to_json(*again) == to_json(*v));
  CHECK(parse_json("9223372036854775807")->as_int() == INT64_MAX);
  CHECK(parse_json("9223372036854775808")->type() == Json::Type::kDouble);  // too big for int64
  CHECK(to_json(parse_json("-0E3").value()) == "-0.0");  // a double stays a double
}

TEST_CASE("JSON: malformed documents are refused with the byte at fault") {
  struct Case {
    const char* text;
    const char* says;
  };
  const Case cases[] = {
      {"", "expected a value at byte 0"},
      {"{\"a\":1,}", "expected a member name at byte 7"},
      {"[1 2]", "expected ',' or ']' at byte 3"},
      {"01", "expected end of document at byte 1"},
      {"1.", "digit after '.'"},
      {"\"a", "closing the string"},
      {"\"\x01\"", "no control character"},
      {"\"\xff\"", "valid UTF-8"},
      {"\"\xc0\xaf\"", "valid UTF-8"},           // overlong '/'
      {"\"\xed\xa0\x80\"", "valid UTF-8"},       // an encoded surrogate
      {"\"\\ud800\"", "low surrogate escape"},   // a lone high surrogate
      {"\"\\udc00\"", "high surrogate before"},  // a lone low surrogate
      {"\"\\q\"", "a valid escape"},
      {"{\"k\":1,\"k\":2}", "duplicate member \"k\""},
      {"1e999", "a number in range"},
      {"nul", "expected a value"},
      {"[1] x", "end of document"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.text);
    auto v = parse_json(c.text);
    REQUIRE_FALSE(v.ok());
    CHECK(v.status().code() == Code::kInvalidArgument);
    CHECK_MESSAGE(v.status().message().find(c.says) != std::string::npos, v.status().message());
  }
}

TEST_CASE("JSON: depth and size are bounded") {
  std::string deep(200, '[');
  deep += std::string(200, ']');
  auto v = parse_json(deep);
  REQUIRE_FALSE(v.ok());
  CHECK(v.status().message().find("deeper than 128") != std::string::npos);
  CHECK(parse_json(deep, {.max_depth = 300, .max_bytes = 1000}).ok());
  CHECK_FALSE(parse_json("[1,2,3]", {.max_depth = 8, .max_bytes = 4}).ok());
}

TEST_CASE("JSON: typed member reads name the member") {
  auto v = parse_json(R"({"n":3,"f":2.0,"x":2.5,"s":"t"})").value();
  CHECK(json_int(v, "n").value() == 3);
  CHECK(json_int(v, "f").value() == 2);
  CHECK(json_int(v, "x").status().message() == "\"x\" must be an integer");
  CHECK(json_int(v, "zz").status().message() == "missing \"zz\"");
  CHECK(json_string(v, "n").status().message() == "\"n\" must be a string");
  CHECK(json_number(v, "x").value() == 2.5);
}

}  // namespace
}  // namespace mh::engine
