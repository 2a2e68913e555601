// The shape checks and output shaping every backend does alike, so that a mistake is reported
// the same way whichever backend runs (ShapeError, naming the op and the tensor).
#pragma once

#include <algorithm>
#include <string>
#include <tuple>
#include <vector>

#include "platform/engine/backend.h"

namespace mh::engine {

inline int64_t rows_of(const Tensor& t) { return t.numel() / std::max<int64_t>(1, t.dim(-1)); }

inline void expect_same(const Tensor& a, const Tensor& b, const char* op, const char* what) {
  expect_shape(b, a.shape(), op, what);
}

// Output tensors are (re)shaped by the op when they do not have the right shape yet.
inline void shape_output(Tensor& out, const Shape& shape) {
  if (out.shape() != shape) out = Tensor(shape);
}

// A product's operands: op(a) [m, k] and op(b) [k, n] 2-D and agreeing (b given by its shape),
// c [m, n] (shaped when beta is 0, else it must be). Returns {m, n, k}.
inline std::tuple<int64_t, int64_t, int64_t> check_product(const char* op, bool ta, bool tb,
                                                           const Tensor& a, const Shape& b,
                                                           float beta, Tensor& c) {
  if (a.rank() != 2 || b.size() != 2) {
    throw ShapeError(std::string(op) + ": a " + shape_string(a.shape()) + " and b " +
                     shape_string(b) + " must be 2-D");
  }
  const int64_t m = ta ? a.dim(1) : a.dim(0), k = ta ? a.dim(0) : a.dim(1);
  const int64_t kb = tb ? b[1] : b[0], n = tb ? b[0] : b[1];
  if (k != kb) {
    throw ShapeError(std::string(op) + ": op(a) is [" + std::to_string(m) + ", " +
                     std::to_string(k) + "] but op(b) is [" + std::to_string(kb) + ", " +
                     std::to_string(n) + "]");
  }
  if (beta == 0.0f) {
    shape_output(c, {m, n});
  } else {
    expect_shape(c, {m, n}, op, "c");
  }
  return {m, n, k};
}

inline std::tuple<int64_t, int64_t, int64_t> check_gemm(bool ta, bool tb, const Tensor& a,
                                                        const Tensor& b, float beta, Tensor& c) {
  return check_product("gemm", ta, tb, a, b.shape(), beta, c);
}
// gemm_half's: a is never transposed.
inline std::tuple<int64_t, int64_t, int64_t> check_gemm_half(bool tb, const Tensor& a,
                                                             const HalfTensor& b, float beta,
                                                             Tensor& c) {
  return check_product("gemm_half", false, tb, a, b.shape(), beta, c);
}

inline void check_rope(const Tensor& x, int64_t head_dim, const std::vector<int32_t>& positions,
                       const Backend::Rope& rope, const char* op) {
  if (x.rank() != 2 || head_dim <= 0 || head_dim % 2 != 0 || x.dim(1) % head_dim != 0) {
    throw ShapeError(std::string(op) + ": x " + shape_string(x.shape()) +
                     " is not [N, heads * head_dim] with an even head_dim " +
                     std::to_string(head_dim));
  }
  if (static_cast<int64_t>(positions.size()) != x.dim(0)) {
    throw ShapeError(std::string(op) + ": " + std::to_string(positions.size()) + " positions for " +
                     std::to_string(x.dim(0)) + " rows");
  }
  if (static_cast<int64_t>(rope.inv_freq.size()) != head_dim / 2) {
    throw ShapeError(std::string(op) + ": " + std::to_string(rope.inv_freq.size()) +
                     " frequencies for a head_dim of " + std::to_string(head_dim));
  }
}

using AttentionShape = Backend::AttentionShape;

inline void check_attention(const AttentionShape& s, const Tensor& q, const Tensor& k,
                            const Tensor& v, const char* op) {
  const std::string name(op);
  if (s.batch < 1 || s.q_len < 1 || s.kv_len < s.q_len || s.heads < 1 || s.kv_heads < 1 ||
      s.heads % s.kv_heads != 0 || s.head_dim < 1 || s.window < 0 || !(s.scale >= 0.0f) ||
      !(s.softcap >= 0.0f)) {
    throw ShapeError(name + ": batch " + std::to_string(s.batch) + ", q_len " +
                     std::to_string(s.q_len) + ", kv_len " + std::to_string(s.kv_len) + ", heads " +
                     std::to_string(s.heads) + "/" + std::to_string(s.kv_heads) + ", head_dim " +
                     std::to_string(s.head_dim) + " do not make an attention");
  }
  expect_shape(q, {s.batch * s.q_len, s.heads * s.head_dim}, op, "q");
  for (const Tensor* t : {&k, &v}) {
    if (t->rank() != 2 || t->dim(1) != s.kv_heads * s.head_dim || t->dim(0) < s.batch * s.kv_len) {
      throw ShapeError(name + ": keys/values " + shape_string(t->shape()) + " need " +
                       std::to_string(s.batch * s.kv_len) + "+ rows of " +
                       std::to_string(s.kv_heads * s.head_dim));
    }
  }
}

inline void check_id(int32_t id, int64_t size, const char* op) {
  if (id < 0 || id >= size) {
    throw ShapeError(std::string(op) + ": id " + std::to_string(id) + " outside [0, " +
                     std::to_string(size) + ")");
  }
}

// cross_entropy's operands: logits [N, V], a target per row (an id, or -1), dlogits shaped like
// the logits. Returns the denominator to divide by: the counted rows when 0 is given.
inline int64_t check_cross_entropy(const Tensor& logits, const std::vector<int32_t>& targets,
                                   Tensor& dlogits, int64_t denominator) {
  if (logits.rank() != 2) throw ShapeError("cross_entropy: logits must be [N, V]");
  const int64_t n = logits.dim(0), v = logits.dim(1);
  if (static_cast<int64_t>(targets.size()) != n) {
    throw ShapeError("cross_entropy: " + std::to_string(targets.size()) + " targets for " +
                     std::to_string(n) + " rows");
  }
  shape_output(dlogits, logits.shape());
  int64_t counted = 0;
  for (int32_t t : targets) {
    if (t >= 0) {
      check_id(t, v, "cross_entropy");
      ++counted;
    }
  }
  if (denominator <= 0) denominator = counted;
  return denominator;
}

}  // namespace mh::engine
