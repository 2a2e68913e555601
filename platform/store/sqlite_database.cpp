#include "platform/store/sqlite_database.h"

#include <sqlite3.h>

#include <fmt/format.h>
#include <condition_variable>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "platform/base/time.h"

namespace mh::store {
namespace {

Status sqlite_error(sqlite3* db, int rc, std::string_view what) {
  const char* detail = db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  Code code = Code::kInternal;
  if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED) code = Code::kUnavailable;
  if (rc == SQLITE_CONSTRAINT) code = Code::kConflict;
  if (rc == SQLITE_FULL) code = Code::kResourceExhausted;
  return {code, fmt::format("store: {}: {}", what, detail)};
}

// One SQLite connection with its prepared-statement cache.
class Connection final : public Session {
 public:
  static Result<std::unique_ptr<Connection>> open(const std::filesystem::path& file, bool read_only,
                                                  int busy_timeout_ms) {
    sqlite3* db = nullptr;
    int flags = SQLITE_OPEN_NOMUTEX |
                (read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
    int rc = sqlite3_open_v2(file.c_str(), &db, flags, nullptr);
    auto conn = std::unique_ptr<Connection>(new Connection(db));
    if (rc != SQLITE_OK) return sqlite_error(db, rc, "opening " + file.string());
    sqlite3_extended_result_codes(db, 0);
    sqlite3_busy_timeout(db, busy_timeout_ms);
    return conn;
  }

  ~Connection() override {
    for (auto& [sql, stmt] : statements_) sqlite3_finalize(stmt);
    sqlite3_close_v2(db_);
  }

  // Runs SQL text that may hold several statements and takes no parameters.
  Status exec_script(std::string_view sql) {
    char* error = nullptr;
    int rc = sqlite3_exec(db_, std::string(sql).c_str(), nullptr, nullptr, &error);
    if (rc != SQLITE_OK) {
      Status status = sqlite_error(db_, rc, error != nullptr ? error : "exec");
      sqlite3_free(error);
      return status;
    }
    return {};
  }

  Result<int64_t> exec(std::string_view sql, std::span<const Value> params) override {
    MH_ASSIGN_OR_RETURN(sqlite3_stmt * stmt, prepare(sql, params));
    StatementReset reset{stmt};
    for (;;) {
      int rc = sqlite3_step(stmt);
      if (rc == SQLITE_DONE) break;
      if (rc != SQLITE_ROW) return sqlite_error(db_, rc, "executing statement");
    }
    return static_cast<int64_t>(sqlite3_changes(db_));
  }

  Result<std::vector<Row>> query(std::string_view sql, std::span<const Value> params) override {
    MH_ASSIGN_OR_RETURN(sqlite3_stmt * stmt, prepare(sql, params));
    StatementReset reset{stmt};
    std::vector<Row> rows;
    const int columns = sqlite3_column_count(stmt);
    for (;;) {
      int rc = sqlite3_step(stmt);
      if (rc == SQLITE_DONE) break;
      if (rc != SQLITE_ROW) return sqlite_error(db_, rc, "running query");
      std::vector<Value> values;
      values.reserve(columns);
      for (int c = 0; c < columns; ++c) values.push_back(column(stmt, c));
      rows.emplace_back(std::move(values));
    }
    return rows;
  }

 private:
  explicit Connection(sqlite3* db) : db_(db) {}

  struct StatementReset {
    sqlite3_stmt* stmt;
    ~StatementReset() {
      sqlite3_reset(stmt);
      sqlite3_clear_bindings(stmt);
    }
  };

  Result<sqlite3_stmt*> prepare(std::string_view sql, std::span<const Value> params) {
    auto it = statements_.find(std::string(sql));
    sqlite3_stmt* stmt = nullptr;
    if (it != statements_.end()) {
      stmt = it->second;
    } else {
      int rc = sqlite3_prepare_v3(db_, sql.data(), static_cast<int>(sql.size()),
                                  SQLITE_PREPARE_PERSISTENT, &stmt, nullptr);
      if (rc != SQLITE_OK) return sqlite_error(db_, rc, "preparing statement");
      statements_.emplace(std::string(sql), stmt);
    }
    if (static_cast<int>(params.size()) != sqlite3_bind_parameter_count(stmt)) {
      return internal_error(fmt::format("store: statement takes {} parameters, given {}",
                                        sqlite3_bind_parameter_count(stmt), params.size()));
    }
    for (size_t i = 0; i < params.size(); ++i) {
      const int index = static_cast<int>(i) + 1;
      int rc = std::visit(
          [&](const auto& v) -> int {
            using T = std::decay_t<decltype(v)>;
            if constexpr (std::is_same_v<T, std::monostate>) {
              return sqlite3_bind_null(stmt, index);
            } else if constexpr (std::is_same_v<T, int64_t>) {
              return sqlite3_bind_int64(stmt, index, v);
            } else if constexpr (std::is_same_v<T, double>) {
              return sqlite3_bind_double(stmt, index, v);
            } else {
              return sqlite3_bind_text64(stmt, index, v.data(), v.size(), SQLITE_TRANSIENT,
                                         SQLITE_UTF8);
            }
          },
          params[i]);
      if (rc != SQLITE_OK) return sqlite_error(db_, rc, "binding parameter");
    }
    return stmt;
  }

  static Value column(sqlite3_stmt* stmt, int c) {
    switch (sqlite3_column_type(stmt, c)) {
      case SQLITE_INTEGER:
        return static_cast<int64_t>(sqlite3_column_int64(stmt, c));
      case SQLITE_FLOAT:
        return sqlite3_column_double(stmt, c);
      case SQLITE_NULL:
        return kNull;
      default: {
        const auto* data = static_cast<const char*>(sqlite3_column_blob(stmt, c));
        return std::string(data != nullptr ? data : "", sqlite3_column_bytes(stmt, c));
      }
    }
  }

  sqlite3* db_;
  std::unordered_map<std::string, sqlite3_stmt*> statements_;
};

// Commits or rolls back around fn. SQLite's own busy timeout handles waits for the file lock.
Status run_transaction(Connection& conn, std::string_view begin, const Transaction& fn) {
  MH_TRY(conn.exec_script(begin));
  Status status = fn(conn);
  if (status.ok()) {
    status = conn.exec_script("COMMIT");
    if (status.ok()) return status;
  }
  (void)conn.exec_script("ROLLBACK");
  return status;
}

class SqliteDatabase final : public Database {
 public:
  Status open(const std::filesystem::path& file, const SqliteOptions& options,
              std::span<const Migration> schema) {
    MH_ASSIGN_OR_RETURN(writer_, Connection::open(file, false, options.busy_timeout_ms));
    // WAL lets readers run beside the writer; FULL makes every commit durable on power loss.
    MH_TRY(writer_->exec_script(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;"));
    MH_TRY(migrate(schema));
    for (int i = 0; i < std::max(1, options.reader_connections); ++i) {
      MH_ASSIGN_OR_RETURN(auto reader, Connection::open(file, true, options.busy_timeout_ms));
      MH_TRY(reader->exec_script("PRAGMA foreign_keys=ON;"));
      idle_readers_.push_back(reader.get());
      readers_.push_back(std::move(reader));
    }
    return {};
  }

  Status read(const Transaction& fn) override {
    Connection* conn = nullptr;
    {
      std::unique_lock lock(readers_mutex_);
      reader_available_.wait(lock, [&] { return !idle_readers_.empty(); });
      conn = idle_readers_.back();
      idle_readers_.pop_back();
    }
    Status status = run_transaction(*conn, "BEGIN", fn);
    {
      std::lock_guard lock(readers_mutex_);
      idle_readers_.push_back(conn);
    }
    reader_available_.notify_one();
    return status;
  }

  Status write(const Transaction& fn) override {
    std::lock_guard lock(writer_mutex_);
    return run_transaction(*writer_, "BEGIN IMMEDIATE", fn);
  }

  int schema_version() const override { return schema_version_; }
  std::string_view dialect() const override { return "sqlite"; }

 private:
  Status migrate(std::span<const Migration> schema) {
    MH_TRY(writer_->exec_script(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)"));
    MH_ASSIGN_OR_RETURN(auto rows,
                        writer_->query("SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
                                       std::span<const Value>{}));
    int current = static_cast<int>(rows.at(0).integer(0));
    int newest_known = schema.empty() ? 0 : schema.back().version;
    if (current > newest_known) {
      return failed_precondition(fmt::format(
          "store: the database has schema version {} but this build knows only up to {}; "
          "run a newer macrohardd or restore a backup",
          current, newest_known));
    }
    for (const Migration& m : schema) {
      if (m.version <= current) continue;
      // PRAGMA foreign_keys cannot change inside a transaction: it is set around it.
      if (m.rebuilds) MH_TRY(writer_->exec_script("PRAGMA foreign_keys=OFF;"));
      Status status = run_transaction(*writer_, "BEGIN IMMEDIATE", [&](Session& s) -> Status {
        MH_TRY(writer_->exec_script(m.sql));
        if (m.rebuilds) {
          MH_ASSIGN_OR_RETURN(auto broken, s.query("PRAGMA foreign_key_check"));
          if (!broken.empty()) {
            return internal_error(fmt::format("{} rows of table {} refer to no row of {}",
                                              broken.size(), broken[0].text(0),
                                              broken[0].text(2)));
          }
        }
        return s
            .exec("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?,?,?)",
                  {int64_t{m.version}, std::string(m.name), unix_seconds()})
            .status();
      });
      if (m.rebuilds) MH_TRY(writer_->exec_script("PRAGMA foreign_keys=ON;"));
      if (!status.ok()) {
        return Status(status.code(), fmt::format("store: migration {} ({}) failed: {}", m.version,
                                                 m.name, status.message()));
      }
      current = m.version;
    }
    schema_version_ = current;
    return {};
  }

  std::unique_ptr<Connection> writer_;
  std::mutex writer_mutex_;
  std::vector<std::unique_ptr<Connection>> readers_;
  std::vector<Connection*> idle_readers_;
  std::mutex readers_mutex_;
  std::condition_variable reader_available_;
  int schema_version_ = 0;
};

}  // namespace

Result<std::unique_ptr<Database>> open_sqlite(const std::filesystem::path& file,
                                              const SqliteOptions& options,
                                              std::span<const Migration> schema) {
  auto db = std::make_unique<SqliteDatabase>();
  MH_TRY(db->open(file, options, schema));
  return std::unique_ptr<Database>(std::move(db));
}

}  // namespace mh::store
