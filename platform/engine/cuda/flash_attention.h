// Causal grouped-query attention on the tensor cores (bf16 operands, fp32 sums), flash-style:
// a block of 64 queries walks the keys 64 at a time with an online softmax, so no row of scores
// is ever held beyond one 64 x 64 tile in shared memory. The backward pass recomputes the
// probabilities from the saved log-sum-exp, in two kernels that each own what they write (dq
// per query block, dk and dv per key block, summed over the key's query heads), so it needs no
// atomics and gives the same bits every run.
//
// The shapes and layouts are kernels.h's AttentionDims: q [batch * q_len, heads * head_dim],
// k and v [batch * kv_len, kv_heads * head_dim], out fp32 like q, lse [batch, heads, q_len];
// query i sees keys 0 .. kv_len - q_len + i. Checked against the CPU backend to bf16 rounding
// (tests/engine/cuda_backend_test.cpp).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "platform/engine/cuda/kernels.h"

namespace mh::engine::cuda {

// The head sizes the tensor-core kernels are built for (32, 64 and 128); others take the fp32
// kernels of kernels.h.
bool flash_supported(int64_t head_dim);

// Row strides, in elements, of q and of k and v, and of their gradients, when they are columns
// of wider rows (gpt2's fused q|k|v projection: all 3 * hidden, k and v starting hidden and
// 2 * hidden in). 0 is the dense width of AttentionDims. Strides and column starts must keep
// rows on 16-byte boundaries (multiples of 8 elements).
// Plain causal attention only: dims with a window, a scale of their own or a soft-cap are
// refused (cudaErrorInvalidValue); kernels.h's fp32 kernels take those.
struct FlashStrides {
  int64_t q = 0, kv = 0, dq = 0, dkv = 0;
};

// q, k, v in bf16; lse fp32; out fp32, or bf16 (when its only readers take bf16: the output
// projection's GEMM, and the backward pass's delta), always dense.
cudaError_t flash_attention(const AttentionDims& s, const uint16_t* q, const uint16_t* k,
                            const uint16_t* v, float* out, float* lse, cudaStream_t stream,
                            const FlashStrides& strides = {});
cudaError_t flash_attention(const AttentionDims& s, const uint16_t* q, const uint16_t* k,
                            const uint16_t* v, uint16_t* out, float* lse, cudaStream_t stream,
                            const FlashStrides& strides = {});

// dq, dk, dv (fp32) written, not accumulated (with strides, into their columns). dout is fp32 and
// out the forward's (fp32 or bf16): delta = rowsum(dout * out) is taken from them; `dout_bf16` is
// scratch of dout's size and `delta` of batch * heads * q_len floats.
cudaError_t flash_attention_backward(const AttentionDims& s, const float* dout, const float* out,
                                     const uint16_t* q, const uint16_t* k, const uint16_t* v,
                                     const float* lse, uint16_t* dout_bf16, float* delta, float* dq,
                                     float* dk, float* dv, cudaStream_t stream,
                                     const FlashStrides& strides = {});
cudaError_t flash_attention_backward(const AttentionDims& s, const float* dout, const uint16_t* out,
                                     const uint16_t* q, const uint16_t* k, const uint16_t* v,
                                     const float* lse, uint16_t* dout_bf16, float* delta, float* dq,
                                     float* dk, float* dv, cudaStream_t stream,
                                     const FlashStrides& strides = {});
// The same writing bf16 gradients, when a product is all that reads them (gpt2's fused
// projection's gradient in bf16 training).
cudaError_t flash_attention_backward(const AttentionDims& s, const float* dout, const uint16_t* out,
                                     const uint16_t* q, const uint16_t* k, const uint16_t* v,
                                     const float* lse, uint16_t* dout_bf16, float* delta,
                                     uint16_t* dq, uint16_t* dk, uint16_t* dv, cudaStream_t stream,
                                     const FlashStrides& strides = {});

}  // namespace mh::engine::cuda
