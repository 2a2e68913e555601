#include "platform/api/pools/store.h"

#include <fmt/format.h>

#include <boost/json.hpp>

namespace mh::api {

namespace json = boost::json;

Result<std::vector<PoolStore::TenantQuota>> PoolStore::quotas() const {
  std::vector<TenantQuota> out;
  MH_TRY(db_.read([&](store::Session& s) -> Status {
    MH_ASSIGN_OR_RETURN(auto rows, s.query("SELECT tenant_id, pool, nominal, borrowing_limit, "
                                           "weight FROM tenant_quotas"));
    for (const auto& r : rows) {
      out.push_back(
          {r.text(0), r.text(1), {r.integer(2), r.integer(3), std::get<double>(r.value(4))}});
    }
    return {};
  }));
  return out;
}

Status PoolStore::put_quota(const std::string& tenant, const std::string& pool,
                            const scheduler::Quota& quota) {
  return db_.write([&](store::Session& s) -> Status {
    MH_ASSIGN_OR_RETURN(auto known, s.query("SELECT 1 FROM tenants WHERE id = ?", {tenant}));
    if (known.empty()) return not_found(fmt::format("tenant '{}' not found", tenant));
    return s
        .exec(
            "INSERT INTO tenant_quotas (tenant_id, pool, nominal, borrowing_limit, weight) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (tenant_id, pool) DO UPDATE SET nominal = "
            "excluded.nominal, borrowing_limit = excluded.borrowing_limit, weight = "
            "excluded.weight",
            {tenant, pool, quota.nominal, quota.borrowing_limit, quota.weight})
        .status();
  });
}

Result<std::vector<PoolConfig>> PoolStore::added_pools() const {
  std::vector<PoolConfig> added;
  MH_TRY(db_.read([&](store::Session& s) -> Status {
    MH_ASSIGN_OR_RETURN(auto rows, s.query("SELECT spec FROM pools ORDER BY rowid"));
    for (const auto& r : rows) {
      boost::system::error_code ec;
      json::value v = json::parse(r.text(0), ec);
      if (ec || !v.is_object()) return internal_error("a stored pool does not parse");
      const json::object& o = v.as_object();
      PoolConfig p;
      p.name = std::string(o.at("name").as_string());
      p.gpus = p.slurm = true;
      p.slurm_options.partition = std::string(o.at("partition").as_string());
      for (const auto& n : o.at("nodes").as_array()) {
        p.nodes.push_back({std::string(n.at("name").as_string()),
                           static_cast<int32_t>(n.at("devices").as_int64()),
                           static_cast<int32_t>(n.at("nvlink_domain").as_int64())});
      }
      added.push_back(std::move(p));
    }
    return {};
  }));
  return added;
}

Status PoolStore::add_pool(const PoolConfig& pool) {
  json::array nodes;
  for (const auto& n : pool.nodes) {
    nodes.push_back({{"name", n.name}, {"devices", n.devices}, {"nvlink_domain", n.domain}});
  }
  const std::string spec = json::serialize(json::object{
      {"name", pool.name}, {"partition", pool.slurm_options.partition}, {"nodes", nodes}});
  return db_.write([&](store::Session& s) -> Status {
    return s.exec("INSERT INTO pools (name, spec) VALUES (?, ?)", {pool.name, spec}).status();
  });
}

}  // namespace mh::api
