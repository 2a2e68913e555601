#include "platform/store/audit_log.h"

#include <boost/json.hpp>

#include "platform/base/time.h"

namespace mh::store {

namespace {
constexpr std::string_view kHeadSeq = "audit_head_seq";
constexpr std::string_view kHeadHash = "audit_head_hash";

Result<licensing::ChainHead> read_head(Session& s) {
  licensing::ChainHead head;
  MH_ASSIGN_OR_RETURN(auto rows, s.query("SELECT key, value FROM meta WHERE key IN (?, ?)",
                                         {std::string(kHeadSeq), std::string(kHeadHash)}));
  for (const auto& row : rows) {
    if (row.text(0) == kHeadSeq) head.seq = std::stoll(row.text(1));
    if (row.text(0) == kHeadHash) head.hash = row.text(1);
  }
  return head;
}
}  // namespace

Status AuditLog::append(Session& s, std::string_view actor, std::string_view action,
                        std::string_view subject, const boost::json::object& detail) {
  MH_ASSIGN_OR_RETURN(licensing::ChainHead head, read_head(s));
  licensing::AuditEntry e;
  e.seq = head.seq + 1;
  e.at = unix_seconds();
  e.actor = actor;
  e.action = action;
  e.subject = subject;
  e.detail = boost::json::serialize(detail);
  e.prev_hash = head.hash;
  e.hash = licensing::audit_entry_hash(e);
  MH_TRY(s.exec("INSERT INTO audit_log (seq, at, actor, action, subject, detail, prev_hash, hash) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                {e.seq, e.at, e.actor, e.action, e.subject, e.detail, e.prev_hash, e.hash})
             .status());
  MH_TRY(s.exec("INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                {std::string(kHeadSeq), std::to_string(e.seq)})
             .status());
  return s
      .exec(
          "INSERT INTO meta (key, value) VALUES (?, ?) "
          "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
          {std::string(kHeadHash), e.hash})
      .status();
}

Status AuditLog::record(std::string_view actor, std::string_view action, std::string_view subject,
                        const boost::json::object& detail) {
  return db_.write([&](Session& s) { return append(s, actor, action, subject, detail); });
}

Result<std::vector<licensing::AuditEntry>> AuditLog::list(int64_t after_seq, int64_t limit,
                                                          bool* has_more) const {
  std::vector<licensing::AuditEntry> entries;
  MH_TRY(db_.read([&](Session& s) -> Status {
    MH_ASSIGN_OR_RETURN(auto rows,
                        s.query("SELECT seq, at, actor, action, subject, detail, prev_hash, hash "
                                "FROM audit_log WHERE seq > ? ORDER BY seq LIMIT ?",
                                {after_seq, limit + 1}));
    *has_more = static_cast<int64_t>(rows.size()) > limit;
    for (size_t i = 0; i < rows.size() && static_cast<int64_t>(i) < limit; ++i) {
      const auto& r = rows[i];
      entries.push_back({r.integer(0), r.integer(1), r.text(2), r.text(3), r.text(4), r.text(5),
                         r.text(6), r.text(7)});
    }
    return {};
  }));
  return entries;
}

Result<licensing::ChainHead> AuditLog::head() const {
  licensing::ChainHead head;
  MH_TRY(db_.read([&](Session& s) -> Status {
    MH_ASSIGN_OR_RETURN(head, read_head(s));
    return {};
  }));
  return head;
}

}  // namespace mh::store
