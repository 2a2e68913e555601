// Backend: the ops a transformer's forward and backward passes are made of. The CPU backend is
// the reference; others (CUDA) implement the same interface and are checked against it.
//
// Conventions: row-major tensors; "rows" are every dimension but the last, flattened. Backward
// ops *accumulate* into parameter gradients (dw, db: +=, so that micro-batches add up) and
// *write* input gradients (dx: =). Shapes are checked; a mismatch throws ShapeError.
// A backend runs one op at a time: one thread drives it (each op may use the backend's threads).
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "platform/engine/tensor.h"

namespace mh::engine {

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const char* name() const = 0;

  // c = alpha * op(a) @ op(b) + beta * c, where op transposes when asked. a, b, c are 2-D.
  virtual void gemm(bool transpose_a, bool transpose_b, float alpha, const Tensor& a,
                    const Tensor& b, float beta, Tensor& c) = 0;

  // LayerNorm over the last dimension: out = (x - mean) * rstd * w + b. mean and rstd (one per
  // row) are saved for the backward pass.
  virtual void layernorm(const Tensor& x, const Tensor& w, const Tensor& b, float eps, Tensor& out,
                         Tensor& mean, Tensor& rstd) = 0;
  virtual void layernorm_backward(const Tensor& dout, const Tensor& x, const Tensor& w,
                                  const Tensor& mean, const Tensor& rstd, Tensor& dx, Tensor& dw,
                                  Tensor& db) = 0;

  // RMSNorm over the last dimension: out = x * rstd * w, rstd = 1/sqrt(mean(x^2) + eps).
  virtual void rmsnorm(const Tensor& x, const Tensor& w, float eps, Tensor& out, Tensor& rstd) = 0;
  virtual void rmsnorm_backward(const Tensor& dout, const Tensor& x, const Tensor& w,
                                const Tensor& rstd, Tensor& dx, Tensor& dw) = 0;

  // GELU, tanh approximation (GPT-2's "gelu_new").
  virtual void gelu(const Tensor& x, Tensor& out) = 0;
  virtual void gelu_backward(const Tensor& dout, const Tensor& x, Tensor& dx) = 0;

  // SwiGLU: out = silu(gate) * up (Llama's MLP).
  virtual void swiglu(const Tensor& gate, const Tensor& up, Tensor& out) = 0;
  virtual void swiglu_backward(const Tensor& dout, const Tensor& gate, const Tensor& up,
                               Tensor& dgate, Tensor& dup) = 0;

  // Rows of `table` picked by ids: out[i] = table[ids[i]]. Ids out of range throw ShapeError.
  virtual void embedding(const Tensor& table, const std::vector<int32_t>& ids, Tensor& out) = 0;
  virtual void embedding_backward(const Tensor& dout, const std::vector<int32_t>& ids,
                                  Tensor& dtable) = 0;

  // Softmax cross-entropy of logits [N, V] against targets (an id, or -1 to ignore the row).
  // Returns the mean loss over counted rows and writes dlogits = d(mean loss)/d(logits),
  // without keeping the probabilities of more than one row at a time.
  virtual float cross_entropy(const Tensor& logits, const std::vector<int32_t>& targets,
                              Tensor& dlogits) = 0;

  // out = a + b, same shapes.
  virtual void add(const Tensor& a, const Tensor& b, Tensor& out) = 0;
};

// The CPU backend: OpenBLAS SGEMM where the build found it, threads for the rest. `threads` 0
// means one per hardware thread.
std::unique_ptr<Backend> make_cpu_backend(int threads = 0);

}  // namespace mh::engine
