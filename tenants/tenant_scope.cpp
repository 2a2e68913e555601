#include "tenants/tenant_scope.h"

#include <fmt/format.h>

namespace mh::tenants {

Result<store::Row> TenantScope::get(std::string_view table, std::string_view columns,
                                    std::string_view id, std::string_view what) {
  return session_.query_one(
      fmt::format("SELECT {} FROM {} WHERE id = ? AND tenant_id = ?", columns, table),
      {std::string(id), tenant_}, fmt::format("{} '{}'", what, id));
}

Result<std::vector<store::Row>> TenantScope::page(std::string_view table,
                                                  std::string_view columns,
                                                  std::string_view after_id, int64_t limit,
                                                  bool* has_more) {
  int64_t after = 0;
  if (!after_id.empty()) {
    MH_ASSIGN_OR_RETURN(
        auto rows, session_.query(fmt::format("SELECT rowid FROM {} WHERE id = ? AND tenant_id = ?",
                                              table),
                                  {std::string(after_id), tenant_}));
    if (rows.empty()) {
      return invalid_argument(fmt::format("'after' names no such item: {}", after_id), "after");
    }
    after = rows[0].integer(0);
  }
  MH_ASSIGN_OR_RETURN(auto rows, session_.query(fmt::format("SELECT {} FROM {} WHERE tenant_id = "
                                                            "? AND rowid > ? ORDER BY rowid "
                                                            "LIMIT ?",
                                                            columns, table),
                                                {tenant_, after, limit + 1}));
  *has_more = static_cast<int64_t>(rows.size()) > limit;
  if (*has_more) rows.pop_back();
  return rows;
}

Status TenantScope::update(std::string_view table, std::string_view assignments,
                           std::vector<store::Value> values, std::string_view id,
                           std::string_view what) {
  values.emplace_back(std::string(id));
  values.emplace_back(tenant_);
  MH_ASSIGN_OR_RETURN(int64_t changed,
                      session_.exec(fmt::format("UPDATE {} SET {} WHERE id = ? AND tenant_id = ?",
                                                table, assignments),
                                    values));
  if (changed == 0) return not_found(fmt::format("{} '{}' not found", what, id));
  return {};
}

}  // namespace mh::tenants
