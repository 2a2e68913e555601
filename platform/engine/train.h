// Training: data-parallel ranks behind a Collective, AdamW with warm-up + cosine learning rate,
// global-norm gradient clipping, gradient accumulation, and checkpoints from which a resumed run
// continues exactly as an uninterrupted one would.
//
// One optimizer step takes a global batch of batch_size * grad_accum * world rows. Rank r runs
// micro-batches r, r + world, ...; each micro-batch's gradient is computed on its own and added,
// in order, to the rank's sum, and the ranks' sums are added in rank order. The last
// micro-batch's backward pass hands each block's finished gradients to a thread that all-reduces
// them while the pass goes on to the blocks before it. The loss is summed
// over the global batch's target tokens and divided by their count, so a step's gradient does not
// depend on how the batch was split: one rank with two micro-batches and two ranks with one each
// give bit-identical weights (on the host engine; a device engine sums in its own fixed order,
// to rounding of the same).
//
// The arithmetic runs on a StepEngine: the host engine (the model's backend, the description
// above), or a device engine that keeps the whole training state on a GPU (cuda/trainer.h).
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "platform/base/status.h"
#include "platform/engine/collective.h"
#include "platform/engine/data.h"
#include "platform/engine/model.h"
#include "platform/engine/random.h"

namespace mh::engine {

struct TrainConfig {
  int64_t batch_size = 8;  // rows per micro-batch
  int64_t seq_len = 128;
  int64_t grad_accum = 1;  // micro-batches per rank per step
  int64_t steps = 100;     // optimizer steps in the whole run (the schedule's length)
  int64_t warmup_steps = 10;
  float lr = 3e-4f;
  float min_lr_ratio = 0.1f;  // the cosine ends at lr * min_lr_ratio
  float beta1 = 0.9f, beta2 = 0.95f, eps = 1e-8f;
  float weight_decay = 0.1f;
  float clip = 1.0f;  // global gradient norm limit; 0: no clipping
  uint64_t seed = 1234;

  Status validate() const;
};

// The learning rate at `step` (0-based): linear warm-up to lr, then cosine down to
// lr * min_lr_ratio at the last step.
float learning_rate(const TrainConfig& config, int64_t step);

// AdamW as torch.optim.AdamW computes it: decoupled weight decay (on parameters marked for
// decay), bias-corrected moments.
class AdamW {
 public:
  AdamW(const std::vector<Parameter>& params, const TrainConfig& config);
  // One update of every parameter from `grads` (one per parameter) times grad_scale.
  void step(std::vector<Parameter>& params, const std::vector<Tensor>& grads, float lr,
            float grad_scale = 1.0f);
  // The same from each parameter's own gradient.
  void step(std::vector<Parameter>& params, float lr);
  int64_t steps() const { return steps_; }

 private:
  friend class HostEngine;
  void update(std::vector<Parameter>& params, const std::function<const float*(size_t)>& grad,
              float lr, float grad_scale);
  float beta1_, beta2_, eps_, weight_decay_;
  std::vector<Tensor> m_, v_;
  int64_t steps_ = 0;
};

// One preference pair as a DPO step computes it (Rafailov et al., 2023): each side's row (the
// reply's tokens as targets, -1 before them; see PreferenceData::side) and the reference
// policy's log-probability of each reply, summed over its tokens. With π the policy,
//   z = beta · ((log π(chosen) − log π_ref(chosen)) − (log π(rejected) − log π_ref(rejected)))
// and the pair's loss is −log σ(z); z is the reward margin (each side's reward being beta times
// its log-ratio), and a pair is ranked right when z > 0.
struct Preference {
  std::vector<int32_t> chosen_ids, chosen_targets, rejected_ids, rejected_targets;
  double ref_chosen = 0, ref_rejected = 0;
};

// DPO's loss of one pair and its derivative in z, in double: −log σ(z) and −σ(−z).
double dpo_loss(double z);
double dpo_loss_slope(double z);

// Where a training step's arithmetic runs. The Trainer decides what a step computes (which
// rows, the loss denominator, the learning rate) and writes checkpoints; an engine computes the
// micro-batches' gradients, sums them over the ranks and updates the weights. The host engine
// (make_host_engine) runs the model's own backend and keeps AdamW in host memory; a device
// engine (cuda/trainer.h) keeps weights, gradients and moments in device memory and copies them
// out only when asked.
class StepEngine {
 public:
  virtual ~StepEngine() = default;
  virtual const char* name() const = 0;
  // Starts a step: the gradient sum is zero.
  virtual void begin_step() = 0;
  // Adds the gradient of one micro-batch, `batch` rows of `seq_len` ids with their targets, to
  // the step's sum, and its loss (summed over its targets, over `denominator`) to the step's.
  // `last` marks the rank's last micro-batch of the step: with several ranks its gradients go
  // out to the others as its backward pass finishes them.
  virtual void micro_batch(const std::vector<int32_t>& ids, const std::vector<int32_t>& targets,
                           int64_t batch, int64_t seq_len, int64_t denominator, bool last) = 0;
  // Adds the gradient of DPO's loss over `pairs` (summed, over `denominator` pairs) to the
  // step's sum, its loss to the step's, and its reward margins and right rankings to theirs.
  // Dropout does not apply (as TRL's DPO trainer leaves it out by default). Engines that do not
  // run preference training throw.
  virtual void preference_batch(const std::vector<Preference>& pairs, float beta,
                                int64_t denominator, bool last);
  // Sums the step's gradient and loss over the ranks, and their wishes to stop.
  struct Reduced {
    float loss = 0;
    double squares = 0;  // the summed gradient's squared norm
    bool stop = false;   // some rank wants to stop
    double margins = 0, right = 0;  // preference steps: summed reward margins, pairs ranked right
    // Targets that were the most likely token, summed; negative where the engine does not count.
    double right_tokens = -1;
  };
  virtual Reduced reduce(bool want_stop) = 0;
  // The loss of `batch` rows (summed over their targets, over `denominator`) on the current
  // weights, leaving the step's sum and the weights alone: a validation loss, between steps.
  virtual float loss(const std::vector<int32_t>& ids, const std::vector<int32_t>& targets,
                     int64_t batch, int64_t seq_len, int64_t denominator) = 0;
  // One AdamW update from the summed gradient times grad_scale.
  virtual void update(float lr, float grad_scale) = 0;
  // Makes the model's parameter values and exp_avg() / exp_avg_sq() current in host memory.
  virtual void sync_to_host() = 0;
  virtual const std::vector<Tensor>& exp_avg() const = 0;  // one per parameter
  virtual const std::vector<Tensor>& exp_avg_sq() const = 0;
  // Takes the model's parameter values (just read from a checkpoint) and these moments, after
  // `steps` updates.
  virtual void restore(std::vector<Tensor> exp_avg, std::vector<Tensor> exp_avg_sq,
                       int64_t steps) = 0;
};

// The host engine: `model`'s backend, AdamW in host memory, the gradient all-reduced through
// `collective` while the last micro-batch's backward pass goes on.
std::unique_ptr<StepEngine> make_host_engine(Model& model, const TrainConfig& config,
                                             Collective& collective);

struct StepResult {
  int64_t step = 0;  // the step just taken, 1-based
  float loss = 0;    // mean over the global batch's target tokens
  float lr = 0;
  float grad_norm = 0;  // before clipping
  int64_t tokens = 0;   // input tokens in the global batch
  bool stop = false;    // some rank asked to stop after this step (every rank sees the same)
  // Preference (DPO) steps: the mean reward margin and the share of pairs ranked right.
  std::optional<float> reward_margin, reward_accuracy;
  // Supervised steps on an engine that counts it: the share of the global batch's targets that
  // were the most likely token before the step (OpenAI's train_mean_token_accuracy).
  std::optional<float> token_accuracy;
};

// The mean loss over the target tokens of `data`'s first `max_rows` rows of seq_len (all
// rows when it holds fewer), run `batch` rows at a time: a validation loss. It leaves the
// model's gradients dirty (training zeroes them before each step).
double evaluation_loss(Model& model, const Dataset& data, int64_t seq_len, int64_t batch,
                       int64_t max_rows);
// The same on an engine's weights (a device engine computes it on the device).
double evaluation_loss(StepEngine& engine, const Dataset& data, int64_t seq_len, int64_t batch,
                       int64_t max_rows);

class Trainer {
 public:
  // `model`, `data` and `collective` must outlive the trainer. Every rank builds its model from
  // the same weights (create with the same seed, or load the same files). Without an engine the
  // step runs on the host engine.
  Trainer(Model& model, const Dataset& data, TrainConfig config, Collective& collective,
          std::unique_ptr<StepEngine> engine = nullptr);
  // DPO on preference pairs: each step takes batch_size * grad_accum * world pairs, each side
  // cut to seq_len tokens. The reference policy is the model as it is now (a base, or a base
  // with fresh LoRA adapters, which compute the same): its log-probabilities of every reply are
  // computed here, once, on the engine, so no second model is held, and those of `validation`
  // (when given) too. Make the trainer before loading a checkpoint into it.
  Trainer(Model& model, const PreferenceData& pairs, float beta, TrainConfig config,
          Collective& collective, std::unique_ptr<StepEngine> engine = nullptr,
          const PreferenceData* validation = nullptr);
  ~Trainer();

  // One optimizer step. `want_stop` is this rank's wish to stop after it; the ranks agree
  // through the step's all-reduce, so they all stop after the same step.
  StepResult step(bool want_stop = false);
  int64_t steps_done() const { return step_; }
  const TrainConfig& config() const { return config_; }
  const StepEngine& engine() const { return *engine_; }
  // Makes the model's weights those the training reached (a device engine keeps its own).
  void sync_model() { engine_->sync_to_host(); }
  // The mean loss over the target tokens of `data`'s first `max_rows` rows on the weights the
  // training reached, batch_size rows at a time, on the trainer's engine (between steps).
  double validation_loss(const Dataset& data, int64_t max_rows) {
    return evaluation_loss(*engine_, data, config_.seq_len, config_.batch_size, max_rows);
  }
  // DPO's mean loss over the first `max_pairs` of the validation pairs given at construction,
  // on the weights the training reached, on the trainer's engine (between steps).
  double preference_validation_loss(int64_t max_pairs);

  // A checkpoint is a directory: config.json + model.safetensors (a loadable model), or for a
  // model with LoRA adapters the adapter alone in PEFT's files (Model::save_lora),
  // optimizer.safetensors (AdamW moments of what trains) and trainer_state.json (step, data
  // position, RNG, LoRA dropout's draws).
  // It is written under a temporary name and renamed into place. Only rank 0 writes.
  Status save_checkpoint(const std::filesystem::path& dir) const;
  // Restores the weights, optimizer, step, data position and RNG saved by save_checkpoint.
  Status load_checkpoint(const std::filesystem::path& dir);

 private:
  void next_rows(std::vector<int64_t>& rows);
  void new_epoch();
  void shuffle_rows();
  // What an epoch visits: the dataset's rows of seq_len, or the preference pairs.
  int64_t examples() const;
  StepResult preference_step(const std::vector<int64_t>& rows, bool want_stop);
  // A step's end, once its micro-batches are in: the sums over the ranks (into `reduced`),
  // clipping, the update, and the result.
  StepResult finish_step(bool want_stop, int64_t tokens, StepEngine::Reduced* reduced);

  // The reference's log-probabilities of each pair's replies: of `pairs`' into `chosen` and
  // `rejected`, on the engine's weights as they are.
  void reference_log_probs(const PreferenceData& pairs, std::vector<double>& chosen,
                           std::vector<double>& rejected);
  // log π of pair i's chosen (or rejected) reply on the engine's weights, without dropout.
  double log_prob(const PreferenceData& pairs, int64_t i, bool chosen);

  Model& model_;
  const Dataset* data_ = nullptr;
  const PreferenceData* pairs_ = nullptr;
  float beta_ = 0.1f;
  const PreferenceData* validation_pairs_ = nullptr;
  std::vector<double> ref_chosen_, ref_rejected_;  // the reference's, per pair
  std::vector<double> valid_chosen_, valid_rejected_;
  TrainConfig config_;
  Collective& comm_;
  std::unique_ptr<StepEngine> engine_;
  int64_t step_ = 0;
  // Data order: each epoch visits every row once, in an order drawn from epoch_seed_.
  Rng rng_;
  int64_t epoch_ = -1, position_ = 0;
  uint64_t epoch_seed_ = 0;
  std::vector<int64_t> order_;
};

}  // namespace mh::engine
