#include "platform/worker/train.h"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>

#include "platform/engine/data.h"
#include "platform/engine/files.h"
#include "platform/engine/generate.h"
#include "platform/engine/json.h"
#include "platform/engine/train.h"
#include "platform/worker/cli.h"
#include "platform/worker/events.h"

namespace mh::worker {

namespace fs = std::filesystem;
using namespace mh::engine;

namespace {

// SIGTERM asks a training run to checkpoint and stop after its current step.
std::atomic<bool> stop_requested{false};
extern "C" void on_sigterm(int) { stop_requested = true; }

}  // namespace

int train(const executor::TrainArgs& train_args, const DeviceOptions& device) {
  const std::string& model_dir = train_args.model;
  const std::string& out_dir = train_args.out;
  // The backend is made on first use, after the SIGTERM handler is in place.
  Compute compute;
  auto backend = [&]() -> Backend& {
    if (!compute.backend) compute = need(make_compute(device));
    return *compute.backend;
  };
  const std::string& data_file = train_args.data;
  const std::string& resume_dir = train_args.resume;
  const std::string& validation_file = train_args.validation_data;
  const int64_t checkpoint_every = train_args.checkpoint_every;
  const int64_t log_every = train_args.log_every;
  TrainConfig tc;
  if (train_args.steps) tc.steps = *train_args.steps;
  if (train_args.batch_size) tc.batch_size = *train_args.batch_size;
  if (train_args.seq_len) tc.seq_len = *train_args.seq_len;
  if (train_args.grad_accum) tc.grad_accum = *train_args.grad_accum;
  if (train_args.warmup) tc.warmup_steps = *train_args.warmup;
  if (train_args.lr) tc.lr = static_cast<float>(*train_args.lr);
  if (train_args.min_lr_ratio) tc.min_lr_ratio = static_cast<float>(*train_args.min_lr_ratio);
  if (train_args.weight_decay) tc.weight_decay = static_cast<float>(*train_args.weight_decay);
  if (train_args.clip) tc.clip = static_cast<float>(*train_args.clip);
  if (train_args.seed) tc.seed = *train_args.seed;
  // A SIGTERM from here on (while the model loads, too) stops the run after a step, with a
  // checkpoint.
  std::signal(SIGTERM, on_sigterm);
  // A directory with a config but no weights is an architecture to train from scratch: its
  // tokenizer is learned from the training data (unless it has one, or a checkpoint being
  // resumed does), its weights start from the seed.
  const bool from_scratch = !fs::exists(fs::path(model_dir) / "model.safetensors") &&
                            !fs::exists(fs::path(model_dir) / "model.safetensors.index.json");
  std::unique_ptr<Model> model;
  Tokenizer tok;
  if (from_scratch) {
    const ModelConfig config = need(parse_model_config(
        need(read_text_file(fs::path(model_dir) / "config.json", size_t{1} << 20))));
    const fs::path tokenizer_dir =
        !resume_dir.empty() ? fs::path(resume_dir) : fs::path(model_dir);
    if (fs::exists(tokenizer_dir / "tokenizer.json")) {
      tok = need(Tokenizer::load(tokenizer_dir));
    } else {
      const std::string text = need(read_text_file(data_file, size_t{4} << 30));
      BpeTrainerOptions learn;
      learn.special_tokens = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"};
      learn.vocab_size = static_cast<int32_t>(config.vocab_size);
      tok = need(train_bpe(need(jsonl_texts(text)), learn));
      std::printf("from scratch: learned a %d-token tokenizer from %s\n", tok.vocab_size(),
                  data_file.c_str());
    }
    model = need(Model::create(config, backend(), tc.seed));
    std::printf("from scratch: %s with %lld parameters\n",
                std::string(family_name(config.family)).c_str(),
                static_cast<long long>(config.parameter_count()));
  } else {
    // LoRA leaves the base as it is: it stays at its stored width (bf16 included).
    model = need(Model::load(model_dir, backend(),
                             train_args.lora_rank ? Weights::kAsStored : Weights::kFloat32));
    tok = need(Tokenizer::load(model_dir));
  }
  if (train_args.lora_rank) {
    if (from_scratch) {
      fail(invalid_argument("LoRA adapts a model with weights; this one trains from scratch"));
    }
    LoraConfig lora;
    lora.rank = *train_args.lora_rank;
    lora.alpha = static_cast<float>(train_args.lora_alpha.value_or(2.0 * lora.rank));
    lora.dropout = static_cast<float>(train_args.lora_dropout.value_or(0));
    if (!train_args.lora_targets.empty()) {
      lora.target_modules.clear();
      std::string_view rest = train_args.lora_targets;
      while (!rest.empty()) {
        const size_t comma = rest.find(',');
        lora.target_modules.emplace_back(rest.substr(0, comma));
        rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
      }
    }
    if (Status s = model->add_lora(lora, tc.seed); !s.ok()) fail(s);
    int64_t adapted = 0;
    for (const Parameter& p : model->trainable()) adapted += p.value.numel();
    std::printf("LoRA: rank %lld, alpha %g, %lld trainable parameters on a frozen base of %lld\n",
                static_cast<long long>(lora.rank), static_cast<double>(lora.alpha),
                static_cast<long long>(adapted),
                static_cast<long long>(model->config().parameter_count()));
  }
  if (tok.vocab_size() > model->config().vocab_size) {
    fail(invalid_argument("the tokenizer has more tokens than the model's vocab_size"));
  }
  if (tc.seq_len > model->config().max_positions) {
    fail(invalid_argument(fmt::format("--seq-len {} is longer than the model's context {}",
                                      tc.seq_len, model->config().max_positions)));
  }
  // The chat template of the model trained from (or of the checkpoint resumed).
  const ChatTemplate chat_format = need(ChatTemplate::load(
      !resume_dir.empty() && from_scratch ? fs::path(resume_dir) : fs::path(model_dir), tok));
  // Its generation settings go with the trained model (checked now, not after the training).
  const fs::path generation_file = fs::path(model_dir) / "generation_config.json";
  std::optional<std::string> generation_config;
  if (fs::exists(generation_file)) {
    generation_config = need(read_text_file(generation_file, size_t{1} << 20));
    need(parse_generation_config(*generation_config, model->config().vocab_size));
  }
  auto save_generation_config = [&](const fs::path& dir) {
    if (!generation_config) return;
    if (Status s = write_file_atomically(dir / "generation_config.json", *generation_config);
        !s.ok()) {
      fail(s);
    }
  };
  // The data: examples to imitate, or (DPO) preference pairs to rank.
  const bool dpo = train_args.method == "dpo";
  if (!train_args.method.empty() && train_args.method != "supervised" && !dpo) {
    fail(invalid_argument("--method must be supervised or dpo"));
  }
  if (dpo && train_args.lora_dropout.value_or(0) > 0) {
    fail(invalid_argument("--lora-dropout: DPO's passes run without dropout"));
  }
  if (dpo && from_scratch) {
    fail(invalid_argument("DPO tunes a model with weights; this one trains from scratch"));
  }
  std::optional<Dataset> data;
  std::optional<PreferenceData> pairs;
  if (dpo) {
    pairs.emplace(need(PreferenceData::from_jsonl(data_file, chat_format)));
  } else {
    data.emplace(need(Dataset::from_jsonl(data_file, tok, {}, &chat_format)));
    if (data->rows(tc.seq_len) < 1) {
      fail(invalid_argument(fmt::format("{}: {} tokens do not fill one row of {}", data_file,
                                        data->tokens(), tc.seq_len)));
    }
  }
  // What an epoch visits: rows of seq_len tokens, or preference pairs.
  const int64_t examples = dpo ? pairs->size() : data->rows(tc.seq_len);
  // Data-parallel ranks: the executor names this one's rank and rank 0's address.
  const auto group_options = need(process_group_from_env());
  const int world = group_options ? group_options->world : 1;
  if (train_args.epochs) {  // the run's length from the data's
    const double rows_per_step = static_cast<double>(tc.batch_size * tc.grad_accum * world);
    tc.steps = std::max<int64_t>(
        1, static_cast<int64_t>(std::ceil(*train_args.epochs * static_cast<double>(examples) /
                                          rows_per_step)));
  }
  // The default warm-up is at most a tenth of the run.
  if (!train_args.warmup) tc.warmup_steps = std::min(tc.warmup_steps, tc.steps / 10);
  if (Status s = tc.validate(); !s.ok()) fail(s);
  if (dpo) {
    std::printf("data: %lld preference pairs, each side cut to %lld tokens; DPO, beta %g\n",
                static_cast<long long>(pairs->size()), static_cast<long long>(tc.seq_len),
                train_args.dpo_beta.value_or(0.1));
  } else {
    std::printf("data: %lld examples, %lld tokens, %lld rows of %lld\n",
                static_cast<long long>(data->examples()), static_cast<long long>(data->tokens()),
                static_cast<long long>(data->rows(tc.seq_len)),
                static_cast<long long>(tc.seq_len));
  }
  std::optional<Dataset> validation;
  std::optional<PreferenceData> validation_pairs;
  if (!validation_file.empty() && dpo) {
    validation_pairs.emplace(need(PreferenceData::from_jsonl(validation_file, chat_format)));
  } else if (!validation_file.empty()) {
    validation.emplace(need(Dataset::from_jsonl(validation_file, tok, {}, &chat_format)));
    if (validation->rows(tc.seq_len) < 1) {
      fail(invalid_argument(fmt::format("{}: {} tokens do not fill one row of {}",
                                        validation_file, validation->tokens(), tc.seq_len)));
    }
  }
  std::unique_ptr<Collective> group = need(worker::data_parallel(
      group_options ? need(connect_process_group(*group_options)) : make_single_rank(), compute));
  const bool rank0 = group->rank() == 0;
  if (dpo && compute.cuda) {
    fail(invalid_argument("DPO runs on the CPU engine; the CUDA trainer does not run it yet"));
  }
  // A DPO trainer computes its reference (the model as loaded) here, before any checkpoint.
  auto engine = need(worker::make_step_engine(compute, *model, tc, *group));
  std::unique_ptr<Trainer> made =
      dpo ? std::make_unique<Trainer>(*model, *pairs,
                                      static_cast<float>(train_args.dpo_beta.value_or(0.1)), tc,
                                      *group, std::move(engine),
                                      validation_pairs ? &*validation_pairs : nullptr)
          : std::make_unique<Trainer>(*model, *data, tc, *group, std::move(engine));
  Trainer& trainer = *made;
  std::printf("training on %s%s\n", backend().name(),
              compute.cuda ? " (weights, gradients and moments on the device)" : "");
  // The validation loss over at most 64 rows (DPO: pairs), on the trainer's engine, for an
  // event.
  auto valid_loss = [&]() -> std::optional<double> {
    if (!validation && !validation_pairs) return std::nullopt;
    const double loss = validation ? trainer.validation_loss(*validation, 64)
                                   : trainer.preference_validation_loss(64);
    std::printf("validation loss %.4f\n", loss);
    return loss;
  };
  using executor::WorkerEvent;
  auto event = [](WorkerEvent::Kind kind, int64_t step) {
    WorkerEvent e;
    e.kind = kind;
    e.step = step;
    return e;
  };
  if (world > 1) {
    std::printf("rank %d of %d: joined the group; %lld rows per micro-batch, %lld per step\n",
                group->rank(), world, static_cast<long long>(tc.batch_size),
                static_cast<long long>(tc.batch_size * tc.grad_accum * world));
  }
  if (!resume_dir.empty()) {
    if (Status s = trainer.load_checkpoint(resume_dir); !s.ok()) fail(s);
    std::printf("resumed from %s at step %lld\n", resume_dir.c_str(),
                static_cast<long long>(trainer.steps_done()));
  }
  // Only rank 0 writes checkpoints and the model (every rank holds the same weights).
  auto checkpoint = [&](int64_t step) {
    const fs::path dir = fs::path(out_dir) / fmt::format("checkpoint-{}", step);
    if (Status s = trainer.save_checkpoint(dir); !s.ok()) fail(s);
    if (Status s = tok.save(dir); !s.ok()) fail(s);
    if (Status s = chat_format.save(dir); !s.ok()) fail(s);
    save_generation_config(dir);
    WorkerEvent e = event(WorkerEvent::Kind::kCheckpoint, step);
    e.path = dir.string();
    e.valid_loss = valid_loss();
    emit(executor::encode_worker_event(e));
    return dir;
  };
  auto started = std::chrono::steady_clock::now();
  int64_t tokens = 0;
  while (trainer.steps_done() < tc.steps) {
    StepResult r;
    try {
      r = trainer.step(stop_requested);
    } catch (const CollectiveError& e) {
      fail(internal_error(e.what()));
    }
    tokens += r.tokens;
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    const double rate = static_cast<double>(tokens) / std::max(secs, 1e-9);
    WorkerEvent step = event(WorkerEvent::Kind::kStep, r.step);
    step.steps = tc.steps;
    step.loss = r.loss;
    step.lr = r.lr;
    step.grad_norm = r.grad_norm;
    step.tokens_per_s = rate;
    if (r.token_accuracy) step.token_accuracy = *r.token_accuracy;
    step.reward_margin = r.reward_margin;
    step.reward_accuracy = r.reward_accuracy;
    emit(executor::encode_worker_event(step));
    if (r.step % std::max<int64_t>(1, log_every) == 0 || r.step == tc.steps || r.step == 1) {
      std::printf("step %lld/%lld  loss %.4f  lr %.2e  grad_norm %.3f  %.0f tokens/s",
                  static_cast<long long>(r.step), static_cast<long long>(tc.steps), r.loss, r.lr,
                  r.grad_norm, rate);
      if (r.reward_margin && r.reward_accuracy) {
        std::printf("  reward margin %.4f  accuracy %.2f", *r.reward_margin, *r.reward_accuracy);
      }
      std::printf("\n");
      std::fflush(stdout);
    }
    // The ranks stop after the step they agreed on; a single rank after this one.
    const bool stop = r.stop || (world == 1 && stop_requested);
    if (stop && r.step < tc.steps) {
      if (!rank0) {
        std::printf("stopped at step %lld with the group\n", static_cast<long long>(r.step));
        return 0;
      }
      const fs::path dir = checkpoint(r.step);
      std::printf("stopped at step %lld; resume with --resume %s\n",
                  static_cast<long long>(r.step), dir.c_str());
      WorkerEvent stopped = event(WorkerEvent::Kind::kStopped, r.step);
      stopped.path = dir.string();
      emit(executor::encode_worker_event(stopped));
      return 0;
    }
    if (rank0 && checkpoint_every > 0 && r.step % checkpoint_every == 0 && r.step < tc.steps) {
      checkpoint(r.step);
    }
  }
  if (!rank0) return 0;
  trainer.sync_model();
  // A LoRA run's result is its adapter, in PEFT's files; otherwise the whole model.
  if (Status s = model->lora() ? model->save_lora(out_dir, train_args.lora_base)
                               : model->save(out_dir);
      !s.ok()) {
    fail(s);
  }
  if (Status s = tok.save(out_dir); !s.ok()) fail(s);
  if (Status s = chat_format.save(out_dir); !s.ok()) fail(s);
  save_generation_config(out_dir);
  std::printf("saved %s\n", out_dir.c_str());
  const int64_t tokens_per_step = tc.batch_size * tc.seq_len * tc.grad_accum * world;
  WorkerEvent done = event(WorkerEvent::Kind::kDone, trainer.steps_done());
  // A DPO step's rows are as long as its pairs: what this run trained on, counted.
  done.trained_tokens = dpo ? tokens : trainer.steps_done() * tokens_per_step;
  done.path = out_dir;
  done.valid_loss = valid_loss();
  emit(executor::encode_worker_event(done));
  return 0;
}

}  // namespace mh::worker
