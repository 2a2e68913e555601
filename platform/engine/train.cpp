#include "platform/engine/train.h"

#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <exception>
#include <tuple>
#include <mutex>
#include <thread>

#include "platform/engine/files.h"
#include "platform/engine/json.h"
#include "platform/engine/safetensors.h"

namespace mh::engine {
namespace {

std::span<const uint8_t> bytes_of(const Tensor& t) {
  return {reinterpret_cast<const uint8_t*>(t.data()), static_cast<size_t>(t.numel()) * 4};
}

Status state_error(std::string_view what) {
  return invalid_argument("trainer_state.json: " + std::string(what));
}

// A 64-bit unsigned member, which trainer_state.json keeps as decimal text (JSON numbers are
// doubles to many readers).
Result<uint64_t> unsigned_member(const std::string& text, std::string_view name) {
  try {
    size_t used = 0;
    const uint64_t value = std::stoull(text, &used);
    if (used == text.size() && !text.starts_with('-')) return value;
  } catch (const std::exception&) {
  }
  return state_error("\"" + std::string(name) + "\" is not an unsigned integer");
}

}  // namespace

// All-reduces buffers on a thread of its own, in the order they are submitted (every rank
// submits the same buffers in the same order, so the collective's calls line up).
class GradientReducer {
 public:
  explicit GradientReducer(Collective& comm) : comm_(comm), thread_([this] { run(); }) {}
  ~GradientReducer() {
    {
      std::lock_guard lock(mutex_);
      stop_ = true;
    }
    wake_.notify_all();
    thread_.join();
  }
  // `buffer` must stay put until drain() returns.
  void submit(std::vector<float>* buffer) {
    {
      std::lock_guard lock(mutex_);
      queue_.push_back(buffer);
    }
    wake_.notify_all();
  }
  // Waits for everything submitted; rethrows the first failure (a lost rank).
  void drain() {
    std::unique_lock lock(mutex_);
    idle_.wait(lock, [&] { return queue_.empty(); });
    if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
  }

 private:
  void run() {
    std::unique_lock lock(mutex_);
    for (;;) {
      wake_.wait(lock, [&] { return stop_ || !queue_.empty(); });
      if (queue_.empty()) return;
      std::vector<float>* buffer = queue_.front();
      const bool failed = error_ != nullptr;  // a broken group is not called again
      lock.unlock();
      std::exception_ptr error;
      if (!failed) {
        try {
          comm_.all_reduce_sum(*buffer);
        } catch (...) {
          error = std::current_exception();
        }
      }
      lock.lock();
      if (error && !error_) error_ = error;
      queue_.pop_front();
      if (queue_.empty()) idle_.notify_all();
    }
  }

  Collective& comm_;
  std::mutex mutex_;
  std::condition_variable wake_, idle_;
  std::deque<std::vector<float>*> queue_;
  std::exception_ptr error_;
  bool stop_ = false;
  std::thread thread_;  // last: it starts once the rest is built
};

Status TrainConfig::validate() const {
  auto bad = [](std::string field, std::string what) {
    return invalid_argument(field + " " + what, field);
  };
  if (batch_size < 1) return bad("batch_size", "must be at least 1");
  if (seq_len < 1) return bad("seq_len", "must be at least 1");
  if (grad_accum < 1) return bad("grad_accum", "must be at least 1");
  if (steps < 1) return bad("steps", "must be at least 1");
  if (warmup_steps < 0 || warmup_steps > steps) return bad("warmup_steps", "must be in [0, steps]");
  if (!(lr > 0) || !std::isfinite(lr)) return bad("lr", "must be a positive number");
  if (!(min_lr_ratio >= 0 && min_lr_ratio <= 1)) return bad("min_lr_ratio", "must be in [0, 1]");
  if (!(beta1 >= 0 && beta1 < 1) || !(beta2 >= 0 && beta2 < 1)) {
    return bad("betas", "must be in [0, 1)");
  }
  if (!(eps > 0)) return bad("eps", "must be positive");
  if (!(weight_decay >= 0)) return bad("weight_decay", "must not be negative");
  if (!(clip >= 0)) return bad("clip", "must not be negative");
  return {};
}

float learning_rate(const TrainConfig& c, int64_t step) {
  if (step < c.warmup_steps) {
    return c.lr * static_cast<float>(step + 1) / static_cast<float>(c.warmup_steps);
  }
  const int64_t span = std::max<int64_t>(1, c.steps - c.warmup_steps - 1);
  const double progress =
      std::min(1.0, static_cast<double>(step - c.warmup_steps) / static_cast<double>(span));
  const double cosine = 0.5 * (1.0 + std::cos(M_PI * progress));
  return static_cast<float>(c.lr * (c.min_lr_ratio + (1.0 - c.min_lr_ratio) * cosine));
}

AdamW::AdamW(const std::vector<Parameter>& params, const TrainConfig& config)
    : beta1_(config.beta1),
      beta2_(config.beta2),
      eps_(config.eps),
      weight_decay_(config.weight_decay) {
  for (const auto& p : params) {
    m_.emplace_back(p.value.shape());
    v_.emplace_back(p.value.shape());
  }
}

void AdamW::step(std::vector<Parameter>& params, const std::vector<Tensor>& grads, float lr,
                 float grad_scale) {
  update(
      params, [&](size_t i) { return grads[i].data(); }, lr, grad_scale);
}

void AdamW::step(std::vector<Parameter>& params, float lr) {
  update(
      params, [&](size_t i) { return params[i].grad.data(); }, lr, 1.0f);
}

void AdamW::update(std::vector<Parameter>& params, const std::function<const float*(size_t)>& grad,
                   float lr, float grad_scale) {
  ++steps_;
  const double t = static_cast<double>(steps_);
  const float bc1 = static_cast<float>(1.0 - std::pow(beta1_, t));
  const float bc2_sqrt = static_cast<float>(std::sqrt(1.0 - std::pow(beta2_, t)));
  const float step_size = lr / bc1;
  for (size_t i = 0; i < params.size(); ++i) {
    float* w = params[i].value.data();
    float* m = m_[i].data();
    float* v = v_[i].data();
    const float* g = grad(i);
    const float decay = params[i].decay ? 1.0f - lr * weight_decay_ : 1.0f;
    for (int64_t j = 0; j < params[i].value.numel(); ++j) {
      const float gj = g[j] * grad_scale;
      m[j] = beta1_ * m[j] + (1.0f - beta1_) * gj;
      v[j] = beta2_ * v[j] + (1.0f - beta2_) * gj * gj;
      w[j] = w[j] * decay - step_size * m[j] / (std::sqrt(v[j]) / bc2_sqrt + eps_);
    }
  }
}

double dpo_loss(double z) {  // softplus(−z), stably
  return std::max(-z, 0.0) + std::log1p(std::exp(-std::abs(z)));
}
double dpo_loss_slope(double z) { return -1.0 / (1.0 + std::exp(z)); }

void StepEngine::preference_batch(const std::vector<Preference>&, float, int64_t, bool) {
  throw ShapeError(std::string("the ") + name() + " engine does not run preference training");
}

// The host engine: the model's backend computes each micro-batch's gradient, which is added in
// order to the step's sum; with several ranks the last micro-batch's finished gradients go out
// a block at a time while its backward pass goes on.
class HostEngine final : public StepEngine {
 public:
  HostEngine(Model& model, const TrainConfig& config, Collective& comm)
      : model_(model), adam_(model.trainable(), config) {
    for (const auto& p : model_.trainable()) sum_.emplace_back(p.value.shape());
    if (comm.world() > 1) reducer_ = std::make_unique<GradientReducer>(comm);
  }
  const char* name() const override { return "host"; }

  void begin_step() override {
    for (auto& s : sum_) s.fill(0.0f);
    loss_ = 0;
    margins_ = right_ = right_tokens_ = 0;
    buckets_.clear();
    ranges_.clear();
  }

  void micro_batch(const std::vector<int32_t>& ids, const std::vector<int32_t>& targets,
                   int64_t batch, int64_t seq_len, int64_t denominator, bool last) override {
    model_.zero_grad();
    model_.set_lora_dropout(true);  // a training pass; measurements run without
    loss_ += model_.forward(ids, batch, seq_len, targets, denominator);
    right_tokens_ += static_cast<double>(model_.right_tokens());
    model_.set_lora_dropout(false);
    if (reducer_ && last) {
      model_.backward([&](size_t begin, size_t end) { send(begin, end); });
    } else {
      model_.backward();
      add_gradients(0, sum_.size());
    }
  }

  void preference_batch(const std::vector<Preference>& pairs, float beta, int64_t denominator,
                        bool last) override {
    const double n = static_cast<double>(denominator);
    auto length = [](const std::vector<int32_t>& ids) { return static_cast<int64_t>(ids.size()); };
    for (const Preference& p : pairs) {
      // The policy's log-probabilities now (forward returns the summed −log π of the targets).
      const double chosen =
          -model_.forward(p.chosen_ids, 1, length(p.chosen_ids), p.chosen_targets, 1);
      const double rejected =
          -model_.forward(p.rejected_ids, 1, length(p.rejected_ids), p.rejected_targets, 1);
      const double z = beta * ((chosen - p.ref_chosen) - (rejected - p.ref_rejected));
      loss_ += static_cast<float>(dpo_loss(z) / n);
      margins_ += z;
      right_ += z > 0 ? 1 : 0;
      // d loss / d(−log π(chosen)) = −β slope / n, and the opposite for the rejected side.
      const auto w = static_cast<float>(-beta * dpo_loss_slope(z) / n);
      for (const auto& [ids, targets, weight] :
           {std::tuple{&p.chosen_ids, &p.chosen_targets, w},
            std::tuple{&p.rejected_ids, &p.rejected_targets, -w}}) {
        model_.zero_grad();
        model_.forward(*ids, 1, length(*ids), *targets, 1, weight);
        model_.backward();
        add_gradients(0, sum_.size());
      }
    }
    if (reducer_ && last) submit(0, sum_.size());
  }

  Reduced reduce(bool want_stop) override {
    Reduced r;
    r.loss = loss_;
    r.stop = want_stop;
    r.margins = margins_;
    r.right = right_;
    r.right_tokens = right_tokens_;
    if (reducer_) {
      std::vector<float>& tail = buckets_.emplace_back(
          std::vector<float>{loss_, want_stop ? 1.0f : 0.0f, static_cast<float>(margins_),
                             static_cast<float>(right_), static_cast<float>(right_tokens_)});
      reducer_->submit(&tail);
      reducer_->drain();
      for (size_t r = 0; r < ranges_.size(); ++r) {
        size_t at = 0;
        for (size_t i = ranges_[r].first; i < ranges_[r].second; ++i) {
          std::copy_n(buckets_[r].begin() + static_cast<std::ptrdiff_t>(at), sum_[i].numel(),
                      sum_[i].data());
          at += static_cast<size_t>(sum_[i].numel());
        }
      }
      r.loss = tail[0];
      r.stop = tail[1] > 0;
      r.margins = tail[2];
      r.right = tail[3];
      r.right_tokens = tail[4];
    }
    for (const auto& s : sum_) {
      for (float g : s.values()) r.squares += static_cast<double>(g) * g;
    }
    return r;
  }

  float loss(const std::vector<int32_t>& ids, const std::vector<int32_t>& targets, int64_t batch,
             int64_t seq_len, int64_t denominator) override {
    return model_.forward(ids, batch, seq_len, targets, denominator);
  }

  void update(float lr, float grad_scale) override {
    adam_.step(model_.trainable(), sum_, lr, grad_scale);
  }
  void sync_to_host() override {}
  const std::vector<Tensor>& exp_avg() const override { return adam_.m_; }
  const std::vector<Tensor>& exp_avg_sq() const override { return adam_.v_; }
  void restore(std::vector<Tensor> m, std::vector<Tensor> v, int64_t steps) override {
    adam_.m_ = std::move(m);
    adam_.v_ = std::move(v);
    adam_.steps_ = steps;
  }

 private:
  void add_gradients(size_t begin, size_t end) {
    const auto& params = model_.trainable();
    for (size_t i = begin; i < end; ++i) {
      float* s = sum_[i].data();
      const float* g = params[i].grad.data();
      for (int64_t j = 0; j < sum_[i].numel(); ++j) s[j] += g[j];
    }
  }
  // Parameters [begin, end) are final for this step: into the sum, then out, flattened.
  void send(size_t begin, size_t end) {
    add_gradients(begin, end);
    submit(begin, end);
  }
  // The sum of parameters [begin, end), out to the other ranks.
  void submit(size_t begin, size_t end) {
    std::vector<float>& flat = buckets_.emplace_back();
    for (size_t i = begin; i < end; ++i) {
      flat.insert(flat.end(), sum_[i].values().begin(), sum_[i].values().end());
    }
    ranges_.emplace_back(begin, end);
    reducer_->submit(&flat);
  }

  Model& model_;
  AdamW adam_;
  std::vector<Tensor> sum_;  // per parameter: the step's gradient
  float loss_ = 0;           // the step's loss so far
  double margins_ = 0, right_ = 0;  // preference steps: reward margins, pairs ranked right
  double right_tokens_ = 0;          // targets that were the most likely token
  // With several ranks: all-reduces gradient buckets while the backward pass goes on.
  std::unique_ptr<GradientReducer> reducer_;
  std::deque<std::vector<float>> buckets_;  // stay put while the reducer works on them
  std::vector<std::pair<size_t, size_t>> ranges_;
};

std::unique_ptr<StepEngine> make_host_engine(Model& model, const TrainConfig& config,
                                             Collective& collective) {
  return std::make_unique<HostEngine>(model, config, collective);
}

Trainer::Trainer(Model& model, const Dataset& data, TrainConfig config, Collective& collective,
                 std::unique_ptr<StepEngine> engine)
    : model_(model),
      data_(&data),
      config_(config),
      comm_(collective),
      engine_(engine ? std::move(engine) : make_host_engine(model, config, collective)),
      rng_(config.seed) {}

Trainer::Trainer(Model& model, const PreferenceData& pairs, float beta, TrainConfig config,
                 Collective& collective, std::unique_ptr<StepEngine> engine,
                 const PreferenceData* validation)
    : model_(model),
      pairs_(&pairs),
      beta_(beta),
      validation_pairs_(validation),
      config_(config),
      comm_(collective),
      engine_(engine ? std::move(engine) : make_host_engine(model, config, collective)),
      rng_(config.seed) {
  // The reference policy's, on the weights as they are now.
  reference_log_probs(pairs, ref_chosen_, ref_rejected_);
  if (validation != nullptr) reference_log_probs(*validation, valid_chosen_, valid_rejected_);
}

double Trainer::log_prob(const PreferenceData& pairs, int64_t i, bool chosen) {
  std::vector<int32_t> ids, targets;
  pairs.side(i, chosen, config_.seq_len, ids, targets);
  return -static_cast<double>(engine_->loss(ids, targets, 1, static_cast<int64_t>(ids.size()), 1));
}

void Trainer::reference_log_probs(const PreferenceData& pairs, std::vector<double>& chosen,
                                  std::vector<double>& rejected) {
  for (int64_t i = 0; i < pairs.size(); ++i) {
    chosen.push_back(log_prob(pairs, i, true));
    rejected.push_back(log_prob(pairs, i, false));
  }
}

double Trainer::preference_validation_loss(int64_t max_pairs) {
  if (validation_pairs_ == nullptr) throw ShapeError("the trainer has no validation pairs");
  const int64_t n = std::min(validation_pairs_->size(), max_pairs);
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) {
    const auto at = static_cast<size_t>(i);
    sum += dpo_loss(beta_ * ((log_prob(*validation_pairs_, i, true) - valid_chosen_[at]) -
                             (log_prob(*validation_pairs_, i, false) - valid_rejected_[at])));
  }
  return n > 0 ? sum / static_cast<double>(n) : 0.0;
}

Trainer::~Trainer() = default;

int64_t Trainer::examples() const {
  return pairs_ != nullptr ? pairs_->size() : data_->rows(config_.seq_len);
}

StepResult Trainer::preference_step(const std::vector<int64_t>& rows, bool want_stop) {
  const int64_t b = config_.batch_size;
  std::vector<std::vector<Preference>> micro(rows.size() / static_cast<size_t>(b));
  int64_t tokens = 0;
  for (size_t i = 0; i < rows.size(); ++i) {
    Preference p;
    pairs_->side(rows[i], true, config_.seq_len, p.chosen_ids, p.chosen_targets);
    pairs_->side(rows[i], false, config_.seq_len, p.rejected_ids, p.rejected_targets);
    p.ref_chosen = ref_chosen_[static_cast<size_t>(rows[i])];
    p.ref_rejected = ref_rejected_[static_cast<size_t>(rows[i])];
    tokens += static_cast<int64_t>(p.chosen_ids.size() + p.rejected_ids.size());
    micro[i / static_cast<size_t>(b)].push_back(std::move(p));
  }
  const auto global = static_cast<int64_t>(rows.size());
  engine_->begin_step();
  for (int64_t a = 0; a < config_.grad_accum; ++a) {
    const size_t m = static_cast<size_t>(a * comm_.world() + comm_.rank());
    engine_->preference_batch(micro[m], beta_, global, a + 1 == config_.grad_accum);
  }
  StepEngine::Reduced reduced;
  StepResult r = finish_step(want_stop, tokens, &reduced);
  r.reward_margin = static_cast<float>(reduced.margins / static_cast<double>(global));
  r.reward_accuracy = static_cast<float>(reduced.right / static_cast<double>(global));
  return r;
}

StepResult Trainer::finish_step(bool want_stop, int64_t tokens, StepEngine::Reduced* reduced) {
  *reduced = engine_->reduce(want_stop);
  const float norm = static_cast<float>(std::sqrt(reduced->squares));
  const float scale = config_.clip > 0 && norm > config_.clip ? config_.clip / (norm + 1e-6f) : 1;
  const float lr = learning_rate(config_, step_);
  engine_->update(lr, scale);
  ++step_;
  StepResult r;
  r.step = step_;
  r.loss = reduced->loss;
  r.lr = lr;
  r.grad_norm = norm;
  r.tokens = tokens;
  r.stop = reduced->stop;
  return r;
}

void Trainer::new_epoch() {
  ++epoch_;
  epoch_seed_ = rng_.next();
  shuffle_rows();
  position_ = 0;
}

void Trainer::shuffle_rows() {
  Rng order_rng(epoch_seed_);
  order_.resize(static_cast<size_t>(examples()));
  for (size_t i = 0; i < order_.size(); ++i) order_[i] = static_cast<int64_t>(i);
  for (size_t i = order_.size(); i > 1; --i) {  // Fisher-Yates
    std::swap(order_[i - 1], order_[order_rng.below(i)]);
  }
}

void Trainer::next_rows(std::vector<int64_t>& rows) {
  const int64_t global = config_.batch_size * config_.grad_accum * comm_.world();
  for (int64_t i = 0; i < global; ++i) {
    if (epoch_ < 0 || position_ >= static_cast<int64_t>(order_.size())) new_epoch();
    rows.push_back(order_[static_cast<size_t>(position_++)]);
  }
}

namespace {

// The evaluation loop: `loss` runs a batch's rows and returns its summed loss over `n`.
double mean_loss(const Dataset& data, int64_t seq_len, int64_t batch, int64_t max_rows,
                 const std::function<float(const std::vector<int32_t>&, const std::vector<int32_t>&,
                                           int64_t, int64_t)>& loss) {
  const int64_t rows = std::min(data.rows(seq_len), max_rows);
  double total = 0;
  int64_t counted = 0;
  for (int64_t first = 0; first < rows; first += batch) {
    const int64_t b = std::min(batch, rows - first);
    std::vector<int32_t> ids, targets;
    for (int64_t r = first; r < first + b; ++r) data.row(r, seq_len, ids, targets);
    const auto n = static_cast<int64_t>(
        std::count_if(targets.begin(), targets.end(), [](int32_t t) { return t >= 0; }));
    if (n == 0) continue;
    // With denominator n the loss comes back summed over the batch's targets, divided by n.
    total += static_cast<double>(loss(ids, targets, b, n)) * static_cast<double>(n);
    counted += n;
  }
  return counted > 0 ? total / static_cast<double>(counted) : 0.0;
}

}  // namespace

double evaluation_loss(Model& model, const Dataset& data, int64_t seq_len, int64_t batch,
                       int64_t max_rows) {
  return mean_loss(data, seq_len, batch, max_rows,
                   [&](const auto& ids, const auto& targets, int64_t b, int64_t n) {
                     return model.forward(ids, b, seq_len, targets, n);
                   });
}

double evaluation_loss(StepEngine& engine, const Dataset& data, int64_t seq_len, int64_t batch,
                       int64_t max_rows) {
  return mean_loss(data, seq_len, batch, max_rows,
                   [&](const auto& ids, const auto& targets, int64_t b, int64_t n) {
                     return engine.loss(ids, targets, b, seq_len, n);
                   });
}

StepResult Trainer::step(bool want_stop) {
  if (pairs_ != nullptr) {
    std::vector<int64_t> rows;
    next_rows(rows);
    return preference_step(rows, want_stop);
  }
  if (data_->rows(config_.seq_len) < 1) {
    throw ShapeError("train: the dataset's " + std::to_string(data_->tokens()) +
                     " tokens do not fill one row of " + std::to_string(config_.seq_len));
  }
  std::vector<int64_t> rows;
  next_rows(rows);
  const int64_t b = config_.batch_size, t = config_.seq_len;
  // The global batch's target count is every micro-batch's loss denominator.
  std::vector<std::vector<int32_t>> ids(rows.size() / static_cast<size_t>(b)), targets(ids.size());
  int64_t counted = 0;
  for (size_t i = 0; i < rows.size(); ++i) {
    auto& id = ids[i / static_cast<size_t>(b)];
    auto& tg = targets[i / static_cast<size_t>(b)];
    data_->row(rows[i], t, id, tg);
  }
  for (const auto& tg : targets) {
    counted += std::count_if(tg.begin(), tg.end(), [](int32_t x) { return x >= 0; });
  }
  engine_->begin_step();
  for (int64_t a = 0; a < config_.grad_accum; ++a) {
    const size_t micro = static_cast<size_t>(a * comm_.world() + comm_.rank());
    engine_->micro_batch(ids[micro], targets[micro], b, t, std::max<int64_t>(1, counted),
                         a + 1 == config_.grad_accum);
  }
  StepEngine::Reduced reduced;
  StepResult r = finish_step(want_stop, static_cast<int64_t>(rows.size()) * t, &reduced);
  if (reduced.right_tokens >= 0) {
    r.token_accuracy = static_cast<float>(reduced.right_tokens /
                                          static_cast<double>(std::max<int64_t>(1, counted)));
  }
  return r;
}

Status Trainer::save_checkpoint(const std::filesystem::path& dir) const {
  if (comm_.rank() != 0) return {};
  engine_->sync_to_host();
  std::filesystem::path tmp = dir;
  tmp += ".tmp";
  std::error_code ec;
  std::filesystem::remove_all(tmp, ec);
  // With LoRA the checkpoint is the adapter (PEFT's files), the base being the job's model.
  MH_TRY(model_.lora() != nullptr ? model_.save_lora(tmp) : model_.save(tmp));
  std::vector<TensorToWrite> moments;
  const auto& params = model_.trainable();
  for (size_t i = 0; i < params.size(); ++i) {
    for (auto [suffix, tensor] : {std::pair{".exp_avg", &engine_->exp_avg()[i]},
                                  std::pair{".exp_avg_sq", &engine_->exp_avg_sq()[i]}}) {
      TensorToWrite w;
      w.name = params[i].name + suffix;
      w.shape = tensor->shape();
      w.bytes = bytes_of(*tensor);
      moments.push_back(std::move(w));
    }
  }
  MH_TRY(write_safetensors(tmp / "optimizer.safetensors", std::move(moments)));
  JsonObject state;
  state.emplace_back("step", Json(step_));
  state.emplace_back("epoch", Json(epoch_));
  state.emplace_back("position", Json(position_));
  state.emplace_back("epoch_seed", Json(std::to_string(epoch_seed_)));
  state.emplace_back("rng", Json(rng_.state()));
  state.emplace_back("seq_len", Json(config_.seq_len));
  state.emplace_back("seed", Json(std::to_string(config_.seed)));
  if (model_.lora() != nullptr) {
    state.emplace_back("lora_seed", Json(std::to_string(model_.lora_seed())));
    state.emplace_back("lora_draws", Json(std::to_string(model_.lora_draws())));
  }
  MH_TRY(write_file_atomically(tmp / "trainer_state.json", to_json(Json(std::move(state))) + "\n"));
  std::filesystem::remove_all(dir, ec);
  std::filesystem::rename(tmp, dir, ec);
  if (ec) return internal_error("cannot rename " + tmp.string() + " to " + dir.string());
  return {};
}

Status Trainer::load_checkpoint(const std::filesystem::path& dir) {
  MH_ASSIGN_OR_RETURN(Json state, read_json_file(dir / "trainer_state.json"));
  if (!state.is_object()) return state_error("must be an object");
  MH_ASSIGN_OR_RETURN(int64_t step, json_int(state, "step"));
  MH_ASSIGN_OR_RETURN(int64_t epoch, json_int(state, "epoch"));
  MH_ASSIGN_OR_RETURN(int64_t position, json_int(state, "position"));
  MH_ASSIGN_OR_RETURN(int64_t seq_len, json_int(state, "seq_len"));
  MH_ASSIGN_OR_RETURN(std::string epoch_seed, json_string(state, "epoch_seed"));
  MH_ASSIGN_OR_RETURN(std::string rng_state, json_string(state, "rng"));
  if (seq_len != config_.seq_len) {
    return failed_precondition("the checkpoint was trained with seq_len " +
                               std::to_string(seq_len) + ", this run has " +
                               std::to_string(config_.seq_len));
  }
  const int64_t rows = examples();
  if (step < 0 || epoch < -1 || position < 0 || position > rows) {
    return state_error("step, epoch or position is out of range for this dataset");
  }
  Rng restored;
  if (!restored.set_state(rng_state)) return state_error("\"rng\" is not a generator state");
  MH_ASSIGN_OR_RETURN(const uint64_t seed, unsigned_member(epoch_seed, "epoch_seed"));
  // Read everything before changing anything.
  auto opt = Safetensors::open(dir / "optimizer.safetensors");
  if (!opt.ok()) return invalid_argument("optimizer.safetensors: " + opt.status().message());
  uint64_t lora_seed = 0, lora_draws = 0;  // LoRA dropout's masks
  if (model_.lora() != nullptr) {
    MH_ASSIGN_OR_RETURN(std::string text, json_string(state, "lora_seed"));
    MH_ASSIGN_OR_RETURN(lora_seed, unsigned_member(text, "lora_seed"));
    MH_ASSIGN_OR_RETURN(text, json_string(state, "lora_draws"));
    MH_ASSIGN_OR_RETURN(lora_draws, unsigned_member(text, "lora_draws"));
  }
  const auto& params = model_.trainable();
  std::vector<Tensor> m(params.size()), v(params.size());
  for (size_t i = 0; i < params.size(); ++i) {
    for (auto [suffix, out] : {std::pair{".exp_avg", &m[i]}, std::pair{".exp_avg_sq", &v[i]}}) {
      const TensorEntry* e = opt->find(params[i].name + suffix);
      if (e == nullptr || e->shape != params[i].value.shape()) {
        return invalid_argument("optimizer.safetensors: \"" + params[i].name + suffix +
                                "\" is missing or has the wrong shape");
      }
      MH_ASSIGN_OR_RETURN(std::vector<float> values, to_float(*e));
      *out = Tensor::of(params[i].value.shape(), std::move(values));
    }
  }
  if (model_.lora() != nullptr) {
    MH_TRY(model_.load_lora(dir));
    model_.set_lora_draws(lora_seed, lora_draws);
  } else {
    MH_TRY(model_.read_weights({dir / "model.safetensors"}));
  }
  engine_->restore(std::move(m), std::move(v), step);
  step_ = step;
  rng_ = restored;
  epoch_ = epoch;
  epoch_seed_ = seed;
  if (epoch_ >= 0) shuffle_rows();  // this epoch's order, from its seed
  position_ = position;
  return {};
}

}  // namespace mh::engine
