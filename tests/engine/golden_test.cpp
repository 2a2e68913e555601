// Golden tests: the engine's logits and token ids for fixed inputs against values computed by a
// reference implementation (tests/engine/golden/make_golden.py, which says how they were made).
#include <doctest/doctest.h>

#include <cmath>

#include "platform/engine/json.h"
#include "platform/engine/model.h"
#include "tests/support/harness.h"

namespace mh::engine {
namespace {

std::filesystem::path golden_dir() { return test::source_dir() / "tests/engine/golden"; }

void check_golden_logits(const char* family) {
  CAPTURE(family);
  auto cpu = make_cpu_backend(2);
  auto model = Model::load(golden_dir() / family, *cpu);
  REQUIRE_MESSAGE(model.ok(), model.status().to_string());
  auto golden = read_json_file(golden_dir() / family / "golden.json");
  REQUIRE(golden.ok());
  std::vector<int32_t> ids;
  int64_t batch = 0, seq = 0;
  for (const Json& row : golden->find("ids")->as_array()) {
    ++batch;
    seq = static_cast<int64_t>(row.as_array().size());
    for (const Json& id : row.as_array()) ids.push_back(static_cast<int32_t>(id.as_int()));
  }
  (*model)->forward(ids, batch, seq, {});
  const Tensor logits = (*model)->logits();
  const JsonArray& expected = golden->find("logits")->as_array();
  REQUIRE(static_cast<int64_t>(expected.size()) == logits.numel());
  // fp32 against fp32 computed in another order: differences relative to the logits' scale.
  double scale = 0, worst = 0;
  for (const Json& e : expected) scale = std::max(scale, std::fabs(e.as_double()));
  for (int64_t i = 0; i < logits.numel(); ++i) {
    worst = std::max(worst, std::fabs(logits[i] - expected[static_cast<size_t>(i)].as_double()));
  }
  MESSAGE(std::string(family) << ": largest logit " << scale << ", largest difference " << worst);
  CHECK(worst <= 1e-5 * scale);
}

// The greedy continuation of the golden prompt through the KV cache, token by token.
void check_golden_greedy(const char* family) {
  CAPTURE(family);
  auto cpu = make_cpu_backend(2);
  auto model = Model::load(golden_dir() / family, *cpu);
  REQUIRE_MESSAGE(model.ok(), model.status().to_string());
  auto golden = read_json_file(golden_dir() / family / "golden.json");
  REQUIRE(golden.ok());
  std::vector<int32_t> tokens;
  for (const Json& id : golden->find("prompt")->as_array()) {
    tokens.push_back(static_cast<int32_t>(id.as_int()));
  }
  std::vector<int64_t> expected, got;
  for (const Json& id : golden->find("greedy")->as_array()) expected.push_back(id.as_int());
  KvCache cache = (*model)->new_cache(16);
  for (size_t i = 0; i < expected.size(); ++i) {
    std::vector<Model::Step> steps{{&cache, tokens}};
    const Tensor logits = (*model)->forward_cached(steps);
    const auto best = std::max_element(logits.data(), logits.data() + logits.numel());
    got.push_back(best - logits.data());
    tokens = {static_cast<int32_t>(got.back())};
  }
  CHECK(got == expected);
}

TEST_CASE("gpt2 logits match the reference implementation") { check_golden_logits("gpt2"); }
TEST_CASE("llama logits match the reference implementation") { check_golden_logits("llama"); }

// The families built on llama, each with its distinguishing features switched on (see
// make_golden.py's FAMILIES): logits of a batch, then a greedy continuation through the cache.
TEST_CASE("each llama-derived family matches its float64 reference") {
  for (const char* family :
       {"llama3", "llama-linear", "llama-dynamic", "mistral", "qwen2", "qwen3", "gemma3"}) {
    SUBCASE(family) {
      check_golden_logits(family);
      check_golden_greedy(family);
    }
  }
}

}  // namespace
}  // namespace mh::engine
