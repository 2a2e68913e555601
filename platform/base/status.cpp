#include "platform/base/status.h"

#include <array>

namespace mh {
namespace {

struct CodeInfo {
  Code code;
  std::string_view name;
  int http_status;
  std::string_view openai_type;
};

// The single mapping from codes to HTTP statuses, wire names and OpenAI error types.
constexpr std::array kCodeTable{
    CodeInfo{Code::kOk, "ok", 200, ""},
    CodeInfo{Code::kInvalidArgument, "invalid_argument", 400, "invalid_request_error"},
    CodeInfo{Code::kUnauthenticated, "unauthenticated", 401, "authentication_error"},
    CodeInfo{Code::kPermissionDenied, "permission_denied", 403, "permission_error"},
    CodeInfo{Code::kNotFound, "not_found", 404, "not_found_error"},
    CodeInfo{Code::kConflict, "conflict", 409, "conflict_error"},
    CodeInfo{Code::kPayloadTooLarge, "payload_too_large", 413, "invalid_request_error"},
    CodeInfo{Code::kFailedPrecondition, "failed_precondition", 422, "invalid_request_error"},
    CodeInfo{Code::kResourceExhausted, "resource_exhausted", 429, "rate_limit_error"},
    CodeInfo{Code::kUnavailable, "unavailable", 503, "server_error"},
    CodeInfo{Code::kDeadlineExceeded, "deadline_exceeded", 504, "server_error"},
    CodeInfo{Code::kInternal, "internal", 500, "server_error"},
    CodeInfo{Code::kMethodNotAllowed, "method_not_allowed", 405, "invalid_request_error"},
    CodeInfo{Code::kUnimplemented, "unimplemented", 501, "server_error"},
    CodeInfo{Code::kCancelled, "cancelled", 499, "server_error"},
};

const CodeInfo& info(Code code) {
  for (const auto& entry : kCodeTable) {
    if (entry.code == code) return entry;
  }
  return kCodeTable[static_cast<size_t>(Code::kInternal)];
}

}  // namespace

std::string_view code_name(Code code) { return info(code).name; }
int http_status(Code code) { return info(code).http_status; }
std::string_view openai_error_type(Code code) { return info(code).openai_type; }

std::optional<Code> code_from_name(std::string_view name) {
  for (const auto& entry : kCodeTable) {
    if (entry.name == name) return entry.code;
  }
  return std::nullopt;
}

Code code_from_http_status(int status) {
  if (status >= 200 && status < 300) return Code::kOk;
  for (const auto& entry : kCodeTable) {
    if (entry.http_status == status) return entry.code;
  }
  switch (status) {
    case 408:
      return Code::kDeadlineExceeded;
    case 431:
      return Code::kPayloadTooLarge;
    case 502:
      return Code::kUnavailable;
    default:
      return status >= 500 ? Code::kInternal : Code::kInvalidArgument;
  }
}

std::string Status::to_string() const {
  if (ok()) return "ok";
  std::string out(code_name(code_));
  out += ": ";
  out += message_;
  return out;
}

}  // namespace mh
