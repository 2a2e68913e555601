// Both model families: config.json parsing and its errors, a whole-model gradient check, the
// cached (inference) forward against the training forward, and safetensors round trips with
// Hugging Face names.
#include <doctest/doctest.h>

#include <filesystem>
#include <random>

#include "platform/engine/files.h"
#include "platform/engine/model.h"
#include "platform/engine/safetensors.h"
#include "platform/engine/tokenizer.h"
#include "tests/engine/gradcheck.h"
#include "tests/engine/tiny_models.h"
#include "tests/support/harness.h"

namespace mh::engine {
namespace {

TEST_CASE("config.json: both families parse, and bad configs are refused naming the field") {
  const ModelConfig g = config_of(kTinyGpt2);
  CHECK(g.family == Family::kGpt2);
  CHECK(g.head_dim == 4);
  CHECK(g.kv_heads == 2);
  CHECK(g.tie_embeddings);
  const ModelConfig l = config_of(kTinyLlama);
  CHECK(l.family == Family::kLlama);
  CHECK(l.kv_heads == 2);
  CHECK(l.head_dim == 2);
  CHECK_FALSE(l.tie_embeddings);
  // GPT-2 124M's published parameter count.
  const ModelConfig gpt2_124m = config_of(
      R"({"model_type":"gpt2","vocab_size":50257,"n_embd":768,"n_layer":12,"n_head":12,
          "n_positions":1024})");
  CHECK(gpt2_124m.parameter_count() == 124439808);
  CHECK(gpt2_124m.ffn == 3072);

  struct Bad {
    const char* json;
    const char* message;
  };
  for (const Bad& b : {
           Bad{"[1]", "must be a JSON object"},
           Bad{"{\"model_type\":\"bert\"}", "\"model_type\" is \"bert\""},
           Bad{"{\"n_embd\":8}", "\"model_type\" is missing"},
           Bad{R"({"model_type":"gpt2","vocab_size":11,"n_layer":2,"n_head":2,"n_positions":8})",
               "\"n_embd\" is missing"},
           Bad{R"({"model_type":"gpt2","vocab_size":11,"n_embd":8,"n_layer":2,"n_head":3,
                "n_positions":8})",
               "\"n_head\" must divide n_embd"},
           Bad{R"({"model_type":"gpt2","vocab_size":-1,"n_embd":8,"n_layer":2,"n_head":2,
                "n_positions":8})",
               "\"vocab_size\" must be an integer"},
           Bad{R"({"model_type":"gpt2","vocab_size":11,"n_embd":8.5,"n_layer":2,"n_head":2,
                "n_positions":8})",
               "\"n_embd\" must be an integer"},
           Bad{R"({"model_type":"gpt2","vocab_size":11,"n_embd":8,"n_layer":2,"n_head":2,
                "n_positions":8,"activation_function":"relu"})",
               "\"activation_function\" is \"relu\""},
           Bad{R"({"model_type":"llama","vocab_size":11,"hidden_size":8,"intermediate_size":8,
                "num_hidden_layers":1,"num_attention_heads":4,"num_key_value_heads":3,
                "max_position_embeddings":8})",
               "\"num_key_value_heads\" must divide"},
           Bad{R"({"model_type":"llama","vocab_size":11,"hidden_size":8,"intermediate_size":8,
                "num_hidden_layers":1,"num_attention_heads":2,"max_position_embeddings":8,
                "rope_scaling":{"type":"longrope","factor":2.0}})",
               "\"rope_scaling\" has rope_type \"longrope\"; this engine implements default"},
           Bad{R"({"model_type":"llama","vocab_size":11,"hidden_size":8,"intermediate_size":8,
                "num_hidden_layers":1,"num_attention_heads":2,"max_position_embeddings":8,
                "rope_scaling":{"rope_type":"linear","factor":2.0,"low_freq_factor":1}})",
               "\"rope_scaling.low_freq_factor\" is not read by rope_type \"linear\""},
           Bad{R"({"model_type":"llama","vocab_size":11,"hidden_size":8,"intermediate_size":8,
                "num_hidden_layers":1,"num_attention_heads":2,"max_position_embeddings":8,
                "rope_scaling":{"rope_type":"llama3","factor":8.0}})",
               "\"rope_scaling.original_max_position_embeddings\" is missing"},
           Bad{R"({"model_type":"llama","vocab_size":11,"hidden_size":8,"intermediate_size":8,
                "num_hidden_layers":1,"num_attention_heads":2,"max_position_embeddings":8,
                "rope_scaling":{"rope_type":"yarn","factor":0.5}})",
               "\"rope_scaling.factor\" must be a number in [1, 1024]"},
           Bad{R"({"model_type":"qwen3","vocab_size":11,"hidden_size":8,"intermediate_size":8,
                "num_hidden_layers":2,"num_attention_heads":2,"max_position_embeddings":8,
                "layer_types":["full_attention","chunked_attention"]})",
               "\"layer_types\" may hold"},
           Bad{R"({"model_type":"mistral","vocab_size":11,"hidden_size":8,"intermediate_size":8,
                "num_hidden_layers":1,"num_attention_heads":2,"max_position_embeddings":8,
                "sliding_window":0})",
               "\"sliding_window\" must be a positive integer or null"},
           Bad{R"({"model_type":"gemma3_text","vocab_size":11,"hidden_size":8,
                "intermediate_size":8,"num_hidden_layers":2,"num_attention_heads":2,
                "max_position_embeddings":8,"hidden_activation":"gelu"})",
               "\"hidden_activation\" is \"gelu\""},
           Bad{R"({"model_type":"llama","vocab_size":11,"hidden_size":8,"intermediate_size":8,
                "num_hidden_layers":1,"num_attention_heads":2,"max_position_embeddings":8,
                "partial_rotary_factor":0.5})",
               "\"partial_rotary_factor\" is not 1"},
           Bad{R"({"model_type":"llama","vocab_size":11,"hidden_size":8,"intermediate_size":8,
                "num_hidden_layers":1,"num_attention_heads":2,"max_position_embeddings":8,
                "mlp_bias":true})",
               "\"mlp_bias\" is true"},
           Bad{R"({"model_type":"llama","vocab_size":11,"hidden_size":8,"intermediate_size":8,
                "num_hidden_layers":1,"num_attention_heads":2,"max_position_embeddings":8,
                "eos_token_id":11})",
               "\"eos_token_id\" must be a token id"},
           Bad{R"({"model_type":"gpt2","vocab_size":4000000,"n_embd":1000000,"n_layer":1000,
                "n_head":1,"n_positions":8})",
               "parameters, more than"},
           Bad{"{\"model_type\":\"gpt2\",", "config.json: "},
           Bad{R"({"model_type":"llama","vocab_size":11,"hidden_size":8,"intermediate_size":8,
                "num_hidden_layers":1,"num_attention_heads":2,"max_position_embeddings":8,
                "rms_norm_eps":1e-86})",
               "\"rms_norm_eps\" must be a positive number"},
       }) {
    CAPTURE(b.json);
    auto c = parse_model_config(b.json);
    REQUIRE_FALSE(c.ok());
    CHECK(c.status().code() == Code::kInvalidArgument);
    CHECK_MESSAGE(c.status().message().find(b.message) != std::string::npos, c.status().message());
  }
}

// The loss of a whole model as a function of every parameter, against finite differences.
void check_model_gradient(const ModelConfig& config) {
  auto cpu = make_cpu_backend(2);
  auto model = Model::create(config, *cpu, 7);
  REQUIRE(model.ok());
  Model& m = **model;
  // Larger weights than the initialisation's, so every path carries a visible gradient.
  std::mt19937 rng(3);
  for (auto& p : m.parameters()) {
    if (p.value.rank() == 2) p.value = random_tensor(p.value.shape(), rng, 0.3f);
  }
  const std::vector<int32_t> ids = {1, 5, 9, 2, 3, 10, 0, 4, 4, 7};
  const std::vector<int32_t> targets = {5, 9, 2, -1, 6, 0, 4, 4, 7, 1};
  m.zero_grad();
  m.forward(ids, 2, 5, targets);
  m.backward();
  // forward() with targets adds the classifier's gradient: keep the analytic ones first.
  std::vector<Tensor> analytic;
  for (const auto& p : m.parameters()) analytic.push_back(p.grad);
  auto loss = [&] { return static_cast<double>(m.forward(ids, 2, 5, targets)); };
  for (size_t i = 0; i < analytic.size(); ++i) {
    auto& p = m.parameters()[i];
    check_gradient(p.name.c_str(), p.value, analytic[i], loss, 1e-3f);
  }
}

TEST_CASE("config.json: a list of EOS ids (Llama 3.1's) is read whole and written back") {
  auto c = parse_model_config(
      R"({"model_type":"llama","vocab_size":11,"hidden_size":8,"intermediate_size":8,
          "num_hidden_layers":1,"num_attention_heads":2,"max_position_embeddings":8,
          "bos_token_id":1,"eos_token_id":[2,9,10]})");
  REQUIRE_MESSAGE(c.ok(), c.status().to_string());
  CHECK(c->eos_token_ids == std::vector<int64_t>{2, 9, 10});
  CHECK(c->eos_token_id == 2);
  auto again = parse_model_config(model_config_json(*c));
  REQUIRE(again.ok());
  CHECK(again->eos_token_ids == c->eos_token_ids);
  CHECK(model_config_json(*c).find("\"eos_token_id\":[2,9,10]") != std::string::npos);
  CHECK_FALSE(parse_model_config(
                  R"({"model_type":"llama","vocab_size":11,"hidden_size":8,"intermediate_size":8,
                      "num_hidden_layers":1,"num_attention_heads":2,"max_position_embeddings":8,
                      "eos_token_id":[2,11]})")
                  .ok());
}

TEST_CASE("each family's config reads what sets it apart, and writes it back the same") {
  const ModelConfig mistral = config_of(kTinyMistral);
  CHECK(mistral.sliding_window == 3);
  CHECK(mistral.sliding(0));
  CHECK(mistral.sliding(1));
  const ModelConfig qwen2 = config_of(kTinyQwen2);
  CHECK(qwen2.qkv_bias);
  CHECK_FALSE(qwen2.o_bias);
  CHECK_FALSE(qwen2.sliding(0));  // below max_window_layers
  CHECK(qwen2.sliding(1));
  CHECK(qwen2.rope_scaling.type == RopeScaling::Type::kYarn);
  const ModelConfig qwen3 = config_of(kTinyQwen3);
  CHECK(qwen3.qk_norm);
  CHECK(qwen3.head_dim == 6);
  CHECK(qwen3.sliding_window == 0);
  const ModelConfig gemma = config_of(kTinyGemma3);
  CHECK(gemma.tie_embeddings);  // Gemma's default
  CHECK(gemma.activation == Activation::kGeluTanh);
  CHECK(gemma.norm_offset == 1.0f);
  CHECK(gemma.embedding_scale == doctest::Approx(std::sqrt(8.0)));
  CHECK(gemma.query_pre_attn_scalar == 6.0f);
  CHECK(attention_shape(gemma, 0).scale == doctest::Approx(1 / std::sqrt(6.0)));
  CHECK(gemma.sliding(0));
  CHECK_FALSE(gemma.sliding(1));  // every second layer is global
  CHECK(gemma.attn_softcap == 2.0f);
  CHECK(gemma.final_softcap == 3.0f);
  // Gemma's global layers take the scaled RoPE, its sliding ones the local base unscaled.
  const Backend::Rope local = rope_for(gemma, 0, 8), global = rope_for(gemma, 1, 8);
  CHECK(local.inv_freq[1] == doctest::Approx(std::pow(100.0, -0.5)));
  CHECK(global.inv_freq[1] == doctest::Approx(std::pow(1e6, -0.5) / 2));  // Gemma's default base
  // Llama 3.1's scaling keeps the fast frequencies and slows the slow ones by the factor.
  // (wavelengths under original / high_freq_factor = 8 kept, over original = 32 slowed.)
  const ModelConfig llama3 = config_of(
      R"({"model_type":"llama","vocab_size":11,"hidden_size":8,"intermediate_size":8,
          "num_hidden_layers":1,"num_attention_heads":2,"head_dim":6,"max_position_embeddings":64,
          "rope_scaling":{"rope_type":"llama3","factor":8.0,"low_freq_factor":1.0,
          "high_freq_factor":4.0,"original_max_position_embeddings":32}})");
  const Backend::Rope scaled = rope_for(llama3, 0, 8);
  CHECK(scaled.inv_freq[0] == 1.0f);
  CHECK(scaled.inv_freq[2] == doctest::Approx(std::pow(10000.0, -4.0 / 6) / 8));
  for (const char* json : kEveryFamily) {
    CAPTURE(json);
    const ModelConfig c = config_of(json);
    const std::string written = model_config_json(c);
    const ModelConfig again = config_of(written.c_str());
    CHECK(model_config_json(again) == written);
    CHECK(again.parameter_count() == c.parameter_count());
    CHECK(again.sliding_layers == c.sliding_layers);
    CHECK(again.rope_scaling.type == c.rope_scaling.type);
  }
}

// transformers 5 saves RoPE's settings as "rope_parameters" (one object, or one per kind of
// layer), in the shapes below; each reads as the older keys it replaces read.
TEST_CASE("transformers 5's rope_parameters read as rope_theta and rope_scaling, or are refused") {
  const std::string llama = R"({"model_type":"llama","vocab_size":11,"hidden_size":8,
      "intermediate_size":8,"num_hidden_layers":1,"num_attention_heads":2,"head_dim":6,
      "max_position_embeddings":64,)";
  const std::string gemma = R"({"model_type":"gemma3_text","vocab_size":11,"hidden_size":8,
      "intermediate_size":12,"num_hidden_layers":2,"num_attention_heads":2,"num_key_value_heads":1,
      "head_dim":4,"max_position_embeddings":16,"query_pre_attn_scalar":6,"sliding_window":3,
      "sliding_window_pattern":2,)";
  const std::string llama3 = R"("rope_type":"llama3","factor":8.0,"low_freq_factor":1.0,
      "high_freq_factor":4.0,"original_max_position_embeddings":32)";
  struct Same {
    std::string v5, older;
  };
  for (const Same& same : {
           Same{llama + R"("rope_parameters":{"rope_theta":500000.0,"rope_type":"default"}})",
                llama + R"("rope_theta":500000.0})"},
           Same{llama + R"("rope_parameters":{"rope_theta":500000.0}})",
                llama + R"("rope_theta":500000.0,"rope_scaling":null})"},
           Same{llama + R"("rope_parameters":{"rope_theta":500000.0,)" + llama3 + "}}",
                llama + R"("rope_theta":500000.0,"rope_scaling":{)" + llama3 + "}}"},
           // Both forms, agreeing (as a config carried over from transformers 4 may be).
           Same{llama + R"("rope_theta":500000.0,"rope_parameters":{"rope_theta":500000.0}})",
                llama + R"("rope_theta":500000.0})"},
           Same{gemma + R"("rope_parameters":{
                  "full_attention":{"rope_type":"linear","factor":8.0,"rope_theta":1000000.0},
                  "sliding_attention":{"rope_type":"default","rope_theta":10000.0}}})",
                gemma + R"("rope_theta":1000000.0,"rope_local_base_freq":10000.0,
                  "rope_scaling":{"rope_type":"linear","factor":8.0}})"},
           Same{llama + R"("rope_parameters":{"full_attention":{"rope_theta":20000.0},
                  "sliding_attention":{"rope_theta":20000.0}}})",
                llama + R"("rope_theta":20000.0})"}}) {
    CAPTURE(same.v5);
    const ModelConfig v5 = config_of(same.v5.c_str()), older = config_of(same.older.c_str());
    CHECK(v5.rope_theta == older.rope_theta);
    CHECK(v5.rope_scaling == older.rope_scaling);
    CHECK(v5.rope_local_theta == older.rope_local_theta);
    CHECK(model_config_json(v5) == model_config_json(older));
    for (int64_t layer = 0; layer < v5.layers; ++layer) {
      CHECK(rope_for(v5, layer, 8).inv_freq == rope_for(older, layer, 8).inv_freq);
    }
  }
  struct Bad {
    std::string json, error;
  };
  for (const Bad& bad : {
           Bad{llama + R"("rope_theta":10000.0,"rope_parameters":{"rope_theta":500000.0}})",
               "\"rope_parameters.rope_theta\" disagrees with rope_theta"},
           Bad{llama + R"("rope_scaling":{"rope_type":"linear","factor":2.0},
                  "rope_parameters":{"rope_type":"linear","factor":4.0}})",
               "\"rope_parameters\" disagrees with rope_scaling"},
           Bad{llama + R"("rope_parameters":{"rope_type":"longrope","factor":2.0}})",
               "\"rope_parameters\" has rope_type \"longrope\""},
           Bad{llama + R"("rope_parameters":{"rope_theta":1e6,"partial_rotary_factor":0.25}})",
               "\"rope_parameters.partial_rotary_factor\" is not 1"},
           Bad{llama + R"("rope_parameters":{"rope_theta":1e6,"mrope_section":[2,1,1]}})",
               "\"rope_parameters.mrope_section\" is not read"},
           Bad{llama + R"("rope_parameters":{"chunked_attention":{"rope_theta":1e6}}})",
               "\"rope_parameters.chunked_attention\" is not read"},
           Bad{llama + R"("rope_parameters":{"full_attention":{"rope_theta":1e6},
                  "chunked_attention":{"rope_theta":1e6}}})",
               "\"rope_parameters.chunked_attention\" is not a kind of layer"},
           Bad{llama + R"("rope_parameters":{"full_attention":{"rope_theta":1e6},
                  "sliding_attention":{"rope_theta":1e4}}})",
               "\"rope_parameters.sliding_attention\" differs from full_attention"},
           Bad{gemma + R"("rope_parameters":{"sliding_attention":
                  {"rope_type":"linear","factor":2.0}}})",
               "\"rope_parameters.sliding_attention\" is scaled"},
           Bad{llama + R"("rope_parameters":[10000.0]})",
               "\"rope_parameters\" must be an object or null"}}) {
    CAPTURE(bad.json);
    auto c = parse_model_config(bad.json);
    REQUIRE_FALSE(c.ok());
    CHECK_MESSAGE(c.status().message().find(bad.error) != std::string::npos,
                  c.status().message());
  }
}

TEST_CASE("a whole model's gradients match finite differences, for every family") {
  for (const char* json : kEveryFamily) {
    CAPTURE(json);
    check_model_gradient(config_of(json));
  }
}

TEST_CASE("the cached forward gives the training forward's logits, batched across lengths") {
  for (const char* json : kEveryFamily) {
    CAPTURE(json);
    auto cpu = make_cpu_backend(2);
    auto model = Model::create(config_of(json), *cpu, 11);
    REQUIRE(model.ok());
    Model& m = **model;
    const std::vector<int32_t> a = {3, 1, 4, 1, 5, 9, 2}, b = {2, 7, 1, 8};
    auto full_logits = [&](const std::vector<int32_t>& ids) {
      m.forward(ids, 1, static_cast<int64_t>(ids.size()), {});
      return m.logits();
    };
    const Tensor la = full_logits(a), lb = full_logits(b);
    const int64_t v = m.config().vocab_size;
    // Prefill a with 3 tokens and b with 2, then feed one token at a time, both in one batch.
    KvCache ca = m.new_cache(16), cb = m.new_cache(16);
    size_t ia = 3, ib = 2;
    std::vector<Model::Step> steps = {{&ca, {a.begin(), a.begin() + 3}},
                                      {&cb, {b.begin(), b.begin() + 2}}};
    while (!steps.empty()) {
      const Tensor out = m.forward_cached(steps);
      const size_t pa = ca.length() - 1, pb = cb.length() - 1;
      std::vector<Model::Step> next;
      for (size_t s = 0; s < steps.size(); ++s) {
        const bool is_a = steps[s].cache == &ca;
        const Tensor& ref = is_a ? la : lb;
        const size_t pos = is_a ? pa : pb;
        for (int64_t j = 0; j < v; ++j) {
          CHECK(out[static_cast<int64_t>(s) * v + j] ==
                doctest::Approx(ref[static_cast<int64_t>(pos) * v + j]).epsilon(1e-4));
        }
        if (is_a && ia < a.size()) next.push_back({&ca, {a[ia++]}});
        if (!is_a && ib < b.size()) next.push_back({&cb, {b[ib++]}});
      }
      steps = std::move(next);
    }
    CHECK(ca.length() == 7);
    CHECK(cb.length() == 4);
  }
}

TEST_CASE("bf16 and f16 weights stay 16-bit in memory for inference, and give the fp32 logits") {
  auto cpu = make_cpu_backend(2);
  test::TempDir dir;
  int family = 0;
  for (const char* json : kEveryFamily) {
    CAPTURE(json);
    const auto format = family++ % 2 == 0 ? HalfTensor::Format::kBF16 : HalfTensor::Format::kF16;
    auto made = Model::create(config_of(json), *cpu, 3);
    REQUIRE(made.ok());
    (*made)->to_half(format);  // matrices rounded to 16 bits, saved as such
    REQUIRE((*made)->save(dir.path()).ok());
    auto st = Safetensors::open(dir.path() / "model.safetensors");
    REQUIRE(st.ok());
    int64_t file_bytes = 0;
    for (const auto& e : st->tensors()) {
      file_bytes += static_cast<int64_t>(e.bytes.size());
      CHECK(e.dtype == (e.shape.size() == 2 ? (format == HalfTensor::Format::kBF16 ? DType::kBF16
                                                                                  : DType::kF16)
                                            : DType::kF32));
    }

    auto wide = Model::load(dir.path(), *cpu);
    auto narrow = Model::load(dir.path(), *cpu, Weights::kAsStored);
    REQUIRE(wide.ok());
    REQUIRE_MESSAGE(narrow.ok(), narrow.status().to_string());
    CHECK_FALSE((*wide)->has_half_weights());
    CHECK((*narrow)->has_half_weights());
    // In memory the model costs what its file does; widened, its matrices cost twice.
    CHECK((*narrow)->weight_bytes() == file_bytes);
    CHECK((*wide)->weight_bytes() > file_bytes * 3 / 2);

    const std::vector<int32_t> ids = {3, 1, 4, 1, 5, 9, 2, 6};
    KvCache cw = (*wide)->new_cache(16), cn = (*narrow)->new_cache(16);
    for (size_t split : {size_t{5}, size_t{6}, size_t{7}}) {
      std::vector<Model::Step> sw = {{&cw, {ids.begin() + (split == 5 ? 0 : split - 1),
                                            ids.begin() + split}}};
      std::vector<Model::Step> sn = sw;
      sn[0].cache = &cn;
      const Tensor lw = (*wide)->forward_cached(sw), ln = (*narrow)->forward_cached(sn);
      REQUIRE(lw.shape() == ln.shape());
      for (int64_t j = 0; j < lw.numel(); ++j) CHECK(ln[j] == doctest::Approx(lw[j]).epsilon(1e-4));
    }
    // The batch forward (a prompt of many rows) agrees too; training is refused by name.
    (*wide)->forward(ids, 2, 4, {});
    (*narrow)->forward(ids, 2, 4, {});
    const Tensor bw = (*wide)->logits(), bn = (*narrow)->logits();
    for (int64_t j = 0; j < bw.numel(); ++j) CHECK(bn[j] == doctest::Approx(bw[j]).epsilon(1e-4));
    CHECK_THROWS_AS((*narrow)->forward(ids, 2, 4, std::vector<int32_t>(8, 1)), std::logic_error);
  }
}

TEST_CASE("generation_config.json: the published files' settings, and what is refused by name") {
  // As Llama 3.1 8B Instruct, Qwen2.5 7B Instruct, Gemma 3 1B IT and Mistral 7B publish them.
  auto llama = parse_generation_config(
      R"({"bos_token_id":128000,"do_sample":true,"eos_token_id":[128001,128008,128009],
          "temperature":0.6,"top_p":0.9,"transformers_version":"4.42.3"})", 128256);
  REQUIRE_MESSAGE(llama.ok(), llama.status().to_string());
  CHECK(llama->temperature == 0.6f);
  CHECK(llama->top_p == 0.9f);
  CHECK_FALSE(llama->top_k);
  CHECK_FALSE(llama->greedy);
  CHECK(llama->eos_token_ids == std::vector<int64_t>{128001, 128008, 128009});
  auto qwen = parse_generation_config(
      R"({"bos_token_id":151643,"pad_token_id":151643,"do_sample":true,
          "eos_token_id":[151645,151643],"repetition_penalty":1.05,"temperature":0.7,
          "top_p":0.8,"top_k":20,"transformers_version":"4.37.0"})", 152064);
  REQUIRE_MESSAGE(qwen.ok(), qwen.status().to_string());
  CHECK(qwen->repetition_penalty == 1.05f);
  CHECK(qwen->top_k == 20);
  auto gemma = parse_generation_config(
      R"({"bos_token_id":2,"cache_implementation":"hybrid","do_sample":true,"eos_token_id":[1,106],
          "pad_token_id":0,"top_k":64,"top_p":0.95,"transformers_version":"4.50.0.dev0"})", 262144);
  REQUIRE_MESSAGE(gemma.ok(), gemma.status().to_string());
  CHECK(gemma->eos_token_ids == std::vector<int64_t>{1, 106});
  auto mistral = parse_generation_config(
      R"({"_from_model_config":true,"bos_token_id":1,"eos_token_id":2,"max_length":32768,
          "transformers_version":"4.42.0","num_beams":1,"do_sample":false})", 32768);
  REQUIRE_MESSAGE(mistral.ok(), mistral.status().to_string());
  CHECK(mistral->greedy);
  CHECK(mistral->max_length == 32768);

  auto refused = [](const char* json) {
    auto r = parse_generation_config(json, 100);
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == Code::kInvalidArgument);
    return r.status().message();
  };
  CHECK(refused(R"({"num_beams":4})") ==
        "generation_config.json: \"num_beams\" is set; this platform samples one sequence "
        "without it (only 1 is accepted)");
  CHECK(refused(R"({"watermarking_config":{"greenlist_ratio":0.25}})") ==
        "generation_config.json: \"watermarking_config\" is not a generation setting this "
        "platform implements");
  CHECK(refused(R"({"temperature":-1})").find("\"temperature\" must be a number in [0, 100]") !=
        std::string::npos);
  CHECK(refused(R"({"eos_token_id":[5,100]})") ==
        "generation_config.json: \"eos_token_id\" must be a token id below vocab_size");
  CHECK(refused(R"({"top_k":1.5})").find("top_k") != std::string::npos);
  CHECK(refused(R"([1])") == "generation_config.json: must be a JSON object");

  test::TempDir dir;
  auto none = load_generation_config(dir.path(), 100);
  REQUIRE(none.ok());
  CHECK_FALSE(none->temperature);
  CHECK(none->eos_token_ids.empty());
}

TEST_CASE("sharded weights load through their index, and shards that disagree with it are refused") {
  auto cpu = make_cpu_backend(1);
  test::TempDir dir;
  const ModelConfig config = config_of(kTinyQwen3);
  auto model = Model::create(config, *cpu, 9);
  REQUIRE(model.ok());
  REQUIRE((*model)->save(dir.path()).ok());
  // Split the saved model in two shards as transformers' save_pretrained does, with the index.
  auto whole = Safetensors::open(dir.path() / "model.safetensors");
  REQUIRE(whole.ok());
  const auto& tensors = whole->tensors();
  const size_t half = tensors.size() / 2;
  auto write_shards = [&](size_t moved_to_second) {
    std::vector<TensorToWrite> a, b;
    std::string map;
    for (size_t i = 0; i < tensors.size(); ++i) {
      TensorToWrite t{tensors[i].name, tensors[i].dtype, tensors[i].shape, tensors[i].bytes};
      const bool second = i >= half;
      (second || i == moved_to_second ? b : a).push_back(t);
      map += std::string(map.empty() ? "" : ",") + "\"" + tensors[i].name + "\":\"" +
             (second ? "model-00002-of-00002.safetensors" : "model-00001-of-00002.safetensors") +
             "\"";
    }
    REQUIRE(write_safetensors(dir.path() / "model-00001-of-00002.safetensors", a).ok());
    REQUIRE(write_safetensors(dir.path() / "model-00002-of-00002.safetensors", b).ok());
    REQUIRE(write_file_atomically(dir.path() / "model.safetensors.index.json",
                                  "{\"metadata\":{},\"weight_map\":{" + map + "}}")
                .ok());
  };
  write_shards(tensors.size());  // as the index says
  std::filesystem::remove(dir.path() / "model.safetensors");
  auto loaded = Model::load(dir.path(), *cpu);
  REQUIRE_MESSAGE(loaded.ok(), loaded.status().to_string());
  for (const auto& p : (*model)->parameters()) CHECK((*loaded)->find(p.name)->value.values() == p.value.values());
  auto files = weight_files(dir.path());
  REQUIRE(files.ok());
  CHECK(files->size() == 2);

  write_shards(0);  // the first tensor is in the second shard, but the index says the first
  auto r = Model::load(dir.path(), *cpu);
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().message() == "model.safetensors.index.json puts tensor \"" + tensors[0].name +
                                    "\" in model-00001-of-00002.safetensors, but "
                                    "model-00002-of-00002.safetensors holds it");
  CHECK(inspect_model(dir.path()).status().message() == r.status().message());
}

TEST_CASE("save and load round-trip with Hugging Face names, and bad weights are refused") {
  auto cpu = make_cpu_backend(1);
  test::TempDir dir;
  for (const char* json : kEveryFamily) {
    const ModelConfig config = config_of(json);
    auto model = Model::create(config, *cpu, 5);
    REQUIRE(model.ok());
    REQUIRE((*model)->save(dir.path()).ok());
    auto loaded = Model::load(dir.path(), *cpu);
    REQUIRE_MESSAGE(loaded.ok(), loaded.status().to_string());
    CHECK((*loaded)->config().parameter_count() == config.parameter_count());
    for (const auto& p : (*model)->parameters()) {
      Parameter* q = (*loaded)->find(p.name);
      REQUIRE(q != nullptr);
      CHECK(q->value.values() == p.value.values());
    }
    auto st = Safetensors::open(dir.path() / "model.safetensors");
    REQUIRE(st.ok());
    if (config.family == Family::kGpt2) {
      CHECK(st->find("transformer.h.1.attn.c_attn.weight") != nullptr);
      CHECK(st->find("transformer.h.1.attn.c_attn.weight")->shape == std::vector<int64_t>{8, 24});
      CHECK(st->find("lm_head.weight") == nullptr);  // tied
    } else {
      CHECK(st->find("model.layers.0.self_attn.k_proj.weight")->shape ==
            std::vector<int64_t>{config.kv_heads * config.head_dim, 8});
      CHECK((st->find("lm_head.weight") != nullptr) == !config.tie_embeddings);
      CHECK((st->find("model.layers.1.self_attn.q_norm.weight") != nullptr) == config.qk_norm);
      CHECK((st->find("model.layers.1.self_attn.q_proj.bias") != nullptr) == config.qkv_bias);
      CHECK((st->find("model.layers.1.pre_feedforward_layernorm.weight") != nullptr) ==
            config.sandwich_norms);
    }
    CHECK((*model)->parameters().size() == st->tensors().size());
  }

  // Weights that do not fit the config.
  const ModelConfig config = config_of(kTinyGpt2);
  auto write = [&](std::vector<std::pair<std::string, Shape>> tensors) {
    std::vector<std::vector<uint8_t>> storage;
    std::vector<TensorToWrite> out;
    storage.reserve(tensors.size());
    for (auto& [name, shape] : tensors) {
      int64_t n = 1;
      for (int64_t d : shape) n *= d;
      storage.emplace_back(static_cast<size_t>(n) * 4, 0);
      TensorToWrite t;
      t.name = name;
      t.shape = shape;
      t.bytes = storage.back();
      out.push_back(t);
    }
    REQUIRE(write_safetensors(dir.path() / "bad.safetensors", out).ok());
    return Model::load_weights(config, {dir.path() / "bad.safetensors"}, *cpu);
  };
  auto model = Model::create(config, *cpu, 1);
  std::vector<std::pair<std::string, Shape>> all;
  for (const auto& p : (*model)->parameters()) all.emplace_back(p.name, p.value.shape());

  auto missing = all;
  missing.pop_back();
  auto r = write(missing);
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().message() == "the weights have no tensor \"transformer.ln_f.bias\"");

  auto misshapen = all;
  misshapen[0].second = {11, 9};
  r = write(misshapen);
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().message().find("has shape [11, 9], config.json needs [11, 8]") !=
        std::string::npos);

  auto extra = all;
  extra.emplace_back("transformer.h.2.ln_1.weight", Shape{8});
  r = write(extra);
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().message().find("is not part of a gpt2 model") != std::string::npos);

  // The original GPT-2 checkpoints' names (no "transformer." prefix, mask buffers) load.
  auto legacy = all;
  for (auto& [name, shape] : legacy) name = name.substr(std::string("transformer.").size());
  legacy.emplace_back("h.0.attn.bias", Shape{1, 1, 16, 16});
  r = write(legacy);
  CHECK_MESSAGE(r.ok(), r.status().to_string());

  // A directory without config.json, and a config that is not JSON.
  test::TempDir empty;
  CHECK(Model::load(empty.path(), *cpu).status().code() == Code::kNotFound);
  REQUIRE(write_file_atomically(empty.path() / "config.json", "{nope").ok());
  CHECK(Model::load(empty.path(), *cpu).status().message().starts_with("config.json: "));
}

}  // namespace
}  // namespace mh::engine

namespace mh::engine {
namespace {

TEST_CASE("inspect_model checks a model directory from headers, tokenizer included") {
  auto cpu = make_cpu_backend(1);
  test::TempDir dir;
  const ModelConfig config = config_of(kTinyLlama);
  auto model = Model::create(config, *cpu, 1);
  REQUIRE((*model)->save(dir.path()).ok());
  // No tokenizer yet.
  CHECK(inspect_model(dir.path()).status().message().find("no tokenizer") != std::string::npos);

  BpeTrainerOptions options;
  options.vocab_size = 257;
  options.special_tokens = {"<|endoftext|>"};
  const std::vector<std::string> texts = {"abc"};
  REQUIRE(train_bpe(texts, options)->save(dir.path()).ok());
  // 257 tokens do not fit a vocabulary of 11.
  CHECK(inspect_model(dir.path()).status().message() ==
        "the tokenizer has 257 tokens but config.json's vocab_size is 11");

  ModelConfig wide = config;
  wide.vocab_size = 300;
  auto fits = Model::create(wide, *cpu, 1);
  REQUIRE((*fits)->save(dir.path()).ok());
  auto summary = inspect_model(dir.path());
  REQUIRE_MESSAGE(summary.ok(), summary.status().to_string());
  CHECK(summary->parameters == wide.parameter_count());
  CHECK(summary->weight_bytes == wide.parameter_count() * 4);
  CHECK(summary->tokenizer_vocab == 257);
  CHECK(summary->weight_files == std::vector<std::string>{"model.safetensors"});

  // Weights of a dtype a model cannot have.
  std::vector<TensorToWrite> tensors;
  std::vector<std::vector<uint8_t>> storage;
  const auto specs = Model::tensor_specs(wide);
  storage.reserve(specs.size());
  for (const auto& spec : specs) {
    int64_t n = 1;
    for (int64_t d : spec.shape) n *= d;
    storage.emplace_back(static_cast<size_t>(n) * 4, 0);
    TensorToWrite t;
    t.name = spec.name;
    t.shape = spec.shape;
    t.dtype = spec.name == "model.norm.weight" ? DType::kI32 : DType::kF32;
    t.bytes = storage.back();
    tensors.push_back(t);
  }
  REQUIRE(write_safetensors(dir.path() / "model.safetensors", tensors).ok());
  CHECK(inspect_model(dir.path()).status().message() ==
        "model.safetensors: tensor \"model.norm.weight\" is I32; weights must be F32, F16 or BF16");
}

}  // namespace
}  // namespace mh::engine
