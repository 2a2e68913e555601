#include "platform/api/admission.h"

#include <fmt/format.h>

#include <algorithm>
#include <ctime>

namespace mh::api {

namespace {

// The first second of the calendar month (UTC) that `now` falls in.
int64_t month_start(int64_t now) {
  std::time_t t = static_cast<std::time_t>(now);
  std::tm tm{};
  gmtime_r(&t, &tm);
  tm.tm_mday = 1;
  tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
  return static_cast<int64_t>(timegm(&tm));
}

}  // namespace

Result<double> gpu_seconds_this_month(const tenants::UsageLedger& ledger, const std::string& tenant,
                                      int64_t now) {
  tenants::UsageQuery q;
  q.start = month_start(now);
  q.end = now + 1;
  q.dimension = tenants::UsageDimension::kGpuSeconds;
  MH_ASSIGN_OR_RETURN(auto totals, ledger.totals(tenant, q));
  double used = 0;
  for (const auto& t : totals) used += t.quantity;
  return used;
}

void DeviceHoldings::set(const std::string& tenant, const std::string& holder, int64_t devices) {
  std::lock_guard lock(mutex_);
  if (devices <= 0) {
    by_holder_.erase(holder);
  } else {
    by_holder_[holder] = {tenant, devices};
  }
}

int64_t DeviceHoldings::held(std::string_view tenant, std::string_view except) const {
  std::lock_guard lock(mutex_);
  int64_t n = 0;
  for (const auto& [holder, held] : by_holder_) {
    if (held.first == tenant && holder != except) n += held.second;
  }
  return n;
}

Status admit_devices(const licensing::Entitlements& entitlements,
                     const tenants::UsageLedger& ledger, const DeviceHoldings* holdings,
                     const std::string& tenant, std::string_view feature, std::string_view pool,
                     std::string_view holder, int64_t devices, int64_t now) {
  MH_TRY(entitlements.check(tenant, feature, now));
  const auto entitlement = entitlements.find(tenant);
  const licensing::LicenseTerms& terms = entitlement->license.terms;
  if (!terms.pools.empty() &&
      std::find(terms.pools.begin(), terms.pools.end(), pool) == terms.pools.end()) {
    return permission_denied(
        fmt::format("license '{}' does not include pool '{}'", terms.id, pool));
  }
  const int64_t held = holdings != nullptr ? holdings->held(tenant, holder) : 0;
  if (held + devices > terms.limits.max_gpus) {
    return permission_denied(fmt::format(
        "the tenant holds {} devices and asks for {} more; license '{}' allows {} (max_gpus): "
        "{} over",
        held, devices, terms.id, terms.limits.max_gpus, held + devices - terms.limits.max_gpus));
  }
  MH_ASSIGN_OR_RETURN(const double used, gpu_seconds_this_month(ledger, tenant, now));
  const double limit = static_cast<double>(terms.limits.gpu_hours_per_month) * 3600.0;
  if (used >= limit) {
    return permission_denied(fmt::format(
        "the tenant used {:.2f} GPU-hours this month; license '{}' allows {} "
        "(gpu_hours_per_month): {:.2f} over",
        used / 3600.0, terms.id, terms.limits.gpu_hours_per_month, (used - limit) / 3600.0));
  }
  return {};
}

std::string LicenceWatch::held(const std::string& tenant) {
  if (tenant.empty()) return "";
  if (auto t = tenants_.cached(tenant); t && t->suspended_at) {
    return fmt::format("tenant '{}' is suspended{}", tenant,
                       t->suspend_reason.empty() ? "" : ": " + t->suspend_reason);
  }
  const auto now = clock_.now();
  if (!now.ok()) return "";
  if (Status in_force = entitlements_.check(tenant, "", *now); !in_force.ok()) {
    return in_force.message();
  }
  const auto entitlement = entitlements_.find(tenant);
  const licensing::LicenseTerms& terms = entitlement->license.terms;
  std::lock_guard lock(mutex_);
  Spent& s = spent_[tenant];
  if (*now - s.checked_at >= kUsageRecheck || s.limit != terms.limits.gpu_hours_per_month) {
    const auto used = gpu_seconds_this_month(ledger_, tenant, *now);
    if (used.ok()) {  // a failed read keeps the last answer
      const double limit = static_cast<double>(terms.limits.gpu_hours_per_month) * 3600.0;
      s.reason = *used >= limit ? fmt::format("license {} allows {} GPU-hours a month "
                                              "(gpu_hours_per_month) and {:.2f} are used",
                                              terms.id, terms.limits.gpu_hours_per_month,
                                              *used / 3600.0)
                                : "";
      s.checked_at = *now;
      s.limit = terms.limits.gpu_hours_per_month;
    }
  }
  return s.reason;
}

}  // namespace mh::api
