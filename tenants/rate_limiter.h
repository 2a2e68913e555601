// RateLimiter: a token bucket per tenant, so one tenant's flood cannot slow the others. Each
// request takes a token; tokens refill at the tenant's rate up to its burst.
#pragma once

#include <chrono>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

namespace mh::tenants {

class RateLimiter {
 public:
  using Clock = std::chrono::steady_clock;

  // Takes a token for `key`: nullopt when granted, else how long until one is available.
  std::optional<std::chrono::milliseconds> acquire(const std::string& key, double rate_per_second,
                                                   double burst, Clock::time_point now = Clock::now());

 private:
  struct Bucket {
    double tokens;
    Clock::time_point updated;
  };
  std::mutex mutex_;
  std::unordered_map<std::string, Bucket> buckets_;
};

}  // namespace mh::tenants
