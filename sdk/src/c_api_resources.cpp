// The C ABI's resource calls (API 1.2): files, the caller's tenant, keys and usage, and the staff
// calls on tenants. Results are mh_object/mh_list views over the server's JSON.
#include <boost/json.hpp>
#include <algorithm>
#include <cctype>
#include <charconv>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string_view>
#include <thread>
#include <utility>

#include "platform/base/crypto.h"
#include "sdk/src/c_api_internal.h"

namespace json = boost::json;
using mh::sdk::CallError;
using mh::sdk::HttpResponse;
using namespace mh::sdk::capi;

struct mh_object {
  json::object value;
  std::string text;  // the object serialized, for mh_object_json
};

struct mh_list {
  std::vector<std::unique_ptr<mh_object>> items;
  bool has_more = false;
  std::string last_id;
  std::unique_ptr<mh_object> response;
};

namespace {

const json::value* find(const mh_object* object, const char* field) {
  if (object == nullptr || field == nullptr) return nullptr;
  const json::object* at = &object->value;
  std::string_view rest(field);
  for (;;) {
    // A key that itself holds dots ("files.config.json") is matched whole first.
    if (const json::value* whole = at->if_contains(rest)) return whole;
    size_t dot = rest.find('.');
    const json::value* v = at->if_contains(rest.substr(0, dot));
    if (v == nullptr || dot == std::string_view::npos) return v;
    rest.remove_prefix(dot + 1);
    // An array is indexed by a number ("choices.0.text").
    while (v->is_array()) {
      dot = rest.find('.');
      const std::string_view index = rest.substr(0, dot);
      size_t i = 0;
      auto [end, ec] = std::from_chars(index.data(), index.data() + index.size(), i);
      if (ec != std::errc() || end != index.data() + index.size() || i >= v->as_array().size()) {
        return nullptr;
      }
      v = &v->as_array()[i];
      if (dot == std::string_view::npos) return v;
      rest.remove_prefix(dot + 1);
    }
    if (!v->is_object()) return nullptr;
    at = &v->as_object();
  }
}

std::unique_ptr<mh_object> make_object(json::object value) {
  auto out = std::make_unique<mh_object>();
  out->text = json::serialize(value);
  out->value = std::move(value);
  return out;
}

// The JSON object a successful response carries.
mh::Result<json::object> object_of(const HttpResponse& response, std::string_view what) {
  boost::system::error_code ec;
  json::value body = json::parse(response.body, ec);
  if (ec || !body.is_object()) {
    return mh::internal_error(fmt::format("{} answered something that is not a JSON object", what));
  }
  return std::move(body.as_object());
}

// A path segment from a caller's id, percent-encoded so that it cannot change the path.
std::string segment(std::string_view id) {
  std::string out;
  for (unsigned char c : id) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += fmt::format("%{:02X}", c);
    }
  }
  return out;
}

bool empty(const char* s) { return s == nullptr || s[0] == '\0'; }

// "?name=value&…" of the parameters that have a value ("" when none has).
std::string query(std::initializer_list<std::pair<std::string_view, std::string>> params) {
  std::string q;
  for (const auto& [name, value] : params) {
    if (value.empty()) continue;
    q += q.empty() ? '?' : '&';
    q += fmt::format("{}={}", name, segment(value));
  }
  return q;
}
std::string text(const char* s) { return s == nullptr ? std::string() : std::string(s); }
std::string positive(int64_t n) { return n > 0 ? std::to_string(n) : std::string(); }

// Server-sent events out of the pieces of a stream: each whole event's "data:" lines go to
// `on_data` ("[DONE]" included); comments, ids and retry hints are skipped. on_data returning
// false stops the reading (false comes back); an error stops it too.
class SseReader {
 public:
  template <typename OnData>
  mh::Result<bool> feed(std::string_view piece, OnData&& on_data) {
    pending_ += piece;
    size_t end;
    while ((end = pending_.find("\n\n")) != std::string::npos) {
      const std::string event = pending_.substr(0, end);
      pending_.erase(0, end + 2);
      for (size_t at = 0; at < event.size();) {
        size_t eol = event.find('\n', at);
        if (eol == std::string::npos) eol = event.size();
        std::string_view line(event.data() + at, eol - at);
        at = eol + 1;
        if (!line.starts_with("data:")) continue;
        line.remove_prefix(5);
        if (line.starts_with(' ')) line.remove_prefix(1);
        MH_ASSIGN_OR_RETURN(bool go_on, on_data(line));
        if (!go_on) return false;
      }
    }
    return true;
  }

 private:
  std::string pending_;
};

mh_error* check_client(mh_client* client) {
  if (client == nullptr) return null_argument("client");
  return ensure_seat(client);
}

// A caller's whole request body: it must be a JSON object; the server checks its fields.
mh_error* parse_request(const char* request_json, mh_object** out, json::value* request) {
  if (empty(request_json)) return null_argument("request_json");
  if (out == nullptr) return null_argument("out");
  boost::system::error_code ec;
  *request = json::parse(request_json, ec);
  if (ec || !request->is_object()) {
    return make_error(mh::invalid_argument("request_json must be a JSON object"));
  }
  return nullptr;
}

mh_error* call_object(mh_client* client, const char* method, const std::string& path,
                      const json::object* body, mh_object** out) {
  if (mh_error* bad = check_client(client)) return bad;
  auto result = client->http->call(method, path, body ? json::serialize(*body) : "");
  if (auto* error = std::get_if<CallError>(&result)) return make_error(*error);
  if (out == nullptr) return nullptr;
  const auto& response = std::get<HttpResponse>(result);
  auto object = object_of(response, fmt::format("{} {}", method, path));
  if (!object.ok()) return make_error(object.status(), response.status, response.request_id);
  *out = make_object(std::move(*object)).release();
  return nullptr;
}

// POSTs a caller's whole request body to `path`.
mh_error* post_request(mh_client* client, const std::string& path, const char* request_json,
                       mh_object** out) {
  json::value body;
  if (mh_error* bad = parse_request(request_json, out, &body)) return bad;
  return call_object(client, "POST", path, &body.as_object(), out);
}

mh_error* call_list(mh_client* client, const std::string& path, mh_list** out) {
  if (out == nullptr) return null_argument("out");
  mh_object* raw = nullptr;
  if (mh_error* error = call_object(client, "GET", path, nullptr, &raw)) return error;
  std::unique_ptr<mh_object> response(raw);
  auto list = std::make_unique<mh_list>();
  if (const auto* data = response->value.if_contains("data"); data && data->is_array()) {
    for (const auto& item : data->as_array()) {
      if (item.is_object()) list->items.push_back(make_object(item.as_object()));
    }
  }
  if (const auto* more = response->value.if_contains("has_more"); more && more->is_bool()) {
    list->has_more = more->as_bool();
  }
  if (const auto* last = response->value.if_contains("last_id"); last && last->is_string()) {
    list->last_id = last->as_string();
  }
  list->response = std::move(response);
  *out = list.release();
  return nullptr;
}

mh::sdk::ProgressFn progress_of(mh_progress_fn fn, void* user_data) {
  if (fn == nullptr) return {};
  return [fn, user_data](uint64_t done, uint64_t total) { return fn(user_data, done, total) == 0; };
}

// A multipart/form-data frame around a file: the `purpose` field, then the file part.
mh::sdk::FileBody multipart_upload(const std::filesystem::path& path, std::string_view purpose) {
  const std::string boundary = "mh-" + mh::secure_random_base64url(24);
  std::string filename;
  for (char c : path.filename().string()) {
    // The form-data escapes of a quoted filename.
    if (c == '"') {
      filename += "%22";
    } else if (c == '\r') {
      filename += "%0D";
    } else if (c == '\n') {
      filename += "%0A";
    } else {
      filename += c;
    }
  }
  mh::sdk::FileBody body;
  body.content_type = "multipart/form-data; boundary=" + boundary;
  body.prefix = fmt::format(
      "--{0}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\n{1}\r\n"
      "--{0}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{2}\"\r\n"
      "Content-Type: application/octet-stream\r\n\r\n",
      boundary, purpose, filename);
  body.file = path;
  body.suffix = fmt::format("\r\n--{}--\r\n", boundary);
  return body;
}

}  // namespace

extern "C" {

const char* mh_object_string(const mh_object* object, const char* field) {
  const json::value* v = find(object, field);
  return v != nullptr && v->is_string() ? v->as_string().c_str() : "";
}
int64_t mh_object_int(const mh_object* object, const char* field) {
  const json::value* v = find(object, field);
  if (v == nullptr) return 0;
  if (v->is_int64()) return v->as_int64();
  if (v->is_uint64()) return static_cast<int64_t>(v->as_uint64());
  if (v->is_double()) return static_cast<int64_t>(v->as_double());
  return 0;
}
double mh_object_number(const mh_object* object, const char* field) {
  const json::value* v = find(object, field);
  return v != nullptr && v->is_number() ? v->to_number<double>() : 0.0;
}
int mh_object_bool(const mh_object* object, const char* field) {
  const json::value* v = find(object, field);
  return v != nullptr && v->is_bool() && v->as_bool() ? 1 : 0;
}
int mh_object_has(const mh_object* object, const char* field) {
  const json::value* v = find(object, field);
  return v != nullptr && !v->is_null() ? 1 : 0;
}
const char* mh_object_json(const mh_object* object) { return object ? object->text.c_str() : ""; }
void mh_object_delete(mh_object* object) { delete object; }

size_t mh_list_count(const mh_list* list) { return list ? list->items.size() : 0; }
const mh_object* mh_list_item(const mh_list* list, size_t index) {
  if (list == nullptr || index >= list->items.size()) return nullptr;
  return list->items[index].get();
}
int mh_list_has_more(const mh_list* list) { return list && list->has_more ? 1 : 0; }
const char* mh_list_last_id(const mh_list* list) { return list ? list->last_id.c_str() : ""; }
const mh_object* mh_list_response(const mh_list* list) {
  return list ? list->response.get() : nullptr;
}
void mh_list_delete(mh_list* list) { delete list; }

mh_error* mh_client_upload_file(mh_client* client, const char* path, const char* purpose,
                                mh_progress_fn progress, void* user_data, mh_object** out) {
  return guarded([&]() -> mh_error* {
    if (empty(path)) return null_argument("path");
    if (empty(purpose)) return null_argument("purpose");
    if (out == nullptr) return null_argument("out");
    if (mh_error* bad = check_client(client)) return bad;
    auto result = client->http->upload("POST", "/v1/files", multipart_upload(path, purpose),
                                       progress_of(progress, user_data));
    if (auto* error = std::get_if<CallError>(&result)) return make_error(*error);
    const auto& response = std::get<HttpResponse>(result);
    auto object = object_of(response, "POST /v1/files");
    if (!object.ok()) return make_error(object.status(), response.status, response.request_id);
    *out = make_object(std::move(*object)).release();
    return nullptr;
  });
}

mh_error* mh_client_list_files(mh_client* client, const char* purpose, const char* after, int limit,
                               mh_list** out) {
  return guarded([&]() -> mh_error* {
    return call_list(
        client,
        "/v1/files" +
            query({{"purpose", text(purpose)}, {"after", text(after)}, {"limit", positive(limit)}}),
        out);
  });
}

mh_error* mh_client_get_file(mh_client* client, const char* file_id, mh_object** out) {
  return guarded([&]() -> mh_error* {
    if (empty(file_id)) return null_argument("file_id");
    if (out == nullptr) return null_argument("out");
    return call_object(client, "GET", "/v1/files/" + segment(file_id), nullptr, out);
  });
}

mh_error* mh_client_download_file(mh_client* client, const char* file_id,
                                  const char* destination_path, mh_progress_fn progress,
                                  void* user_data) {
  return guarded([&]() -> mh_error* {
    if (empty(file_id)) return null_argument("file_id");
    if (empty(destination_path)) return null_argument("destination_path");
    if (mh_error* bad = check_client(client)) return bad;
    auto result = client->http->download("/v1/files/" + segment(file_id) + "/content",
                                         destination_path, progress_of(progress, user_data));
    if (auto* error = std::get_if<CallError>(&result)) return make_error(*error);
    return nullptr;
  });
}

mh_error* mh_client_delete_file(mh_client* client, const char* file_id) {
  return guarded([&]() -> mh_error* {
    if (empty(file_id)) return null_argument("file_id");
    return call_object(client, "DELETE", "/v1/files/" + segment(file_id), nullptr, nullptr);
  });
}

mh_error* mh_client_register_model(mh_client* client, const char* name, const char* config_file_id,
                                   const char* weights_file_id, const char* tokenizer_file_id,
                                   mh_object** out) {
  return guarded([&]() -> mh_error* {
    if (empty(name)) return null_argument("name");
    if (empty(config_file_id)) return null_argument("config_file_id");
    if (empty(weights_file_id)) return null_argument("weights_file_id");
    if (empty(tokenizer_file_id)) return null_argument("tokenizer_file_id");
    if (out == nullptr) return null_argument("out");
    json::object body{{"name", name},
                      {"files",
                       {{"config.json", config_file_id},
                        {"model.safetensors", weights_file_id},
                        {"tokenizer.json", tokenizer_file_id}}}};
    return call_object(client, "POST", "/v1/models", &body, out);
  });
}

mh_error* mh_client_register_model_json(mh_client* client, const char* request_json,
                                        mh_object** out) {
  return guarded([&]() -> mh_error* { return post_request(client, "/v1/models", request_json, out); });
}

namespace {

// The files of a model directory the platform takes, in upload order, or what is wrong with
// the directory (checked before anything is uploaded).
mh::Result<std::vector<std::string>> model_directory_files(const std::filesystem::path& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return mh::invalid_argument(dir.string() + " is not a directory");
  std::vector<std::string> names = {"config.json", "tokenizer.json"};
  const bool whole = fs::is_regular_file(dir / "model.safetensors", ec);
  const bool index = fs::is_regular_file(dir / "model.safetensors.index.json", ec);
  if (whole == index) {
    return mh::invalid_argument(
        dir.string() + (whole ? " has both model.safetensors and model.safetensors.index.json"
                              : " has no model.safetensors (nor model.safetensors.index.json)"));
  }
  for (const char* optional :
       {"tokenizer_config.json", "chat_template.jinja", "generation_config.json"}) {
    if (fs::is_regular_file(dir / optional, ec)) names.emplace_back(optional);
  }
  if (whole) {
    names.emplace_back("model.safetensors");
  } else {
    // The shards, each once, as the index names them.
    names.emplace_back("model.safetensors.index.json");
    std::ifstream in(dir / "model.safetensors.index.json", std::ios::binary);
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    boost::system::error_code jec;
    const json::value idx = json::parse(text, jec);
    const json::value* map = !jec && idx.is_object() ? idx.as_object().if_contains("weight_map")
                                                    : nullptr;
    if (map == nullptr || !map->is_object()) {
      return mh::invalid_argument(
          "model.safetensors.index.json: \"weight_map\" must be an object of tensor names to "
          "shard files");
    }
    std::vector<std::string> shards;
    for (const auto& [tensor, file] : map->as_object()) {
      if (!file.is_string() || file.as_string().empty() ||
          file.as_string().find('/') != json::string::npos) {
        return mh::invalid_argument(fmt::format(
            "model.safetensors.index.json: the file for \"{}\" is not a plain file name",
            std::string_view(tensor)));
      }
      const std::string shard(file.as_string());
      if (std::find(shards.begin(), shards.end(), shard) == shards.end()) shards.push_back(shard);
    }
    std::sort(shards.begin(), shards.end());
    names.insert(names.end(), shards.begin(), shards.end());
  }
  for (const auto& name : names) {
    if (!fs::is_regular_file(dir / name, ec)) {
      return mh::invalid_argument(fmt::format("{} has no {}", dir.string(), name));
    }
  }
  return names;
}

}  // namespace

mh_error* mh_client_upload_model(mh_client* client, const char* directory, const char* name,
                                 mh_progress_fn progress, void* user_data, mh_object** out) {
  return guarded([&]() -> mh_error* {
    namespace fs = std::filesystem;
    if (empty(directory)) return null_argument("directory");
    if (empty(name)) return null_argument("name");
    if (out == nullptr) return null_argument("out");
    if (mh_error* bad = check_client(client)) return bad;
    const fs::path dir(directory);
    auto names = model_directory_files(dir);
    if (!names.ok()) return make_error(names.status());
    uint64_t total = 0, done = 0;
    std::error_code ec;
    for (const auto& file : *names) total += fs::file_size(dir / file, ec);
    // Every file is uploaded before the model is registered; if anything fails, the files
    // uploaded so far are deleted again, so a failed upload leaves nothing behind.
    std::vector<std::string> uploaded;
    auto undo = [&](mh_error* error) {
      for (const auto& id : uploaded) {
        if (mh_error* e = mh_client_delete_file(client, id.c_str())) mh_error_delete(e);
      }
      return error;
    };
    json::object files;
    for (const auto& file : *names) {
      const uint64_t before = done;
      mh::sdk::ProgressFn each;
      if (progress != nullptr) {
        each = [&](uint64_t part, uint64_t) { return progress(user_data, before + part, total) == 0; };
      }
      auto result = client->http->upload("POST", "/v1/files", multipart_upload(dir / file, "model"),
                                         each);
      if (auto* error = std::get_if<CallError>(&result)) return undo(make_error(*error));
      const auto& response = std::get<HttpResponse>(result);
      auto object = object_of(response, "POST /v1/files");
      if (!object.ok()) return undo(make_error(object.status(), response.status, response.request_id));
      const json::value* id = object->if_contains("id");
      if (id == nullptr || !id->is_string()) {
        return undo(make_error(mh::internal_error("POST /v1/files answered without an id")));
      }
      uploaded.emplace_back(id->as_string());
      files[file] = id->as_string();
      done += fs::file_size(dir / file, ec);
    }
    json::object body{{"name", name}, {"files", std::move(files)}};
    if (mh_error* error = call_object(client, "POST", "/v1/models", &body, out)) return undo(error);
    return nullptr;
  });
}

mh_error* mh_client_list_models(mh_client* client, const char* after, int limit, mh_list** out) {
  return guarded([&]() -> mh_error* {
    return call_list(
        client, "/v1/models" + query({{"after", text(after)}, {"limit", positive(limit)}}), out);
  });
}

mh_error* mh_client_get_model(mh_client* client, const char* model_id, mh_object** out) {
  return guarded([&]() -> mh_error* {
    if (empty(model_id)) return null_argument("model_id");
    if (out == nullptr) return null_argument("out");
    return call_object(client, "GET", "/v1/models/" + segment(model_id), nullptr, out);
  });
}

mh_error* mh_client_delete_model(mh_client* client, const char* model_id) {
  return guarded([&]() -> mh_error* {
    if (empty(model_id)) return null_argument("model_id");
    return call_object(client, "DELETE", "/v1/models/" + segment(model_id), nullptr, nullptr);
  });
}

mh_error* mh_client_create_fine_tuning_job(mh_client* client, const char* model,
                                           const char* training_file, const char* validation_file,
                                           const char* suffix, int n_epochs, int batch_size,
                                           double learning_rate_multiplier, int64_t seed,
                                           mh_object** out) {
  return guarded([&]() -> mh_error* {
    if (empty(model)) return null_argument("model");
    if (empty(training_file)) return null_argument("training_file");
    if (out == nullptr) return null_argument("out");
    json::object hyper;
    hyper["n_epochs"] = n_epochs > 0 ? json::value(n_epochs) : json::value("auto");
    hyper["batch_size"] = batch_size > 0 ? json::value(batch_size) : json::value("auto");
    hyper["learning_rate_multiplier"] =
        learning_rate_multiplier > 0 ? json::value(learning_rate_multiplier) : json::value("auto");
    json::object body{
        {"model", model}, {"training_file", training_file}, {"hyperparameters", hyper}};
    if (!empty(validation_file)) body["validation_file"] = validation_file;
    if (!empty(suffix)) body["suffix"] = suffix;
    if (seed >= 0) body["seed"] = seed;
    return call_object(client, "POST", "/v1/fine_tuning/jobs", &body, out);
  });
}

mh_error* mh_client_create_fine_tuning_job_json(mh_client* client, const char* request_json,
                                                mh_object** out) {
  return guarded([&]() -> mh_error* {
    return post_request(client, "/v1/fine_tuning/jobs", request_json, out);
  });
}

mh_error* mh_client_list_fine_tuning_jobs(mh_client* client, const char* after, int limit,
                                          mh_list** out) {
  return guarded([&]() -> mh_error* {
    return call_list(
        client,
        "/v1/fine_tuning/jobs" + query({{"after", text(after)}, {"limit", positive(limit)}}), out);
  });
}

mh_error* mh_client_get_fine_tuning_job(mh_client* client, const char* job_id, mh_object** out) {
  return guarded([&]() -> mh_error* {
    if (empty(job_id)) return null_argument("job_id");
    if (out == nullptr) return null_argument("out");
    return call_object(client, "GET", "/v1/fine_tuning/jobs/" + segment(job_id), nullptr, out);
  });
}

mh_error* mh_client_cancel_fine_tuning_job(mh_client* client, const char* job_id, mh_object** out) {
  return guarded([&]() -> mh_error* {
    if (empty(job_id)) return null_argument("job_id");
    return call_object(client, "POST", "/v1/fine_tuning/jobs/" + segment(job_id) + "/cancel",
                       nullptr, out);
  });
}

mh_error* mh_client_list_fine_tuning_events(mh_client* client, const char* job_id,
                                            const char* after, int limit, mh_list** out) {
  return guarded([&]() -> mh_error* {
    if (empty(job_id)) return null_argument("job_id");
    return call_list(client,
                     "/v1/fine_tuning/jobs/" + segment(job_id) + "/events" +
                         query({{"after", text(after)}, {"limit", positive(limit)}}),
                     out);
  });
}

mh_error* mh_client_wait_fine_tuning_job(mh_client* client, const char* job_id,
                                         mh_event_fn on_event, void* user_data,
                                         int poll_interval_ms, mh_object** out) {
  return guarded([&]() -> mh_error* {
    if (empty(job_id)) return null_argument("job_id");
    if (out == nullptr) return null_argument("out");
    if (mh_error* bad = check_client(client)) return bad;
    const auto interval = std::chrono::milliseconds(poll_interval_ms > 0 ? poll_interval_ms : 500);
    std::string after;
    for (;;) {
      // The job's events as they are recorded (a server-sent event stream), from the last one
      // seen; the stream ends with [DONE] once the job has ended. A stream cut short (a
      // restart, a quiet queue outlasting the read timeout) is opened again after `interval`.
      bool done = false, stopped = false;
      SseReader sse;
      std::string path = "/v1/fine_tuning/jobs/" + segment(job_id) + "/events?stream=true";
      if (!after.empty()) path += "&after=" + segment(after);
      auto result = client->http->stream("GET", path, "", [&](std::string_view piece) {
        return sse.feed(piece, [&](std::string_view line) -> mh::Result<bool> {
          if (line == "[DONE]") {
            done = true;
            return true;
          }
          boost::system::error_code ec;
          json::value v = json::parse(line, ec);
          if (ec || !v.is_object()) {
            return mh::internal_error("the server sent an event that is not a JSON object");
          }
          auto event = make_object(std::move(v.as_object()));
          after = mh_object_string(event.get(), "id");
          if (on_event != nullptr && on_event(user_data, event.get()) != 0) {
            stopped = true;
            return false;
          }
          return true;
        });
      });
      if (stopped) {
        return make_error(mh::Status(mh::Code::kCancelled, "the wait was stopped by its caller"));
      }
      if (auto* error = std::get_if<CallError>(&result)) {
        const mh::Code code = error->status.code();
        // The server's answer (404 for a job not the caller's, 401, …) ends the wait; the
        // connection's failures do not.
        if (error->http_status != 0 ||
            (code != mh::Code::kUnavailable && code != mh::Code::kDeadlineExceeded)) {
          return make_error(*error);
        }
      }
      if (done) return mh_client_get_fine_tuning_job(client, job_id, out);
      std::this_thread::sleep_for(interval);
    }
  });
}

mh_error* mh_client_create_deployment(mh_client* client, const char* model, int replicas,
                                      mh_object** out) {
  return guarded([&]() -> mh_error* {
    if (empty(model)) return null_argument("model");
    if (out == nullptr) return null_argument("out");
    json::object body{{"model", model}, {"replicas", replicas > 0 ? replicas : 1}};
    return call_object(client, "POST", "/v1/deployments", &body, out);
  });
}

mh_error* mh_client_create_deployment_json(mh_client* client, const char* request_json,
                                           mh_object** out) {
  return guarded(
      [&]() -> mh_error* { return post_request(client, "/v1/deployments", request_json, out); });
}

mh_error* mh_client_list_deployments(mh_client* client, const char* after, int limit,
                                     mh_list** out) {
  return guarded([&]() -> mh_error* {
    return call_list(
        client, "/v1/deployments" + query({{"after", text(after)}, {"limit", positive(limit)}}),
        out);
  });
}

mh_error* mh_client_get_deployment(mh_client* client, const char* deployment_id, mh_object** out) {
  return guarded([&]() -> mh_error* {
    if (empty(deployment_id)) return null_argument("deployment_id");
    if (out == nullptr) return null_argument("out");
    return call_object(client, "GET", "/v1/deployments/" + segment(deployment_id), nullptr, out);
  });
}

mh_error* mh_client_scale_deployment(mh_client* client, const char* deployment_id, int replicas,
                                     mh_object** out) {
  return guarded([&]() -> mh_error* {
    if (empty(deployment_id)) return null_argument("deployment_id");
    if (replicas < 0) return make_error(mh::invalid_argument("replicas must not be negative"));
    json::object body{{"replicas", replicas}};
    return call_object(client, "PATCH", "/v1/deployments/" + segment(deployment_id), &body, out);
  });
}

mh_error* mh_client_delete_deployment(mh_client* client, const char* deployment_id) {
  return guarded([&]() -> mh_error* {
    if (empty(deployment_id)) return null_argument("deployment_id");
    return call_object(client, "DELETE", "/v1/deployments/" + segment(deployment_id), nullptr,
                       nullptr);
  });
}

mh_error* mh_client_wait_deployment(mh_client* client, const char* deployment_id, int timeout_ms,
                                    mh_object** out) {
  return guarded([&]() -> mh_error* {
    if (empty(deployment_id)) return null_argument("deployment_id");
    if (out == nullptr) return null_argument("out");
    const auto deadline = std::chrono::steady_clock::now() +
                          std::chrono::milliseconds(timeout_ms > 0 ? timeout_ms : 600'000);
    for (;;) {
      mh_object* d = nullptr;
      if (mh_error* e = mh_client_get_deployment(client, deployment_id, &d)) return e;
      const std::string status = mh_object_string(d, "status");
      if (status == "ready" || status == "failed" || status == "stopped") {
        *out = d;
        return nullptr;
      }
      mh_object_delete(d);
      if (std::chrono::steady_clock::now() >= deadline) {
        return make_error(
            mh::Status(mh::Code::kDeadlineExceeded,
                       fmt::format("deployment '{}' is still {} after {} ms", deployment_id, status,
                                   timeout_ms > 0 ? timeout_ms : 600'000)));
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  });
}

namespace {

// Reads server-sent events out of the pieces of a stream, whole events at a time, and builds
// the answer a non-streamed request would have had from them.
class CompletionStream {
 public:
  CompletionStream(bool chat, mh_text_fn on_text, void* user_data)
      : chat_(chat), on_text_(on_text), user_data_(user_data) {}

  // false when the caller asked to stop; an error for a malformed stream.
  mh::Result<bool> feed(std::string_view piece) {
    return sse_.feed(piece, [&](std::string_view line) -> mh::Result<bool> {
      if (line == "[DONE]") return true;
      return data(line);
    });
  }

  json::object result() const {
    json::object choice{{"index", 0}, {"finish_reason", finish_}, {"logprobs", nullptr}};
    if (chat_) {
      choice["message"] = {{"role", "assistant"}, {"content", text_}};
    } else {
      choice["text"] = text_;
    }
    json::object out{{"id", id_},
                     {"object", chat_ ? "chat.completion" : "text_completion"},
                     {"created", created_},
                     {"model", model_},
                     {"choices", json::array{std::move(choice)}}};
    if (!usage_.is_null()) out["usage"] = usage_;
    return out;
  }

 private:
  mh::Result<bool> data(std::string_view line) {
    boost::system::error_code ec;
    json::value v = json::parse(line, ec);
    if (ec || !v.is_object()) {
      return mh::internal_error("the server sent an event that is not a JSON object");
    }
    const json::object& o = v.as_object();
    if (const json::value* error = o.if_contains("error")) {
      const json::value* message =
          error->is_object() ? error->as_object().if_contains("message") : nullptr;
      return mh::Status(mh::Code::kInternal, message && message->is_string()
                                                 ? std::string(message->as_string())
                                                 : "the stream ended with an error");
    }
    if (const json::value* id = o.if_contains("id"); id && id->is_string()) id_ = id->as_string();
    if (const json::value* m = o.if_contains("model"); m && m->is_string()) model_ = m->as_string();
    if (const json::value* c = o.if_contains("created"); c && c->is_int64())
      created_ = c->as_int64();
    if (const json::value* u = o.if_contains("usage"); u && u->is_object()) usage_ = *u;
    const json::value* choices = o.if_contains("choices");
    if (choices == nullptr || !choices->is_array()) return true;
    for (const auto& c : choices->as_array()) {
      if (!c.is_object()) continue;
      const json::object& choice = c.as_object();
      if (const json::value* f = choice.if_contains("finish_reason"); f && f->is_string()) {
        finish_ = f->as_string();
      }
      const json::value* piece = nullptr;
      if (chat_) {
        const json::value* delta = choice.if_contains("delta");
        piece = delta && delta->is_object() ? delta->as_object().if_contains("content") : nullptr;
      } else {
        piece = choice.if_contains("text");
      }
      if (piece == nullptr || !piece->is_string() || piece->as_string().empty()) continue;
      const std::string_view t = piece->as_string();
      text_ += t;
      if (on_text_ != nullptr && on_text_(user_data_, t.data(), t.size()) != 0) return false;
    }
    return true;
  }

  const bool chat_;
  mh_text_fn on_text_;
  void* user_data_;
  SseReader sse_;
  std::string id_, model_, text_;
  json::value finish_ = nullptr;
  json::value usage_ = nullptr;
  int64_t created_ = 0;
};

mh_error* complete(mh_client* client, bool chat, const char* request_json, mh_text_fn on_text,
                   void* user_data, mh_object** out) {
  json::value request;
  if (mh_error* bad = parse_request(request_json, out, &request)) return bad;
  const std::string path = chat ? "/v1/chat/completions" : "/v1/completions";
  if (on_text == nullptr) {
    request.as_object().erase("stream");
    return call_object(client, "POST", path, &request.as_object(), out);
  }
  if (mh_error* bad = check_client(client)) return bad;
  request.as_object()["stream"] = true;
  request.as_object()["stream_options"] = {{"include_usage", true}};
  CompletionStream stream(chat, on_text, user_data);
  auto result = client->http->stream("POST", path, json::serialize(request),
                                     [&](std::string_view piece) { return stream.feed(piece); });
  if (auto* error = std::get_if<CallError>(&result)) return make_error(*error);
  *out = make_object(stream.result()).release();
  return nullptr;
}

}  // namespace

mh_error* mh_client_chat_completion(mh_client* client, const char* request_json, mh_text_fn on_text,
                                    void* user_data, mh_object** out) {
  return guarded(
      [&]() -> mh_error* { return complete(client, true, request_json, on_text, user_data, out); });
}

mh_error* mh_client_completion(mh_client* client, const char* request_json, mh_text_fn on_text,
                               void* user_data, mh_object** out) {
  return guarded([&]() -> mh_error* {
    return complete(client, false, request_json, on_text, user_data, out);
  });
}

mh_error* mh_client_get_tenant(mh_client* client, mh_object** out) {
  return guarded([&]() -> mh_error* {
    if (out == nullptr) return null_argument("out");
    return call_object(client, "GET", "/v1/tenant", nullptr, out);
  });
}

mh_error* mh_client_create_key(mh_client* client, const char* name, const char* role,
                               mh_object** out) {
  return guarded([&]() -> mh_error* {
    if (empty(name)) return null_argument("name");
    if (out == nullptr) return null_argument("out");
    json::object body{{"name", name}};
    if (!empty(role)) body["role"] = role;
    return call_object(client, "POST", "/v1/keys", &body, out);
  });
}

mh_error* mh_client_list_keys(mh_client* client, const char* after, int limit, mh_list** out) {
  return guarded([&] {
    return call_list(client,
                     "/v1/keys" + query({{"after", text(after)}, {"limit", positive(limit)}}), out);
  });
}

mh_error* mh_client_revoke_key(mh_client* client, const char* key_id, mh_object** out) {
  return guarded([&]() -> mh_error* {
    if (empty(key_id)) return null_argument("key_id");
    return call_object(client, "DELETE", "/v1/keys/" + segment(key_id), nullptr, out);
  });
}

mh_error* mh_client_get_usage(mh_client* client, int64_t start_time, int64_t end_time,
                              const char* bucket_width, const char* group_by, const char* dimension,
                              mh_list** out) {
  return guarded([&]() -> mh_error* {
    return call_list(client,
                     "/v1/usage" + query({{"bucket_width", text(bucket_width)},
                                          {"start_time", positive(start_time)},
                                          {"end_time", positive(end_time)},
                                          {"group_by", text(group_by)},
                                          {"dimension", text(dimension)}}),
                     out);
  });
}

mh_error* mh_client_admin_create_tenant(mh_client* client, const char* tenant_id, const char* name,
                                        mh_object** out) {
  return guarded([&]() -> mh_error* {
    if (empty(tenant_id)) return null_argument("tenant_id");
    if (out == nullptr) return null_argument("out");
    json::object body{{"id", tenant_id}};
    if (!empty(name)) body["name"] = name;
    return call_object(client, "POST", "/v1/admin/tenants", &body, out);
  });
}

mh_error* mh_client_admin_list_tenants(mh_client* client, const char* after, int limit,
                                       mh_list** out) {
  return guarded([&] {
    return call_list(
        client, "/v1/admin/tenants" + query({{"after", text(after)}, {"limit", positive(limit)}}),
        out);
  });
}

mh_error* mh_client_admin_get_tenant(mh_client* client, const char* tenant_id, mh_object** out) {
  return guarded([&]() -> mh_error* {
    if (empty(tenant_id)) return null_argument("tenant_id");
    if (out == nullptr) return null_argument("out");
    return call_object(client, "GET", "/v1/admin/tenants/" + segment(tenant_id), nullptr, out);
  });
}

mh_error* mh_client_admin_suspend_tenant(mh_client* client, const char* tenant_id,
                                         const char* reason, mh_object** out) {
  return guarded([&]() -> mh_error* {
    if (empty(tenant_id)) return null_argument("tenant_id");
    json::object body;
    if (!empty(reason)) body["reason"] = reason;
    return call_object(client, "POST", "/v1/admin/tenants/" + segment(tenant_id) + "/suspend",
                       &body, out);
  });
}

mh_error* mh_client_admin_resume_tenant(mh_client* client, const char* tenant_id, mh_object** out) {
  return guarded([&]() -> mh_error* {
    if (empty(tenant_id)) return null_argument("tenant_id");
    return call_object(client, "POST", "/v1/admin/tenants/" + segment(tenant_id) + "/resume",
                       nullptr, out);
  });
}

mh_error* mh_client_admin_set_tenant_limits(mh_client* client, const char* tenant_id,
                                            double rate_limit_rps, int64_t rate_limit_burst,
                                            int64_t storage_limit_bytes, mh_object** out) {
  return guarded([&]() -> mh_error* {
    if (empty(tenant_id)) return null_argument("tenant_id");
    json::object body;
    if (rate_limit_rps >= 0) body["rate_limit_rps"] = rate_limit_rps;
    if (rate_limit_burst >= 0) body["rate_limit_burst"] = rate_limit_burst;
    if (storage_limit_bytes >= 0) body["storage_limit_bytes"] = storage_limit_bytes;
    return call_object(client, "POST", "/v1/admin/tenants/" + segment(tenant_id) + "/limits", &body,
                       out);
  });
}

mh_error* mh_client_admin_create_tenant_key(mh_client* client, const char* tenant_id,
                                            const char* name, const char* role, mh_object** out) {
  return guarded([&]() -> mh_error* {
    if (empty(tenant_id)) return null_argument("tenant_id");
    if (out == nullptr) return null_argument("out");
    json::object body;
    if (!empty(name)) body["name"] = name;
    if (!empty(role)) body["role"] = role;
    return call_object(client, "POST", "/v1/admin/tenants/" + segment(tenant_id) + "/keys", &body,
                       out);
  });
}

mh_error* mh_client_admin_export_usage(mh_client* client, const char* tenant_id, int64_t start_time,
                                       int64_t end_time, char** csv) {
  return guarded([&]() -> mh_error* {
    if (csv == nullptr) return null_argument("csv");
    if (mh_error* bad = check_client(client)) return bad;
    auto result = client->http->call(
        "GET", "/v1/admin/usage/export" + query({{"tenant", text(tenant_id)},
                                                 {"start_time", positive(start_time)},
                                                 {"end_time", positive(end_time)}}));
    if (auto* error = std::get_if<CallError>(&result)) return make_error(*error);
    *csv = copy_string(std::get<HttpResponse>(result).body);
    return nullptr;
  });
}

}  // extern "C"
