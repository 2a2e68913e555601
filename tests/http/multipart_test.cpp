#include "platform/http/multipart.h"

#include <doctest/doctest.h>

#include <vector>

namespace mh::http {
namespace {

struct Collected {
  std::vector<PartHeaders> parts;
  std::vector<std::string> bodies;
  int ended = 0;
};

MultipartParser parser_for(Collected& c, std::string boundary = "XyZ") {
  return MultipartParser(boundary, {
                                       [&](const PartHeaders& h) {
                                         c.parts.push_back(h);
                                         c.bodies.emplace_back();
                                         return Status();
                                       },
                                       [&](std::string_view d) {
                                         c.bodies.back().append(d);
                                         return Status();
                                       },
                                       [&]() {
                                         ++c.ended;
                                         return Status();
                                       },
                                   });
}

const std::string kBody =
    "--XyZ\r\n"
    "Content-Disposition: form-data; name=\"purpose\"\r\n\r\n"
    "fine-tune\r\n"
    "--XyZ\r\n"
    "Content-Disposition: form-data; name=\"file\"; filename=\"train data.jsonl\"\r\n"
    "Content-Type: application/jsonl\r\n\r\n"
    "{\"text\":\"a\"}\r\n{\"text\":\"--XyZ is not a boundary mid-line\"}\r\n"
    "--XyZ--\r\n";

TEST_CASE("multipart parts arrive whole, whatever the chunk sizes") {
  for (size_t chunk : {size_t{1}, size_t{2}, size_t{3}, size_t{7}, size_t{64}, kBody.size()}) {
    CAPTURE(chunk);
    Collected c;
    MultipartParser p = parser_for(c);
    for (size_t i = 0; i < kBody.size(); i += chunk) {
      REQUIRE(p.feed(std::string_view(kBody).substr(i, chunk)).ok());
    }
    REQUIRE(p.finish().ok());
    REQUIRE(c.parts.size() == 2);
    CHECK(c.parts[0].name == "purpose");
    CHECK(c.bodies[0] == "fine-tune");
    CHECK(c.parts[1].name == "file");
    CHECK(c.parts[1].filename == "train data.jsonl");
    CHECK(c.parts[1].content_type == "application/jsonl");
    CHECK(c.bodies[1] == "{\"text\":\"a\"}\r\n{\"text\":\"--XyZ is not a boundary mid-line\"}");
    CHECK(c.ended == 2);
  }
}

TEST_CASE("boundaries come from the Content-Type header") {
  CHECK(MultipartParser::boundary_of("multipart/form-data; boundary=abc").value() == "abc");
  CHECK(MultipartParser::boundary_of("multipart/form-data; boundary=\"a b\"").value() == "a b");
  CHECK_FALSE(MultipartParser::boundary_of("application/json").ok());
  CHECK_FALSE(MultipartParser::boundary_of("multipart/form-data").ok());
  CHECK_FALSE(
      MultipartParser::boundary_of("multipart/form-data; boundary=" + std::string(71, 'x')).ok());
}

TEST_CASE("malformed bodies are refused: truncated, no parts, bad headers, handler errors") {
  auto outcome = [](const std::string& body) {
    Collected c;
    MultipartParser p = parser_for(c);
    Status s = p.feed(body);
    if (s.ok()) s = p.finish();
    return s;
  };
  CHECK(outcome(kBody.substr(0, kBody.size() - 9)).message().find("before its closing") !=
        std::string::npos);
  CHECK_FALSE(outcome("--XyZ--\r\n").ok());
  CHECK_FALSE(outcome("--XyZ\r\nno colon here\r\n\r\nx\r\n--XyZ--\r\n").ok());
  CHECK_FALSE(outcome("--XyZ\r\nContent-Disposition: form-data\r\n\r\nx\r\n--XyZ--\r\n").ok());
  CHECK_FALSE(outcome(std::string(20000, 'x')).ok());
  Collected c;
  MultipartParser failing("XyZ", {[](const PartHeaders&) { return Status(); },
                                  [](std::string_view) { return invalid_argument("nope"); },
                                  []() { return Status(); }});
  CHECK(failing.feed(kBody).message() == "nope");
  CHECK(failing.feed("more").message() == "nope");  // sticky
}

}  // namespace
}  // namespace mh::http
