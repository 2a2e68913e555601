// The device engine for training (train.h's StepEngine) on one GPU. The fp32 master weights,
// their gradients and the AdamW moments live in device memory for the whole run; a
// micro-batch's activations stay there for its backward pass, and the classifier runs a chunk
// of rows at a time with each chunk's gradient written over its logits. The host copies of the
// weights and moments are brought up to date only when the Trainer asks (checkpoints, the end
// of a run).
//
// With bf16 the GEMMs read bf16 copies of the weight matrices (AdamW rewrites them as it updates
// the masters) and of their activation operands, and sum in fp32, and attention runs on the
// tensor cores (flash_attention.h) for heads of 32, 64 or 128; everything else stays fp32.
// With several ranks the gradient is all-reduced through NCCL on device memory, a block at a
// time on a second stream while the backward pass goes on to the blocks before it; through any
// other collective it is copied to the host, reduced there and copied back.
//
// It computes what the host engine computes on the CPU backend, to rounding (checked in
// tests/engine/cuda_backend_test.cpp).
#pragma once

#include <map>
#include <memory>
#include <string>

#include "platform/base/status.h"
#include "platform/engine/collective.h"
#include "platform/engine/model.h"
#include "platform/engine/train.h"

namespace mh::engine {

struct CudaTrainOptions {
  int device = 0;     // CUDA ordinal, after CUDA_VISIBLE_DEVICES
  bool bf16 = false;  // bf16 GEMM operands, fp32 sums, fp32 master weights
  // bf16 runs: attention on the tensor-core kernels where they take the head size; false keeps
  // the fp32 kernels (a reference to measure them against).
  bool flash_attention = true;
  // When set, each step adds the device time of each kind of op (milliseconds, by the name the
  // engine gives it: "layernorm", "gemm (forward)", "attention backward", ...) into the map:
  // what bench/gpu reports. It marks the stream after every op, so leave it off to train.
  std::map<std::string, double>* profile = nullptr;
};

// Copies `model`'s weights to the device. `model` and `collective` must outlive the engine.
// Fails (kUnavailable) when there is no such device or too little memory, and
// (kFailedPrecondition) for heads wider than the attention kernels take.
Result<std::unique_ptr<StepEngine>> make_cuda_engine(Model& model, const TrainConfig& config,
                                                     Collective& collective,
                                                     const CudaTrainOptions& options = {});

}  // namespace mh::engine
