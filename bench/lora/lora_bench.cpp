// LoRA's two costs that matter to a platform, measured on the CPU engine:
//   lora_bench make --text FILE --out DIR [shape]   a model whose weights are stored in bf16,
//       with a tokenizer learned from FILE (what bench/lora/run.sh trains, fully and with LoRA,
//       through mh-worker train)
//   lora_bench decode --model DIR --adapters N --batch B --tokens T --threads K
//       greedy decode tokens/s of B sequences on the base alone, then with N distinct adapters
//       spread over the batch (each adapter's product over its own rows), in one process; one
//       JSON line.
#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <random>

#include <unistd.h>

#include "platform/engine/files.h"
#include "platform/engine/generate.h"
#include "platform/engine/model.h"
#include "platform/engine/tokenizer.h"

using namespace mh::engine;
namespace fs = std::filesystem;

namespace {

template <typename T>
T need(mh::Result<T> r) {
  if (!r.ok()) {
    std::fprintf(stderr, "lora_bench: %s\n", r.status().message().c_str());
    std::exit(1);
  }
  return std::move(r).value();
}
void need(const mh::Status& s) {
  if (!s.ok()) {
    std::fprintf(stderr, "lora_bench: %s\n", s.message().c_str());
    std::exit(1);
  }
}

// Decode tokens/s of `batch` greedy sequences of `tokens` tokens each, the i-th through
// adapters[i % n] (none when there are none).
double decode_rate(Model& model, const Tokenizer& tok,
                   const std::vector<std::shared_ptr<const LoraWeights>>& adapters,
                   int64_t batch, int64_t tokens) {
  DecodeBatch decode(model, tok);
  SamplingParams params;
  params.max_tokens = tokens;
  params.temperature = 0;
  params.ignore_eos = true;
  for (int64_t i = 0; i < batch; ++i) {
    std::vector<int32_t> prompt = {static_cast<int32_t>(1 + i), 2, 3, 4};
    auto adapter = adapters.empty() ? nullptr : adapters[static_cast<size_t>(i) % adapters.size()];
    need(decode.add(std::move(prompt), params, {}, adapter).status());
  }
  decode.step();  // the prompts' prefill, not timed
  const auto begin = std::chrono::steady_clock::now();
  int64_t steps = 0;
  while (decode.step()) ++steps;
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count();
  return static_cast<double>(steps * batch) / secs;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("LoRA benchmarks");
  app.require_subcommand(1);
  std::string text, out, model_dir;
  int64_t hidden = 512, layers = 8, vocab = 4096, context = 256, intermediate = 1408;
  int64_t adapters = 8, batch = 8, tokens = 32, rank = 16;
  int threads = 2;
  auto* make = app.add_subcommand("make", "a bf16 model with a tokenizer learned from a text");
  make->add_option("--text", text, "text to learn the tokenizer from")->required();
  make->add_option("--out", out, "model directory")->required();
  make->add_option("--hidden", hidden);
  make->add_option("--layers", layers);
  make->add_option("--intermediate", intermediate);
  make->add_option("--vocab", vocab);
  make->add_option("--context", context);
  auto* decode = app.add_subcommand("decode", "decode tokens/s: base alone, then adapters");
  decode->add_option("--model", model_dir, "model directory")->required();
  decode->add_option("--adapters", adapters, "distinct adapters in the batch");
  decode->add_option("--batch", batch);
  decode->add_option("--tokens", tokens, "tokens each sequence generates");
  decode->add_option("--rank", rank);
  decode->add_option("--threads", threads);
  CLI11_PARSE(app, argc, argv);

  if (make->parsed()) {
    auto backend = make_cpu_backend(threads);
    const std::string corpus = need(read_text_file(text, size_t{64} << 20));
    BpeTrainerOptions learn;
    learn.vocab_size = static_cast<int32_t>(vocab);
    learn.special_tokens = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"};
    const std::vector<std::string> texts = {corpus};
    const Tokenizer tok = need(train_bpe(texts, learn));
    const ModelConfig config = need(parse_model_config(
        "{\"model_type\":\"llama\",\"vocab_size\":" + std::to_string(vocab) +
        ",\"hidden_size\":" + std::to_string(hidden) +
        ",\"intermediate_size\":" + std::to_string(intermediate) +
        ",\"num_hidden_layers\":" + std::to_string(layers) +
        ",\"num_attention_heads\":8,\"num_key_value_heads\":4,\"max_position_embeddings\":" +
        std::to_string(context) + "}"));
    auto model = need(Model::create(config, *backend, 1));
    model->to_half(HalfTensor::Format::kBF16);
    need(model->save(out));
    need(tok.save(out));
    std::printf("%s: llama, %lld parameters, weights in bf16\n", out.c_str(),
                static_cast<long long>(config.parameter_count()));
    return 0;
  }

  auto backend = make_cpu_backend(threads);
  auto model = need(Model::load(model_dir, *backend, Weights::kAsStored));
  const Tokenizer tok = need(Tokenizer::load(model_dir));
  // Distinct adapters on every linear layer, B drawn so that each changes the outputs.
  const fs::path scratch = fs::temp_directory_path() / ("lora-bench-" + std::to_string(getpid()));
  std::vector<std::shared_ptr<const LoraWeights>> loaded;
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 0.02f);
  for (int64_t i = 0; i < adapters; ++i) {
    auto adapted = need(Model::create(model->config(), *backend, 1));
    LoraConfig lora;
    lora.rank = rank;
    lora.alpha = static_cast<float>(2 * rank);
    need(adapted->add_lora(lora, static_cast<uint64_t>(100 + i)));
    for (auto& p : adapted->trainable()) {
      if (p.name.ends_with("lora_B.weight")) {
        for (auto& v : p.value.values()) v = normal(rng);
      }
    }
    const fs::path dir = scratch / std::to_string(i);
    need(adapted->save_lora(dir));
    loaded.push_back(need(model->read_lora(dir)));
  }
  fs::remove_all(scratch);
  // Alternate, twice each, so neither always runs on a warmer machine; the better of two.
  double base = 0, mixed = 0;
  for (int round = 0; round < 2; ++round) {
    base = std::max(base, decode_rate(*model, tok, {}, batch, tokens));
    mixed = std::max(mixed, decode_rate(*model, tok, loaded, batch, tokens));
  }
  std::printf(
      "{\"parameters\":%lld,\"batch\":%lld,\"adapters\":%lld,\"rank\":%lld,\"threads\":%d,"
      "\"base_tokens_per_s\":%.1f,\"adapters_tokens_per_s\":%.1f,\"ratio\":%.3f}\n",
      static_cast<long long>(model->config().parameter_count()), static_cast<long long>(batch),
      static_cast<long long>(adapters), static_cast<long long>(rank), threads, base, mixed,
      mixed / base);
  return 0;
}
