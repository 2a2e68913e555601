// The engine's CPU throughput: training tokens/s and batch-1 decode tokens/s for a GPT-2
// model, the share of time spent in GEMM and its GFLOP/s, and the SGEMM peak measured in the
// same run. bench/engine/run.sh runs it beside the PyTorch peer (torch_peer.py).
//   engine_bench --layers 4 --hidden 256 --heads 4 --context 256 --vocab 50257 --batch 4
//                --threads 2 [--train-steps 5] [--decode-tokens 64] [--forward-only]
//                [--cuda 1 [--bf16 1]]   (the CUDA backend, where built; bench/gpu/run.sh)
// Prints one JSON object.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>

#include "platform/engine/train.h"
#ifdef MH_ENGINE_CUDA
#include "platform/engine/cuda/cuda_backend.h"
#endif

using namespace mh::engine;
using Clock = std::chrono::steady_clock;

namespace {

// Forwards every op to the real backend, timing GEMMs and counting their FLOPs.
class TimedBackend final : public Backend {
 public:
  explicit TimedBackend(Backend& inner) : b_(inner) {}
  const char* name() const override { return b_.name(); }
  double gemm_seconds = 0, gemm_flops = 0;

  void gemm(bool ta, bool tb, float alpha, const Tensor& a, const Tensor& b, float beta,
            Tensor& c) override {
    const auto t0 = Clock::now();
    b_.gemm(ta, tb, alpha, a, b, beta, c);
    gemm_seconds += std::chrono::duration<double>(Clock::now() - t0).count();
    gemm_flops +=
        2.0 * static_cast<double>(c.numel()) * static_cast<double>(ta ? a.dim(0) : a.dim(1));
  }
  void gemm_half(bool tb, float alpha, const Tensor& a, const HalfTensor& b, float beta,
                 Tensor& c) override {
    const auto t0 = Clock::now();
    b_.gemm_half(tb, alpha, a, b, beta, c);
    gemm_seconds += std::chrono::duration<double>(Clock::now() - t0).count();
    gemm_flops += 2.0 * static_cast<double>(c.numel()) * static_cast<double>(a.dim(1));
  }
  void embedding_half(const HalfTensor& table, const std::vector<int32_t>& ids,
                      Tensor& out) override {
    b_.embedding_half(table, ids, out);
  }
  void layernorm(const Tensor& x, const Tensor& w, const Tensor& b, float eps, Tensor& out,
                 Tensor& mean, Tensor& rstd) override {
    b_.layernorm(x, w, b, eps, out, mean, rstd);
  }
  void layernorm_backward(const Tensor& dout, const Tensor& x, const Tensor& w, const Tensor& mean,
                          const Tensor& rstd, Tensor& dx, Tensor& dw, Tensor& db) override {
    b_.layernorm_backward(dout, x, w, mean, rstd, dx, dw, db);
  }
  void rmsnorm(const Tensor& x, const Tensor& w, float eps, Tensor& out, Tensor& rstd) override {
    b_.rmsnorm(x, w, eps, out, rstd);
  }
  void rmsnorm_backward(const Tensor& dout, const Tensor& x, const Tensor& w, const Tensor& rstd,
                        Tensor& dx, Tensor& dw) override {
    b_.rmsnorm_backward(dout, x, w, rstd, dx, dw);
  }
  void gelu(const Tensor& x, Tensor& out) override { b_.gelu(x, out); }
  void gelu_backward(const Tensor& dout, const Tensor& x, Tensor& dx) override {
    b_.gelu_backward(dout, x, dx);
  }
  void swiglu(const Tensor& g, const Tensor& u, Tensor& out) override { b_.swiglu(g, u, out); }
  void swiglu_backward(const Tensor& dout, const Tensor& g, const Tensor& u, Tensor& dg,
                       Tensor& du) override {
    b_.swiglu_backward(dout, g, u, dg, du);
  }
  void embedding(const Tensor& table, const std::vector<int32_t>& ids, Tensor& out) override {
    b_.embedding(table, ids, out);
  }
  void embedding_backward(const Tensor& dout, const std::vector<int32_t>& ids,
                          Tensor& dtable) override {
    b_.embedding_backward(dout, ids, dtable);
  }
  float cross_entropy(const Tensor& logits, const std::vector<int32_t>& targets, Tensor& dlogits,
                      int64_t denominator) override {
    return b_.cross_entropy(logits, targets, dlogits, denominator);
  }
  void add(const Tensor& a, const Tensor& b, Tensor& out) override { b_.add(a, b, out); }
  void add_bias(Tensor& x, const Tensor& bias) override { b_.add_bias(x, bias); }
  void bias_backward(const Tensor& dout, Tensor& dbias) override { b_.bias_backward(dout, dbias); }
  void rope(Tensor& x, int64_t hd, const std::vector<int32_t>& pos, const Rope& r) override {
    b_.rope(x, hd, pos, r);
  }
  void rope_backward(Tensor& dx, int64_t hd, const std::vector<int32_t>& pos,
                     const Rope& r) override {
    b_.rope_backward(dx, hd, pos, r);
  }
  void scale(Tensor& x, float alpha) override { b_.scale(x, alpha); }
  void softcap(Tensor& x, float cap) override { b_.softcap(x, cap); }
  void softcap_backward(Tensor& dy, const Tensor& y, float cap) override {
    b_.softcap_backward(dy, y, cap);
  }
  void gelu_glu(const Tensor& g, const Tensor& u, Tensor& out) override { b_.gelu_glu(g, u, out); }
  void gelu_glu_backward(const Tensor& dout, const Tensor& g, const Tensor& u, Tensor& dg,
                         Tensor& du) override {
    b_.gelu_glu_backward(dout, g, u, dg, du);
  }
  void attention(const AttentionShape& s, const Tensor& q, const Tensor& k, const Tensor& v,
                 Tensor& out, Tensor& lse) override {
    b_.attention(s, q, k, v, out, lse);
  }
  void attention_backward(const AttentionShape& s, const Tensor& dout, const Tensor& q,
                          const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse,
                          Tensor& dq, Tensor& dk, Tensor& dv) override {
    b_.attention_backward(s, dout, q, k, v, out, lse, dq, dk, dv);
  }

 private:
  Backend& b_;
};

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
  std::map<std::string, int64_t> opt = {
      {"layers", 4},         {"hidden", 256},     {"heads", 4},   {"context", 256},
      {"vocab", 50257},      {"batch", 4},        {"threads", 2}, {"train-steps", 5},
      {"decode-tokens", 64}, {"forward-only", 0}, {"sgemm", 1},   {"cuda", 0},
      {"bf16", 0}};
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--", 0) != 0 || !opt.contains(a.substr(2))) {
      std::fprintf(stderr, "unknown option %s\n", argv[i]);
      return 2;
    }
    if (a == "--forward-only") {
      opt["forward-only"] = 1;
    } else if (i + 1 < argc) {
      opt[a.substr(2)] = std::atoll(argv[++i]);
    }
  }
  auto cpu = make_cpu_backend(static_cast<int>(opt["threads"]));
  std::unique_ptr<Backend> chosen;
  if (opt["cuda"]) {
#ifdef MH_ENGINE_CUDA
    CudaOptions o;
    o.bf16_gemm = opt["bf16"] != 0;
    auto cuda = make_cuda_backend(o);
    if (!cuda.ok()) {
      std::fprintf(stderr, "engine_bench: %s\n", cuda.status().message().c_str());
      return 1;
    }
    chosen = std::move(cuda).value();
    opt["sgemm"] = 0;
#else
    std::fprintf(stderr, "engine_bench: built without CUDA\n");
    return 2;
#endif
  }
  TimedBackend timed(chosen ? *chosen : *cpu);
  ModelConfig c;
  c.family = Family::kGpt2;
  c.vocab_size = opt["vocab"];
  c.hidden = opt["hidden"];
  c.layers = opt["layers"];
  c.heads = opt["heads"];
  c.kv_heads = c.heads;
  c.head_dim = c.hidden / c.heads;
  c.ffn = 4 * c.hidden;
  c.max_positions = opt["context"];
  auto model = std::move(Model::create(c, timed, 1).value());
  const int64_t b = opt["batch"], t = opt["context"];
  std::vector<int32_t> ids(static_cast<size_t>(b * t)), targets(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    ids[i] = static_cast<int32_t>((i * 7919) % static_cast<size_t>(c.vocab_size));
    targets[i] = static_cast<int32_t>((i * 104729 + 1) % static_cast<size_t>(c.vocab_size));
  }

  // SGEMM peak on this machine, this thread count: a large square product.
  double peak = 0;
  if (opt["sgemm"]) {
    const int64_t n = 2048;
    Tensor a({n, n}, 0.5f), bm({n, n}, 0.25f), out;
    cpu->gemm(false, false, 1, a, bm, 0, out);
    const auto t0 = Clock::now();
    for (int i = 0; i < 3; ++i) cpu->gemm(false, false, 1, a, bm, 0, out);
    peak = 3 * 2.0 * n * n * n / seconds_since(t0) / 1e9;
  }

  // Training (or forward) steps: forward, cross-entropy, backward and AdamW, as the peer
  // does. The first is a warm-up.
  const bool forward_only = opt["forward-only"] != 0;
  TrainConfig tc;
  AdamW adam(model->parameters(), tc);
  auto one_step = [&] {
    if (forward_only) {  // logits and loss, no gradients
      model->forward(ids, b, t, {});
      Tensor dlogits;
      timed.cross_entropy(model->logits(), targets, dlogits, 0);
      return;
    }
    model->zero_grad();
    model->forward(ids, b, t, targets);
    model->backward();
    adam.step(model->parameters(), 1e-4f);
  };
  one_step();
  timed.gemm_seconds = timed.gemm_flops = 0;
  const auto t0 = Clock::now();
  for (int64_t s = 0; s < opt["train-steps"]; ++s) one_step();
  const double train_s = seconds_since(t0);
  const double train_tok_s = static_cast<double>(b * t * opt["train-steps"]) / train_s;
  const double gemm_share = timed.gemm_seconds / train_s;
  const double gemm_gflops = timed.gemm_flops / timed.gemm_seconds / 1e9;

  // Batch-1 greedy decoding with the KV cache: a 16-token prompt, then decode-tokens steps.
  double decode_tok_s = 0;
  const int64_t steps = std::min(opt["decode-tokens"], c.max_positions - 17);
  if (steps > 0) {
    KvCache cache = model->new_cache(16 + steps + 1);
    std::vector<Model::Step> st = {{&cache, std::vector<int32_t>(ids.begin(), ids.begin() + 16)}};
    Tensor logits = model->forward_cached(st);  // prefill, not timed
    const auto d0 = Clock::now();
    for (int64_t i = 0; i < steps; ++i) {
      const auto next = static_cast<int32_t>(
          std::max_element(logits.data(), logits.data() + logits.numel()) - logits.data());
      st[0].tokens = {next};
      logits = model->forward_cached(st);
    }
    decode_tok_s = static_cast<double>(steps) / seconds_since(d0);
  }
  std::printf(
      "{\"impl\":\"macrohard %s\",\"params\":%lld,\"batch\":%lld,\"context\":%lld,\"threads\":%lld,"
      "\"%s_tokens_per_s\":%.1f,\"decode_tokens_per_s\":%.1f,\"gemm_share\":%.3f,"
      "\"gemm_gflops\":%.1f,\"sgemm_peak_gflops\":%.1f}\n",
      timed.name(), static_cast<long long>(c.parameter_count()), static_cast<long long>(b),
      static_cast<long long>(t), static_cast<long long>(opt["threads"]),
      forward_only ? "forward" : "train", train_tok_s, decode_tok_s, gemm_share, gemm_gflops, peak);
  return 0;
}
