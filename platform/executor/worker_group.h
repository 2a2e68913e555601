// WorkerGroup: the ranks of one data-parallel training job on this machine, one WorkerProcess
// per device, started together and watched as one worker.
//
// Each rank is told its place and how to find the others (the bootstrap that
// engine::connect_process_group reads): MH_RANK, MH_WORLD_SIZE, MH_RENDEZVOUS (rank 0's
// address, a loopback port opened here), MH_RENDEZVOUS_FD (rank 0 only: the socket already
// listening on that port, so the port cannot be lost to another program) and
// MH_RENDEZVOUS_TOKEN (a fresh random secret, so no other process can join). Rank r sees only
// device r of the job's devices. Rank 0 runs in the job's directory and its events are the job's;
// rank r > 0 runs in rank-<r>/ beside it.
//
// One rank failing fails the group: the others are stopped, and the exit names the rank whose
// failure came first (the others only lost it).
#pragma once

#include <memory>
#include <vector>

#include "platform/executor/worker_process.h"

namespace mh::executor {

class WorkerGroup : public Worker {
 public:
  // `spec.gpus` is empty (CPU devices) or holds one device per rank.
  static Result<std::unique_ptr<WorkerGroup>> start(
      const WorkerSpec& spec, int world, std::function<void(std::string_view)> on_event = {});
  ~WorkerGroup() override = default;  // each WorkerProcess kills and reaps its own

  int world() const { return static_cast<int>(ranks_.size()); }
  std::optional<WorkerExit> wait(std::chrono::milliseconds timeout) override;
  WorkerExit cancel(std::chrono::milliseconds grace) override;
  // "pid:<rank 0's pid>,<rank 1's>,…"
  std::string handle() const override;

 private:
  WorkerGroup() = default;
  // Once any rank has ended: nullopt while the group runs on normally.
  std::optional<WorkerExit> settle();

  std::vector<std::unique_ptr<WorkerProcess>> ranks_;
  std::optional<WorkerExit> exit_;
};

}  // namespace mh::executor
