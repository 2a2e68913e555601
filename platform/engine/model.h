// Model: decoder-only transformers configured by a Hugging Face config.json and stored as
// safetensors with Hugging Face tensor names, so that a model saved by `transformers` loads here
// and ours load there.
//
//   gpt2         learned positions, LayerNorm, GELU (tanh), biases, tied embeddings; Conv1D
//                weights stored [in, out] as transformers stores them
//   llama        RMSNorm, RoPE (optionally scaled), SwiGLU, grouped-query attention; Linear
//                weights [out, in]. The other families are llama with differences:
//   mistral      sliding-window attention
//   qwen2        biases on the q, k and v projections; sliding window on the upper layers
//   qwen3        an RMSNorm over each head of q and of k, before RoPE
//   gemma3_text  embeddings scaled by sqrt(hidden), RMSNorm by (1 + w), norms before and after
//                attention and the MLP, q/k norms, its own attention scale, sliding-window and
//                global layers with their own RoPE, a GELU (tanh) gated MLP, soft-capping
//
// ModelConfig says each of these as a feature rather than as a family, so the forward and
// backward passes ask "has q/k norms?" and never "is it qwen3?".
//
// Training runs forward() with targets, then backward(); the classifier's gradient is taken
// chunk by chunk inside forward(), so full-vocabulary logits are never held for a whole batch.
// Inference runs forward_cached() over sequences that each keep a KV cache (see KvCache).
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "platform/base/status.h"
#include "platform/engine/backend.h"
#include "platform/engine/json.h"

namespace mh::engine {

enum class Family { kGpt2, kLlama, kMistral, kQwen2, kQwen3, kGemma3 };
// config.json's model_type: "gpt2", "llama", "mistral", "qwen2", "qwen3", "gemma3_text".
std::string_view family_name(Family family);
// The family family_name() calls `name`; nullopt for none.
std::optional<Family> family_named(std::string_view name);

// config.json's rope_scaling: how RoPE's frequencies are stretched past the trained context.
struct RopeScaling {
  enum class Type { kNone, kLinear, kDynamic, kLlama3, kYarn };
  Type type = Type::kNone;
  double factor = 1;
  double low_freq_factor = 1, high_freq_factor = 4;  // llama3
  int64_t original_max_positions = 0;               // llama3, yarn (0: max_positions)
  double beta_fast = 32, beta_slow = 1;              // yarn
  double attention_factor = 0;                       // yarn; 0: from factor and mscale
  double mscale = 0, mscale_all_dim = 0;             // yarn
  bool truncate = true;                              // yarn
  bool operator==(const RopeScaling&) const = default;
};
std::string_view rope_type_name(RopeScaling::Type type);  // "default", "linear", ...

enum class Activation { kSilu, kGeluTanh };

struct ModelConfig {
  Family family = Family::kGpt2;
  int64_t vocab_size = 0;
  int64_t hidden = 0;  // n_embd / hidden_size
  int64_t layers = 0;
  int64_t heads = 0;
  int64_t kv_heads = 0;  // == heads for gpt2
  int64_t head_dim = 0;
  int64_t ffn = 0;  // n_inner (4 * n_embd when null) / intermediate_size
  int64_t max_positions = 0;
  float norm_eps = 1e-5f;
  float rope_theta = 10000.0f;  // every family but gpt2
  RopeScaling rope_scaling;     // of the global (not sliding) layers
  // Sliding-window layers' own RoPE base, unscaled (gemma3_text); 0: they use the global one.
  float rope_local_theta = 0;
  bool tie_embeddings = true;
  Activation activation = Activation::kSilu;  // the gated MLP's (gpt2: GELU, ungated)
  bool qkv_bias = false, o_bias = false;       // biases on the attention projections
  bool qk_norm = false;                        // an RMSNorm over each head of q and of k
  float norm_offset = 0;  // RMSNorm multiplies by (norm_offset + w): 1 for gemma3_text
  bool sandwich_norms = false;  // norms after attention and after the MLP too (gemma3_text)
  float embedding_scale = 1;    // embeddings are multiplied by this (sqrt(hidden) for gemma)
  // Scores are scaled by 1 / sqrt(query_pre_attn_scalar) (Gemma's); 0: by 1 / sqrt(head_dim).
  float query_pre_attn_scalar = 0;
  float attn_softcap = 0, final_softcap = 0;  // x -> cap * tanh(x / cap) when > 0
  // A layer marked here attends to the last sliding_window positions only (itself included).
  int64_t sliding_window = 0;
  std::vector<bool> sliding_layers;  // one per layer when sliding_window > 0
  int64_t bos_token_id = -1, eos_token_id = -1;  // -1: none given
  // Every end-of-sequence id (Llama 3.1 lists three); eos_token_id is the first.
  std::vector<int64_t> eos_token_ids;

  int64_t parameter_count() const;
  bool sliding(int64_t layer) const {
    return sliding_window > 0 && sliding_layers[static_cast<size_t>(layer)];
  }
};

// The RoPE of layer `layer` for sequences of up to `seq_len` positions: inverse frequencies
// and the factor on cos and sin, as transformers' modeling_rope_utils computes them.
Backend::Rope rope_for(const ModelConfig& config, int64_t layer, int64_t seq_len);
// The attention of layer `layer` (heads, window, scale, soft-cap), for the backend to fill in
// the batch and lengths.
Backend::AttentionShape attention_shape(const ModelConfig& config, int64_t layer);

// Parses and validates a config.json (model_type one of Family's); every error names the field.
Result<ModelConfig> parse_model_config(std::string_view json_text);
// The config.json transformers reads for `config`.
std::string model_config_json(const ModelConfig& config);

// A model's generation_config.json: how its publisher samples from it, as defaults for
// requests that do not say, and the ids that end generation. Settings this platform does not
// implement (beam search, n-gram bans, ...) are refused by name unless set to what leaves them
// off; descriptive ones (the writer's version, other roles' token ids) are checked and kept out.
struct GenerationConfig {
  std::optional<float> temperature, top_p, repetition_penalty;
  std::optional<int64_t> top_k, max_new_tokens, max_length;
  bool greedy = false;                // "do_sample": false
  std::vector<int64_t> eos_token_ids;  // end generation, beside config.json's
};
Result<GenerationConfig> parse_generation_config(std::string_view json_text, int64_t vocab_size);
// `dir`/generation_config.json, or no settings when the directory has none.
Result<GenerationConfig> load_generation_config(const std::filesystem::path& dir,
                                                int64_t vocab_size);

// A parameter's Hugging Face name, shape, and whether weight decay applies.
struct TensorSpec {
  std::string name;
  std::vector<int64_t> shape;
  bool decay = false;
};

struct Parameter {
  std::string name;  // the Hugging Face tensor name
  Shape shape;
  // The values: in fp32, or (a matrix of a model loaded for inference with Weights::kAsStored)
  // at the 16 bits its file stores, with `value` empty.
  Tensor value;
  HalfTensor half;
  Tensor grad;         // same shape, made by the first training forward or zero_grad(); backward
                       // passes add into it
  bool decay = false;  // weight decay applies (matrices, not norms or biases)
};

// LoRA (Hu et al., 2021) as PEFT applies it to a linear layer W [out, in]:
//   y = x Wᵀ + (alpha / rank) · dropout(x) Aᵀ Bᵀ
// with A [rank, in] drawn as PEFT draws it (Kaiming-uniform, bound 1 / sqrt(in)) and B [out,
// rank] zero, so that a new adapter leaves the model's outputs as they were. GPT-2's Conv1D
// layers store W as [in, out]; their A and B have the same shapes as any layer's (PEFT's too).
struct LoraConfig {
  int64_t rank = 8;
  float alpha = 16;
  float dropout = 0;  // in [0, 1): the probability of zeroing an input of the adapter
  // PEFT's target_modules: a layer matches an entry equal to its module's name or to the end of
  // it after a dot ("q_proj", "self_attn.q_proj", "c_attn"); "all-linear" is every linear layer
  // of the blocks (not the embeddings or the output head).
  std::vector<std::string> target_modules = {"all-linear"};

  float scale() const { return alpha / static_cast<float>(rank); }
  // Each error names the field.
  Status validate() const;
  // Whether each target's last name is a linear layer of a block of `family` ("q_proj",
  // "self_attn.q_proj"; "c_attn" for gpt2): what can be known before the model is read.
  Status check_targets(Family family) const;
};

// The last names of the linear layers in a block of `family`, which LoRA may target.
std::vector<std::string_view> lora_modules(Family family);

// A LoRA adapter read for serving beside others on one base model (Model::Step::adapter): its
// settings, and A and B of each layer it adapts. Reading one changes nothing in the model, so
// any number may be held at once, each applied only to the sequences that name it.
struct LoraWeights {
  LoraConfig config;
  std::vector<int32_t> of;    // per parameter of the model that read it: its index in a/bt, or -1
  std::vector<Tensor> a, bt;  // A [rank, in] and B transposed, [rank, out]
  // Or, read by a model whose weights are held at 16 bits, A and Bᵀ in that format (a and bt
  // are then empty): a decode step reads every adapter its batch names, so their bytes count.
  std::vector<HalfTensor> a_half, bt_half;
};

// How a loaded model holds the matrices its files store in bf16 or f16: widened to fp32 (what
// training needs), or as stored, for inference, so that the model costs its files' size in
// memory (every op that reads a weight converts it as it reads). Vectors are always fp32.
enum class Weights { kFloat32, kAsStored };

// Keys and values of one sequence, for every layer, grown as tokens are appended.
class KvCache {
 public:
  int64_t length() const { return length_; }
  int64_t capacity() const { return k_.empty() ? 0 : k_.front().shape()[0]; }
  // Positions [from, from + n) of every layer's keys and values, layer by layer (K then V).
  std::vector<float> rows(int64_t from, int64_t n) const;
  // Writes rows() taken elsewhere at positions [at, at + n); the cache then holds at least
  // at + n positions.
  void set_rows(int64_t at, int64_t n, const std::vector<float>& data);

 private:
  friend class Model;
  std::vector<Tensor> k_, v_;  // per layer [capacity, kv_heads * head_dim]
  int64_t length_ = 0;
};

class Model {
 public:
  // A model with fresh weights drawn from `seed` (GPT-2's initialisation: N(0, 0.02), residual
  // projections scaled by 1/sqrt(2 * layers), norms at 1, biases at 0).
  ~Model();
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  static Result<std::unique_ptr<Model>> create(const ModelConfig& config, Backend& backend,
                                               uint64_t seed);
  // Reads `dir`/config.json and `dir`/model.safetensors (or the shards that
  // model.safetensors.index.json names). Tensors may be F32, F16 or BF16.
  static Result<std::unique_ptr<Model>> load(const std::filesystem::path& dir, Backend& backend,
                                             Weights weights = Weights::kFloat32);
  // Reads the weights of `config` from safetensors files; every expected tensor must be there
  // with its shape, and nothing unexpected.
  static Result<std::unique_ptr<Model>> load_weights(
      const ModelConfig& config, const std::vector<std::filesystem::path>& files, Backend& backend,
      Weights weights = Weights::kFloat32);
  // The tensors a model of `config` is made of, in order, without allocating them.
  static std::vector<TensorSpec> tensor_specs(const ModelConfig& config);

  // Where each tensor of tensor_specs() is, by its index: per block, gpt2 uses ln1/ln2 weight and
  // bias, qkv (the fused c_attn), o, fc and proj with biases; the others use ln1 (before
  // attention) and ln2 (before the MLP) weights, q, k, v, o, gate, up, proj (down_proj), and
  // where the config has them q/k/v/o biases, q/k norms, and the norms after attention
  // (post_attn) and after the MLP (post_ff). kNone marks a tensor the config does not have. A
  // block's tensors run from its ln1_w to the next block's (the last block's to norm_w). head is
  // wte when the embeddings are tied.
  static constexpr size_t kNone = static_cast<size_t>(-1);
  struct Layer {
    size_t ln1_w = kNone, ln1_b = kNone, ln2_w = kNone, ln2_b = kNone;
    size_t qkv_w = kNone, qkv_b = kNone, q = kNone, k = kNone, v = kNone, o_w = kNone, o_b = kNone;
    size_t q_b = kNone, k_b = kNone, v_b = kNone, q_norm = kNone, k_norm = kNone;
    size_t post_attn = kNone, post_ff = kNone;
    size_t fc_w = kNone, fc_b = kNone, gate = kNone, up = kNone, proj_w = kNone, proj_b = kNone;
  };
  struct Layout {
    std::vector<Layer> layers;
    size_t wte = kNone, wpe = kNone, norm_w = kNone, norm_b = kNone, head = kNone;
  };
  static Layout layout(const ModelConfig& config);

  // Replaces this model's weights with those in the files (the same checks as load_weights).
  Status read_weights(const std::vector<std::filesystem::path>& files,
                      Weights weights = Weights::kFloat32);
  // Rounds every matrix to `format` and keeps it at 16 bits, as kAsStored would have loaded it
  // from such a file; the model is then for inference.
  void to_half(HalfTensor::Format format);
  // Whether some weight is held at 16 bits (then forward() takes no targets: no training).
  bool has_half_weights() const;
  // The bytes the weights take in memory (not their gradients).
  int64_t weight_bytes() const;
  // Writes config.json and model.safetensors into `dir`, each atomically: F32, and the weights
  // held at 16 bits in their own format.
  Status save(const std::filesystem::path& dir) const;
  Status save_weights(const std::filesystem::path& file) const;

  // Adds LoRA adapters on the layers `lora` targets, A drawn from `seed`, and freezes the base:
  // training then computes gradients for the adapters alone (trainable()), every base weight
  // stays as it is, and the base may be held at 16 bits. Refused (changing nothing) for a target
  // that matches no layer, a bad config, or a model that has adapters already.
  Status add_lora(const LoraConfig& lora, uint64_t seed);
  // The adapters' settings; nullptr without adapters.
  const LoraConfig* lora() const { return lora_config_ ? &*lora_config_ : nullptr; }
  // What training updates: each adapter's A then B (named "<module>.lora_A.weight" and
  // "<module>.lora_B.weight", the module being the base weight's name less ".weight"), or
  // without adapters every parameter.
  std::vector<Parameter>& trainable() { return lora_config_ ? lora_params_ : params_; }
  const std::vector<Parameter>& trainable() const { return lora_config_ ? lora_params_ : params_; }
  // The adapters in PEFT's format, each file written atomically into `dir`:
  // adapter_config.json (peft_type LORA, r, lora_alpha, lora_dropout, target_modules as the
  // module names adapted, base_model_name_or_path) and adapter_model.safetensors (F32 tensors
  // "base_model.model.<module>.lora_A.weight" and "….lora_B.weight"), which PEFT loads onto the
  // base model.
  Status save_lora(const std::filesystem::path& dir, std::string_view base_model = {}) const;
  // Reads adapters saved by PEFT (by save_lora or by Hugging Face's library) from `dir`: without
  // adapters the model takes the file's config and adapters; with adapters (a checkpoint of this
  // run) the file's config must be theirs. Every tensor must be there with its shape (F32, F16
  // or BF16) and nothing else; PEFT settings this engine does not implement (DoRA, rsLoRA,
  // per-layer ranks, bias training, modules_to_save, ...) are refused by name. Nothing changes
  // on error.
  Status load_lora(const std::filesystem::path& dir);
  // Reads adapters saved by PEFT from `dir` as load_lora does, for serving (Step::adapter),
  // leaving the model as it is. A model holding its weights at 16 bits holds the adapter so too.

  Result<std::shared_ptr<const LoraWeights>> read_lora(const std::filesystem::path& dir) const;
  // Folds each adapter into its layer, W += (alpha / rank) · B A (transposed for GPT-2's Conv1D
  // layers), and drops the adapters: the model is then a plain one, as save() writes it (a
  // merged export). The base must be held in fp32 (load it with Weights::kFloat32).
  Status merge_lora();
  // PEFT's adapter_config.json as a LoraConfig, refusing what the engine does not implement.
  static Result<LoraConfig> read_lora_config(const std::filesystem::path& dir);

  // LoRA dropout applies in forward() with targets while this is on (off by default: a trainer
  // turns it on for its training passes alone, so a validation loss, however it is measured,
  // runs without). Each pass that applies it draws its masks from
  // the adapters' seed and the count of such passes so far, which a checkpoint keeps.
  void set_lora_dropout(bool on) { lora_dropout_ = on; }
  uint64_t lora_seed() const { return lora_seed_; }
  uint64_t lora_draws() const { return lora_draws_; }
  void set_lora_draws(uint64_t seed, uint64_t draws) {
    lora_seed_ = seed;
    lora_draws_ = draws;
  }

  const ModelConfig& config() const { return config_; }
  std::vector<Parameter>& parameters() { return params_; }
  const std::vector<Parameter>& parameters() const { return params_; }
  Parameter* find(std::string_view name);
  void zero_grad();

  // Training forward over `ids` [batch * seq_len] (rows of seq_len tokens). With targets (one
  // per token, -1 ignored) it returns the summed loss over `denominator` (0: the mean) and
  // already adds the classifier's gradient; backward() then adds everything else. Without
  // targets it returns 0 and keeps the final hidden states for logits().
  // The gradient it keeps is that of grad_weight times the loss it returns (an objective built
  // from several losses, as DPO's is, weighs each).
  float forward(const std::vector<int32_t>& ids, int64_t batch, int64_t seq_len,
                const std::vector<int32_t>& targets, int64_t denominator = 0,
                float grad_weight = 1.0f);
  // `ready` (when given) is called with each range [begin, end) of parameters() whose gradients
  // this pass has finished, as they finish: the final norm (with an untied head), each block
  // from the last, then the embeddings. A data-parallel trainer reduces them meanwhile.
  void backward(const std::function<void(size_t begin, size_t end)>& ready = {});
  // Logits [batch * seq_len, vocab] of the last forward().
  Tensor logits();
  // Of the last forward() with targets: how many targets were the most likely token.
  int64_t right_tokens() const { return right_tokens_; }

  // Inference: runs each sequence's new tokens after what its cache holds, appends them to the
  // cache, and returns the logits of each sequence's last new token, [sequences, vocab].
  // A step may name a LoRA adapter this model read (read_lora): its layers then add that
  // adapter's product for this sequence's rows alone. Steps naming different adapters run in
  // one pass, each adapter's product computed once over the rows of all steps naming it.
  struct Step {
    KvCache* cache;
    std::vector<int32_t> tokens;  // at least one
    const LoraWeights* adapter = nullptr;
  };
  Tensor forward_cached(std::vector<Step>& steps);
  // A cache able to hold `capacity` positions (at most max_positions).
  KvCache new_cache(int64_t capacity) const;

 private:
  Model(ModelConfig config, Backend& backend);
  void build_parameters();
  static Layout lay_out(const ModelConfig& c,
                        const std::function<size_t(std::string, Shape, bool)>& add);
  struct Activations;
  void embed(const std::vector<int32_t>& ids, const std::vector<int32_t>& positions, Tensor& x);
  void block_forward(int64_t l, Activations& a, const std::vector<int32_t>& positions,
                     const std::vector<Step>* steps, const std::vector<int64_t>* step_rows);
  void linear(const Tensor& x, size_t w, size_t b, Tensor& y);
  void linear_backward(const Tensor& dy, const Tensor& x, size_t w, size_t b, Tensor& dx,
                       bool accumulate_dx);
  // RMSNorm over rows of `width` (hidden, or each head of q or k) with the weight at index w
  // plus the config's offset. x (and dout) are viewed as rows of width while it runs.
  const Tensor& norm_weight(size_t w);
  void rmsnorm(Tensor& x, size_t w, int64_t width, Tensor& out, Tensor& rstd);
  void rmsnorm_backward(Tensor& dout, Tensor& x, size_t w, int64_t width, const Tensor& rstd,
                        Tensor& dx);
  void final_norm(Tensor& x, Tensor& out, Tensor& mean, Tensor& rstd);
  // The classifier: logits of final hidden states, soft-capped when the config says so.
  void head_logits(const Tensor& x, Tensor& logits);

  // LoRA (lora.cpp): the adapter's product added to y = linear(x), and its backward pass,
  // which adds the adapter's gradients and its part of dx.
  void lora_forward(const Tensor& x, size_t w, Tensor& y);
  void lora_backward(const Tensor& dy, const Tensor& x, size_t w, Tensor& dx);
  // The served adapters' products for layer w, each over its own rows (forward_cached).
  void serve_lora(const Tensor& x, size_t w, Tensor& y);
  // The gradient a backend op adds a base vector's (a norm's, a bias's) into: its own, or with
  // the base frozen a scratch tensor that is never read.
  Tensor& grad_of(size_t i);

  ModelConfig config_;
  Backend& backend_;
  std::vector<Parameter> params_;
  // The linear layers `lora` targets, in parameter order; refused for a target matching none.
  Result<std::vector<size_t>> lora_layers(const LoraConfig& lora) const;
  struct LoraAdapter {
    size_t weight = kNone;  // the base weight in params_
    size_t a = 0, b = 0;    // A and B in lora_params_
    // The last training forward's: the adapter's input after dropout (with dropout only), the
    // dropout's mask (0 or 1 / (1 - p) per input), and u = input Aᵀ.
    Tensor input, keep, u;
  };
  std::optional<LoraConfig> lora_config_;
  std::vector<Parameter> lora_params_;
  std::vector<LoraAdapter> adapters_;
  std::vector<int32_t> adapter_of_;  // per parameter: its adapter's index, or -1
  uint64_t lora_seed_ = 0, lora_draws_ = 0;
  bool lora_dropout_ = false;
  // While forward_cached runs: each adapter its steps name, with the rows [begin, end) it
  // applies to.
  struct ServedGroup {
    const LoraWeights* adapter;
    std::vector<std::pair<int64_t, int64_t>> rows;
  };
  std::vector<ServedGroup> served_;
  bool training_pass_ = false;  // the forward running has targets
  Tensor grad_sink_;
  std::vector<Layer> layers_;  // indices into params_
  size_t wte_ = kNone, wpe_ = kNone, norm_w_ = kNone, norm_b_ = kNone, head_ = kNone;
  Tensor offset_weight_;  // scratch: a norm's weight plus the config's offset
  void ensure_grads();

  // The last training forward.
  std::vector<int32_t> ids_, positions_;
  int64_t batch_ = 0, seq_len_ = 0;
  std::vector<Activations> acts_;
  Tensor final_in_, final_out_, final_mean_, final_rstd_, dfinal_;
  bool have_grad_ = false;
  int64_t right_tokens_ = 0;
};

// The weight files of a model directory: model.safetensors, or the shards its index names.
Result<std::vector<std::filesystem::path>> weight_files(const std::filesystem::path& dir);

// Checks safetensors files against `config` from their headers alone: every tensor the config
// implies present once with its shape, F32/F16/BF16, nothing unexpected. on_tensor (when given)
// is called with each tensor's index in Model::tensor_specs order while its file is open.
Status check_weights(
    const ModelConfig& config, const std::vector<std::filesystem::path>& files,
    const std::function<Status(size_t, const struct TensorEntry&)>& on_tensor = {});

// The PEFT adapter in `dir` checked against a base model of `base` from its config and its
// weights' header alone (no weights read into memory): what load_lora would refuse, refused.
Result<LoraConfig> check_lora(const std::filesystem::path& dir, const ModelConfig& base);

// What a model directory holds, checked without reading its weights into memory: config.json,
// the weights' headers against it, a tokenizer that fits its vocabulary, and a chat template
// (when it has one) that parses. This is how a custom model is validated before it is accepted.
struct ModelSummary {
  ModelConfig config;
  int64_t parameters = 0;
  int64_t weight_bytes = 0;
  int32_t tokenizer_vocab = 0;
  std::vector<std::string> weight_files;
};
Result<ModelSummary> inspect_model(const std::filesystem::path& dir);

}  // namespace mh::engine
