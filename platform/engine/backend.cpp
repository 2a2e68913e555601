// What every backend may take as it is: ops on 16-bit weights by way of their fp32 forms.
#include "platform/engine/backend.h"

#include "platform/engine/backend_checks.h"

namespace mh::engine {

void Backend::gemm_half(bool transpose_b, float alpha, const Tensor& a, const HalfTensor& b,
                        float beta, Tensor& c) {
  check_gemm_half(transpose_b, a, b, beta, c);
  gemm(false, transpose_b, alpha, a, b.to_float(), beta, c);
}

void Backend::embedding_half(const HalfTensor& table, const std::vector<int32_t>& ids,
                             Tensor& out) {
  if (table.rank() != 2) throw ShapeError("embedding: table must be 2-D");
  const int64_t c = table.dim(1);
  shape_output(out, {static_cast<int64_t>(ids.size()), c});
  for (size_t i = 0; i < ids.size(); ++i) {
    check_id(ids[i], table.dim(0), "embedding");
    table.read(ids[i] * c, c, out.data() + static_cast<int64_t>(i) * c);
  }
}

}  // namespace mh::engine
