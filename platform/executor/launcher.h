// Launcher: how a pool's workers are started, and how a restarted daemon deals with the ones a
// dead daemon left. Chosen per pool: on this machine (one process, or the ranks of a
// data-parallel group, each a WorkerProcess) or as Slurm batch jobs on a cluster's nodes
// (SlurmWorker). Jobs and deployments ask their pool's launcher and never which kind it is.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "platform/base/status.h"
#include "platform/executor/slurm_worker.h"
#include "platform/executor/worker_process.h"

namespace mh::executor {

class Launcher {
 public:
  using OnEvent = std::function<void(std::string_view)>;

  virtual ~Launcher() = default;

  // "local" or "slurm", for messages.
  virtual std::string_view name() const = 0;
  // Whether its workers run on other machines: their directories are on storage both share,
  // their devices are counted and assigned there (spec.gpus holds as many as are wanted), their
  // memory is bounded there rather than by an address-space limit, and a server listens on
  // every address of its node.
  virtual bool remote() const = 0;
  // The most data-parallel ranks one worker may have.
  virtual int max_ranks() const = 0;

  // Starts the worker: `ranks` data-parallel ranks of `spec` (1: one process) on `node`.
  virtual Result<std::unique_ptr<Worker>> start(const WorkerSpec& spec, int ranks,
                                                const std::string& node,
                                                OnEvent on_event) const = 0;

  // A worker a dead daemon left, by its handle: told to stop where it outlives its daemon (a
  // Slurm job), and waited for, at most `timeout`. Whether it was still running.
  virtual bool reclaim(const std::string& handle, std::chrono::milliseconds timeout) const = 0;
};

// Workers on this machine. A handle of any launcher's local processes ("pid:…") is waited for.
std::unique_ptr<Launcher> make_local_launcher();
// Workers as Slurm batch jobs, with these options (the node is each start's).
std::unique_ptr<Launcher> make_slurm_launcher(SlurmOptions options);

}  // namespace mh::executor
