#include "platform/store/database.h"

#include <fmt/format.h>

namespace mh::store {

int64_t Row::integer(size_t i) const {
  const Value& v = columns_.at(i);
  if (const auto* n = std::get_if<int64_t>(&v)) return *n;
  if (const auto* d = std::get_if<double>(&v)) return static_cast<int64_t>(*d);
  return 0;
}

double Row::real(size_t i) const {
  const Value& v = columns_.at(i);
  if (const auto* d = std::get_if<double>(&v)) return *d;
  if (const auto* n = std::get_if<int64_t>(&v)) return static_cast<double>(*n);
  return 0.0;
}

std::string Row::text(size_t i) const {
  const Value& v = columns_.at(i);
  if (const auto* s = std::get_if<std::string>(&v)) return *s;
  if (const auto* n = std::get_if<int64_t>(&v)) return std::to_string(*n);
  return {};
}

Result<Row> Session::query_one(std::string_view sql, std::initializer_list<Value> params,
                               std::string_view what) {
  MH_ASSIGN_OR_RETURN(auto rows, query(sql, params));
  if (rows.empty()) return not_found(std::string(what) + " not found");
  return std::move(rows.front());
}

Result<std::vector<Row>> select_page(Session& session, std::string_view table,
                                     std::string_view columns, std::string_view after_id,
                                     int64_t limit, bool* has_more) {
  int64_t after = 0;
  if (!after_id.empty()) {
    MH_ASSIGN_OR_RETURN(auto rows,
                        session.query(fmt::format("SELECT rowid FROM {} WHERE id = ?", table),
                                      {std::string(after_id)}));
    if (rows.empty()) {
      return invalid_argument(fmt::format("'after' names no such item: {}", after_id), "after");
    }
    after = rows[0].integer(0);
  }
  MH_ASSIGN_OR_RETURN(auto rows,
                      session.query(fmt::format("SELECT {} FROM {} WHERE rowid > ? ORDER BY "
                                                "rowid LIMIT ?",
                                                columns, table),
                                    {after, limit + 1}));
  *has_more = static_cast<int64_t>(rows.size()) > limit;
  if (*has_more) rows.pop_back();
  return rows;
}

Status Database::ping() {
  return read([](Session& s) { return s.query("SELECT 1").status(); });
}

}  // namespace mh::store
