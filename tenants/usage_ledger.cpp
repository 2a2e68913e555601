#include "tenants/usage_ledger.h"

#include "platform/base/time.h"

#include <fmt/format.h>
#include <array>
#include <cmath>

namespace mh::tenants {
namespace {

constexpr std::array<std::pair<UsageDimension, std::string_view>, 4> kDimensions{{
    {UsageDimension::kGpuSeconds, "gpu_seconds"},
    {UsageDimension::kInputTokens, "input_tokens"},
    {UsageDimension::kOutputTokens, "output_tokens"},
    {UsageDimension::kStoredBytes, "stored_bytes"},
}};

// CSV fields are quoted when they hold a comma, quote or line break (RFC 4180).
std::string csv_field(std::string_view s) {
  if (s.find_first_of(",\"\r\n") == std::string_view::npos) return std::string(s);
  std::string out = "\"";
  for (char c : s) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

Status validate(const UsageRecord& r) {
  if (r.tenant.empty()) return invalid_argument("usage record without a tenant");
  if (r.subject_kind.empty() || r.subject_id.empty()) {
    return invalid_argument("usage record without a subject");
  }
  if (!std::isfinite(r.quantity)) return invalid_argument("usage quantity must be finite");
  if (r.dimension != UsageDimension::kStoredBytes && r.quantity < 0) {
    return invalid_argument("only stored_bytes may be recorded as negative");
  }
  return {};
}

}  // namespace

std::string_view dimension_name(UsageDimension dimension) {
  for (const auto& [d, name] : kDimensions) {
    if (d == dimension) return name;
  }
  return "unknown";
}

std::optional<UsageDimension> parse_dimension(std::string_view name) {
  for (const auto& [d, n] : kDimensions) {
    if (n == name) return d;
  }
  return std::nullopt;
}

Status UsageLedger::record(store::Session& s, const UsageRecord& r) {
  MH_TRY(validate(r));
  const std::string dimension(dimension_name(r.dimension));
  MH_TRY(s.exec("INSERT INTO usage_records (tenant_id, at, dimension, quantity, subject_kind, "
                "subject_id) VALUES (?, ?, ?, ?, ?, ?)",
                {r.tenant, r.at, dimension, r.quantity, r.subject_kind, r.subject_id})
             .status());
  // Recorded up to now: nothing accrued is left, and when is kept (see last_accrued()).
  return s
      .exec("UPDATE usage_accrued SET quantity = 0, seen = ? WHERE tenant_id = ? AND dimension = "
            "? AND subject_kind = ? AND subject_id = ?",
            {static_cast<double>(unix_millis()) / 1000, r.tenant, dimension, r.subject_kind,
             r.subject_id})
      .status();
}

Status UsageLedger::record(const UsageRecord& r) {
  return db_.write([&](store::Session& s) { return record(s, r); });
}

Status UsageLedger::accrue(store::Session& s, const UsageRecord& r) {
  MH_TRY(validate(r));
  return s
      .exec("INSERT OR REPLACE INTO usage_accrued (tenant_id, dimension, subject_kind, "
            "subject_id, quantity, at, seen) VALUES (?, ?, ?, ?, ?, ?, ?)",
            {r.tenant, std::string(dimension_name(r.dimension)), r.subject_kind, r.subject_id,
             r.quantity, r.at, static_cast<double>(unix_millis()) / 1000})
      .status();
}

Status UsageLedger::accrue(const UsageRecord& r) {
  return db_.write([&](store::Session& s) { return accrue(s, r); });
}

Result<int64_t> UsageLedger::settle_accrued() {
  int64_t settled = 0;
  MH_TRY(db_.write([&](store::Session& s) -> Status {
    MH_ASSIGN_OR_RETURN(auto seen, s.query("SELECT subject_kind, subject_id, MAX(seen) FROM "
                                           "usage_accrued WHERE dimension = 'gpu_seconds' "
                                           "GROUP BY subject_kind, subject_id"));
    for (const auto& r : seen) settled_seen_[{r.text(0), r.text(1)}] = r.real(2);
    MH_ASSIGN_OR_RETURN(auto moved,
                        s.exec("INSERT INTO usage_records (tenant_id, at, dimension, quantity, "
                               "subject_kind, subject_id) SELECT tenant_id, at, dimension, "
                               "quantity, subject_kind, subject_id FROM usage_accrued WHERE "
                               "quantity > 0"));
    settled = moved;
    return s.exec("DELETE FROM usage_accrued").status();
  }));
  return settled;
}

std::optional<double> UsageLedger::last_accrued(std::string_view subject_kind,
                                                std::string_view subject_id) const {
  const auto it = settled_seen_.find({std::string(subject_kind), std::string(subject_id)});
  if (it == settled_seen_.end()) return std::nullopt;
  return it->second;
}

Result<std::vector<UsageTotal>> UsageLedger::totals(std::string_view tenant,
                                                    const UsageQuery& q) const {
  if (q.end <= q.start) return invalid_argument("the period's end must come after its start");
  if (q.bucket_seconds < 0) return invalid_argument("bucket width must not be negative");
  // A whole-period total is one bucket as wide as the period, starting at its start.
  const int64_t width = q.bucket_seconds > 0 ? q.bucket_seconds : q.end - q.start;
  const int64_t origin = q.bucket_seconds > 0 ? 0 : q.start;
  const std::string group = q.by_subject ? "dimension, subject_kind, subject_id" : "dimension";
  std::string sql = fmt::format(
      "SELECT ((at - ?) / ?) * ? + ? AS bucket, {}, SUM(quantity), COUNT(*) FROM usage_records "
      "WHERE tenant_id = ? AND at >= ? AND at < ?{} GROUP BY bucket, {} ORDER BY bucket, {}",
      group, q.dimension ? " AND dimension = ?" : "", group, group);
  std::vector<store::Value> params = {origin,  width, width, origin, std::string(tenant),
                                      q.start, q.end};
  if (q.dimension) params.emplace_back(std::string(dimension_name(*q.dimension)));
  std::vector<UsageTotal> out;
  MH_TRY(db_.read([&](store::Session& s) -> Status {
    MH_ASSIGN_OR_RETURN(auto rows, s.query(sql, params));
    for (const auto& r : rows) {
      UsageTotal t;
      t.bucket_start = r.integer(0);
      t.dimension = parse_dimension(r.text(1)).value_or(UsageDimension::kGpuSeconds);
      size_t next = 2;
      if (q.by_subject) {
        t.subject_kind = r.text(2);
        t.subject_id = r.text(3);
        next = 4;
      }
      t.quantity = r.real(next);
      t.records = r.integer(next + 1);
      out.push_back(std::move(t));
    }
    return {};
  }));
  return out;
}

Result<std::string> UsageLedger::export_csv(std::optional<std::string> tenant, int64_t start,
                                            int64_t end) const {
  if (end <= start) return invalid_argument("the period's end must come after its start");
  std::string csv = "tenant,at,dimension,quantity,subject_kind,subject_id\n";
  MH_TRY(db_.read([&](store::Session& s) -> Status {
    std::vector<store::Value> params = {start, end};
    if (tenant) params.emplace_back(*tenant);
    MH_ASSIGN_OR_RETURN(auto rows,
                        s.query(fmt::format("SELECT tenant_id, at, dimension, quantity, "
                                            "subject_kind, subject_id FROM usage_records WHERE "
                                            "at >= ? AND at < ?{} ORDER BY seq",
                                            tenant ? " AND tenant_id = ?" : ""),
                                params));
    for (const auto& r : rows) {
      csv += fmt::format("{},{},{},{},{},{}\n", csv_field(r.text(0)), r.integer(1), r.text(2),
                         r.real(3), csv_field(r.text(4)), csv_field(r.text(5)));
    }
    return {};
  }));
  return csv;
}

}  // namespace mh::tenants
