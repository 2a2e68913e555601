// The CPU backend's ops: every backward pass against central finite differences of its forward
// pass, GEMM against a plain triple loop, shape errors, and results that do not depend on the
// number of threads.
#include <doctest/doctest.h>

#include <cmath>
#include <functional>
#include <random>

#include "platform/engine/backend.h"
#include "tests/engine/gradcheck.h"

namespace mh::engine {
namespace {

TEST_CASE("gemm matches a triple loop for every transpose, and its gradients are right") {
  auto cpu = make_cpu_backend(2);
  std::mt19937 rng(1);
  // Shapes that take each path: few rows (matrix-vector), many rows, many columns.
  for (auto [m, k, n] : {std::array<int64_t, 3>{5, 7, 3}, std::array<int64_t, 3>{1, 9, 200},
                         std::array<int64_t, 3>{3, 5, 130}, std::array<int64_t, 3>{70, 6, 40},
                         std::array<int64_t, 3>{4, 8, 300}}) {
    for (bool ta : {false, true}) {
      for (bool tb : {false, true}) {
        CAPTURE(ta);
        CAPTURE(tb);
        CAPTURE(m);
        CAPTURE(n);
        Tensor a = random_tensor(ta ? Shape{k, m} : Shape{m, k}, rng);
        Tensor b = random_tensor(tb ? Shape{n, k} : Shape{k, n}, rng);
        Tensor c = random_tensor({m, n}, rng);
        const Tensor c0 = c;
        cpu->gemm(ta, tb, 0.5f, a, b, 2.0f, c);
        Tensor fresh;  // beta 0: c is (re)shaped by the op, and its old contents do not matter
        cpu->gemm(ta, tb, 0.5f, a, b, 0.0f, fresh);
        for (int64_t i = 0; i < m; ++i) {
          for (int64_t j = 0; j < n; ++j) {
            double s = 0;
            for (int64_t p = 0; p < k; ++p) {
              s += static_cast<double>(ta ? a[p * m + i] : a[i * k + p]) *
                   (tb ? b[j * k + p] : b[p * n + j]);
            }
            CHECK(c[i * n + j] == doctest::Approx(0.5 * s + 2.0 * c0[i * n + j]).epsilon(1e-5));
            CHECK(fresh[i * n + j] == doctest::Approx(0.5 * s).epsilon(1e-5));
          }
        }
      }
    }
  }
  // y = x @ w: dx = dy @ w^T, dw = x^T @ dy.
  Tensor x = random_tensor({4, 6}, rng), w = random_tensor({6, 3}, rng),
         r = random_tensor({4, 3}, rng);
  auto loss = [&] {
    Tensor y;
    cpu->gemm(false, false, 1.0f, x, w, 0.0f, y);
    return dot(y, r);
  };
  Tensor dx, dw;
  cpu->gemm(false, true, 1.0f, r, w, 0.0f, dx);
  cpu->gemm(true, false, 1.0f, x, r, 0.0f, dw);
  check_gradient("x", x, dx, loss);
  check_gradient("w", w, dw, loss);
}

TEST_CASE("gemm_half and embedding_half: bf16 and f16 weights read as their fp32 values") {
  auto cpu = make_cpu_backend(2);
  std::mt19937 rng(5);
  // Few rows (the widening dot products and axpys) and many (widened panels through SGEMM),
  // lengths that leave tails after the 32- and 8-wide steps, and widths across several panels.
  for (auto [m, k, n] : {std::array<int64_t, 3>{1, 77, 150}, std::array<int64_t, 3>{3, 40, 9},
                         std::array<int64_t, 3>{8, 129, 70}, std::array<int64_t, 3>{37, 51, 200}}) {
    for (auto format : {HalfTensor::Format::kBF16, HalfTensor::Format::kF16}) {
      for (bool tb : {false, true}) {
        CAPTURE(m);
        CAPTURE(tb);
        CAPTURE(static_cast<int>(format));
        const Tensor a = random_tensor({m, k}, rng);
        const HalfTensor b = HalfTensor::of(random_tensor(tb ? Shape{n, k} : Shape{k, n}, rng), format);
        const Tensor wide = b.to_float();
        for (int64_t i = 0; i < wide.numel(); ++i) {
          const uint16_t h = b.data()[i];
          REQUIRE(wide[i] == (format == HalfTensor::Format::kBF16 ? bf16_to_float(h) : f16_to_float(h)));
        }
        Tensor want = random_tensor({m, n}, rng), got = want;
        cpu->gemm(false, tb, 0.5f, a, wide, 2.0f, want);
        cpu->gemm_half(tb, 0.5f, a, b, 2.0f, got);
        for (int64_t i = 0; i < want.numel(); ++i) CHECK(got[i] == doctest::Approx(want[i]).epsilon(1e-5));
        Tensor fresh;
        cpu->gemm_half(tb, 1.0f, a, b, 0.0f, fresh);
        CHECK(fresh.shape() == Shape{m, n});
      }
    }
  }
  const Tensor table = random_tensor({6, 5}, rng);
  const HalfTensor half = HalfTensor::of(table, HalfTensor::Format::kBF16);
  Tensor rows;
  cpu->embedding_half(half, {4, 0, 4}, rows);
  REQUIRE(rows.shape() == Shape{3, 5});
  for (int64_t j = 0; j < 5; ++j) {
    CHECK(rows[j] == bf16_to_float(float_to_bf16(table[4 * 5 + j])));
    CHECK(rows[5 + j] == bf16_to_float(float_to_bf16(table[j])));
  }
  CHECK_THROWS_AS(cpu->embedding_half(half, {6}, rows), ShapeError);
  Tensor c;
  CHECK_THROWS_AS(cpu->gemm_half(true, 1.0f, random_tensor({2, 4}, rng), half, 0.0f, c), ShapeError);
}

TEST_CASE("layernorm and rmsnorm backward match finite differences") {
  auto cpu = make_cpu_backend(2);
  std::mt19937 rng(2);
  Tensor x = random_tensor({3, 2, 8}, rng), w = random_tensor({8}, rng),
         b = random_tensor({8}, rng);
  Tensor r = random_tensor({3, 2, 8}, rng);
  Tensor out, mean, rstd;
  auto ln_loss = [&] {
    cpu->layernorm(x, w, b, 1e-5f, out, mean, rstd);
    return dot(out, r);
  };
  ln_loss();
  Tensor dx, dw({8}), db({8});
  cpu->layernorm_backward(r, x, w, mean, rstd, dx, dw, db);
  check_gradient("x", x, dx, ln_loss);
  check_gradient("w", w, dw, ln_loss);
  check_gradient("b", b, db, ln_loss);

  auto rms_loss = [&] {
    cpu->rmsnorm(x, w, 1e-6f, out, rstd);
    return dot(out, r);
  };
  rms_loss();
  Tensor rdx, rdw({8});
  cpu->rmsnorm_backward(r, x, w, rstd, rdx, rdw);
  check_gradient("rms x", x, rdx, rms_loss);
  check_gradient("rms w", w, rdw, rms_loss);
}

TEST_CASE("gelu, swiglu and add backward match finite differences") {
  auto cpu = make_cpu_backend(2);
  std::mt19937 rng(3);
  Tensor x = random_tensor({4, 5}, rng, 2.0f), r = random_tensor({4, 5}, rng);
  Tensor out;
  auto gelu_loss = [&] {
    cpu->gelu(x, out);
    return dot(out, r);
  };
  Tensor dx;
  cpu->gelu_backward(r, x, dx);
  check_gradient("gelu", x, dx, gelu_loss);
  // Known values of GPT-2's tanh approximation.
  Tensor points = Tensor::of({3}, {0.0f, 1.0f, -3.0f});
  cpu->gelu(points, out);
  CHECK(out[0] == 0.0f);
  CHECK(out[1] == doctest::Approx(0.8411920).epsilon(1e-6));
  CHECK(out[2] == doctest::Approx(-0.0036374).epsilon(1e-4));

  Tensor gate = random_tensor({4, 5}, rng, 2.0f), up = random_tensor({4, 5}, rng);
  auto swiglu_loss = [&] {
    cpu->swiglu(gate, up, out);
    return dot(out, r);
  };
  Tensor dgate, dup;
  cpu->swiglu_backward(r, gate, up, dgate, dup);
  check_gradient("gate", gate, dgate, swiglu_loss);
  check_gradient("up", up, dup, swiglu_loss);

  Tensor y = random_tensor({4, 5}, rng);
  cpu->add(x, y, out);
  CHECK(out[7] == x[7] + y[7]);
}

TEST_CASE("embedding backward accumulates repeated ids, and matches finite differences") {
  auto cpu = make_cpu_backend(2);
  std::mt19937 rng(4);
  Tensor table = random_tensor({6, 4}, rng), r = random_tensor({5, 4}, rng);
  const std::vector<int32_t> ids = {2, 0, 2, 5, 1};
  Tensor out;
  auto loss = [&] {
    cpu->embedding(table, ids, out);
    return dot(out, r);
  };
  Tensor dtable({6, 4});
  cpu->embedding_backward(r, ids, dtable);
  check_gradient("table", table, dtable, loss);
  CHECK(dtable[3 * 4] == 0.0f);  // row 3 was never used
}

TEST_CASE("cross-entropy: the loss, its gradient, ignored rows") {
  auto cpu = make_cpu_backend(2);
  std::mt19937 rng(5);
  Tensor logits = random_tensor({4, 7}, rng, 3.0f);
  const std::vector<int32_t> targets = {3, -1, 0, 6};
  Tensor dlogits;
  const float loss = cpu->cross_entropy(logits, targets, dlogits);
  double expected = 0;
  for (int r : {0, 2, 3}) {
    double sum = 0;
    for (int j = 0; j < 7; ++j) sum += std::exp(static_cast<double>(logits[r * 7 + j]));
    expected += std::log(sum) - logits[r * 7 + targets[static_cast<size_t>(r)]];
  }
  CHECK(loss == doctest::Approx(expected / 3).epsilon(1e-5));
  for (int j = 0; j < 7; ++j) CHECK(dlogits[7 + j] == 0.0f);  // the ignored row
  Tensor scratch;
  check_gradient(
      "logits", logits, dlogits,
      [&] { return static_cast<double>(cpu->cross_entropy(logits, targets, scratch)); }, 1e-2f);
  // Large logits do not overflow.
  Tensor big = Tensor::of({1, 3}, {1000.0f, 0.0f, -1000.0f});
  CHECK(cpu->cross_entropy(big, {0}, scratch) == doctest::Approx(0.0).epsilon(1e-6));
}

// Attention as its definition says: full score matrix (scaled, soft-capped), masked to the past
// and to the window, softmax, weighted sum of values.
Tensor naive_attention(const Backend::AttentionShape& s, const Tensor& q, const Tensor& k,
                       const Tensor& v) {
  const int64_t d = s.head_dim, qw = s.heads * d, kw = s.kv_heads * d;
  const double scale = s.scale > 0 ? s.scale : 1.0 / std::sqrt(static_cast<double>(d));
  Tensor out({s.batch * s.q_len, qw});
  for (int64_t b = 0; b < s.batch; ++b) {
    for (int64_t h = 0; h < s.heads; ++h) {
      const int64_t g = h / (s.heads / s.kv_heads);
      for (int64_t i = 0; i < s.q_len; ++i) {
        const int64_t pos = s.kv_len - s.q_len + i;
        auto seen = [&](int64_t j) { return j <= pos && (s.window == 0 || j > pos - s.window); };
        std::vector<double> p(static_cast<size_t>(s.kv_len), 0.0);
        double mx = -1e300, sum = 0;
        for (int64_t j = 0; j < s.kv_len; ++j) {
          if (!seen(j)) continue;
          double sc = 0;
          for (int64_t e = 0; e < d; ++e) {
            sc += static_cast<double>(q[(b * s.q_len + i) * qw + h * d + e]) *
                  k[(b * s.kv_len + j) * kw + g * d + e];
          }
          sc *= scale;
          if (s.softcap > 0) sc = s.softcap * std::tanh(sc / s.softcap);
          p[static_cast<size_t>(j)] = sc;
          mx = std::max(mx, sc);
        }
        for (int64_t j = 0; j < s.kv_len; ++j) {
          p[static_cast<size_t>(j)] = seen(j) ? std::exp(p[static_cast<size_t>(j)] - mx) : 0.0;
          sum += p[static_cast<size_t>(j)];
        }
        for (int64_t e = 0; e < d; ++e) {
          double o = 0;
          for (int64_t j = 0; j < s.kv_len; ++j) {
            o += p[static_cast<size_t>(j)] / sum * v[(b * s.kv_len + j) * kw + g * d + e];
          }
          out[(b * s.q_len + i) * qw + h * d + e] = static_cast<float>(o);
        }
      }
    }
  }
  return out;
}

void check_attention_case(Backend& cpu, const Backend::AttentionShape& s, std::mt19937& rng) {
  Tensor q = random_tensor({s.batch * s.q_len, s.heads * s.head_dim}, rng),
         k = random_tensor({s.batch * s.kv_len, s.kv_heads * s.head_dim}, rng),
         v = random_tensor({s.batch * s.kv_len, s.kv_heads * s.head_dim}, rng);
  Tensor out, lse;
  cpu.attention(s, q, k, v, out, lse);
  const Tensor expected = naive_attention(s, q, k, v);
  for (int64_t i = 0; i < out.numel(); ++i)
    CHECK(out[i] == doctest::Approx(expected[i]).epsilon(1e-5));

  Tensor r = random_tensor(out.shape(), rng);
  auto loss = [&] {
    Tensor o, l;
    cpu.attention(s, q, k, v, o, l);
    return dot(o, r);
  };
  Tensor dq, dk, dv;
  cpu.attention_backward(s, r, q, k, v, out, lse, dq, dk, dv);
  check_gradient("q", q, dq, loss);
  check_gradient("k", k, dk, loss);
  check_gradient("v", v, dv, loss);
}

TEST_CASE("attention matches its definition, with grouped heads and a cached prefix") {
  auto cpu = make_cpu_backend(3);
  std::mt19937 rng(7);
  for (auto [q_len, kv_len, heads, kv_heads] :
       {std::array<int64_t, 4>{5, 5, 4, 4}, std::array<int64_t, 4>{5, 5, 4, 2},
        std::array<int64_t, 4>{2, 6, 6, 2}, std::array<int64_t, 4>{1, 7, 2, 1},
        // long enough for the blocked (SGEMM) path
        std::array<int64_t, 4>{20, 20, 4, 2}, std::array<int64_t, 4>{17, 23, 2, 1}}) {
    Backend::AttentionShape s;
    s.batch = 2;
    s.q_len = q_len;
    s.kv_len = kv_len;
    s.heads = heads;
    s.kv_heads = kv_heads;
    s.head_dim = 4;
    CAPTURE(q_len);
    CAPTURE(kv_len);
    CAPTURE(heads);
    CAPTURE(kv_heads);
    check_attention_case(*cpu, s, rng);
  }
}

TEST_CASE("attention through a sliding window, with its own scale and a soft-cap") {
  auto cpu = make_cpu_backend(3);
  std::mt19937 rng(17);
  // Short (row by row) and long (blocked) queries, with and without a cached prefix; windows
  // shorter than, equal to and longer than what a query could see.
  for (auto [q_len, kv_len, window] :
       {std::array<int64_t, 3>{6, 6, 3}, std::array<int64_t, 3>{2, 9, 4},
        std::array<int64_t, 3>{1, 7, 1}, std::array<int64_t, 3>{20, 20, 5},
        std::array<int64_t, 3>{17, 30, 8}, std::array<int64_t, 3>{20, 20, 64}}) {
    for (float softcap : {0.0f, 0.5f}) {
      Backend::AttentionShape s;
      s.batch = 2;
      s.q_len = q_len;
      s.kv_len = kv_len;
      s.heads = 4;
      s.kv_heads = 2;
      s.head_dim = 4;
      s.window = window;
      s.scale = 0.8f;
      s.softcap = softcap;
      CAPTURE(q_len);
      CAPTURE(kv_len);
      CAPTURE(window);
      CAPTURE(softcap);
      check_attention_case(*cpu, s, rng);
    }
  }
}

// The frequencies of unscaled RoPE, 1 / theta^(2i / d).
Backend::Rope plain_rope(int64_t head_dim, double theta) {
  Backend::Rope rope;
  for (int64_t i = 0; i < head_dim / 2; ++i) {
    rope.inv_freq.push_back(static_cast<float>(std::pow(theta, -2.0 * i / head_dim)));
  }
  return rope;
}

TEST_CASE("rope rotates head halves by position, and its backward is the transpose") {
  auto cpu = make_cpu_backend(2);
  std::mt19937 rng(8);
  const std::vector<int32_t> positions = {0, 1, 5, 17};
  Tensor x = random_tensor({4, 2 * 6}, rng);
  for (float factor : {1.0f, 1.25f}) {  // YaRN's attention factor scales cos and sin
    CAPTURE(factor);
    Backend::Rope rope = plain_rope(6, 10000.0);
    rope.attention_factor = factor;
    Tensor y = x;
    cpu->rope(y, 6, positions, rope);
    for (int64_t r = 0; r < 4; ++r) {
      for (int64_t h = 0; h < 2; ++h) {
        for (int64_t i = 0; i < 3; ++i) {
          const double angle = positions[static_cast<size_t>(r)] * std::pow(10000.0, -2.0 * i / 6);
          const double x1 = x[r * 12 + h * 6 + i], x2 = x[r * 12 + h * 6 + i + 3];
          CHECK(y[r * 12 + h * 6 + i] ==
                doctest::Approx(factor * (x1 * std::cos(angle) - x2 * std::sin(angle)))
                    .epsilon(1e-5));
          CHECK(y[r * 12 + h * 6 + i + 3] ==
                doctest::Approx(factor * (x2 * std::cos(angle) + x1 * std::sin(angle)))
                    .epsilon(1e-5));
        }
      }
    }
    for (int64_t i = 0; i < 12; ++i) CHECK(y[i] == factor * x[i]);  // position 0: no turn
    Tensor r = random_tensor(x.shape(), rng);
    auto loss = [&] {
      Tensor t = x;
      cpu->rope(t, 6, positions, rope);
      return dot(t, r);
    };
    Tensor dx = r;
    cpu->rope_backward(dx, 6, positions, rope);
    check_gradient("x", x, dx, loss);
  }
}

TEST_CASE("GeGLU, scaling and soft-capping, and their backward passes") {
  auto cpu = make_cpu_backend(2);
  std::mt19937 rng(10);
  Tensor gate = random_tensor({3, 7}, rng), up = random_tensor({3, 7}, rng),
         r = random_tensor({3, 7}, rng);
  Tensor out;
  cpu->gelu_glu(gate, up, out);
  const double c = std::sqrt(2.0 / M_PI);
  for (int64_t i = 0; i < out.numel(); ++i) {
    const double g = gate[i];
    const double gelu = 0.5 * g * (1 + std::tanh(c * (g + 0.044715 * g * g * g)));
    CHECK(out[i] == doctest::Approx(gelu * up[i]).epsilon(1e-5));
  }
  auto loss = [&] {
    Tensor o;
    cpu->gelu_glu(gate, up, o);
    return dot(o, r);
  };
  Tensor dgate, dup;
  cpu->gelu_glu_backward(r, gate, up, dgate, dup);
  check_gradient("gate", gate, dgate, loss);
  check_gradient("up", up, dup, loss);

  Tensor x = random_tensor({2, 5}, rng);
  Tensor y = x;
  cpu->scale(y, 2.5f);
  for (int64_t i = 0; i < x.numel(); ++i) CHECK(y[i] == 2.5f * x[i]);
  for (float& v : x.values()) v *= 4.0f;  // far enough out for the cap to bend
  Tensor capped = x;
  cpu->softcap(capped, 1.5f);
  for (int64_t i = 0; i < x.numel(); ++i) {
    CHECK(capped[i] == doctest::Approx(1.5 * std::tanh(x[i] / 1.5)).epsilon(1e-6));
  }
  Tensor rr = random_tensor(x.shape(), rng);
  auto capped_loss = [&] {
    Tensor t = x;
    cpu->softcap(t, 1.5f);
    return dot(t, rr);
  };
  Tensor dy = rr;
  cpu->softcap_backward(dy, capped, 1.5f);
  check_gradient("x", x, dy, capped_loss);
}

TEST_CASE("bias add and its backward") {
  auto cpu = make_cpu_backend(2);
  std::mt19937 rng(9);
  Tensor x = random_tensor({3, 5}, rng), bias = random_tensor({5}, rng),
         r = random_tensor({3, 5}, rng);
  auto loss = [&] {
    Tensor t = x;
    cpu->add_bias(t, bias);
    return dot(t, r);
  };
  Tensor db({5});
  cpu->bias_backward(r, db);
  check_gradient("bias", bias, db, loss);
  Tensor ones({3, 5}, 1.0f);
  cpu->add_bias(ones, bias);
  CHECK(ones[2 * 5 + 4] == 1.0f + bias[4]);
}

TEST_CASE("ops refuse shapes that do not fit, saying which") {
  auto cpu = make_cpu_backend(1);
  Tensor a({2, 3}), b({4, 5}), c;
  CHECK_THROWS_WITH_AS(cpu->gemm(false, false, 1, a, b, 0, c),
                       "gemm: op(a) is [2, 3] but op(b) is [4, 5]", ShapeError);
  Tensor x({2, 8}), w({7}), bias({8}), out, mean, rstd;
  CHECK_THROWS_WITH_AS(cpu->layernorm(x, w, bias, 1e-5f, out, mean, rstd),
                       "layernorm: w has shape [7], expected [8]", ShapeError);
  Tensor table({4, 2});
  CHECK_THROWS_WITH_AS(cpu->embedding(table, {1, 4}, out), "embedding: id 4 outside [0, 4)",
                       ShapeError);
  CHECK_THROWS_AS(cpu->cross_entropy(Tensor({2, 3}), {0}, out), ShapeError);
  CHECK_THROWS_AS(cpu->add(Tensor({2, 3}), Tensor({3, 2}), out), ShapeError);  // no broadcasting
  CHECK_THROWS_AS(Tensor::of({2, 2}, {1, 2, 3}), ShapeError);
  Backend::AttentionShape s;
  s.q_len = 2;
  s.kv_len = 2;
  s.heads = 3;
  s.kv_heads = 2;  // 3 heads cannot share 2 key/value heads evenly
  s.head_dim = 4;
  Tensor lse;
  CHECK_THROWS_AS(cpu->attention(s, Tensor({2, 12}), Tensor({2, 8}), Tensor({2, 8}), out, lse),
                  ShapeError);
  Tensor odd({1, 6});
  CHECK_THROWS_AS(cpu->rope(odd, 3, {0}, plain_rope(3, 1e4)), ShapeError);  // an odd head_dim
  Tensor six({1, 6});
  CHECK_THROWS_AS(cpu->rope(six, 6, {0}, plain_rope(4, 1e4)), ShapeError);  // frequencies short
}

TEST_CASE("results do not depend on the number of threads") {
  std::mt19937 rng(6);
  Tensor x = random_tensor({64, 32}, rng), w = random_tensor({32}, rng),
         b = random_tensor({32}, rng);
  Tensor logits = random_tensor({64, 50}, rng);
  Tensor q = random_tensor({16, 16}, rng), kv = random_tensor({16, 8}, rng);
  std::vector<int32_t> targets(64);
  for (size_t i = 0; i < targets.size(); ++i) targets[i] = static_cast<int32_t>(i % 50);
  auto run = [&](int threads) {
    auto cpu = make_cpu_backend(threads);
    Tensor out, mean, rstd, dx, dw({32}), db({32}), dl;
    cpu->layernorm(x, w, b, 1e-5f, out, mean, rstd);
    cpu->layernorm_backward(out, x, w, mean, rstd, dx, dw, db);
    const float loss = cpu->cross_entropy(logits, targets, dl);
    Backend::AttentionShape s;
    s.batch = 2;
    s.q_len = 8;
    s.kv_len = 8;
    s.heads = 4;
    s.kv_heads = 2;
    s.head_dim = 4;
    Tensor att, lse, dq, dk, dv;
    cpu->attention(s, q, kv, kv, att, lse);
    cpu->attention_backward(s, q, q, kv, kv, att, lse, dq, dk, dv);
    return std::make_tuple(out.values(), dx.values(), dw.values(), loss, dl.values(), att.values(),
                           dq.values(), dk.values(), dv.values());
  };
  CHECK(run(1) == run(4));
}

}  // namespace
}  // namespace mh::engine
