#include "platform/executor/launcher.h"

#include <fmt/format.h>

#include <thread>

#include "platform/executor/worker_group.h"

namespace mh::executor {

namespace {

// Waits for the local processes a handle names to be gone.
bool wait_for_local(const std::string& handle, std::chrono::milliseconds timeout) {
  constexpr auto kPoll = std::chrono::milliseconds(50);
  const auto until = std::chrono::steady_clock::now() + timeout;
  bool was_running = false;
  for (const pid_t pid : pids_of_handle(handle)) {
    while (process_running(pid) && std::chrono::steady_clock::now() < until) {
      was_running = true;
      std::this_thread::sleep_for(kPoll);
    }
  }
  return was_running;
}

class LocalLauncher : public Launcher {
 public:
  std::string_view name() const override { return "local"; }
  bool remote() const override { return false; }
  int max_ranks() const override { return 64; }

  Result<std::unique_ptr<Worker>> start(const WorkerSpec& spec, int ranks, const std::string&,
                                        OnEvent on_event) const override {
    if (ranks > 1) {
      MH_ASSIGN_OR_RETURN(auto group, WorkerGroup::start(spec, ranks, std::move(on_event)));
      return std::unique_ptr<Worker>(std::move(group));
    }
    MH_ASSIGN_OR_RETURN(auto process, WorkerProcess::start(spec, std::move(on_event)));
    return std::unique_ptr<Worker>(std::move(process));
  }

  bool reclaim(const std::string& handle, std::chrono::milliseconds timeout) const override {
    return handle.starts_with("pid:") && wait_for_local(handle, timeout);
  }
};

class SlurmLauncher : public Launcher {
 public:
  explicit SlurmLauncher(SlurmOptions options) : options_(std::move(options)) {}

  std::string_view name() const override { return "slurm"; }
  bool remote() const override { return true; }
  int max_ranks() const override { return 1; }

  Result<std::unique_ptr<Worker>> start(const WorkerSpec& spec, int ranks,
                                        const std::string& node,
                                        OnEvent on_event) const override {
    if (ranks != 1) {
      return invalid_argument(
          fmt::format("a Slurm worker runs one rank, not {}", ranks));
    }
    SlurmOptions options = options_;
    options.nodelist = node;
    MH_ASSIGN_OR_RETURN(auto job, SlurmWorker::start(spec, options, std::move(on_event)));
    return std::unique_ptr<Worker>(std::move(job));
  }

  bool reclaim(const std::string& handle, std::chrono::milliseconds timeout) const override {
    if (handle.starts_with("slurm:")) {
      // A Slurm job outlives its daemon: it is told to checkpoint and stop.
      SlurmWorker::stop_job(handle.substr(6), options_, timeout);
      return true;
    }
    return handle.starts_with("pid:") && wait_for_local(handle, timeout);
  }

 private:
  SlurmOptions options_;
};

}  // namespace

std::unique_ptr<Launcher> make_local_launcher() { return std::make_unique<LocalLauncher>(); }

std::unique_ptr<Launcher> make_slurm_launcher(SlurmOptions options) {
  return std::make_unique<SlurmLauncher>(std::move(options));
}

}  // namespace mh::executor
