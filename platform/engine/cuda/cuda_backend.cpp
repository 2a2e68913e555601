#include "platform/engine/cuda/cuda_backend.h"

#include <cuda_runtime.h>

#include <cmath>
#include <cstring>
#include <exception>
#include <vector>

#include "platform/engine/backend_checks.h"
#include "platform/engine/cuda/gemm.h"
#include "platform/engine/cuda/kernels.h"
#include "platform/engine/model.h"

namespace mh::engine {
namespace {

void check(cudaError_t err, const char* what) {
  if (err != cudaSuccess) {
    throw CudaError(std::string("cuda: ") + what + ": " + cudaGetErrorString(err));
  }
}

// Device scratch for one op's operands, reused from op to op. It grows by adding chunks while
// an op runs; at the next op it is one chunk big enough for the largest op seen.
class Arena {
 public:
  ~Arena() { release(); }
  void* take(size_t bytes) {
    bytes = (bytes + 255) / 256 * 256;
    if (chunks_.empty() || chunks_.back().used + bytes > chunks_.back().size) {
      Chunk c;
      c.size = std::max(bytes, chunks_.empty() ? size_t{64} << 20 : chunks_.back().size * 2);
      check(cudaMalloc(&c.ptr, c.size), "cudaMalloc");
      chunks_.push_back(c);
    }
    Chunk& c = chunks_.back();
    void* p = static_cast<char*>(c.ptr) + c.used;
    c.used += bytes;
    return p;
  }
  void reset() {
    if (chunks_.size() > 1) {
      size_t total = 0;
      for (const auto& c : chunks_) total += c.size;
      release();
      Chunk c;
      c.size = total;
      check(cudaMalloc(&c.ptr, c.size), "cudaMalloc");
      chunks_.push_back(c);
    }
    for (auto& c : chunks_) c.used = 0;
  }

 private:
  struct Chunk {
    void* ptr = nullptr;
    size_t size = 0, used = 0;
  };
  void release() {
    for (auto& c : chunks_) cudaFree(c.ptr);
    chunks_.clear();
  }
  std::vector<Chunk> chunks_;
};

class CudaBackend final : public Backend {
 public:
  CudaBackend(const CudaOptions& o, cudaStream_t stream, std::unique_ptr<cuda::Gemm> gemm)
      : options_(o), stream_(stream), gemm_(std::move(gemm)) {}
  ~CudaBackend() override { cudaStreamDestroy(stream_); }
  const char* name() const override { return options_.bf16_gemm ? "cuda-bf16" : "cuda"; }

  void gemm(bool ta, bool tb, float alpha, const Tensor& a, const Tensor& b, float beta,
            Tensor& c) override {
    const auto [m, n, k] = check_gemm(ta, tb, a, b, beta, c);
    if (m == 0 || n == 0) return;
    if (k == 0) {  // an empty sum: C = beta C
      for (float& v : c.values()) v = beta == 0.0f ? 0.0f : beta * v;
      return;
    }
    Op op(*this);
    const float* da = up(a);
    const float* db = up(b);
    float* dc = beta != 0.0f ? up(c) : scratch(c.numel());
    const void* pa = da;
    const void* pb = db;
    cudaDataType_t in = CUDA_R_32F;
    if (options_.bf16_gemm) {
      in = CUDA_R_16BF;
      auto* ha = static_cast<uint16_t*>(arena_.take(static_cast<size_t>(a.numel()) * 2));
      auto* hb = static_cast<uint16_t*>(arena_.take(static_cast<size_t>(b.numel()) * 2));
      check(cuda::to_bf16(da, a.numel(), ha, stream_), "to_bf16");
      check(cuda::to_bf16(db, b.numel(), hb, stream_), "to_bf16");
      pa = ha;
      pb = hb;
    }
    gemm_->run(ta, tb, m, n, k, alpha, pa, pb, beta, dc, in, stream_);
    down(dc, c);
  }

  void layernorm(const Tensor& x, const Tensor& w, const Tensor& b, float eps, Tensor& out,
                 Tensor& mean, Tensor& rstd) override {
    const int64_t c = x.dim(-1), rows = rows_of(x);
    expect_shape(w, {c}, "layernorm", "w");
    expect_shape(b, {c}, "layernorm", "b");
    shape_output(out, x.shape());
    shape_output(mean, {rows});
    shape_output(rstd, {rows});
    Op op(*this);
    float* o = scratch(out.numel());
    float* dm = scratch(rows);
    float* dr = scratch(rows);
    check(cuda::layernorm(up(x), up(w), up(b), eps, rows, c, o, dm, dr, stream_), "layernorm");
    down(o, out);
    down(dm, mean);
    down(dr, rstd);
  }

  void layernorm_backward(const Tensor& dout, const Tensor& x, const Tensor& w, const Tensor& mean,
                          const Tensor& rstd, Tensor& dx, Tensor& dw, Tensor& db) override {
    const int64_t c = x.dim(-1), rows = rows_of(x);
    expect_same(x, dout, "layernorm_backward", "dout");
    expect_shape(dw, {c}, "layernorm_backward", "dw");
    expect_shape(db, {c}, "layernorm_backward", "db");
    shape_output(dx, x.shape());
    Op op(*this);
    float* ddx = scratch(dx.numel());
    float* ddw = up(dw);
    float* ddb = up(db);
    check(cuda::layernorm_backward(up(dout), up(x), up(w), up(mean), up(rstd), rows, c, ddx, ddw,
                                   ddb, stream_),
          "layernorm_backward");
    down(ddx, dx);
    down(ddw, dw);
    down(ddb, db);
  }

  void rmsnorm(const Tensor& x, const Tensor& w, float eps, Tensor& out, Tensor& rstd) override {
    const int64_t c = x.dim(-1), rows = rows_of(x);
    expect_shape(w, {c}, "rmsnorm", "w");
    shape_output(out, x.shape());
    shape_output(rstd, {rows});
    Op op(*this);
    float* o = scratch(out.numel());
    float* dr = scratch(rows);
    check(cuda::rmsnorm(up(x), up(w), eps, rows, c, o, dr, stream_), "rmsnorm");
    down(o, out);
    down(dr, rstd);
  }

  void rmsnorm_backward(const Tensor& dout, const Tensor& x, const Tensor& w, const Tensor& rstd,
                        Tensor& dx, Tensor& dw) override {
    const int64_t c = x.dim(-1), rows = rows_of(x);
    expect_same(x, dout, "rmsnorm_backward", "dout");
    expect_shape(dw, {c}, "rmsnorm_backward", "dw");
    shape_output(dx, x.shape());
    Op op(*this);
    float* ddx = scratch(dx.numel());
    float* ddw = up(dw);
    check(cuda::rmsnorm_backward(up(dout), up(x), up(w), up(rstd), rows, c, ddx, ddw, stream_),
          "rmsnorm_backward");
    down(ddx, dx);
    down(ddw, dw);
  }

  void gelu(const Tensor& x, Tensor& out) override {
    shape_output(out, x.shape());
    Op op(*this);
    float* o = scratch(out.numel());
    check(cuda::gelu(up(x), x.numel(), o, stream_), "gelu");
    down(o, out);
  }

  void gelu_backward(const Tensor& dout, const Tensor& x, Tensor& dx) override {
    expect_same(x, dout, "gelu_backward", "dout");
    shape_output(dx, x.shape());
    Op op(*this);
    float* d = scratch(dx.numel());
    check(cuda::gelu_backward(up(dout), up(x), x.numel(), d, stream_), "gelu_backward");
    down(d, dx);
  }

  void swiglu(const Tensor& gate, const Tensor& up_t, Tensor& out) override {
    expect_same(gate, up_t, "swiglu", "up");
    shape_output(out, gate.shape());
    Op op(*this);
    float* o = scratch(out.numel());
    check(cuda::swiglu(up(gate), up(up_t), gate.numel(), o, stream_), "swiglu");
    down(o, out);
  }

  void swiglu_backward(const Tensor& dout, const Tensor& gate, const Tensor& up_t, Tensor& dgate,
                       Tensor& dup) override {
    expect_same(gate, up_t, "swiglu_backward", "up");
    expect_same(gate, dout, "swiglu_backward", "dout");
    shape_output(dgate, gate.shape());
    shape_output(dup, gate.shape());
    Op op(*this);
    float* dg = scratch(gate.numel());
    float* du = scratch(gate.numel());
    check(cuda::swiglu_backward(up(dout), up(gate), up(up_t), gate.numel(), dg, du, stream_),
          "swiglu_backward");
    down(dg, dgate);
    down(du, dup);
  }

  void gelu_glu(const Tensor& gate, const Tensor& up_t, Tensor& out) override {
    expect_same(gate, up_t, "gelu_glu", "up");
    shape_output(out, gate.shape());
    Op op(*this);
    float* o = scratch(out.numel());
    check(cuda::gelu_glu(up(gate), up(up_t), gate.numel(), o, stream_), "gelu_glu");
    down(o, out);
  }

  void gelu_glu_backward(const Tensor& dout, const Tensor& gate, const Tensor& up_t,
                         Tensor& dgate, Tensor& dup) override {
    expect_same(gate, up_t, "gelu_glu_backward", "up");
    expect_same(gate, dout, "gelu_glu_backward", "dout");
    shape_output(dgate, gate.shape());
    shape_output(dup, gate.shape());
    Op op(*this);
    float* dg = scratch(gate.numel());
    float* du = scratch(gate.numel());
    check(cuda::gelu_glu_backward(up(dout), up(gate), up(up_t), gate.numel(), dg, du, stream_),
          "gelu_glu_backward");
    down(dg, dgate);
    down(du, dup);
  }

  void embedding(const Tensor& table, const std::vector<int32_t>& ids, Tensor& out) override {
    if (table.rank() != 2) throw ShapeError("embedding: table must be 2-D");
    const int64_t c = table.dim(1), n = static_cast<int64_t>(ids.size());
    for (int32_t id : ids) check_id(id, table.dim(0), "embedding");
    shape_output(out, {n, c});
    if (n == 0) return;
    Op op(*this);
    float* o = scratch(out.numel());
    check(cuda::embedding(up(table), up_ids(ids), n, c, o, stream_), "embedding");
    down(o, out);
  }

  void embedding_backward(const Tensor& dout, const std::vector<int32_t>& ids,
                          Tensor& dtable) override {
    const int64_t c = dtable.dim(1), n = static_cast<int64_t>(ids.size());
    expect_shape(dout, {n, c}, "embedding_backward", "dout");
    for (int32_t id : ids) check_id(id, dtable.dim(0), "embedding_backward");
    if (n == 0) return;
    Op op(*this);
    float* dt = up(dtable);
    const cuda::IdGroups groups = cuda::group_by_id(ids.data(), n);
    check(cuda::embedding_backward(up(dout), up_ids(groups.ids), up_ids(groups.starts),
                                   up_ids(groups.rows), groups.groups(), c, dt, stream_),
          "embedding_backward");
    down(dt, dtable);
  }

  float cross_entropy(const Tensor& logits, const std::vector<int32_t>& targets, Tensor& dlogits,
                      int64_t denominator) override {
    denominator = check_cross_entropy(logits, targets, dlogits, denominator);
    const int64_t n = logits.dim(0), v = logits.dim(1);
    if (n == 0) return 0.0f;
    const float scale = denominator > 0 ? 1.0f / static_cast<float>(denominator) : 0.0f;
    Op op(*this);
    float* loss = scratch(n);
    float* d = scratch(dlogits.numel());
    check(cuda::cross_entropy(up(logits), up_ids(targets), n, v, scale, loss, d, stream_),
          "cross_entropy");
    Tensor losses({n});
    down(loss, losses);
    down(d, dlogits);
    op.sync();
    double total = 0;
    for (float l : losses.values()) total += l;  // in row order, as the CPU backend adds
    return denominator > 0 ? static_cast<float>(total / static_cast<double>(denominator)) : 0.0f;
  }

  void add(const Tensor& a, const Tensor& b, Tensor& out) override {
    expect_same(a, b, "add", "b");
    Op op(*this);
    const float* da = up(a);
    const float* db = up(b);
    shape_output(out, a.shape());  // after the uploads: `out` may be `a` or `b`
    float* o = scratch(out.numel());
    check(cuda::add(da, db, a.numel(), o, stream_), "add");
    down(o, out);
  }

  void add_bias(Tensor& x, const Tensor& bias) override {
    const int64_t c = x.dim(-1), rows = rows_of(x);
    expect_shape(bias, {c}, "add_bias", "bias");
    Op op(*this);
    float* dx = up(x);
    check(cuda::add_bias(dx, up(bias), rows, c, stream_), "add_bias");
    down(dx, x);
  }

  void bias_backward(const Tensor& dout, Tensor& dbias) override {
    const int64_t c = dout.dim(-1), rows = rows_of(dout);
    expect_shape(dbias, {c}, "bias_backward", "dbias");
    Op op(*this);
    float* db = up(dbias);
    check(cuda::bias_backward(up(dout), rows, c, db, stream_), "bias_backward");
    down(db, dbias);
  }

  void rope(Tensor& x, int64_t head_dim, const std::vector<int32_t>& positions,
            const Rope& rope) override {
    rotate(x, head_dim, positions, rope, 1.0f, "rope");
  }
  void rope_backward(Tensor& dx, int64_t head_dim, const std::vector<int32_t>& positions,
                     const Rope& rope) override {
    rotate(dx, head_dim, positions, rope, -1.0f, "rope_backward");
  }

  void scale(Tensor& x, float alpha) override {
    Op op(*this);
    float* d = up(x);
    check(cuda::scale(d, x.numel(), alpha, stream_), "scale");
    down(d, x);
  }
  void softcap(Tensor& x, float cap) override {
    Op op(*this);
    float* d = up(x);
    check(cuda::softcap(d, x.numel(), cap, stream_), "softcap");
    down(d, x);
  }
  void softcap_backward(Tensor& dy, const Tensor& y, float cap) override {
    expect_same(y, dy, "softcap_backward", "dy");
    Op op(*this);
    float* d = up(dy);
    check(cuda::softcap_backward(d, up(y), y.numel(), cap, stream_), "softcap_backward");
    down(d, dy);
  }

  void attention(const AttentionShape& s, const Tensor& q, const Tensor& k, const Tensor& v,
                 Tensor& out, Tensor& lse) override {
    check_attention(s, q, k, v, "attention");
    check_head_dim(s, "attention");
    shape_output(out, q.shape());
    shape_output(lse, {s.batch, s.heads, s.q_len});
    Op op(*this);
    float* o = scratch(out.numel());
    float* l = scratch(lse.numel());
    check(cuda::attention(dims(s), up(q), up(k), up(v), o, l, stream_), "attention");
    down(o, out);
    down(l, lse);
  }

  void attention_backward(const AttentionShape& s, const Tensor& dout, const Tensor& q,
                          const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse,
                          Tensor& dq, Tensor& dk, Tensor& dv) override {
    check_attention(s, q, k, v, "attention_backward");
    check_head_dim(s, "attention_backward");
    expect_same(q, dout, "attention_backward", "dout");
    expect_same(q, out, "attention_backward", "out");
    expect_shape(lse, {s.batch, s.heads, s.q_len}, "attention_backward", "lse");
    shape_output(dq, q.shape());
    shape_output(dk, k.shape());
    shape_output(dv, v.shape());
    Op op(*this);
    float* ddq = scratch(dq.numel());
    float* ddk = scratch(dk.numel());
    float* ddv = scratch(dv.numel());
    float* delta = scratch(lse.numel());
    // Rows of k and v past batch * kv_len have no gradient.
    check(cudaMemsetAsync(ddk, 0, static_cast<size_t>(dk.numel()) * 4, stream_), "memset");
    check(cudaMemsetAsync(ddv, 0, static_cast<size_t>(dv.numel()) * 4, stream_), "memset");
    check(cuda::attention_backward(dims(s), up(dout), up(q), up(k), up(v), up(out), up(lse), delta,
                                   ddq, ddk, ddv, stream_),
          "attention_backward");
    down(ddq, dq);
    down(ddk, dk);
    down(ddv, dv);
  }

 private:
  // One op's device memory: taken from the arena, given back when the op is done (after the
  // stream has finished with it).
  struct Op {
    explicit Op(CudaBackend& b) : b(b) { b.arena_.reset(); }
    ~Op() noexcept(false) {
      const cudaError_t e = cudaStreamSynchronize(b.stream_);
      if (std::uncaught_exceptions() == 0) check(e, "synchronize");
    }
    void sync() { check(cudaStreamSynchronize(b.stream_), "synchronize"); }
    CudaBackend& b;
  };

  float* scratch(int64_t n) {
    return static_cast<float*>(arena_.take(static_cast<size_t>(std::max<int64_t>(n, 1)) * 4));
  }
  float* up(const Tensor& t) {
    float* d = scratch(t.numel());
    check(cudaMemcpyAsync(d, t.data(), static_cast<size_t>(t.numel()) * 4, cudaMemcpyHostToDevice,
                          stream_),
          "copy to device");
    return d;
  }
  int32_t* up_ids(const std::vector<int32_t>& ids) {
    auto* d = static_cast<int32_t*>(arena_.take(std::max<size_t>(ids.size(), 1) * 4));
    check(cudaMemcpyAsync(d, ids.data(), ids.size() * 4, cudaMemcpyHostToDevice, stream_),
          "copy to device");
    return d;
  }
  void down(const float* d, Tensor& t) {
    check(cudaMemcpyAsync(t.data(), d, static_cast<size_t>(t.numel()) * 4, cudaMemcpyDeviceToHost,
                          stream_),
          "copy to host");
  }

  static cuda::AttentionDims dims(const AttentionShape& s) {
    return {s.batch,    s.q_len,  s.kv_len, s.heads, s.kv_heads,
            s.head_dim, s.window, s.scale,  s.softcap};
  }
  static void check_head_dim(const AttentionShape& s, const char* op) {
    if (s.head_dim > cuda::kMaxHeadDim) {
      throw ShapeError(std::string(op) + ": the CUDA kernels take heads of up to " +
                       std::to_string(cuda::kMaxHeadDim) + ", not " + std::to_string(s.head_dim));
    }
  }

  void rotate(Tensor& x, int64_t head_dim, const std::vector<int32_t>& positions, const Rope& rope,
              float sign, const char* op_name) {
    check_rope(x, head_dim, positions, rope, op_name);
    Op op(*this);
    float* dx = up(x);
    const float* inv_freq =
        up(Tensor::of({static_cast<int64_t>(rope.inv_freq.size())}, rope.inv_freq));
    check(cuda::rope(dx, x.dim(0), x.dim(1), head_dim, up_ids(positions), inv_freq,
                     rope.attention_factor, sign, stream_),
          op_name);
    down(dx, x);
  }

  CudaOptions options_;
  cudaStream_t stream_;
  std::unique_ptr<cuda::Gemm> gemm_;
  Arena arena_;
};

}  // namespace

const char* cuda_engines_lack(const ModelConfig& c) {
  if (c.family == Family::kGpt2) return nullptr;
  if (c.sandwich_norms || c.norm_offset != 0.0f) return "Gemma's norms";
  if (c.activation != Activation::kSilu) return "a GELU-gated MLP";
  if (c.embedding_scale != 1.0f) return "scaled embeddings";
  if (c.attn_softcap > 0.0f || c.final_softcap > 0.0f) return "soft-capping";
  return nullptr;
}

namespace {

// The devices this process sees, or why CUDA answered none.
Result<int> device_count() {
  int count = 0;
  if (cudaError_t e = cudaGetDeviceCount(&count); e != cudaSuccess) {
    cudaGetLastError();
    return unavailable(std::string("no CUDA device: cudaGetDeviceCount: ") +
                       cudaGetErrorString(e));
  }
  return count;
}

}  // namespace

int cuda_device_count() {
  const Result<int> count = device_count();
  return count.ok() ? *count : 0;
}

Result<std::unique_ptr<Backend>> make_cuda_backend(const CudaOptions& options) {
  MH_ASSIGN_OR_RETURN(int count, device_count());
  if (options.device < 0 || options.device >= count) {
    return unavailable("no CUDA device " + std::to_string(options.device) + " (this process sees " +
                       std::to_string(count) + ")");
  }
  auto fail = [](const char* what, const std::string& why) {
    return unavailable(std::string("cannot start the CUDA backend: ") + what + ": " + why);
  };
  if (cudaError_t e = cudaSetDevice(options.device); e != cudaSuccess) {
    return fail("cudaSetDevice", cudaGetErrorString(e));
  }
  cudaStream_t stream = nullptr;
  if (cudaError_t e = cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking); e != cudaSuccess) {
    return fail("stream", cudaGetErrorString(e));
  }
  auto gemm = cuda::Gemm::create();
  if (!gemm.ok()) {
    cudaStreamDestroy(stream);
    return fail("cuBLASLt", gemm.status().message());
  }
  return std::unique_ptr<Backend>(
      std::make_unique<CudaBackend>(options, stream, std::move(gemm).value()));
}

}  // namespace mh::engine
