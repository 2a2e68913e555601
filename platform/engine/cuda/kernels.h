// The CUDA engine's kernels, as host functions over device pointers on a stream. Row-major, the
// conventions of backend.h (rows are every dimension but the last; backward ops accumulate into
// parameter gradients and write input gradients). fp32 in and out, fp32 arithmetic: these are
// checked against the CPU backend to fp32 rounding. The ops whose outputs are only ever GEMM
// operands (norms, GELU, SwiGLU) also come with a bf16 output (uint16_t*, rounded to nearest
// even), for bf16 training. Every launcher returns the launch's error (cudaSuccess when it was
// queued).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <vector>

namespace mh::engine::cuda {

// The largest head the attention kernels take (each lane of a warp holds head_dim / 32 of a
// row).
constexpr int kMaxHeadDim = 256;

cudaError_t layernorm(const float* x, const float* w, const float* b, float eps, int64_t rows,
                      int64_t cols, float* out, float* mean, float* rstd, cudaStream_t stream);
cudaError_t layernorm(const float* x, const float* w, const float* b, float eps, int64_t rows,
                      int64_t cols, uint16_t* out, float* mean, float* rstd, cudaStream_t stream);
// residual_out = residual + branch (may be `residual` itself), then its norm into `out`:
// LayerNorm with bias `b` (mean and rstd saved), or RMSNorm when `b` is null (rstd saved; mean
// unused). The same arithmetic as add() and then the norm, in one pass.
cudaError_t add_norm(const float* residual, const float* branch, float* residual_out,
                     const float* w, const float* b, float eps, int64_t rows, int64_t cols,
                     float* out, float* mean, float* rstd, cudaStream_t stream);
cudaError_t add_norm(const float* residual, const float* branch, float* residual_out,
                     const float* w, const float* b, float eps, int64_t rows, int64_t cols,
                     uint16_t* out, float* mean, float* rstd, cudaStream_t stream);
// dx = ...; dw += ...; db += ...
cudaError_t layernorm_backward(const float* dout, const float* x, const float* w, const float* mean,
                               const float* rstd, int64_t rows, int64_t cols, float* dx, float* dw,
                               float* db, cudaStream_t stream);
cudaError_t rmsnorm(const float* x, const float* w, float eps, int64_t rows, int64_t cols,
                    float* out, float* rstd, cudaStream_t stream);
cudaError_t rmsnorm(const float* x, const float* w, float eps, int64_t rows, int64_t cols,
                    uint16_t* out, float* rstd, cudaStream_t stream);
cudaError_t rmsnorm_backward(const float* dout, const float* x, const float* w, const float* rstd,
                             int64_t rows, int64_t cols, float* dx, float* dw, cudaStream_t stream);

cudaError_t gelu(const float* x, int64_t n, float* out, cudaStream_t stream);
cudaError_t gelu(const float* x, int64_t n, uint16_t* out, cudaStream_t stream);
cudaError_t gelu_backward(const float* dout, const float* x, int64_t n, float* dx,
                          cudaStream_t stream);
// The same writing a bf16 gradient, for the product it feeds (bf16 training).
cudaError_t gelu_backward(const float* dout, const float* x, int64_t n, uint16_t* dx,
                          cudaStream_t stream);
cudaError_t swiglu(const float* gate, const float* up, int64_t n, float* out, cudaStream_t stream);
cudaError_t swiglu(const float* gate, const float* up, int64_t n, uint16_t* out,
                   cudaStream_t stream);
cudaError_t swiglu_backward(const float* dout, const float* gate, const float* up, int64_t n,
                            float* dgate, float* dup, cudaStream_t stream);
cudaError_t swiglu_backward(const float* dout, const float* gate, const float* up, int64_t n,
                            uint16_t* dgate, uint16_t* dup, cudaStream_t stream);

// out[i] = table[ids[i]] (ids already checked against the table's rows).
cudaError_t embedding(const float* table, const int32_t* ids, int64_t n, int64_t cols, float* out,
                      cudaStream_t stream);
// The rows of a batch grouped by their ids, for embedding_backward: group g is id ids[g] and
// its rows are rows[starts[g] .. starts[g + 1]), in increasing order. Built on the host.
struct IdGroups {
  std::vector<int32_t> ids, starts, rows;
  int64_t groups() const { return static_cast<int64_t>(ids.size()); }
};
IdGroups group_by_id(const int32_t* ids, int64_t n);
// dtable[ids[g]] += the dout rows of group g, added in row order (the arrays of an IdGroups, on
// the device; starts has groups + 1 entries).
cudaError_t embedding_backward(const float* dout, const int32_t* group_ids, const int32_t* starts,
                               const int32_t* rows, int64_t groups, int64_t cols, float* dtable,
                               cudaStream_t stream);

// Per row: loss[r] = logsumexp(logits[r]) - logits[r][t] (0 where t < 0), and
// dlogits[r] = (softmax(logits[r]) - onehot(t)) * inv_denominator (0 where t < 0). dlogits may
// be logits (the gradient replaces the logits in place).
cudaError_t cross_entropy(const float* logits, const int32_t* targets, int64_t rows, int64_t vocab,
                          float inv_denominator, float* loss, float* dlogits, cudaStream_t stream);
// The same on bf16 logits (fp32 arithmetic), writing a bf16 gradient: the classifier of bf16
// training, whose gradient is the next GEMMs' operand as it is.
cudaError_t cross_entropy_bf16(const uint16_t* logits, const int32_t* targets, int64_t rows,
                               int64_t vocab, float inv_denominator, float* loss, uint16_t* dlogits,
                               cudaStream_t stream);

cudaError_t add(const float* a, const float* b, int64_t n, float* out, cudaStream_t stream);
cudaError_t scale(float* x, int64_t n, float alpha, cudaStream_t stream);
// x = cap * tanh(x / cap) in place; the backward: dy *= 1 - (y / cap)^2 for capped values y.
cudaError_t softcap(float* x, int64_t n, float cap, cudaStream_t stream);
cudaError_t softcap_backward(float* dy, const float* y, int64_t n, float cap, cudaStream_t stream);
// GeGLU: out = gelu_tanh(gate) * up, and its backward.
cudaError_t gelu_glu(const float* gate, const float* up, int64_t n, float* out,
                     cudaStream_t stream);
cudaError_t gelu_glu_backward(const float* dout, const float* gate, const float* up, int64_t n,
                              float* dgate, float* dup, cudaStream_t stream);
cudaError_t add_bias(float* x, const float* bias, int64_t rows, int64_t cols, cudaStream_t stream);
// dbias += column sums of dout
cudaError_t bias_backward(const float* dout, int64_t rows, int64_t cols, float* dbias,
                          cudaStream_t stream);
cudaError_t bias_backward(const uint16_t* dout, int64_t rows, int64_t cols, float* dbias,
                          cudaStream_t stream);

// In place, Hugging Face's Llama rotation: pair i at position p turns by p * inv_freq[i]
// (head_dim / 2 frequencies in device memory), cos and sin times `factor`; sign -1 applies the
// transpose (the backward pass).
cudaError_t rope(float* x, int64_t rows, int64_t width, int64_t head_dim, const int32_t* positions,
                 const float* inv_freq, float factor, float sign, cudaStream_t stream);

// Scores are q . k * scale (0: 1 / sqrt(head_dim)), soft-capped when softcap > 0; a window > 0
// limits each query to the last `window` keys up to its own.
struct AttentionDims {
  int64_t batch, q_len, kv_len, heads, kv_heads, head_dim;
  int64_t window = 0;
  float scale = 0.0f, softcap = 0.0f;
};
// Causal grouped-query attention that never holds a row of scores: an online softmax over
// blocks of keys (flash-style). q/out [batch * q_len, heads * head_dim], k/v rows of
// kv_heads * head_dim, lse [batch, heads, q_len].
cudaError_t attention(const AttentionDims& s, const float* q, const float* k, const float* v,
                      float* out, float* lse, cudaStream_t stream);
// dq, dk, dv written (not accumulated); `delta` is scratch of batch * heads * q_len floats.
cudaError_t attention_backward(const AttentionDims& s, const float* dout, const float* q,
                               const float* k, const float* v, const float* out, const float* lse,
                               float* delta, float* dq, float* dk, float* dv, cudaStream_t stream);

// Decoding against KV caches that live on the device: `slots` caches of `capacity` rows of
// kv_heads * head_dim per layer, laid out [slot][row]. Row r of q (and of the new k, v) belongs
// to cache slot[r] at position position[r]; it sees that cache's rows 0 .. position[r]. The index
// arrays are device memory, so a captured CUDA graph replays with new values.
struct CachedAttentionDims {
  int64_t rows, heads, kv_heads, head_dim, capacity;
  int64_t window = 0;  // as AttentionDims
  float scale = 0.0f, softcap = 0.0f;
};
// k_cache[slot[r]][position[r]] = k[r], and the same for v.
cudaError_t kv_append(const CachedAttentionDims& s, const float* k, const float* v,
                      const int32_t* slot, const int32_t* position, float* k_cache, float* v_cache,
                      cudaStream_t stream);
// A decode step's fused projection, [rows, (heads + 2 kv_heads) * head_dim] with each row's q
// heads, then k heads, then v heads: q (RoPE-rotated by inv_freq and factor as rope() does,
// when inv_freq is not null) into q_out [rows, heads * head_dim], k (rotated likewise) and v
// into cache slot[r]'s row position[r]. One kernel where a split, two rotations and kv_append
// would be four.
cudaError_t qkv_to_cache(const CachedAttentionDims& s, const float* qkv, const int32_t* slot,
                         const int32_t* position, const float* inv_freq, float factor,
                         float* q_out, float* k_cache, float* v_cache, cudaStream_t stream);
// y[rows, n] = x[rows, k] W^T (+ bias) for W [n, k] and x in bf16, y fp32, rows up to
// kGemvRows: a decode step's products at small batches, bound by reading W once. k must be a
// multiple of 8 and W and x 16-byte aligned (cudaErrorInvalidValue otherwise).
constexpr int64_t kGemvRows = 8;
cudaError_t gemv_bf16(const uint16_t* w, const uint16_t* x, int64_t rows, int64_t n, int64_t k,
                      const float* bias, float* y, cudaStream_t stream);

// SwiGLU on a fused [rows, 2 f] gate|up projection: out[r, i] = silu(gu[r, i]) * gu[r, f + i].
cudaError_t swiglu_fused(const float* gate_up, int64_t rows, int64_t f, float* out,
                         cudaStream_t stream);
cudaError_t swiglu_fused(const float* gate_up, int64_t rows, int64_t f, uint16_t* out,
                         cudaStream_t stream);
cudaError_t cached_attention(const CachedAttentionDims& s, const float* q, const float* k_cache,
                             const float* v_cache, const int32_t* slot, const int32_t* position,
                             float* out, cudaStream_t stream);
// The same into bf16 (a decode step's operand of the output projection).
cudaError_t cached_attention(const CachedAttentionDims& s, const float* q, const float* k_cache,
                             const float* v_cache, const int32_t* slot, const int32_t* position,
                             uint16_t* out, cudaStream_t stream);

// One AdamW update of n fp32 master weights, as torch.optim.AdamW (and the CPU trainer) computes
// it: g = grad * grad_scale; m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;
// w = w * decay - step_size * m / (sqrt(v) / bc2_sqrt + eps). When `bf16_copy` is not null the
// updated weights are also written there in bf16 (the copy the forward pass reads).
struct AdamWStep {
  float beta1, beta2, eps;
  float decay;      // 1 - lr * weight_decay for decayed parameters, else 1
  float step_size;  // lr / (1 - beta1^t)
  float bc2_sqrt;   // sqrt(1 - beta2^t)
  float grad_scale;
};
cudaError_t adamw(float* w, const float* grad, float* m, float* v, int64_t n, const AdamWStep& s,
                  uint16_t* bf16_copy, cudaStream_t stream);

// *out += scale * the sum of x[0, n) (of its squares when `squares`), added in double in an
// order fixed by n alone, so that the same input gives the same bits. `partial` is device
// scratch of kSumBlocks doubles.
constexpr int kSumBlocks = 256;
cudaError_t sum(const float* x, int64_t n, bool squares, double scale, double* partial, double* out,
                cudaStream_t stream);

// Conversions between fp32 and bf16 (round to nearest even), for bf16 GEMM operands.
cudaError_t to_bf16(const float* in, int64_t n, uint16_t* out, cudaStream_t stream);
cudaError_t from_bf16(const uint16_t* in, int64_t n, float* out, cudaStream_t stream);

}  // namespace mh::engine::cuda
