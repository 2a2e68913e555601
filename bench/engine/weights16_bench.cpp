// Batch-1 CPU decoding of one model with fp32 weights and then with the same weights held at 16
// bits (bf16 or f16), in one run, beside the memory bandwidth measured in that run. Decoding one
// sequence reads every weight once per token, so its floor is the weights' bytes over the
// bandwidth: 16-bit weights halve it. bench/engine/weights16.sh runs it (Llama-3.2-1B's shape).
//   weights16_bench --hidden 2048 --layers 16 --heads 32 --kv-heads 8 --ffn 8192 --vocab 128256
//                   --tokens 16 --threads 2 [--f16 1]
// Prints one JSON object.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include "platform/engine/model.h"

using namespace mh::engine;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Greedy decoding after a 16-token prompt: tokens per second, and the tokens.
std::pair<double, std::vector<int32_t>> decode(Model& model, int64_t tokens) {
  KvCache cache = model.new_cache(16 + tokens + 1);
  std::vector<int32_t> prompt(16);
  for (size_t i = 0; i < prompt.size(); ++i) prompt[i] = static_cast<int32_t>(i * 7919 % 1000);
  std::vector<Model::Step> st = {{&cache, prompt}};
  Tensor logits = model.forward_cached(st);  // the prompt, not timed
  std::vector<int32_t> out;
  const auto t0 = Clock::now();
  for (int64_t i = 0; i < tokens; ++i) {
    const auto next = static_cast<int32_t>(
        std::max_element(logits.data(), logits.data() + logits.numel()) - logits.data());
    out.push_back(next);
    st[0].tokens = {next};
    logits = model.forward_cached(st);
  }
  return {static_cast<double>(tokens) / seconds_since(t0), out};
}

// Read bandwidth: summing 1 GiB of floats split across `threads` threads; the best of three.
double read_gb_per_s(int threads) {
  const size_t n = (size_t{1} << 30) / sizeof(float);
  std::vector<float> data(n, 1.0f);
  double best = 0, total = 0;
  for (int round = 0; round < 3; ++round) {
    std::vector<double> sums(static_cast<size_t>(threads));
    std::vector<std::thread> pool;
    const auto t0 = Clock::now();
    for (int t = 0; t < threads; ++t) {
      pool.emplace_back([&, t] {
        const size_t b = n * t / threads, e = n * (t + 1) / threads;
        float acc[8] = {};
        for (size_t i = b; i + 8 <= e; i += 8) {
          for (int j = 0; j < 8; ++j) acc[j] += data[i + j];
        }
        sums[static_cast<size_t>(t)] = std::accumulate(acc, acc + 8, 0.0);
      });
    }
    for (auto& th : pool) th.join();
    best = std::max(best, static_cast<double>(n * sizeof(float)) / seconds_since(t0) / 1e9);
    total += std::accumulate(sums.begin(), sums.end(), 0.0);
  }
  volatile double sink = total;  // the sums are used, so the reads happen
  (void)sink;
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  std::map<std::string, int64_t> opt = {{"hidden", 2048}, {"layers", 16},   {"heads", 32},
                                        {"kv-heads", 8},  {"ffn", 8192},    {"vocab", 128256},
                                        {"tokens", 16},   {"threads", 2},   {"f16", 0}};
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a.rfind("--", 0) != 0 || !opt.contains(a.substr(2)) || i + 1 >= argc) {
      std::fprintf(stderr, "unknown option %s\n", argv[i]);
      return 2;
    }
    opt[a.substr(2)] = std::atoll(argv[++i]);
  }
  ModelConfig c;
  c.family = Family::kLlama;
  c.vocab_size = opt["vocab"];
  c.hidden = opt["hidden"];
  c.layers = opt["layers"];
  c.heads = opt["heads"];
  c.kv_heads = opt["kv-heads"];
  c.head_dim = c.hidden / c.heads;
  c.ffn = opt["ffn"];
  c.max_positions = 2048;
  c.rope_theta = 500000;
  c.tie_embeddings = true;
  auto backend = make_cpu_backend(static_cast<int>(opt["threads"]));
  auto model = std::move(Model::create(c, *backend, 1).value());
  // The weights rounded to 16 bits first, so that both runs multiply the same numbers.
  const auto format = opt["f16"] ? HalfTensor::Format::kF16 : HalfTensor::Format::kBF16;
  for (auto& p : model->parameters()) {
    if (p.shape.size() != 2) continue;
    for (float& v : p.value.values()) {
      v = format == HalfTensor::Format::kBF16 ? bf16_to_float(float_to_bf16(v))
                                              : f16_to_float(float_to_f16(v));
    }
  }
  const double bandwidth = read_gb_per_s(static_cast<int>(opt["threads"]));
  const int64_t fp32_bytes = model->weight_bytes();
  decode(*model, 2);  // warm-up
  const auto [fp32_rate, fp32_ids] = decode(*model, opt["tokens"]);
  model->to_half(format);
  const int64_t half_bytes = model->weight_bytes();
  decode(*model, 2);
  const auto [half_rate, half_ids] = decode(*model, opt["tokens"]);
  std::printf(
      "{\"params\":%lld,\"threads\":%lld,\"format\":\"%s\",\"read_gb_per_s\":%.1f,"
      "\"fp32\":{\"weight_gb\":%.2f,\"tokens_per_s\":%.2f,\"floor_tokens_per_s\":%.2f},"
      "\"half\":{\"weight_gb\":%.2f,\"tokens_per_s\":%.2f,\"floor_tokens_per_s\":%.2f},"
      "\"speedup\":%.2f,\"same_tokens\":%s}\n",
      static_cast<long long>(c.parameter_count()), static_cast<long long>(opt["threads"]),
      format == HalfTensor::Format::kBF16 ? "bf16" : "f16", bandwidth, fp32_bytes / 1e9, fp32_rate,
      bandwidth * 1e9 / static_cast<double>(fp32_bytes), half_bytes / 1e9, half_rate,
      bandwidth * 1e9 / static_cast<double>(half_bytes), half_rate / fp32_rate,
      fp32_ids == half_ids ? "true" : "false");
  return 0;
}
