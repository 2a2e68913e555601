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
};

std::span<const Migration> migrations();

}  // namespace mh::store
