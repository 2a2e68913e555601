// SlurmWorker: one mh-worker run as a Slurm batch job, with the same contract as WorkerProcess:
// its argv, its own working directory (which must be on storage the Slurm nodes share with the
// daemon), the devices it asks for (GRES "gpu", which Slurm assigns and exposes as
// CUDA_VISIBLE_DEVICES), a CPU thread budget (--cpus-per-task), the events channel, and cancel
// with a grace period (scancel --signal=TERM, then scancel).
//
// The events channel is a file, events.jsonl in the working directory (MH_EVENTS_FILE), which
// a reader thread follows line by line. The worker's output goes to worker.log there, and a
// failure's reason quotes its last lines, as for a local worker. The job's state comes from
// `scontrol show job`.
#pragma once

#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>

#include "platform/base/status.h"
#include "platform/executor/worker_process.h"

namespace mh::executor {

struct SlurmOptions {
  std::string partition;  // empty: the cluster's default
  std::string nodelist;   // the node the scheduler placed it on; empty: Slurm's choice
  // The Slurm commands' environment beyond PATH (SLURM_CONF, for one).
  std::map<std::string, std::string> env;
  std::chrono::milliseconds poll{200};  // how often the job's state is asked for
};

// Runs a program, waits for it, and returns its exit status and standard output (standard
// error goes to `error` when given). For the Slurm commands.
struct CommandResult {
  int exit_code = -1;
  std::string out, err;
};
Result<CommandResult> run_command(const std::vector<std::string>& argv,
                                  const std::map<std::string, std::string>& env);

class SlurmWorker : public Worker {
 public:
  static Result<std::unique_ptr<SlurmWorker>> start(
      const WorkerSpec& spec, const SlurmOptions& options,
      std::function<void(std::string_view)> on_event = {});
  ~SlurmWorker() override;  // cancels a job still running (no grace), stops following events
  SlurmWorker(const SlurmWorker&) = delete;
  SlurmWorker& operator=(const SlurmWorker&) = delete;

  const std::string& job_id() const { return job_id_; }
  // The exit, once the job has ended (asks Slurm; non-blocking apart from that).
  std::optional<WorkerExit> poll();
  std::optional<WorkerExit> wait(std::chrono::milliseconds timeout) override;
  // SIGTERM to the job's processes now, scancel if it still runs after `grace`.
  WorkerExit cancel(std::chrono::milliseconds grace) override;
  std::string handle() const override { return "slurm:" + job_id_; }
  // Asks Slurm to stop a job a previous daemon left (SIGTERM: it checkpoints) and waits, at
  // most `timeout`, for it to end.
  static void stop_job(const std::string& job_id, const SlurmOptions& options,
                       std::chrono::milliseconds timeout);

 private:
  SlurmWorker() = default;
  void follow_events();

  SlurmOptions options_;
  std::string job_id_;
  std::filesystem::path work_, log_, events_;
  std::function<void(std::string_view)> on_event_;
  std::optional<WorkerExit> exit_;
  bool cancelling_ = false, escalated_ = false;
  std::atomic<bool> ended_{false};
  std::thread reader_;
};

}  // namespace mh::executor
