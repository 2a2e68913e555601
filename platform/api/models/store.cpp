#include "platform/api/models/store.h"

#include <fmt/format.h>

#include <boost/json.hpp>

#include <optional>

#include "tenants/tenant_scope.h"

namespace mh::api {

namespace json = boost::json;

namespace {

constexpr std::string_view kColumns =
    "id, tenant_id, kind, family, parameters, context_length, vocab_size, config_file, "
    "weights_file, tokenizer_file, directory, job_id, created_at, extra_files, base, "
    "merged_from";

ModelRecord from_row(const store::Row& r) {
  auto text = [&](size_t i) { return r.is_null(i) ? std::string() : r.text(i); };
  ModelRecord m{r.text(0), r.text(1), r.text(2), r.text(3), r.integer(4), r.integer(5),
                r.integer(6), text(7), text(8), text(9), {}, r.text(10), text(11),
                r.integer(12), text(14), text(15)};
  if (!r.is_null(13)) {
    // Written by register_custom: an object of file name -> file id.
    boost::system::error_code ec;
    const json::value extra = json::parse(r.text(13), ec);
    if (!ec && extra.is_object()) {
      for (const auto& [name, id] : extra.as_object()) {
        if (!id.is_string()) continue;
        m.extra_files.emplace_back(std::string(name), std::string(id.as_string()));
      }
    }
  }
  return m;
}

std::optional<std::string> extra_files_json(const ModelRecord& m) {
  if (m.extra_files.empty()) return std::nullopt;
  json::object o;
  for (const auto& [name, id] : m.extra_files) o[name] = id;
  return json::serialize(o);
}

}  // namespace

Status ModelStore::insert(const ModelRecord& m) {
  return db_.write([&](store::Session& s) -> Status {
    return s
        .exec(fmt::format(
                  "INSERT INTO models ({}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                  kColumns),
              {m.id, m.tenant, m.kind, m.family, m.parameters, m.context_length, m.vocab_size,
               store::text_or_null(m.config_file), store::text_or_null(m.weights_file),
               store::text_or_null(m.tokenizer_file), m.directory, store::text_or_null(m.job_id),
               m.created_at, store::text_or_null(extra_files_json(m).value_or("")),
               store::text_or_null(m.base), store::text_or_null(m.merged_from)})
        .status();
  });
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

Result<std::vector<ModelRecord>> ModelStore::page(std::string_view tenant, std::string_view after,
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
    // What would fail without it: a deployment serving it, a job that will train it.
    MH_ASSIGN_OR_RETURN(auto serving, s.query("SELECT id FROM deployments WHERE tenant_id = ? AND "
                                              "model = ? LIMIT 1",
                                              {m.tenant, m.id}));
    if (!serving.empty()) {
      return conflict(fmt::format("deployment '{}' serves model '{}'; delete the deployment first",
                                  serving[0].text(0), m.id));
    }
    MH_ASSIGN_OR_RETURN(auto adapters,
                        s.query("SELECT id FROM models WHERE tenant_id = ? AND base = ? LIMIT 1",
                                {m.tenant, m.id}));
    if (!adapters.empty()) {
      return conflict(fmt::format("adapter '{}' applies to model '{}'; delete the adapter first",
                                  adapters[0].text(0), m.id));
    }
    MH_ASSIGN_OR_RETURN(auto training,
                        s.query("SELECT id FROM fine_tuning_jobs WHERE tenant_id = ? AND model = ? "
                                "AND status IN ('validating_files', 'queued', 'running') LIMIT 1",
                                {m.tenant, m.id}));
    if (!training.empty()) {
      return conflict(fmt::format("fine-tuning job '{}' trains model '{}'; cancel it or let it "
                                  "end first",
                                  training[0].text(0), m.id));
    }
    return s.exec("DELETE FROM models WHERE id = ? AND tenant_id = ?", {m.id, m.tenant}).status();
  }));
  return m;
}

Result<std::vector<ModelRecord>> ModelStore::adapters() const {
  std::vector<ModelRecord> out;
  MH_TRY(db_.read([&](store::Session& s) -> Status {
    MH_ASSIGN_OR_RETURN(
        auto rows,
        s.query(fmt::format("SELECT {} FROM models WHERE base IS NOT NULL", kColumns)));
    for (const auto& row : rows) out.push_back(from_row(row));
    return {};
  }));
  return out;
}

}  // namespace mh::api
