// The CUDA engine's pieces on the device, timed with CUDA events on device-resident operands at
// GPT-2 124M's training shapes (8 x 1024 tokens): the GEMMs through cuBLASLt (fp32 and bf16
// operands), attention forward and backward, LayerNorm, and the fused AdamW over 124M
// parameters. With --train-batch B, whole training steps of GPT-2 124M (context 1024, the
// peer's padded vocabulary of 50304) on the device-resident trainer in one --train-mode (fp32,
// bf16, bf16-simt: bf16 with the fp32 attention kernels, or profile: a bf16 step's device time
// by op): tokens/s and MFU counted as torch_peer.py counts them. With --decode DIR, greedy decoding
// of a saved model at batch 1 and 64, through the CUDA backend and through the device-resident
// decoder. bench/gpu/run.sh runs it beside torch_peer.py. One JSON object per line.
//   gpu_bench [--ops 0] [--train-batch 16] [--train-mode bf16] [--train-steps 5] [--decode DIR]
//             [--decode-tokens 64] [--repeat 20]
#include <cuda_runtime.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "platform/engine/cuda/cuda_backend.h"
#include "platform/engine/cuda/decoder.h"
#include "platform/engine/cuda/flash_attention.h"
#include "platform/engine/cuda/gemm.h"
#include "platform/engine/cuda/kernels.h"
#include "platform/engine/cuda/trainer.h"
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

// The pieces at GPT-2 124M's training shapes, each timed alone.
void run_ops(int repeat) {
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
    // The tensor-core kernels on bf16 copies (the training path with --precision bf16).
    auto *qh = device_array<uint16_t>(n), *kh = device_array<uint16_t>(n),
         *vh = device_array<uint16_t>(n), *gh = device_array<uint16_t>(n);
    const double flash_fwd =
        time_ms(repeat, [&] { cuda::flash_attention(s, qh, kh, vh, o, lse, nullptr); });
    report("attention_fwd_bf16", "8x12x1024x64", flash_fwd, 4.0 * causal, 10.0 * n);
    const double flash_bwd = time_ms(repeat, [&] {
      cuda::flash_attention_backward(s, g, o, qh, kh, vh, lse, gh, delta, dq, dk, dv, nullptr);
    });
    report("attention_bwd_bf16", "8x12x1024x64", flash_bwd, 10.0 * causal, 30.0 * n);
    for (uint16_t* p : {qh, kh, vh, gh}) cudaFree(p);
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
    // Its backward: dx row by row, dw and db summed down the columns.
    float* dx = device_array<float>(static_cast<size_t>(tokens * d));
    const double back = time_ms(repeat, [&] {
      cuda::layernorm_backward(o, x, w, mean, rstd, tokens, d, dx, w, b, nullptr);
    });
    report("layernorm_bwd_fp32", "8192x768", back, 0, 12.0 * tokens * d);
    // What a bf16 GEMM's operand costs to make, and a bias gradient.
    auto* half = device_array<uint16_t>(static_cast<size_t>(tokens * d));
    const double convert = time_ms(repeat, [&] { cuda::to_bf16(x, tokens * d, half, nullptr); });
    report("to_bf16", "8192x768", convert, 0, 6.0 * tokens * d);
    const double bias = time_ms(repeat, [&] { cuda::bias_backward(x, tokens, d, b, nullptr); });
    report("bias_backward", "8192x768", bias, 0, 4.0 * tokens * d);
    // The embedding's backward for 8192 tokens of a 50304-row table.
    std::vector<int32_t> ids(static_cast<size_t>(tokens));
    for (size_t i = 0; i < ids.size(); ++i)
      ids[i] = static_cast<int32_t>((i * 2654435761u) % 50257);
    const cuda::IdGroups groups = cuda::group_by_id(ids.data(), tokens);
    int32_t* dg = nullptr;
    const size_t group_ints = groups.ids.size() + groups.starts.size() + groups.rows.size();
    need(cudaMalloc(&dg, group_ints * 4), "cudaMalloc");
    need(cudaMemcpy(dg, groups.ids.data(), groups.ids.size() * 4, cudaMemcpyHostToDevice), "copy");
    int32_t* starts = dg + groups.ids.size();
    need(cudaMemcpy(starts, groups.starts.data(), groups.starts.size() * 4, cudaMemcpyHostToDevice),
         "copy");
    int32_t* rows = starts + groups.starts.size();
    need(cudaMemcpy(rows, groups.rows.data(), groups.rows.size() * 4, cudaMemcpyHostToDevice),
         "copy");
    float* table = device_array<float>(static_cast<size_t>(50304 * d));
    const double embed = time_ms(repeat, [&] {
      cuda::embedding_backward(x, dg, starts, rows, groups.groups(), d, table, nullptr);
    });
    report("embedding_backward", "8192x768", embed, 0, 12.0 * tokens * d);
    cudaFree(dg);
    cudaFree(half);
    for (float* p : {x, o, w, b, mean, rstd, dx, table}) cudaFree(p);
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
}

// Whole training steps of GPT-2 124M on the device-resident trainer: warm-up, then `steps`
// timed, each a micro-batch of `batch` rows of 1024, the reduction (the gradient norm) and AdamW.
int train(int64_t batch, int steps, const std::string& mode) {
  constexpr double kPeakBf16 = 989e12;  // H100 SXM and H200 dense bf16, as torch_peer.py
  if (mode != "fp32" && mode != "bf16" && mode != "bf16-simt" && mode != "profile") {
    std::fprintf(stderr, "gpu_bench: --train-mode is fp32, bf16, bf16-simt or profile\n");
    return 2;
  }
  ModelConfig c =
      parse_model_config(R"({"model_type":"gpt2","vocab_size":50304,"n_embd":768,"n_layer":12,)"
                         R"("n_head":12,"n_positions":1024})")
          .value();
  auto cpu = make_cpu_backend();
  auto model = Model::create(c, *cpu, 1).value();
  auto one = make_single_rank();
  TrainConfig tc;
  tc.batch_size = batch;
  tc.seq_len = 1024;
  const int64_t n = batch * 1024;
  std::vector<int32_t> ids(static_cast<size_t>(n)), targets(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    ids[i] = static_cast<int32_t>((i * 2654435761u) % 50257);
    targets[i] = static_cast<int32_t>((i * 40503u + 7) % 50257);
  }
  const double flops_per_token = 6.0 * static_cast<double>(c.parameter_count()) +
                                 12.0 * static_cast<double>(c.layers * c.hidden * 1024);
  std::map<std::string, double> profile;
  CudaTrainOptions o;
  o.bf16 = mode != "fp32";
  o.flash_attention = mode != "bf16-simt";
  if (mode == "profile") o.profile = &profile;
  auto engine = make_cuda_engine(*model, tc, *one, o);
  if (!engine.ok()) {
    std::fprintf(stderr, "gpu_bench: %s\n", engine.status().message().c_str());
    return 1;
  }
  auto step = [&] {
    (*engine)->begin_step();
    (*engine)->micro_batch(ids, targets, batch, 1024, n, true);
    const auto r = (*engine)->reduce(false);
    (*engine)->update(3e-4f, 1.0f);
    return r;
  };
  step();  // buffers and GEMM plans made
  if (mode == "profile") {
    // Where a bf16 step's device time goes, op by op (an engine that marks its stream after
    // each op: slower than an unprofiled step, so these are shares, not the step's time).
    profile.clear();
    step();
    (*engine)->begin_step();  // its first mark closes the last update's
    (*engine)->reduce(false);
    std::string ops;
    for (const auto& [op, ms] : profile) {
      ops += (ops.empty() ? "" : ",") + std::string("\"") + op + "\":" + std::to_string(ms);
    }
    std::printf("{\"impl\":\"macrohard bf16\",\"op\":\"train_profile\",\"ms\":{%s}}\n",
                ops.c_str());
    return 0;
  }
  step();
  need(cudaDeviceSynchronize(), "synchronize");
  const std::string impl = "macrohard " + mode;
  // One step in phases, each waited for: forward and backward, the reduction (the gradient
  // norm, and the loss copied back), AdamW.
  auto now = [] { return std::chrono::steady_clock::now(); };
  auto ms_since = [&](std::chrono::steady_clock::time_point t) {
    return std::chrono::duration<double, std::milli>(now() - t).count();
  };
  auto t = now();
  (*engine)->begin_step();
  (*engine)->micro_batch(ids, targets, batch, 1024, n, true);
  need(cudaDeviceSynchronize(), "synchronize");
  const double fwd_bwd = ms_since(t);
  t = now();
  (*engine)->reduce(false);
  const double reduce = ms_since(t);
  t = now();
  (*engine)->update(3e-4f, 1.0f);
  need(cudaDeviceSynchronize(), "synchronize");
  const double update = ms_since(t);
  std::printf(
      "{\"impl\":\"%s\",\"op\":\"train_phases\",\"forward_backward_ms\":%.2f,"
      "\"reduce_ms\":%.2f,\"adamw_ms\":%.2f}\n",
      impl.c_str(), fwd_bwd, reduce, update);
  const auto t0 = now();
  StepEngine::Reduced last;
  for (int i = 0; i < steps; ++i) last = step();
  need(cudaDeviceSynchronize(), "synchronize");
  const double seconds = std::chrono::duration<double>(now() - t0).count();
  const double tokens_per_s = static_cast<double>(n * steps) / seconds;
  std::printf(
      "{\"impl\":\"%s\",\"op\":\"train_gpt2_124m\",\"batch\":%lld,"
      "\"context\":1024,\"parameters\":%lld,\"ms_per_step\":%.2f,\"tokens_per_s\":%.0f,"
      "\"mfu\":%.4f,\"loss\":%.4f}\n",
      impl.c_str(), static_cast<long long>(batch), static_cast<long long>(c.parameter_count()),
      seconds * 1e3 / steps, tokens_per_s, tokens_per_s * flops_per_token / kPeakBf16,
      static_cast<double>(last.loss));
  std::fflush(stdout);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string decode_dir;
  int64_t decode_tokens = 64, train_batch = 0;
  std::string train_mode = "bf16";
  int repeat = 20, train_steps = 5;
  bool ops = true;
  if (argc == 2 && std::string(argv[1]) == "--help") {  // also: does the binary start here?
    std::printf(
        "gpu_bench [--ops 0|1] [--repeat N] [--train-batch B --train-mode "
        "fp32|bf16|bf16-simt|profile --train-steps N] [--decode DIR --decode-tokens N]\n");
    return 0;
  }
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--ops") {
      ops = std::atoi(argv[i + 1]) != 0;
    } else if (a == "--train-batch") {
      train_batch = std::atoll(argv[i + 1]);
    } else if (a == "--train-mode") {
      train_mode = argv[i + 1];
    } else if (a == "--train-steps") {
      train_steps = std::atoi(argv[i + 1]);
    } else if (a == "--decode") {
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

  if (train_batch > 0) {
    if (const int rc = train(train_batch, train_steps, train_mode); rc != 0) return rc;
  }
  if (ops) run_ops(repeat);

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
