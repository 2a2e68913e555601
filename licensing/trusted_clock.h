// TrustedClock: the time licensing decisions use. It remembers (in the store) the latest time
// the platform has seen and refuses to answer while the system clock is behind it by more than
// a tolerance, so winding the clock back cannot revive an expired license.
#pragma once

#include <atomic>
#include <cstdint>

#include "licensing/license_store.h"
#include "platform/store/database.h"

namespace mh::licensing {

class TrustedClock {
 public:
  TrustedClock(store::Database& db, int64_t tolerance_seconds)
      : store_(db), tolerance_(tolerance_seconds) {}

  // Reads the high-water mark; call once at start.
  Status load();
  // The current Unix time, or failed_precondition if the clock was rolled back. Persists the
  // high-water mark when it has moved by a minute or more.
  Result<int64_t> now();
  // The same from memory alone, for a thread that must not wait on the store: the mark moves
  // on, and the next now() persists it.
  Result<int64_t> now_in_memory();
  int64_t high_water() const { return high_water_.load(); }

 private:
  LicenseStore store_;
  const int64_t tolerance_;
  std::atomic<int64_t> high_water_{0};
  std::atomic<int64_t> persisted_{0};
};

}  // namespace mh::licensing
