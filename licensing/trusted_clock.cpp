#include "licensing/trusted_clock.h"

#include <fmt/format.h>

#include "platform/base/time.h"

namespace mh::licensing {

namespace {

constexpr int64_t kPersistEvery = 60;

}  // namespace

Status TrustedClock::load() {
  MH_ASSIGN_OR_RETURN(const int64_t mark, store_.clock_mark());
  high_water_ = mark;
  persisted_ = mark;
  return {};
}

Result<int64_t> TrustedClock::now() {
  MH_ASSIGN_OR_RETURN(const int64_t t, now_in_memory());
  if (t >= persisted_.load() + kPersistEvery) {
    persisted_ = t;
    MH_TRY(store_.raise_clock_mark(t));
  }
  return t;
}

Result<int64_t> TrustedClock::now_in_memory() {
  const int64_t t = unix_seconds();
  int64_t seen = high_water_.load();
  if (t + tolerance_ < seen) {
    return failed_precondition(fmt::format(
        "the system clock reads {} but this platform has already seen {}: the clock was set "
        "back, so licenses cannot be checked; fix the clock (NTP) and retry",
        rfc3339(t), rfc3339(seen)));
  }
  while (t > seen && !high_water_.compare_exchange_weak(seen, t)) {
  }
  return t;
}

}  // namespace mh::licensing
