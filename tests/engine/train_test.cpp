// Training: JSONL datasets and their errors, the schedule, exact resume from a checkpoint, and
// data-parallel ranks that give the weights one rank gives.
#include <doctest/doctest.h>

#include <algorithm>
#include <thread>

#include "platform/engine/train.h"
#include "tests/engine/tiny_models.h"
#include "tests/support/harness.h"

namespace mh::engine {
namespace {

const char* kJsonl =
    R"({"text": "The cat sat on the mat. The dog sat on the log."}
{"prompt": "Q: what sat on the mat?\nA:", "completion": " the cat"}
{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Who sat on the log?"}, {"role": "assistant", "content": "The dog."}]}

{"text": "A bird sat on the cat, and the cat sat on the mat, and the mat sat on the floor."}
)";

Tokenizer small_tokenizer() {
  BpeTrainerOptions options;
  options.vocab_size = 320;
  options.special_tokens = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"};
  const std::vector<std::string> texts = {kJsonl};
  auto t = train_bpe(texts, options);
  REQUIRE_MESSAGE(t.ok(), t.status().to_string());
  return std::move(t).value();
}

TEST_CASE(
    "JSONL: text, prompt/completion and chat examples, packed, with only their answers learnt") {
  const Tokenizer tok = small_tokenizer();
  auto d = Dataset::from_jsonl_text(kJsonl, tok);
  REQUIRE_MESSAGE(d.ok(), d.status().to_string());
  CHECK(d->examples() == 4);
  std::vector<int32_t> ids, targets;
  const int64_t rows = d->rows(8);
  CHECK(rows == (d->tokens() - 1) / 8);
  for (int64_t r = 0; r < rows; ++r) d->row(r, 8, ids, targets);
  // Each target is the next input token, or -1 where the token is not learnt.
  for (size_t i = 0; i + 1 < ids.size(); ++i) {
    if (targets[i] >= 0) CHECK(targets[i] == ids[i + 1]);
  }
  const std::string all = tok.decode(ids).value();
  CHECK(all.find("<|im_start|>assistant\nThe dog.<|im_end|>") != std::string::npos);
  // The learnt text: the first example whole, the completion, and the assistant's reply.
  std::vector<int32_t> learnt;
  for (int32_t t : targets) {
    if (t >= 0) learnt.push_back(t);
  }
  const std::string learnt_text = tok.decode(learnt).value();
  CHECK(learnt_text.find(" the cat<|endoftext|>") != std::string::npos);
  CHECK(learnt_text.find("The dog.<|im_end|>") != std::string::npos);
  CHECK(learnt_text.find("what sat") == std::string::npos);  // a prompt
  CHECK(learnt_text.find("Who sat") == std::string::npos);   // a user turn
  CHECK(learnt_text.find("Be brief") == std::string::npos);  // a system turn
}

TEST_CASE("bad JSONL is refused, naming the line") {
  const Tokenizer tok = small_tokenizer();
  struct Bad {
    const char* text;
    const char* message;
  };
  for (const Bad& b : {
           Bad{"{\"text\": \"ok\"}\n{\"text\": ", "line 2: "},
           Bad{"[1, 2]", "line 1: must be a JSON object"},
           Bad{"{\"text\": 5}", "line 1: needs \"text\""},
           Bad{"{\"text\": \"\"}", "line 1: \"text\" is empty"},
           Bad{"{\"prompt\": \"a\"}", "line 1: \"prompt\" and \"completion\" must both be strings"},
           Bad{"{\"messages\": []}", "line 1: 'messages' must be a non-empty array"},
           Bad{"{\"messages\": [{\"role\": \"robot\", \"content\": \"x\"}]}",
               "line 1: messages[0].role 'robot' is not one of system, developer, user, assistant, "
               "tool"},
           Bad{"{\"messages\": [{\"role\": \"assistant\", \"content\": \"x\", \"weight\": 0}]}",
               "line 1: 'messages[0].weight' is not supported"},
           Bad{"{\"prompt\": \"a\", \"completion\": \"b\", \"weight\": 1}",
               "line 1: \"weight\" is not a field of a prompt-completion example (prompt, completion)"},
           Bad{"{\"messages\": [{\"role\": \"assistant\", \"content\": \"x\"}], \"functions\": []}",
               "line 1: \"functions\" is not a field of a conversation"},
           Bad{"{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}]}",
               "line 1: no assistant message"},
           Bad{"\n\n   \n", "no examples"},
       }) {
    auto d = Dataset::from_jsonl_text(b.text, tok);
    REQUIRE_FALSE(d.ok());
    CHECK(d.status().code() == Code::kInvalidArgument);
    CHECK_MESSAGE(d.status().message().find(b.message) != std::string::npos, d.status().message());
  }
}

TEST_CASE("the learning rate warms up linearly, then follows a cosine to its floor") {
  TrainConfig c;
  c.lr = 1.0f;
  c.steps = 110;
  c.warmup_steps = 10;
  c.min_lr_ratio = 0.1f;
  CHECK(learning_rate(c, 0) == doctest::Approx(0.1));
  CHECK(learning_rate(c, 9) == doctest::Approx(1.0));
  CHECK(learning_rate(c, 10) == doctest::Approx(1.0));
  CHECK(learning_rate(c, 59) == doctest::Approx(0.55).epsilon(0.02));
  CHECK(learning_rate(c, 109) == doctest::Approx(0.1));
  CHECK(c.validate().ok());
  c.warmup_steps = 200;
  CHECK(c.validate().param() == "warmup_steps");
}

ModelConfig tiny(int32_t vocab) {
  auto c = parse_model_config(R"({"model_type":"llama","vocab_size":)" + std::to_string(vocab) +
                              R"(,"hidden_size":16,"intermediate_size":24,"num_hidden_layers":2,
      "num_attention_heads":4,"num_key_value_heads":2,"max_position_embeddings":32})");
  REQUIRE(c.ok());
  return *c;
}

TrainConfig small_run() {
  TrainConfig c;
  c.batch_size = 2;
  c.seq_len = 8;
  c.steps = 8;
  c.warmup_steps = 2;
  c.lr = 1e-2f;
  c.clip = 0.5f;  // low enough to engage
  return c;
}

std::vector<float> all_weights(const Model& m) { return values_of(m.parameters()); }

TEST_CASE("a run resumed from a checkpoint continues exactly as the uninterrupted run") {
  const Tokenizer tok = small_tokenizer();
  auto data = Dataset::from_jsonl_text(kJsonl, tok);
  REQUIRE(data.ok());
  auto cpu = make_cpu_backend(2);
  auto single = make_single_rank();
  const TrainConfig config = small_run();
  const int64_t rows = data->rows(config.seq_len);
  REQUIRE(rows >= 3);  // so that 8 steps of 2 rows cross epochs

  auto a = Model::create(tiny(tok.vocab_size()), *cpu, 42);
  Trainer straight(**a, *data, config, *single);
  std::vector<float> losses;
  for (int i = 0; i < 8; ++i) losses.push_back(straight.step().loss);
  CHECK(losses.back() < losses.front());

  test::TempDir dir;
  auto b = Model::create(tiny(tok.vocab_size()), *cpu, 42);
  {
    Trainer first(**b, *data, config, *single);
    for (int i = 0; i < 3; ++i) CHECK(first.step().loss == losses[static_cast<size_t>(i)]);
    REQUIRE(first.save_checkpoint(dir.path() / "checkpoint-3").ok());
  }
  // A fresh process's view: different initial weights, everything from the checkpoint.
  auto c = Model::create(tiny(tok.vocab_size()), *cpu, 999);
  Trainer resumed(**c, *data, config, *single);
  REQUIRE(resumed.load_checkpoint(dir.path() / "checkpoint-3").ok());
  CHECK(resumed.steps_done() == 3);
  for (int i = 3; i < 8; ++i) CHECK(resumed.step().loss == losses[static_cast<size_t>(i)]);
  CHECK(all_weights(**c) == all_weights(**a));
  // The checkpoint directory is a loadable model.
  CHECK(Model::load(dir.path() / "checkpoint-3", *cpu).ok());

  // A damaged checkpoint changes nothing.
  std::filesystem::remove(dir.path() / "checkpoint-3" / "optimizer.safetensors");
  const auto before = all_weights(**c);
  CHECK_FALSE(resumed.load_checkpoint(dir.path() / "checkpoint-3").ok());
  CHECK(all_weights(**c) == before);
  CHECK(resumed.steps_done() == 8);
}


TEST_CASE("a step's token accuracy is the share of its targets the model predicted first") {
  const Tokenizer tok = small_tokenizer();
  auto data = Dataset::from_jsonl_text(kJsonl, tok);
  REQUIRE(data.ok());
  auto cpu = make_cpu_backend(1);
  auto single = make_single_rank();
  TrainConfig config = small_run();
  config.batch_size = data->rows(config.seq_len);  // every row in every step
  config.steps = 100;
  config.lr = 5e-2f;
  auto m = Model::create(tiny(tok.vocab_size()), *cpu, 42);
  auto copy = Model::create(tiny(tok.vocab_size()), *cpu, 42);
  // The targets whose token comes first in the logits, counted by hand before any step.
  int64_t right = 0, counted = 0;
  for (int64_t r = 0; r < config.batch_size; ++r) {
    std::vector<int32_t> ids, targets;
    data->row(r, config.seq_len, ids, targets);
    (*copy)->forward(ids, 1, config.seq_len, {});
    const Tensor logits = (*copy)->logits();
    const int64_t vocab = (*copy)->config().vocab_size;
    for (size_t t = 0; t < targets.size(); ++t) {
      if (targets[t] < 0) continue;
      ++counted;
      const float* row = logits.data() + static_cast<int64_t>(t) * vocab;
      right += std::max_element(row, row + vocab) - row == targets[t];
    }
  }
  Trainer trainer(**m, *data, config, *single);
  const StepResult first = trainer.step();
  REQUIRE(first.token_accuracy.has_value());
  CHECK(*first.token_accuracy ==
        doctest::Approx(static_cast<double>(right) / static_cast<double>(counted)));
  // Trained on, the data's tokens come to be predicted.
  StepResult last;
  while (trainer.steps_done() < config.steps) last = trainer.step();
  CHECK(*last.token_accuracy > *first.token_accuracy + 0.3f);
}

TEST_CASE("a LoRA adapter trains on a frozen base, kept bit for bit, in fp32 and in bf16") {
  const Tokenizer tok = small_tokenizer();
  auto data = Dataset::from_jsonl_text(kJsonl, tok);
  REQUIRE(data.ok());
  auto cpu = make_cpu_backend(2);
  auto single = make_single_rank();
  TrainConfig config = small_run();
  config.steps = 30;
  config.lr = 1e-1f;
  for (const bool bf16 : {false, true}) {
    CAPTURE(bf16);
    auto m = Model::create(tiny(tok.vocab_size()), *cpu, 42);
    REQUIRE(m.ok());
    if (bf16) (*m)->to_half(HalfTensor::Format::kBF16);  // the base as a bf16 file holds it
    const int64_t base_bytes = (*m)->weight_bytes();
    std::vector<std::vector<uint16_t>> half_before;
    for (const auto& p : (*m)->parameters()) {
      half_before.emplace_back(p.half.data(), p.half.data() + p.half.numel());
    }
    const auto before = all_weights(**m);
    LoraConfig lora;
    lora.rank = 4;
    REQUIRE((*m)->add_lora(lora, 5).ok());
    const double start = evaluation_loss(**m, *data, config.seq_len, 2, 64);
    Trainer trainer(**m, *data, config, *single);
    for (int i = 0; i < config.steps; ++i) trainer.step();
    // A random base's tied classifier is near zero, so its logits stay near uniform whatever
    // the adapters do; the loss over the whole dataset still falls.
    const double end = evaluation_loss(**m, *data, config.seq_len, 2, 64);
    CHECK(end < start - 0.05);
    CHECK(all_weights(**m) == before);  // every base weight, bit for bit
    CHECK((*m)->weight_bytes() == base_bytes);
    for (size_t i = 0; i < half_before.size(); ++i) {
      const auto& p = (*m)->parameters()[i];
      CHECK(std::equal(half_before[i].begin(), half_before[i].end(), p.half.data()));
      CHECK(p.grad.numel() == 0);  // no gradient, and so no optimizer state, for the base
    }
    CHECK(trainer.engine().exp_avg().size() == (*m)->trainable().size());
  }
}

TEST_CASE("a LoRA run with dropout resumed from its checkpoint continues exactly") {
  const Tokenizer tok = small_tokenizer();
  auto data = Dataset::from_jsonl_text(kJsonl, tok);
  REQUIRE(data.ok());
  auto cpu = make_cpu_backend(2);
  auto single = make_single_rank();
  const TrainConfig config = small_run();
  LoraConfig lora;
  lora.rank = 2;
  lora.dropout = 0.1f;
  lora.target_modules = {"q_proj", "v_proj", "down_proj"};
  auto a = Model::create(tiny(tok.vocab_size()), *cpu, 42);
  REQUIRE((*a)->add_lora(lora, 9).ok());
  Trainer straight(**a, *data, config, *single);
  std::vector<float> losses;
  for (int i = 0; i < 8; ++i) losses.push_back(straight.step().loss);

  test::TempDir dir;
  auto b = Model::create(tiny(tok.vocab_size()), *cpu, 42);
  REQUIRE((*b)->add_lora(lora, 9).ok());
  {
    Trainer first(**b, *data, config, *single);
    for (int i = 0; i < 3; ++i) CHECK(first.step().loss == losses[static_cast<size_t>(i)]);
    REQUIRE(first.save_checkpoint(dir.path() / "checkpoint-3").ok());
  }
  // The checkpoint is the adapter in PEFT's files, not the base.
  CHECK(std::filesystem::exists(dir.path() / "checkpoint-3" / "adapter_model.safetensors"));
  CHECK_FALSE(std::filesystem::exists(dir.path() / "checkpoint-3" / "model.safetensors"));
  // A fresh process: the same base, adapters drawn from another seed, the rest from the file.
  auto c = Model::create(tiny(tok.vocab_size()), *cpu, 42);
  REQUIRE((*c)->add_lora(lora, 1234).ok());
  Trainer resumed(**c, *data, config, *single);
  REQUIRE(resumed.load_checkpoint(dir.path() / "checkpoint-3").ok());
  for (int i = 3; i < 8; ++i) CHECK(resumed.step().loss == losses[static_cast<size_t>(i)]);
  CHECK(values_of((*c)->trainable()) == values_of((*a)->trainable()));
  CHECK(all_weights(**c) == all_weights(**a));
}

TEST_CASE("two data-parallel ranks give the weights one rank gives with the same global batch") {
  const Tokenizer tok = small_tokenizer();
  auto data = Dataset::from_jsonl_text(kJsonl, tok);
  REQUIRE(data.ok());
  TrainConfig one = small_run();
  one.batch_size = 1;
  one.grad_accum = 2;
  TrainConfig two = one;
  two.grad_accum = 1;

  auto cpu = make_cpu_backend(1);
  auto single = make_single_rank();
  auto reference = Model::create(tiny(tok.vocab_size()), *cpu, 7);
  Trainer solo(**reference, *data, one, *single);
  std::vector<float> solo_losses;
  for (int i = 0; i < 4; ++i) solo_losses.push_back(solo.step().loss);

  auto group = make_thread_group(2);
  std::vector<std::unique_ptr<Backend>> backends;
  std::vector<std::unique_ptr<Model>> models;
  for (int r = 0; r < 2; ++r) {
    backends.push_back(make_cpu_backend(1));
    models.push_back(std::move(Model::create(tiny(tok.vocab_size()), *backends.back(), 7).value()));
  }
  std::vector<std::vector<float>> losses(2);
  std::vector<std::thread> ranks;
  for (int r = 0; r < 2; ++r) {
    ranks.emplace_back([&, r] {
      Trainer t(*models[static_cast<size_t>(r)], *data, two, *group[static_cast<size_t>(r)]);
      for (int i = 0; i < 4; ++i) losses[static_cast<size_t>(r)].push_back(t.step().loss);
    });
  }
  for (auto& t : ranks) t.join();
  CHECK(losses[0] == solo_losses);
  CHECK(losses[1] == solo_losses);
  CHECK(all_weights(*models[0]) == all_weights(**reference));
  CHECK(all_weights(*models[1]) == all_weights(**reference));
}

// A rank's collective that notes each all-reduce: its size and the thread that called it.
class Recording final : public Collective {
 public:
  explicit Recording(Collective& inner) : inner_(inner) {}
  int rank() const override { return inner_.rank(); }
  int world() const override { return inner_.world(); }
  void all_reduce_sum(std::span<float> data) override {
    calls.push_back({data.size(), std::this_thread::get_id()});
    inner_.all_reduce_sum(data);
  }
  void broadcast(std::span<uint8_t> bytes, int root) override { inner_.broadcast(bytes, root); }
  struct Call {
    size_t size;
    std::thread::id thread;
  };
  std::vector<Call> calls;

 private:
  Collective& inner_;
};

TEST_CASE("the gradient all-reduce goes a block at a time in backward order, on its own thread") {
  const Tokenizer tok = small_tokenizer();
  auto data = Dataset::from_jsonl_text(kJsonl, tok);
  REQUIRE(data.ok());
  TrainConfig config = small_run();
  config.grad_accum = 2;
  auto group = make_thread_group(2);
  std::vector<std::unique_ptr<Backend>> backends;
  std::vector<std::unique_ptr<Model>> models;
  std::vector<std::unique_ptr<Recording>> comms;
  for (int r = 0; r < 2; ++r) {
    backends.push_back(make_cpu_backend(1));
    models.push_back(std::move(Model::create(tiny(tok.vocab_size()), *backends.back(), 7).value()));
    comms.push_back(std::make_unique<Recording>(*group[static_cast<size_t>(r)]));
  }
  std::vector<std::thread::id> trainers(2);
  std::vector<std::thread> ranks;
  for (int r = 0; r < 2; ++r) {
    ranks.emplace_back([&, r] {
      trainers[static_cast<size_t>(r)] = std::this_thread::get_id();
      Trainer t(*models[static_cast<size_t>(r)], *data, config, *comms[static_cast<size_t>(r)]);
      for (int i = 0; i < 2; ++i) t.step();
    });
  }
  for (auto& t : ranks) t.join();
  // Per step: the final norm with the untied head, block 1, block 0, the embeddings, then the
  // loss, the stop flag, a preference step's two sums (margins, pairs ranked right) and the
  // targets predicted right; every call from the reducing thread, not the trainer's.
  const auto& params = models[0]->parameters();
  auto count = [&](const std::string& prefix) {
    size_t n = 0;
    for (const auto& p : params) {
      if (p.name.starts_with(prefix)) n += static_cast<size_t>(p.value.numel());
    }
    return n;
  };
  const std::vector<size_t> expected = {count("model.norm.") + count("lm_head."),
                                        count("model.layers.1."), count("model.layers.0."),
                                        count("model.embed_tokens."), 5};
  for (int r = 0; r < 2; ++r) {
    const auto& calls = comms[static_cast<size_t>(r)]->calls;
    REQUIRE(calls.size() == 2 * expected.size());
    for (size_t i = 0; i < calls.size(); ++i) {
      CAPTURE(i);
      CHECK(calls[i].size == expected[i % expected.size()]);
      CHECK(calls[i].thread != trainers[static_cast<size_t>(r)]);
    }
  }
}

}  // namespace
}  // namespace mh::engine

namespace mh::engine {
namespace {

TEST_CASE(
    "the validation loss is the mean over target tokens, whatever the batch, and jsonl_texts "
    "reads what training reads") {
  const Tokenizer tok = small_tokenizer();
  auto d = Dataset::from_jsonl_text(kJsonl, tok);
  REQUIRE(d.ok());
  auto cpu = make_cpu_backend(1);
  auto config = parse_model_config(
      R"({"model_type":"llama","vocab_size":)" + std::to_string(tok.vocab_size()) +
      R"(,"hidden_size":16,"intermediate_size":32,"num_hidden_layers":1,
                                   "num_attention_heads":2,"max_position_embeddings":32})");
  REQUIRE(config.ok());
  auto model = Model::create(*config, *cpu, 3).value();
  const int64_t seq = 8, rows = std::min<int64_t>(d->rows(seq), 5);
  REQUIRE(rows >= 3);
  const double one = evaluation_loss(*model, *d, seq, 1, rows);
  const double all = evaluation_loss(*model, *d, seq, rows, rows);
  CHECK(one == doctest::Approx(all).epsilon(1e-5));
  // By hand: the summed loss of every row's targets over their count.
  double sum = 0;
  int64_t n = 0;
  for (int64_t r = 0; r < rows; ++r) {
    std::vector<int32_t> ids, targets;
    d->row(r, seq, ids, targets);
    const auto k = std::count_if(targets.begin(), targets.end(), [](int32_t t) { return t >= 0; });
    if (k == 0) continue;
    sum += static_cast<double>(model->forward(ids, 1, seq, targets)) * static_cast<double>(k);
    n += k;
  }
  CHECK(one == doctest::Approx(sum / static_cast<double>(n)).epsilon(1e-5));
  CHECK(one > 0);
  // Fewer rows than asked for: all of them.
  CHECK(evaluation_loss(*model, *d, seq, 2, 1'000'000) > 0);
  // A trainer's validation loss is the same, on its engine, batch_size rows at a time.
  TrainConfig tc;
  tc.batch_size = 2;
  tc.seq_len = seq;
  auto single = make_single_rank();
  Trainer trainer(*model, *d, tc, *single);
  CHECK(trainer.validation_loss(*d, rows) == evaluation_loss(*model, *d, seq, 2, rows));

  auto texts = jsonl_texts(kJsonl);
  REQUIRE(texts.ok());
  CHECK(texts->size() == 7);  // a text, a prompt and completion, three messages, a text
  CHECK((*texts)[1] == "Q: what sat on the mat?\nA:");
  CHECK(jsonl_texts("{\"text\": 3}\n").status().message().find("line 1") != std::string::npos);
}

}  // namespace
}  // namespace mh::engine
