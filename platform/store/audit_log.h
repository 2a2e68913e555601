// AuditLog: the append-only, hash-chained record of every issuance, install, revocation, lease
// refusal, key and limit change. Entries are appended inside the same transaction as the change
// they record, so a change and its entry land together or not at all.
#pragma once

#include <boost/json/object.hpp>
#include <string>
#include <vector>

#include "licensing/audit_chain.h"
#include "platform/store/database.h"

namespace mh::store {

class AuditLog {
 public:
  explicit AuditLog(Database& db) : db_(db) {}

  // Appends an entry in the caller's write transaction.
  static Status append(Session& session, std::string_view actor, std::string_view action,
                       std::string_view subject, const boost::json::object& detail);
  // Appends in a transaction of its own.
  Status record(std::string_view actor, std::string_view action, std::string_view subject,
                const boost::json::object& detail);

  Result<std::vector<licensing::AuditEntry>> list(int64_t after_seq, int64_t limit,
                                                  bool* has_more) const;
  // The newest entry's seq and hash, as recorded beside the log.
  Result<licensing::ChainHead> head() const;

 private:
  Database& db_;
};

}  // namespace mh::store
