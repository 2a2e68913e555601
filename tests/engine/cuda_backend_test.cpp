// The CUDA backend against the CPU reference, on fresh random inputs: every op to fp32 rounding
// (bf16 GEMMs to bf16's), the fused AdamW kernel against the CPU optimizer, a tiny model's
// training losses and greedy decoding on both backends, the device-resident trainer and decoder
// against the host's, and NCCL with one rank against none.
// Runs where a CUDA device is visible (ctest label "gpu"); skipped elsewhere.
#include <cublasLt.h>
#include <cuda_runtime.h>
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <random>
#include <thread>

#include "platform/engine/cuda/cuda_backend.h"
#include "platform/engine/cuda/decoder.h"
#include "platform/engine/cuda/flash_attention.h"
#include "platform/engine/cuda/gemm.h"
#include "platform/engine/cuda/kernels.h"
#include "platform/engine/cuda/trainer.h"
#include "platform/engine/generate.h"
#include "platform/engine/train.h"
#include "tests/engine/gradcheck.h"
#ifdef MH_ENGINE_NCCL
#include "platform/engine/cuda/nccl_collective.h"
#endif

namespace mh::engine {
namespace {

std::unique_ptr<Backend> gpu(bool bf16 = false) {
  CudaOptions o;
  o.bf16_gemm = bf16;
  auto b = make_cuda_backend(o);
  REQUIRE_MESSAGE(b.ok(), b.status().to_string());
  return std::move(b).value();
}

// |got - want| <= rtol * (|want| + max|want|): relative to each value, and to the tensor's scale
// near zero (where a relative error means nothing).
void check_close(const char* what, const Tensor& got, const Tensor& want, double rtol = 1e-5) {
  REQUIRE(got.shape() == want.shape());
  double scale = 0;
  for (float v : want.values()) scale = std::max(scale, std::fabs(static_cast<double>(v)));
  int64_t bad = 0, first = -1;
  double worst = 0;
  for (int64_t i = 0; i < want.numel(); ++i) {
    const double err = std::fabs(static_cast<double>(got[i]) - want[i]);
    const double allowed = rtol * (std::fabs(static_cast<double>(want[i])) + scale) + 1e-30;
    worst = std::max(worst, err / (std::fabs(static_cast<double>(want[i])) + scale + 1e-30));
    if (!(err <= allowed)) {
      if (first < 0) first = i;
      ++bad;
    }
  }
  const std::string name = what;
  CAPTURE(name);
  CAPTURE(worst);
  CAPTURE(first);
  CHECK_MESSAGE(bad == 0, name << ": " << bad << " of " << want.numel() << " values off; first at "
                               << first << " (got " << (first >= 0 ? got[first] : 0) << ", want "
                               << (first >= 0 ? want[first] : 0) << ")");
}

// ||got - want|| <= rtol * ||want|| over the values outside [skip_begin, skip_end): for
// tensors where a few values may stray (bf16 training, below) but the whole must agree.
void check_close_norm(const std::string& name, const Tensor& got, const Tensor& want,
                      double rtol, int64_t skip_begin = 0, int64_t skip_end = 0) {
  REQUIRE(got.shape() == want.shape());
  double err = 0, norm = 0;
  for (int64_t i = 0; i < want.numel(); ++i) {
    if (i >= skip_begin && i < skip_end) continue;
    const double d = static_cast<double>(got[i]) - want[i];
    err += d * d;
    norm += static_cast<double>(want[i]) * want[i];
  }
  const double relative = std::sqrt(err) / (std::sqrt(norm) + 1e-30);
  CHECK_MESSAGE(relative <= rtol, name << ": relative L2 error " << relative);
}

std::vector<int32_t> random_ids(size_t n, int32_t below, std::mt19937& rng) {
  std::uniform_int_distribution<int32_t> dist(0, below - 1);
  std::vector<int32_t> ids(n);
  for (auto& i : ids) i = dist(rng);
  return ids;
}

TEST_CASE("gemm on the GPU matches the CPU for every transpose, beta, and shape") {
  auto cpu = make_cpu_backend();
  auto cuda = gpu();
  auto bf16 = gpu(true);
  std::mt19937 rng(11);
  for (auto [m, k, n] : {std::array<int64_t, 3>{1, 768, 2304}, std::array<int64_t, 3>{64, 64, 64},
                         std::array<int64_t, 3>{257, 129, 65},
                         std::array<int64_t, 3>{512, 768, 3072}, std::array<int64_t, 3>{3, 5, 7}}) {
    for (bool ta : {false, true}) {
      for (bool tb : {false, true}) {
        for (float beta : {0.0f, 2.0f}) {
          CAPTURE(m);
          CAPTURE(k);
          CAPTURE(n);
          CAPTURE(ta);
          CAPTURE(tb);
          CAPTURE(beta);
          Tensor a = random_tensor(ta ? Shape{k, m} : Shape{m, k}, rng);
          Tensor b = random_tensor(tb ? Shape{n, k} : Shape{k, n}, rng);
          Tensor c0 = random_tensor({m, n}, rng);
          Tensor want = c0, got = c0, got16 = c0;
          cpu->gemm(ta, tb, 0.5f, a, b, beta, want);
          cuda->gemm(ta, tb, 0.5f, a, b, beta, got);
          bf16->gemm(ta, tb, 0.5f, a, b, beta, got16);
          check_close("gemm fp32", got, want, 1e-5);
          check_close("gemm bf16", got16, want, 1e-2);
        }
      }
    }
  }
}

TEST_CASE("norms, activations and their backward passes on the GPU match the CPU") {
  auto cpu = make_cpu_backend();
  auto cuda = gpu();
  std::mt19937 rng(12);
  for (auto [rows, cols] : {std::pair<int64_t, int64_t>{1, 7}, {33, 768}, {512, 1000}, {4, 4096}}) {
    CAPTURE(rows);
    CAPTURE(cols);
    Tensor x = random_tensor({rows, cols}, rng, 2.0f), w = random_tensor({cols}, rng),
           b = random_tensor({cols}, rng), g = random_tensor({rows, cols}, rng);
    Tensor o1, m1, r1, o2, m2, r2;
    cpu->layernorm(x, w, b, 1e-5f, o1, m1, r1);
    cuda->layernorm(x, w, b, 1e-5f, o2, m2, r2);
    check_close("layernorm out", o2, o1);
    check_close("layernorm mean", m2, m1);
    check_close("layernorm rstd", r2, r1);
    Tensor dx1, dx2, dw1 = random_tensor({cols}, rng), db1 = random_tensor({cols}, rng);
    Tensor dw2 = dw1, db2 = db1;
    cpu->layernorm_backward(g, x, w, m1, r1, dx1, dw1, db1);
    cuda->layernorm_backward(g, x, w, m1, r1, dx2, dw2, db2);
    check_close("layernorm dx", dx2, dx1);
    check_close("layernorm dw (accumulated)", dw2, dw1);
    check_close("layernorm db (accumulated)", db2, db1);

    cpu->rmsnorm(x, w, 1e-6f, o1, r1);
    cuda->rmsnorm(x, w, 1e-6f, o2, r2);
    check_close("rmsnorm out", o2, o1);
    check_close("rmsnorm rstd", r2, r1);
    dw2 = dw1;
    cpu->rmsnorm_backward(g, x, w, r1, dx1, dw1);
    cuda->rmsnorm_backward(g, x, w, r1, dx2, dw2);
    check_close("rmsnorm dx", dx2, dx1);
    check_close("rmsnorm dw (accumulated)", dw2, dw1);

    cpu->gelu(x, o1);
    cuda->gelu(x, o2);
    check_close("gelu", o2, o1);
    cpu->gelu_backward(g, x, dx1);
    cuda->gelu_backward(g, x, dx2);
    check_close("gelu backward", dx2, dx1);

    Tensor up = random_tensor({rows, cols}, rng), du1, du2;
    cpu->swiglu(x, up, o1);
    cuda->swiglu(x, up, o2);
    check_close("swiglu", o2, o1);
    cpu->swiglu_backward(g, x, up, dx1, du1);
    cuda->swiglu_backward(g, x, up, dx2, du2);
    check_close("swiglu dgate", dx2, dx1);
    check_close("swiglu dup", du2, du1);

    cpu->add(x, g, o1);
    cuda->add(x, g, o2);
    check_close("add", o2, o1);
    Tensor in_place = x;
    cuda->add(in_place, g, in_place);
    check_close("add in place", in_place, o1);
    Tensor xb1 = x, xb2 = x;
    cpu->add_bias(xb1, b);
    cuda->add_bias(xb2, b);
    check_close("add_bias", xb2, xb1);
    Tensor bb1 = random_tensor({cols}, rng), bb2 = bb1;
    cpu->bias_backward(g, bb1);
    cuda->bias_backward(g, bb2);
    check_close("bias_backward (accumulated)", bb2, bb1);
  }
}

TEST_CASE("embedding, cross-entropy and RoPE on the GPU match the CPU") {
  auto cpu = make_cpu_backend();
  auto cuda = gpu();
  std::mt19937 rng(13);
  const int64_t vocab = 50257, cols = 96;
  Tensor table = random_tensor({vocab, cols}, rng);
  auto ids = random_ids(300, 200, rng);  // repeats: the backward pass adds them up
  Tensor e1, e2;
  cpu->embedding(table, ids, e1);
  cuda->embedding(table, ids, e2);
  check_close("embedding", e2, e1, 0);
  Tensor g = random_tensor({300, cols}, rng);
  Tensor d1({vocab, cols}), d2({vocab, cols});
  cpu->embedding_backward(g, ids, d1);
  cuda->embedding_backward(g, ids, d2);
  check_close("embedding backward (in the CPU's order)", d2, d1, 0);
  CHECK_THROWS_AS(cuda->embedding(table, {static_cast<int32_t>(vocab)}, e2), ShapeError);

  Tensor logits = random_tensor({37, vocab}, rng, 3.0f);
  auto targets = random_ids(37, static_cast<int32_t>(vocab), rng);
  targets[3] = targets[20] = -1;  // ignored rows
  for (int64_t denominator : {int64_t{0}, int64_t{100}}) {
    Tensor dl1, dl2;
    const float l1 = cpu->cross_entropy(logits, targets, dl1, denominator);
    const float l2 = cuda->cross_entropy(logits, targets, dl2, denominator);
    CHECK(l2 == doctest::Approx(l1).epsilon(1e-5));
    check_close("cross-entropy dlogits", dl2, dl1);
  }

  for (int64_t head_dim : {int64_t{64}, int64_t{128}, int64_t{2}}) {
    CAPTURE(head_dim);
    const int64_t rows = 70, width = head_dim * 6;
    std::vector<int32_t> positions(static_cast<size_t>(rows));
    for (size_t i = 0; i < positions.size(); ++i)
      positions[i] = static_cast<int32_t>(i * 37 % 4096);
    Tensor x = random_tensor({rows, width}, rng), y = x;
    // Llama 3.1's scaled frequencies one way, YaRN's with its attention factor the other.
    const ModelConfig llama3 = parse_model_config(
        R"({"model_type":"llama","vocab_size":8,"hidden_size":8,"intermediate_size":8,
            "num_hidden_layers":1,"num_attention_heads":1,"head_dim":)" +
        std::to_string(head_dim) + R"(,"max_position_embeddings":8192,"rope_theta":500000.0,
            "rope_scaling":{"rope_type":"llama3","factor":8.0,"low_freq_factor":1.0,
            "high_freq_factor":4.0,"original_max_position_embeddings":1024}})").value();
    ModelConfig yarn = llama3;
    yarn.rope_scaling = RopeScaling{};
    yarn.rope_scaling.type = RopeScaling::Type::kYarn;
    yarn.rope_scaling.factor = 4.0;
    yarn.rope_scaling.original_max_positions = 1024;
    const Backend::Rope forward = rope_for(llama3, 0, 8192), backward = rope_for(yarn, 0, 8192);
    cpu->rope(x, head_dim, positions, forward);
    cuda->rope(y, head_dim, positions, forward);
    check_close("rope", y, x);
    cpu->rope_backward(x, head_dim, positions, backward);
    cuda->rope_backward(y, head_dim, positions, backward);
    check_close("rope backward", y, x);
  }
}

TEST_CASE("GeGLU, scaling and soft-capping on the GPU match the CPU") {
  auto cpu = make_cpu_backend();
  auto cuda = gpu();
  std::mt19937 rng(15);
  Tensor gate = random_tensor({33, 300}, rng, 2.0f), up = random_tensor({33, 300}, rng),
         g = random_tensor({33, 300}, rng);
  Tensor o1, o2, dg1, du1, dg2, du2;
  cpu->gelu_glu(gate, up, o1);
  cuda->gelu_glu(gate, up, o2);
  check_close("gelu_glu", o2, o1);
  cpu->gelu_glu_backward(g, gate, up, dg1, du1);
  cuda->gelu_glu_backward(g, gate, up, dg2, du2);
  check_close("gelu_glu dgate", dg2, dg1);
  check_close("gelu_glu dup", du2, du1);
  Tensor x1 = random_tensor({7, 501}, rng, 20.0f), x2 = x1;
  cpu->scale(x1, 1.7f);
  cuda->scale(x2, 1.7f);
  check_close("scale", x2, x1);
  cpu->softcap(x1, 30.0f);
  cuda->softcap(x2, 30.0f);
  check_close("softcap", x2, x1);
  Tensor d1 = random_tensor(x1.shape(), rng), d2 = d1;
  cpu->softcap_backward(d1, x1, 30.0f);
  cuda->softcap_backward(d2, x1, 30.0f);
  check_close("softcap backward", d2, d1);
}

// "batch x q_len/kv_len x heads/kv_heads x head_dim", for a failing case's message.
std::string attention_shape(const Backend::AttentionShape& s) {
  return std::to_string(s.batch) + " x " + std::to_string(s.q_len) + "/" +
         std::to_string(s.kv_len) + " x " + std::to_string(s.heads) + "/" +
         std::to_string(s.kv_heads) + " x " + std::to_string(s.head_dim) + ", window " +
         std::to_string(s.window) + ", scale " + std::to_string(s.scale) + ", softcap " +
         std::to_string(s.softcap);
}

TEST_CASE("attention on the GPU matches the CPU: causal, grouped heads, cached prefixes") {
  auto cpu = make_cpu_backend();
  auto cuda = gpu();
  std::mt19937 rng(14);
  using Case = Backend::AttentionShape;
  // The last ones: Mistral's and Gemma's sliding windows, Gemma's own scale and a soft-cap.
  for (const Case& c :
       {Case{2, 64, 64, 4, 4, 64}, Case{1, 200, 200, 8, 2, 128}, Case{3, 1, 77, 4, 1, 40},
        Case{2, 5, 300, 6, 3, 256}, Case{1, 130, 130, 2, 2, 16}, Case{2, 33, 97, 12, 4, 96},
        Case{2, 100, 100, 4, 2, 64, 37}, Case{1, 3, 150, 4, 1, 32, 64, 0.1f},
        Case{2, 70, 90, 2, 2, 128, 50, 0.0625f, 20.0f}, Case{1, 1, 300, 8, 4, 64, 0, 0.0f, 5.0f}}) {
    const Backend::AttentionShape& s = c;
    const std::string shape = attention_shape(s);
    CAPTURE(shape);
    Tensor q = random_tensor({c.batch * c.q_len, c.heads * c.head_dim}, rng);
    // Keys and values with spare rows past batch * kv_len, as a KV cache has.
    Tensor k = random_tensor({c.batch * c.kv_len + 3, c.kv_heads * c.head_dim}, rng);
    Tensor v = random_tensor({c.batch * c.kv_len + 3, c.kv_heads * c.head_dim}, rng);
    Tensor o1, l1, o2, l2;
    cpu->attention(s, q, k, v, o1, l1);
    cuda->attention(s, q, k, v, o2, l2);
    check_close("attention out", o2, o1);
    check_close("attention lse", l2, l1);
    Tensor g = random_tensor(q.shape(), rng);
    Tensor dq1, dk1, dv1, dq2, dk2, dv2;
    cpu->attention_backward(s, g, q, k, v, o1, l1, dq1, dk1, dv1);
    cuda->attention_backward(s, g, q, k, v, o1, l1, dq2, dk2, dv2);
    check_close("attention dq", dq2, dq1, 2e-5);
    check_close("attention dk", dk2, dk1, 2e-5);
    check_close("attention dv", dv2, dv1, 2e-5);
  }
  Backend::AttentionShape big{1, 4, 4, 1, 1, 512};
  Tensor q({4, 512}), out, lse;
  CHECK_THROWS_AS(cuda->attention(big, q, q, q, out, lse), ShapeError);
}

// Rounded to bf16 (to nearest even) and widened back: the values a bf16 kernel reads.
Tensor bf16_rounded(const Tensor& t) {
  Tensor out(t.shape());
  for (int64_t i = 0; i < t.numel(); ++i) {
    uint32_t bits = 0;
    std::memcpy(&bits, t.data() + i, 4);
    bits = (bits + 0x7fffu + ((bits >> 16) & 1u)) & 0xffff0000u;
    std::memcpy(&out[i], &bits, 4);
  }
  return out;
}

// Device copies of host tensors, freed with the holder.
struct DeviceTensors {
  std::vector<void*> owned;
  ~DeviceTensors() {
    for (void* p : owned) cudaFree(p);
  }
  float* floats(const Tensor& t) {
    void* p = nullptr;
    REQUIRE(cudaMalloc(&p, std::max<size_t>(1, static_cast<size_t>(t.numel())) * 4) == cudaSuccess);
    owned.push_back(p);
    REQUIRE(cudaMemcpy(p, t.data(), static_cast<size_t>(t.numel()) * 4, cudaMemcpyHostToDevice) ==
            cudaSuccess);
    return static_cast<float*>(p);
  }
  float* zeros(int64_t n) { return floats(Tensor({n})); }
  uint16_t* halves(const Tensor& t) {
    void* p = nullptr;
    REQUIRE(cudaMalloc(&p, std::max<size_t>(1, static_cast<size_t>(t.numel())) * 2) == cudaSuccess);
    owned.push_back(p);
    REQUIRE(cuda::to_bf16(floats(t), t.numel(), static_cast<uint16_t*>(p), nullptr) == cudaSuccess);
    return static_cast<uint16_t*>(p);
  }
  static Tensor host(const float* d, Shape shape) {
    Tensor t(std::move(shape));
    REQUIRE(cudaMemcpy(t.data(), d, static_cast<size_t>(t.numel()) * 4, cudaMemcpyDeviceToHost) ==
            cudaSuccess);
    return t;
  }
};

TEST_CASE("a GEMM adds a fused bias to every row and writes a bf16 product") {
  auto cpu = make_cpu_backend();
  auto gemm = cuda::Gemm::create();
  REQUIRE(gemm.ok());
  std::mt19937 rng(17);
  for (bool transpose_b : {false, true}) {
    for (bool bf16 : {false, true}) {
      CAPTURE(transpose_b);
      CAPTURE(bf16);
      const int64_t m = 257, n = 65, k = 129;
      Tensor a = random_tensor({m, k}, rng),
             b = random_tensor(transpose_b ? Shape{n, k} : Shape{k, n}, rng);
      if (bf16) {
        a = bf16_rounded(a);
        b = bf16_rounded(b);
      }
      const Tensor bias = random_tensor({n}, rng);
      Tensor want({m, n});
      cpu->gemm(false, transpose_b, 1.0f, a, b, 0.0f, want);
      cpu->add_bias(want, bias);
      DeviceTensors dev;
      const void* da = bf16 ? static_cast<const void*>(dev.halves(a)) : dev.floats(a);
      const void* db = bf16 ? static_cast<const void*>(dev.halves(b)) : dev.floats(b);
      float* c = dev.zeros(m * n);
      (*gemm)->run(false, transpose_b, m, n, k, 1.0f, da, db, 0.0f, c,
                   bf16 ? CUDA_R_16BF : CUDA_R_32F, nullptr, dev.floats(bias));
      REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
      check_close("gemm + bias", DeviceTensors::host(c, {m, n}), want, 1e-4);
      if (bf16) {  // bf16 out: the same product, rounded once
        Tensor product({m, n});
        cpu->gemm(false, transpose_b, 1.0f, a, b, 0.0f, product);
        uint16_t* c16 = dev.halves(Tensor({m, n}));
        (*gemm)->run_bf16_out(false, transpose_b, m, n, k, 1.0f, da, db, 0.0f, c16, nullptr);
        float* widened = dev.zeros(m * n);
        REQUIRE(cuda::from_bf16(c16, m * n, widened, nullptr) == cudaSuccess);
        REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
        check_close("gemm into bf16", DeviceTensors::host(widened, {m, n}), product, 1e-2);
      }
    }
  }
}

// Which GELU cuBLASLt's epilogue computes decides whether it can stand in for our kernel (GPT-2's
// is the tanh approximation): an identity product (x I = x) through CUBLASLT_EPILOGUE_GELU,
// against both formulas on the CPU.
TEST_CASE("cuBLASLt's GELU epilogue: which approximation it computes") {
  const int64_t n = 64;
  std::vector<float> x(static_cast<size_t>(n * n), 0.0f), eye(x.size(), 0.0f);
  std::mt19937 rng(20);
  std::uniform_real_distribution<float> dist(-4.0f, 4.0f);
  for (auto& v : x) v = dist(rng);
  for (int64_t i = 0; i < n; ++i) eye[static_cast<size_t>(i * n + i)] = 1.0f;
  DeviceTensors dev;
  const float* dx = dev.floats(Tensor::of({n, n}, x));
  const float* di = dev.floats(Tensor::of({n, n}, eye));
  float* dy = dev.zeros(n * n);
  cublasLtHandle_t lt = nullptr;
  REQUIRE(cublasLtCreate(&lt) == CUBLAS_STATUS_SUCCESS);
  cublasLtMatmulDesc_t desc = nullptr;
  REQUIRE(cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F) == CUBLAS_STATUS_SUCCESS);
  const cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_GELU;
  REQUIRE(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue,
                                         sizeof epilogue) == CUBLAS_STATUS_SUCCESS);
  cublasLtMatrixLayout_t layout = nullptr;
  REQUIRE(cublasLtMatrixLayoutCreate(&layout, CUDA_R_32F, n, n, n) == CUBLAS_STATUS_SUCCESS);
  const float one = 1.0f, zero = 0.0f;
  REQUIRE(cublasLtMatmul(lt, desc, &one, di, layout, dx, layout, &zero, dy, layout, dy, layout,
                         nullptr, nullptr, 0, nullptr) == CUBLAS_STATUS_SUCCESS);
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
  const Tensor got = DeviceTensors::host(dy, {n, n});
  cublasLtMatrixLayoutDestroy(layout);
  cublasLtMatmulDescDestroy(desc);
  cublasLtDestroy(lt);
  double tanh_err = 0, erf_err = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double v = x[i];
    const double tanh_gelu =
        0.5 * v * (1 + std::tanh(0.7978845608028654 * (v + 0.044715 * v * v * v)));
    const double erf_gelu = 0.5 * v * (1 + std::erf(v / std::sqrt(2.0)));
    tanh_err = std::max(tanh_err, std::fabs(got[static_cast<int64_t>(i)] - tanh_gelu));
    erf_err = std::max(erf_err, std::fabs(got[static_cast<int64_t>(i)] - erf_gelu));
  }
  MESSAGE("cuBLASLt GELU: max |diff| " << tanh_err << " from the tanh approximation, " << erf_err
                                       << " from erf");
  CHECK(std::min(tanh_err, erf_err) < 1e-3);  // it is one of the two
}

TEST_CASE("the small-batch bf16 matrix-vector product matches the CPU's product") {
  auto cpu = make_cpu_backend();
  std::mt19937 rng(19);
  for (auto [rows, n, k] :
       {std::array<int64_t, 3>{1, 37, 64}, std::array<int64_t, 3>{3, 1000, 2048},
        std::array<int64_t, 3>{8, 257, 520}}) {
    for (bool with_bias : {false, true}) {
      CAPTURE(rows);
      CAPTURE(n);
      CAPTURE(k);
      CAPTURE(with_bias);
      const Tensor w = bf16_rounded(random_tensor({n, k}, rng));
      const Tensor x = bf16_rounded(random_tensor({rows, k}, rng));
      const Tensor bias = random_tensor({n}, rng);
      Tensor want({rows, n});
      cpu->gemm(false, true, 1.0f, x, w, 0.0f, want);
      if (with_bias) cpu->add_bias(want, bias);
      DeviceTensors dev;
      float* y = dev.zeros(rows * n);
      REQUIRE(cuda::gemv_bf16(dev.halves(w), dev.halves(x), rows, n, k,
                              with_bias ? dev.floats(bias) : nullptr, y, nullptr) == cudaSuccess);
      REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
      check_close("gemv", DeviceTensors::host(y, {rows, n}), want, 1e-4);
    }
  }
  // Shapes it does not take are refused, not run.
  CHECK(cuda::gemv_bf16(nullptr, nullptr, cuda::kGemvRows + 1, 8, 8, nullptr, nullptr, nullptr) ==
        cudaErrorInvalidValue);
}

TEST_CASE("the fused residual add and norm match an add and then the norm, into fp32 and bf16") {
  auto cpu = make_cpu_backend();
  std::mt19937 rng(18);
  const int64_t rows = 37, cols = 200;
  const Tensor x = random_tensor({rows, cols}, rng), branch = random_tensor({rows, cols}, rng);
  const Tensor w = random_tensor({cols}, rng), b = random_tensor({cols}, rng);
  Tensor sum, want_layer, mean, rstd, want_rms, rms_rstd;
  cpu->add(x, branch, sum);
  cpu->layernorm(sum, w, b, 1e-5f, want_layer, mean, rstd);
  cpu->rmsnorm(sum, w, 1e-5f, want_rms, rms_rstd);
  for (bool layer : {true, false}) {
    CAPTURE(layer);
    DeviceTensors dev;
    float* residual = dev.floats(x);  // updated in place, as the decoder does
    float *out = dev.zeros(rows * cols), *m = dev.zeros(rows), *r = dev.zeros(rows);
    REQUIRE(cuda::add_norm(residual, dev.floats(branch), residual, dev.floats(w),
                           layer ? dev.floats(b) : nullptr, 1e-5f, rows, cols, out, m, r,
                           nullptr) == cudaSuccess);
    uint16_t* out16 = dev.halves(Tensor({rows, cols}));
    float* again = dev.floats(x);
    REQUIRE(cuda::add_norm(again, dev.floats(branch), again, dev.floats(w),
                           layer ? dev.floats(b) : nullptr, 1e-5f, rows, cols, out16, m, r,
                           nullptr) == cudaSuccess);
    float* widened = dev.zeros(rows * cols);
    REQUIRE(cuda::from_bf16(out16, rows * cols, widened, nullptr) == cudaSuccess);
    REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
    const Tensor& want = layer ? want_layer : want_rms;
    check_close("residual", DeviceTensors::host(residual, {rows, cols}), sum);
    check_close("norm", DeviceTensors::host(out, {rows, cols}), want);
    check_close("norm in bf16", DeviceTensors::host(widened, {rows, cols}), want, 1e-2);
    check_close("rstd", DeviceTensors::host(r, {rows}), layer ? rstd : rms_rstd);
  }
}

TEST_CASE("tensor-core flash attention matches the CPU on bf16 inputs, forward and backward") {
  auto cpu = make_cpu_backend();
  std::mt19937 rng(15);
  using Case = Backend::AttentionShape;
  CHECK(cuda::flash_supported(64));
  CHECK_FALSE(cuda::flash_supported(96));
  for (const Case& c :
       {Case{2, 64, 64, 4, 4, 64}, Case{1, 200, 200, 8, 2, 128}, Case{2, 100, 100, 6, 3, 32},
        Case{1, 37, 130, 4, 2, 64}, Case{3, 1, 77, 4, 1, 64}, Case{1, 1024, 1024, 2, 2, 64}}) {
    const Backend::AttentionShape& s = c;
    const std::string shape = attention_shape(s);
    CAPTURE(shape);
    const cuda::AttentionDims d{c.batch, c.q_len, c.kv_len, c.heads, c.kv_heads, c.head_dim};
    const int64_t rows = c.batch * c.q_len, qw = c.heads * c.head_dim;
    const int64_t kv_rows = c.batch * c.kv_len, kw = c.kv_heads * c.head_dim;
    const Tensor q = bf16_rounded(random_tensor({rows, qw}, rng));
    const Tensor k = bf16_rounded(random_tensor({kv_rows, kw}, rng));
    const Tensor v = bf16_rounded(random_tensor({kv_rows, kw}, rng));
    Tensor want_out, want_lse;
    cpu->attention(s, q, k, v, want_out, want_lse);
    DeviceTensors dev;
    uint16_t *qh = dev.halves(q), *kh = dev.halves(k), *vh = dev.halves(v);
    float* out = dev.zeros(rows * qw);
    float* lse = dev.zeros(c.batch * c.heads * c.q_len);
    REQUIRE(cuda::flash_attention(d, qh, kh, vh, out, lse, nullptr) == cudaSuccess);
    REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
    check_close("flash out", DeviceTensors::host(out, {rows, qw}), want_out, 2e-2);
    check_close("flash lse", DeviceTensors::host(lse, want_lse.shape()), want_lse, 1e-3);
    // The same into bf16, as bf16 training keeps it.
    uint16_t* out16 = dev.halves(Tensor({rows, qw}));
    REQUIRE(cuda::flash_attention(d, qh, kh, vh, out16, lse, nullptr) == cudaSuccess);
    float* widened = dev.zeros(rows * qw);
    REQUIRE(cuda::from_bf16(out16, rows * qw, widened, nullptr) == cudaSuccess);
    REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
    check_close("flash out in bf16", DeviceTensors::host(widened, {rows, qw}), want_out, 2e-2);
    const Tensor g = random_tensor({rows, qw}, rng);
    Tensor dq, dk, dv;
    cpu->attention_backward(s, g, q, k, v, want_out, want_lse, dq, dk, dv);
    float* gd = dev.floats(g);
    uint16_t* scratch = dev.halves(g);
    float* delta = dev.zeros(c.batch * c.heads * c.q_len);
    float *dqd = dev.zeros(rows * qw), *dkd = dev.zeros(kv_rows * kw),
          *dvd = dev.zeros(kv_rows * kw);
    REQUIRE(cuda::flash_attention_backward(d, gd, dev.floats(want_out), qh, kh, vh,
                                           dev.floats(want_lse), scratch, delta, dqd, dkd, dvd,
                                           nullptr) == cudaSuccess);
    REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
    check_close("flash dq", DeviceTensors::host(dqd, dq.shape()), dq, 3e-2);
    check_close("flash dk", DeviceTensors::host(dkd, dk.shape()), dk, 3e-2);
    check_close("flash dv", DeviceTensors::host(dvd, dv.shape()), dv, 3e-2);
    REQUIRE(cuda::flash_attention_backward(d, gd, out16, qh, kh, vh, dev.floats(want_lse), scratch,
                                           delta, dqd, dkd, dvd, nullptr) == cudaSuccess);
    REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
    check_close("flash dq from a bf16 out", DeviceTensors::host(dqd, dq.shape()), dq, 3e-2);
    check_close("flash dk from a bf16 out", DeviceTensors::host(dkd, dk.shape()), dk, 3e-2);
  }
}

TEST_CASE(
    "flash attention reads q, k, v in place in a fused projection, and writes its gradient "
    "there") {
  auto cpu = make_cpu_backend();
  std::mt19937 rng(16);
  const int64_t batch = 2, len = 80, heads = 4, hd = 64, w = heads * hd, rows = batch * len;
  const Tensor qkv = bf16_rounded(random_tensor({rows, 3 * w}, rng));
  std::vector<Tensor> parts(3, Tensor({rows, w}));  // q, k, v as dense copies
  for (int64_t r = 0; r < rows; ++r) {
    for (int p = 0; p < 3; ++p)
      std::copy_n(qkv.data() + r * 3 * w + p * w, w, parts[p].data() + r * w);
  }
  Backend::AttentionShape s{batch, len, len, heads, heads, hd};
  const cuda::AttentionDims d{batch, len, len, heads, heads, hd};
  Tensor want_out, want_lse, dq, dk, dv;
  cpu->attention(s, parts[0], parts[1], parts[2], want_out, want_lse);
  const Tensor g = random_tensor({rows, w}, rng);
  cpu->attention_backward(s, g, parts[0], parts[1], parts[2], want_out, want_lse, dq, dk, dv);
  DeviceTensors dev;
  uint16_t* fused = dev.halves(qkv);
  float* out = dev.zeros(rows * w);
  float* lse = dev.zeros(batch * heads * len);
  const cuda::FlashStrides strides{3 * w, 3 * w, 3 * w, 3 * w};
  REQUIRE(cuda::flash_attention(d, fused, fused + w, fused + 2 * w, out, lse, nullptr, strides) ==
          cudaSuccess);
  float* dqkv = dev.zeros(rows * 3 * w);
  REQUIRE(cuda::flash_attention_backward(d, dev.floats(g), out, fused, fused + w, fused + 2 * w,
                                         lse, dev.halves(g), dev.zeros(batch * heads * len), dqkv,
                                         dqkv + w, dqkv + 2 * w, nullptr, strides) == cudaSuccess);
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
  check_close("fused flash out", DeviceTensors::host(out, {rows, w}), want_out, 2e-2);
  const Tensor got = DeviceTensors::host(dqkv, {rows, 3 * w});
  const Tensor* want[3] = {&dq, &dk, &dv};
  for (int p = 0; p < 3; ++p) {
    Tensor column({rows, w});
    for (int64_t r = 0; r < rows; ++r)
      std::copy_n(got.data() + r * 3 * w + p * w, w, column.data() + r * w);
    check_close(p == 0 ? "fused dq" : p == 1 ? "fused dk" : "fused dv", column, *want[p], 3e-2);
  }
  // From a bf16 output into a bf16 gradient, as bf16 training runs it.
  uint16_t* out16 = dev.halves(Tensor({rows, w}));
  REQUIRE(cuda::flash_attention(d, fused, fused + w, fused + 2 * w, out16, lse, nullptr, strides) ==
          cudaSuccess);
  uint16_t* dqkv16 = dev.halves(Tensor({rows, 3 * w}));
  REQUIRE(cuda::flash_attention_backward(d, dev.floats(g), out16, fused, fused + w, fused + 2 * w,
                                         lse, dev.halves(g), dev.zeros(batch * heads * len), dqkv16,
                                         dqkv16 + w, dqkv16 + 2 * w, nullptr,
                                         strides) == cudaSuccess);
  float* widened = dev.zeros(rows * 3 * w);
  REQUIRE(cuda::from_bf16(dqkv16, rows * 3 * w, widened, nullptr) == cudaSuccess);
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
  check_close("fused gradient in bf16", DeviceTensors::host(widened, {rows, 3 * w}), got, 3e-2);
}

TEST_CASE("the fused AdamW kernel updates weights as the CPU optimizer does") {
  std::mt19937 rng(15);
  const int64_t n = 100'003;
  std::vector<Parameter> params(2);
  params[0].value = random_tensor({n}, rng);
  params[0].decay = true;
  params[1].value = random_tensor({17}, rng);
  for (auto& p : params) p.grad = Tensor(p.value.shape());
  TrainConfig config;
  AdamW adam(params, config);
  // The device copies: weights, moments, and the bf16 copy the forward pass would read.
  std::vector<float*> w(2), m(2), v(2), g(2);
  uint16_t* copy = nullptr;
  for (size_t i = 0; i < 2; ++i) {
    const size_t bytes = static_cast<size_t>(params[i].value.numel()) * 4;
    for (float** p : {&w[i], &m[i], &v[i], &g[i]}) REQUIRE(cudaMalloc(p, bytes) == cudaSuccess);
    REQUIRE(cudaMemcpy(w[i], params[i].value.data(), bytes, cudaMemcpyHostToDevice) == cudaSuccess);
    REQUIRE(cudaMemset(m[i], 0, bytes) == cudaSuccess);
    REQUIRE(cudaMemset(v[i], 0, bytes) == cudaSuccess);
  }
  REQUIRE(cudaMalloc(&copy, static_cast<size_t>(n) * 2) == cudaSuccess);
  const float lr = 3e-3f, scale = 0.7f;
  for (int t = 1; t <= 3; ++t) {
    std::vector<Tensor> grads;
    for (auto& p : params) grads.push_back(random_tensor(p.value.shape(), rng));
    adam.step(params, grads, lr, scale);
    for (size_t i = 0; i < 2; ++i) {
      REQUIRE(cudaMemcpy(g[i], grads[i].data(), static_cast<size_t>(grads[i].numel()) * 4,
                         cudaMemcpyHostToDevice) == cudaSuccess);
      cuda::AdamWStep s;
      s.beta1 = config.beta1;
      s.beta2 = config.beta2;
      s.eps = config.eps;
      s.decay = params[i].decay ? 1.0f - lr * config.weight_decay : 1.0f;
      s.step_size = lr / static_cast<float>(1.0 - std::pow(config.beta1, t));
      s.bc2_sqrt = static_cast<float>(std::sqrt(1.0 - std::pow(config.beta2, t)));
      s.grad_scale = scale;
      REQUIRE(cuda::adamw(w[i], g[i], m[i], v[i], params[i].value.numel(), s,
                          i == 0 ? copy : nullptr, nullptr) == cudaSuccess);
    }
  }
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
  for (size_t i = 0; i < 2; ++i) {
    Tensor got(params[i].value.shape());
    REQUIRE(cudaMemcpy(got.data(), w[i], static_cast<size_t>(got.numel()) * 4,
                       cudaMemcpyDeviceToHost) == cudaSuccess);
    check_close("adamw weights", got, params[i].value, 1e-6);
  }
  std::vector<uint16_t> halves(static_cast<size_t>(n));
  REQUIRE(cudaMemcpy(halves.data(), copy, halves.size() * 2, cudaMemcpyDeviceToHost) ==
          cudaSuccess);
  Tensor widened({n});
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t bits = static_cast<uint32_t>(halves[static_cast<size_t>(i)]) << 16;
    std::memcpy(&widened[i], &bits, 4);
  }
  check_close("adamw bf16 copy", widened, params[0].value, 1e-2);
  for (size_t i = 0; i < 2; ++i) {
    for (float* p : {w[i], m[i], v[i], g[i]}) cudaFree(p);
  }
  cudaFree(copy);
}

const char* kText =
    R"({"text": "The cat sat on the mat. The dog sat on the log. A bird sat on the cat."}
{"text": "Q: what sat on the mat? A: the cat. Q: what sat on the log? A: the dog."}
)";

Tokenizer small_tokenizer() {
  BpeTrainerOptions options;
  options.vocab_size = 300;
  options.special_tokens = {"<|endoftext|>"};
  const std::vector<std::string> texts = {kText};
  return std::move(train_bpe(texts, options).value());
}

TrainConfig small_run(int64_t steps) {
  TrainConfig config;
  config.batch_size = 2;
  config.seq_len = 16;
  config.steps = steps;
  config.warmup_steps = 3;
  config.lr = 3e-3f;
  return config;
}

// The llama-derived families at the size of tiny(), each with what sets it apart: the fused
// trainer and decoder take all but gemma3 (scaled RoPE, sliding windows, attention biases, q/k
// norms); gemma3 runs on the CUDA backend through the host engine.
ModelConfig tiny_variant(const char* name) {
  const std::string common = R"("vocab_size":300,"hidden_size":64,"intermediate_size":128,
      "num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,
      "max_position_embeddings":64,)";
  std::string json;
  if (std::string(name) == "llama3") {
    json = R"({"model_type":"llama",)" + common + R"("tie_word_embeddings":true,
        "rope_scaling":{"rope_type":"llama3","factor":8.0,"low_freq_factor":1.0,
        "high_freq_factor":4.0,"original_max_position_embeddings":16}})";
  } else if (std::string(name) == "mistral") {
    json = R"({"model_type":"mistral",)" + common + R"("sliding_window":5,
        "rope_scaling":{"rope_type":"yarn","factor":4.0,"original_max_position_embeddings":16}})";
  } else if (std::string(name) == "qwen2") {
    json = R"({"model_type":"qwen2",)" + common + R"("use_sliding_window":true,
        "sliding_window":6,"max_window_layers":1})";
  } else if (std::string(name) == "qwen3") {
    json = R"({"model_type":"qwen3",)" + common + R"("head_dim":32,"tie_word_embeddings":true})";
  } else {
    json = R"({"model_type":"gemma3_text",)" + common + R"("head_dim":16,
        "query_pre_attn_scalar":24,"sliding_window":5,"sliding_window_pattern":2,
        "attn_logit_softcapping":50.0,"final_logit_softcapping":30.0})";
  }
  auto config = parse_model_config(json);
  REQUIRE_MESSAGE(config.ok(), config.status().to_string());
  return *config;
}

ModelConfig tiny(Family family) {
  const char* json = family == Family::kGpt2
                         ? R"({"model_type":"gpt2","vocab_size":300,"n_embd":64,"n_layer":2,
                              "n_head":4,"n_positions":64})"
                         : R"({"model_type":"llama","vocab_size":300,"hidden_size":64,
                              "intermediate_size":128,"num_hidden_layers":2,
                              "num_attention_heads":4,"num_key_value_heads":2,
                              "max_position_embeddings":64})";
  return parse_model_config(json).value();
}

TEST_CASE("a tiny model trains on the GPU with the CPU's losses, and decodes the same tokens") {
  const Tokenizer tok = small_tokenizer();
  auto data = Dataset::from_jsonl_text(kText, tok);
  REQUIRE(data.ok());
  TrainConfig config = small_run(30);
  for (Family family : {Family::kGpt2, Family::kLlama}) {
    CAPTURE(family_name(family));
    auto cpu = make_cpu_backend();
    auto cuda = gpu();
    auto a = Model::create(tiny(family), *cpu, 5).value();
    auto b = Model::create(tiny(family), *cuda, 5).value();
    auto one = make_single_rank();
    Trainer ta(*a, *data, config, *one), tb(*b, *data, config, *one);
    for (int s = 0; s < config.steps; ++s) {
      const StepResult ra = ta.step(), rb = tb.step();
      CAPTURE(s);
      // fp32 rounding compounds through the updates: the losses track, not bit for bit.
      CHECK(rb.loss == doctest::Approx(ra.loss).epsilon(1e-3));
      CHECK(rb.grad_norm == doctest::Approx(ra.grad_norm).epsilon(1e-2));
    }
    // Greedy decoding with KV caches: same tokens, logits to fp32 rounding.
    const std::vector<int32_t> prompt = tok.encode("The cat sat", false);
    KvCache ca = a->new_cache(48), cb = b->new_cache(48);
    std::vector<Model::Step> sa = {{&ca, prompt}}, sb = {{&cb, prompt}};
    for (int i = 0; i < 24; ++i) {
      const Tensor la = a->forward_cached(sa), lb = b->forward_cached(sb);
      check_close("decode logits", lb, la, 1e-4);
      const auto next =
          static_cast<int32_t>(std::max_element(la.data(), la.data() + la.numel()) - la.data());
      sa[0].tokens = sb[0].tokens = {next};
    }
  }
}

TEST_CASE("every llama-derived family trains and decodes on the CUDA backend as on the CPU") {
  const Tokenizer tok = small_tokenizer();
  auto data = Dataset::from_jsonl_text(kText, tok);
  REQUIRE(data.ok());
  TrainConfig config = small_run(10);
  for (const char* name : {"llama3", "mistral", "qwen2", "qwen3", "gemma3"}) {
    CAPTURE(name);
    const ModelConfig model = tiny_variant(name);
    auto cpu = make_cpu_backend();
    auto cuda = gpu();
    auto a = Model::create(model, *cpu, 5).value();
    auto b = Model::create(model, *cuda, 5).value();
    auto one = make_single_rank();
    Trainer ta(*a, *data, config, *one), tb(*b, *data, config, *one);
    for (int s = 0; s < config.steps; ++s) {
      const StepResult ra = ta.step(), rb = tb.step();
      CAPTURE(s);
      CHECK(rb.loss == doctest::Approx(ra.loss).epsilon(1e-3));
    }
    const std::vector<int32_t> prompt = tok.encode("The cat sat on", false);
    KvCache ca = a->new_cache(32), cb = b->new_cache(32);
    std::vector<Model::Step> sa = {{&ca, prompt}}, sb = {{&cb, prompt}};
    for (int i = 0; i < 12; ++i) {  // past every window
      const Tensor la = a->forward_cached(sa), lb = b->forward_cached(sb);
      check_close("decode logits", lb, la, 1e-4);
      const auto next =
          static_cast<int32_t>(std::max_element(la.data(), la.data() + la.numel()) - la.data());
      sa[0].tokens = sb[0].tokens = {next};
    }
    // The fused engines take scaled RoPE, windows, biases and q/k norms, and name what they do
    // not take.
    CudaDecoderOptions o;
    auto dec = CudaDecoder::create(*a, o);
    auto engine = make_cuda_engine(*a, config, *one);
    if (model.family != Family::kGemma3) {
      CHECK_MESSAGE(dec.ok(), dec.status().to_string());
      CHECK_MESSAGE(engine.ok(), engine.status().to_string());
    } else {
      REQUIRE_FALSE(dec.ok());
      CHECK(dec.status().code() == Code::kFailedPrecondition);
      CHECK(dec.status().message().find("does not implement") != std::string::npos);
      REQUIRE_FALSE(engine.ok());
      CHECK(engine.status().code() == Code::kFailedPrecondition);
    }
  }
}

TEST_CASE("the device sum adds in double, the same bits every time") {
  std::mt19937 rng(31);
  const Tensor x = random_tensor({(1 << 20) + 37}, rng);
  double want = 0, want_squares = 0;
  for (float v : x.values()) {
    want += v;
    want_squares += static_cast<double>(v) * v;
  }
  float* dx = nullptr;
  double* d = nullptr;
  REQUIRE(cudaMalloc(&dx, static_cast<size_t>(x.numel()) * 4) == cudaSuccess);
  REQUIRE(cudaMalloc(&d, (3 + cuda::kSumBlocks) * sizeof(double)) == cudaSuccess);
  REQUIRE(cudaMemcpy(dx, x.data(), static_cast<size_t>(x.numel()) * 4, cudaMemcpyHostToDevice) ==
          cudaSuccess);
  REQUIRE(cudaMemset(d, 0, 3 * sizeof(double)) == cudaSuccess);
  double* partial = d + 3;
  REQUIRE(cuda::sum(dx, x.numel(), false, 0.5, partial, d, nullptr) == cudaSuccess);
  REQUIRE(cuda::sum(dx, x.numel(), false, 0.5, partial, d + 1, nullptr) == cudaSuccess);
  REQUIRE(cuda::sum(dx, x.numel(), true, 1.0, partial, d + 2, nullptr) == cudaSuccess);
  double got[3];
  REQUIRE(cudaMemcpy(got, d, sizeof(got), cudaMemcpyDeviceToHost) == cudaSuccess);
  CHECK(got[0] == doctest::Approx(want * 0.5).epsilon(1e-12));
  CHECK(got[0] == got[1]);
  CHECK(got[2] == doctest::Approx(want_squares).epsilon(1e-12));
  cudaFree(dx);
  cudaFree(d);
}

// The same run on the host engine (CPU backend) and on the device engine.
struct EnginePair {
  std::unique_ptr<Backend> cpu = make_cpu_backend();
  std::unique_ptr<Model> host_model, device_model;
  std::unique_ptr<Collective> one = make_single_rank();
  std::unique_ptr<Trainer> host, device;

  EnginePair(const ModelConfig& model, const Dataset& data, const TrainConfig& config, bool bf16) {
    host_model = Model::create(model, *cpu, 5).value();
    device_model = Model::create(model, *cpu, 5).value();
    host = std::make_unique<Trainer>(*host_model, data, config, *one);
    CudaTrainOptions o;
    o.bf16 = bf16;
    auto engine = make_cuda_engine(*device_model, config, *one, o);
    REQUIRE_MESSAGE(engine.ok(), engine.status().to_string());
    device =
        std::make_unique<Trainer>(*device_model, data, config, *one, std::move(engine).value());
  }
};

TEST_CASE("the device-resident trainer takes the host engine's steps, in fp32 and in bf16") {
  const Tokenizer tok = small_tokenizer();
  auto data = Dataset::from_jsonl_text(kText, tok);
  REQUIRE(data.ok());
  TrainConfig config = small_run(20);
  config.grad_accum = 2;  // micro-batches add up on the device as on the host
  // Heads of 16 take the fp32 attention kernels; heads of 64 in bf16 the tensor-core ones.
  const ModelConfig wide_gpt2 = parse_model_config(R"({"model_type":"gpt2","vocab_size":300,
      "n_embd":128,"n_layer":2,"n_head":2,"n_positions":64})")
                                    .value();
  const ModelConfig wide_llama = parse_model_config(R"({"model_type":"llama","vocab_size":300,
      "hidden_size":128,"intermediate_size":256,"num_hidden_layers":2,"num_attention_heads":2,
      "num_key_value_heads":1,"max_position_embeddings":64})")
                                     .value();
  for (const ModelConfig& model : {tiny(Family::kGpt2), tiny(Family::kLlama), wide_gpt2,
                                   wide_llama, tiny_variant("llama3"), tiny_variant("mistral"),
                                   tiny_variant("qwen2"), tiny_variant("qwen3")}) {
    for (bool bf16 : {false, true}) {
      CAPTURE(family_name(model.family));
      CAPTURE(model.head_dim);
      CAPTURE(bf16);
      EnginePair pair(model, *data, config, bf16);
      CHECK(std::string(pair.device->engine().name()) == (bf16 ? "cuda-bf16" : "cuda"));
      for (int s = 0; s < config.steps; ++s) {
        const StepResult want = pair.host->step(), got = pair.device->step();
        CAPTURE(s);
        CHECK(got.tokens == want.tokens);
        CHECK(got.lr == want.lr);
        CHECK(got.loss == doctest::Approx(want.loss).epsilon(bf16 ? 2e-2 : 1e-3));
        CHECK(got.grad_norm == doctest::Approx(want.grad_norm).epsilon(bf16 ? 1e-1 : 1e-2));
      }
      // The host copy is stale until asked for, then holds the device's weights.
      pair.device->sync_model();
      const auto& want = pair.host_model->parameters();
      const auto& got = pair.device_model->parameters();
      for (size_t i = 0; i < want.size(); ++i) {
        const std::string& name = want[i].name;
        if (!bf16) {
          check_close(name.c_str(), got[i].value, want[i].value, 1e-2);
          continue;
        }
        // In bf16 the key bias's gradient is rounding noise around its exact value, zero (a
        // constant added to a row's scores leaves its softmax as it was), and AdamW makes steps
        // of up to lr of that noise, in either direction: the key bias is not compared. Nor is
        // each value: a weight whose gradient is near zero may be stepped the other way than on
        // the host, so each tensor is compared as a whole.
        if (name.ends_with("k_proj.bias")) continue;
        int64_t skip_begin = 0, skip_end = 0;
        if (name.ends_with("attn.c_attn.bias")) {
          skip_begin = model.hidden;
          skip_end = 2 * model.hidden;
        }
        check_close_norm(name, got[i].value, want[i].value, 1e-1, skip_begin, skip_end);
      }
    }
  }
}

TEST_CASE(
    "a device engine's checkpoint resumes on the device and on the host, its validation loss is "
    "the host's, and bad ids change nothing") {
  const Tokenizer tok = small_tokenizer();
  auto data = Dataset::from_jsonl_text(kText, tok);
  REQUIRE(data.ok());
  const TrainConfig config = small_run(10);
  const auto dir = std::filesystem::temp_directory_path() / "mh_cuda_trainer_checkpoint";
  std::filesystem::remove_all(dir);
  EnginePair straight(tiny(Family::kLlama), *data, config, false);
  for (int s = 0; s < 5; ++s) straight.device->step();
  REQUIRE(straight.device->save_checkpoint(dir).ok());
  std::vector<StepResult> rest;
  for (int s = 5; s < 10; ++s) rest.push_back(straight.device->step());
  // The validation loss on the device is the host's on the same weights.
  straight.device->sync_model();
  CHECK(straight.device->validation_loss(*data, 8) ==
        doctest::Approx(
            evaluation_loss(*straight.device_model, *data, config.seq_len, config.batch_size, 8))
            .epsilon(1e-4));
  EnginePair resumed(tiny(Family::kLlama), *data, config, false);
  REQUIRE(resumed.device->load_checkpoint(dir).ok());
  REQUIRE(resumed.host->load_checkpoint(dir).ok());
  CHECK(resumed.device->steps_done() == 5);
  for (size_t s = 0; s < rest.size(); ++s) {
    CAPTURE(s);
    const StepResult d = resumed.device->step(), h = resumed.host->step();
    CHECK(d.loss == doctest::Approx(rest[s].loss).epsilon(1e-6));
    CHECK(h.loss == doctest::Approx(rest[s].loss).epsilon(1e-3));
  }
  // An id outside the vocabulary is refused before anything runs on the device.
  auto cpu = make_cpu_backend();
  auto model = Model::create(tiny(Family::kGpt2), *cpu, 3).value();
  auto one = make_single_rank();
  auto engine = make_cuda_engine(*model, config, *one).value();
  const std::vector<float> before = model->parameters()[0].value.values();
  engine->begin_step();
  CHECK_THROWS_AS(engine->micro_batch({1, 2, 100000, 3}, {2, 3, 4, -1}, 1, 4, 3, true), ShapeError);
  CHECK_THROWS_AS(engine->micro_batch({1, 2, 3}, {2, 3, 4, -1}, 1, 4, 3, true), ShapeError);
  engine->sync_to_host();
  CHECK(model->parameters()[0].value.values() == before);
  std::filesystem::remove_all(dir);
}

TEST_CASE(
    "two device-engine ranks through a host collective train as one rank with the same "
    "global batch") {
  const Tokenizer tok = small_tokenizer();
  auto data = Dataset::from_jsonl_text(kText, tok);
  REQUIRE(data.ok());
  TrainConfig one = small_run(6);
  one.batch_size = 1;
  one.grad_accum = 2;
  TrainConfig two = one;
  two.grad_accum = 1;
  auto cpu = make_cpu_backend();
  auto single = make_single_rank();
  auto reference = Model::create(tiny(Family::kGpt2), *cpu, 7).value();
  Trainer solo(*reference, *data, one, *single, make_cuda_engine(*reference, one, *single).value());
  std::vector<float> solo_losses;
  for (int i = 0; i < one.steps; ++i) solo_losses.push_back(solo.step().loss);
  // Two ranks on one GPU, each with its own engine, reducing through the host (no NCCL).
  auto group = make_thread_group(2);
  std::vector<std::unique_ptr<Model>> models;
  for (int r = 0; r < 2; ++r) models.push_back(Model::create(tiny(Family::kGpt2), *cpu, 7).value());
  std::vector<std::vector<float>> losses(2);
  std::vector<std::string> errors(2);
  std::vector<std::thread> ranks;
  for (int r = 0; r < 2; ++r) {
    ranks.emplace_back([&, r] {
      try {
        const auto i = static_cast<size_t>(r);
        Trainer t(*models[i], *data, two, *group[i],
                  make_cuda_engine(*models[i], two, *group[i]).value());
        for (int s = 0; s < two.steps; ++s) losses[i].push_back(t.step().loss);
        t.sync_model();
      } catch (const std::exception& e) {
        errors[static_cast<size_t>(r)] = e.what();
      }
    });
  }
  for (auto& t : ranks) t.join();
  REQUIRE_MESSAGE(errors[0].empty(), errors[0]);
  REQUIRE_MESSAGE(errors[1].empty(), errors[1]);
  solo.sync_model();
  for (size_t r = 0; r < 2; ++r) {
    CAPTURE(r);
    REQUIRE(losses[r].size() == solo_losses.size());
    for (size_t s = 0; s < solo_losses.size(); ++s) {
      CHECK(losses[r][s] == doctest::Approx(solo_losses[s]).epsilon(1e-4));
    }
    const auto& got = models[r]->parameters();
    for (size_t i = 0; i < got.size(); ++i) {
      check_close(got[i].name.c_str(), got[i].value, reference->parameters()[i].value, 1e-3);
    }
  }
}

TEST_CASE(
    "the device-resident decoder gives the CPU's logits, with sequences joining, and graphs") {
  const Tokenizer tok = small_tokenizer();
  for (const ModelConfig& config : {tiny(Family::kGpt2), tiny(Family::kLlama),
                                    tiny_variant("llama3"), tiny_variant("mistral"),
                                    tiny_variant("qwen2"), tiny_variant("qwen3")}) {
    for (bool graphs : {false, true}) {
      for (bool bf16 : {false, true}) {
        CAPTURE(family_name(config.family));
        CAPTURE(graphs);
        CAPTURE(bf16);
        auto cpu = make_cpu_backend();
        auto model = Model::create(config, *cpu, 21).value();
        // Biases start at zero; give qwen2's attention biases values that show.
        std::mt19937 bias_rng(5);
        for (auto& p : model->parameters()) {
          if (config.family != Family::kGpt2 &&
              (p.name.ends_with(".bias") || p.name.ends_with("_norm.weight"))) {
            p.value = random_tensor(p.shape, bias_rng);
          }
        }
        CudaDecoderOptions o;
        o.max_sequences = 4;
        o.graphs = graphs;
        o.bf16_weights = bf16;
        auto dec = CudaDecoder::create(*model, o);
        REQUIRE_MESSAGE(dec.ok(), dec.status().to_string());
        // Three prompts of different lengths; the third joins after two steps.
        const std::vector<std::vector<int32_t>> prompts = {
            tok.encode("The cat sat", false), tok.encode("A bird", false),
            tok.encode("Q: what sat on the log? A:", false)};
        std::vector<KvCache> caches;
        for (int i = 0; i < 3; ++i) caches.push_back(model->new_cache(48));
        std::vector<int> slots;
        for (int i = 0; i < 3; ++i) slots.push_back((*dec)->open().value());
        std::vector<std::vector<int32_t>> next = prompts;
        for (int t = 0; t < 14; ++t) {
          const size_t live = t < 2 ? 2 : 3;
          std::vector<Model::Step> cpu_steps;
          std::vector<CudaDecoder::Work> work;
          for (size_t i = 0; i < live; ++i) {
            cpu_steps.push_back({&caches[i], next[i]});
            work.push_back({slots[i], next[i]});
          }
          const Tensor want = model->forward_cached(cpu_steps);
          const Tensor got = (*dec)->step(work);
          check_close("decoder logits", got, want, bf16 ? 5e-2 : 1e-4);
          const int64_t v = want.dim(1);
          for (size_t i = 0; i < live; ++i) {
            const float* row = want.data() + static_cast<int64_t>(i) * v;
            next[i] = {static_cast<int32_t>(std::max_element(row, row + v) - row)};
          }
        }
        CHECK((*dec)->length(slots[0]) == static_cast<int64_t>(prompts[0].size()) + 13);
        // Bad steps are refused before anything runs.
        CHECK_THROWS_AS((*dec)->step({{slots[0], {1000000}}}), ShapeError);
        (*dec)->close(slots[1]);
        CHECK_THROWS_AS((*dec)->step({{slots[1], {1}}}), ShapeError);
        CHECK((*dec)->length(slots[0]) == static_cast<int64_t>(prompts[0].size()) + 13);
      }
    }
  }
}

#ifdef MH_ENGINE_NCCL
TEST_CASE("one NCCL rank trains exactly as no collective does") {
  const Tokenizer tok = small_tokenizer();
  auto data = Dataset::from_jsonl_text(kText, tok);
  REQUIRE(data.ok());
  TrainConfig config = small_run(6);
  auto cuda = gpu();
  auto single = make_single_rank();
  auto nccl = make_nccl_collective(*single, 0);
  REQUIRE_MESSAGE(nccl.ok(), nccl.status().to_string());
  CHECK((*nccl)->world() == 1);
  auto a = Model::create(tiny(Family::kLlama), *cuda, 9).value();
  auto b = Model::create(tiny(Family::kLlama), *cuda, 9).value();
  Trainer plain(*a, *data, config, *single), with_nccl(*b, *data, config, **nccl);
  for (int s = 0; s < config.steps; ++s) CHECK(with_nccl.step().loss == plain.step().loss);
  for (size_t i = 0; i < a->parameters().size(); ++i) {
    CHECK(a->parameters()[i].value.values() == b->parameters()[i].value.values());
  }
  // The trainer skips the reduction for one rank; called anyway, it is the identity.
  std::mt19937 rng(16);
  Tensor x = random_tensor({1 << 20}, rng);
  std::vector<float> reduced = x.values();
  (*nccl)->all_reduce_sum(reduced);
  CHECK(reduced == x.values());
  std::vector<uint8_t> bytes = {1, 2, 3};
  (*nccl)->broadcast(bytes, 0);
  CHECK(bytes == std::vector<uint8_t>{1, 2, 3});
}
#endif

}  // namespace
}  // namespace mh::engine
