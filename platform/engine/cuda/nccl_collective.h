// NCCL among data-parallel ranks, one process per GPU. The communicator's unique id is minted by
// rank 0 (ncclGetUniqueId, whose bootstrap listener then lives in rank 0's process) and handed
// to the others through the process group the executor already set up (collective.h), so NCCL
// needs nothing of the executor beyond MH_RANK, MH_WORLD_SIZE and the rendezvous.
//
// all_reduce_sum on host memory copies to the device, reduces there and copies back; the
// device-resident trainer reduces device buffers directly (all_reduce_sum_device). NCCL adds in
// its own order (a ring or a tree), so results match the CPU collectives to rounding, not bit
// for bit; one rank is the identity.
#pragma once

#include <cuda_runtime_api.h>

#include <memory>

#include "platform/base/status.h"
#include "platform/engine/collective.h"

namespace mh::engine {

class NcclCollective : public Collective {
 public:
  // Sums `n` floats at `device_data` over the ranks, in place, on `stream`.
  virtual void all_reduce_sum_device(float* device_data, size_t n, cudaStream_t stream) = 0;
};

// Joins the NCCL communicator of `bootstrap`'s group on CUDA device `device`. Collective: every
// rank of the group calls it.
Result<std::unique_ptr<NcclCollective>> make_nccl_collective(Collective& bootstrap, int device);

}  // namespace mh::engine
