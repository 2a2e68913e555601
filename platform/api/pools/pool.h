// Pools of devices, as the pools service, its store and its protocol share them: a pool's
// configuration, where a piece of work was placed, and what the API shows of pools and quotas.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "platform/executor/launcher.h"
#include "platform/scheduler/scheduler.h"

namespace mh::api {

struct PoolConfig {
  std::string name;
  std::vector<scheduler::NodeSpec> nodes;
  bool gpus = false;   // devices are CUDA ordinals (else CPU worker slots)
  bool slurm = false;  // its workers run as Slurm batch jobs on its nodes (else locally)
  executor::SlurmOptions slurm_options;
  // How its workers start, made by Pools from the above.
  std::shared_ptr<const executor::Launcher> launcher;
};

// Where a piece of work was placed.
struct Allocation {
  std::string node;
  std::vector<int> devices;  // device indexes on that node
};

// A pool as it stands now.
struct PoolView {
  struct Node {
    std::string name;
    int32_t devices = 0, domain = 0;
    bool draining = false;
  };
  std::string name;
  bool gpus = false;
  int64_t devices = 0, free = 0;
  std::vector<Node> nodes;
};

// A tenant's share of a pool as it stands now.
struct QuotaView {
  std::string pool;
  scheduler::Quota quota;
  int64_t in_use = 0, queued = 0, pool_devices = 0, pool_free = 0;
};

}  // namespace mh::api
