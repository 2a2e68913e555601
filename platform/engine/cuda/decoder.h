// CudaDecoder: a model's inference on one GPU with everything on the device: the weights
// (fp32, or bf16 copies for the GEMMs), a KV cache slot per sequence, and one step's
// activations. A step runs every sequence's new tokens (a prompt, or the next token) in one
// pass and copies back only the logits of each sequence's last token; a step of single tokens
// is captured once per batch size as a CUDA graph and replayed, so small models are not bound
// by kernel launches.
//
// A layer is ten kernels: Llama's q, k, v projections are joined into one matrix and gate and
// up into another (gpt2's c_attn is one already), one kernel takes the fused projection to q and
// the caches (RoPE included), each residual add is done by the norm after it, and norms,
// activations and attention write the bf16 operands of the next product directly. Steps of up
// to 8 rows take the bf16 matrix-vector kernel (gemv_bf16) for Linear weights.
//
// It computes what Model::forward_cached computes (checked against the CPU backend in
// tests/engine/cuda_backend_test.cpp), for the same two families.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "platform/base/status.h"
#include "platform/engine/generate.h"
#include "platform/engine/model.h"

namespace mh::engine {

struct CudaDecoderOptions {
  int device = 0;
  int max_sequences = 64;     // cache slots
  int64_t capacity = 0;       // positions per slot; 0: the model's max_positions
  bool bf16_weights = false;  // GEMMs on bf16 copies of the weights (fp32 sums)
  bool graphs = true;         // replay single-token steps as CUDA graphs
};

class CudaDecoder {
 public:
  // Copies `model`'s weights to the device (the model may go away afterwards).
  static Result<std::unique_ptr<CudaDecoder>> create(const Model& model,
                                                     const CudaDecoderOptions& options = {});
  ~CudaDecoder();
  CudaDecoder(const CudaDecoder&) = delete;
  CudaDecoder& operator=(const CudaDecoder&) = delete;

  const ModelConfig& config() const;
  // Cache slots: options.max_sequences, or fewer when their caches would take more than half
  // of the device memory left after the weights.
  int slots() const;
  // A free cache slot, emptied (kResourceExhausted when all are taken).
  Result<int> open();
  void close(int slot);
  int64_t length(int slot) const;

  struct Work {
    int slot = 0;
    std::vector<int32_t> tokens;  // at least one
  };
  // Runs each slot's tokens after what its cache holds and returns the logits of each one's last
  // token, [work.size(), vocab]. Throws ShapeError for a closed slot, an id outside the
  // vocabulary or a cache overflow (nothing is run then), CudaError when the device fails.
  Tensor step(const std::vector<Work>& work);

 private:
  CudaDecoder();
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// DecodeBatch's runner on the decoder: a sequence's handle is its cache slot.
std::unique_ptr<SequenceRunner> decoder_runner(std::unique_ptr<CudaDecoder> decoder);

}  // namespace mh::engine
