// `mh-worker train`: one rank of a fine-tuning run (executor::TrainArgs, the worker contract).
// It trains from the model directory (or from scratch on a config alone), writes checkpoints and
// the trained model, and reports steps, checkpoints and its end on the events channel. A
// SIGTERM stops it after the current step, with a checkpoint to resume from.
#pragma once

#include "platform/executor/worker_contract.h"
#include "platform/worker/device.h"

namespace mh::worker {

// Returns the process's exit status; a bad input ends the process (cli.h).
int train(const executor::TrainArgs& args, const DeviceOptions& device);

}  // namespace mh::worker
