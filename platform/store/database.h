// Database: the store's interface. All platform state goes through read() and write()
// transactions whose SQL uses `?` placeholders and the portable subset of SQL that SQLite and
// PostgreSQL share, so a PostgreSQL store can implement the same interface.
#pragma once

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "platform/base/status.h"

namespace mh::store {

using Value = std::variant<std::monostate, int64_t, double, std::string>;
// A text column's value: NULL for an empty string (optional ids, messages).
inline Value text_or_null(const std::string& s) { return s.empty() ? Value() : Value(s); }
inline constexpr std::monostate kNull{};

// One result row. Column accessors are lenient about NULL (0 / "") so callers stay short;
// is_null() tells the difference where it matters.
class Row {
 public:
  explicit Row(std::vector<Value> columns) : columns_(std::move(columns)) {}
  size_t size() const { return columns_.size(); }
  bool is_null(size_t i) const { return std::holds_alternative<std::monostate>(columns_.at(i)); }
  int64_t integer(size_t i) const;
  double real(size_t i) const;
  std::string text(size_t i) const;
  const Value& value(size_t i) const { return columns_.at(i); }

 private:
  std::vector<Value> columns_;
};

// A connection lent to one transaction. Not thread-safe; valid only inside read()/write().
class Session {
 public:
  virtual ~Session() = default;
  // Runs a statement that returns no rows; the result is the number of rows it changed.
  virtual Result<int64_t> exec(std::string_view sql, std::span<const Value> params) = 0;
  virtual Result<std::vector<Row>> query(std::string_view sql, std::span<const Value> params) = 0;

  Result<int64_t> exec(std::string_view sql, std::initializer_list<Value> params = {}) {
    return exec(sql, std::span<const Value>(params.begin(), params.size()));
  }
  Result<std::vector<Row>> query(std::string_view sql, std::initializer_list<Value> params = {}) {
    return query(sql, std::span<const Value>(params.begin(), params.size()));
  }
  // The first row, or not_found(what) when there is none.
  Result<Row> query_one(std::string_view sql, std::initializer_list<Value> params,
                        std::string_view what);
};

// A page of `table`'s rows in insertion order, after the row whose `id` is `after_id` (from the
// start when empty), at most `limit` of them; *has_more says whether more follow. `table` and
// `columns` are trusted SQL text, never input.
Result<std::vector<Row>> select_page(Session& session, std::string_view table,
                                     std::string_view columns, std::string_view after_id,
                                     int64_t limit, bool* has_more);

using Transaction = std::function<Status(Session&)>;

class Database {
 public:
  virtual ~Database() = default;
  // Runs fn on a consistent snapshot. Many reads may run at once.
  virtual Status read(const Transaction& fn) = 0;
  // Runs fn in a serialised write transaction: committed if fn returns OK, rolled back if not.
  virtual Status write(const Transaction& fn) = 0;
  // The newest migration applied.
  virtual int schema_version() const = 0;
  // "sqlite" or "postgresql".
  virtual std::string_view dialect() const = 0;
  // OK when a read reaches the store (the readiness probe's question).
  Status ping();
};

}  // namespace mh::store
