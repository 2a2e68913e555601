// macrohard.hpp: the C++20 layer over macrohard.h. Header-only: it adds RAII ownership and
// exceptions on top of the C ABI and nothing else, so it never changes the ABI a program links.
//
//   macrohard::Client client(macrohard::ClientOptions().base_url("http://127.0.0.1:8080"));
//   macrohard::ServerInfo info = client.server_info();
//
// Every call that fails throws macrohard::Error, which carries the code, the HTTP status and
// the server's request id.
#pragma once

#include <macrohard/macrohard.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace macrohard {
inline namespace v1 {

enum class Code : int {
  ok = MH_OK,
  invalid_argument = MH_ERR_INVALID_ARGUMENT,
  unauthenticated = MH_ERR_UNAUTHENTICATED,
  permission_denied = MH_ERR_PERMISSION_DENIED,
  not_found = MH_ERR_NOT_FOUND,
  conflict = MH_ERR_CONFLICT,
  payload_too_large = MH_ERR_PAYLOAD_TOO_LARGE,
  failed_precondition = MH_ERR_FAILED_PRECONDITION,
  resource_exhausted = MH_ERR_RESOURCE_EXHAUSTED,
  unavailable = MH_ERR_UNAVAILABLE,
  deadline_exceeded = MH_ERR_DEADLINE_EXCEEDED,
  internal = MH_ERR_INTERNAL,
  method_not_allowed = MH_ERR_METHOD_NOT_ALLOWED,
  unimplemented = MH_ERR_UNIMPLEMENTED,
  cancelled = MH_ERR_CANCELLED,
};

class Error : public std::runtime_error {
 public:
  explicit Error(const mh_error* e)
      : std::runtime_error(mh_error_message(e)),
        code_(static_cast<Code>(mh_error_code(e))),
        http_status_(mh_error_http_status(e)),
        request_id_(mh_error_request_id(e)),
        param_(mh_error_param(e)) {}

  Code code() const noexcept { return code_; }
  // The code's stable name, "not_found".
  const char* code_name() const noexcept { return mh_code_name(static_cast<mh_code>(code_)); }
  int http_status() const noexcept { return http_status_; }
  const std::string& request_id() const noexcept { return request_id_; }
  const std::string& param() const noexcept { return param_; }

 private:
  Code code_;
  int http_status_;
  std::string request_id_;
  std::string param_;
};

namespace detail {
struct ErrorDeleter {
  void operator()(mh_error* e) const noexcept { mh_error_delete(e); }
};
// Throws the error, if any, after taking ownership of it.
inline void check(mh_error* raw) {
  std::unique_ptr<mh_error, ErrorDeleter> e(raw);
  if (e) throw Error(e.get());
}
template <auto Delete>
struct Deleter {
  template <typename T>
  void operator()(T* p) const noexcept {
    Delete(p);
  }
};
}  // namespace detail

// The library's version, and whether it suits a program compiled against this header.
inline std::string library_version() { return mh_library_version(); }
inline bool api_compatible() {
  return mh_api_compatible(MH_API_VERSION_MAJOR, MH_API_VERSION_MINOR) != 0;
}

class ClientOptions {
 public:
  ClientOptions() : p_(mh_client_options_new()) {
    if (!p_) throw std::bad_alloc();
  }
  ClientOptions& base_url(const std::string& url) {
    detail::check(mh_client_options_set_base_url(p_.get(), url.c_str()));
    return *this;
  }
  ClientOptions& api_key(const std::string& key) {
    detail::check(mh_client_options_set_api_key(p_.get(), key.c_str()));
    return *this;
  }
  ClientOptions& ca_file(const std::string& path) {
    detail::check(mh_client_options_set_ca_file(p_.get(), path.c_str()));
    return *this;
  }
  ClientOptions& verify_tls(bool verify) {
    detail::check(mh_client_options_set_verify_tls(p_.get(), verify ? 1 : 0));
    return *this;
  }
  ClientOptions& connect_timeout(std::chrono::milliseconds t) {
    detail::check(mh_client_options_set_connect_timeout_ms(p_.get(), t.count()));
    return *this;
  }
  ClientOptions& request_timeout(std::chrono::milliseconds t) {
    detail::check(mh_client_options_set_request_timeout_ms(p_.get(), t.count()));
    return *this;
  }
  ClientOptions& max_retries(int n) {
    detail::check(mh_client_options_set_max_retries(p_.get(), n));
    return *this;
  }
  ClientOptions& initial_backoff(std::chrono::milliseconds t) {
    detail::check(mh_client_options_set_initial_backoff_ms(p_.get(), t.count()));
    return *this;
  }
  ClientOptions& max_backoff(std::chrono::milliseconds t) {
    detail::check(mh_client_options_set_max_backoff_ms(p_.get(), t.count()));
    return *this;
  }
  // A license: verified offline when the client is made; the client then holds a seat of it.
  ClientOptions& license(const std::string& text) {
    detail::check(mh_client_options_set_license(p_.get(), text.c_str()));
    return *this;
  }
  // A trusted license-signing public key (the text of a .pub file).
  ClientOptions& trusted_key(const std::string& public_key_text) {
    detail::check(mh_client_options_add_trusted_key(p_.get(), public_key_text.c_str()));
    return *this;
  }
  ClientOptions& instance_name(const std::string& name) {
    detail::check(mh_client_options_set_instance_name(p_.get(), name.c_str()));
    return *this;
  }
  ClientOptions& user_agent(const std::string& product) {
    detail::check(mh_client_options_set_user_agent(p_.get(), product.c_str()));
    return *this;
  }
  const mh_client_options* get() const noexcept { return p_.get(); }

 private:
  std::unique_ptr<mh_client_options, detail::Deleter<mh_client_options_delete>> p_;
};

// What a verified license grants. Plain values: it outlives whatever it was read from.
struct LicenseInfo {
  std::string id, licensee, tenant, key_id;
  std::string status;  // "valid" or "in its grace period"
  int64_t issued_at = 0, not_before = 0, expires_at = 0, grace_seconds = 0;
  std::vector<std::string> features;
  std::vector<std::string> pools;  // empty: every pool
  int64_t max_gpus = 0, gpu_hours_per_month = 0, max_deployments = 0, max_model_params = 0,
          seats = 0;

  bool has_feature(std::string_view f) const {
    for (const auto& x : features) {
      if (x == f) return true;
    }
    return false;
  }
};

namespace detail {
inline LicenseInfo read_license(const mh_license* l) {
  LicenseInfo out{mh_license_id(l),
                  mh_license_licensee(l),
                  mh_license_tenant(l),
                  mh_license_key_id(l),
                  mh_license_status(l),
                  mh_license_issued_at(l),
                  mh_license_not_before(l),
                  mh_license_expires_at(l),
                  mh_license_grace_seconds(l),
                  {},
                  {},
                  mh_license_limit(l, "max_gpus"),
                  mh_license_limit(l, "gpu_hours_per_month"),
                  mh_license_limit(l, "max_deployments"),
                  mh_license_limit(l, "max_model_params"),
                  mh_license_limit(l, "seats")};
  for (size_t i = 0; i < mh_license_feature_count(l); ++i) {
    out.features.emplace_back(mh_license_feature(l, i));
  }
  for (size_t i = 0; i < mh_license_pool_count(l); ++i)
    out.pools.emplace_back(mh_license_pool(l, i));
  return out;
}
}  // namespace detail

// Verifies a license file offline against the built-in keys plus `public_keys` (.pub texts),
// at `now` (Unix seconds; 0: the current time). Throws Error naming the failed check.
inline LicenseInfo verify_license(const std::string& text,
                                  const std::vector<std::string>& public_keys = {},
                                  int64_t now = 0) {
  std::vector<const char*> keys;
  for (const auto& k : public_keys) keys.push_back(k.c_str());
  mh_license* raw = nullptr;
  detail::check(mh_license_verify(text.c_str(), keys.data(), keys.size(), now, &raw));
  std::unique_ptr<mh_license, detail::Deleter<mh_license_delete>> owned(raw);
  return detail::read_license(raw);
}

struct ServerInfo {
  std::string version;
  std::vector<std::string> api_versions;
  bool compatible = false;  // the server speaks this library's API version
};

struct Health {
  bool live = false;
  bool ready = false;
  std::string detail;  // why not ready
};

class Client {
 public:
  explicit Client(const ClientOptions& options) {
    mh_client* raw = nullptr;
    detail::check(mh_client_new(options.get(), &raw));
    p_.reset(raw);
  }

  ServerInfo server_info() {
    mh_server_info* raw = nullptr;
    detail::check(mh_client_server_info(p_.get(), &raw));
    std::unique_ptr<mh_server_info, detail::Deleter<mh_server_info_delete>> info(raw);
    ServerInfo out{mh_server_info_version(raw), {}, mh_server_info_compatible(raw) != 0};
    for (size_t i = 0; i < mh_server_info_api_version_count(raw); ++i) {
      out.api_versions.emplace_back(mh_server_info_api_version(raw, i));
    }
    return out;
  }

  Health health() {
    mh_health* raw = nullptr;
    detail::check(mh_client_health(p_.get(), &raw));
    std::unique_ptr<mh_health, detail::Deleter<mh_health_delete>> health(raw);
    return {mh_health_live(raw) != 0, mh_health_ready(raw) != 0, mh_health_detail(raw)};
  }

  // A JSON request to any path; returns the response body.
  std::string request_json(const std::string& method, const std::string& path,
                           const std::string& body = {}) {
    char* raw = nullptr;
    detail::check(mh_client_request_json(p_.get(), method.c_str(), path.c_str(),
                                         body.empty() ? nullptr : body.c_str(), &raw));
    std::unique_ptr<char, detail::Deleter<mh_free>> owned(raw);
    return std::string(raw);
  }

  // The client's verified license, if it was given one.
  std::optional<LicenseInfo> license() const {
    const mh_license* l = mh_client_license(p_.get());
    if (l == nullptr) return std::nullopt;
    return detail::read_license(l);
  }
  // The seat lease the client holds ("" when none).
  std::string seat_lease_id() { return mh_client_seat_lease_id(p_.get()); }

  mh_client* get() const noexcept { return p_.get(); }

 private:
  std::unique_ptr<mh_client, detail::Deleter<mh_client_delete>> p_;
};

}  // namespace v1
}  // namespace macrohard
