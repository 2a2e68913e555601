// WorkerProcess: one mh-worker (or any program) started by the local executor, with only what it
// was given: its argv, its own working directory, the devices it may use (CUDA_VISIBLE_DEVICES
// for GPUs; a thread budget on CPU), resource limits, and a channel back to the daemon.
//
// The channel is a pipe the worker finds on the descriptor named by MH_EVENTS_FD: one JSON
// object per line (progress, metrics, checkpoints). The worker's stdout and stderr go to
// worker.log in its directory; when it fails, the last lines of that log explain why.
// Cancelling sends SIGTERM, waits the grace period, then sends SIGKILL. A worker whose daemon
// dies gets SIGTERM from the kernel (PR_SET_PDEATHSIG) rather than running on unwatched.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "platform/base/status.h"
#include "platform/executor/sandbox.h"

namespace mh::executor {

struct ResourceLimits {
  uint64_t address_space_bytes = 0;  // RLIMIT_AS; 0: inherited
  uint64_t open_files = 0;           // RLIMIT_NOFILE; 0: inherited
  uint64_t cpu_seconds = 0;          // RLIMIT_CPU; 0: inherited
};

struct WorkerSpec {
  std::vector<std::string> argv;   // argv[0] is the program's path
  std::filesystem::path work_dir;  // created if missing; the worker's current directory
  std::vector<int> gpus;           // visible devices; empty: none (CPU)
  int cpu_threads = 0;             // thread budget on CPU (MH_THREADS); 0: unset
  ResourceLimits limits;
  std::map<std::string, std::string> env;  // added to a minimal environment
  // A listening socket the worker inherits as fd 4, named to it by MH_RENDEZVOUS_FD (a group's
  // rank 0 accepts the other ranks on it); -1: none. The caller keeps its own copy.
  int rendezvous_fd = -1;
  // What contains it (sandbox.h); local workers only.
  Sandbox sandbox;
};

struct WorkerExit {
  int exit_code = -1;  // when it exited
  int signal = 0;      // when a signal ended it
  bool cancelled = false;
  bool killed_after_grace = false;
  // "exited with status 3: <last lines of worker.log>", "killed by signal 9", "cancelled".
  std::string reason;
  bool ok() const { return exit_code == 0 && signal == 0; }
};

// The last few lines of a worker's log, for a failure's reason.
std::string log_tail(const std::filesystem::path& log);
// An exit as WorkerExit tells it: the reason says how it ended, quoting the log on a failure.
WorkerExit describe_exit(int exit_code, int signal, bool cancelled, bool escalated,
                         const std::filesystem::path& log);

// A running worker, however it was started (a local process, a Slurm job).
class Worker {
 public:
  virtual ~Worker() = default;
  // Waits for the worker to end (at most `timeout`; nullopt if it is still running).
  virtual std::optional<WorkerExit> wait(std::chrono::milliseconds timeout) = 0;
  // SIGTERM now, SIGKILL if it is still running after `grace`; returns its exit.
  virtual WorkerExit cancel(std::chrono::milliseconds grace) = 0;
  // What names it outside this process, to find it after a restart: "pid:<n>", "slurm:<id>".
  virtual std::string handle() const = 0;
};

// The processes a local worker's handle names: "pid:<n>", or a group's "pid:<n>,<n>,…".
std::vector<pid_t> pids_of_handle(std::string_view handle);
// Whether `pid` is a process still running: not gone, and not a zombie waiting for whoever
// inherited it (a dead daemon's worker, reaped late by an init that reaps slowly).
bool process_running(pid_t pid);

// Whether a worker's exit reason (its log's tail) says a device failed under it — an
// uncorrectable ECC error, a GPU fallen off the bus, an NVIDIA Xid — rather than the work
// itself going wrong: the node should be drained and the work placed elsewhere.
bool device_failure(std::string_view reason);

class WorkerProcess : public Worker {
 public:
  // Starts the worker. `on_event` is called from a reader thread with each line the worker
  // writes to its channel (without the newline), in order.
  static Result<std::unique_ptr<WorkerProcess>> start(
      const WorkerSpec& spec, std::function<void(std::string_view)> on_event = {});
  ~WorkerProcess() override;  // kills a worker still running (no grace) and reaps it
  WorkerProcess(const WorkerProcess&) = delete;
  WorkerProcess& operator=(const WorkerProcess&) = delete;

  pid_t pid() const { return pid_; }
  // The exit, once the worker has ended (non-blocking).
  std::optional<WorkerExit> poll();
  // Waits for the worker to end (at most `timeout`; nullopt if it is still running).
  std::optional<WorkerExit> wait(std::chrono::milliseconds timeout) override;
  // SIGTERM now, SIGKILL if it is still running after `grace`; returns its exit.
  WorkerExit cancel(std::chrono::milliseconds grace) override;
  // The first half of cancel: SIGTERM now, without waiting (cancel() then escalates).
  void request_stop();
  std::string handle() const override { return "pid:" + std::to_string(pid_); }

 private:
  WorkerProcess() = default;
  WorkerExit describe(int status);

  pid_t pid_ = -1;
  std::filesystem::path log_;
  std::thread reader_;
  std::optional<WorkerExit> exit_;
  bool cancelling_ = false, escalated_ = false;
};

}  // namespace mh::executor
