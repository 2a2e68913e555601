// MultipartParser: a streaming multipart/form-data parser (RFC 7578). Bytes go in as they
// arrive, in chunks of any size; each part's headers are parsed and its body is handed to the
// handler in pieces, so a part of any size passes through in constant memory.
#pragma once

#include <functional>
#include <string>
#include <string_view>

#include "platform/base/status.h"

namespace mh::http {

struct PartHeaders {
  std::string name;          // from Content-Disposition: form-data; name="…"
  std::string filename;      // from filename="…", empty for plain fields
  std::string content_type;  // Content-Type of the part, if given
};

class MultipartParser {
 public:
  struct Handler {
    std::function<Status(const PartHeaders&)> begin_part;
    std::function<Status(std::string_view)> part_data;
    std::function<Status()> end_part;
  };

  // The boundary from a Content-Type header ("multipart/form-data; boundary=…"), or an error.
  static Result<std::string> boundary_of(std::string_view content_type);

  MultipartParser(std::string boundary, Handler handler);

  // Feeds the next bytes of the body. Errors (malformed body, or a handler's) are sticky.
  Status feed(std::string_view data);
  // Ends the body: an error unless the closing boundary was seen.
  Status finish();

 private:
  enum class State { kPreamble, kHeaders, kBody, kDone };
  Status parse_headers(std::string_view block);
  Status run();

  const std::string delimiter_;  // "\r\n--" + boundary
  Handler handler_;
  State state_ = State::kPreamble;
  std::string pending_;  // bytes not yet consumed (at most a delimiter's length in kBody)
  Status error_;
};

}  // namespace mh::http
