// The CUDA backend against the CPU reference, on fresh random inputs: every op to fp32 rounding
// (bf16 GEMMs to bf16's), the fused AdamW kernel against the CPU optimizer, a tiny model's
// training losses and greedy decoding on both backends, and NCCL with one rank against none.
// Runs where a CUDA device is visible (ctest label "gpu"); skipped elsewhere.
#include <cuda_runtime.h>
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "platform/engine/cuda/cuda_backend.h"
#include "platform/engine/cuda/decoder.h"
#include "platform/engine/cuda/kernels.h"
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
    cpu->rope(x, head_dim, positions, 10000.0f);
    cuda->rope(y, head_dim, positions, 10000.0f);
    check_close("rope", y, x);
    cpu->rope_backward(x, head_dim, positions, 500000.0f);
    cuda->rope_backward(y, head_dim, positions, 500000.0f);
    check_close("rope backward", y, x);
  }
}

TEST_CASE("attention on the GPU matches the CPU: causal, grouped heads, cached prefixes") {
  auto cpu = make_cpu_backend();
  auto cuda = gpu();
  std::mt19937 rng(14);
  struct Case {
    int64_t batch, q_len, kv_len, heads, kv_heads, head_dim;
  };
  for (const Case& c :
       {Case{2, 64, 64, 4, 4, 64}, Case{1, 200, 200, 8, 2, 128}, Case{3, 1, 77, 4, 1, 40},
        Case{2, 5, 300, 6, 3, 256}, Case{1, 130, 130, 2, 2, 16}, Case{2, 33, 97, 12, 4, 96}}) {
    CAPTURE(c.batch);
    CAPTURE(c.q_len);
    CAPTURE(c.kv_len);
    CAPTURE(c.heads);
    CAPTURE(c.kv_heads);
    CAPTURE(c.head_dim);
    Backend::AttentionShape s{c.batch, c.q_len, c.kv_len, c.heads, c.kv_heads, c.head_dim};
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

TEST_CASE(
    "the device-resident decoder gives the CPU's logits, with sequences joining, and graphs") {
  const Tokenizer tok = small_tokenizer();
  for (Family family : {Family::kGpt2, Family::kLlama}) {
    for (bool graphs : {false, true}) {
      for (bool bf16 : {false, true}) {
        CAPTURE(family_name(family));
        CAPTURE(graphs);
        CAPTURE(bf16);
        auto cpu = make_cpu_backend();
        auto model = Model::create(tiny(family), *cpu, 21).value();
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
