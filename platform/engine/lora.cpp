// LoRA adapters on a Model's linear layers: which layers a config targets, the adapters'
// initialisation, and their part of the forward and backward passes (see LoraConfig).
#include <algorithm>
#include <cmath>
#include <set>
#include <sstream>
#include <string>

#include "platform/engine/files.h"
#include "platform/engine/json.h"
#include "platform/engine/model.h"
#include "platform/engine/random.h"
#include "platform/engine/safetensors.h"

namespace mh::engine {

namespace {

constexpr int64_t kMaxRank = 1024;
constexpr std::string_view kAllLinear = "all-linear";
constexpr std::string_view kConfigFile = "adapter_config.json";
constexpr std::string_view kWeightsFile = "adapter_model.safetensors";
constexpr std::string_view kPeftPrefix = "base_model.model.";

// adapter_config.json's members that describe the adapter or how it was made and change nothing
// in what it computes.
constexpr std::string_view kDescriptive[] = {
    "base_model_name_or_path", "revision", "inference_mode", "init_lora_weights", "peft_version",
    "auto_mapping", "fan_in_fan_out", "megatron_core", "runtime_config"};

// [rows, cols] as [cols, rows].
Tensor transposed(const Tensor& t) {
  const int64_t rows = t.dim(0), cols = t.dim(1);
  Tensor out({cols, rows});
  for (int64_t i = 0; i < rows; ++i) {
    for (int64_t j = 0; j < cols; ++j) out[j * rows + i] = t[i * cols + j];
  }
  return out;
}

// The module a weight belongs to: its name less ".weight".
std::string module_of(const std::string& weight_name) {
  constexpr std::string_view kSuffix = ".weight";
  return weight_name.ends_with(kSuffix)
             ? weight_name.substr(0, weight_name.size() - kSuffix.size())
             : weight_name;
}

// Whether PEFT's target entry `target` names `module`: the whole name, or its end after a dot.
bool targets(std::string_view module, std::string_view target) {
  return module == target ||
         (module.size() > target.size() && module.ends_with(target) &&
          module[module.size() - target.size() - 1] == '.');
}

// The linear layers of a block, in the order of their parameters.
std::vector<size_t> linear_layers(const Model::Layer& y) {
  std::vector<size_t> out;
  for (size_t w : {y.qkv_w, y.q, y.k, y.v, y.o_w, y.fc_w, y.gate, y.up, y.proj_w}) {
    if (w != Model::kNone) out.push_back(w);
  }
  std::sort(out.begin(), out.end());
  return out;
}

// A draw in [0, 1) that depends on its four coordinates alone (splitmix64's finaliser over
// their mix), so that a dropout mask is the same whichever thread or run computes it.
double uniform_at(uint64_t seed, uint64_t pass, uint64_t adapter, uint64_t element) {
  uint64_t z = seed ^ (pass * 0x9E3779B97F4A7C15ULL) ^ (adapter * 0xC2B2AE3D27D4EB4FULL) ^
               (element * 0x165667B19E3779F9ULL);
  z += 0x9E3779B97F4A7C15ULL;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  z ^= z >> 31;
  return static_cast<double>(z >> 11) * 0x1.0p-53;
}

}  // namespace

Status LoraConfig::validate() const {
  if (rank < 1 || rank > kMaxRank) {
    return invalid_argument("\"rank\" must be an integer in [1, " + std::to_string(kMaxRank) + "]",
                            "rank");
  }
  if (!(alpha > 0) || !std::isfinite(alpha)) {
    return invalid_argument("\"alpha\" must be a positive number", "alpha");
  }
  if (!(dropout >= 0 && dropout < 1)) {
    return invalid_argument("\"dropout\" must be in [0, 1)", "dropout");
  }
  if (target_modules.empty()) {
    return invalid_argument("\"target_modules\" must name at least one module",
                            "target_modules");
  }
  for (const auto& t : target_modules) {
    if (t.empty()) {
      return invalid_argument("\"target_modules\" has an empty name", "target_modules");
    }
  }
  return {};
}

std::vector<std::string_view> lora_modules(Family family) {
  if (family == Family::kGpt2) return {"c_attn", "c_proj", "c_fc"};
  return {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
}

Status LoraConfig::check_targets(Family family) const {
  const std::vector<std::string_view> known = lora_modules(family);
  for (const std::string& t : target_modules) {
    if (t == kAllLinear) continue;
    const std::string_view last = std::string_view(t).substr(t.rfind('.') + 1);
    if (std::find(known.begin(), known.end(), last) == known.end()) {
      std::string names;
      for (std::string_view k : known) names += (names.empty() ? "" : ", ") + std::string(k);
      return invalid_argument("\"target_modules\": \"" + t + "\" names no linear layer of a " +
                                  std::string(family_name(family)) + " model (" + names +
                                  ", or \"all-linear\")",
                              "target_modules");
    }
  }
  return {};
}

namespace {

// The linear layers `lora` targets in a model of `config` whose tensors are `specs`, as indices
// into them, in order; refused for a target matching none.
Result<std::vector<size_t>> targeted_layers(const ModelConfig& config,
                                            const std::vector<TensorSpec>& specs,
                                            const LoraConfig& lora) {
  const bool all = std::find(lora.target_modules.begin(), lora.target_modules.end(),
                             kAllLinear) != lora.target_modules.end();
  std::vector<size_t> chosen;
  std::set<std::string> used;
  for (const Model::Layer& y : Model::layout(config).layers) {
    for (size_t w : linear_layers(y)) {
      const std::string module = module_of(specs[w].name);
      bool hit = all;
      for (const auto& t : lora.target_modules) {
        if (t != kAllLinear && targets(module, t)) {
          hit = true;
          used.insert(t);
        }
      }
      if (hit) chosen.push_back(w);
    }
  }
  for (const auto& t : lora.target_modules) {
    if (t != kAllLinear && !used.contains(t)) {
      return invalid_argument(
          "\"target_modules\": \"" + t + "\" names no linear layer of this " +
              std::string(family_name(config.family)) + " model",
          "target_modules");
    }
  }
  return chosen;
}

}  // namespace

Result<std::vector<size_t>> Model::lora_layers(const LoraConfig& lora) const {
  return targeted_layers(config_, tensor_specs(config_), lora);
}

Status Model::add_lora(const LoraConfig& lora, uint64_t seed) {
  if (lora_config_) return failed_precondition("the model has LoRA adapters already");
  MH_TRY(lora.validate());
  MH_ASSIGN_OR_RETURN(const std::vector<size_t> chosen, lora_layers(lora));
  // A [rank, in] and B [out, rank]; W is [out, in], or [in, out] for GPT-2's Conv1D layers.
  const bool conv1d = config_.family == Family::kGpt2;
  Rng rng(seed);
  std::vector<Parameter> params;
  std::vector<LoraAdapter> adapters;
  std::vector<int32_t> adapter_of(params_.size(), -1);
  for (size_t w : chosen) {
    const Shape& shape = params_[w].shape;
    const int64_t out = conv1d ? shape[1] : shape[0], in = conv1d ? shape[0] : shape[1];
    const std::string module = module_of(params_[w].name);
    Parameter a{module + ".lora_A.weight", {lora.rank, in}, Tensor({lora.rank, in}), {}, {}, true};
    Parameter b{module + ".lora_B.weight", {out, lora.rank}, Tensor({out, lora.rank}), {}, {},
                true};
    const double bound = 1.0 / std::sqrt(static_cast<double>(in));
    for (auto& v : a.value.values()) v = static_cast<float>((2.0 * rng.uniform() - 1.0) * bound);
    adapter_of[w] = static_cast<int32_t>(adapters.size());
    adapters.push_back({w, params.size(), params.size() + 1, {}, {}, {}});
    params.push_back(std::move(a));
    params.push_back(std::move(b));
  }
  // Frozen from here: the base's gradients go.
  for (auto& p : params_) p.grad = Tensor();
  lora_params_ = std::move(params);
  adapters_ = std::move(adapters);
  adapter_of_ = std::move(adapter_of);
  lora_seed_ = seed;
  lora_draws_ = 0;
  lora_config_ = lora;
  return {};
}

namespace {

Status adapter_config_error(std::string_view field, std::string_view what) {
  return invalid_argument(
      std::string(kConfigFile) + ": \"" + std::string(field) + "\" " + std::string(what),
      std::string(field));
}

// Whether a setting is at its "off" value: null, false, 0, "" or empty.
bool is_off(const Json& v) {
  switch (v.type()) {
    case Json::Type::kNull: return true;
    case Json::Type::kBool: return !v.as_bool();
    case Json::Type::kInt: return v.as_int() == 0;
    case Json::Type::kDouble: return v.as_double() == 0;
    case Json::Type::kString: return v.as_string().empty();
    case Json::Type::kArray: return v.as_array().empty();
    case Json::Type::kObject: return v.as_object().empty();
  }
  return false;
}

Status weights_error(const std::string& what) {
  return invalid_argument(std::string(kWeightsFile) + ": " + what);
}

std::span<const uint8_t> bytes_of(const Tensor& t) {
  return {reinterpret_cast<const uint8_t*>(t.data()), static_cast<size_t>(t.numel()) * 4};
}

}  // namespace

Result<LoraConfig> Model::read_lora_config(const std::filesystem::path& dir) {
  MH_ASSIGN_OR_RETURN(const Json cfg, read_json_file(dir / kConfigFile));
  if (!cfg.is_object()) return invalid_argument(std::string(kConfigFile) + " must be an object");
  LoraConfig out;
  bool have_rank = false, have_targets = false;
  for (const auto& [key, v] : cfg.as_object()) {
    if (key == "peft_type") {
      if (!v.is_string() || v.as_string() != "LORA") {
        return adapter_config_error(key, "is not \"LORA\": only LoRA adapters are read");
      }
    } else if (key == "task_type") {
      if (!v.is_null() && !(v.is_string() && v.as_string() == "CAUSAL_LM")) {
        return adapter_config_error(key, "is not \"CAUSAL_LM\"");
      }
    } else if (key == "r") {
      if (!v.is_int()) return adapter_config_error(key, "must be an integer");
      out.rank = v.as_int();
      have_rank = true;
    } else if (key == "lora_alpha") {
      if (!v.is_number()) return adapter_config_error(key, "must be a number");
      out.alpha = static_cast<float>(v.as_double());
    } else if (key == "lora_dropout") {
      if (!v.is_number()) return adapter_config_error(key, "must be a number");
      out.dropout = static_cast<float>(v.as_double());
    } else if (key == "target_modules") {
      out.target_modules.clear();
      if (v.is_string()) {
        // PEFT reads any other string as a regular expression over module paths.
        if (v.as_string() != kAllLinear) {
          return adapter_config_error(key, "as a regular expression is not supported: list the "
                                           "modules, or give \"all-linear\"");
        }
        out.target_modules.push_back(v.as_string());
      } else if (v.is_array()) {
        for (const Json& t : v.as_array()) {
          if (!t.is_string()) return adapter_config_error(key, "must list module names");
          out.target_modules.push_back(t.as_string());
        }
      } else {
        return adapter_config_error(key, "must be a list of module names or \"all-linear\"");
      }
      have_targets = true;
    } else if (key == "bias") {
      if (!v.is_string() || v.as_string() != "none") {
        return adapter_config_error(key, "is not \"none\": trained biases are not supported");
      }
    } else if (std::find(std::begin(kDescriptive), std::end(kDescriptive), key) ==
                   std::end(kDescriptive) &&
               !is_off(v)) {
      // use_dora, use_rslora, rank_pattern, alpha_pattern, modules_to_save,
      // layers_to_transform, layer_replication, ... and any later setting, when switched on.
      return adapter_config_error(key, "is set, and this engine does not implement it");
    }
  }
  if (!have_rank) return adapter_config_error("r", "is missing");
  if (!have_targets) return adapter_config_error("target_modules", "is missing");
  if (Status s = out.validate(); !s.ok()) {
    return adapter_config_error(s.param(), "is out of range: " + s.message());
  }
  return out;
}

Status Model::save_lora(const std::filesystem::path& dir, std::string_view base_model) const {
  if (!lora_config_) return failed_precondition("the model has no LoRA adapters to save");
  // target_modules: the adapted modules' last names when those name exactly these layers (as
  // "q_proj" does), else their whole paths.
  std::set<std::string> adapted, short_names;
  for (const auto& ad : adapters_) {
    const std::string module = module_of(params_[ad.weight].name);
    adapted.insert(module);
    short_names.insert(module.substr(module.rfind('.') + 1));
  }
  LoraConfig by_short = *lora_config_;
  by_short.target_modules.assign(short_names.begin(), short_names.end());
  const auto layers = lora_layers(by_short);
  bool exact = layers.ok() && layers->size() == adapters_.size();
  JsonArray targets;
  for (const auto& t : exact ? short_names : adapted) targets.emplace_back(t);
  JsonObject cfg;
  cfg.emplace_back("peft_type", Json(std::string("LORA")));
  cfg.emplace_back("task_type", Json(std::string("CAUSAL_LM")));
  cfg.emplace_back("base_model_name_or_path", base_model.empty()
                                                  ? Json()
                                                  : Json(std::string(base_model)));
  cfg.emplace_back("r", Json(lora_config_->rank));
  cfg.emplace_back("lora_alpha", Json(static_cast<double>(lora_config_->alpha)));
  cfg.emplace_back("lora_dropout", Json(static_cast<double>(lora_config_->dropout)));
  cfg.emplace_back("target_modules", Json(std::move(targets)));
  cfg.emplace_back("bias", Json(std::string("none")));
  cfg.emplace_back("fan_in_fan_out", Json(config_.family == Family::kGpt2));
  cfg.emplace_back("use_rslora", Json(false));
  cfg.emplace_back("use_dora", Json(false));
  cfg.emplace_back("modules_to_save", Json());
  cfg.emplace_back("inference_mode", Json(true));
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return internal_error("cannot create " + dir.string() + ": " + ec.message());
  std::vector<TensorToWrite> tensors;
  for (const auto& p : lora_params_) {
    tensors.push_back({std::string(kPeftPrefix) + p.name, DType::kF32, p.shape, bytes_of(p.value)});
  }
  MH_TRY(write_safetensors(dir / kWeightsFile, std::move(tensors)));
  return write_file_atomically(dir / kConfigFile, to_json(Json(std::move(cfg))) + "\n");
}

namespace {

// The adapter in `dir` checked against a model of `model`: its config, the layers it adapts,
// and (with `values`) their A and Bᵀ read; without, only the tensors' headers are checked.
Result<LoraWeights> read_adapter(const ModelConfig& model, const std::filesystem::path& dir,
                                 bool values) {
  LoraWeights out;
  MH_ASSIGN_OR_RETURN(out.config, Model::read_lora_config(dir));
  const std::vector<TensorSpec> specs = Model::tensor_specs(model);
  MH_ASSIGN_OR_RETURN(const std::vector<size_t> layers,
                      targeted_layers(model, specs, out.config));
  MH_ASSIGN_OR_RETURN(const Safetensors file, Safetensors::open(dir / kWeightsFile));
  const bool conv1d = model.family == Family::kGpt2;
  const int64_t rank = out.config.rank;
  out.of.assign(specs.size(), -1);
  for (size_t i = 0; i < layers.size(); ++i) {
    const size_t w = layers[i];
    const Shape& shape = specs[w].shape;
    const int64_t rows = conv1d ? shape[1] : shape[0], in = conv1d ? shape[0] : shape[1];
    const std::string module = module_of(specs[w].name);
    out.of[w] = static_cast<int32_t>(i);
    for (auto [part, want] : {std::pair{"lora_A", Shape{rank, in}},
                              std::pair{"lora_B", Shape{rows, rank}}}) {
      const std::string name = std::string(kPeftPrefix) + module + "." + part + ".weight";
      const TensorEntry* e = file.find(name);
      if (e == nullptr) {
        return weights_error("tensor \"" + name + "\" is missing");
      }
      if (e->shape != want) {
        return weights_error("\"" + name + "\" is " + shape_string(e->shape) + ", not " +
                             shape_string(want));
      }
      if (!values) {
        if (e->dtype != DType::kF32 && e->dtype != DType::kF16 && e->dtype != DType::kBF16) {
          return weights_error("\"" + name + "\" is not F32, F16 or BF16");
        }
        continue;
      }
      auto v = to_float(*e);
      if (!v.ok()) return weights_error("\"" + name + "\": " + v.status().message());
      Tensor t = Tensor::of(want, std::move(v).value());
      if (part == std::string_view("lora_A")) {
        out.a.push_back(std::move(t));
      } else {
        out.bt.push_back(transposed(t));
      }
    }
  }
  if (file.tensors().size() != 2 * layers.size()) {
    for (const auto& e : file.tensors()) {
      const bool known = std::any_of(layers.begin(), layers.end(), [&](size_t w) {
        const std::string module = std::string(kPeftPrefix) + module_of(specs[w].name);
        return e.name == module + ".lora_A.weight" || e.name == module + ".lora_B.weight";
      });
      if (!known) {
        return weights_error("tensor \"" + e.name +
                             "\" is not a LoRA A or B of a layer the config targets");
      }
    }
  }
  return out;
}

}  // namespace

Result<LoraConfig> check_lora(const std::filesystem::path& dir, const ModelConfig& base) {
  MH_ASSIGN_OR_RETURN(LoraWeights checked, read_adapter(base, dir, false));
  return checked.config;
}

Result<std::shared_ptr<const LoraWeights>> Model::read_lora(
    const std::filesystem::path& dir) const {
  MH_ASSIGN_OR_RETURN(LoraWeights weights, read_adapter(config_, dir, true));
  const auto half = std::find_if(params_.begin(), params_.end(),
                                 [](const Parameter& p) { return !p.half.empty(); });
  if (half != params_.end()) {
    const HalfTensor::Format format = half->half.format();
    for (const Tensor& a : weights.a) weights.a_half.push_back(HalfTensor::of(a, format));
    for (const Tensor& bt : weights.bt) weights.bt_half.push_back(HalfTensor::of(bt, format));
    weights.a.clear();
    weights.bt.clear();
  }
  return std::make_shared<const LoraWeights>(std::move(weights));
}

Status Model::load_lora(const std::filesystem::path& dir) {
  // Into a model with adapters (a checkpoint resumed), the config must be theirs: told before
  // the tensors are read.
  MH_ASSIGN_OR_RETURN(const LoraConfig config, read_lora_config(dir));
  if (lora_config_) {
    MH_ASSIGN_OR_RETURN(const std::vector<size_t> layers, lora_layers(config));
    std::vector<size_t> mine;
    for (const auto& ad : adapters_) mine.push_back(ad.weight);
    if (config.rank != lora_config_->rank || config.alpha != lora_config_->alpha ||
        layers != mine) {
      std::ostringstream what;
      what << kConfigFile << ": the adapter (rank " << config.rank << ", alpha " << config.alpha
           << ", " << layers.size() << " layers) is not this model's (rank "
           << lora_config_->rank << ", alpha " << lora_config_->alpha << ", " << mine.size()
           << " layers)";
      return failed_precondition(what.str());
    }
  }
  MH_ASSIGN_OR_RETURN(LoraWeights read, read_adapter(config_, dir, true));
  if (!lora_config_) MH_TRY(add_lora(config, 0));
  for (size_t i = 0; i < read.a.size(); ++i) {  // lora_params_: A then B per layer
    lora_params_[2 * i].value = std::move(read.a[i]);
    lora_params_[2 * i + 1].value = transposed(read.bt[i]);
  }
  return {};
}

Status Model::merge_lora() {
  if (!lora_config_) return failed_precondition("the model has no LoRA adapters to merge");
  for (const auto& ad : adapters_) {
    if (!params_[ad.weight].half.empty()) {
      return failed_precondition("merging needs the base in fp32: \"" + params_[ad.weight].name +
                                 "\" is held at 16 bits; load the model with Weights::kFloat32");
    }
  }
  const bool conv1d = config_.family == Family::kGpt2;
  const float scale = lora_config_->scale();
  for (const auto& ad : adapters_) {
    const Tensor& a = lora_params_[ad.a].value;
    const Tensor& b = lora_params_[ad.b].value;
    Tensor& w = params_[ad.weight].value;
    if (conv1d) {
      backend_.gemm(true, true, scale, a, b, 1.0f, w);  // W [in, out] += s Aᵀ Bᵀ
    } else {
      backend_.gemm(false, false, scale, b, a, 1.0f, w);  // W [out, in] += s B A
    }
  }
  lora_config_.reset();
  lora_params_.clear();
  adapters_.clear();
  adapter_of_.clear();
  return {};
}

Tensor& Model::grad_of(size_t i) {
  if (!lora_config_) return params_[i].grad;
  if (grad_sink_.shape() != params_[i].shape) grad_sink_ = Tensor(params_[i].shape);
  return grad_sink_;
}

void Model::lora_forward(const Tensor& x, size_t w, Tensor& y) {
  const auto index = static_cast<size_t>(adapter_of_[w]);
  LoraAdapter& ad = adapters_[index];
  const float p = lora_config_->dropout;
  const Tensor* in = &x;
  if (training_pass_ && p > 0 && lora_dropout_) {
    const float kept = 1.0f / (1.0f - p);
    ad.keep = Tensor(x.shape());
    ad.input = Tensor(x.shape());
    for (int64_t i = 0; i < x.numel(); ++i) {
      const bool drop = uniform_at(lora_seed_, lora_draws_, index, static_cast<uint64_t>(i)) < p;
      ad.keep[i] = drop ? 0.0f : kept;
      ad.input[i] = x[i] * ad.keep[i];
    }
    in = &ad.input;
  } else {
    ad.keep = Tensor();
    ad.input = Tensor();
  }
  backend_.gemm(false, true, 1.0f, *in, lora_params_[ad.a].value, 0.0f, ad.u);  // u = x Aᵀ
  backend_.gemm(false, true, lora_config_->scale(), ad.u, lora_params_[ad.b].value, 1.0f, y);
}

void Model::lora_backward(const Tensor& dy, const Tensor& x, size_t w, Tensor& dx) {
  LoraAdapter& ad = adapters_[static_cast<size_t>(adapter_of_[w])];
  Parameter& a = lora_params_[ad.a];
  Parameter& b = lora_params_[ad.b];
  const float scale = lora_config_->scale();
  const Tensor& input = ad.keep.numel() > 0 ? ad.input : x;
  backend_.gemm(true, false, scale, dy, ad.u, 1.0f, b.grad);  // dB += s dyᵀ u
  Tensor du;
  backend_.gemm(false, false, scale, dy, b.value, 0.0f, du);  // du = s dy B
  backend_.gemm(true, false, 1.0f, du, input, 1.0f, a.grad);  // dA += duᵀ input
  if (ad.keep.numel() == 0) {
    backend_.gemm(false, false, 1.0f, du, a.value, 1.0f, dx);  // dx += du A
    return;
  }
  Tensor dinput;
  backend_.gemm(false, false, 1.0f, du, a.value, 0.0f, dinput);
  for (int64_t i = 0; i < dx.numel(); ++i) dx[i] += dinput[i] * ad.keep[i];
}

void Model::serve_lora(const Tensor& x, size_t w, Tensor& y) {
  std::vector<Backend::LoraSlice> slices;
  for (const ServedGroup& g : served_) {
    const int32_t i = g.adapter->of[w];
    if (i < 0) continue;
    const auto at = static_cast<size_t>(i);
    const LoraWeights& ad = *g.adapter;
    Backend::LoraSlice slice;
    slice.scale = ad.config.scale();
    if (ad.a_half.empty()) {
      slice.a = &ad.a[at];
      slice.bt = &ad.bt[at];
    } else {
      slice.a_half = &ad.a_half[at];
      slice.bt_half = &ad.bt_half[at];
    }
    for (auto [begin, end] : g.rows) {
      slice.begin = begin;
      slice.end = end;
      slices.push_back(slice);
    }
  }
  if (!slices.empty()) backend_.lora_rows(x, slices, y);
}

}  // namespace mh::engine
