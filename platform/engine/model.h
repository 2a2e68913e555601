// Model: the two decoder-only families, configured by a Hugging Face config.json and stored as
// safetensors with Hugging Face tensor names, so that a model saved by `transformers` loads here
// and ours load there.
//
//   gpt2   learned positions, LayerNorm, GELU (tanh), biases, tied embeddings; Conv1D weights
//          stored [in, out] as transformers stores them
//   llama  RMSNorm, RoPE, SwiGLU, grouped-query attention, no biases; Linear weights [out, in]
//
// Training runs forward() with targets, then backward(); the classifier's gradient is taken
// chunk by chunk inside forward(), so full-vocabulary logits are never held for a whole batch.
// Inference runs forward_cached() over sequences that each keep a KV cache (see KvCache).
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "platform/base/status.h"
#include "platform/engine/backend.h"
#include "platform/engine/json.h"

namespace mh::engine {

enum class Family { kGpt2, kLlama };
std::string_view family_name(Family family);  // "gpt2", "llama"

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
  float rope_theta = 10000.0f;  // llama
  bool tie_embeddings = true;
  int64_t bos_token_id = -1, eos_token_id = -1;  // -1: none given
  // Every end-of-sequence id (Llama 3.1 lists three); eos_token_id is the first.
  std::vector<int64_t> eos_token_ids;

  int64_t parameter_count() const;
};

// Parses and validates a config.json (model_type "gpt2" or "llama"); every error names the field.
Result<ModelConfig> parse_model_config(std::string_view json_text);
// The config.json transformers reads for `config`.
std::string model_config_json(const ModelConfig& config);

// A parameter's Hugging Face name, shape, and whether weight decay applies.
struct TensorSpec {
  std::string name;
  std::vector<int64_t> shape;
  bool decay = false;
};

struct Parameter {
  std::string name;  // the Hugging Face tensor name
  Tensor value;
  Tensor grad;         // same shape; backward passes add into it
  bool decay = false;  // weight decay applies (matrices, not norms or biases)
};

// Keys and values of one sequence, for every layer, grown as tokens are appended.
class KvCache {
 public:
  int64_t length() const { return length_; }

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
  static Result<std::unique_ptr<Model>> load(const std::filesystem::path& dir, Backend& backend);
  // Reads the weights of `config` from safetensors files; every expected tensor must be there
  // with its shape, and nothing unexpected.
  static Result<std::unique_ptr<Model>> load_weights(
      const ModelConfig& config, const std::vector<std::filesystem::path>& files, Backend& backend);
  // The tensors a model of `config` is made of, in order, without allocating them.
  static std::vector<TensorSpec> tensor_specs(const ModelConfig& config);

  // Where each tensor of tensor_specs() is, by its index: per block, gpt2 uses ln1/ln2 weight and
  // bias, qkv (the fused c_attn), o, fc and proj with biases; llama uses ln1/ln2 weights and q,
  // k, v, o, gate, up, proj (down_proj) without biases. A block's tensors run from its ln1_w to
  // the next block's (the last block's to norm_w). head is wte when the embeddings are tied.
  struct Layer {
    size_t ln1_w = 0, ln1_b = 0, ln2_w = 0, ln2_b = 0;
    size_t qkv_w = 0, qkv_b = 0, q = 0, k = 0, v = 0, o_w = 0, o_b = 0;
    size_t fc_w = 0, fc_b = 0, gate = 0, up = 0, proj_w = 0, proj_b = 0;
  };
  struct Layout {
    std::vector<Layer> layers;
    size_t wte = 0, wpe = 0, norm_w = 0, norm_b = 0, head = 0;
  };
  static Layout layout(const ModelConfig& config);

  // Replaces this model's weights with those in the files (the same checks as load_weights).
  Status read_weights(const std::vector<std::filesystem::path>& files);
  // Writes config.json and model.safetensors (F32) into `dir`, each atomically.
  Status save(const std::filesystem::path& dir) const;
  Status save_weights(const std::filesystem::path& file) const;

  const ModelConfig& config() const { return config_; }
  std::vector<Parameter>& parameters() { return params_; }
  const std::vector<Parameter>& parameters() const { return params_; }
  Parameter* find(std::string_view name);
  void zero_grad();

  // Training forward over `ids` [batch * seq_len] (rows of seq_len tokens). With targets (one
  // per token, -1 ignored) it returns the summed loss over `denominator` (0: the mean) and
  // already adds the classifier's gradient; backward() then adds everything else. Without
  // targets it returns 0 and keeps the final hidden states for logits().
  float forward(const std::vector<int32_t>& ids, int64_t batch, int64_t seq_len,
                const std::vector<int32_t>& targets, int64_t denominator = 0);
  // `ready` (when given) is called with each range [begin, end) of parameters() whose gradients
  // this pass has finished, as they finish: the final norm (with an untied head), each block
  // from the last, then the embeddings. A data-parallel trainer reduces them meanwhile.
  void backward(const std::function<void(size_t begin, size_t end)>& ready = {});
  // Logits [batch * seq_len, vocab] of the last forward().
  Tensor logits();

  // Inference: runs each sequence's new tokens after what its cache holds, appends them to the
  // cache, and returns the logits of each sequence's last new token, [sequences, vocab].
  struct Step {
    KvCache* cache;
    std::vector<int32_t> tokens;  // at least one
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
  void linear(const Tensor& x, const Parameter& w, const Parameter* b, Tensor& y);
  void linear_backward(const Tensor& dy, const Tensor& x, Parameter& w, Parameter* b, Tensor& dx,
                       bool accumulate_dx);

  ModelConfig config_;
  Backend& backend_;
  std::vector<Parameter> params_;
  std::vector<Layer> layers_;  // indices into params_
  size_t wte_ = 0, wpe_ = 0, norm_w_ = 0, norm_b_ = 0, head_ = 0;

  // The last training forward.
  std::vector<int32_t> ids_, positions_;
  int64_t batch_ = 0, seq_len_ = 0;
  std::vector<Activations> acts_;
  Tensor final_in_, final_out_, final_mean_, final_rstd_, dfinal_;
  bool have_grad_ = false;
};

// The weight files of a model directory: model.safetensors, or the shards its index names.
Result<std::vector<std::filesystem::path>> weight_files(const std::filesystem::path& dir);

// Checks safetensors files against `config` from their headers alone: every tensor the config
// implies present once with its shape, F32/F16/BF16, nothing unexpected. on_tensor (when given)
// is called with each tensor's index in Model::tensor_specs order while its file is open.
Status check_weights(
    const ModelConfig& config, const std::vector<std::filesystem::path>& files,
    const std::function<Status(size_t, const struct TensorEntry&)>& on_tensor = {});

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
