// SeatKeeper: holds one seat lease of a license for an SDK client. It checks a seat out when
// first asked, renews it from a background thread at a third of its TTL, notices when the
// platform drops it (expired, license revoked) so the next ensure() checks out anew, and
// releases it when destroyed.
#pragma once

#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>

#include "sdk/src/http_client.h"

namespace mh::sdk {

class SeatKeeper {
 public:
  SeatKeeper(const ClientConfig& config, std::string license_id, std::string instance);
  ~SeatKeeper();
  SeatKeeper(const SeatKeeper&) = delete;
  SeatKeeper& operator=(const SeatKeeper&) = delete;

  // Holds a seat, checking one out if none is held. Errors are the platform's (no seat free,
  // license revoked or expired) or the network's.
  CallResult<std::string> ensure();
  std::string lease_id();

 private:
  void heartbeat_loop();

  HttpClient http_;
  const std::string license_id_;
  const std::string instance_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::thread thread_;
  bool stopping_ = false;
  std::string lease_id_;
  int64_t ttl_seconds_ = 0;
};

// "<hostname>/<pid>"
std::string default_instance_name();

}  // namespace mh::sdk
