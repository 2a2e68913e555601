// UsageLedger: what each tenant used. Producers (training jobs and inference replicas for
// GPU-seconds and tokens, files for stored bytes) append records through record(); nothing
// ever changes or removes one. Tenants read totals by period and dimension; staff export CSV.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "platform/store/database.h"

namespace mh::tenants {

enum class UsageDimension {
  kGpuSeconds,    // device-seconds held by a job or a replica
  kInputTokens,   // prompt tokens processed
  kOutputTokens,  // tokens generated
  kStoredBytes,   // bytes stored: + when a file is kept, - when it is deleted
};

std::string_view dimension_name(UsageDimension dimension);
std::optional<UsageDimension> parse_dimension(std::string_view name);

struct UsageRecord {
  std::string tenant;
  int64_t at = 0;  // Unix seconds
  UsageDimension dimension = UsageDimension::kGpuSeconds;
  double quantity = 0;
  std::string subject_kind;  // "job", "replica", "file"
  std::string subject_id;
};

struct UsageQuery {
  int64_t start = 0;           // inclusive, Unix seconds
  int64_t end = 0;             // exclusive
  int64_t bucket_seconds = 0;  // 3600, 86400, or 0 for one total over the whole period
  bool by_subject = false;     // one line per subject instead of per dimension
  std::optional<UsageDimension> dimension;
};

struct UsageTotal {
  int64_t bucket_start = 0;
  UsageDimension dimension = UsageDimension::kGpuSeconds;
  std::string subject_kind, subject_id;  // with by_subject
  double quantity = 0;
  int64_t records = 0;
};

class UsageLedger {
 public:
  explicit UsageLedger(store::Database& db) : db_(db) {}

  // The one way usage is recorded: in a transaction of its own…
  Status record(const UsageRecord& record);
  // …or inside the producer's transaction, so the usage and the change that caused it land
  // together.
  static Status record(store::Session& session, const UsageRecord& record);
  // Usage a producer has accrued since it last recorded (a running job or replica records
  // every few seconds and keeps what it has accrued since here, every second): the subject's
  // one accrued row, replaced. record() empties the row of what it records in the same
  // transaction, so a process killed between two records loses at most the last second and
  // nothing is counted twice.
  static Status accrue(store::Session& session, const UsageRecord& accrued);
  Status accrue(const UsageRecord& accrued);
  // What a previous process accrued and never recorded, recorded now (at the time it was
  // last accrued) and cleared, in one transaction. Returns how many rows it recorded.
  Result<int64_t> settle_accrued();
  // When the subject's device-seconds were last accrued (system clock, Unix seconds), among
  // what settle_accrued() recorded: the caller bills from there to when the subject's
  // process was seen gone.
  std::optional<double> last_accrued(std::string_view subject_kind,
                                     std::string_view subject_id) const;

  // The tenant's totals over [start, end), by bucket and dimension (or subject).
  Result<std::vector<UsageTotal>> totals(std::string_view tenant, const UsageQuery& query) const;
  // Every record over [start, end), all tenants or one, as CSV with a header line.
  Result<std::string> export_csv(std::optional<std::string> tenant, int64_t start,
                                 int64_t end) const;

 private:
  store::Database& db_;
  std::map<std::pair<std::string, std::string>, double> settled_seen_;  // set once, at start
};

}  // namespace mh::tenants
