// Helpers for tests of models and fine-tuning: a tiny model in Hugging Face layout, a LoRA
// adapter of it in PEFT's, what the engine generates with them, and a licensed platform that
// uploads and registers models.
#pragma once

#include <boost/json.hpp>
#include <fstream>
#include <span>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "platform/engine/generate.h"
#include "platform/engine/model.h"
#include "platform/engine/safetensors.h"
#include "platform/engine/tokenizer.h"
#include "platform/engine/unicode.h"
#include "tests/integration/licensed_platform.h"

namespace mh::test {

// A tiny llama saved in Hugging Face layout, its files' bytes by name.
inline std::map<std::string, std::string> tiny_model_files(const std::filesystem::path& dir,
                                                           int64_t hidden, int64_t context = 32) {
  auto cpu = engine::make_cpu_backend(1);
  auto config = engine::parse_model_config(
      R"({"model_type":"llama","vocab_size":300,"hidden_size":)" + std::to_string(hidden) +
      R"(,"intermediate_size":32,"num_hidden_layers":1,"num_attention_heads":2,
          "max_position_embeddings":)" +
      std::to_string(context) + "}");
  REQUIRE(config.ok());
  REQUIRE(engine::Model::create(*config, *cpu, 1).value()->save(dir).ok());
  engine::BpeTrainerOptions options;
  options.vocab_size = 270;
  const std::vector<std::string> texts = {"the cat sat on the mat, the cat sat on the hat"};
  REQUIRE(engine::train_bpe(texts, options)->save(dir).ok());
  std::map<std::string, std::string> out;
  for (const char* f : {"config.json", "model.safetensors", "tokenizer.json"}) {
    out[f] = read_file(dir / f);
  }
  return out;
}

// A LoRA adapter of the model in `base` (rank 2 on `targets`, B drawn from `seed` so that it
// changes the outputs), saved in PEFT's files into `dir`; its files' bytes by name.
inline std::map<std::string, std::string> lora_adapter_files(
    const std::filesystem::path& base, const std::filesystem::path& dir, uint32_t seed,
    std::vector<std::string> targets = {"q_proj", "v_proj", "down_proj"}) {
  auto cpu = engine::make_cpu_backend(1);
  auto model = engine::Model::load(base, *cpu);
  REQUIRE(model.ok());
  engine::LoraConfig lora;
  lora.rank = 2;
  lora.target_modules = std::move(targets);
  REQUIRE((*model)->add_lora(lora, seed).ok());
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 0.5f);
  for (auto& t : (*model)->trainable()) {
    if (t.name.ends_with("lora_B.weight")) {
      for (float& v : t.value.values()) v = normal(rng);
    }
  }
  REQUIRE((*model)->save_lora(dir, base.filename().string()).ok());
  std::map<std::string, std::string> out;
  for (const char* f : {"adapter_config.json", "adapter_model.safetensors"}) {
    out[f] = read_file(dir / f);
  }
  return out;
}

// The text the engine generates greedily, without stopping, for `tokens` tokens after
// `prompt`, on the model in `base` with the adapter in `adapter` (none when empty), as a
// replica writes it (bytes that are not UTF-8 as U+FFFD).
inline std::string greedy_text(const std::filesystem::path& base,
                               const std::filesystem::path& adapter,
                               const std::vector<int32_t>& prompt, int64_t tokens) {
  auto cpu = engine::make_cpu_backend(1);
  auto model = engine::Model::load(base, *cpu);
  REQUIRE(model.ok());
  if (!adapter.empty()) REQUIRE((*model)->load_lora(adapter).ok());
  auto tok = engine::Tokenizer::load(base);
  REQUIRE(tok.ok());
  engine::SamplingParams params;
  params.max_tokens = tokens;
  params.temperature = 0;
  params.ignore_eos = true;
  auto out = engine::generate(**model, *tok, {prompt}, params);
  REQUIRE(out.ok());
  return engine::unicode::valid_utf8((*out)[0].text);
}

// Splits `dir`/model.safetensors into two shards and an index, as transformers' save_pretrained
// writes a large model; `misplaced` puts the first tensor in the second shard while the index
// still names the first.
inline void shard_model(const std::filesystem::path& dir, bool misplaced = false) {
  std::string whole = read_file(dir / "model.safetensors");
  auto st = engine::Safetensors::parse(
      std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(whole.data()), whole.size()));
  REQUIRE(st.ok());
  std::vector<engine::TensorToWrite> first, second;
  boost::json::object map;
  const auto& tensors = st->tensors();
  for (size_t i = 0; i < tensors.size(); ++i) {
    const auto& t = tensors[i];
    const bool late = i >= tensors.size() / 2;
    (late || (misplaced && i == 0) ? second : first).push_back({t.name, t.dtype, t.shape, t.bytes});
    map[t.name] = late ? "model-00002-of-00002.safetensors" : "model-00001-of-00002.safetensors";
  }
  REQUIRE(engine::write_safetensors(dir / "model-00001-of-00002.safetensors", first).ok());
  REQUIRE(engine::write_safetensors(dir / "model-00002-of-00002.safetensors", second).ok());
  std::ofstream(dir / "model.safetensors.index.json")
      << boost::json::serialize(boost::json::object{
             {"metadata", {{"total_size", whole.size()}}}, {"weight_map", map}});
  std::filesystem::remove(dir / "model.safetensors");
}

// `lines` prompt/completion examples about a cat on a mat, as JSONL.
inline std::string training_jsonl(int lines) {
  std::string out;
  for (int i = 0; i < lines; ++i) {
    out += R"({"prompt": "the cat sat on the", "completion": " mat )" + std::to_string(i % 7) +
           "\"}\n";
  }
  return out;
}

struct ModelsPlatform : LicensedPlatform {
  using LicensedPlatform::LicensedPlatform;
  // Licenses `tenant` for `features` with models up to `max_model_params` parameters.
  void license_models(const std::string& tenant, std::vector<std::string> features,
                      int64_t max_model_params = 1'000'000) {
    licensing::Limits limits;
    limits.seats = 1;
    limits.max_model_params = max_model_params;
    limits.max_gpus = 4;
    limits.max_deployments = 2;
    limits.gpu_hours_per_month = 10;
    relicense(tenant, std::move(features), limits);
  }
  // Uploads each file with purpose "model" and returns {"config.json": "file-…", ...}.
  boost::json::object upload_model(const std::string& tenant,
                                   const std::map<std::string, std::string>& files,
                                   const std::string& purpose = "model") {
    boost::json::object ids;
    for (const auto& [name, bytes] : files) {
      RawResponse r = upload(tenant, purpose, name, bytes);
      REQUIRE_MESSAGE(r.status == 200, r.body);
      ids[name] = boost::json::parse(r.body).at("id").as_string();
    }
    return ids;
  }
  RawResponse register_model(const std::string& tenant, const std::string& name,
                             const boost::json::object& files) {
    return as(tenant, "POST", "/v1/models",
              boost::json::serialize(boost::json::object{{"name", name}, {"files", files}}));
  }
};

}  // namespace mh::test
