// The SQLite store: one file in WAL mode, one writer connection, a pool of reader connections,
// prepared statements cached per connection, and the schema migrated at open.
#pragma once

#include <filesystem>
#include <memory>
#include <span>

#include "platform/store/database.h"
#include "platform/store/migrations.h"

namespace mh::store {

struct SqliteOptions {
  int reader_connections = 4;
  int busy_timeout_ms = 5000;
};

// Opens (creating if needed) the database at `file` and applies `schema` migrations newer than
// the file's. Refuses a file whose schema is newer than this build knows.
Result<std::unique_ptr<Database>> open_sqlite(const std::filesystem::path& file,
                                              const SqliteOptions& options = {},
                                              std::span<const Migration> schema = migrations());

}  // namespace mh::store
