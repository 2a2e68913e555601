// Status and Result<T>: errors as values inside Macrohard. A Status carries a Code (which maps
// to one HTTP status and one wire name, see kCodeTable in status.cpp) and a message written for
// the person who has to act on it.
#pragma once

#include <cassert>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace mh {

// The numeric values are part of the SDK's C ABI (mh_code in macrohard.h): never renumber.
enum class Code : int {
  kOk = 0,
  kInvalidArgument = 1,     // 400: the request is malformed or a field is invalid
  kUnauthenticated = 2,     // 401: no key, or a key we do not know
  kPermissionDenied = 3,    // 403: license, feature or role forbids it
  kNotFound = 4,            // 404: missing, or another tenant's
  kConflict = 5,            // 409: state conflict, duplicate
  kPayloadTooLarge = 6,     // 413: body, header or upload over its limit
  kFailedPrecondition = 7,  // 422: well-formed but semantically refused
  kResourceExhausted = 8,   // 429: quota or rate limit
  kUnavailable = 9,         // 503: try again later
  kDeadlineExceeded = 10,   // 504 (server side) or a client timeout
  kInternal = 11,           // 500: a bug or an environment failure
  kMethodNotAllowed = 12,   // 405
  kUnimplemented = 13,      // 501
  kCancelled = 14,          // 499: the caller went away
};

// The wire name of a code ("invalid_argument"), used in the error envelope's "code" field.
std::string_view code_name(Code code);
// The inverse of code_name; nullopt for a name we do not know.
std::optional<Code> code_from_name(std::string_view name);
// The HTTP status a code is answered with.
int http_status(Code code);
// The code a bare HTTP status stands for, when a response carries no error envelope.
Code code_from_http_status(int status);
// OpenAI's error "type" for a code ("invalid_request_error", "authentication_error", ...).
std::string_view openai_error_type(Code code);

class [[nodiscard]] Status {
 public:
  Status() = default;  // OK
  Status(Code code, std::string message, std::string param = {})
      : code_(code), message_(std::move(message)), param_(std::move(param)) {}

  static Status ok_status() { return {}; }

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }
  // The request field the error is about ("messages[2].role"); empty when none.
  const std::string& param() const { return param_; }
  // "not_found: model 'x' does not exist"
  std::string to_string() const;

 private:
  Code code_ = Code::kOk;
  std::string message_;
  std::string param_;
};

inline Status invalid_argument(std::string message, std::string param = {}) {
  return {Code::kInvalidArgument, std::move(message), std::move(param)};
}
inline Status not_found(std::string message) { return {Code::kNotFound, std::move(message)}; }
inline Status internal_error(std::string message) { return {Code::kInternal, std::move(message)}; }
inline Status unavailable(std::string message) { return {Code::kUnavailable, std::move(message)}; }
inline Status unauthenticated(std::string message) {
  return {Code::kUnauthenticated, std::move(message)};
}
inline Status permission_denied(std::string message) {
  return {Code::kPermissionDenied, std::move(message)};
}
inline Status resource_exhausted(std::string message) {
  return {Code::kResourceExhausted, std::move(message)};
}
inline Status conflict(std::string message) { return {Code::kConflict, std::move(message)}; }
inline Status failed_precondition(std::string message) {
  return {Code::kFailedPrecondition, std::move(message)};
}

// A value or the Status that explains why there is none.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}        // NOLINT: implicit by design
  Result(Status status) : v_(std::move(status)) {  // NOLINT
    assert(!std::get<Status>(v_).ok() && "a Result's Status must be an error");
  }

  bool ok() const { return std::holds_alternative<T>(v_); }
  explicit operator bool() const { return ok(); }
  const Status& status() const {
    static const Status kOk;
    return ok() ? kOk : std::get<Status>(v_);
  }
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace mh

#define MH_CONCAT_INNER(a, b) a##b
#define MH_CONCAT(a, b) MH_CONCAT_INNER(a, b)

// Returns the Status of `expr` from the enclosing function when it is an error.
#define MH_TRY(expr)                                 \
  do {                                               \
    ::mh::Status mh_try_status_ = (expr);            \
    if (!mh_try_status_.ok()) return mh_try_status_; \
  } while (0)

// `MH_ASSIGN_OR_RETURN(auto x, f());` binds x to f()'s value, or returns its Status.
// It expands to several statements: never use it as the unbraced body of an if or a loop.
#define MH_ASSIGN_OR_RETURN(lhs, expr) \
  MH_ASSIGN_OR_RETURN_IMPL(MH_CONCAT(mh_result_, __LINE__), lhs, expr)
#define MH_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                             \
  if (!tmp.ok()) return tmp.status();            \
  lhs = std::move(tmp).value()
