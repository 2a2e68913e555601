#include "platform/engine/cuda/gemm.h"

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <map>
#include <string>
#include <tuple>

#include "platform/engine/cuda/cuda_backend.h"

namespace mh::engine::cuda {
namespace {

constexpr size_t kWorkspace = size_t{32} << 20;

void check(cublasStatus_t st, const char* what) {
  if (st != CUBLAS_STATUS_SUCCESS) {
    throw CudaError(std::string("cublasLt: ") + what + ": status " +
                    std::to_string(static_cast<int>(st)));
  }
}

// One shape's descriptors and chosen algorithm, kept: a heuristic query costs more than a small
// product.
struct Plan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulAlgo_t algo{};
  ~Plan() {
    if (desc) cublasLtMatmulDescDestroy(desc);
    for (auto* l : {a, b, c}) {
      if (l) cublasLtMatrixLayoutDestroy(l);
    }
  }
};

}  // namespace

struct Gemm::Impl {
  cublasLtHandle_t lt = nullptr;
  void* workspace = nullptr;
  std::map<std::tuple<bool, bool, int64_t, int64_t, int64_t, int, int, bool, uint32_t>,
           std::unique_ptr<Plan>>
      plans;
  ~Impl() {
    plans.clear();
    if (workspace) cudaFree(workspace);
    if (lt) cublasLtDestroy(lt);
  }
};

Result<std::unique_ptr<Gemm>> Gemm::create() {
  std::unique_ptr<Gemm> g(new Gemm());
  g->impl_ = std::make_unique<Impl>();
  if (cublasLtCreate(&g->impl_->lt) != CUBLAS_STATUS_SUCCESS) {
    return unavailable("cublasLtCreate failed");
  }
  if (cudaError_t e = cudaMalloc(&g->impl_->workspace, kWorkspace); e != cudaSuccess) {
    return unavailable(std::string("workspace: ") + cudaGetErrorString(e));
  }
  return g;
}

Gemm::~Gemm() = default;

void Gemm::run(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const void* a,
               const void* b, float beta, float* c, cudaDataType_t in, cudaStream_t stream,
               const float* bias) {
  matmul(ta, tb, m, n, k, alpha, a, b, beta, c, in, CUDA_R_32F, stream, bias);
}

void Gemm::run_bf16_out(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha,
                        const void* a, const void* b, float beta, void* c, cudaStream_t stream) {
  matmul(ta, tb, m, n, k, alpha, a, b, beta, c, CUDA_R_16BF, CUDA_R_16BF, stream, nullptr);
}

void Gemm::matmul(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const void* a,
                  const void* b, float beta, void* c, cudaDataType_t in, cudaDataType_t out,
                  cudaStream_t stream, const float* bias) {
  // Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: cuBLASLt's first operand
  // is our B (n x k after its op), its second our A (k x m), its output n x m with ld n.
  // The operands' common alignment (up to 256 bytes): cuBLASLt's heuristic assumes 256 unless
  // told, and an algorithm chosen for aligned operands may not take others.
  uint32_t align = 256;
  for (const void* p : {a, b, static_cast<const void*>(c), static_cast<const void*>(bias)}) {
    if (p == nullptr) continue;
    while (reinterpret_cast<uintptr_t>(p) % align != 0) align /= 2;
  }
  auto key = std::make_tuple(ta, tb, m, n, k, static_cast<int>(in), static_cast<int>(out),
                             bias != nullptr, align);
  auto it = impl_->plans.find(key);
  if (it == impl_->plans.end()) {
    auto plan = std::make_unique<Plan>();
    check(cublasLtMatmulDescCreate(&plan->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F), "matmul desc");
    const cublasOperation_t op_first = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
    const cublasOperation_t op_second = ta ? CUBLAS_OP_T : CUBLAS_OP_N;
    check(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSA, &op_first,
                                         sizeof op_first),
          "transa");
    check(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSB, &op_second,
                                         sizeof op_second),
          "transb");
    if (bias != nullptr) {
      // A bias per row of the column-major output: per column of ours, per output feature.
      const cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_BIAS;
      check(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue,
                                           sizeof epilogue),
            "epilogue");
    }
    // As stored, column-major: B (row-major [k, n], or [n, k] transposed) is n x k with ld n, or
    // k x n with ld k; A is k x m with ld k, or m x k with ld m.
    check(cublasLtMatrixLayoutCreate(&plan->a, in, tb ? k : n, tb ? n : k, tb ? k : n), "layout");
    check(cublasLtMatrixLayoutCreate(&plan->b, in, ta ? m : k, ta ? k : m, ta ? m : k), "layout");
    check(cublasLtMatrixLayoutCreate(&plan->c, out, n, m, n), "layout");
    cublasLtMatmulPreference_t pref = nullptr;
    check(cublasLtMatmulPreferenceCreate(&pref), "preference");
    const size_t ws = kWorkspace;
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws,
                                         sizeof ws);
    for (auto attribute :
         {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
          CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES}) {
      cublasLtMatmulPreferenceSetAttribute(pref, attribute, &align, sizeof align);
    }
    cublasLtMatmulHeuristicResult_t result{};
    int found = 0;
    const cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(
        impl_->lt, plan->desc, plan->a, plan->b, plan->c, plan->c, pref, 1, &result, &found);
    cublasLtMatmulPreferenceDestroy(pref);
    check(st, "heuristic");
    if (found == 0) throw CudaError("cublasLt: no algorithm for this GEMM");
    plan->algo = result.algo;
    it = impl_->plans.emplace(key, std::move(plan)).first;
  }
  const Plan& p = *it->second;
  if (bias != nullptr) {
    check(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias,
                                         sizeof bias),
          "bias");
  }
  check(cublasLtMatmul(impl_->lt, p.desc, &alpha, b, p.a, a, p.b, &beta, c, p.c, c, p.c, &p.algo,
                       impl_->workspace, kWorkspace, stream),
        "matmul");
}

}  // namespace mh::engine::cuda
