// LoRA adapters on every family: gradients against finite differences (with dropout too), a
// frozen base, PEFT's files written and read back, and what is refused.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "platform/engine/files.h"
#include "platform/engine/model.h"
#include "platform/engine/safetensors.h"
#include "tests/engine/gradcheck.h"
#include "tests/engine/tiny_models.h"
#include "tests/support/harness.h"

namespace mh::engine {
namespace {

const std::vector<int32_t> kIds = {1, 5, 9, 2, 3, 10, 0, 4, 4, 7};
const std::vector<int32_t> kTargets = {5, 9, 2, -1, 6, 0, 4, 4, 7, 1};

std::vector<float> base_weights(const Model& m) { return values_of(m.parameters()); }

TEST_CASE("LoRA's gradients match finite differences on every family, with dropout too") {
  auto cpu = make_cpu_backend(2);
  for (const char* json : kEveryFamily) {
    for (const float dropout : {0.0f, 0.25f}) {
      CAPTURE(json);
      CAPTURE(dropout);
      LoraConfig lora;
      lora.rank = 2;
      lora.alpha = 4;
      lora.dropout = dropout;
      auto m = adapted(*cpu, json, lora);
      m->set_lora_dropout(true);
      const int64_t linear_layers = m->config().family == Family::kGpt2 ? 4 : 7;
      CHECK(m->trainable().size() == static_cast<size_t>(2 * linear_layers * 2));
      // Every pass draws the same masks: the draws counter is reset before each.
      auto loss = [&] {
        m->set_lora_draws(m->lora_seed(), 0);
        return static_cast<double>(m->forward(kIds, 2, 5, kTargets));
      };
      m->zero_grad();
      loss();
      m->backward();
      for (const auto& p : m->parameters()) CHECK(p.grad.numel() == 0);  // the base is frozen
      std::vector<Tensor> analytic;
      for (const auto& p : m->trainable()) analytic.push_back(p.grad);
      for (size_t i = 0; i < analytic.size(); ++i) {
        auto& p = m->trainable()[i];
        check_gradient(p.name.c_str(), p.value, analytic[i], loss, 1e-3f);
      }
    }
  }
}

TEST_CASE("a new adapter changes no output, and adapters are named and shaped as PEFT names them") {
  auto cpu = make_cpu_backend(2);
  for (const char* json : {kTinyGpt2, kTinyLlama}) {
    auto m = Model::create(config_of(json), *cpu, 5);
    REQUIRE(m.ok());
    (*m)->forward(kIds, 2, 5, {});
    const Tensor before = (*m)->logits();
    const auto weights = base_weights(**m);
    LoraConfig lora;
    lora.rank = 4;
    const bool gpt2 = (*m)->config().family == Family::kGpt2;
    lora.target_modules = gpt2 ? std::vector<std::string>{"c_attn"}
                               : std::vector<std::string>{"q_proj", "v_proj"};
    REQUIRE((*m)->add_lora(lora, 1).ok());
    (*m)->forward(kIds, 2, 5, {});
    CHECK((*m)->logits().values() == before.values());
    CHECK(base_weights(**m) == weights);
    const auto& t = (*m)->trainable();
    if (gpt2) {
      REQUIRE(t.size() == 4);
      CHECK(t[0].name == "transformer.h.0.attn.c_attn.lora_A.weight");
      CHECK(t[0].shape == Shape{4, 8});
      CHECK(t[1].shape == Shape{24, 4});  // c_attn: 8 -> 3 * 8
    } else {
      REQUIRE(t.size() == 8);
      CHECK(t[0].name == "model.layers.0.self_attn.q_proj.lora_A.weight");
      CHECK(t[2].name == "model.layers.0.self_attn.v_proj.lora_A.weight");
      CHECK(t[3].shape == Shape{4, 4});  // v_proj: 8 -> 2 kv heads of 2
    }
    for (const auto& p : t) {
      if (p.name.ends_with("lora_B.weight")) {
        for (float v : p.value.values()) CHECK(v == 0.0f);
      }
    }
    CHECK((*m)->add_lora(lora, 1).code() == Code::kFailedPrecondition);
  }
}

TEST_CASE("bad LoRA settings are refused by name and change nothing") {
  auto cpu = make_cpu_backend(1);
  auto m = Model::create(config_of(kTinyLlama), *cpu, 5);
  REQUIRE(m.ok());
  struct Bad {
    LoraConfig lora;
    const char* param;
  };
  LoraConfig base;
  std::vector<Bad> bad;
  for (int64_t rank : {int64_t{0}, int64_t{5000}}) {
    bad.push_back({base, "rank"});
    bad.back().lora.rank = rank;
  }
  bad.push_back({base, "alpha"});
  bad.back().lora.alpha = 0;
  bad.push_back({base, "dropout"});
  bad.back().lora.dropout = 1;
  bad.push_back({base, "target_modules"});
  bad.back().lora.target_modules = {"c_attn"};  // a GPT-2 name, on llama
  bad.push_back({base, "target_modules"});
  bad.back().lora.target_modules = {};
  bad.push_back({base, "target_modules"});
  bad.back().lora.target_modules = {"proj"};  // matches no whole name
  for (const Bad& b : bad) {
    const Status s = (*m)->add_lora(b.lora, 1);
    CHECK(s.param() == b.param);
    CHECK((*m)->lora() == nullptr);
    CHECK((*m)->trainable().size() == (*m)->parameters().size());
  }
}

TEST_CASE("an adapter saved in PEFT's files loads onto the base and gives the same logits") {
  auto cpu = make_cpu_backend(2);
  test::TempDir dir;
  for (const char* json : kEveryFamily) {
    CAPTURE(json);
    LoraConfig lora;
    lora.rank = 3;
    lora.alpha = 5;
    auto m = adapted(*cpu, json, lora);
    m->forward(kIds, 2, 5, {});
    const Tensor expected = m->logits();
    REQUIRE(m->save(dir.path() / "base").ok());  // the base alone: no adapter in it
    REQUIRE(m->save_lora(dir.path() / "adapter", "tiny").ok());

    auto st = Safetensors::open(dir.path() / "adapter" / "adapter_model.safetensors");
    REQUIRE(st.ok());
    CHECK(st->tensors().size() == m->trainable().size());
    CHECK(st->find("base_model.model." + m->trainable()[0].name) != nullptr);
    auto cfg = read_json_file(dir.path() / "adapter" / "adapter_config.json");
    REQUIRE(cfg.ok());
    CHECK(cfg->find("peft_type")->as_string() == "LORA");
    CHECK(cfg->find("r")->as_int() == 3);
    CHECK(cfg->find("base_model_name_or_path")->as_string() == "tiny");

    auto fresh = Model::load(dir.path() / "base", *cpu);
    REQUIRE(fresh.ok());
    REQUIRE_MESSAGE((*fresh)->load_lora(dir.path() / "adapter").ok(), json);
    (*fresh)->forward(kIds, 2, 5, {});
    CHECK((*fresh)->logits().values() == expected.values());
    // Into a model with adapters of its own (a checkpoint resumed): the same config only.
    CHECK((*fresh)->load_lora(dir.path() / "adapter").ok());
  }
}

TEST_CASE("a merged export equals base + (alpha / rank) BA, and gives the adapted logits") {
  auto cpu = make_cpu_backend(2);
  for (const char* json : {kTinyGpt2, kTinyLlama, kTinyQwen2}) {
    CAPTURE(json);
    LoraConfig lora;
    lora.rank = 3;
    lora.alpha = 6;
    auto m = adapted(*cpu, json, lora);
    m->forward(kIds, 2, 5, {});
    const Tensor expected = m->logits();
    // The first adapted layer, by hand in double: W + s B A (W stored [in, out] for Conv1D).
    const Parameter& a = m->trainable()[0];
    const Parameter& b = m->trainable()[1];
    const std::string weight = a.name.substr(0, a.name.size() - 14) + ".weight";  // less lora_A
    const Tensor w = m->find(weight)->value;
    const bool conv1d = m->config().family == Family::kGpt2;
    const int64_t out = b.shape[0], in = a.shape[1], r = lora.rank;
    std::vector<double> want(static_cast<size_t>(out * in));
    for (int64_t o = 0; o < out; ++o) {
      for (int64_t i = 0; i < in; ++i) {
        double ba = 0;
        for (int64_t k = 0; k < r; ++k) ba += double(b.value[o * r + k]) * a.value[k * in + i];
        const int64_t at = conv1d ? i * out + o : o * in + i;
        want[static_cast<size_t>(o * in + i)] = w[at] + 2.0 * ba;
      }
    }
    REQUIRE(m->merge_lora().ok());
    CHECK(m->lora() == nullptr);
    CHECK(m->trainable().size() == m->parameters().size());
    const Tensor& merged = m->find(weight)->value;
    for (int64_t o = 0; o < out; ++o) {
      for (int64_t i = 0; i < in; ++i) {
        const int64_t at = conv1d ? i * out + o : o * in + i;
        CHECK(merged[at] == doctest::Approx(want[static_cast<size_t>(o * in + i)]).epsilon(1e-5));
      }
    }
    m->forward(kIds, 2, 5, {});
    const Tensor got = m->logits();
    for (int64_t j = 0; j < got.numel(); ++j) {
      CHECK(got[j] == doctest::Approx(expected[j]).epsilon(1e-4));
    }
    CHECK(m->merge_lora().code() == Code::kFailedPrecondition);  // nothing left to merge
  }
}

TEST_CASE("an adapter_config.json or weights file that does not fit is refused, changing nothing") {
  auto cpu = make_cpu_backend(1);
  test::TempDir dir;
  LoraConfig lora;
  lora.rank = 2;
  lora.target_modules = {"q_proj", "v_proj"};
  auto m = adapted(*cpu, kTinyLlama, lora);
  REQUIRE(m->save_lora(dir.path()).ok());
  const std::string good = test::read_file(dir.path() / "adapter_config.json");
  CHECK(good.find(R"("target_modules":["q_proj","v_proj"])") != std::string::npos);
  struct Bad {
    std::string from, to, error;
  };
  for (const Bad& b : {
           Bad{R"("use_dora":false)", R"("use_dora":true)", "\"use_dora\" is set"},
           Bad{R"("use_rslora":false)", R"("use_rslora":true)", "\"use_rslora\" is set"},
           Bad{R"("modules_to_save":null)", R"("modules_to_save":["lm_head"])",
               "\"modules_to_save\" is set"},
           Bad{R"("bias":"none")", R"("bias":"all")", "\"bias\" is not \"none\""},
           Bad{R"("peft_type":"LORA")", R"("peft_type":"IA3")", "\"peft_type\" is not \"LORA\""},
           Bad{R"("r":2)", R"("r":4)", "is not this model's"},
           Bad{R"("r":2)", R"("r":0)", "\"rank\" is out of range"},
           Bad{R"("target_modules":["q_proj","v_proj"])", R"("target_modules":".*proj")",
               "regular expression is not supported"},
           Bad{R"("target_modules":["q_proj","v_proj"])", R"("target_modules":["q_proj","x"])",
               "\"x\" names no linear layer"},
           Bad{R"("bias":"none")", R"("bias":"none","rank_pattern":{"q_proj":4})",
               "\"rank_pattern\" is set"},
       }) {
    CAPTURE(b.to);
    std::string text = good;
    REQUIRE(text.find(b.from) != std::string::npos);
    text.replace(text.find(b.from), b.from.size(), b.to);
    REQUIRE(write_file_atomically(dir.path() / "adapter_config.json", text).ok());
    const auto before = m->trainable()[0].value.values();
    const Status s = m->load_lora(dir.path());
    CHECK_MESSAGE(s.message().find(b.error) != std::string::npos, s.message());
    CHECK(m->trainable()[0].value.values() == before);
  }
  REQUIRE(write_file_atomically(dir.path() / "adapter_config.json", good).ok());
  // A weights file missing a tensor, or holding one the config does not target.
  auto other = adapted(*cpu, kTinyLlama, [] {
    LoraConfig l;
    l.rank = 2;
    l.target_modules = {"q_proj"};
    return l;
  }());
  test::TempDir partial;
  REQUIRE(other->save_lora(partial.path()).ok());
  std::filesystem::copy_file(partial.path() / "adapter_model.safetensors",
                             dir.path() / "adapter_model.safetensors",
                             std::filesystem::copy_options::overwrite_existing);
  Status s = m->load_lora(dir.path());
  CHECK_MESSAGE(s.message().find("v_proj.lora_A.weight\" is missing") != std::string::npos,
                s.message());
  REQUIRE(write_file_atomically(partial.path() / "adapter_config.json", good).ok());
  auto everything = adapted(*cpu, kTinyLlama, LoraConfig{});
  REQUIRE(everything->save_lora(dir.path() / "all").ok());
  std::filesystem::copy_file(dir.path() / "all" / "adapter_model.safetensors",
                             partial.path() / "adapter_model.safetensors",
                             std::filesystem::copy_options::overwrite_existing);
  std::ofstream(partial.path() / "adapter_config.json")
      << R"({"peft_type":"LORA","r":8,"lora_alpha":16,"target_modules":["q_proj"]})";
  auto fresh = Model::create(config_of(kTinyLlama), *cpu, 1);
  s = (*fresh)->load_lora(partial.path());
  CHECK_MESSAGE(s.message().find("is not a LoRA A or B of a layer the config targets") !=
                    std::string::npos,
                s.message());
  CHECK((*fresh)->lora() == nullptr);
}

TEST_CASE("adapters served side by side: each sequence decodes as its adapter alone would") {
  auto cpu = make_cpu_backend(2);
  test::TempDir dir;
  // The base in fp32, and held at 16 bits (as a CPU replica holds it), where the adapters are
  // held in bf16 too: the same up to that rounding.
  for (const auto& [json, half] : {std::pair{kTinyGpt2, false}, std::pair{kTinyLlama, false},
                                  std::pair{kTinyLlama3, false}, std::pair{kTinyMistral, false},
                                  std::pair{kTinyQwen2, false}, std::pair{kTinyQwen3, false},
                                  std::pair{kTinyGemma3, false}, std::pair{kTinyLlama, true},
                                  std::pair{kTinyGpt2, true}}) {
    CAPTURE(json);
    CAPTURE(half);
    const double tolerance = half ? 2e-2 : 1e-4;
    const bool gpt2 = std::string_view(json).find("gpt2") != std::string_view::npos;
    // Three adapters of one base: different ranks, scales and layers.
    std::vector<LoraConfig> configs(3);
    configs[0].rank = 2;
    configs[1].rank = 3;
    configs[1].alpha = 9;
    configs[2].rank = 4;
    configs[2].target_modules = {gpt2 ? "c_fc" : "up_proj"};
    for (size_t i = 0; i < configs.size(); ++i) {
      auto m = adapted(*cpu, json, configs[i]);  // the same base each time
      if (i == 0) REQUIRE(m->save(dir.path() / "base").ok());
      REQUIRE(m->save_lora(dir.path() / ("adapter" + std::to_string(i))).ok());
    }
    // Each sequence alone, on a model that loaded its adapter (none for the last).
    const std::vector<std::vector<int32_t>> prompts = {{1, 5, 9}, {2, 3}, {10, 0, 4, 4}, {7}};
    const std::vector<int> adapter_of = {0, 1, -1, 2};
    std::vector<std::vector<float>> alone;
    for (size_t s = 0; s < prompts.size(); ++s) {
      auto m = Model::load(dir.path() / "base", *cpu);
      REQUIRE(m.ok());
      if (half) (*m)->to_half(HalfTensor::Format::kBF16);
      if (adapter_of[s] >= 0) {
        REQUIRE((*m)->load_lora(dir.path() / ("adapter" + std::to_string(adapter_of[s]))).ok());
      }
      KvCache cache = (*m)->new_cache(8);
      std::vector<Model::Step> first = {{&cache, prompts[s]}};
      const Tensor a = (*m)->forward_cached(first);
      std::vector<Model::Step> next = {{&cache, {3}}};
      const Tensor b = (*m)->forward_cached(next);
      std::vector<float> both = a.values();
      both.insert(both.end(), b.values().begin(), b.values().end());
      alone.push_back(std::move(both));
    }
    // All at once on one base that read the adapters, which leaves it as it was.
    auto served = Model::load(dir.path() / "base", *cpu);
    REQUIRE(served.ok());
    if (half) (*served)->to_half(HalfTensor::Format::kBF16);
    const std::vector<float> before = base_weights(**served);
    std::vector<std::shared_ptr<const LoraWeights>> adapters;
    for (size_t i = 0; i < configs.size(); ++i) {
      auto read = (*served)->read_lora(dir.path() / ("adapter" + std::to_string(i)));
      REQUIRE_MESSAGE(read.ok(), read.status().message());
      CHECK((*read)->a_half.empty() == !half);
      CHECK((*read)->a.empty() == half);
      adapters.push_back(*read);
    }
    CHECK((*served)->lora() == nullptr);
    CHECK(base_weights(**served) == before);
    std::vector<KvCache> caches;
    for (size_t s = 0; s < prompts.size(); ++s) caches.push_back((*served)->new_cache(8));
    std::vector<Model::Step> first, next;
    for (size_t s = 0; s < prompts.size(); ++s) {
      const LoraWeights* adapter = adapter_of[s] >= 0 ? adapters[adapter_of[s]].get() : nullptr;
      first.push_back({&caches[s], prompts[s], adapter});
      next.push_back({&caches[s], {3}, adapter});
    }
    const Tensor a = (*served)->forward_cached(first);
    const Tensor b = (*served)->forward_cached(next);
    const int64_t vocab = (*served)->config().vocab_size;
    for (size_t s = 0; s < prompts.size(); ++s) {
      CAPTURE(s);
      for (int64_t v = 0; v < vocab; ++v) {
        CHECK(a[static_cast<int64_t>(s) * vocab + v] ==
              doctest::Approx(alone[s][v]).epsilon(tolerance));
        CHECK(b[static_cast<int64_t>(s) * vocab + v] ==
              doctest::Approx(alone[s][vocab + v]).epsilon(tolerance));
      }
    }
    // The adapters differ, so their sequences' logits do as well.
    CHECK(alone[0] != alone[2]);
  }
}

TEST_CASE("the grouped LoRA product: the CPU pass and the default's gathered gemms agree") {
  auto cpu = make_cpu_backend(2);
  std::mt19937 rng(4);
  const Tensor x = random_tensor({5, 12}, rng);
  const Tensor a1 = random_tensor({3, 12}, rng), bt1 = random_tensor({3, 7}, rng);
  const Tensor a2 = random_tensor({2, 12}, rng), bt2 = random_tensor({2, 7}, rng);
  const HalfTensor a2h = HalfTensor::of(a2, HalfTensor::Format::kBF16);
  const HalfTensor bt2h = HalfTensor::of(bt2, HalfTensor::Format::kBF16);
  // Rows 0-1 and 4 through adapter 1 (fp32), row 3 through adapter 2 (bf16), row 2 through none.
  std::vector<Backend::LoraSlice> slices(3);
  slices[0] = {0, 2, 0.5f, &a1, &bt1, nullptr, nullptr};
  slices[1] = {4, 5, 0.5f, &a1, &bt1, nullptr, nullptr};
  slices[2] = {3, 4, 2.0f, nullptr, nullptr, &a2h, &bt2h};
  const Tensor start = random_tensor({5, 7}, rng);
  Tensor by_rows = start, gathered = start;
  cpu->lora_rows(x, slices, by_rows);
  cpu->Backend::lora_rows(x, slices, gathered);
  // And by hand, in double: y[i] += scale · Σ_r (x[i] · A[r]) Bᵀ[r].
  auto expect = [&](int64_t i, const Tensor& a, const Tensor& bt, double scale, int64_t j) {
    double sum = start[i * 7 + j];
    for (int64_t r = 0; r < a.dim(0); ++r) {
      double u = 0;
      for (int64_t k = 0; k < 12; ++k) u += static_cast<double>(x[i * 12 + k]) * a[r * 12 + k];
      sum += scale * u * bt[r * 7 + j];
    }
    return sum;
  };
  const Tensor a2r = a2h.to_float(), bt2r = bt2h.to_float();
  for (int64_t i = 0; i < 5; ++i) {
    for (int64_t j = 0; j < 7; ++j) {
      CAPTURE(i);
      const double want = i == 2   ? start[i * 7 + j]
                          : i == 3 ? expect(i, a2r, bt2r, 2.0, j)
                                   : expect(i, a1, bt1, 0.5, j);
      CHECK(by_rows[i * 7 + j] == doctest::Approx(want).epsilon(1e-5));
      CHECK(gathered[i * 7 + j] == doctest::Approx(want).epsilon(1e-5));
    }
  }
}

TEST_CASE("an adapter is checked against a base's config alone, as loading would check it") {
  auto cpu = make_cpu_backend(1);
  test::TempDir dir;
  for (const char* json : kEveryFamily) {
    CAPTURE(json);
    LoraConfig lora;
    lora.rank = 2;
    auto m = adapted(*cpu, json, lora);
    REQUIRE(m->save_lora(dir.path()).ok());
    auto checked = check_lora(dir.path(), m->config());
    REQUIRE_MESSAGE(checked.ok(), checked.status().message());
    CHECK(checked->rank == 2);
    // A base of another width: A's shapes do not fit.
    ModelConfig wider = m->config();
    wider.hidden *= 2;
    wider.head_dim *= 2;
    const Status s = check_lora(dir.path(), wider).status();
    CHECK_MESSAGE(s.message().find("adapter_model.safetensors") != std::string::npos,
                  s.message());
    // The targets a family has, before any model is read.
    const Family family = m->config().family;
    for (std::string_view module : lora_modules(family)) {
      LoraConfig one;
      one.target_modules = {std::string(module)};
      CHECK(one.check_targets(family).ok());
      auto fresh = Model::create(m->config(), *cpu, 1);
      REQUIRE(fresh.ok());
      CHECK_MESSAGE((*fresh)->add_lora(one, 1).ok(), module);  // and it names real layers
    }
  }
  LoraConfig wrong;
  wrong.target_modules = {"self_attn.q_proj", "c_attn"};
  const Status s = wrong.check_targets(Family::kLlama);
  CHECK(s.param() == "target_modules");
  CHECK_MESSAGE(s.message().find("\"c_attn\" names no linear layer of a llama model") !=
                    std::string::npos,
                s.message());
  wrong.target_modules = {"all-linear"};
  CHECK(wrong.check_targets(Family::kGpt2).ok());
}

TEST_CASE("an adapter read by one model is refused by a model of another shape") {
  auto cpu = make_cpu_backend(1);
  test::TempDir dir;
  LoraConfig lora;
  auto m = adapted(*cpu, kTinyLlama, lora);
  REQUIRE(m->save_lora(dir.path()).ok());
  auto other = Model::create(config_of(kTinyGpt2), *cpu, 1);
  REQUIRE(other.ok());
  auto read = (*other)->read_lora(dir.path());
  CHECK_FALSE(read.ok());
  auto adapter = m->read_lora(dir.path());
  REQUIRE(adapter.ok());
  KvCache cache = (*other)->new_cache(4);
  std::vector<Model::Step> steps = {{&cache, {1}, adapter->get()}};
  CHECK_THROWS_AS((*other)->forward_cached(steps), ShapeError);
}

}  // namespace
}  // namespace mh::engine
