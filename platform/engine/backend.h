// Backend: the ops a transformer's forward and backward passes are made of. The CPU backend is
// the reference; others (CUDA) implement the same interface and are checked against it.
//
// Conventions: row-major tensors; "rows" are every dimension but the last, flattened. Backward
// ops *accumulate* into parameter gradients (dw, db: +=, so that micro-batches add up) and
// *write* input gradients (dx: =). Shapes are checked; a mismatch throws ShapeError.
// A backend runs one op at a time: one thread drives it (each op may use the backend's threads).
#pragma once

#include <cmath>
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

  // c = alpha * a @ op(b) + beta * c with b held at 16 bits (weights kept as their file stores
  // them), converted as it is read; op transposes b when asked. The default converts all of b
  // and calls gemm; the CPU backend converts it piece by piece as its products read it.
  virtual void gemm_half(bool transpose_b, float alpha, const Tensor& a, const HalfTensor& b,
                         float beta, Tensor& c);

  // LoRA's product over rows of x, each slice of rows through its own adapter (the grouped
  // product with which Punica and S-LoRA batch many adapters' decoding):
  //   y[i] += scale · (x[i] Aᵀ) Bᵀ   for each row i in a slice's [begin, end),
  // with A [rank, in] and Bᵀ held as [rank, out], both fp32 or both 16-bit. The default gathers
  // each slice's rows and multiplies them with gemm; the CPU backend works row by row, every
  // slice in one parallel pass.
  struct LoraSlice {
    int64_t begin = 0, end = 0;
    float scale = 1;
    const Tensor* a = nullptr;
    const Tensor* bt = nullptr;
    const HalfTensor* a_half = nullptr;
    const HalfTensor* bt_half = nullptr;
  };
  virtual void lora_rows(const Tensor& x, const std::vector<LoraSlice>& slices, Tensor& y);

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
  // GeGLU: out = gelu_tanh(gate) * up (Gemma's MLP).
  virtual void gelu_glu(const Tensor& gate, const Tensor& up, Tensor& out) = 0;
  virtual void gelu_glu_backward(const Tensor& dout, const Tensor& gate, const Tensor& up,
                                 Tensor& dgate, Tensor& dup) = 0;

  // Rows of `table` picked by ids: out[i] = table[ids[i]]. Ids out of range throw ShapeError.
  virtual void embedding(const Tensor& table, const std::vector<int32_t>& ids, Tensor& out) = 0;
  // The same from a table held at 16 bits: the picked rows are converted.
  virtual void embedding_half(const HalfTensor& table, const std::vector<int32_t>& ids,
                              Tensor& out);
  virtual void embedding_backward(const Tensor& dout, const std::vector<int32_t>& ids,
                                  Tensor& dtable) = 0;

  // Softmax cross-entropy of logits [N, V] against targets (an id, or -1 to ignore the row).
  // Returns the summed loss over counted rows divided by `denominator` (0: by the number of
  // counted rows, i.e. the mean) and writes dlogits, the gradient of that returned value, without
  // keeping the probabilities of more than one row at a time. A caller splitting one batch into
  // pieces passes the whole batch's count, so that the pieces' gradients add up to the batch's.
  virtual float cross_entropy(const Tensor& logits, const std::vector<int32_t>& targets,
                              Tensor& dlogits, int64_t denominator = 0) = 0;

  // out = a + b, same shapes. `out` may be `a` or `b`.
  virtual void add(const Tensor& a, const Tensor& b, Tensor& out) = 0;

  // x[r] += bias for every row r of x [.., C]; bias is [C].
  virtual void add_bias(Tensor& x, const Tensor& bias) = 0;
  // dbias += the column sums of dout [.., C].
  virtual void bias_backward(const Tensor& dout, Tensor& dbias) = 0;

  // Rotary position embedding, in place, in Hugging Face's Llama convention (the two halves of
  // each head rotated together: x * cos + rotate_half(x) * sin). x is [N, heads * head_dim] and
  // row n is at position positions[n]; pair i turns by positions[n] * inv_freq[i] (head_dim / 2
  // frequencies), and cos and sin are multiplied by attention_factor (YaRN's; 1 otherwise).
  // rope_backward applies the transpose (the inverse rotation, times the factor) to a gradient.
  struct Rope {
    std::vector<float> inv_freq;
    float attention_factor = 1.0f;
  };
  virtual void rope(Tensor& x, int64_t head_dim, const std::vector<int32_t>& positions,
                    const Rope& rope) = 0;
  virtual void rope_backward(Tensor& dx, int64_t head_dim, const std::vector<int32_t>& positions,
                             const Rope& rope) = 0;

  // x *= alpha, in place.
  virtual void scale(Tensor& x, float alpha) = 0;
  // Soft-capping in place: x = cap * tanh(x / cap). softcap_backward turns dy, the gradient at
  // the capped values y, into the gradient before capping, in place: dy *= 1 - (y / cap)^2.
  virtual void softcap(Tensor& x, float cap) = 0;
  virtual void softcap_backward(Tensor& dy, const Tensor& y, float cap) = 0;

  // Causal scaled-dot-product attention with grouped-query heads, never holding more than one
  // row of scores. Queries are [batch * q_len, heads * head_dim]; keys and values have at least
  // batch * kv_len rows of kv_heads * head_dim (sequence b's are rows [b * kv_len, (b + 1) *
  // kv_len)); query i of a sequence sees keys 0 .. kv_len - q_len + i, so q_len < kv_len is a
  // continuation after kv_len - q_len cached positions. Query head h reads key/value head
  // h / (heads / kv_heads). out is [batch * q_len, heads * head_dim]; lse [batch, heads, q_len]
  // keeps each row's log-sum-exp of scores for the backward pass. A score is q . k * scale (0:
  // 1 / sqrt(head_dim)), soft-capped when softcap > 0; with a window > 0 a query sees only the
  // last `window` keys up to its own (itself included).
  struct AttentionShape {
    int64_t batch = 1, q_len = 0, kv_len = 0, heads = 1, kv_heads = 1, head_dim = 0;
    int64_t window = 0;
    float scale = 0.0f, softcap = 0.0f;
    float score_scale() const;
    // The first key that query i (of q_len) sees.
    int64_t first_key(int64_t i) const {
      const int64_t pos = kv_len - q_len + i;
      return window > 0 && pos >= window ? pos - window + 1 : 0;
    }
  };
  virtual void attention(const AttentionShape& shape, const Tensor& q, const Tensor& k,
                         const Tensor& v, Tensor& out, Tensor& lse) = 0;
  // Writes dq, dk, dv (the shapes of q, k, v).
  virtual void attention_backward(const AttentionShape& shape, const Tensor& dout, const Tensor& q,
                                  const Tensor& k, const Tensor& v, const Tensor& out,
                                  const Tensor& lse, Tensor& dq, Tensor& dk, Tensor& dv) = 0;
};

inline float Backend::AttentionShape::score_scale() const {
  return scale > 0.0f ? scale : 1.0f / std::sqrt(static_cast<float>(head_dim));
}

// The CPU backend: OpenBLAS SGEMM where the build found it, threads for the rest. `threads` 0
// means one per hardware thread.
std::unique_ptr<Backend> make_cpu_backend(int threads = 0);

}  // namespace mh::engine
