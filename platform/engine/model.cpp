#include "platform/engine/model.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <set>

#include "platform/engine/chat_template.h"
#include "platform/engine/files.h"
#include "platform/engine/random.h"
#include "platform/engine/safetensors.h"
#include "platform/engine/tokenizer.h"

namespace mh::engine {

// What one block's forward keeps for its backward pass.
struct Model::Activations {
  Tensor x_in, n1, mean1, rstd1, qkv, q, k, v, att, lse, tmp;
  Tensor x_mid, n2, mean2, rstd2, h, up, act, x_out;
};

namespace {

constexpr int64_t kMaxDimension = 1 << 20;  // hidden, ffn, positions
constexpr int64_t kMaxVocab = 1 << 22;
constexpr int64_t kMaxLayers = 1024;
constexpr int64_t kMaxParameters = int64_t{1} << 37;
constexpr size_t kMaxConfigBytes = 1 << 20;

Status config_error(std::string_view field, std::string_view what) {
  return invalid_argument("config.json: \"" + std::string(field) + "\" " + std::string(what),
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
Result<std::vector<int64_t>> token_ids_field(const Json& cfg, std::string_view key, int64_t vocab) {
  const Json* v = cfg.find(key);
  std::vector<int64_t> out;
  if (v == nullptr || v->is_null()) return out;
  const JsonArray one{*v};
  const JsonArray& list = v->is_array() ? v->as_array() : one;
  if (list.empty() || list.size() > 64) return config_error(key, "must list 1 to 64 token ids");
  for (const Json& id : list) {
    if (!id.is_int() || id.as_int() < 0 || id.as_int() >= vocab) {
      return config_error(key, "must be a token id below vocab_size");
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

std::vector<uint8_t> as_bytes(const Tensor& t) {
  std::vector<uint8_t> b(static_cast<size_t>(t.numel()) * 4);
  std::memcpy(b.data(), t.data(), b.size());
  return b;
}

}  // namespace

std::string_view family_name(Family family) { return family == Family::kGpt2 ? "gpt2" : "llama"; }

int64_t ModelConfig::parameter_count() const {
  const int64_t c = hidden, q = heads * head_dim, kv = kv_heads * head_dim;
  int64_t per_layer, rest;
  if (family == Family::kGpt2) {
    per_layer = 4 * c + c * 3 * c + 3 * c + c * c + c + c * ffn + ffn + ffn * c + c;
    rest = vocab_size * c + max_positions * c + 2 * c;
  } else {
    per_layer = 2 * c + c * q + 2 * c * kv + q * c + 3 * c * ffn;
    rest = vocab_size * c + c;
  }
  return layers * per_layer + rest + (tie_embeddings ? 0 : vocab_size * c);
}

Result<ModelConfig> parse_model_config(std::string_view json_text) {
  JsonLimits limits;
  limits.max_depth = 16;
  limits.max_bytes = kMaxConfigBytes;
  auto parsed = parse_json(json_text, limits);
  if (!parsed.ok()) return invalid_argument("config.json: " + parsed.status().message());
  const Json& cfg = *parsed;
  if (!cfg.is_object()) return invalid_argument("config.json: must be a JSON object");
  const Json* type = cfg.find("model_type");
  if (type == nullptr || !type->is_string()) {
    return config_error("model_type", "is missing (expected \"gpt2\" or \"llama\")");
  }
  ModelConfig c;
  if (type->as_string() == "gpt2") {
    c.family = Family::kGpt2;
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
  } else if (type->as_string() == "llama") {
    c.family = Family::kLlama;
    MH_ASSIGN_OR_RETURN(c.vocab_size, int_field(cfg, "vocab_size", kMaxVocab));
    MH_ASSIGN_OR_RETURN(c.hidden, int_field(cfg, "hidden_size", kMaxDimension));
    MH_ASSIGN_OR_RETURN(c.ffn, int_field(cfg, "intermediate_size", kMaxDimension));
    MH_ASSIGN_OR_RETURN(c.layers, int_field(cfg, "num_hidden_layers", kMaxLayers));
    MH_ASSIGN_OR_RETURN(c.heads, int_field(cfg, "num_attention_heads", kMaxDimension));
    MH_ASSIGN_OR_RETURN(c.kv_heads, int_field(cfg, "num_key_value_heads", kMaxDimension, c.heads));
    MH_ASSIGN_OR_RETURN(c.max_positions, int_field(cfg, "max_position_embeddings", kMaxDimension));
    if (c.hidden % c.heads != 0 && cfg.find("head_dim") == nullptr) {
      return config_error("num_attention_heads", "must divide hidden_size (or give head_dim)");
    }
    MH_ASSIGN_OR_RETURN(c.head_dim, int_field(cfg, "head_dim", kMaxDimension, c.hidden / c.heads));
    MH_ASSIGN_OR_RETURN(c.norm_eps, positive_field(cfg, "rms_norm_eps", 1e-6));
    MH_ASSIGN_OR_RETURN(c.rope_theta, positive_field(cfg, "rope_theta", 10000.0));
    MH_ASSIGN_OR_RETURN(c.tie_embeddings, bool_field(cfg, "tie_word_embeddings", false));
    MH_TRY(string_choice(cfg, "hidden_act", {"silu"}, false));
    for (const char* key : {"attention_bias", "mlp_bias"}) {
      MH_ASSIGN_OR_RETURN(bool bias, bool_field(cfg, key, false));
      if (bias) return config_error(key, "is true; this engine implements llama without biases");
    }
    const Json* scaling = cfg.find("rope_scaling");
    if (scaling != nullptr && !scaling->is_null()) {
      return config_error("rope_scaling", "is set; this engine implements unscaled RoPE only");
    }
    if (c.heads % c.kv_heads != 0) {
      return config_error("num_key_value_heads", "must divide num_attention_heads");
    }
    if (c.head_dim % 2 != 0) return config_error("head_dim", "must be even for RoPE");
  } else {
    return config_error("model_type", "is \"" + type->as_string() +
                                          "\"; this engine implements \"gpt2\" and \"llama\"");
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
  if (c.family == Family::kGpt2) {
    put("architectures", Json(JsonArray{Json(std::string("GPT2LMHeadModel"))}));
    put("model_type", Json(std::string("gpt2")));
    put("vocab_size", Json(c.vocab_size));
    put("n_embd", Json(c.hidden));
    put("n_layer", Json(c.layers));
    put("n_head", Json(c.heads));
    put("n_positions", Json(c.max_positions));
    put("n_ctx", Json(c.max_positions));
    put("n_inner", Json(c.ffn));
    put("activation_function", Json(std::string("gelu_new")));
    put("layer_norm_epsilon", Json(static_cast<double>(c.norm_eps)));
    put("resid_pdrop", Json(0.0));
    put("embd_pdrop", Json(0.0));
    put("attn_pdrop", Json(0.0));
  } else {
    put("architectures", Json(JsonArray{Json(std::string("LlamaForCausalLM"))}));
    put("model_type", Json(std::string("llama")));
    put("vocab_size", Json(c.vocab_size));
    put("hidden_size", Json(c.hidden));
    put("intermediate_size", Json(c.ffn));
    put("num_hidden_layers", Json(c.layers));
    put("num_attention_heads", Json(c.heads));
    put("num_key_value_heads", Json(c.kv_heads));
    put("head_dim", Json(c.head_dim));
    put("max_position_embeddings", Json(c.max_positions));
    put("rms_norm_eps", Json(static_cast<double>(c.norm_eps)));
    put("rope_theta", Json(static_cast<double>(c.rope_theta)));
    put("hidden_act", Json(std::string("silu")));
    put("attention_bias", Json(false));
    put("mlp_bias", Json(false));
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
  put("torch_dtype", Json(std::string("float32")));
  return to_json(Json(std::move(o))) + "\n";
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
      y.k = add(p + "self_attn.k_proj.weight", {kv, d}, true);
      y.v = add(p + "self_attn.v_proj.weight", {kv, d}, true);
      y.o_w = add(p + "self_attn.o_proj.weight", {d, q}, true);
      y.ln2_w = add(p + "post_attention_layernorm.weight", {d}, false);
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
    p.grad = Tensor(shape);
    p.value = Tensor(std::move(shape));
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
    if (p.value.rank() == 1) {
      // Norm weights start at 1, biases at 0.
      const bool is_weight = p.name.size() >= 7 && p.name.ends_with(".weight");
      p.value.fill(is_weight ? 1.0f : 0.0f);
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
  for (auto& p : params_) p.grad.fill(0.0f);
}

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
  return files;
}

Result<std::unique_ptr<Model>> Model::load(const std::filesystem::path& dir, Backend& backend) {
  MH_ASSIGN_OR_RETURN(std::string text, read_text_file(dir / "config.json", kMaxConfigBytes));
  MH_ASSIGN_OR_RETURN(ModelConfig config, parse_model_config(text));
  MH_ASSIGN_OR_RETURN(auto files, weight_files(dir));
  return load_weights(config, files, backend);
}

Result<std::unique_ptr<Model>> Model::load_weights(const ModelConfig& config,
                                                   const std::vector<std::filesystem::path>& files,
                                                   Backend& backend) {
  std::unique_ptr<Model> m(new Model(config, backend));
  MH_TRY(m->read_weights(files));
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
    if (!st.ok()) return invalid_argument(file.filename().string() + ": " + st.status().message());
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

Status Model::read_weights(const std::vector<std::filesystem::path>& files) {
  std::vector<Tensor> values(params_.size());
  MH_TRY(check_weights(config_, files, [&](size_t i, const TensorEntry& e) -> Status {
    auto floats = to_float(e);
    if (!floats.ok())
      return invalid_argument("tensor \"" + e.name + "\": " + floats.status().message());
    values[i] = Tensor::of(params_[i].value.shape(), std::move(floats).value());
    return {};
  }));
  // Nothing changes unless every tensor was good.
  for (size_t i = 0; i < params_.size(); ++i) params_[i].value = std::move(values[i]);
  return {};
}

Result<ModelSummary> inspect_model(const std::filesystem::path& dir) {
  ModelSummary summary;
  MH_ASSIGN_OR_RETURN(std::string text, read_text_file(dir / "config.json", kMaxConfigBytes));
  MH_ASSIGN_OR_RETURN(summary.config, parse_model_config(text));
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
    bytes.push_back(as_bytes(p.value));
    TensorToWrite t;
    t.name = p.name;
    t.dtype = DType::kF32;
    t.shape = p.value.shape();
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

// y = x @ W (+ b). gpt2's Conv1D stores W as [in, out]; Linear (llama, the head) as [out, in].
void Model::linear(const Tensor& x, const Parameter& w, const Parameter* b, Tensor& y) {
  const bool out_in = config_.family == Family::kLlama || &w == &params_[head_];
  backend_.gemm(false, out_in, 1.0f, x, w.value, 0.0f, y);
  if (b != nullptr) backend_.add_bias(y, b->value);
}

void Model::linear_backward(const Tensor& dy, const Tensor& x, Parameter& w, Parameter* b,
                            Tensor& dx, bool accumulate_dx) {
  const bool out_in = config_.family == Family::kLlama || &w == &params_[head_];
  if (out_in) {
    backend_.gemm(true, false, 1.0f, dy, x, 1.0f, w.grad);  // dW[out, in] += dy^T x
    backend_.gemm(false, false, 1.0f, dy, w.value, accumulate_dx ? 1.0f : 0.0f, dx);
  } else {
    backend_.gemm(true, false, 1.0f, x, dy, 1.0f, w.grad);  // dW[in, out] += x^T dy
    backend_.gemm(false, true, 1.0f, dy, w.value, accumulate_dx ? 1.0f : 0.0f, dx);
  }
  if (b != nullptr) backend_.bias_backward(dy, b->grad);
}

void Model::embed(const std::vector<int32_t>& ids, const std::vector<int32_t>& positions,
                  Tensor& x) {
  backend_.embedding(params_[wte_].value, ids, x);
  if (config_.family == Family::kGpt2) {
    Tensor pos;
    backend_.embedding(params_[wpe_].value, positions, pos);
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
    linear(a.n1, params_[y.qkv_w], &params_[y.qkv_b], a.qkv);
    split3(a.qkv, a.q, a.k, a.v);
  } else {
    backend_.rmsnorm(a.x_in, params_[y.ln1_w].value, c.norm_eps, a.n1, a.rstd1);
    linear(a.n1, params_[y.q], nullptr, a.q);
    linear(a.n1, params_[y.k], nullptr, a.k);
    linear(a.n1, params_[y.v], nullptr, a.v);
    backend_.rope(a.q, c.head_dim, positions, c.rope_theta);
    backend_.rope(a.k, c.head_dim, positions, c.rope_theta);
  }
  Backend::AttentionShape s;
  s.heads = c.heads;
  s.kv_heads = c.kv_heads;
  s.head_dim = c.head_dim;
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
  linear(a.att, params_[y.o_w], gpt2 ? &params_[y.o_b] : nullptr, a.tmp);
  backend_.add(a.x_in, a.tmp, a.x_mid);
  if (gpt2) {
    backend_.layernorm(a.x_mid, params_[y.ln2_w].value, params_[y.ln2_b].value, c.norm_eps, a.n2,
                       a.mean2, a.rstd2);
    linear(a.n2, params_[y.fc_w], &params_[y.fc_b], a.h);
    backend_.gelu(a.h, a.act);
    linear(a.act, params_[y.proj_w], &params_[y.proj_b], a.tmp);
  } else {
    backend_.rmsnorm(a.x_mid, params_[y.ln2_w].value, c.norm_eps, a.n2, a.rstd2);
    linear(a.n2, params_[y.gate], nullptr, a.h);
    linear(a.n2, params_[y.up], nullptr, a.up);
    backend_.swiglu(a.h, a.up, a.act);
    linear(a.act, params_[y.proj_w], nullptr, a.tmp);
  }
  backend_.add(a.x_mid, a.tmp, a.x_out);
}

float Model::forward(const std::vector<int32_t>& ids, int64_t batch, int64_t seq_len,
                     const std::vector<int32_t>& targets, int64_t denominator) {
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
  if (config_.family == Family::kGpt2) {
    backend_.layernorm(final_in_, params_[norm_w_].value, params_[norm_b_].value, config_.norm_eps,
                       final_out_, final_mean_, final_rstd_);
  } else {
    backend_.rmsnorm(final_in_, params_[norm_w_].value, config_.norm_eps, final_out_, final_rstd_);
  }
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
  Parameter& head = params_[head_];
  double loss = 0;
  Tensor logits, dlogits, dx;
  for (int64_t begin = 0; begin < n; begin += chunk) {
    const int64_t m = std::min(chunk, n - begin);
    const Tensor x = rows(final_out_, begin, m);
    linear(x, head, nullptr, logits);
    const std::vector<int32_t> t(targets.begin() + begin, targets.begin() + begin + m);
    loss += backend_.cross_entropy(logits, t, dlogits, denominator);
    linear_backward(dlogits, x, head, nullptr, dx, false);
    put_rows(dfinal_, begin, dx);
  }
  return static_cast<float>(loss);
}

Tensor Model::logits() {
  Tensor out;
  linear(final_out_, params_[head_], nullptr, out);
  return out;
}

void Model::backward(const std::function<void(size_t, size_t)>& ready) {
  if (!have_grad_) throw ShapeError("backward: the last forward had no targets");
  have_grad_ = false;
  const ModelConfig& c = config_;
  const bool gpt2 = c.family == Family::kGpt2;
  Tensor dx, dn, dtmp, dact, dh, dup, datt, dq, dk, dv, dqkv;
  if (gpt2) {
    backend_.layernorm_backward(dfinal_, final_in_, params_[norm_w_].value, final_mean_,
                                final_rstd_, dx, params_[norm_w_].grad, params_[norm_b_].grad);
  } else {
    backend_.rmsnorm_backward(dfinal_, final_in_, params_[norm_w_].value, final_rstd_, dx,
                              params_[norm_w_].grad);
  }
  // Every layer's parameters are contiguous: from its first norm to the next layer's.
  auto finished = [&](size_t begin, size_t end) {
    if (ready) ready(begin, end);
  };
  finished(norm_w_, params_.size());
  Backend::AttentionShape s;
  s.batch = batch_;
  s.q_len = seq_len_;
  s.kv_len = seq_len_;
  s.heads = c.heads;
  s.kv_heads = c.kv_heads;
  s.head_dim = c.head_dim;
  for (int64_t l = c.layers - 1; l >= 0; --l) {
    const Layer& y = layers_[static_cast<size_t>(l)];
    Activations& a = acts_[static_cast<size_t>(l)];
    // dx is the gradient of the block's output; the MLP's residual branch first.
    if (gpt2) {
      linear_backward(dx, a.act, params_[y.proj_w], &params_[y.proj_b], dact, false);
      backend_.gelu_backward(dact, a.h, dh);
      linear_backward(dh, a.n2, params_[y.fc_w], &params_[y.fc_b], dn, false);
      backend_.layernorm_backward(dn, a.x_mid, params_[y.ln2_w].value, a.mean2, a.rstd2, dtmp,
                                  params_[y.ln2_w].grad, params_[y.ln2_b].grad);
    } else {
      linear_backward(dx, a.act, params_[y.proj_w], nullptr, dact, false);
      backend_.swiglu_backward(dact, a.h, a.up, dh, dup);
      linear_backward(dh, a.n2, params_[y.gate], nullptr, dn, false);
      linear_backward(dup, a.n2, params_[y.up], nullptr, dn, true);
      backend_.rmsnorm_backward(dn, a.x_mid, params_[y.ln2_w].value, a.rstd2, dtmp,
                                params_[y.ln2_w].grad);
    }
    backend_.add(dx, dtmp, dx);  // the gradient at x_mid
    // The attention branch.
    linear_backward(dx, a.att, params_[y.o_w], gpt2 ? &params_[y.o_b] : nullptr, datt, false);
    backend_.attention_backward(s, datt, a.q, a.k, a.v, a.att, a.lse, dq, dk, dv);
    if (gpt2) {
      join3(dq, dk, dv, dqkv);
      linear_backward(dqkv, a.n1, params_[y.qkv_w], &params_[y.qkv_b], dn, false);
      backend_.layernorm_backward(dn, a.x_in, params_[y.ln1_w].value, a.mean1, a.rstd1, dtmp,
                                  params_[y.ln1_w].grad, params_[y.ln1_b].grad);
    } else {
      backend_.rope_backward(dq, c.head_dim, positions_, c.rope_theta);
      backend_.rope_backward(dk, c.head_dim, positions_, c.rope_theta);
      linear_backward(dq, a.n1, params_[y.q], nullptr, dn, false);
      linear_backward(dk, a.n1, params_[y.k], nullptr, dn, true);
      linear_backward(dv, a.n1, params_[y.v], nullptr, dn, true);
      backend_.rmsnorm_backward(dn, a.x_in, params_[y.ln1_w].value, a.rstd1, dtmp,
                                params_[y.ln1_w].grad);
    }
    backend_.add(dx, dtmp, dx);  // the gradient at x_in
    finished(y.ln1_w, l + 1 < c.layers ? layers_[static_cast<size_t>(l + 1)].ln1_w : norm_w_);
  }
  backend_.embedding_backward(dx, ids_, params_[wte_].grad);
  if (gpt2) backend_.embedding_backward(dx, positions_, params_[wpe_].grad);
  finished(0, layers_[0].ln1_w);
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
    step_rows.push_back(static_cast<int64_t>(ids.size()));
    for (size_t i = 0; i < st.tokens.size(); ++i) {
      ids.push_back(st.tokens[i]);
      positions.push_back(static_cast<int32_t>(st.cache->length_ + static_cast<int64_t>(i)));
    }
    last_rows.push_back(static_cast<int64_t>(ids.size()) - 1);
  }
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
  if (config_.family == Family::kGpt2) {
    backend_.layernorm(last, params_[norm_w_].value, params_[norm_b_].value, config_.norm_eps,
                       normed, mean, rstd);
  } else {
    backend_.rmsnorm(last, params_[norm_w_].value, config_.norm_eps, normed, rstd);
  }
  linear(normed, params_[head_], nullptr, out);
  return out;
}

}  // namespace mh::engine
