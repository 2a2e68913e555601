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

#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <exception>
#include <functional>
#include <map>
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

// A resource as the server describes it (since API 1.2), for fields the typed structs below do
// not carry. A dotted name reaches into nested objects: "limits.storage_limit_bytes".
class Object {
 public:
  Object() = default;
  explicit Object(std::shared_ptr<const mh_object> p) : p_(std::move(p)) {}
  std::string string(const char* field) const { return mh_object_string(p_.get(), field); }
  int64_t integer(const char* field) const { return mh_object_int(p_.get(), field); }
  double number(const char* field) const { return mh_object_number(p_.get(), field); }
  bool boolean(const char* field) const { return mh_object_bool(p_.get(), field) != 0; }
  bool has(const char* field) const { return mh_object_has(p_.get(), field) != 0; }
  std::optional<int64_t> optional_integer(const char* field) const {
    return has(field) ? std::optional<int64_t>(integer(field)) : std::nullopt;
  }
  // The whole object as JSON text.
  std::string json() const { return mh_object_json(p_.get()); }

 private:
  std::shared_ptr<const mh_object> p_;
};

// A file in the tenant's storage (POST /v1/files).
struct File {
  std::string id, filename, purpose, sha256;
  int64_t bytes = 0, created_at = 0;
  Object raw;
  static File from(const Object& o) {
    return {o.string("id"),
            o.string("filename"),
            o.string("purpose"),
            o.string("sha256"),
            o.integer("bytes"),
            o.integer("created_at"),
            o};
  }
};

// A model the tenant may use; custom models carry their files' ids.
struct Model {
  std::string id, owned_by, family;
  int64_t parameters = 0, context_length = 0, vocab_size = 0, created = 0;
  std::string config_file, weights_file, tokenizer_file;
  // A LoRA adapter's base model (since 1.7); empty for a full model.
  std::string parent;
  Object raw;
  static Model from(const Object& o) {
    return {o.string("id"),
            o.string("owned_by"),
            o.string("family"),
            o.integer("parameters"),
            o.integer("context_length"),
            o.integer("vocab_size"),
            o.integer("created"),
            o.string("files.config.json"),
            o.string("files.model.safetensors"),
            o.string("files.tokenizer.json"),
            o.string("parent"),
            o};
  }
};

// A fine-tuning job (OpenAI's fields; see the API reference).
struct FineTuningJob {
  std::string id, model, status, training_file, fine_tuned_model, error_code, error_message;
  int64_t created_at = 0, n_epochs = 0, batch_size = 0, seed = 0;
  double learning_rate_multiplier = 0;
  // While queued: where it stands and why it waits (since 1.4).
  int64_t queue_position = 0;
  std::string queue_reason;
  // Where and how it runs (since 1.5).
  std::string pool;
  int64_t gpus = 0, priority = 0;
  // How it trains (since 1.7): "supervised" or "dpo", and the LoRA rank (0: every weight).
  std::string method;
  int64_t lora_rank = 0;
  Object raw;
  static FineTuningJob from(const Object& o) {
    return {o.string("id"),
            o.string("model"),
            o.string("status"),
            o.string("training_file"),
            o.string("fine_tuned_model"),
            o.string("error.code"),
            o.string("error.message"),
            o.integer("created_at"),
            o.integer("hyperparameters.n_epochs"),
            o.integer("hyperparameters.batch_size"),
            o.integer("seed"),
            o.number("hyperparameters.learning_rate_multiplier"),
            o.integer("queue.position"),
            o.string("queue.reason"),
            o.string("pool"),
            o.integer("gpus"),
            o.integer("priority"),
            o.string("method.type"),
            o.integer("method.lora.rank"),
            o};
  }
};

// What to start a fine-tuning job with; zeros are "auto", a negative seed the server's choice.
struct FineTuningRequest {
  std::string model, training_file, validation_file, suffix;
  int n_epochs = 0, batch_size = 0;
  double learning_rate_multiplier = 0;
  int64_t seed = -1;
  // Where and how it runs (since 1.5); empty and zero keep the server's defaults: the pool
  // "default", 1 GPU, a checkpoint every 50 steps, no retries, priority 0.
  std::string pool;
  int gpus = 0;                 // data-parallel ranks on one node; > 1 needs multi_gpu
  int checkpoint_interval = 0;  // steps
  int max_retries = -1;         // negative: the server's default
  int priority = 0;             // -100 to 100: higher goes first and is preempted last
  // How it trains (since 1.7). method: "" or "supervised", or "dpo" (the training file holds
  // preference pairs) with beta (0: the server's 0.1).
  std::string method;
  double beta = 0;
  // LoRA adapters on the frozen model instead of every weight: lora_rank > 0 turns them on;
  // lora_alpha 0 is twice the rank; no targets is every linear layer ("all-linear").
  int lora_rank = 0;
  double lora_alpha = 0, lora_dropout = 0;
  std::vector<std::string> lora_targets;
};

// A deployment: a model served by replicas (see the API reference).
struct Deployment {
  std::string id, model, pool, status, error;
  int64_t replicas = 0, ready_replicas = 0, created_at = 0;
  int64_t devices_per_replica = 0;  // since 1.5
  Object raw;
  static Deployment from(const Object& o) {
    return {o.string("id"),
            o.string("model"),
            o.string("pool"),
            o.string("status"),
            o.string("error"),
            o.integer("replicas"),
            o.integer("ready_replicas"),
            o.integer("created_at"),
            o.integer("devices_per_replica"),
            o};
  }
};

// What to deploy, and where (since 1.5); an empty pool and zero devices keep the server's
// defaults ("default", 1 device per replica; more needs multi_gpu).
struct DeploymentRequest {
  std::string model;
  int replicas = 1;
  std::string pool;
  int devices_per_replica = 0;
};

// A chat message, and what to ask a deployed model.
struct ChatMessage {
  std::string role, content;
};
struct CompletionRequest {
  std::string model;                  // a deployment id, or a model the tenant has deployed
  std::vector<ChatMessage> messages;  // chat completions
  std::string prompt;                 // text completions
  int64_t max_tokens = 0;             // 0: the server's default
  double temperature = -1;            // negative: the server's default
  int64_t seed = -1;                  // negative: the server's choice
  std::vector<std::string> stop;
};

// The answer: the text, why it ended ("stop", "length"), and the tokens it took.
struct Completion {
  std::string id, text, finish_reason;
  int64_t prompt_tokens = 0, completion_tokens = 0;
  Object raw;
  static Completion from(const Object& o) {
    std::string text = o.string("choices.0.message.content");
    if (text.empty()) text = o.string("choices.0.text");
    return {o.string("id"),
            std::move(text),
            o.string("choices.0.finish_reason"),
            o.integer("usage.prompt_tokens"),
            o.integer("usage.completion_tokens"),
            o};
  }
};

// One event of a job. Metrics events carry step and train_loss.
struct JobEvent {
  std::string id, level, type, message;
  int64_t created_at = 0, step = 0, total_steps = 0;
  double train_loss = 0;
  static JobEvent from(const Object& o) {
    return {o.string("id"),
            o.string("level"),
            o.string("type"),
            o.string("message"),
            o.integer("created_at"),
            o.integer("data.step"),
            o.integer("data.total_steps"),
            o.number("data.train_loss")};
  }
};

// An API key. `secret` is set only in what create_key returns: it is shown once.
struct ApiKey {
  std::string id, tenant, name, role, prefix, created_by;
  int64_t created_at = 0;
  std::optional<int64_t> revoked_at;
  std::string secret;
  Object raw;
  static ApiKey from(const Object& o) {
    return {o.string("id"),          o.string("tenant"),
            o.string("name"),        o.string("role"),
            o.string("prefix"),      o.string("created_by"),
            o.integer("created_at"), o.optional_integer("revoked_at"),
            o.string("key"),         o};
  }
};

// A tenant: its limits, and whether it is suspended. From tenant(), raw also holds the
// license state ("license.in_force") and the calling key ("key.role").
struct Tenant {
  std::string id, name;
  int64_t created_at = 0;
  std::optional<int64_t> suspended_at;
  std::string suspend_reason;
  double rate_limit_rps = 0;
  int64_t rate_limit_burst = 0, storage_limit_bytes = 0;
  Object raw;
  static Tenant from(const Object& o) {
    return {o.string("id"),
            o.string("name"),
            o.integer("created_at"),
            o.optional_integer("suspended_at"),
            o.string("suspend_reason"),
            o.number("limits.rate_limit_rps"),
            o.integer("limits.rate_limit_burst"),
            o.integer("limits.storage_limit_bytes"),
            o};
  }
};

template <typename T>
struct Page {
  std::vector<T> items;
  bool has_more = false;
  std::string last_id;  // pass as `after` for the next page
};

// What to ask GET /v1/usage for. Zero times: the last 30 days.
struct UsageQuery {
  int64_t start_time = 0, end_time = 0;
  std::string bucket_width = "1d";  // "1h", "1d" or "total"
  bool by_subject = false;          // one line per job, replica or file
  std::string dimension;            // "" for all
};

struct UsageLine {
  int64_t start_time = 0, end_time = 0;
  std::string dimension;
  double quantity = 0;
  int64_t records = 0;
  std::string subject_kind, subject_id;  // with by_subject
};

struct Usage {
  std::string tenant;
  int64_t start_time = 0, end_time = 0;
  std::vector<UsageLine> lines;
  std::map<std::string, double> totals;  // by dimension
};

// Limits to change; those left empty stay as they are.
struct TenantLimits {
  std::optional<double> rate_limit_rps;
  std::optional<int64_t> rate_limit_burst;
  std::optional<int64_t> storage_limit_bytes;
};

// Called as a transfer moves (bytes done, total or 0 when unknown); return false to cancel.
using Progress = std::function<bool(uint64_t done, uint64_t total)>;

namespace detail {
inline Object own(mh_object* raw) {
  return Object(std::shared_ptr<const mh_object>(raw, mh_object_delete));
}
template <typename T, typename From>
Page<T> page_of(mh_list* raw, From from) {
  std::shared_ptr<const mh_list> list(raw, mh_list_delete);
  Page<T> page;
  for (size_t i = 0; i < mh_list_count(raw); ++i) {
    // Each item shares ownership of the list it lives in.
    page.items.push_back(
        from(Object(std::shared_ptr<const mh_object>(list, mh_list_item(raw, i)))));
  }
  page.has_more = mh_list_has_more(raw) != 0;
  page.last_id = mh_list_last_id(raw);
  return page;
}
// JSON string quoting for request bodies the wrapper writes.
inline std::string json_string(std::string_view s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20) {
      static const char* hex = "0123456789abcdef";
      out += "\\u00";
      out += hex[c >> 4];
      out += hex[c & 15];
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

// The shortest text that reads back as the same double. JSON has no NaN or infinity: those go as
// strings, which the server refuses by the field's name.
inline std::string json_number(double v) {
  char buffer[32];
  const std::string text(buffer, std::to_chars(buffer, buffer + sizeof buffer, v).ptr);
  return std::isfinite(v) ? text : json_string(text);
}

inline std::string fine_tuning_json(const FineTuningRequest& r) {
  auto count_or_auto = [](double v, bool integer) {
    if (v <= 0) return std::string("\"auto\"");
    return integer ? std::to_string(static_cast<int64_t>(v)) : json_number(v);
  };
  std::string hyperparameters =
      "{\"n_epochs\":" + count_or_auto(r.n_epochs, true) +
      ",\"batch_size\":" + count_or_auto(r.batch_size, true) +
      ",\"learning_rate_multiplier\":" + count_or_auto(r.learning_rate_multiplier, false);
  std::string body =
      "{\"model\":" + json_string(r.model) + ",\"training_file\":" + json_string(r.training_file);
  if (r.method.empty() && r.lora_rank <= 0) {
    body += ",\"hyperparameters\":" + hyperparameters + "}";  // as before 1.7
  } else {
    // OpenAI's method, with the hyperparameters in it, and Macrohard's LoRA settings beside.
    const std::string type = r.method.empty() ? "supervised" : r.method;
    if (type == "dpo") hyperparameters += ",\"beta\":" + count_or_auto(r.beta, false);
    body += ",\"method\":{\"type\":" + json_string(type) + "," + json_string(type) +
            ":{\"hyperparameters\":" + hyperparameters + "}}";
    if (r.lora_rank > 0) {
      body += ",\"lora\":{\"rank\":" + std::to_string(r.lora_rank);
      if (r.lora_alpha > 0) body += ",\"alpha\":" + json_number(r.lora_alpha);
      if (r.lora_dropout > 0) body += ",\"dropout\":" + json_number(r.lora_dropout);
      if (!r.lora_targets.empty()) {
        body += ",\"target_modules\":[";
        for (size_t i = 0; i < r.lora_targets.size(); ++i) {
          body += (i ? "," : "") + json_string(r.lora_targets[i]);
        }
        body += "]";
      }
      body += "}";
    }
    body += "}";
  }
  if (!r.validation_file.empty()) body += ",\"validation_file\":" + json_string(r.validation_file);
  if (!r.suffix.empty()) body += ",\"suffix\":" + json_string(r.suffix);
  if (r.seed >= 0) body += ",\"seed\":" + std::to_string(r.seed);
  if (!r.pool.empty()) body += ",\"pool\":" + json_string(r.pool);
  if (r.gpus > 0) body += ",\"gpus\":" + std::to_string(r.gpus);
  if (r.checkpoint_interval > 0) {
    body += ",\"checkpoint_interval\":" + std::to_string(r.checkpoint_interval);
  }
  if (r.max_retries >= 0) body += ",\"max_retries\":" + std::to_string(r.max_retries);
  if (r.priority != 0) body += ",\"priority\":" + std::to_string(r.priority);
  return body + "}";
}

inline std::string deployment_json(const DeploymentRequest& r) {
  std::string body = "{\"model\":" + json_string(r.model) +
                     ",\"replicas\":" + std::to_string(r.replicas > 0 ? r.replicas : 1);
  if (!r.pool.empty()) body += ",\"pool\":" + json_string(r.pool);
  if (r.devices_per_replica > 0) {
    body += ",\"devices_per_replica\":" + std::to_string(r.devices_per_replica);
  }
  return body + "}";
}

inline std::string completion_json(const CompletionRequest& r, bool chat) {
  std::string body = "{\"model\":" + json_string(r.model);
  if (chat) {
    body += ",\"messages\":[";
    for (size_t i = 0; i < r.messages.size(); ++i) {
      body += (i ? ",{\"role\":" : "{\"role\":") + json_string(r.messages[i].role) +
              ",\"content\":" + json_string(r.messages[i].content) + "}";
    }
    body += "]";
  } else {
    body += ",\"prompt\":" + json_string(r.prompt);
  }
  if (r.max_tokens > 0) body += ",\"max_tokens\":" + std::to_string(r.max_tokens);
  if (r.temperature >= 0) body += ",\"temperature\":" + json_number(r.temperature);
  if (r.seed >= 0) body += ",\"seed\":" + std::to_string(r.seed);
  if (!r.stop.empty()) {
    body += ",\"stop\":[";
    for (size_t i = 0; i < r.stop.size(); ++i) body += (i ? "," : "") + json_string(r.stop[i]);
    body += "]";
  }
  return body + "}";
}

// Carries a text callback across the C ABI; an exception it throws stops the stream and is
// rethrown once the call returns.
struct TextBridge {
  const std::function<bool(std::string_view)>* fn;
  std::exception_ptr thrown;
  static int call(void* self, const char* text, size_t length) {
    auto* bridge = static_cast<TextBridge*>(self);
    try {
      return (*bridge->fn)(std::string_view(text, length)) ? 0 : 1;
    } catch (...) {
      bridge->thrown = std::current_exception();
      return 1;
    }
  }
};

// Carries an event callback across the C ABI, as ProgressBridge does a progress callback.
struct EventBridge {
  const std::function<bool(const JobEvent&)>* fn;
  std::exception_ptr thrown;
  static int call(void* self, const mh_object* event) {
    auto* bridge = static_cast<EventBridge*>(self);
    try {
      // The event is borrowed for the call: it is copied out, never kept.
      Object borrowed(std::shared_ptr<const mh_object>(event, [](const mh_object*) {}));
      return (*bridge->fn)(JobEvent::from(borrowed)) ? 0 : 1;
    } catch (...) {
      bridge->thrown = std::current_exception();
      return 1;
    }
  }
};

// Carries a Progress across the C ABI; an exception it throws cancels the transfer and is
// rethrown once the call returns.
struct ProgressBridge {
  const Progress* progress;
  std::exception_ptr thrown;
  static int call(void* self, uint64_t done, uint64_t total) {
    auto* bridge = static_cast<ProgressBridge*>(self);
    try {
      return (*bridge->progress)(done, total) ? 0 : 1;
    } catch (...) {
      bridge->thrown = std::current_exception();
      return 1;
    }
  }
  mh_progress_fn fn() const { return *progress ? &ProgressBridge::call : nullptr; }
  void check(mh_error* raw) {
    if (thrown) {
      mh_error_delete(raw);
      std::rethrow_exception(thrown);
    }
    detail::check(raw);
  }
};
inline const char* or_null(const std::string& s) { return s.empty() ? nullptr : s.c_str(); }
}  // namespace detail

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

  // ---- files (since 1.2) ----

  // Uploads a file from disk, streamed; purpose "fine-tune" or "model".
  File upload_file(const std::string& path, const std::string& purpose,
                   const Progress& progress = {}) {
    mh_object* raw = nullptr;
    detail::ProgressBridge bridge{&progress, nullptr};
    bridge.check(
        mh_client_upload_file(p_.get(), path.c_str(), purpose.c_str(), bridge.fn(), &bridge, &raw));
    return File::from(detail::own(raw));
  }
  Page<File> list_files(const std::string& purpose = {}, const std::string& after = {},
                        int limit = 0) {
    mh_list* raw = nullptr;
    detail::check(mh_client_list_files(p_.get(), detail::or_null(purpose), detail::or_null(after),
                                       limit, &raw));
    return detail::page_of<File>(raw, File::from);
  }
  File get_file(const std::string& id) {
    mh_object* raw = nullptr;
    detail::check(mh_client_get_file(p_.get(), id.c_str(), &raw));
    return File::from(detail::own(raw));
  }
  // Writes the file's content to `destination` (complete, or not at all).
  void download_file(const std::string& id, const std::string& destination,
                     const Progress& progress = {}) {
    detail::ProgressBridge bridge{&progress, nullptr};
    bridge.check(
        mh_client_download_file(p_.get(), id.c_str(), destination.c_str(), bridge.fn(), &bridge));
  }
  void delete_file(const std::string& id) {
    detail::check(mh_client_delete_file(p_.get(), id.c_str()));
  }

  // ---- models (since 1.3) ----

  Model register_model(const std::string& name, const std::string& config_file_id,
                       const std::string& weights_file_id, const std::string& tokenizer_file_id) {
    mh_object* raw = nullptr;
    detail::check(mh_client_register_model(p_.get(), name.c_str(), config_file_id.c_str(),
                                           weights_file_id.c_str(), tokenizer_file_id.c_str(),
                                           &raw));
    return Model::from(detail::own(raw));
  }
  // A custom model from a whole request body, {"name", "files"} (since 1.6).
  Model register_model_json(const std::string& request_json) {
    mh_object* raw = nullptr;
    detail::check(mh_client_register_model_json(p_.get(), request_json.c_str(), &raw));
    return Model::from(detail::own(raw));
  }
  // Uploads a model directory as published (config, tokenizer, weights or shards and index,
  // chat template and generation files) and registers it as custom:<name> (since 1.6).
  Model upload_model(const std::string& directory, const std::string& name,
                     const Progress& progress = {}) {
    mh_object* raw = nullptr;
    detail::ProgressBridge bridge{&progress, nullptr};
    bridge.check(mh_client_upload_model(p_.get(), directory.c_str(), name.c_str(), bridge.fn(),
                                        &bridge, &raw));
    return Model::from(detail::own(raw));
  }
  Page<Model> list_models(const std::string& after = {}, int limit = 0) {
    mh_list* raw = nullptr;
    detail::check(mh_client_list_models(p_.get(), detail::or_null(after), limit, &raw));
    return detail::page_of<Model>(raw, Model::from);
  }
  Model get_model(const std::string& id) {
    mh_object* raw = nullptr;
    detail::check(mh_client_get_model(p_.get(), id.c_str(), &raw));
    return Model::from(detail::own(raw));
  }
  void delete_model(const std::string& id) {
    detail::check(mh_client_delete_model(p_.get(), id.c_str()));
  }

  // ---- fine-tuning jobs (since 1.3) ----

  FineTuningJob create_fine_tuning_job(const FineTuningRequest& r) {
    mh_object* raw = nullptr;
    const std::string body = detail::fine_tuning_json(r);
    detail::check(mh_client_create_fine_tuning_job_json(p_.get(), body.c_str(), &raw));
    return FineTuningJob::from(detail::own(raw));
  }
  Page<FineTuningJob> list_fine_tuning_jobs(const std::string& after = {}, int limit = 0) {
    mh_list* raw = nullptr;
    detail::check(mh_client_list_fine_tuning_jobs(p_.get(), detail::or_null(after), limit, &raw));
    return detail::page_of<FineTuningJob>(raw, FineTuningJob::from);
  }
  FineTuningJob get_fine_tuning_job(const std::string& id) {
    mh_object* raw = nullptr;
    detail::check(mh_client_get_fine_tuning_job(p_.get(), id.c_str(), &raw));
    return FineTuningJob::from(detail::own(raw));
  }
  FineTuningJob cancel_fine_tuning_job(const std::string& id) {
    mh_object* raw = nullptr;
    detail::check(mh_client_cancel_fine_tuning_job(p_.get(), id.c_str(), &raw));
    return FineTuningJob::from(detail::own(raw));
  }
  Page<JobEvent> list_fine_tuning_events(const std::string& id, const std::string& after = {},
                                         int limit = 0) {
    mh_list* raw = nullptr;
    detail::check(mh_client_list_fine_tuning_events(p_.get(), id.c_str(), detail::or_null(after),
                                                    limit, &raw));
    return detail::page_of<JobEvent>(raw, JobEvent::from);
  }
  // Blocks until the job finishes, passing each new event to `on_event` (return false to stop
  // waiting: the call then throws Error with code MH_ERR_CANCELLED; an exception on_event
  // throws is rethrown).
  FineTuningJob wait_fine_tuning_job(
      const std::string& id, std::function<bool(const JobEvent&)> on_event = {},
      std::chrono::milliseconds poll = std::chrono::milliseconds(500)) {
    detail::EventBridge bridge{&on_event, nullptr};
    mh_object* raw = nullptr;
    mh_error* e = mh_client_wait_fine_tuning_job(p_.get(), id.c_str(),
                                                 on_event ? &detail::EventBridge::call : nullptr,
                                                 &bridge, static_cast<int>(poll.count()), &raw);
    if (bridge.thrown) {
      mh_error_delete(e);
      std::rethrow_exception(bridge.thrown);
    }
    detail::check(e);
    return FineTuningJob::from(detail::own(raw));
  }

  // ---- deployments and completions (since 1.4) ----

  Deployment create_deployment(const std::string& model, int replicas = 1) {
    return create_deployment(DeploymentRequest{model, replicas, {}, 0});
  }
  // Since 1.5: on a chosen pool, with several devices per replica.
  Deployment create_deployment(const DeploymentRequest& r) {
    mh_object* raw = nullptr;
    const std::string body = detail::deployment_json(r);
    detail::check(mh_client_create_deployment_json(p_.get(), body.c_str(), &raw));
    return Deployment::from(detail::own(raw));
  }
  Page<Deployment> list_deployments(const std::string& after = {}, int limit = 0) {
    mh_list* raw = nullptr;
    detail::check(mh_client_list_deployments(p_.get(), detail::or_null(after), limit, &raw));
    return detail::page_of<Deployment>(raw, Deployment::from);
  }
  Deployment get_deployment(const std::string& id) {
    mh_object* raw = nullptr;
    detail::check(mh_client_get_deployment(p_.get(), id.c_str(), &raw));
    return Deployment::from(detail::own(raw));
  }
  Deployment scale_deployment(const std::string& id, int replicas) {
    mh_object* raw = nullptr;
    detail::check(mh_client_scale_deployment(p_.get(), id.c_str(), replicas, &raw));
    return Deployment::from(detail::own(raw));
  }
  void delete_deployment(const std::string& id) {
    detail::check(mh_client_delete_deployment(p_.get(), id.c_str()));
  }
  // Blocks until the deployment is ready (or failed or stopped).
  Deployment wait_deployment(const std::string& id,
                             std::chrono::milliseconds timeout = std::chrono::minutes(10)) {
    mh_object* raw = nullptr;
    detail::check(
        mh_client_wait_deployment(p_.get(), id.c_str(), static_cast<int>(timeout.count()), &raw));
    return Deployment::from(detail::own(raw));
  }
  // A chat completion; with `on_text`, streamed piece by piece (return false to stop: the call
  // then throws Error with code MH_ERR_CANCELLED).
  Completion chat(const CompletionRequest& r, std::function<bool(std::string_view)> on_text = {}) {
    return run_completion(r, true, std::move(on_text));
  }
  Completion complete(const CompletionRequest& r,
                      std::function<bool(std::string_view)> on_text = {}) {
    return run_completion(r, false, std::move(on_text));
  }

  // ---- the caller's tenant, keys and usage (since 1.2) ----

  Tenant tenant() {
    mh_object* raw = nullptr;
    detail::check(mh_client_get_tenant(p_.get(), &raw));
    return Tenant::from(detail::own(raw));
  }
  // role: "owner", "developer" or "viewer". The result's secret is shown this once.
  ApiKey create_key(const std::string& name, const std::string& role = "developer") {
    mh_object* raw = nullptr;
    detail::check(mh_client_create_key(p_.get(), name.c_str(), role.c_str(), &raw));
    return ApiKey::from(detail::own(raw));
  }
  Page<ApiKey> list_keys(const std::string& after = {}, int limit = 0) {
    mh_list* raw = nullptr;
    detail::check(mh_client_list_keys(p_.get(), detail::or_null(after), limit, &raw));
    return detail::page_of<ApiKey>(raw, ApiKey::from);
  }
  ApiKey revoke_key(const std::string& id) {
    mh_object* raw = nullptr;
    detail::check(mh_client_revoke_key(p_.get(), id.c_str(), &raw));
    return ApiKey::from(detail::own(raw));
  }
  Usage usage(const UsageQuery& q = {}) {
    mh_list* raw = nullptr;
    detail::check(mh_client_get_usage(
        p_.get(), q.start_time, q.end_time, detail::or_null(q.bucket_width),
        q.by_subject ? "subject" : nullptr, detail::or_null(q.dimension), &raw));
    std::unique_ptr<mh_list, detail::Deleter<mh_list_delete>> owned(raw);
    const mh_object* r = mh_list_response(raw);
    Usage out{mh_object_string(r, "tenant"),
              mh_object_int(r, "start_time"),
              mh_object_int(r, "end_time"),
              {},
              {}};
    for (size_t i = 0; i < mh_list_count(raw); ++i) {
      const mh_object* l = mh_list_item(raw, i);
      out.lines.push_back({mh_object_int(l, "start_time"), mh_object_int(l, "end_time"),
                           mh_object_string(l, "dimension"), mh_object_number(l, "quantity"),
                           mh_object_int(l, "records"), mh_object_string(l, "subject_kind"),
                           mh_object_string(l, "subject_id")});
    }
    for (const char* d : {"gpu_seconds", "input_tokens", "output_tokens", "stored_bytes"}) {
      std::string field = std::string("totals.") + d;
      if (mh_object_has(r, field.c_str())) out.totals[d] = mh_object_number(r, field.c_str());
    }
    return out;
  }

  // ---- platform staff: needs an admin key (since 1.2) ----

  Tenant admin_create_tenant(const std::string& id, const std::string& name = {}) {
    mh_object* raw = nullptr;
    detail::check(mh_client_admin_create_tenant(p_.get(), id.c_str(), detail::or_null(name), &raw));
    return Tenant::from(detail::own(raw));
  }
  Page<Tenant> admin_list_tenants(const std::string& after = {}, int limit = 0) {
    mh_list* raw = nullptr;
    detail::check(mh_client_admin_list_tenants(p_.get(), detail::or_null(after), limit, &raw));
    return detail::page_of<Tenant>(raw, Tenant::from);
  }
  // raw also holds the tenant's license state ("license.in_force", "license.reason").
  Tenant admin_get_tenant(const std::string& id) {
    mh_object* raw = nullptr;
    detail::check(mh_client_admin_get_tenant(p_.get(), id.c_str(), &raw));
    return Tenant::from(detail::own(raw));
  }
  Tenant admin_suspend_tenant(const std::string& id, const std::string& reason = {}) {
    mh_object* raw = nullptr;
    detail::check(
        mh_client_admin_suspend_tenant(p_.get(), id.c_str(), detail::or_null(reason), &raw));
    return Tenant::from(detail::own(raw));
  }
  Tenant admin_resume_tenant(const std::string& id) {
    mh_object* raw = nullptr;
    detail::check(mh_client_admin_resume_tenant(p_.get(), id.c_str(), &raw));
    return Tenant::from(detail::own(raw));
  }
  Tenant admin_set_tenant_limits(const std::string& id, const TenantLimits& limits) {
    mh_object* raw = nullptr;
    detail::check(mh_client_admin_set_tenant_limits(
        p_.get(), id.c_str(), limits.rate_limit_rps.value_or(-1),
        limits.rate_limit_burst.value_or(-1), limits.storage_limit_bytes.value_or(-1), &raw));
    return Tenant::from(detail::own(raw));
  }
  // A key for a tenant (an owner key unless another role is given); its secret is shown once.
  ApiKey admin_create_tenant_key(const std::string& tenant_id, const std::string& name = "owner",
                                 const std::string& role = "owner") {
    mh_object* raw = nullptr;
    detail::check(mh_client_admin_create_tenant_key(p_.get(), tenant_id.c_str(), name.c_str(),
                                                    role.c_str(), &raw));
    return ApiKey::from(detail::own(raw));
  }
  // Usage records as CSV; tenant "" for all.
  std::string admin_export_usage(const std::string& tenant_id = {}, int64_t start_time = 0,
                                 int64_t end_time = 0) {
    char* raw = nullptr;
    detail::check(mh_client_admin_export_usage(p_.get(), detail::or_null(tenant_id), start_time,
                                               end_time, &raw));
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
  Completion run_completion(const CompletionRequest& r, bool chat,
                            std::function<bool(std::string_view)> on_text) {
    const std::string body = detail::completion_json(r, chat);
    detail::TextBridge bridge{&on_text, nullptr};
    mh_object* raw = nullptr;
    auto* fn = on_text ? &detail::TextBridge::call : nullptr;
    mh_error* e = chat ? mh_client_chat_completion(p_.get(), body.c_str(), fn, &bridge, &raw)
                       : mh_client_completion(p_.get(), body.c_str(), fn, &bridge, &raw);
    if (bridge.thrown) {
      mh_error_delete(e);
      std::rethrow_exception(bridge.thrown);
    }
    detail::check(e);
    return Completion::from(detail::own(raw));
  }

  std::unique_ptr<mh_client, detail::Deleter<mh_client_delete>> p_;
};

}  // namespace v1
}  // namespace macrohard
