// Which backend an mh-worker computes on: `--device cpu`, `cuda` (the CUDA backend on the first
// device this process sees), or `auto` (cuda when this binary has the CUDA backend and the
// process sees a device, else cpu). The executor shows a worker only its own devices
// (CUDA_VISIBLE_DEVICES, empty for CPU slots), so `auto` follows the pool the worker was placed
// on. `--precision bf16` rounds the CUDA backend's GEMM operands to bf16 (fp32 sums).
#pragma once

#include <memory>
#include <string>

#include "platform/base/status.h"
#include "platform/engine/backend.h"
#include "platform/engine/collective.h"
#include "platform/engine/generate.h"
#include "platform/engine/train.h"

namespace mh::worker {

struct DeviceOptions {
  std::string device = "auto";     // auto | cpu | cuda
  std::string precision = "fp32";  // fp32 | bf16 (cuda)
  int threads = 0;                 // the CPU backend's threads
};

struct Compute {
  std::unique_ptr<engine::Backend> backend;
  bool cuda = false;
  bool bf16 = false;
};

Result<Compute> make_compute(const DeviceOptions& options);

// Serving on CUDA: the device-resident decoder of `model` with `max_sequences` cache slots
// (bf16 weights with --precision bf16); nullptr when the compute is the CPU's.
Result<std::unique_ptr<engine::SequenceRunner>> make_decoder(const Compute& compute,
                                                             const engine::Model& model,
                                                             int64_t max_sequences);

// Training on CUDA: the device-resident engine (weights, gradients and moments on the GPU; bf16
// GEMMs with --precision bf16); nullptr (the trainer's host engine) when the compute is the CPU's.
Result<std::unique_ptr<engine::StepEngine>> make_step_engine(const Compute& compute,
                                                             engine::Model& model,
                                                             const engine::TrainConfig& config,
                                                             engine::Collective& collective);

// The collective among a job's ranks: NCCL when they train on GPUs and NCCL is built (bootstrapped
// through `group`, which it then replaces), else `group` itself.
Result<std::unique_ptr<engine::Collective>> data_parallel(std::unique_ptr<engine::Collective> group,
                                                          const Compute& compute);

}  // namespace mh::worker
