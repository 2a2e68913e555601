// The channel to the daemon when the executor started this worker: one JSON object per line on
// the descriptor MH_EVENTS_FD names, or appended to the file MH_EVENTS_FILE names (a worker
// started on another machine through Slurm, whose directory the daemon reads). Without either
// (a worker run by hand), events go nowhere.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <mutex>
#include <string>

namespace mh::worker {

inline int events_fd() {
  static const int fd = [] {
    if (const char* v = std::getenv("MH_EVENTS_FD")) return std::atoi(v);
    if (const char* f = std::getenv("MH_EVENTS_FILE")) {
      return ::open(f, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    }
    return -1;
  }();
  return fd;
}

// Writes one event line; thread-safe. A daemon that went away does not stop the work.
inline void emit(const std::string& json) {
  if (events_fd() < 0) return;
  static std::mutex mutex;
  const std::string line = json + "\n";
  std::lock_guard lock(mutex);
  size_t done = 0;
  while (done < line.size()) {
    const ssize_t n = ::write(events_fd(), line.data() + done, line.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    done += static_cast<size_t>(n);
  }
}

}  // namespace mh::worker
