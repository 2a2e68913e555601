#include "platform/engine/model.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <optional>
#include <set>
#include <stdexcept>

#include "platform/engine/chat_template.h"
#include "platform/engine/files.h"
#include "platform/engine/random.h"
#include "platform/engine/safetensors.h"
#include "platform/engine/tokenizer.h"

namespace mh::engine {

// What one block's forward keeps for its backward pass.
struct Model::Activations {
  Tensor x_in, n1, mean1, rstd1, qkv, q, k, v, att, lse;
  Tensor q_raw, k_raw, q_rstd, k_rstd;  // q and k before their norms (qk_norm)
  Tensor o, o_rstd;                     // attention's output projection (and its norm's rstd)
  Tensor x_mid, n2, mean2, rstd2, h, up, act, x_out;
  Tensor m, m_rstd;  // the MLP's output (and its norm's rstd)
  Tensor tmp;        // a branch after its sandwich norm, until it is added
};

namespace {

constexpr int64_t kMaxDimension = 1 << 20;  // hidden, ffn, positions
constexpr int64_t kMaxVocab = 1 << 22;
constexpr int64_t kMaxLayers = 1024;
constexpr int64_t kMaxParameters = int64_t{1} << 37;
constexpr size_t kMaxConfigBytes = 1 << 20;

Status config_error(std::string_view field, std::string_view what,
                    std::string_view file = "config.json") {
  return invalid_argument(std::string(file) + ": \"" + std::string(field) + "\" " +
                              std::string(what),
                          std::string(field));
}

// An integer field in [1, max]; `fallback` (when >= 0) stands in for a missing or null field.
Result<int64_t> int_field(const Json& cfg, std::string_view key, int64_t max,
                          int64_t fallback = -1) {
  const Json* v = cfg.find(key);
  if (v == nullptr || v->is_null()) {
    if (fallback >= 0) return fallback;
    return config_error(key, "is missing");
  }
  if (!v->is_int() || v->as_int() < 1 || v->as_int() > max) {
    return config_error(key, "must be an integer in [1, " + std::to_string(max) + "]");
  }
  return v->as_int();
}

Result<float> positive_field(const Json& cfg, std::string_view key, double fallback) {
  const Json* v = cfg.find(key);
  if (v == nullptr || v->is_null()) return static_cast<float>(fallback);
  // Kept as float: a value that is 0 or infinite as a float is no more valid than 0 itself.
  const float f = v->is_number() ? static_cast<float>(v->as_double()) : 0.0f;
  if (!(f > 0) || !std::isfinite(f)) {
    return config_error(key, "must be a positive number (as a 32-bit float)");
  }
  return f;
}

Result<bool> bool_field(const Json& cfg, std::string_view key, bool fallback) {
  const Json* v = cfg.find(key);
  if (v == nullptr || v->is_null()) return fallback;
  if (!v->is_bool()) return config_error(key, "must be true or false");
  return v->as_bool();
}

// Token ids: absent or null is none; a list (several EOS ids) gives them all.
Result<std::vector<int64_t>> token_ids_field(const Json& cfg, std::string_view key, int64_t vocab,
                                             std::string_view file = "config.json") {
  const Json* v = cfg.find(key);
  std::vector<int64_t> out;
  if (v == nullptr || v->is_null()) return out;
  const JsonArray one{*v};
  const JsonArray& list = v->is_array() ? v->as_array() : one;
  if (list.empty() || list.size() > 64) {
    return config_error(key, "must list 1 to 64 token ids", file);
  }
  for (const Json& id : list) {
    if (!id.is_int() || id.as_int() < 0 || id.as_int() >= vocab) {
      return config_error(key, "must be a token id below vocab_size", file);
    }
    out.push_back(id.as_int());
  }
  return out;
}

// Checks a string field against the values this engine implements.
Status string_choice(const Json& cfg, std::string_view key, std::initializer_list<const char*> ok,
                     bool required) {
  const Json* v = cfg.find(key);
  if (v == nullptr || v->is_null()) {
    return required ? config_error(key, "is missing") : Status::ok_status();
  }
  if (!v->is_string()) return config_error(key, "must be a string");
  for (const char* o : ok) {
    if (v->as_string() == o) return Status::ok_status();
  }
  std::string list;
  for (const char* o : ok) list += (list.empty() ? "" : ", ") + std::string(o);
  return config_error(key, "is \"" + v->as_string() + "\"; this engine implements " + list);
}

std::string fmt_number(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

std::vector<uint8_t> as_bytes(const Tensor& t) {
  std::vector<uint8_t> b(static_cast<size_t>(t.numel()) * 4);
  std::memcpy(b.data(), t.data(), b.size());
  return b;
}

}  // namespace

std::string_view family_name(Family family) {
  switch (family) {
    case Family::kGpt2: return "gpt2";
    case Family::kLlama: return "llama";
    case Family::kMistral: return "mistral";
    case Family::kQwen2: return "qwen2";
    case Family::kQwen3: return "qwen3";
    case Family::kGemma3: return "gemma3_text";
  }
  return "?";
}

std::optional<Family> family_named(std::string_view name) {
  for (Family f : {Family::kGpt2, Family::kLlama, Family::kMistral, Family::kQwen2,
                   Family::kQwen3, Family::kGemma3}) {
    if (family_name(f) == name) return f;
  }
  return std::nullopt;
}

std::string_view rope_type_name(RopeScaling::Type type) {
  switch (type) {
    case RopeScaling::Type::kNone: return "default";
    case RopeScaling::Type::kLinear: return "linear";
    case RopeScaling::Type::kDynamic: return "dynamic";
    case RopeScaling::Type::kLlama3: return "llama3";
    case RopeScaling::Type::kYarn: return "yarn";
  }
  return "?";
}

int64_t ModelConfig::parameter_count() const {
  int64_t n = 0;
  for (const TensorSpec& t : Model::tensor_specs(*this)) {
    int64_t size = 1;
    for (int64_t d : t.shape) size *= d;
    n += size;
  }
  return n;
}

namespace {

// The transformers model class of each family, as config.json's "architectures" names it.
const char* architecture(Family family) {
  switch (family) {
    case Family::kGpt2: return "GPT2LMHeadModel";
    case Family::kLlama: return "LlamaForCausalLM";
    case Family::kMistral: return "MistralForCausalLM";
    case Family::kQwen2: return "Qwen2ForCausalLM";
    case Family::kQwen3: return "Qwen3ForCausalLM";
    case Family::kGemma3: return "Gemma3ForCausalLM";
  }
  return "";
}

Result<double> number_in(const Json& obj, std::string_view where, std::string_view key,
                         double fallback, double low, double high) {
  const Json* v = obj.find(key);
  if (v == nullptr || v->is_null()) return fallback;
  if (!v->is_number() || !(v->as_double() >= low) || !(v->as_double() <= high)) {
    return config_error(std::string(where) + "." + std::string(key),
                        "must be a number in [" + fmt_number(low) + ", " + fmt_number(high) + "]");
  }
  return v->as_double();
}

// rope_scaling (`where`): null, or an object whose "rope_type" (or the older "type") is one this
// engine implements, with only the keys that type reads. Within transformers 5's
// rope_parameters (`in_parameters`) the object also holds rope_theta and partial_rotary_factor
// (read by the caller), and a missing rope_type is the default.
Result<RopeScaling> parse_rope_scaling(const Json* v, const std::string& where,
                                       int64_t max_positions, bool in_parameters = false) {
  RopeScaling r;
  if (v == nullptr || v->is_null()) return r;
  if (!v->is_object()) return config_error(where, "must be an object or null");
  const Json* type = v->find("rope_type");
  if (type == nullptr) type = v->find("type");
  static const Json kDefault(std::string("default"));
  if (type == nullptr && in_parameters) type = &kDefault;
  if (type == nullptr || !type->is_string()) {
    return config_error(where, "has no \"rope_type\"");
  }
  const std::string& name = type->as_string();
  std::set<std::string> keys{"rope_type", "type"};
  if (in_parameters) keys.insert({"rope_theta", "partial_rotary_factor"});
  if (name == "default") {
    r.type = RopeScaling::Type::kNone;
  } else if (name == "linear" || name == "dynamic") {
    r.type = name == "linear" ? RopeScaling::Type::kLinear : RopeScaling::Type::kDynamic;
    keys.insert("factor");
  } else if (name == "llama3") {
    r.type = RopeScaling::Type::kLlama3;
    keys.insert({"factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"});
  } else if (name == "yarn") {
    r.type = RopeScaling::Type::kYarn;
    keys.insert({"factor", "original_max_position_embeddings", "attention_factor", "beta_fast",
                 "beta_slow", "mscale", "mscale_all_dim", "truncate"});
  } else {
    return config_error(where, "has rope_type \"" + name +
                                            "\"; this engine implements default, linear, "
                                            "dynamic, llama3 and yarn");
  }
  for (const auto& [key, value] : v->as_object()) {
    if (!keys.contains(key)) {
      return config_error(where + "." + key, "is not read by rope_type \"" + name +
                                                     "\" in this engine; remove it");
    }
  }
  if (r.type == RopeScaling::Type::kNone) return r;
  const Json* factor = v->find("factor");
  if (factor == nullptr || !factor->is_number() || !(factor->as_double() >= 1.0) ||
      !(factor->as_double() <= 1024.0)) {
    return config_error(where + ".factor", "must be a number in [1, 1024]");
  }
  r.factor = factor->as_double();
  const Json* original = v->find("original_max_position_embeddings");
  if (original != nullptr && !original->is_null()) {
    if (!original->is_int() || original->as_int() < 1 || original->as_int() > kMaxDimension) {
      return config_error(where + ".original_max_position_embeddings",
                          "must be an integer in [1, " + std::to_string(kMaxDimension) + "]");
    }
    r.original_max_positions = original->as_int();
  } else if (r.type == RopeScaling::Type::kLlama3) {
    return config_error(where + ".original_max_position_embeddings", "is missing");
  } else {
    r.original_max_positions = max_positions;
  }
  if (r.type == RopeScaling::Type::kLlama3) {
    MH_ASSIGN_OR_RETURN(r.low_freq_factor,
                        number_in(*v, where, "low_freq_factor", -1, 1e-6, 1e6));
    MH_ASSIGN_OR_RETURN(r.high_freq_factor,
                        number_in(*v, where, "high_freq_factor", -1, 1e-6, 1e6));
    if (r.low_freq_factor < 0 || r.high_freq_factor < 0) {
      return config_error(where, "of rope_type llama3 needs low_freq_factor and "
                                          "high_freq_factor");
    }
    if (!(r.high_freq_factor > r.low_freq_factor)) {
      return config_error(where + ".high_freq_factor", "must be above low_freq_factor");
    }
  }
  if (r.type == RopeScaling::Type::kYarn) {
    // As transformers reads them: a missing (or zero) beta falls back to 32 and 1.
    MH_ASSIGN_OR_RETURN(r.beta_fast, number_in(*v, where, "beta_fast", 32, 0, 1e6));
    MH_ASSIGN_OR_RETURN(r.beta_slow, number_in(*v, where, "beta_slow", 1, 0, 1e6));
    if (r.beta_fast == 0) r.beta_fast = 32;
    if (r.beta_slow == 0) r.beta_slow = 1;
    MH_ASSIGN_OR_RETURN(r.attention_factor,
                        number_in(*v, where, "attention_factor", 0, 0, 1e3));
    MH_ASSIGN_OR_RETURN(r.mscale, number_in(*v, where, "mscale", 0, 0, 1e3));
    MH_ASSIGN_OR_RETURN(r.mscale_all_dim,
                        number_in(*v, where, "mscale_all_dim", 0, 0, 1e3));
    MH_ASSIGN_OR_RETURN(r.truncate, bool_field(*v, "truncate", true));
  }
  return r;
}

// RoPE's settings. Older configs give rope_theta, rope_scaling and (Gemma 3)
// rope_local_base_freq; transformers 5 writes "rope_parameters" instead: one object with the
// base frequency and the scaling ({"rope_type": "llama3", "rope_theta": 500000, "factor": 8,
// ...}), or one such object per kind of layer ({"full_attention": {...}, "sliding_attention":
// {...}}) where the kinds rotate differently. Both forms may be given; then they must agree.
Status parse_rope(const Json& cfg, bool gemma, ModelConfig& c) {
  MH_ASSIGN_OR_RETURN(c.rope_theta, positive_field(cfg, "rope_theta", gemma ? 1e6 : 10000.0));
  MH_ASSIGN_OR_RETURN(
      c.rope_scaling, parse_rope_scaling(cfg.find("rope_scaling"), "rope_scaling", c.max_positions));
  if (gemma) {
    MH_ASSIGN_OR_RETURN(c.rope_local_theta, positive_field(cfg, "rope_local_base_freq", 10000.0));
  }
  MH_ASSIGN_OR_RETURN(double partial, number_in(cfg, "", "partial_rotary_factor", 1, 0, 1));
  if (partial != 1) {
    return config_error("partial_rotary_factor", "is not 1; this engine rotates whole heads");
  }
  const Json* params = cfg.find("rope_parameters");
  if (params == nullptr || params->is_null()) return {};
  if (!params->is_object()) return config_error("rope_parameters", "must be an object or null");
  auto given = [&](const char* key) {
    const Json* v = cfg.find(key);
    return v != nullptr && !v->is_null();
  };
  // One kind of layer's settings, against what the older keys gave (`theta_key`, and
  // rope_scaling when `scaling` is compared).
  struct Rope {
    float theta;
    RopeScaling scaling;
  };
  auto one = [&](const Json& p, const std::string& where, const char* theta_key,
                 const Rope& older, bool compare_scaling) -> Result<Rope> {
    if (!p.is_object()) return config_error(where, "must be an object");
    Rope r = older;
    MH_ASSIGN_OR_RETURN(double theta, number_in(p, where, "rope_theta", -1, 1e-6, 1e30));
    if (theta > 0) r.theta = static_cast<float>(theta);
    if (given(theta_key) && r.theta != older.theta) {
      return config_error(where + ".rope_theta", std::string("disagrees with ") + theta_key);
    }
    MH_ASSIGN_OR_RETURN(double rotary, number_in(p, where, "partial_rotary_factor", 1, 0, 1));
    if (rotary != 1) {
      return config_error(where + ".partial_rotary_factor",
                          "is not 1; this engine rotates whole heads");
    }
    MH_ASSIGN_OR_RETURN(r.scaling, parse_rope_scaling(&p, where, c.max_positions, true));
    if (compare_scaling && given("rope_scaling") && !(r.scaling == older.scaling)) {
      return config_error(where, "disagrees with rope_scaling");
    }
    return r;
  };
  const Rope global{c.rope_theta, c.rope_scaling};
  const Json* full = params->find("full_attention");
  const Json* sliding = params->find("sliding_attention");
  if (full == nullptr && sliding == nullptr) {
    MH_ASSIGN_OR_RETURN(Rope r, one(*params, "rope_parameters", "rope_theta", global, true));
    c.rope_theta = r.theta;
    c.rope_scaling = r.scaling;
    return {};
  }
  for (const auto& [key, value] : params->as_object()) {
    if (key != "full_attention" && key != "sliding_attention") {
      return config_error("rope_parameters." + key, "is not a kind of layer this engine knows "
                                                    "(full_attention, sliding_attention)");
    }
  }
  std::optional<Rope> full_rope, sliding_rope;
  if (full != nullptr) {
    MH_ASSIGN_OR_RETURN(full_rope,
                        one(*full, "rope_parameters.full_attention", "rope_theta", global, true));
  }
  if (sliding != nullptr) {
    // Gemma 3's sliding layers rotate by their own base frequency, unscaled; the other
    // families rotate every layer alike.
    const Rope local = gemma ? Rope{c.rope_local_theta, RopeScaling{}} : global;
    MH_ASSIGN_OR_RETURN(sliding_rope,
                        one(*sliding, "rope_parameters.sliding_attention",
                            gemma ? "rope_local_base_freq" : "rope_theta", local, !gemma));
    if (gemma && sliding_rope->scaling.type != RopeScaling::Type::kNone) {
      return config_error("rope_parameters.sliding_attention",
                          "is scaled; this engine rotates Gemma 3's sliding layers unscaled");
    }
  }
  if (gemma) {
    if (full_rope) {
      c.rope_theta = full_rope->theta;
      c.rope_scaling = full_rope->scaling;
    }
    if (sliding_rope) c.rope_local_theta = sliding_rope->theta;
    return {};
  }
  if (full_rope && sliding_rope &&
      (full_rope->theta != sliding_rope->theta || !(full_rope->scaling == sliding_rope->scaling))) {
    return config_error("rope_parameters.sliding_attention",
                        "differs from full_attention; this engine rotates every layer of " +
                            std::string(family_name(c.family)) + " alike");
  }
  const Rope& r = full_rope ? *full_rope : *sliding_rope;
  c.rope_theta = r.theta;
  c.rope_scaling = r.scaling;
  return {};
}

// Which layers attend through a sliding window: "layer_types" when given, else each family's
// own rule (mistral: all; qwen2/qwen3: from max_window_layers up, when use_sliding_window;
// gemma3_text: all but every sliding_window_pattern-th).
Status parse_sliding(const Json& cfg, ModelConfig& c) {
  const Json* window = cfg.find("sliding_window");
  int64_t w = 0;
  if (window != nullptr && !window->is_null()) {
    if (!window->is_int() || window->as_int() < 1 || window->as_int() > (int64_t{1} << 31)) {
      return config_error("sliding_window", "must be a positive integer or null");
    }
    w = window->as_int();
  }
  c.sliding_layers.assign(static_cast<size_t>(c.layers), false);
  const Json* types = cfg.find("layer_types");
  const bool qwen = c.family == Family::kQwen2 || c.family == Family::kQwen3;
  if (qwen) {
    MH_ASSIGN_OR_RETURN(bool use, bool_field(cfg, "use_sliding_window", false));
    if (!use) w = 0;
  }
  if (types != nullptr && !types->is_null()) {
    if (!types->is_array() || static_cast<int64_t>(types->as_array().size()) != c.layers) {
      return config_error("layer_types", "must list one type per layer");
    }
    for (size_t i = 0; i < types->as_array().size(); ++i) {
      const Json& t = types->as_array()[i];
      if (!t.is_string() ||
          (t.as_string() != "full_attention" && t.as_string() != "sliding_attention")) {
        return config_error("layer_types", "may hold \"full_attention\" and "
                                           "\"sliding_attention\" only");
      }
      c.sliding_layers[i] = t.as_string() == "sliding_attention";
    }
  } else if (c.family == Family::kMistral) {
    c.sliding_layers.assign(static_cast<size_t>(c.layers), true);
  } else if (qwen) {
    MH_ASSIGN_OR_RETURN(int64_t from, int_field(cfg, "max_window_layers", kMaxLayers, 0));
    for (int64_t l = from; l < c.layers; ++l) c.sliding_layers[static_cast<size_t>(l)] = true;
  } else if (c.family == Family::kGemma3) {
    MH_ASSIGN_OR_RETURN(int64_t pattern, int_field(cfg, "sliding_window_pattern", kMaxLayers, 6));
    for (int64_t l = 0; l < c.layers; ++l) {
      c.sliding_layers[static_cast<size_t>(l)] = (l + 1) % pattern != 0;
    }
  }
  bool any = std::find(c.sliding_layers.begin(), c.sliding_layers.end(), true) !=
             c.sliding_layers.end();
  // Qwen's layers slide only when use_sliding_window says so, whatever else is set.
  if (qwen && w == 0) any = false;
  if (any && w == 0) {
    return config_error("sliding_window", "is missing, but layers are sliding_attention");
  }
  c.sliding_window = any ? w : 0;
  if (c.sliding_window == 0) c.sliding_layers.assign(static_cast<size_t>(c.layers), false);
  return {};
}

// The families built on llama: their shared fields, then what each one adds.
Status parse_llama_like(const Json& cfg, ModelConfig& c) {
  const bool gemma = c.family == Family::kGemma3;
  MH_ASSIGN_OR_RETURN(c.vocab_size, int_field(cfg, "vocab_size", kMaxVocab));
  MH_ASSIGN_OR_RETURN(c.hidden, int_field(cfg, "hidden_size", kMaxDimension));
  MH_ASSIGN_OR_RETURN(c.ffn, int_field(cfg, "intermediate_size", kMaxDimension));
  MH_ASSIGN_OR_RETURN(c.layers, int_field(cfg, "num_hidden_layers", kMaxLayers));
  MH_ASSIGN_OR_RETURN(c.heads, int_field(cfg, "num_attention_heads", kMaxDimension));
  MH_ASSIGN_OR_RETURN(c.kv_heads, int_field(cfg, "num_key_value_heads", kMaxDimension, c.heads));
  MH_ASSIGN_OR_RETURN(c.max_positions, int_field(cfg, "max_position_embeddings", kMaxDimension));
  const Json* head_dim = cfg.find("head_dim");
  const bool has_head_dim = head_dim != nullptr && !head_dim->is_null();
  if (!gemma && !has_head_dim && c.hidden % c.heads != 0) {
    return config_error("num_attention_heads", "must divide hidden_size (or give head_dim)");
  }
  // transformers' Gemma3TextConfig defaults head_dim to 256; the others to hidden / heads.
  MH_ASSIGN_OR_RETURN(c.head_dim,
                      int_field(cfg, "head_dim", kMaxDimension, gemma ? 256 : c.hidden / c.heads));
  if (c.heads * c.head_dim > kMaxDimension) {
    return config_error("head_dim", "times num_attention_heads must be at most " +
                                        std::to_string(kMaxDimension));
  }
  MH_ASSIGN_OR_RETURN(c.norm_eps, positive_field(cfg, "rms_norm_eps", 1e-6));
  MH_TRY(parse_rope(cfg, gemma, c));
  MH_ASSIGN_OR_RETURN(c.tie_embeddings, bool_field(cfg, "tie_word_embeddings", gemma));
  if (gemma) {
    MH_TRY(string_choice(cfg, "hidden_activation", {"gelu_pytorch_tanh", "gelu_new"}, false));
    MH_TRY(string_choice(cfg, "hidden_act", {"gelu_pytorch_tanh", "gelu_new"}, false));
    c.activation = Activation::kGeluTanh;
  } else {
    MH_TRY(string_choice(cfg, "hidden_act", {"silu"}, false));
  }
  if (c.family == Family::kQwen2) {
    c.qkv_bias = true;  // Qwen2's q, k, v projections always carry biases; o_proj never does
  } else {
    MH_ASSIGN_OR_RETURN(bool bias, bool_field(cfg, "attention_bias", false));
    if (bias && c.family == Family::kMistral) {
      return config_error("attention_bias", "is true; mistral has no attention biases");
    }
    c.qkv_bias = c.o_bias = bias;
  }
  MH_ASSIGN_OR_RETURN(bool mlp_bias, bool_field(cfg, "mlp_bias", false));
  if (mlp_bias) return config_error("mlp_bias", "is true; this engine implements MLPs without biases");
  c.qk_norm = c.family == Family::kQwen3 || gemma;
  MH_TRY(parse_sliding(cfg, c));
  if (gemma) {
    c.norm_offset = 1.0f;
    c.sandwich_norms = true;
    c.embedding_scale = std::sqrt(static_cast<float>(c.hidden));
    MH_ASSIGN_OR_RETURN(c.query_pre_attn_scalar,
                        positive_field(cfg, "query_pre_attn_scalar", 256.0));
    for (const char* key : {"attn_logit_softcapping", "final_logit_softcapping"}) {
      const Json* cap = cfg.find(key);
      if (cap == nullptr || cap->is_null()) continue;
      MH_ASSIGN_OR_RETURN(float value, positive_field(cfg, key, 0));
      (std::string_view(key).starts_with("attn") ? c.attn_softcap : c.final_softcap) = value;
    }
    MH_ASSIGN_OR_RETURN(bool bidirectional, bool_field(cfg, "use_bidirectional_attention", false));
    if (bidirectional) {
      return config_error("use_bidirectional_attention", "is true; this engine is causal only");
    }
  }
  if (c.heads % c.kv_heads != 0) {
    return config_error("num_key_value_heads", "must divide num_attention_heads");
  }
  if (c.head_dim % 2 != 0) return config_error("head_dim", "must be even for RoPE");
  return {};
}

}  // namespace

Result<ModelConfig> parse_model_config(std::string_view json_text) {
  JsonLimits limits;
  limits.max_depth = 16;
  limits.max_bytes = kMaxConfigBytes;
  auto parsed = parse_json(json_text, limits);
  if (!parsed.ok()) return invalid_argument("config.json: " + parsed.status().message());
  const Json& cfg = *parsed;
  if (!cfg.is_object()) return invalid_argument("config.json: must be a JSON object");
  const Json* type = cfg.find("model_type");
  const char* families = "\"gpt2\", \"llama\", \"mistral\", \"qwen2\", \"qwen3\" and \"gemma3_text\"";
  if (type == nullptr || !type->is_string()) {
    return config_error("model_type", std::string("is missing (this engine implements ") +
                                          families + ")");
  }
  ModelConfig c;
  bool known = false;
  for (Family f : {Family::kGpt2, Family::kLlama, Family::kMistral, Family::kQwen2,
                   Family::kQwen3, Family::kGemma3}) {
    if (type->as_string() == family_name(f)) {
      c.family = f;
      known = true;
    }
  }
  if (!known) {
    return config_error("model_type", "is \"" + type->as_string() + "\"; this engine implements " +
                                          families);
  }
  if (c.family == Family::kGpt2) {
    MH_ASSIGN_OR_RETURN(c.vocab_size, int_field(cfg, "vocab_size", kMaxVocab));
    MH_ASSIGN_OR_RETURN(c.hidden, int_field(cfg, "n_embd", kMaxDimension));
    MH_ASSIGN_OR_RETURN(c.layers, int_field(cfg, "n_layer", kMaxLayers));
    MH_ASSIGN_OR_RETURN(c.heads, int_field(cfg, "n_head", kMaxDimension));
    MH_ASSIGN_OR_RETURN(c.max_positions, int_field(cfg, "n_positions", kMaxDimension));
    MH_ASSIGN_OR_RETURN(c.ffn, int_field(cfg, "n_inner", kMaxDimension, 4 * c.hidden));
    MH_ASSIGN_OR_RETURN(c.norm_eps, positive_field(cfg, "layer_norm_epsilon", 1e-5));
    MH_ASSIGN_OR_RETURN(c.tie_embeddings, bool_field(cfg, "tie_word_embeddings", true));
    MH_TRY(string_choice(cfg, "activation_function", {"gelu_new", "gelu_pytorch_tanh"}, false));
    MH_ASSIGN_OR_RETURN(bool inverse_idx,
                        bool_field(cfg, "scale_attn_by_inverse_layer_idx", false));
    MH_ASSIGN_OR_RETURN(bool scale, bool_field(cfg, "scale_attn_weights", true));
    if (inverse_idx || !scale) {
      return config_error(inverse_idx ? "scale_attn_by_inverse_layer_idx" : "scale_attn_weights",
                          "asks for an attention scaling this engine does not implement");
    }
    if (c.hidden % c.heads != 0) return config_error("n_head", "must divide n_embd");
    c.kv_heads = c.heads;
    c.head_dim = c.hidden / c.heads;
    c.activation = Activation::kGeluTanh;
    c.qkv_bias = c.o_bias = true;
    c.sliding_layers.assign(static_cast<size_t>(c.layers), false);
  } else {
    MH_TRY(parse_llama_like(cfg, c));
  }
  MH_ASSIGN_OR_RETURN(auto bos, token_ids_field(cfg, "bos_token_id", c.vocab_size));
  if (bos.size() > 1) return config_error("bos_token_id", "must be one token id");
  c.bos_token_id = bos.empty() ? -1 : bos[0];
  MH_ASSIGN_OR_RETURN(c.eos_token_ids, token_ids_field(cfg, "eos_token_id", c.vocab_size));
  c.eos_token_id = c.eos_token_ids.empty() ? -1 : c.eos_token_ids[0];
  if (c.parameter_count() > kMaxParameters) {
    return invalid_argument("config.json: the model would have " +
                            std::to_string(c.parameter_count()) + " parameters, more than " +
                            std::to_string(kMaxParameters));
  }
  return c;
}

std::string model_config_json(const ModelConfig& c) {
  JsonObject o;
  auto put = [&](const char* key, Json v) { o.emplace_back(key, std::move(v)); };
  auto token = [](int64_t id) { return id < 0 ? Json() : Json(id); };
  auto str = [](std::string_view s) { return Json(std::string(s)); };
  put("architectures", Json(JsonArray{str(architecture(c.family))}));
  put("model_type", str(family_name(c.family)));
  put("vocab_size", Json(c.vocab_size));
  if (c.family == Family::kGpt2) {
    put("n_embd", Json(c.hidden));
    put("n_layer", Json(c.layers));
    put("n_head", Json(c.heads));
    put("n_positions", Json(c.max_positions));
    put("n_ctx", Json(c.max_positions));
    put("n_inner", Json(c.ffn));
    put("activation_function", str("gelu_new"));
    put("layer_norm_epsilon", Json(static_cast<double>(c.norm_eps)));
    put("resid_pdrop", Json(0.0));
    put("embd_pdrop", Json(0.0));
    put("attn_pdrop", Json(0.0));
  } else {
    const bool gemma = c.family == Family::kGemma3;
    put("hidden_size", Json(c.hidden));
    put("intermediate_size", Json(c.ffn));
    put("num_hidden_layers", Json(c.layers));
    put("num_attention_heads", Json(c.heads));
    put("num_key_value_heads", Json(c.kv_heads));
    put("head_dim", Json(c.head_dim));
    put("max_position_embeddings", Json(c.max_positions));
    put("rms_norm_eps", Json(static_cast<double>(c.norm_eps)));
    put("rope_theta", Json(static_cast<double>(c.rope_theta)));
    const RopeScaling& r = c.rope_scaling;
    if (r.type == RopeScaling::Type::kNone) {
      put("rope_scaling", Json());
    } else {
      JsonObject rs;
      rs.emplace_back("rope_type", str(rope_type_name(r.type)));
      rs.emplace_back("factor", Json(r.factor));
      if (r.type == RopeScaling::Type::kLlama3) {
        rs.emplace_back("low_freq_factor", Json(r.low_freq_factor));
        rs.emplace_back("high_freq_factor", Json(r.high_freq_factor));
      }
      if (r.type == RopeScaling::Type::kLlama3 || r.type == RopeScaling::Type::kYarn) {
        rs.emplace_back("original_max_position_embeddings", Json(r.original_max_positions));
      }
      if (r.type == RopeScaling::Type::kYarn) {
        rs.emplace_back("beta_fast", Json(r.beta_fast));
        rs.emplace_back("beta_slow", Json(r.beta_slow));
        if (r.attention_factor > 0) rs.emplace_back("attention_factor", Json(r.attention_factor));
        if (r.mscale > 0) rs.emplace_back("mscale", Json(r.mscale));
        if (r.mscale_all_dim > 0) rs.emplace_back("mscale_all_dim", Json(r.mscale_all_dim));
        rs.emplace_back("truncate", Json(r.truncate));
      }
      put("rope_scaling", Json(std::move(rs)));
    }
    put(gemma ? "hidden_activation" : "hidden_act", str(gemma ? "gelu_pytorch_tanh" : "silu"));
    if (c.family != Family::kQwen2) put("attention_bias", Json(c.o_bias));
    if (c.family == Family::kLlama) put("mlp_bias", Json(false));
    if (c.family != Family::kLlama) {
      put("sliding_window", c.sliding_window > 0 ? Json(c.sliding_window) : Json());
    }
    if (c.family == Family::kQwen2 || c.family == Family::kQwen3) {
      put("use_sliding_window", Json(c.sliding_window > 0));
      // Older transformers read the sliding layers from max_window_layers alone.
      int64_t first = c.layers;
      while (first > 0 && c.sliding(first - 1)) --first;
      put("max_window_layers", Json(first));
    }
    if (c.family != Family::kLlama && c.family != Family::kMistral) {
      JsonArray types;
      for (int64_t l = 0; l < c.layers; ++l) {
        types.push_back(str(c.sliding(l) ? "sliding_attention" : "full_attention"));
      }
      put("layer_types", Json(std::move(types)));
    }
    if (gemma) {
      put("query_pre_attn_scalar", Json(static_cast<double>(c.query_pre_attn_scalar)));
      put("rope_local_base_freq", Json(static_cast<double>(c.rope_local_theta)));
      int64_t pattern = 0;  // the pattern older transformers read, when the layers follow one
      for (int64_t l = 0; l < c.layers && pattern == 0; ++l) {
        if (!c.sliding(l)) pattern = l + 1;
      }
      bool regular = pattern > 0;
      for (int64_t l = 0; l < c.layers && regular; ++l) {
        regular = c.sliding(l) == ((l + 1) % pattern != 0);
      }
      if (regular) put("sliding_window_pattern", Json(pattern));
      auto cap = [](float v) { return v > 0 ? Json(static_cast<double>(v)) : Json(); };
      put("attn_logit_softcapping", cap(c.attn_softcap));
      put("final_logit_softcapping", cap(c.final_softcap));
    }
  }
  put("tie_word_embeddings", Json(c.tie_embeddings));
  put("bos_token_id", token(c.bos_token_id));
  if (c.eos_token_ids.size() > 1) {
    JsonArray ids;
    for (int64_t id : c.eos_token_ids) ids.push_back(Json(id));
    put("eos_token_id", Json(std::move(ids)));
  } else {
    put("eos_token_id", token(c.eos_token_id));
  }
  put("torch_dtype", str("float32"));
  return to_json(Json(std::move(o))) + "\n";
}

Backend::Rope rope_for(const ModelConfig& c, int64_t layer, int64_t seq_len) {
  Backend::Rope rope;
  const int64_t half = c.head_dim / 2;
  const bool local = c.rope_local_theta > 0 && c.sliding(layer);
  const RopeScaling scaling = local ? RopeScaling{} : c.rope_scaling;
  double base = local ? c.rope_local_theta : c.rope_theta;
  const double dim = static_cast<double>(c.head_dim);
  if (scaling.type == RopeScaling::Type::kDynamic) {
    // NTK-aware: the base grows once a sequence runs past max_position_embeddings.
    const double len = static_cast<double>(std::max(seq_len, c.max_positions));
    base *= std::pow(scaling.factor * len / static_cast<double>(c.max_positions) -
                         (scaling.factor - 1),
                     dim / (dim - 2));
  }
  // As transformers computes them: 1 / base^(2i / d), the exponent in float.
  std::vector<double> inv(static_cast<size_t>(half));
  for (int64_t i = 0; i < half; ++i) {
    const float exponent = static_cast<float>(2 * i) / static_cast<float>(c.head_dim);
    inv[static_cast<size_t>(i)] = 1.0 / std::pow(base, static_cast<double>(exponent));
  }
  const double factor = scaling.factor;
  const double original = static_cast<double>(scaling.original_max_positions);
  switch (scaling.type) {
    case RopeScaling::Type::kNone:
    case RopeScaling::Type::kDynamic:
      break;
    case RopeScaling::Type::kLinear:
      for (double& f : inv) f /= factor;
      break;
    case RopeScaling::Type::kLlama3: {
      // Long wavelengths slowed by the factor, short ones kept, the band between blended.
      const double low_wavelen = original / scaling.low_freq_factor;
      const double high_wavelen = original / scaling.high_freq_factor;
      for (double& f : inv) {
        const double wavelen = 2 * M_PI / f;
        if (wavelen > low_wavelen) {
          f /= factor;
        } else if (wavelen >= high_wavelen) {
          const double smooth = (original / wavelen - scaling.low_freq_factor) /
                                (scaling.high_freq_factor - scaling.low_freq_factor);
          f = (1 - smooth) * f / factor + smooth * f;
        }
      }
      break;
    }
    case RopeScaling::Type::kYarn: {
      auto mscale = [](double scale, double m) {
        return scale <= 1 ? 1.0 : 0.1 * m * std::log(scale) + 1.0;
      };
      double attention = scaling.attention_factor;
      if (attention <= 0) {
        attention = scaling.mscale > 0 && scaling.mscale_all_dim > 0
                        ? mscale(factor, scaling.mscale) / mscale(factor, scaling.mscale_all_dim)
                        : mscale(factor, 1);
      }
      rope.attention_factor = static_cast<float>(attention);
      auto correction_dim = [&](double rotations) {
        return dim * std::log(original / (rotations * 2 * M_PI)) / (2 * std::log(base));
      };
      double low = correction_dim(scaling.beta_fast), high = correction_dim(scaling.beta_slow);
      if (scaling.truncate) {
        low = std::floor(low);
        high = std::ceil(high);
      }
      low = std::max(low, 0.0);
      high = std::min(high, dim - 1);
      if (low == high) high += 0.001;
      for (int64_t i = 0; i < half; ++i) {
        const double ramp = std::clamp((static_cast<double>(i) - low) / (high - low), 0.0, 1.0);
        const double extrapolation = 1 - ramp;
        double& f = inv[static_cast<size_t>(i)];
        f = f / factor * (1 - extrapolation) + f * extrapolation;
      }
      break;
    }
  }
  for (double f : inv) rope.inv_freq.push_back(static_cast<float>(f));
  return rope;
}

Backend::AttentionShape attention_shape(const ModelConfig& c, int64_t layer) {
  Backend::AttentionShape s;
  s.heads = c.heads;
  s.kv_heads = c.kv_heads;
  s.head_dim = c.head_dim;
  s.window = c.sliding(layer) ? c.sliding_window : 0;
  s.scale = c.query_pre_attn_scalar > 0 ? 1.0f / std::sqrt(c.query_pre_attn_scalar) : 0.0f;
  s.softcap = c.attn_softcap;
  return s;
}

Result<GenerationConfig> parse_generation_config(std::string_view json_text, int64_t vocab_size) {
  constexpr std::string_view kFile = "generation_config.json";
  JsonLimits limits;
  limits.max_bytes = kMaxConfigBytes;
  auto parsed = parse_json(json_text, limits);
  if (!parsed.ok()) return invalid_argument(std::string(kFile) + ": " + parsed.status().message());
  const Json& cfg = *parsed;
  if (!cfg.is_object()) return invalid_argument(std::string(kFile) + ": must be a JSON object");
  const auto error = [&](std::string_view key, std::string_view what) {
    return config_error(key, what, kFile);
  };
  // What the publisher's sampling comes down to for one sequence, and what is only a
  // description (token ids of other roles, the writer's version, how transformers caches).
  // Search and the other processors are accepted at the values that leave them off.
  constexpr std::string_view kDescriptive[] = {
      "transformers_version", "_from_model_config", "cache_implementation", "use_cache",
      "output_attentions", "output_hidden_states", "output_scores", "output_logits",
      "return_dict_in_generate"};
  constexpr std::pair<std::string_view, double> kOffAt[] = {
      {"num_beams", 1},          {"num_beam_groups", 1},  {"num_return_sequences", 1},
      {"no_repeat_ngram_size", 0}, {"length_penalty", 1}, {"min_length", 0},
      {"min_new_tokens", 0},     {"typical_p", 1},        {"epsilon_cutoff", 0},
      {"eta_cutoff", 0},         {"diversity_penalty", 0}, {"encoder_repetition_penalty", 1},
      {"min_p", 0}};
  GenerationConfig g;
  for (const auto& [key, v] : cfg.as_object()) {
    if (v.is_null()) continue;
    if (key == "bos_token_id" || key == "pad_token_id" || key == "decoder_start_token_id") {
      MH_TRY(token_ids_field(cfg, key, vocab_size, kFile).status());
    } else if (key == "eos_token_id") {
      MH_ASSIGN_OR_RETURN(g.eos_token_ids, token_ids_field(cfg, key, vocab_size, kFile));
    } else if (key == "do_sample") {
      if (!v.is_bool()) return error(key, "must be true or false");
      g.greedy = !v.as_bool();
    } else if (key == "temperature" || key == "top_p" || key == "repetition_penalty") {
      const double d = v.is_number() ? v.as_double() : -1;
      const bool ok = key == "temperature" ? d >= 0 && d <= 100
                      : key == "top_p"     ? d > 0 && d <= 1
                                           : d > 0 && d <= 10;
      if (!ok) {
        return error(key, key == "temperature" ? "must be a number in [0, 100]"
                          : key == "top_p"     ? "must be a number in (0, 1]"
                                               : "must be a number in (0, 10]");
      }
      (key == "temperature" ? g.temperature : key == "top_p" ? g.top_p : g.repetition_penalty) =
          static_cast<float>(d);
    } else if (key == "top_k") {
      if (!v.is_int() || v.as_int() < 0) return error(key, "must be a non-negative integer");
      g.top_k = v.as_int();
    } else if (key == "max_new_tokens" || key == "max_length") {
      if (!v.is_int() || v.as_int() < 1) return error(key, "must be a positive integer");
      (key == "max_new_tokens" ? g.max_new_tokens : g.max_length) = v.as_int();
    } else if (std::find(std::begin(kDescriptive), std::end(kDescriptive), key) !=
               std::end(kDescriptive)) {
      continue;
    } else if (auto off = std::find_if(std::begin(kOffAt), std::end(kOffAt),
                                       [name = std::string_view(key)](const auto& o) {
                                         return o.first == name;
                                       });
               off != std::end(kOffAt)) {
      if (!v.is_number() || v.as_double() != off->second) {
        return error(key, "is set; this platform samples one sequence without it (only " +
                              fmt_number(off->second) + " is accepted)");
      }
    } else {
      return error(key, "is not a generation setting this platform implements");
    }
  }
  return g;
}

Result<GenerationConfig> load_generation_config(const std::filesystem::path& dir,
                                                int64_t vocab_size) {
  const auto file = dir / "generation_config.json";
  std::error_code ec;
  if (!std::filesystem::exists(file, ec)) return GenerationConfig{};
  MH_ASSIGN_OR_RETURN(std::string text, read_text_file(file, kMaxConfigBytes));
  return parse_generation_config(text, vocab_size);
}

Model::Model(ModelConfig config, Backend& backend) : config_(std::move(config)), backend_(backend) {
  build_parameters();
}
Model::~Model() = default;

// Every parameter of `c` in order, with its Hugging Face name and shape, and where each block's
// parameters are: the one place that knows the families' tensor names.
Model::Layout Model::lay_out(const ModelConfig& c,
                             const std::function<size_t(std::string, Shape, bool)>& add) {
  Layout out;
  const int64_t d = c.hidden, q = c.heads * c.head_dim, kv = c.kv_heads * c.head_dim;
  if (c.family == Family::kGpt2) {
    out.wte = add("transformer.wte.weight", {c.vocab_size, d}, true);
    out.wpe = add("transformer.wpe.weight", {c.max_positions, d}, true);
    for (int64_t l = 0; l < c.layers; ++l) {
      const std::string p = "transformer.h." + std::to_string(l) + ".";
      Layer y;
      y.ln1_w = add(p + "ln_1.weight", {d}, false);
      y.ln1_b = add(p + "ln_1.bias", {d}, false);
      y.qkv_w = add(p + "attn.c_attn.weight", {d, 3 * d}, true);
      y.qkv_b = add(p + "attn.c_attn.bias", {3 * d}, false);
      y.o_w = add(p + "attn.c_proj.weight", {d, d}, true);
      y.o_b = add(p + "attn.c_proj.bias", {d}, false);
      y.ln2_w = add(p + "ln_2.weight", {d}, false);
      y.ln2_b = add(p + "ln_2.bias", {d}, false);
      y.fc_w = add(p + "mlp.c_fc.weight", {d, c.ffn}, true);
      y.fc_b = add(p + "mlp.c_fc.bias", {c.ffn}, false);
      y.proj_w = add(p + "mlp.c_proj.weight", {c.ffn, d}, true);
      y.proj_b = add(p + "mlp.c_proj.bias", {d}, false);
      out.layers.push_back(y);
    }
    out.norm_w = add("transformer.ln_f.weight", {d}, false);
    out.norm_b = add("transformer.ln_f.bias", {d}, false);
  } else {
    out.wte = add("model.embed_tokens.weight", {c.vocab_size, d}, true);
    for (int64_t l = 0; l < c.layers; ++l) {
      const std::string p = "model.layers." + std::to_string(l) + ".";
      Layer y;
      y.ln1_w = add(p + "input_layernorm.weight", {d}, false);
      y.q = add(p + "self_attn.q_proj.weight", {q, d}, true);
      if (c.qkv_bias) y.q_b = add(p + "self_attn.q_proj.bias", {q}, false);
      y.k = add(p + "self_attn.k_proj.weight", {kv, d}, true);
      if (c.qkv_bias) y.k_b = add(p + "self_attn.k_proj.bias", {kv}, false);
      y.v = add(p + "self_attn.v_proj.weight", {kv, d}, true);
      if (c.qkv_bias) y.v_b = add(p + "self_attn.v_proj.bias", {kv}, false);
      y.o_w = add(p + "self_attn.o_proj.weight", {d, q}, true);
      if (c.o_bias) y.o_b = add(p + "self_attn.o_proj.bias", {d}, false);
      if (c.qk_norm) {
        y.q_norm = add(p + "self_attn.q_norm.weight", {c.head_dim}, false);
        y.k_norm = add(p + "self_attn.k_norm.weight", {c.head_dim}, false);
      }
      if (c.sandwich_norms) {
        // Gemma's post_attention_layernorm normalizes attention's output; the MLP's input norm
        // is pre_feedforward_layernorm.
        y.post_attn = add(p + "post_attention_layernorm.weight", {d}, false);
        y.ln2_w = add(p + "pre_feedforward_layernorm.weight", {d}, false);
        y.post_ff = add(p + "post_feedforward_layernorm.weight", {d}, false);
      } else {
        y.ln2_w = add(p + "post_attention_layernorm.weight", {d}, false);
      }
      y.gate = add(p + "mlp.gate_proj.weight", {c.ffn, d}, true);
      y.up = add(p + "mlp.up_proj.weight", {c.ffn, d}, true);
      y.proj_w = add(p + "mlp.down_proj.weight", {d, c.ffn}, true);
      out.layers.push_back(y);
    }
    out.norm_w = add("model.norm.weight", {d}, false);
  }
  out.head = c.tie_embeddings ? out.wte : add("lm_head.weight", {c.vocab_size, d}, true);
  return out;
}

void Model::build_parameters() {
  Layout layout = lay_out(config_, [&](std::string name, Shape shape, bool decay) {
    Parameter p;
    p.name = std::move(name);
    p.shape = std::move(shape);
    p.decay = decay;
    params_.push_back(std::move(p));
    return params_.size() - 1;
  });
  layers_ = std::move(layout.layers);
  wte_ = layout.wte;
  wpe_ = layout.wpe;
  norm_w_ = layout.norm_w;
  norm_b_ = layout.norm_b;
  head_ = layout.head;
}

Model::Layout Model::layout(const ModelConfig& config) {
  size_t next = 0;
  return lay_out(config, [&](std::string, Shape, bool) { return next++; });
}

std::vector<TensorSpec> Model::tensor_specs(const ModelConfig& config) {
  std::vector<TensorSpec> specs;
  lay_out(config, [&](std::string name, Shape shape, bool decay) {
    specs.push_back({std::move(name), std::move(shape), decay});
    return specs.size() - 1;
  });
  return specs;
}

Result<std::unique_ptr<Model>> Model::create(const ModelConfig& config, Backend& backend,
                                             uint64_t seed) {
  std::unique_ptr<Model> m(new Model(config, backend));
  Rng rng(seed);
  const double std_dev = 0.02;
  const double resid_std = std_dev / std::sqrt(2.0 * static_cast<double>(config.layers));
  for (auto& p : m->params_) {
    p.value = Tensor(p.shape);
    if (p.value.rank() == 1) {
      // Norms start as the identity (weight 1, or 0 under Gemma's 1 + w), biases at 0.
      const bool is_weight = p.name.ends_with(".weight");
      p.value.fill(is_weight ? 1.0f - config.norm_offset : 0.0f);
      continue;
    }
    const bool residual = p.name.ends_with("c_proj.weight") || p.name.ends_with("o_proj.weight") ||
                          p.name.ends_with("down_proj.weight");
    const double s = residual ? resid_std : std_dev;
    for (auto& v : p.value.values()) v = static_cast<float>(rng.normal() * s);
  }
  return m;
}

Parameter* Model::find(std::string_view name) {
  for (auto& p : params_) {
    if (p.name == name) return &p;
  }
  return nullptr;
}

void Model::zero_grad() {
  for (auto& p : trainable()) {
    if (p.grad.shape() == p.shape) {
      p.grad.fill(0.0f);
    } else {
      p.grad = Tensor(p.shape);
    }
  }
}

void Model::ensure_grads() {
  if (lora_config_) {  // the base is frozen: the adapters alone have gradients
    for (auto& p : lora_params_) {
      if (p.grad.shape() != p.shape) p.grad = Tensor(p.shape);
    }
    return;
  }
  if (has_half_weights()) {
    throw std::logic_error("a model with weights held at 16 bits is for inference; load it with "
                           "Weights::kFloat32 to train it");
  }
  for (auto& p : params_) {
    if (p.grad.shape() != p.shape) p.grad = Tensor(p.shape);
  }
}

bool Model::has_half_weights() const {
  return std::any_of(params_.begin(), params_.end(), [](const Parameter& p) { return !p.half.empty(); });
}

int64_t Model::weight_bytes() const {
  int64_t bytes = 0;
  for (const auto& p : params_) bytes += 4 * p.value.numel() + 2 * p.half.numel();
  return bytes;
}

void Model::to_half(HalfTensor::Format format) {
  for (auto& p : params_) {
    if (p.shape.size() != 2 || p.value.numel() == 0) continue;
    p.half = HalfTensor::of(p.value, format);
    p.value = Tensor();
    p.grad = Tensor();
  }
}

namespace {

// A weights file's error as the model's owner should read it: by the file's name in the model,
// not by where the platform keeps it.
Status weights_file_error(const std::filesystem::path& file, const Status& status) {
  std::string message = status.message();
  if (message.starts_with(file.string())) message.erase(0, file.string().size());
  if (!message.starts_with(":") && !message.starts_with(" ")) message = ": " + message;
  return invalid_argument(file.filename().string() + message);
}

}  // namespace

Result<std::vector<std::filesystem::path>> weight_files(const std::filesystem::path& dir) {
  std::vector<std::filesystem::path> files;
  const auto index = dir / "model.safetensors.index.json";
  if (!std::filesystem::exists(index)) return std::vector{dir / "model.safetensors"};
  MH_ASSIGN_OR_RETURN(Json idx, read_json_file(index));
  const Json* map = idx.find("weight_map");
  if (map == nullptr || !map->is_object()) {
    return invalid_argument("model.safetensors.index.json: \"weight_map\" must be an object");
  }
  std::set<std::string> names;
  for (const auto& [tensor, file] : map->as_object()) {
    if (!file.is_string() || file.as_string().empty() ||
        file.as_string().find('/') != std::string::npos || file.as_string()[0] == '.') {
      return invalid_argument("model.safetensors.index.json: the file for \"" + tensor +
                              "\" must be a plain file name in the model's directory");
    }
    if (names.insert(file.as_string()).second) files.push_back(dir / file.as_string());
  }
  if (files.empty()) return invalid_argument("model.safetensors.index.json: \"weight_map\" is empty");
  // The shards must hold what the index says they hold, and nothing else: a tensor in another
  // shard than its entry names is a checkpoint put together wrongly.
  size_t found = 0;
  for (const auto& file : files) {
    auto st = Safetensors::open(file);
    if (!st.ok()) return weights_file_error(file, st.status());
    const std::string shard = file.filename().string();
    for (const TensorEntry& e : st->tensors()) {
      const Json* entry = map->find(e.name);
      if (entry == nullptr) {
        return invalid_argument("model.safetensors.index.json does not list tensor \"" + e.name +
                                "\", which " + shard + " holds");
      }
      if (entry->as_string() != shard) {
        return invalid_argument("model.safetensors.index.json puts tensor \"" + e.name +
                                "\" in " + entry->as_string() + ", but " + shard + " holds it");
      }
      ++found;
    }
  }
  if (found != map->as_object().size()) {
    for (const auto& [tensor, file] : map->as_object()) {
      auto st = Safetensors::open(dir / file.as_string());
      if (st.ok() && st->find(tensor) == nullptr) {
        return invalid_argument("model.safetensors.index.json puts tensor \"" + tensor + "\" in " +
                                file.as_string() + ", which does not hold it");
      }
    }
  }
  return files;
}

Result<std::unique_ptr<Model>> Model::load(const std::filesystem::path& dir, Backend& backend,
                                           Weights weights) {
  MH_ASSIGN_OR_RETURN(std::string text, read_text_file(dir / "config.json", kMaxConfigBytes));
  MH_ASSIGN_OR_RETURN(ModelConfig config, parse_model_config(text));
  MH_ASSIGN_OR_RETURN(auto files, weight_files(dir));
  return load_weights(config, files, backend, weights);
}

Result<std::unique_ptr<Model>> Model::load_weights(const ModelConfig& config,
                                                   const std::vector<std::filesystem::path>& files,
                                                   Backend& backend, Weights weights) {
  std::unique_ptr<Model> m(new Model(config, backend));
  MH_TRY(m->read_weights(files, weights));
  return m;
}

Status check_weights(const ModelConfig& config, const std::vector<std::filesystem::path>& files,
                     const std::function<Status(size_t, const TensorEntry&)>& on_tensor) {
  const std::vector<TensorSpec> specs = Model::tensor_specs(config);
  std::map<std::string, size_t> wanted;
  for (size_t i = 0; i < specs.size(); ++i) wanted[specs[i].name] = i;
  std::set<std::string> seen;
  for (const auto& file : files) {
    auto st = Safetensors::open(file);
    if (!st.ok()) return weights_file_error(file, st.status());
    for (const TensorEntry& e : st->tensors()) {
      std::string name = e.name;
      // GPT-2 checkpoints from before GPT2LMHeadModel carry no "transformer." prefix, and some
      // carry the causal mask as a buffer; a tied head may be stored as well.
      if (config.family == Family::kGpt2 && !name.starts_with("transformer.") &&
          name != "lm_head.weight") {
        name = "transformer." + name;
      }
      if (config.family == Family::kGpt2 &&
          (name.ends_with(".attn.bias") || name.ends_with(".attn.masked_bias"))) {
        continue;
      }
      if (config.tie_embeddings && name == "lm_head.weight") continue;
      const std::string where = file.filename().string() + ": tensor \"" + e.name + "\"";
      auto it = wanted.find(name);
      if (it == wanted.end()) {
        return invalid_argument(where + " is not part of a " +
                                std::string(family_name(config.family)) +
                                " model with this config.json");
      }
      if (e.shape != specs[it->second].shape) {
        return invalid_argument(where + " has shape " + shape_string(e.shape) +
                                ", config.json needs " + shape_string(specs[it->second].shape));
      }
      if (e.dtype != DType::kF32 && e.dtype != DType::kF16 && e.dtype != DType::kBF16) {
        return invalid_argument(where + " is " + std::string(dtype_name(e.dtype)) +
                                "; weights must be F32, F16 or BF16");
      }
      if (!seen.insert(name).second) {
        return invalid_argument("tensor \"" + e.name + "\" appears in more than one file");
      }
      if (on_tensor) MH_TRY(on_tensor(it->second, e));
    }
  }
  for (const auto& spec : specs) {
    if (!seen.contains(spec.name)) {
      return invalid_argument("the weights have no tensor \"" + spec.name + "\"");
    }
  }
  return {};
}

Status Model::read_weights(const std::vector<std::filesystem::path>& files, Weights weights) {
  std::vector<Tensor> values(params_.size());
  std::vector<HalfTensor> halves(params_.size());
  MH_TRY(check_weights(config_, files, [&](size_t i, const TensorEntry& e) -> Status {
    const Shape& shape = params_[i].shape;
    if (weights == Weights::kAsStored && shape.size() == 2 &&
        (e.dtype == DType::kBF16 || e.dtype == DType::kF16)) {
      halves[i] = HalfTensor(shape, e.dtype == DType::kBF16 ? HalfTensor::Format::kBF16
                                                            : HalfTensor::Format::kF16);
      std::memcpy(halves[i].data(), e.bytes.data(), e.bytes.size());
      return {};
    }
    auto floats = to_float(e);
    if (!floats.ok())
      return invalid_argument("tensor \"" + e.name + "\": " + floats.status().message());
    values[i] = Tensor::of(shape, std::move(floats).value());
    return {};
  }));
  // Nothing changes unless every tensor was good.
  for (size_t i = 0; i < params_.size(); ++i) {
    params_[i].value = std::move(values[i]);
    params_[i].half = std::move(halves[i]);
    params_[i].grad = Tensor();
  }
  return {};
}

Result<ModelSummary> inspect_model(const std::filesystem::path& dir) {
  ModelSummary summary;
  MH_ASSIGN_OR_RETURN(std::string text, read_text_file(dir / "config.json", kMaxConfigBytes));
  MH_ASSIGN_OR_RETURN(summary.config, parse_model_config(text));
  MH_TRY(load_generation_config(dir, summary.config.vocab_size).status());
  MH_ASSIGN_OR_RETURN(auto files, weight_files(dir));
  MH_TRY(check_weights(summary.config, files, [&](size_t, const TensorEntry& e) -> Status {
    summary.weight_bytes += static_cast<int64_t>(e.bytes.size());
    return {};
  }));
  for (const auto& f : files) summary.weight_files.push_back(f.filename().string());
  MH_ASSIGN_OR_RETURN(Tokenizer tokenizer, Tokenizer::load(dir));
  summary.tokenizer_vocab = tokenizer.vocab_size();
  // Its chat template, when it has one, must parse (a template's unimplemented parts are named).
  MH_TRY(ChatTemplate::load(dir, tokenizer).status());
  if (summary.tokenizer_vocab > summary.config.vocab_size) {
    return invalid_argument("the tokenizer has " + std::to_string(summary.tokenizer_vocab) +
                            " tokens but config.json's vocab_size is " +
                            std::to_string(summary.config.vocab_size));
  }
  summary.parameters = summary.config.parameter_count();
  return summary;
}

Status Model::save_weights(const std::filesystem::path& file) const {
  std::vector<std::vector<uint8_t>> bytes;
  std::vector<TensorToWrite> tensors;
  bytes.reserve(params_.size());
  for (const auto& p : params_) {
    TensorToWrite t;
    t.name = p.name;
    t.shape = p.shape;
    if (p.half.empty()) {
      bytes.push_back(as_bytes(p.value));
      t.dtype = DType::kF32;
    } else {
      const auto* b = reinterpret_cast<const uint8_t*>(p.half.data());
      bytes.emplace_back(b, b + 2 * p.half.numel());
      t.dtype = p.half.format() == HalfTensor::Format::kBF16 ? DType::kBF16 : DType::kF16;
    }
    t.bytes = bytes.back();
    tensors.push_back(std::move(t));
  }
  return write_safetensors(file, std::move(tensors), {{"format", "pt"}});
}

Status Model::save(const std::filesystem::path& dir) const {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return internal_error("cannot create " + dir.string() + ": " + ec.message());
  MH_TRY(save_weights(dir / "model.safetensors"));
  return write_file_atomically(dir / "config.json", model_config_json(config_));
}

// y = x @ W (+ b). gpt2's Conv1D stores W as [in, out]; Linear (every other family, and every
// head) as [out, in].
void Model::linear(const Tensor& x, size_t w, size_t b, Tensor& y) {
  const bool out_in = config_.family != Family::kGpt2 || w == head_;
  if (params_[w].half.empty()) {
    backend_.gemm(false, out_in, 1.0f, x, params_[w].value, 0.0f, y);
  } else {
    backend_.gemm_half(out_in, 1.0f, x, params_[w].half, 0.0f, y);
  }
  if (b != kNone) backend_.add_bias(y, params_[b].value);
  if (!adapter_of_.empty() && adapter_of_[w] >= 0) lora_forward(x, w, y);
  if (!served_.empty()) serve_lora(x, w, y);
}

void Model::linear_backward(const Tensor& dy, const Tensor& x, size_t w, size_t b, Tensor& dx,
                            bool accumulate_dx) {
  Parameter& p = params_[w];
  const bool out_in = config_.family != Family::kGpt2 || w == head_;
  if (lora_config_) {  // frozen: dx alone, through the weight as it is held
    const float beta = accumulate_dx ? 1.0f : 0.0f;
    if (p.half.empty()) {
      backend_.gemm(false, !out_in, 1.0f, dy, p.value, beta, dx);
    } else {
      backend_.gemm_half(!out_in, 1.0f, dy, p.half, beta, dx);
    }
    if (adapter_of_[w] >= 0) lora_backward(dy, x, w, dx);
    return;
  }
  if (out_in) {
    backend_.gemm(true, false, 1.0f, dy, x, 1.0f, p.grad);  // dW[out, in] += dy^T x
    backend_.gemm(false, false, 1.0f, dy, p.value, accumulate_dx ? 1.0f : 0.0f, dx);
  } else {
    backend_.gemm(true, false, 1.0f, x, dy, 1.0f, p.grad);  // dW[in, out] += x^T dy
    backend_.gemm(false, true, 1.0f, dy, p.value, accumulate_dx ? 1.0f : 0.0f, dx);
  }
  if (b != kNone) backend_.bias_backward(dy, params_[b].grad);
}

namespace {

// Views a [N, k * width] tensor as [N * k, width] for the length of a scope (a norm over each
// head of q or k), and back.
class RowsOf {
 public:
  RowsOf(std::initializer_list<Tensor*> tensors, int64_t width) {
    for (Tensor* t : tensors) {
      if (t->numel() == 0) continue;
      shapes_.emplace_back(t, t->shape());
      t->reshape({t->numel() / width, width});
    }
  }
  ~RowsOf() {
    for (auto& [t, shape] : shapes_) t->reshape(shape);
  }
  RowsOf(const RowsOf&) = delete;
  RowsOf& operator=(const RowsOf&) = delete;

 private:
  std::vector<std::pair<Tensor*, Shape>> shapes_;
};

}  // namespace

const Tensor& Model::norm_weight(size_t w) {
  if (config_.norm_offset == 0.0f) return params_[w].value;
  offset_weight_ = params_[w].value;
  for (float& v : offset_weight_.values()) v += config_.norm_offset;
  return offset_weight_;
}

void Model::rmsnorm(Tensor& x, size_t w, int64_t width, Tensor& out, Tensor& rstd) {
  const Tensor& weight = norm_weight(w);
  const Shape shape = x.shape();
  {
    RowsOf view({&x}, width);
    backend_.rmsnorm(x, weight, config_.norm_eps, out, rstd);
  }
  out.reshape(shape);
}

void Model::rmsnorm_backward(Tensor& dout, Tensor& x, size_t w, int64_t width, const Tensor& rstd,
                             Tensor& dx) {
  // d(offset + w) = dw: the gradient goes to the stored weight as it is.
  const Tensor& weight = norm_weight(w);
  const Shape shape = x.shape();
  {
    RowsOf view({&dout, &x}, width);
    backend_.rmsnorm_backward(dout, x, weight, rstd, dx, grad_of(w));
  }
  dx.reshape(shape);
}

void Model::final_norm(Tensor& x, Tensor& out, Tensor& mean, Tensor& rstd) {
  if (config_.family == Family::kGpt2) {
    backend_.layernorm(x, params_[norm_w_].value, params_[norm_b_].value, config_.norm_eps, out,
                       mean, rstd);
  } else {
    rmsnorm(x, norm_w_, config_.hidden, out, rstd);
  }
}

void Model::head_logits(const Tensor& x, Tensor& logits) {
  linear(x, head_, kNone, logits);
  if (config_.final_softcap > 0.0f) backend_.softcap(logits, config_.final_softcap);
}

void Model::embed(const std::vector<int32_t>& ids, const std::vector<int32_t>& positions,
                  Tensor& x) {
  const auto lookup = [&](const Parameter& table, const std::vector<int32_t>& rows, Tensor& out) {
    if (table.half.empty()) {
      backend_.embedding(table.value, rows, out);
    } else {
      backend_.embedding_half(table.half, rows, out);
    }
  };
  lookup(params_[wte_], ids, x);
  if (config_.embedding_scale != 1.0f) backend_.scale(x, config_.embedding_scale);
  if (config_.family == Family::kGpt2) {
    Tensor pos;
    lookup(params_[wpe_], positions, pos);
    backend_.add(x, pos, x);
  }
}

namespace {

// Rows [begin, begin + n) of a 2-D tensor, copied out, and copied back in.
Tensor rows(const Tensor& t, int64_t begin, int64_t n) {
  const int64_t w = t.dim(1);
  Tensor r({n, w});
  std::copy_n(t.data() + begin * w, n * w, r.data());
  return r;
}
void put_rows(Tensor& t, int64_t begin, const Tensor& r) {
  std::copy_n(r.data(), r.numel(), t.data() + begin * t.dim(1));
}

// Splits gpt2's fused [N, 3C] projection into q, k, v, and joins their gradients back.
void split3(const Tensor& qkv, Tensor& q, Tensor& k, Tensor& v) {
  const int64_t n = qkv.dim(0), c = qkv.dim(1) / 3;
  for (Tensor* t : {&q, &k, &v}) {
    if (t->shape() != Shape{n, c}) *t = Tensor({n, c});
  }
  for (int64_t r = 0; r < n; ++r) {
    const float* src = qkv.data() + r * 3 * c;
    std::copy_n(src, c, q.data() + r * c);
    std::copy_n(src + c, c, k.data() + r * c);
    std::copy_n(src + 2 * c, c, v.data() + r * c);
  }
}
void join3(const Tensor& q, const Tensor& k, const Tensor& v, Tensor& qkv) {
  const int64_t n = q.dim(0), c = q.dim(1);
  if (qkv.shape() != Shape{n, 3 * c}) qkv = Tensor({n, 3 * c});
  for (int64_t r = 0; r < n; ++r) {
    float* dst = qkv.data() + r * 3 * c;
    std::copy_n(q.data() + r * c, c, dst);
    std::copy_n(k.data() + r * c, c, dst + c);
    std::copy_n(v.data() + r * c, c, dst + 2 * c);
  }
}

int64_t max_position(const std::vector<int32_t>& positions) {
  return positions.empty() ? 0 : *std::max_element(positions.begin(), positions.end());
}

}  // namespace

// One block on a.x_in, leaving the result in a.x_out. Without `steps` the rows are `batch_`
// sequences of `seq_len_` tokens attending among themselves; with them, each step's rows
// (starting at (*step_rows)[s]) continue that step's cached sequence.
void Model::block_forward(int64_t l, Activations& a, const std::vector<int32_t>& positions,
                          const std::vector<Step>* steps, const std::vector<int64_t>* step_rows) {
  const Layer& y = layers_[static_cast<size_t>(l)];
  const ModelConfig& c = config_;
  const bool gpt2 = c.family == Family::kGpt2;
  if (gpt2) {
    backend_.layernorm(a.x_in, params_[y.ln1_w].value, params_[y.ln1_b].value, c.norm_eps, a.n1,
                       a.mean1, a.rstd1);
    linear(a.n1, y.qkv_w, y.qkv_b, a.qkv);
    split3(a.qkv, a.q, a.k, a.v);
  } else {
    rmsnorm(a.x_in, y.ln1_w, c.hidden, a.n1, a.rstd1);
    linear(a.n1, y.q, y.q_b, c.qk_norm ? a.q_raw : a.q);
    linear(a.n1, y.k, y.k_b, c.qk_norm ? a.k_raw : a.k);
    linear(a.n1, y.v, y.v_b, a.v);
    if (c.qk_norm) {
      rmsnorm(a.q_raw, y.q_norm, c.head_dim, a.q, a.q_rstd);
      rmsnorm(a.k_raw, y.k_norm, c.head_dim, a.k, a.k_rstd);
    }
    const Backend::Rope rope = rope_for(c, l, max_position(positions) + 1);
    backend_.rope(a.q, c.head_dim, positions, rope);
    backend_.rope(a.k, c.head_dim, positions, rope);
  }
  Backend::AttentionShape s = attention_shape(c, l);
  if (steps == nullptr) {
    s.batch = batch_;
    s.q_len = seq_len_;
    s.kv_len = seq_len_;
    backend_.attention(s, a.q, a.k, a.v, a.att, a.lse);
  } else {
    if (a.att.shape() != a.q.shape()) a.att = Tensor(a.q.shape());
    Tensor out, lse;
    for (size_t i = 0; i < steps->size(); ++i) {
      KvCache& cache = *(*steps)[i].cache;
      const int64_t begin = (*step_rows)[i], n = static_cast<int64_t>((*steps)[i].tokens.size());
      Tensor& kc = cache.k_[static_cast<size_t>(l)];
      Tensor& vc = cache.v_[static_cast<size_t>(l)];
      const int64_t kw = kc.dim(1);
      std::copy_n(a.k.data() + begin * kw, n * kw, kc.data() + cache.length_ * kw);
      std::copy_n(a.v.data() + begin * kw, n * kw, vc.data() + cache.length_ * kw);
      s.batch = 1;
      s.q_len = n;
      s.kv_len = cache.length_ + n;
      backend_.attention(s, rows(a.q, begin, n), kc, vc, out, lse);
      put_rows(a.att, begin, out);
    }
  }
  linear(a.att, y.o_w, y.o_b, a.o);
  if (c.sandwich_norms) {
    rmsnorm(a.o, y.post_attn, c.hidden, a.tmp, a.o_rstd);
    backend_.add(a.x_in, a.tmp, a.x_mid);
  } else {
    backend_.add(a.x_in, a.o, a.x_mid);
  }
  if (gpt2) {
    backend_.layernorm(a.x_mid, params_[y.ln2_w].value, params_[y.ln2_b].value, c.norm_eps, a.n2,
                       a.mean2, a.rstd2);
    linear(a.n2, y.fc_w, y.fc_b, a.h);
    backend_.gelu(a.h, a.act);
  } else {
    rmsnorm(a.x_mid, y.ln2_w, c.hidden, a.n2, a.rstd2);
    linear(a.n2, y.gate, kNone, a.h);
    linear(a.n2, y.up, kNone, a.up);
    if (c.activation == Activation::kGeluTanh) {
      backend_.gelu_glu(a.h, a.up, a.act);
    } else {
      backend_.swiglu(a.h, a.up, a.act);
    }
  }
  linear(a.act, y.proj_w, y.proj_b, a.m);
  if (c.sandwich_norms) {
    rmsnorm(a.m, y.post_ff, c.hidden, a.tmp, a.m_rstd);
    backend_.add(a.x_mid, a.tmp, a.x_out);
  } else {
    backend_.add(a.x_mid, a.m, a.x_out);
  }
}

float Model::forward(const std::vector<int32_t>& ids, int64_t batch, int64_t seq_len,
                     const std::vector<int32_t>& targets, int64_t denominator,
                     float grad_weight) {
  if (batch < 1 || seq_len < 1 || static_cast<int64_t>(ids.size()) != batch * seq_len) {
    throw ShapeError("forward: " + std::to_string(ids.size()) + " ids are not " +
                     std::to_string(batch) + " rows of " + std::to_string(seq_len));
  }
  if (seq_len > config_.max_positions) {
    throw ShapeError("forward: sequence of " + std::to_string(seq_len) +
                     " tokens is longer than max_positions " +
                     std::to_string(config_.max_positions));
  }
  if (!targets.empty() && targets.size() != ids.size()) {
    throw ShapeError("forward: " + std::to_string(targets.size()) + " targets for " +
                     std::to_string(ids.size()) + " ids");
  }
  if (!targets.empty()) ensure_grads();
  training_pass_ = !targets.empty();
  if (training_pass_ && lora_config_ && lora_config_->dropout > 0 && lora_dropout_) {
    ++lora_draws_;  // this pass's masks
  }
  ids_ = ids;
  batch_ = batch;
  seq_len_ = seq_len;
  positions_.resize(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    positions_[i] = static_cast<int32_t>(static_cast<int64_t>(i) % seq_len);
  }
  acts_.resize(static_cast<size_t>(config_.layers));
  embed(ids_, positions_, acts_[0].x_in);
  for (int64_t l = 0; l < config_.layers; ++l) {
    Activations& a = acts_[static_cast<size_t>(l)];
    block_forward(l, a, positions_, nullptr, nullptr);
    Tensor& next = l + 1 < config_.layers ? acts_[static_cast<size_t>(l + 1)].x_in : final_in_;
    next = a.x_out;
  }
  final_norm(final_in_, final_out_, final_mean_, final_rstd_);
  have_grad_ = !targets.empty();
  if (targets.empty()) return 0.0f;
  if (denominator <= 0) {
    denominator = std::count_if(targets.begin(), targets.end(), [](int32_t t) { return t >= 0; });
  }
  // The classifier, a chunk of rows at a time: logits, loss, and the gradient into the head and
  // into the final hidden states, so that [rows, vocab] is never held for the whole batch.
  const int64_t n = static_cast<int64_t>(ids.size());
  const int64_t chunk = std::max<int64_t>(16, (int64_t{1} << 22) / config_.vocab_size);
  dfinal_ = Tensor(final_out_.shape());
  double loss = 0;
  Tensor logits, dlogits, dx;
  right_tokens_ = 0;
  for (int64_t begin = 0; begin < n; begin += chunk) {
    const int64_t m = std::min(chunk, n - begin);
    const Tensor x = rows(final_out_, begin, m);
    head_logits(x, logits);
    const std::vector<int32_t> t(targets.begin() + begin, targets.begin() + begin + m);
    const int64_t vocab = config_.vocab_size;
    for (int64_t r = 0; r < m; ++r) {  // the target is the most likely token
      if (t[static_cast<size_t>(r)] < 0) continue;
      const float* row = logits.data() + r * vocab;
      right_tokens_ += std::max_element(row, row + vocab) - row == t[static_cast<size_t>(r)];
    }
    loss += backend_.cross_entropy(logits, t, dlogits, denominator);
    if (grad_weight != 1.0f) {
      for (float& g : dlogits.values()) g *= grad_weight;
    }
    if (config_.final_softcap > 0.0f) {
      backend_.softcap_backward(dlogits, logits, config_.final_softcap);
    }
    linear_backward(dlogits, x, head_, kNone, dx, false);
    put_rows(dfinal_, begin, dx);
  }
  return static_cast<float>(loss);
}

Tensor Model::logits() {
  Tensor out;
  head_logits(final_out_, out);
  return out;
}

void Model::backward(const std::function<void(size_t, size_t)>& ready) {
  if (!have_grad_) throw ShapeError("backward: the last forward had no targets");
  have_grad_ = false;
  const ModelConfig& c = config_;
  const bool gpt2 = c.family == Family::kGpt2;
  Tensor dx, dn, dtmp, dbranch, dact, dh, dup, datt, dq, dk, dv, dqkv, draw;
  if (gpt2) {
    backend_.layernorm_backward(dfinal_, final_in_, params_[norm_w_].value, final_mean_,
                                final_rstd_, dx, grad_of(norm_w_), grad_of(norm_b_));
  } else {
    rmsnorm_backward(dfinal_, final_in_, norm_w_, c.hidden, final_rstd_, dx);
  }
  // Every layer's parameters are contiguous: from its first norm to the next layer's.
  // With adapters, trainable() is what has gradients, and they are all handed over at the end.
  auto finished = [&](size_t begin, size_t end) {
    if (ready && !lora_config_) ready(begin, end);
  };
  finished(norm_w_, params_.size());
  const int64_t seq_len = max_position(positions_) + 1;
  for (int64_t l = c.layers - 1; l >= 0; --l) {
    const Layer& y = layers_[static_cast<size_t>(l)];
    Activations& a = acts_[static_cast<size_t>(l)];
    // dx is the gradient of the block's output; the MLP's residual branch first.
    const Tensor* dm = &dx;
    if (c.sandwich_norms) {
      rmsnorm_backward(dx, a.m, y.post_ff, c.hidden, a.m_rstd, dbranch);
      dm = &dbranch;
    }
    linear_backward(*dm, a.act, y.proj_w, y.proj_b, dact, false);
    if (gpt2) {
      backend_.gelu_backward(dact, a.h, dh);
      linear_backward(dh, a.n2, y.fc_w, y.fc_b, dn, false);
      backend_.layernorm_backward(dn, a.x_mid, params_[y.ln2_w].value, a.mean2, a.rstd2, dtmp,
                                  grad_of(y.ln2_w), grad_of(y.ln2_b));
    } else {
      if (c.activation == Activation::kGeluTanh) {
        backend_.gelu_glu_backward(dact, a.h, a.up, dh, dup);
      } else {
        backend_.swiglu_backward(dact, a.h, a.up, dh, dup);
      }
      linear_backward(dh, a.n2, y.gate, kNone, dn, false);
      linear_backward(dup, a.n2, y.up, kNone, dn, true);
      rmsnorm_backward(dn, a.x_mid, y.ln2_w, c.hidden, a.rstd2, dtmp);
    }
    backend_.add(dx, dtmp, dx);  // the gradient at x_mid
    // The attention branch.
    const Tensor* dout = &dx;
    if (c.sandwich_norms) {
      rmsnorm_backward(dx, a.o, y.post_attn, c.hidden, a.o_rstd, dbranch);
      dout = &dbranch;
    }
    linear_backward(*dout, a.att, y.o_w, y.o_b, datt, false);
    Backend::AttentionShape s = attention_shape(c, l);
    s.batch = batch_;
    s.q_len = seq_len_;
    s.kv_len = seq_len_;
    backend_.attention_backward(s, datt, a.q, a.k, a.v, a.att, a.lse, dq, dk, dv);
    if (gpt2) {
      join3(dq, dk, dv, dqkv);
      linear_backward(dqkv, a.n1, y.qkv_w, y.qkv_b, dn, false);
      backend_.layernorm_backward(dn, a.x_in, params_[y.ln1_w].value, a.mean1, a.rstd1, dtmp,
                                  grad_of(y.ln1_w), grad_of(y.ln1_b));
    } else {
      const Backend::Rope rope = rope_for(c, l, seq_len);
      backend_.rope_backward(dq, c.head_dim, positions_, rope);
      backend_.rope_backward(dk, c.head_dim, positions_, rope);
      if (c.qk_norm) {
        rmsnorm_backward(dq, a.q_raw, y.q_norm, c.head_dim, a.q_rstd, draw);
        std::swap(dq, draw);
        rmsnorm_backward(dk, a.k_raw, y.k_norm, c.head_dim, a.k_rstd, draw);
        std::swap(dk, draw);
      }
      linear_backward(dq, a.n1, y.q, y.q_b, dn, false);
      linear_backward(dk, a.n1, y.k, y.k_b, dn, true);
      linear_backward(dv, a.n1, y.v, y.v_b, dn, true);
      rmsnorm_backward(dn, a.x_in, y.ln1_w, c.hidden, a.rstd1, dtmp);
    }
    backend_.add(dx, dtmp, dx);  // the gradient at x_in
    finished(y.ln1_w, l + 1 < c.layers ? layers_[static_cast<size_t>(l + 1)].ln1_w : norm_w_);
  }
  if (lora_config_) {  // the embeddings are frozen: the adapters' gradients are all done
    if (ready) ready(0, lora_params_.size());
    return;
  }
  if (c.embedding_scale != 1.0f) backend_.scale(dx, c.embedding_scale);
  backend_.embedding_backward(dx, ids_, params_[wte_].grad);
  if (gpt2) backend_.embedding_backward(dx, positions_, params_[wpe_].grad);
  finished(0, layers_[0].ln1_w);
}

std::vector<float> KvCache::rows(int64_t from, int64_t n) const {
  std::vector<float> out;
  for (size_t l = 0; l < k_.size(); ++l) {
    for (const Tensor* t : {&k_[l], &v_[l]}) {
      const int64_t width = t->shape()[1];
      out.insert(out.end(), t->data() + from * width, t->data() + (from + n) * width);
    }
  }
  return out;
}

void KvCache::set_rows(int64_t at, int64_t n, const std::vector<float>& data) {
  size_t offset = 0;
  for (size_t l = 0; l < k_.size(); ++l) {
    for (Tensor* t : {&k_[l], &v_[l]}) {
      const auto count = static_cast<size_t>(n * t->shape()[1]);
      std::copy_n(data.data() + offset, count, t->data() + at * t->shape()[1]);
      offset += count;
    }
  }
  length_ = std::max(length_, at + n);
}

KvCache Model::new_cache(int64_t capacity) const {
  capacity = std::clamp<int64_t>(capacity, 1, config_.max_positions);
  KvCache cache;
  for (int64_t l = 0; l < config_.layers; ++l) {
    cache.k_.emplace_back(Shape{capacity, config_.kv_heads * config_.head_dim});
    cache.v_.emplace_back(Shape{capacity, config_.kv_heads * config_.head_dim});
  }
  return cache;
}

Tensor Model::forward_cached(std::vector<Step>& steps) {
  training_pass_ = false;
  std::vector<int32_t> ids, positions;
  std::vector<int64_t> step_rows, last_rows;
  for (auto& st : steps) {
    if (st.cache == nullptr || st.tokens.empty()) {
      throw ShapeError("forward_cached: every step needs a cache and at least one token");
    }
    const int64_t capacity = st.cache->k_.empty() ? 0 : st.cache->k_[0].dim(0);
    if (st.cache->length_ + static_cast<int64_t>(st.tokens.size()) > capacity) {
      throw ShapeError("forward_cached: " + std::to_string(st.cache->length_) + " cached + " +
                       std::to_string(st.tokens.size()) + " new tokens exceed the cache's " +
                       std::to_string(capacity) + " positions");
    }
    if (st.adapter != nullptr && st.adapter->of.size() != params_.size()) {
      throw ShapeError("forward_cached: a step's adapter was read by another model");
    }
    step_rows.push_back(static_cast<int64_t>(ids.size()));
    for (size_t i = 0; i < st.tokens.size(); ++i) {
      ids.push_back(st.tokens[i]);
      positions.push_back(static_cast<int32_t>(st.cache->length_ + static_cast<int64_t>(i)));
    }
    last_rows.push_back(static_cast<int64_t>(ids.size()) - 1);
  }
  // The adapters the steps name, each with its rows.
  served_.clear();
  for (size_t i = 0; i < steps.size(); ++i) {
    const LoraWeights* adapter = steps[i].adapter;
    if (adapter == nullptr) continue;
    auto g = std::find_if(served_.begin(), served_.end(),
                          [&](const ServedGroup& s) { return s.adapter == adapter; });
    if (g == served_.end()) g = served_.insert(served_.end(), ServedGroup{adapter, {}});
    const int64_t begin = step_rows[i], n = static_cast<int64_t>(steps[i].tokens.size());
    g->rows.emplace_back(begin, begin + n);
  }
  struct Unserve {
    std::vector<ServedGroup>& served;
    ~Unserve() { served.clear(); }
  } unserve{served_};
  Activations a;
  embed(ids, positions, a.x_in);
  for (int64_t l = 0; l < config_.layers; ++l) {
    block_forward(l, a, positions, &steps, &step_rows);
    std::swap(a.x_in, a.x_out);
  }
  for (auto& st : steps) st.cache->length_ += static_cast<int64_t>(st.tokens.size());
  // Only each step's last row goes through the final norm and the head.
  Tensor last({static_cast<int64_t>(steps.size()), config_.hidden});
  for (size_t i = 0; i < last_rows.size(); ++i) {
    std::copy_n(a.x_in.data() + last_rows[i] * config_.hidden, config_.hidden,
                last.data() + static_cast<int64_t>(i) * config_.hidden);
  }
  Tensor normed, mean, rstd, out;
  final_norm(last, normed, mean, rstd);
  head_logits(normed, out);
  return out;
}

}  // namespace mh::engine
