// The schema, as numbered migrations applied in order at start. A migration once released is
// never edited: changes come as a new, higher-numbered migration.
#pragma once

#include <span>
#include <string_view>

namespace mh::store {

struct Migration {
  int version;
  std::string_view name;
  std::string_view sql;  // one or more statements
  // Rebuilds a table that others reference (SQLite's way to change a constraint): it runs with
  // foreign-key enforcement off, and the keys are checked before it commits.
  bool rebuilds = false;
};

std::span<const Migration> migrations();

}  // namespace mh::store
