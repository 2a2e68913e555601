// ModelStore: the tenants' models' typed queries (table models), and the only place their SQL
// is written. The platform's base models are directories, not rows (see Models).
#pragma once

#include <string_view>
#include <vector>

#include "platform/api/models/model.h"
#include "platform/base/status.h"
#include "platform/store/database.h"

namespace mh::api {

class ModelStore {
 public:
  explicit ModelStore(store::Database& db) : db_(db) {}

  Status insert(const ModelRecord& model);
  // The tenant's model; not_found for another tenant's.
  Result<ModelRecord> get(std::string_view tenant, std::string_view id) const;
  // The tenant's models after `after` ("" for the first), oldest first.
  Result<std::vector<ModelRecord>> page(std::string_view tenant, std::string_view after,
                                        int64_t limit, bool* has_more) const;
  // Deletes the tenant's model and returns it; conflict, naming it, while a deployment serves
  // it, a job that has not ended trains it, or an adapter applies to it.
  Result<ModelRecord> remove(std::string_view tenant, std::string_view id);
  // Every tenant's LoRA adapters (models with a base).
  Result<std::vector<ModelRecord>> adapters() const;

 private:
  store::Database& db_;
};

}  // namespace mh::api
