// Generation: batched decoding with a KV cache per sequence. Sequences of different lengths
// decode together; new ones may join between steps (their prompts are prefilled in the same
// forward pass as the others' next tokens), which is what continuous batching needs.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "platform/base/status.h"
#include "platform/engine/grammar.h"
#include "platform/engine/model.h"
#include "platform/engine/random.h"
#include "platform/engine/tokenizer.h"

namespace mh::engine {

struct SamplingParams {
  int64_t max_tokens = 64;
  float temperature = 1.0f;  // 0: greedy
  int64_t top_k = 0;         // 0: all tokens
  float top_p = 1.0f;        // nucleus: the smallest set whose probability reaches top_p
  // transformers' repetition penalty: the logit of every token already in the sequence
  // (prompt included) is divided by it when positive, multiplied when negative. 1: off.
  float repetition_penalty = 1.0f;
  // OpenAI's penalties, as vLLM applies them: the logit of each token already generated (not the
  // prompt's) less count · frequency_penalty and, once it has appeared, presence_penalty. Each in
  // [-2, 2]; 0: off.
  float presence_penalty = 0.0f, frequency_penalty = 0.0f;
  // OpenAI's logit_bias: added to a token's logit before anything else, each in [-100, 100].
  std::vector<std::pair<int32_t, float>> logit_bias;
  uint64_t seed = 0;
  std::vector<std::string> stop;  // generation ends before the first of these in the text
  // Generation also ends at these tokens (beside the model's end-of-sequence ids).
  std::vector<int32_t> stop_token_ids;
  bool ignore_eos = false;
  // Log-probabilities of each generated token (and of the top_logprobs likeliest, up to 20)
  // under the model's own distribution: the log-softmax of its logits, before any bias, penalty,
  // temperature or mask.
  bool logprobs = false;
  int64_t top_logprobs = 0;
  // Who may share this prompt's cached KV blocks with others (a tenant and adapter, say):
  // prompts under other scopes never reuse them.
  std::string prefix_scope;
  // Structured output: only tokens after which the text can still become a sentence of this
  // grammar (grammar.h), and an end of sequence only where it is one; generation stops ("stop")
  // once the sentence is complete and nothing may follow.
  std::shared_ptr<const TokenGrammar> grammar;

  Status validate() const;
};

// One token's worth of output. `text` is what may be shown now: complete UTF-8, and nothing
// that could still turn out to be the start of a stop sequence.
struct TokenLogprob;
struct TokenEvent {
  int32_t token;
  std::string_view text;
  const TokenLogprob* logprob = nullptr;  // the token's, when asked for
};
// Return false to stop this sequence (finish reason "cancelled").
using TokenCallback = std::function<bool(const TokenEvent&)>;

struct TokenLogprob {
  int32_t token;
  float logprob;
  std::vector<std::pair<int32_t, float>> top;  // the likeliest tokens, most likely first
};

struct GenerationResult {
  std::vector<int32_t> tokens;         // generated, without the prompt
  std::vector<TokenLogprob> logprobs;  // per token, when asked for
  std::string text;                    // their text, cut before a stop sequence
  std::string finish_reason;           // "stop", "length" or "cancelled"
  int64_t prompt_tokens = 0;
  int64_t cached_tokens = 0;  // of the prompt's, restored from the prefix cache
};

// What DecodeBatch runs its sequences on: a Model with KV caches in host tensors
// (Model::forward_cached, on any backend), or the CUDA decoder with its caches on the device
// (cuda/decoder.h). A handle names one sequence's cache.
class SequenceRunner {
 public:
  virtual ~SequenceRunner() = default;
  virtual const ModelConfig& config() const = 0;
  // How many sequences it can hold at once.
  virtual int64_t max_sequences() const { return INT64_MAX; }
  // A cache for a new sequence of up to `room` positions (kResourceExhausted when none is free).
  virtual Result<int64_t> open(int64_t room) = 0;
  virtual void close(int64_t handle) = 0;
  // Prefix caching: restores into `handle`'s empty cache the longest run of whole blocks that
  // begins `tokens` and was kept under `scope`, leaving at least the last token to compute;
  // returns how many positions it restored (0 where a runner keeps none).
  virtual int64_t restore_prefix(int64_t, std::span<const int32_t>, std::string_view) { return 0; }
  // Keeps the whole blocks of `tokens`, now in `handle`'s cache, for later prompts under `scope`.
  virtual void keep_prefix(int64_t, std::span<const int32_t>, std::string_view) {}
  // A new cache holding a copy of `handle`'s (kFailedPrecondition where a runner cannot).
  virtual Result<int64_t> fork(int64_t) {
    return failed_precondition("this decoder cannot copy a sequence's cache");
  }
  virtual int64_t length(int64_t handle) const = 0;
  // Whether a sequence may name a LoRA adapter (Work::adapter).
  virtual bool serves_adapters() const { return false; }
  struct Work {
    int64_t handle;
    const std::vector<int32_t>* tokens;
    const LoraWeights* adapter = nullptr;  // read by the runner's model
  };
  // Runs each sequence's tokens after its cache; the logits of each one's last, [n, vocab].
  virtual Tensor step(const std::vector<Work>& work) = 0;
};

// Prompts' KV caches in blocks of kPrefixBlock positions, for prompts that begin alike (a
// system prompt, an agent's growing conversation): each block is found by a hash of its scope
// and every token up to its end, and checked against its own tokens and the block before it,
// so a block is only ever reused after exactly the same tokens. Restoring copies a block's rows
// into a sequence's cache. Past `budget_bytes` the least recently used blocks go first.
class PrefixCache {
 public:
  static constexpr int64_t kPrefixBlock = 16;
  explicit PrefixCache(int64_t budget_bytes) : budget_(budget_bytes) {}
  int64_t restore(KvCache& cache, std::span<const int32_t> tokens, std::string_view scope);
  void keep(const KvCache& cache, std::span<const int32_t> tokens, std::string_view scope);
  int64_t bytes() const { return bytes_; }
  int64_t blocks() const { return static_cast<int64_t>(blocks_.size()); }

 private:
  struct Block {
    uint64_t before;              // the key of the block before it (the scope's, first)
    std::vector<int32_t> tokens;  // its own
    std::string scope;
    std::vector<float> rows;  // KvCache::rows
    uint64_t used;
  };
  int64_t budget_, bytes_ = 0;
  uint64_t clock_ = 0;
  std::unordered_map<uint64_t, Block> blocks_;
};

// Sequences on `model` with host KV caches, keeping prompts' caches up to `prefix_cache_bytes`
// (0: none). The model must outlive the runner.
std::unique_ptr<SequenceRunner> model_runner(Model& model, int64_t prefix_cache_bytes = 0);

class DecodeBatch {
 public:
  DecodeBatch(Model& model, const Tokenizer& tokenizer);
  // `runner` must outlive the batch.
  DecodeBatch(SequenceRunner& runner, const Tokenizer& tokenizer);
  ~DecodeBatch();
  DecodeBatch(const DecodeBatch&) = delete;
  DecodeBatch& operator=(const DecodeBatch&) = delete;

  // Queues a sequence; its prompt is run at the next step(). Returns its id. With `adapter`
  // (read by the runner's model) the sequence decodes through that LoRA adapter, held until it
  // ends; refused when the runner serves none.
  Result<int64_t> add(std::vector<int32_t> prompt, SamplingParams params,
                      TokenCallback on_token = {},
                      std::shared_ptr<const LoraWeights> adapter = nullptr);
  // Queues callbacks.size() sequences of one prompt (OpenAI's n): the prompt runs once and its
  // cache is copied for the others (or, where the runner cannot copy, each runs it), each
  // sampling with its own seed, params.seed + i. Returns their ids in order.
  Result<std::vector<int64_t>> add_choices(std::vector<int32_t> prompt, SamplingParams params,
                                           std::vector<TokenCallback> callbacks,
                                           std::shared_ptr<const LoraWeights> adapter = nullptr);
  // Runs one forward pass over every unfinished sequence and samples one token for each.
  // Returns false when nothing is left to run.
  bool step();
  void cancel(int64_t id);
  int64_t active() const;
  // Results of the sequences that finished since the last call, by id.
  std::vector<std::pair<int64_t, GenerationResult>> take_finished();

 private:
  struct Sequence;
  void find_stop_tokens();
  // The next token: -1 when the sequence's grammar allows none.
  // Opens a sequence's cache, restoring what the prefix cache holds of its prompt.
  Status open_cache(Sequence& s);
  Result<std::unique_ptr<Sequence>> make(std::vector<int32_t> prompt, SamplingParams params,
                                         TokenCallback on_token,
                                         std::shared_ptr<const LoraWeights> adapter);
  // Samples a sequence's next token from its logits row and takes it.
  void take(Sequence& s, const float* logits);
  // Starts the copies waiting on `leader` (whose cache holds the prompt now), or, when it ended
  // first, has them run the prompt themselves.
  void start_followers(const Sequence& leader, bool forked, const float* logits);
  int32_t sample(Sequence& s, const float* logits);
  // A token drawn from `logits` by temperature, top-k and top-p.
  int32_t draw(Sequence& s, const float* logits);
  // Leaves in `logits` (a copy) only what the sequence's grammar allows; false when nothing is.
  bool constrain(Sequence& s, std::vector<float>& logits);
  void finish(Sequence& s, std::string reason);
  void emit(Sequence& s, int32_t token);

  std::unique_ptr<SequenceRunner> owned_;  // the Model& constructor's runner
  SequenceRunner& runner_;
  const Tokenizer& tokenizer_;
  std::vector<int32_t> stop_tokens_;
  std::vector<std::unique_ptr<Sequence>> sequences_;
  int64_t next_id_ = 0;
};

// Runs every prompt to completion in one batch; prompt i samples with seed params.seed + i.
Result<std::vector<GenerationResult>> generate(Model& model, const Tokenizer& tokenizer,
                                               const std::vector<std::vector<int32_t>>& prompts,
                                               const SamplingParams& params,
                                               TokenCallback on_token = {});

}  // namespace mh::engine
