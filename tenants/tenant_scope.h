// TenantScope: the only way tenant code reads or changes tenant-owned rows. Every statement it
// runs is confined to one tenant (`tenant_id = ?` is added here, not by each caller), and a row
// of another tenant is "not found", exactly like a row that does not exist.
//
// A tenant-owned table has an `id` TEXT primary key and a `tenant_id` column.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "platform/store/database.h"

namespace mh::tenants {

class TenantScope {
 public:
  TenantScope(store::Session& session, std::string tenant_id)
      : session_(session), tenant_(std::move(tenant_id)) {}

  const std::string& tenant() const { return tenant_; }
  // The row `id` of `table`, or not_found("<what> '<id>' not found").
  Result<store::Row> get(std::string_view table, std::string_view columns, std::string_view id,
                         std::string_view what);
  // A page of the tenant's rows, in insertion order, after the row `after_id`.
  Result<std::vector<store::Row>> page(std::string_view table, std::string_view columns,
                                       std::string_view after_id, int64_t limit, bool* has_more);
  // UPDATE table SET <assignments> WHERE id = ? (and the tenant's); not_found if no such row.
  Status update(std::string_view table, std::string_view assignments,
                std::vector<store::Value> values, std::string_view id, std::string_view what);

 private:
  store::Session& session_;
  std::string tenant_;
};

}  // namespace mh::tenants
