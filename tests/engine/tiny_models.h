// Tiny configurations of every family the engine supports, each with what sets it apart
// switched on, small enough for finite differences, and a weights reader: shared by the
// model, LoRA and training tests, with a LoRA-adapted model of any of them.
#pragma once

#include <doctest/doctest.h>

#include <memory>
#include <random>
#include <vector>

#include "platform/engine/model.h"
#include "tests/engine/gradcheck.h"

namespace mh::engine {

inline const char* kTinyGpt2 = R"({"model_type":"gpt2","vocab_size":11,"n_embd":8,"n_layer":2,
  "n_head":2,"n_positions":16,"n_inner":12,"layer_norm_epsilon":1e-5})";
inline const char* kTinyLlama = R"({"model_type":"llama","vocab_size":11,"hidden_size":8,
  "intermediate_size":12,"num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,
  "max_position_embeddings":16,"rms_norm_eps":1e-6,"rope_theta":10000.0,
  "tie_word_embeddings":false})";
// The families built on llama, each with what sets it apart switched on at a size the finite
// differences can check: scaled RoPE, windows shorter than the sequences, biases, q/k norms,
// head_dim apart from hidden / heads, Gemma's norms, scales and soft-caps.
inline const char* kTinyLlama3 = R"({"model_type":"llama","vocab_size":11,"hidden_size":8,
  "intermediate_size":12,"num_hidden_layers":2,"num_attention_heads":2,"num_key_value_heads":1,
  "head_dim":6,"max_position_embeddings":16,"tie_word_embeddings":true,"attention_bias":true,
  "rope_scaling":{"rope_type":"llama3","factor":8.0,"low_freq_factor":1.0,"high_freq_factor":4.0,
  "original_max_position_embeddings":4}})";
inline const char* kTinyMistral = R"({"model_type":"mistral","vocab_size":11,"hidden_size":8,
  "intermediate_size":12,"num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,
  "max_position_embeddings":16,"sliding_window":3})";
inline const char* kTinyQwen2 = R"({"model_type":"qwen2","vocab_size":11,"hidden_size":8,
  "intermediate_size":12,"num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,
  "max_position_embeddings":16,"use_sliding_window":true,"sliding_window":2,
  "max_window_layers":1,"rope_scaling":{"type":"yarn","factor":4.0,
  "original_max_position_embeddings":4}})";
inline const char* kTinyQwen3 = R"({"model_type":"qwen3","vocab_size":11,"hidden_size":8,
  "intermediate_size":12,"num_hidden_layers":2,"num_attention_heads":2,"num_key_value_heads":1,
  "head_dim":6,"max_position_embeddings":16,"tie_word_embeddings":true})";
inline const char* kTinyGemma3 = R"({"model_type":"gemma3_text","vocab_size":11,"hidden_size":8,
  "intermediate_size":12,"num_hidden_layers":2,"num_attention_heads":2,"num_key_value_heads":1,
  "head_dim":4,"max_position_embeddings":16,"query_pre_attn_scalar":6,"sliding_window":3,
  "sliding_window_pattern":2,"rope_local_base_freq":100.0,"attn_logit_softcapping":2.0,
  "final_logit_softcapping":3.0,"rope_scaling":{"rope_type":"linear","factor":2.0}})";
inline const char* const kEveryFamily[] = {kTinyGpt2,  kTinyLlama, kTinyLlama3, kTinyMistral,
                                           kTinyQwen2, kTinyQwen3, kTinyGemma3};

inline ModelConfig config_of(const char* json) {
  auto c = parse_model_config(json);
  REQUIRE_MESSAGE(c.ok(), c.status().to_string());
  return *c;
}

// A model of `json` with weights large enough that every path carries a visible gradient, and
// LoRA adapters whose B is not zero (a new adapter's B is: then A would have no gradient).
inline std::unique_ptr<Model> adapted(Backend& backend, const char* json, const LoraConfig& lora) {
  auto model = Model::create(config_of(json), backend, 7);
  REQUIRE(model.ok());
  std::mt19937 rng(3);
  for (auto& p : (*model)->parameters()) {
    if (p.value.rank() == 2) p.value = random_tensor(p.value.shape(), rng, 0.3f);
  }
  REQUIRE((*model)->add_lora(lora, 11).ok());
  for (auto& p : (*model)->trainable()) {
    if (p.name.ends_with("lora_B.weight")) p.value = random_tensor(p.value.shape(), rng, 0.3f);
  }
  return std::move(model).value();
}

// Every value of `params`, in order: to compare weights bit for bit.
inline std::vector<float> values_of(const std::vector<Parameter>& params) {
  std::vector<float> out;
  for (const auto& p : params) {
    out.insert(out.end(), p.value.values().begin(), p.value.values().end());
  }
  return out;
}

}  // namespace mh::engine
