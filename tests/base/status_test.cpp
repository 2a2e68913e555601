#include "platform/base/status.h"

#include <doctest/doctest.h>

#include "sdk/include/macrohard/macrohard.h"

namespace mh {
namespace {

Status fails() { return invalid_argument("bad 'x'", "x"); }
Status chained() {
  MH_TRY(fails());
  return internal_error("not reached");
}
Result<int> half(int n) {
  if (n % 2 != 0) return invalid_argument("odd");
  return n / 2;
}
Result<int> quarter(int n) {
  MH_ASSIGN_OR_RETURN(int h, half(n));
  MH_ASSIGN_OR_RETURN(int q, half(h));
  return q;
}

TEST_CASE("every code maps to one HTTP status and back") {
  CHECK(http_status(Code::kInvalidArgument) == 400);
  CHECK(http_status(Code::kUnauthenticated) == 401);
  CHECK(http_status(Code::kPermissionDenied) == 403);
  CHECK(http_status(Code::kNotFound) == 404);
  CHECK(http_status(Code::kMethodNotAllowed) == 405);
  CHECK(http_status(Code::kConflict) == 409);
  CHECK(http_status(Code::kPayloadTooLarge) == 413);
  CHECK(http_status(Code::kFailedPrecondition) == 422);
  CHECK(http_status(Code::kResourceExhausted) == 429);
  CHECK(http_status(Code::kInternal) == 500);
  CHECK(http_status(Code::kUnavailable) == 503);
  for (int c = 1; c <= static_cast<int>(Code::kCancelled); ++c) {
    Code code = static_cast<Code>(c);
    CAPTURE(c);
    CHECK(code_from_name(code_name(code)) == code);
    CHECK(code_from_http_status(http_status(code)) == code);
  }
  CHECK(code_from_http_status(204) == Code::kOk);
  CHECK(code_from_http_status(431) == Code::kPayloadTooLarge);
  CHECK(code_from_http_status(502) == Code::kUnavailable);
  CHECK_FALSE(code_from_name("no_such_code").has_value());
}

TEST_CASE("the C ABI's mh_code values are mh::Code's") {
  CHECK(static_cast<int>(Code::kNotFound) == MH_ERR_NOT_FOUND);
  CHECK(static_cast<int>(Code::kResourceExhausted) == MH_ERR_RESOURCE_EXHAUSTED);
  CHECK(static_cast<int>(Code::kCancelled) == MH_ERR_CANCELLED);
}

TEST_CASE("MH_TRY and MH_ASSIGN_OR_RETURN pass errors up unchanged") {
  Status s = chained();
  CHECK(s.code() == Code::kInvalidArgument);
  CHECK(s.param() == "x");
  CHECK(s.to_string() == "invalid_argument: bad 'x'");
  CHECK(quarter(12).value() == 3);
  CHECK(quarter(6).status().code() == Code::kInvalidArgument);
  CHECK(quarter(7).status().message() == "odd");
  CHECK(Result<int>(5).status().ok());
}

}  // namespace
}  // namespace mh
