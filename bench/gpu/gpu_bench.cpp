// The CUDA engine's pieces on the device, timed with CUDA events on device-resident operands at
// GPT-2 124M's training shapes (8 x 1024 tokens): the GEMMs through cuBLASLt (fp32 and bf16
// operands), attention forward and backward, LayerNorm, and the fused AdamW over 124M
// parameters; then, with --decode DIR, greedy decoding of a saved model at batch 1 and 64,
// through the CUDA backend and through the device-resident decoder. bench/gpu/run.sh runs it beside
// torch_peer.py. One JSON object per line.
//   gpu_bench [--decode DIR] [--decode-tokens 64] [--repeat 20]
#include <cuda_runtime.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "platform/engine/cuda/cuda_backend.h"
#include "platform/engine/cuda/decoder.h"
#include "platform/engine/cuda/gemm.h"
#include "platform/engine/cuda/kernels.h"
#include "platform/engine/model.h"

using namespace mh::engine;

namespace {

void need(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    std::fprintf(stderr, "gpu_bench: %s: %s\n", what, cudaGetErrorString(e));
    std::exit(1);
  }
}

// Device memory filled with small pseudo-random values (a hash of the index), freed at exit.
template <typename T>
T* device_array(size_t n) {
  void* p = nullptr;
  need(cudaMalloc(&p, std::max<size_t>(n, 1) * sizeof(T)), "cudaMalloc");
  std::vector<float> host(n);
  for (size_t i = 0; i < n; ++i) {
    host[i] = static_cast<float>((i * 2654435761u) % 1000) / 1000.0f - 0.5f;
  }
  if constexpr (sizeof(T) == 4) {
    need(cudaMemcpy(p, host.data(), n * 4, cudaMemcpyHostToDevice), "copy");
  } else {
    float* f = nullptr;
    need(cudaMalloc(&f, n * 4), "cudaMalloc");
    need(cudaMemcpy(f, host.data(), n * 4, cudaMemcpyHostToDevice), "copy");
    need(cuda::to_bf16(f, static_cast<int64_t>(n), static_cast<uint16_t*>(p), nullptr), "bf16");
    cudaFree(f);
  }
  return static_cast<T*>(p);
}

// Milliseconds per call: a warm-up, then `repeat` calls between two events.
double time_ms(int repeat, const std::function<void()>& fn) {
  fn();
  cudaEvent_t a, b;
  cudaEventCreate(&a);
  cudaEventCreate(&b);
  cudaEventRecord(a);
  for (int i = 0; i < repeat; ++i) fn();
  cudaEventRecord(b);
  need(cudaEventSynchronize(b), "synchronize");
  float ms = 0;
  cudaEventElapsedTime(&ms, a, b);
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  return ms / repeat;
}

void report(const char* what, const char* shape, double ms, double flops, double bytes) {
  std::printf(
      "{\"impl\":\"macrohard\",\"op\":\"%s\",\"shape\":\"%s\",\"ms\":%.4f,\"tflops\":%.2f,"
      "\"gbps\":%.1f}\n",
      what, shape, ms, flops / ms / 1e9, bytes / ms / 1e6);
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  std::string decode_dir;
  int64_t decode_tokens = 64;
  int repeat = 20;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--decode") {
      decode_dir = argv[i + 1];
    } else if (a == "--decode-tokens") {
      decode_tokens = std::atoll(argv[i + 1]);
    } else if (a == "--repeat") {
      repeat = std::atoi(argv[i + 1]);
    } else {
      std::fprintf(stderr, "unknown option %s\n", argv[i]);
      return 2;
    }
  }
  cudaDeviceProp prop{};
  need(cudaGetDeviceProperties(&prop, 0), "device");
  std::printf("{\"device\":\"%s\",\"sms\":%d,\"memory_gb\":%.1f}\n", prop.name,
              prop.multiProcessorCount, static_cast<double>(prop.totalGlobalMem) / 1e9);

  auto gemm = std::move(cuda::Gemm::create().value());
  const int64_t tokens = 8 * 1024, d = 768;
  struct Shape {
    const char* name;
    int64_t m, n, k;
  };
  // Forward products of one GPT-2 124M step (the backward pass has two of each shape).
  for (const Shape& s : {Shape{"qkv", tokens, 3 * d, d}, Shape{"attn_proj", tokens, d, d},
                         Shape{"fc", tokens, 4 * d, d}, Shape{"mlp_proj", tokens, d, 4 * d},
                         Shape{"lm_head", tokens, 50304, d}}) {
    const double flops = 2.0 * s.m * s.n * s.k;
    char shape[64];
    std::snprintf(shape, sizeof shape, "%lldx%lldx%lld", static_cast<long long>(s.m),
                  static_cast<long long>(s.n), static_cast<long long>(s.k));
    float* c = device_array<float>(static_cast<size_t>(s.m * s.n));
    {
      float* a = device_array<float>(static_cast<size_t>(s.m * s.k));
      float* b = device_array<float>(static_cast<size_t>(s.k * s.n));
      const double ms = time_ms(repeat, [&] {
        gemm->run(false, false, s.m, s.n, s.k, 1.0f, a, b, 0.0f, c, CUDA_R_32F, nullptr);
      });
      report((std::string("gemm_fp32_") + s.name).c_str(), shape, ms, flops,
             4.0 * (s.m * s.k + s.k * s.n + s.m * s.n));
      cudaFree(a);
      cudaFree(b);
    }
    {
      auto* a = device_array<uint16_t>(static_cast<size_t>(s.m * s.k));
      auto* b = device_array<uint16_t>(static_cast<size_t>(s.k * s.n));
      const double ms = time_ms(repeat, [&] {
        gemm->run(false, false, s.m, s.n, s.k, 1.0f, a, b, 0.0f, c, CUDA_R_16BF, nullptr);
      });
      report((std::string("gemm_bf16_") + s.name).c_str(), shape, ms, flops,
             2.0 * (s.m * s.k + s.k * s.n) + 4.0 * s.m * s.n);
      cudaFree(a);
      cudaFree(b);
    }
    cudaFree(c);
  }

  // Attention at 8 x 12 heads x 1024 x 64: causal, so half the square.
  {
    cuda::AttentionDims s{8, 1024, 1024, 12, 12, 64};
    const size_t n = static_cast<size_t>(s.batch * s.q_len * s.heads * s.head_dim);
    float *q = device_array<float>(n), *k = device_array<float>(n), *v = device_array<float>(n);
    float *o = device_array<float>(n), *g = device_array<float>(n);
    float *dq = device_array<float>(n), *dk = device_array<float>(n), *dv = device_array<float>(n);
    float* lse = device_array<float>(static_cast<size_t>(s.batch * s.heads * s.q_len));
    float* delta = device_array<float>(static_cast<size_t>(s.batch * s.heads * s.q_len));
    const double causal = 0.5 * s.batch * s.heads * s.q_len * s.kv_len * s.head_dim;
    const double fwd = time_ms(repeat, [&] { cuda::attention(s, q, k, v, o, lse, nullptr); });
    report("attention_fwd_fp32", "8x12x1024x64", fwd, 4.0 * causal, 16.0 * n);
    const double bwd = time_ms(repeat, [&] {
      cuda::attention_backward(s, g, q, k, v, o, lse, delta, dq, dk, dv, nullptr);
    });
    report("attention_bwd_fp32", "8x12x1024x64", bwd, 10.0 * causal, 36.0 * n);
    for (float* p : {q, k, v, o, g, dq, dk, dv, lse, delta}) cudaFree(p);
  }

  // LayerNorm forward over the residual stream: bytes-bound (x in, out out).
  {
    float *x = device_array<float>(static_cast<size_t>(tokens * d)),
          *o = device_array<float>(static_cast<size_t>(tokens * d));
    float *w = device_array<float>(d), *b = device_array<float>(d);
    float *mean = device_array<float>(tokens), *rstd = device_array<float>(tokens);
    const double ms = time_ms(
        repeat, [&] { cuda::layernorm(x, w, b, 1e-5f, tokens, d, o, mean, rstd, nullptr); });
    report("layernorm_fwd_fp32", "8192x768", ms, 0, 8.0 * tokens * d);
    for (float* p : {x, o, w, b, mean, rstd}) cudaFree(p);
  }

  // AdamW over GPT-2 124M's parameters: w, g, m, v read, w, m, v and the bf16 copy written.
  {
    const int64_t n = 124'475'904;
    float *w = device_array<float>(static_cast<size_t>(n)),
          *g = device_array<float>(static_cast<size_t>(n));
    float *m = device_array<float>(static_cast<size_t>(n)),
          *v = device_array<float>(static_cast<size_t>(n));
    auto* copy = device_array<uint16_t>(static_cast<size_t>(n));
    cuda::AdamWStep s{0.9f, 0.95f, 1e-8f, 0.9999f, 1e-4f, 0.5f, 1.0f};
    const double ms = time_ms(repeat, [&] { cuda::adamw(w, g, m, v, n, s, copy, nullptr); });
    report("adamw_fp32", "124M", ms, 0, 30.0 * static_cast<double>(n));
    for (float* p : {w, g, m, v}) cudaFree(p);
    cudaFree(copy);
  }

  // Greedy decoding of a saved model: through the CUDA backend (operands staged per op), and
  // through the device-resident decoder (fp32 and bf16 weights, CUDA graphs).
  if (!decode_dir.empty()) {
    auto backend = make_cuda_backend();
    if (!backend.ok()) {
      std::fprintf(stderr, "gpu_bench: %s\n", backend.status().message().c_str());
      return 1;
    }
    auto model = Model::load(decode_dir, **backend);
    if (!model.ok()) {
      std::fprintf(stderr, "gpu_bench: %s\n", model.status().message().c_str());
      return 1;
    }
    const int64_t vocab = (*model)->config().vocab_size;
    auto argmax = [&](const Tensor& logits, int64_t i) {
      const float* row = logits.data() + i * vocab;
      return static_cast<int32_t>(std::max_element(row, row + vocab) - row);
    };
    auto prompt = [&](int64_t i) {
      std::vector<int32_t> p(16);
      for (int j = 0; j < 16; ++j)
        p[static_cast<size_t>(j)] = static_cast<int32_t>((i * 31 + j) % vocab);
      return p;
    };
    auto print = [&](const char* how, int64_t batch, double seconds) {
      std::printf(
          "{\"impl\":\"macrohard %s\",\"op\":\"decode\",\"model\":\"%s\",\"batch\":%lld,"
          "\"tokens_per_s\":%.1f,\"parameters\":%lld}\n",
          how, decode_dir.c_str(), static_cast<long long>(batch),
          static_cast<double>(batch * (decode_tokens - 1)) / seconds,
          static_cast<long long>((*model)->config().parameter_count()));
      std::fflush(stdout);
    };
    for (int64_t batch : {int64_t{1}, int64_t{64}}) {
      {  // the staged backend
        std::vector<KvCache> caches;
        for (int64_t i = 0; i < batch; ++i)
          caches.push_back((*model)->new_cache(16 + decode_tokens));
        std::vector<Model::Step> steps;
        for (int64_t i = 0; i < batch; ++i)
          steps.push_back({&caches[static_cast<size_t>(i)], prompt(i)});
        Tensor logits = (*model)->forward_cached(steps);  // prefill, not timed
        const auto t0 = std::chrono::steady_clock::now();
        for (int64_t t = 0; t < decode_tokens - 1; ++t) {
          for (int64_t i = 0; i < batch; ++i)
            steps[static_cast<size_t>(i)].tokens = {argmax(logits, i)};
          logits = (*model)->forward_cached(steps);
        }
        print("staged", batch,
              std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      }
      for (bool bf16 : {false, true}) {
        CudaDecoderOptions o;
        o.max_sequences = static_cast<int>(batch);
        o.capacity = 16 + decode_tokens;
        o.bf16_weights = bf16;
        auto dec = CudaDecoder::create(**model, o);
        if (!dec.ok()) {
          std::fprintf(stderr, "gpu_bench: %s\n", dec.status().message().c_str());
          return 1;
        }
        std::vector<CudaDecoder::Work> work;
        for (int64_t i = 0; i < batch; ++i) work.push_back({(*dec)->open().value(), prompt(i)});
        Tensor logits = (*dec)->step(work);  // prefill
        for (int64_t i = 0; i < batch; ++i)
          work[static_cast<size_t>(i)].tokens = {argmax(logits, i)};
        logits = (*dec)->step(work);  // the first single-token step captures the graph
        const auto t0 = std::chrono::steady_clock::now();
        for (int64_t t = 0; t < decode_tokens - 2; ++t) {
          for (int64_t i = 0; i < batch; ++i)
            work[static_cast<size_t>(i)].tokens = {argmax(logits, i)};
          logits = (*dec)->step(work);
        }
        const double seconds =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        print(bf16 ? "decoder-bf16" : "decoder-fp32", batch,
              seconds * static_cast<double>(decode_tokens - 1) /
                  static_cast<double>(decode_tokens - 2));
      }
    }
  }
  return 0;
}
