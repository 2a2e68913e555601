// The C ABI of macrohard.h over HttpClient. Every entry point catches exceptions: nothing
// crosses the boundary but return values and mh_error objects.
#include <fmt/format.h>
#include <boost/json.hpp>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "licensing/license.h"
#include "platform/base/time.h"
#include "platform/base/version.h"
#include "sdk/include/macrohard/macrohard.h"
#include "sdk/src/c_api_internal.h"
#include "sdk_trusted_keys.h"

namespace json = boost::json;
using mh::sdk::CallError;
using mh::sdk::HttpResponse;

struct mh_server_info {
  std::string version;
  std::vector<std::string> api_versions;
};

struct mh_health {
  bool live = false;
  bool ready = false;
  std::string detail;
};

static_assert(static_cast<int>(mh::Code::kCancelled) == MH_ERR_CANCELLED &&
                  static_cast<int>(mh::Code::kInvalidArgument) == MH_ERR_INVALID_ARGUMENT &&
                  static_cast<int>(mh::Code::kUnimplemented) == MH_ERR_UNIMPLEMENTED,
              "mh_code and mh::Code must keep the same values");

namespace {

using namespace mh::sdk::capi;

mh_error* set_duration(mh_client_options* options, std::chrono::milliseconds* field, int64_t ms,
                       const char* name) {
  if (options == nullptr) return null_argument("options");
  if (ms <= 0) return make_error(mh::invalid_argument(fmt::format("{} must be positive", name)));
  *field = std::chrono::milliseconds(ms);
  return nullptr;
}

// The keys built into this library plus the given ones.
mh::Result<mh::licensing::KeyRing> trusted_keys(const std::vector<std::string>& extra) {
  mh::licensing::KeyRing ring;
  std::vector<std::string> texts(std::begin(kEmbeddedTrustedKeys), std::end(kEmbeddedTrustedKeys));
  texts.insert(texts.end(), extra.begin(), extra.end());
  for (const std::string& text : texts) {
    if (text.empty()) continue;
    auto key = mh::licensing::parse_public_key(text);
    if (!key.ok()) return mh::invalid_argument("trusted key: " + key.status().message());
    MH_TRY(ring.add(std::move(*key)));
  }
  return ring;
}

mh::Result<std::unique_ptr<mh_license>> verify(const std::string& text,
                                               const std::vector<std::string>& keys, int64_t now) {
  MH_ASSIGN_OR_RETURN(auto ring, trusted_keys(keys));
  MH_ASSIGN_OR_RETURN(auto license, mh::licensing::verify_license(text, ring));
  if (now == 0) now = mh::unix_seconds();
  MH_TRY(mh::licensing::check_in_force(license.terms, now));
  auto out = std::make_unique<mh_license>();
  out->status = mh::licensing::standing_name(mh::licensing::standing_at(license.terms, now));
  out->features.assign(license.terms.features.begin(), license.terms.features.end());
  out->license = std::move(license);
  return out;
}

}  // namespace

extern "C" {

uint32_t mh_api_version(void) {
  return (uint32_t{MH_API_VERSION_MAJOR} << 16) | uint32_t{MH_API_VERSION_MINOR};
}

int mh_api_compatible(uint32_t major, uint32_t minor) {
  return major == MH_API_VERSION_MAJOR && minor <= MH_API_VERSION_MINOR ? 1 : 0;
}

const char* mh_library_version(void) { return MACROHARD_VERSION; }

mh_code mh_error_code(const mh_error* error) { return error ? error->code : MH_OK; }
int mh_error_http_status(const mh_error* error) { return error ? error->http_status : 0; }
const char* mh_error_message(const mh_error* error) { return error ? error->message.c_str() : ""; }
const char* mh_error_request_id(const mh_error* error) {
  return error ? error->request_id.c_str() : "";
}
const char* mh_error_param(const mh_error* error) { return error ? error->param.c_str() : ""; }
const char* mh_code_name(mh_code code) { return mh::code_name(static_cast<mh::Code>(code)).data(); }
void mh_error_delete(mh_error* error) { delete error; }
void mh_free(void* pointer) { std::free(pointer); }

mh_client_options* mh_client_options_new(void) {
  try {
    return new mh_client_options{};
  } catch (...) {
    return nullptr;
  }
}
void mh_client_options_delete(mh_client_options* options) { delete options; }

mh_error* mh_client_options_set_base_url(mh_client_options* options, const char* url) {
  return guarded([&]() -> mh_error* {
    if (options == nullptr) return null_argument("options");
    if (url == nullptr) return null_argument("url");
    mh::sdk::ClientConfig parsed = options->config;
    mh::Status status = mh::sdk::parse_base_url(url, &parsed);
    if (!status.ok()) return make_error(status);
    options->config = std::move(parsed);
    options->has_url = true;
    return nullptr;
  });
}

mh_error* mh_client_options_set_api_key(mh_client_options* options, const char* key) {
  return guarded([&]() -> mh_error* {
    if (options == nullptr) return null_argument("options");
    if (key == nullptr) return null_argument("key");
    for (const char* p = key; *p != '\0'; ++p) {
      if (static_cast<unsigned char>(*p) < 0x21 || *p == 0x7f) {
        return make_error(mh::invalid_argument("the API key holds a space or control character"));
      }
    }
    options->config.api_key = key;
    return nullptr;
  });
}

mh_error* mh_client_options_set_ca_file(mh_client_options* options, const char* path) {
  return guarded([&]() -> mh_error* {
    if (options == nullptr) return null_argument("options");
    if (path == nullptr) return null_argument("path");
    options->config.ca_file = path;
    return nullptr;
  });
}

mh_error* mh_client_options_set_verify_tls(mh_client_options* options, int verify) {
  if (options == nullptr) return null_argument("options");
  options->config.verify_tls = verify != 0;
  return nullptr;
}

mh_error* mh_client_options_set_connect_timeout_ms(mh_client_options* options, int64_t ms) {
  return set_duration(options, options ? &options->config.connect_timeout : nullptr, ms,
                      "connect timeout");
}
mh_error* mh_client_options_set_request_timeout_ms(mh_client_options* options, int64_t ms) {
  return set_duration(options, options ? &options->config.request_timeout : nullptr, ms,
                      "request timeout");
}
mh_error* mh_client_options_set_initial_backoff_ms(mh_client_options* options, int64_t ms) {
  return set_duration(options, options ? &options->config.initial_backoff : nullptr, ms,
                      "initial backoff");
}
mh_error* mh_client_options_set_max_backoff_ms(mh_client_options* options, int64_t ms) {
  return set_duration(options, options ? &options->config.max_backoff : nullptr, ms, "max backoff");
}

mh_error* mh_client_options_set_max_retries(mh_client_options* options, int retries) {
  if (options == nullptr) return null_argument("options");
  if (retries < 0 || retries > 100) {
    return make_error(mh::invalid_argument("max retries must be from 0 to 100"));
  }
  options->config.max_retries = retries;
  return nullptr;
}

mh_error* mh_client_options_set_user_agent(mh_client_options* options, const char* product) {
  return guarded([&]() -> mh_error* {
    if (options == nullptr) return null_argument("options");
    if (product == nullptr) return null_argument("product");
    options->config.user_agent = product;
    return nullptr;
  });
}

mh_error* mh_client_options_set_license(mh_client_options* options, const char* license_text) {
  return guarded([&]() -> mh_error* {
    if (options == nullptr) return null_argument("options");
    if (license_text == nullptr) return null_argument("license_text");
    options->license_text = license_text;
    return nullptr;
  });
}

mh_error* mh_client_options_add_trusted_key(mh_client_options* options,
                                            const char* public_key_text) {
  return guarded([&]() -> mh_error* {
    if (options == nullptr) return null_argument("options");
    if (public_key_text == nullptr) return null_argument("public_key_text");
    auto key = mh::licensing::parse_public_key(public_key_text);
    if (!key.ok()) return make_error(key.status());
    options->trusted_keys.emplace_back(public_key_text);
    return nullptr;
  });
}

mh_error* mh_client_options_set_instance_name(mh_client_options* options, const char* name) {
  return guarded([&]() -> mh_error* {
    if (options == nullptr) return null_argument("options");
    if (name == nullptr || *name == '\0' || std::strlen(name) > 200) {
      return make_error(mh::invalid_argument("the instance name must be 1 to 200 characters"));
    }
    options->instance = name;
    return nullptr;
  });
}

mh_error* mh_client_new(const mh_client_options* options, mh_client** out) {
  return guarded([&]() -> mh_error* {
    if (options == nullptr) return null_argument("options");
    if (out == nullptr) return null_argument("out");
    if (!options->has_url) {
      return make_error(mh::invalid_argument("set a base URL before creating a client"));
    }
    auto client = std::make_unique<mh_client>();
    client->http = std::make_unique<mh::sdk::HttpClient>(options->config);
    if (!options->license_text.empty()) {
      auto license = verify(options->license_text, options->trusted_keys, 0);
      if (!license.ok()) return make_error(license.status());
      client->license = std::move(*license);
      client->seat = std::make_unique<mh::sdk::SeatKeeper>(
          options->config, client->license->license.terms.id,
          options->instance.empty() ? mh::sdk::default_instance_name() : options->instance);
    }
    *out = client.release();
    return nullptr;
  });
}

void mh_client_delete(mh_client* client) { delete client; }

const mh_license* mh_client_license(const mh_client* client) {
  return client ? client->license.get() : nullptr;
}

const char* mh_client_seat_lease_id(mh_client* client) {
  if (client == nullptr || !client->seat) return "";
  client->seat_lease_id = client->seat->lease_id();
  return client->seat_lease_id.c_str();
}

mh_error* mh_license_verify(const char* license_text, const char* const* public_keys,
                            size_t public_key_count, int64_t now, mh_license** out) {
  return guarded([&]() -> mh_error* {
    if (license_text == nullptr) return null_argument("license_text");
    if (out == nullptr) return null_argument("out");
    if (public_key_count > 0 && public_keys == nullptr) return null_argument("public_keys");
    std::vector<std::string> keys;
    for (size_t i = 0; i < public_key_count; ++i) {
      if (public_keys[i] == nullptr) return null_argument("public_keys[i]");
      keys.emplace_back(public_keys[i]);
    }
    auto license = verify(license_text, keys, now);
    if (!license.ok()) return make_error(license.status());
    *out = license->release();
    return nullptr;
  });
}

const char* mh_license_id(const mh_license* l) { return l ? l->license.terms.id.c_str() : ""; }
const char* mh_license_licensee(const mh_license* l) {
  return l ? l->license.terms.licensee.c_str() : "";
}
const char* mh_license_tenant(const mh_license* l) {
  return l ? l->license.terms.tenant.c_str() : "";
}
const char* mh_license_key_id(const mh_license* l) { return l ? l->license.key_id.c_str() : ""; }
const char* mh_license_status(const mh_license* l) { return l ? l->status.c_str() : ""; }
int64_t mh_license_issued_at(const mh_license* l) { return l ? l->license.terms.issued_at : 0; }
int64_t mh_license_not_before(const mh_license* l) { return l ? l->license.terms.not_before : 0; }
int64_t mh_license_expires_at(const mh_license* l) { return l ? l->license.terms.expires_at : 0; }
int64_t mh_license_grace_seconds(const mh_license* l) {
  return l ? l->license.terms.grace_seconds : 0;
}
int mh_license_has_feature(const mh_license* l, const char* feature) {
  return l && feature && l->license.terms.has_feature(feature) ? 1 : 0;
}
size_t mh_license_feature_count(const mh_license* l) { return l ? l->features.size() : 0; }
const char* mh_license_feature(const mh_license* l, size_t index) {
  return l && index < l->features.size() ? l->features[index].c_str() : nullptr;
}
int64_t mh_license_limit(const mh_license* l, const char* name) {
  if (l == nullptr || name == nullptr) return -1;
  const auto& limits = l->license.terms.limits;
  std::string_view n(name);
  if (n == "max_gpus") return limits.max_gpus;
  if (n == "gpu_hours_per_month") return limits.gpu_hours_per_month;
  if (n == "max_deployments") return limits.max_deployments;
  if (n == "max_model_params") return limits.max_model_params;
  if (n == "seats") return limits.seats;
  return -1;
}
size_t mh_license_pool_count(const mh_license* l) { return l ? l->license.terms.pools.size() : 0; }
const char* mh_license_pool(const mh_license* l, size_t index) {
  return l && index < l->license.terms.pools.size() ? l->license.terms.pools[index].c_str()
                                                    : nullptr;
}
void mh_license_delete(mh_license* license) { delete license; }

mh_error* mh_client_server_info(mh_client* client, mh_server_info** out) {
  return guarded([&]() -> mh_error* {
    if (client == nullptr) return null_argument("client");
    if (out == nullptr) return null_argument("out");
    if (mh_error* seat = ensure_seat(client)) return seat;
    auto result = client->http->call("GET", "/v1/version");
    if (auto* error = std::get_if<CallError>(&result)) return make_error(*error);
    const auto& response = std::get<HttpResponse>(result);
    boost::system::error_code ec;
    json::value body = json::parse(response.body, ec);
    if (ec || !body.is_object()) {
      return make_error(mh::internal_error("GET /v1/version answered something that is not JSON"),
                        response.status, response.request_id);
    }
    auto info = std::make_unique<mh_server_info>();
    const auto& object = body.as_object();
    if (const auto* v = object.if_contains("version"); v && v->is_string()) {
      info->version = v->as_string();
    }
    if (const auto* list = object.if_contains("api_versions"); list && list->is_array()) {
      for (const auto& v : list->as_array()) {
        if (v.is_string()) info->api_versions.emplace_back(v.as_string());
      }
    }
    *out = info.release();
    return nullptr;
  });
}

const char* mh_server_info_version(const mh_server_info* info) {
  return info ? info->version.c_str() : "";
}
size_t mh_server_info_api_version_count(const mh_server_info* info) {
  return info ? info->api_versions.size() : 0;
}
const char* mh_server_info_api_version(const mh_server_info* info, size_t index) {
  if (info == nullptr || index >= info->api_versions.size()) return nullptr;
  return info->api_versions[index].c_str();
}
int mh_server_info_compatible(const mh_server_info* info) {
  if (info == nullptr) return 0;
  const std::string ours = fmt::format("v{}", MH_API_VERSION_MAJOR);
  for (const auto& v : info->api_versions) {
    if (v == ours) return 1;
  }
  return 0;
}
void mh_server_info_delete(mh_server_info* info) { delete info; }

mh_error* mh_client_health(mh_client* client, mh_health** out) {
  return guarded([&]() -> mh_error* {
    if (client == nullptr) return null_argument("client");
    if (out == nullptr) return null_argument("out");
    auto live = client->http->send("GET", "/healthz");
    if (auto* error = std::get_if<CallError>(&live)) return make_error(*error);
    auto health = std::make_unique<mh_health>();
    health->live = std::get<HttpResponse>(live).status == 200;
    auto ready = client->http->send("GET", "/readyz");
    if (auto* error = std::get_if<CallError>(&ready)) {
      health->detail = error->status.message();
    } else {
      const auto& response = std::get<HttpResponse>(ready);
      health->ready = response.status == 200;
      if (!health->ready) health->detail = mh::sdk::error_from_response(response).status.message();
    }
    *out = health.release();
    return nullptr;
  });
}

int mh_health_live(const mh_health* health) { return health && health->live ? 1 : 0; }
int mh_health_ready(const mh_health* health) { return health && health->ready ? 1 : 0; }
const char* mh_health_detail(const mh_health* health) {
  return health ? health->detail.c_str() : "";
}
void mh_health_delete(mh_health* health) { delete health; }

mh_error* mh_client_request_json(mh_client* client, const char* method, const char* path,
                                 const char* body_json, char** response_json) {
  return guarded([&]() -> mh_error* {
    if (client == nullptr) return null_argument("client");
    if (method == nullptr) return null_argument("method");
    if (path == nullptr || path[0] != '/') {
      return make_error(mh::invalid_argument("path must start with '/'"));
    }
    if (response_json == nullptr) return null_argument("response_json");
    if (mh_error* seat = ensure_seat(client)) return seat;
    auto result = client->http->call(method, path, body_json ? body_json : "");
    if (auto* error = std::get_if<CallError>(&result)) return make_error(*error);
    *response_json = copy_string(std::get<HttpResponse>(result).body);
    return nullptr;
  });
}

}  // extern "C"
