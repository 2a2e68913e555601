// What the C ABI's implementation files share: the opaque structs behind macrohard.h's
// handles and the helpers that keep every entry point exception-free.
#pragma once

#include <fmt/format.h>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "licensing/license.h"
#include "sdk/include/macrohard/macrohard.h"
#include "sdk/src/http_client.h"
#include "sdk/src/seat.h"

struct mh_error {
  mh_code code;
  int http_status;
  std::string message;
  std::string request_id;
  std::string param;
};

struct mh_client_options {
  mh::sdk::ClientConfig config;
  bool has_url = false;
  std::string license_text;
  std::vector<std::string> trusted_keys;
  std::string instance;
};

struct mh_license {
  mh::licensing::License license;
  std::string status;
  std::vector<std::string> features;  // for access by index
};

struct mh_client {
  std::unique_ptr<mh::sdk::HttpClient> http;
  std::unique_ptr<mh_license> license;
  std::unique_ptr<mh::sdk::SeatKeeper> seat;  // set when a license is
  std::string seat_lease_id;                  // for mh_client_seat_lease_id's borrowed string
};

namespace mh::sdk::capi {

inline mh_error* make_error(const mh::Status& status, int http_status = 0,
                            std::string request_id = {}) {
  return new mh_error{static_cast<mh_code>(status.code()), http_status, status.message(),
                      std::move(request_id), status.param()};
}
inline mh_error* make_error(const CallError& error) {
  return make_error(error.status, error.http_status, error.request_id);
}
inline mh_error* null_argument(const char* name) {
  return make_error(mh::invalid_argument(fmt::format("{} must not be NULL", name)));
}

// Runs fn, turning any escaping exception into an internal error.
template <typename Fn>
inline mh_error* guarded(Fn&& fn) {
  try {
    return fn();
  } catch (const std::bad_alloc&) {
    return make_error({mh::Code::kResourceExhausted, "out of memory"});
  } catch (const std::exception& e) {
    return make_error(mh::internal_error(e.what()));
  } catch (...) {
    return make_error(mh::internal_error("unknown exception"));
  }
}

// Holds the client's seat, if it has a license, before a request that needs one.
inline mh_error* ensure_seat(mh_client* client) {
  if (!client->seat) return nullptr;
  auto lease = client->seat->ensure();
  if (auto* error = std::get_if<CallError>(&lease)) return make_error(*error);
  return nullptr;
}

inline char* copy_string(const std::string& s) {
  char* out = static_cast<char*>(std::malloc(s.size() + 1));
  if (out == nullptr) throw std::bad_alloc();
  std::memcpy(out, s.c_str(), s.size() + 1);
  return out;
}

}  // namespace mh::sdk::capi
