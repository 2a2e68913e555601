#include "platform/store/migrations.h"

#include <array>

namespace mh::store {
namespace {

constexpr std::array kMigrations{
    Migration{1, "platform metadata and admin keys", R"sql(
      CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
      );
      -- Platform-admin API keys: only the SHA-256 of a key is stored, never the key.
      CREATE TABLE admin_keys (
        id         TEXT PRIMARY KEY,
        name       TEXT NOT NULL,
        key_hash   TEXT NOT NULL UNIQUE,
        key_prefix TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        revoked_at INTEGER
      );
    )sql"},
};

}  // namespace

std::span<const Migration> migrations() { return kMigrations; }

}  // namespace mh::store
