// Collective: how data-parallel ranks communicate. Every rank makes the same calls in the same
// order with the same sizes; the ranks' gradients are summed in rank order, so a result does
// not depend on which transport carried it.
//
//   make_single_rank     one rank, nothing to send
//   make_thread_group    ranks as threads of one process, sharing memory
//   connect_process_group ranks as processes (one per device) on one machine or several, over
//                        TCP: each rank reaches rank 0 at an address the executor chose, proves
//                        it holds the job's token, learns the others' addresses, and the ranks
//                        connect in a full mesh
//   (CUDA builds) an NCCL communicator, bootstrapped through a process group (cuda/nccl.h)
//
// A rank that fails or goes silent makes the others' calls throw CollectiveError, which names
// the rank: the executor then stops the whole group, and the job resumes from its checkpoint.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "platform/base/status.h"

namespace mh::engine {

class CollectiveError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class Collective {
 public:
  virtual ~Collective() = default;
  virtual int rank() const = 0;
  virtual int world() const = 0;
  // Every rank's `data` becomes the elementwise sum over ranks, added in rank order starting
  // from zero: ((0 + d0) + d1) + ...
  virtual void all_reduce_sum(std::span<float> data) = 0;
  // Every rank's `bytes` becomes rank `root`'s.
  virtual void broadcast(std::span<uint8_t> bytes, int root) = 0;
};

// A single rank: nothing to communicate.
std::unique_ptr<Collective> make_single_rank();
// `world` ranks in one process, one per thread, sharing memory.
std::vector<std::unique_ptr<Collective>> make_thread_group(int world);

struct ProcessGroupOptions {
  int rank = 0;
  int world = 1;
  std::string host = "127.0.0.1";  // where rank 0 listens
  uint16_t port = 0;
  std::string token;  // the job's secret; a connection without it is turned away
  // Rank 0: a socket already listening at host:port, handed down by the executor
  // (MH_RENDEZVOUS_FD); connect_process_group takes it and closes it once the group has
  // formed. -1: rank 0 binds host:port itself.
  int listener_fd = -1;
  std::chrono::milliseconds connect_timeout{std::chrono::minutes(2)};
  // A call that hears nothing from a peer for this long fails (the peer hangs).
  std::chrono::milliseconds idle_timeout{std::chrono::minutes(30)};
};

// The options the executor passes a rank: MH_RANK, MH_WORLD_SIZE, MH_RENDEZVOUS ("host:port",
// rank 0's address), MH_RENDEZVOUS_TOKEN and, for rank 0, MH_RENDEZVOUS_FD (an inherited
// socket listening there). nullopt when MH_WORLD_SIZE is not set; an error
// when they are set but do not make sense.
Result<std::optional<ProcessGroupOptions>> process_group_from_env();

// Joins the group (blocks until every rank has joined, or connect_timeout passes).
Result<std::unique_ptr<Collective>> connect_process_group(const ProcessGroupOptions& options);

}  // namespace mh::engine
