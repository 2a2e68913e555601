#include "tenants/rate_limiter.h"

#include <algorithm>
#include <cmath>

namespace mh::tenants {

std::optional<std::chrono::milliseconds> RateLimiter::acquire(const std::string& key,
                                                              double rate_per_second,
                                                              double burst,
                                                              Clock::time_point now) {
  std::lock_guard lock(mutex_);
  auto [it, inserted] = buckets_.try_emplace(key, Bucket{burst, now});
  Bucket& b = it->second;
  double elapsed = std::chrono::duration<double>(now - b.updated).count();
  if (elapsed > 0) {
    b.tokens = std::min(burst, b.tokens + elapsed * rate_per_second);
    b.updated = now;
  }
  if (b.tokens >= 1.0) {
    b.tokens -= 1.0;
    return std::nullopt;
  }
  double wait = (1.0 - b.tokens) / rate_per_second;
  return std::chrono::milliseconds(static_cast<int64_t>(std::ceil(wait * 1000)));
}

}  // namespace mh::tenants
