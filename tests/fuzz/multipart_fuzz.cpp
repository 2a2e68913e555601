// libFuzzer target: any bytes as a multipart/form-data upload body. The first byte sets the
// size of the pieces the body arrives in: the parser must see the same parts, headers and bytes
// whether the body comes whole or in pieces, and either both succeed or both fail.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "platform/http/multipart.h"

namespace {

struct Parse {
  std::string events;  // every part's headers and bytes, in order
  bool ok = true;
};

Parse parse(std::string_view body, size_t piece) {
  Parse out;
  mh::http::MultipartParser::Handler h;
  h.begin_part = [&](const mh::http::PartHeaders& p) {
    out.events += "[" + p.name + "|" + p.filename + "|" + p.content_type + "]";
    return mh::Status();
  };
  h.part_data = [&](std::string_view d) {
    out.events.append(d);
    return mh::Status();
  };
  h.end_part = [&] {
    out.events += "[end]";
    return mh::Status();
  };
  mh::http::MultipartParser parser("fuzzB0undary", h);
  for (size_t at = 0; at < body.size() && out.ok; at += piece) {
    out.ok = parser.feed(body.substr(at, piece)).ok();
  }
  if (out.ok) out.ok = parser.finish().ok();
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const size_t piece = 1 + data[0] % 64;
  std::string_view body(reinterpret_cast<const char*>(data) + 1, size - 1);
  const Parse whole = parse(body, body.size() + 1);
  const Parse pieces = parse(body, piece);
  if (whole.ok != pieces.ok) std::abort();
  if (whole.ok && whole.events != pieces.events) std::abort();
  (void)mh::http::MultipartParser::boundary_of(body);
  return 0;
}
