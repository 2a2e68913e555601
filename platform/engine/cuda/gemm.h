// Gemm: cuBLASLt matrix products on device memory, in the engine's row-major convention:
// C[m, n] = alpha * op(A) op(B) + beta * C, op(A) [m, k], op(B) [k, n], C fp32 (or bf16). Operands
// are fp32 (fp32 arithmetic, no TF32) or bf16 (fp32 sums). Owns its cuBLASLt handle and workspace;
// one stream at a time.
#pragma once

#include <cuda_runtime_api.h>
#include <library_types.h>

#include <cstdint>
#include <memory>

#include "platform/base/status.h"

namespace mh::engine::cuda {

class Gemm {
 public:
  static Result<std::unique_ptr<Gemm>> create();
  ~Gemm();
  Gemm(const Gemm&) = delete;
  Gemm& operator=(const Gemm&) = delete;

  // Row-major A is [m, k] (transpose_a: [k, m]), B [k, n] (transpose_b: [n, k]), both dense;
  // `in` is CUDA_R_32F or CUDA_R_16BF. With `bias` (n floats) every row of C gets it added in
  // the product's epilogue, without another pass over C. Throws CudaError (cuda_backend.h) on
  // failure.
  void run(bool transpose_a, bool transpose_b, int64_t m, int64_t n, int64_t k, float alpha,
           const void* a, const void* b, float beta, float* c, cudaDataType_t in,
           cudaStream_t stream, const float* bias = nullptr);
  // The same from bf16 operands into a bf16 C (fp32 sums, rounded once): for a product whose
  // only readers take bf16 (the classifier's logits). No bias.
  void run_bf16_out(bool transpose_a, bool transpose_b, int64_t m, int64_t n, int64_t k,
                    float alpha, const void* a, const void* b, float beta, void* c,
                    cudaStream_t stream);

 private:
  Gemm() = default;
  void matmul(bool transpose_a, bool transpose_b, int64_t m, int64_t n, int64_t k, float alpha,
              const void* a, const void* b, float beta, void* c, cudaDataType_t in,
              cudaDataType_t out, cudaStream_t stream, const float* bias);
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace mh::engine::cuda
