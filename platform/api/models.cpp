#include "platform/api/models.h"

#include <fmt/format.h>

#include <boost/json.hpp>

#include "platform/base/time.h"
#include "platform/engine/model.h"
#include "tenants/tenant_scope.h"

namespace mh::api {

namespace json = boost::json;
namespace fs = std::filesystem;

namespace {

constexpr std::string_view kColumns =
    "id, tenant_id, kind, family, parameters, context_length, vocab_size, config_file, "
    "weights_file, tokenizer_file, directory, job_id, created_at";
constexpr std::string_view kCustomPrefix = "custom:";
// The files a custom model is made of, by their names in the model's directory.
constexpr std::string_view kModelFiles[] = {"config.json", "model.safetensors", "tokenizer.json"};

ModelRecord from_row(const store::Row& r) {
  auto text = [&](size_t i) { return r.is_null(i) ? std::string() : r.text(i); };
  return {r.text(0), r.text(1), r.text(2), r.text(3),  r.integer(4), r.integer(5), r.integer(6),
          text(7),   text(8),   text(9),   r.text(10), text(11),     r.integer(12)};
}

json::object model_json(const ModelRecord& m) {
  json::object o{{"id", m.id},
                 {"object", "model"},
                 {"created", m.created_at},
                 {"owned_by", m.tenant},
                 {"kind", m.kind},
                 {"family", m.family},
                 {"parameters", m.parameters},
                 {"context_length", m.context_length},
                 {"vocab_size", m.vocab_size}};
  if (m.kind == "custom") {
    o["files"] = {{"config.json", m.config_file},
                  {"model.safetensors", m.weights_file},
                  {"tokenizer.json", m.tokenizer_file}};
  } else {
    o["fine_tuning_job"] = m.job_id;
  }
  return o;
}

Status insert_model(store::Database& db, const ModelRecord& m) {
  return db.write([&](store::Session& s) -> Status {
    return s
        .exec(fmt::format("INSERT INTO models ({}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                          kColumns),
              {m.id, m.tenant, m.kind, m.family, m.parameters, m.context_length, m.vocab_size,
               store::text_or_null(m.config_file), store::text_or_null(m.weights_file),
               store::text_or_null(m.tokenizer_file), m.directory, store::text_or_null(m.job_id),
               m.created_at})
        .status();
  });
}

bool valid_name(std::string_view name) {
  if (name.empty() || name.size() > 64 || name.front() == '.' || name.front() == '-') return false;
  for (char c : name) {
    const bool ok =
        (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

}  // namespace

Result<ModelRecord> ModelStore::register_custom(std::string_view tenant_view,
                                                const json::object& body) {
  const std::string tenant(tenant_view);
  MH_ASSIGN_OR_RETURN(int64_t now, clock_.now());
  MH_TRY(entitlements_.check(tenant, "custom_models", now));

  const json::value* name_v = body.if_contains("name");
  if (name_v == nullptr || !name_v->is_string() || !valid_name(name_v->as_string())) {
    return invalid_argument(
        "\"name\" must be 1-64 characters of a-z 0-9 . _ - (not starting "
        "with . or -)",
        "name");
  }
  const std::string name(name_v->as_string());
  ModelRecord m;
  m.id = std::string(kCustomPrefix) + name;
  m.tenant = tenant;
  m.kind = "custom";
  m.created_at = now;
  m.directory = (root_ / tenant / name).string();
  if (get(tenant, m.id).ok()) {
    return conflict(fmt::format("model '{}' already exists; delete it first", m.id));
  }
  const json::value* files_v = body.if_contains("files");
  if (files_v == nullptr || !files_v->is_object()) {
    return invalid_argument(
        "\"files\" must map config.json, model.safetensors and "
        "tokenizer.json to uploaded file ids",
        "files");
  }
  const json::object& files = files_v->as_object();
  for (const auto& [key, value] : files) {
    if (std::find(std::begin(kModelFiles), std::end(kModelFiles), std::string_view(key)) ==
        std::end(kModelFiles)) {
      return invalid_argument(fmt::format("files.{}: a custom model is made of config.json, "
                                          "model.safetensors and tokenizer.json",
                                          std::string_view(key)),
                              "files");
    }
  }
  // Each file must be the tenant's, uploaded for a model.
  std::vector<std::pair<std::string, fs::path>> links;
  std::string* ids[] = {&m.config_file, &m.weights_file, &m.tokenizer_file};
  for (size_t i = 0; i < std::size(kModelFiles); ++i) {
    const std::string param = fmt::format("files.{}", kModelFiles[i]);
    const json::value* id = files.if_contains(kModelFiles[i]);
    if (id == nullptr || !id->is_string()) {
      return invalid_argument(param + " must be the id of an uploaded file", param);
    }
    MH_ASSIGN_OR_RETURN(FileRecord f, files_.get(tenant, id->as_string()));
    if (f.purpose != "model") {
      return failed_precondition(
          fmt::format("{}: file '{}' was uploaded with purpose '{}'; "
                      "model files need purpose 'model'",
                      param, f.id, f.purpose));
    }
    *ids[i] = f.id;
    MH_ASSIGN_OR_RETURN(fs::path blob, files_.content(tenant, f.id));
    links.emplace_back(std::string(kModelFiles[i]), fs::absolute(blob));
  }

  // Lay the model out as a directory of links to its blobs, validate it there, and only then
  // put it in place and record it.
  const fs::path final_dir = m.directory;
  fs::path staging = final_dir;
  staging += ".staging";
  std::error_code ec;
  fs::remove_all(staging, ec);
  fs::create_directories(staging, ec);
  if (ec) return internal_error(fmt::format("creating {}: {}", staging.string(), ec.message()));
  auto discard = [&] { fs::remove_all(staging, ec); };
  for (const auto& [file, blob] : links) {
    fs::create_symlink(blob, staging / file, ec);
    if (ec) {
      discard();
      return internal_error(fmt::format("linking {}: {}", file, ec.message()));
    }
  }
  auto summary = engine::inspect_model(staging);
  if (!summary.ok()) {
    discard();
    return invalid_argument(summary.status().message(), "files");
  }
  const auto license = entitlements_.find(tenant);
  const int64_t allowed = license ? license->license.terms.limits.max_model_params : 0;
  if (summary->parameters > allowed) {
    discard();
    return permission_denied(fmt::format(
        "the model has {} parameters; license '{}' allows at most {} (max_model_params)",
        summary->parameters, license ? license->license.terms.id : "", allowed));
  }
  m.family = std::string(engine::family_name(summary->config.family));
  m.parameters = summary->parameters;
  m.context_length = summary->config.max_positions;
  m.vocab_size = summary->config.vocab_size;
  fs::remove_all(final_dir, ec);
  fs::rename(staging, final_dir, ec);
  if (ec) {
    discard();
    return internal_error(fmt::format("placing {}: {}", final_dir.string(), ec.message()));
  }
  Status recorded = insert_model(db_, m);
  if (!recorded.ok()) {
    fs::remove_all(final_dir, ec);
    return recorded;
  }
  return m;
}

Result<ModelRecord> ModelStore::get(std::string_view tenant, std::string_view id) const {
  ModelRecord m;
  MH_TRY(db_.read([&](store::Session& s) -> Status {
    tenants::TenantScope scope(s, std::string(tenant));
    MH_ASSIGN_OR_RETURN(auto row, scope.get("models", kColumns, id, "model"));
    m = from_row(row);
    return {};
  }));
  return m;
}

Result<std::vector<ModelRecord>> ModelStore::list(std::string_view tenant, std::string_view after,
                                                  int64_t limit, bool* has_more) const {
  std::vector<ModelRecord> out;
  MH_TRY(db_.read([&](store::Session& s) -> Status {
    tenants::TenantScope scope(s, std::string(tenant));
    MH_ASSIGN_OR_RETURN(auto rows, scope.page("models", kColumns, after, limit, has_more));
    for (const auto& row : rows) out.push_back(from_row(row));
    return {};
  }));
  return out;
}

Result<ModelRecord> ModelStore::remove(std::string_view tenant, std::string_view id) {
  ModelRecord m;
  MH_TRY(db_.write([&](store::Session& s) -> Status {
    tenants::TenantScope scope(s, std::string(tenant));
    MH_ASSIGN_OR_RETURN(auto row, scope.get("models", kColumns, id, "model"));
    m = from_row(row);
    return s.exec("DELETE FROM models WHERE id = ? AND tenant_id = ?", {m.id, m.tenant}).status();
  }));
  std::error_code ec;
  fs::remove_all(m.directory, ec);
  return m;
}

Result<ModelRecord> ModelStore::record_fine_tune(const std::string& tenant, const std::string& id,
                                                 const fs::path& dir, const std::string& job_id) {
  MH_ASSIGN_OR_RETURN(int64_t now, clock_.now());
  auto summary = engine::inspect_model(dir);
  if (!summary.ok()) return internal_error("the trained model: " + summary.status().message());
  ModelRecord m;
  m.id = id;
  m.tenant = tenant;
  m.kind = "fine-tune";
  m.family = std::string(engine::family_name(summary->config.family));
  m.parameters = summary->parameters;
  m.context_length = summary->config.max_positions;
  m.vocab_size = summary->config.vocab_size;
  m.directory = dir.string();
  m.job_id = job_id;
  m.created_at = now;
  MH_TRY(insert_model(db_, m));
  return m;
}

void add_model_routes(Router& router, ModelStore& models) {
  using tenants::Permission;
  router.add("GET", "/v1/models", Access::tenant(Permission::kRead), [&models](Request& request) {
    auto page = parse_page(request, 20, 1000);
    if (!page.ok()) return Response::error(page.status());
    bool has_more = false;
    auto list = models.list(request.principal.tenant, page->after, page->limit, &has_more);
    if (!list.ok()) return Response::error(list.status());
    json::array data;
    for (const auto& m : *list) data.push_back(model_json(m));
    return list_response(std::move(data), has_more);
  });
  router.add("POST", "/v1/models", Access::tenant(Permission::kWrite), [&models](Request& request) {
    auto body = parse_json_object(request);
    if (!body.ok()) return Response::error(body.status());
    auto m = models.register_custom(request.principal.tenant, *body);
    if (!m.ok()) return Response::error(m.status());
    return Response::json(201, model_json(*m));
  });
  router.add("GET", "/v1/models/{id}", Access::tenant(Permission::kRead),
             [&models](Request& request) {
               auto m = models.get(request.principal.tenant, request.param("id"));
               if (!m.ok()) return Response::error(m.status());
               return Response::json(200, model_json(*m));
             });
  router.add("DELETE", "/v1/models/{id}", Access::tenant(Permission::kWrite),
             [&models](Request& request) {
               auto m = models.remove(request.principal.tenant, request.param("id"));
               if (!m.ok()) return Response::error(m.status());
               return Response::json(
                   200, json::object{{"id", m->id}, {"object", "model"}, {"deleted", true}});
             });
}

}  // namespace mh::api
