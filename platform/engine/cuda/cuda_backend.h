// The CUDA backend: the Backend interface on an NVIDIA GPU, with cuBLASLt GEMMs and the kernels
// of kernels.h, checked op by op against the CPU backend (tests/engine/cuda_backend_test.cpp).
//
// Tensors are host memory (tensor.h), so each op copies its operands to the device, runs there,
// and copies its results back: every model, the trainer and generation run on it unchanged, at
// the price of the copies. The device-resident training and decoding paths (weights, activations
// and KV caches kept on the GPU, bf16, CUDA graphs) build on the same kernels.
#pragma once

#include <memory>
#include <stdexcept>
#include <string>

#include "platform/base/status.h"
#include "platform/engine/backend.h"

namespace mh::engine {

struct CudaOptions {
  int device = 0;  // CUDA ordinal, after CUDA_VISIBLE_DEVICES
  // GEMM operands rounded to bf16, products summed in fp32 (the tensor cores' fast path);
  // otherwise fp32 throughout (no TF32), to the CPU backend's precision.
  bool bf16_gemm = false;
};

// A CUDA call that failed inside an op (out of memory, a device fault): the op's name and the
// runtime's words.
class CudaError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Fails (kUnavailable) when there is no such device or the runtime cannot start.
Result<std::unique_ptr<Backend>> make_cuda_backend(const CudaOptions& options = {});

// How many CUDA devices this process sees (0 when there is no driver or no device).
int cuda_device_count();

// The device-resident trainer and decoder (trainer.h, decoder.h) implement gpt2 and llama with
// scaled RoPE, sliding windows, attention scales, attention biases (qwen2's) and per-head q/k
// norms (qwen3's); this names the first thing of `config` they do not implement (Gemma's
// norms, ...), or returns null. A model they refuse still runs on this backend through the
// host engine, op by op.
struct ModelConfig;
const char* cuda_engines_lack(const ModelConfig& config);

}  // namespace mh::engine
