// What every backend may take as it is: ops on 16-bit weights by way of their fp32 forms.
#include "platform/engine/backend.h"

#include <algorithm>

#include "platform/engine/backend_checks.h"

namespace mh::engine {

void Backend::gemm_half(bool transpose_b, float alpha, const Tensor& a, const HalfTensor& b,
                        float beta, Tensor& c) {
  check_gemm_half(transpose_b, a, b, beta, c);
  gemm(false, transpose_b, alpha, a, b.to_float(), beta, c);
}

void Backend::lora_rows(const Tensor& x, const std::vector<LoraSlice>& slices, Tensor& y) {
  const int64_t in = x.dim(1), out = y.dim(1);
  Tensor xs, u, ys;
  for (const LoraSlice& s : slices) {
    const int64_t n = s.end - s.begin;
    xs = Tensor({n, in});
    std::copy(x.data() + s.begin * in, x.data() + s.end * in, xs.data());
    if (s.a_half != nullptr) {
      gemm_half(true, 1.0f, xs, *s.a_half, 0.0f, u);
      gemm_half(false, s.scale, u, *s.bt_half, 0.0f, ys);
    } else {
      gemm(false, true, 1.0f, xs, *s.a, 0.0f, u);
      gemm(false, false, s.scale, u, *s.bt, 0.0f, ys);
    }
    float* dst = y.data() + s.begin * out;
    for (int64_t k = 0; k < n * out; ++k) dst[k] += ys[k];
  }
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
