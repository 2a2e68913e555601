// DPO: preference data in OpenAI's format read and refused line by line; the loss, reward
// margins and gradient of a step against a float64 reference on tiny models; training that
// ranks the preferred replies higher while the base stays as it was; an exact resume.
#include <doctest/doctest.h>

#include <cmath>

#include "platform/engine/chat_template.h"
#include "platform/engine/collective.h"
#include "platform/engine/data.h"
#include "platform/engine/train.h"
#include "tests/engine/tiny_models.h"
#include "tests/support/harness.h"

namespace mh::engine {
namespace {

// log π(targets | ids) in double: the model's logits, then a log-softmax of each target row.
double log_prob(Model& m, const std::vector<int32_t>& ids, const std::vector<int32_t>& targets) {
  m.forward(ids, 1, static_cast<int64_t>(ids.size()), {});
  const Tensor logits = m.logits();
  const int64_t vocab = m.config().vocab_size;
  double sum = 0;
  for (size_t t = 0; t < targets.size(); ++t) {
    if (targets[t] < 0) continue;
    const float* row = logits.data() + static_cast<int64_t>(t) * vocab;
    double top = row[0];
    for (int64_t v = 1; v < vocab; ++v) top = std::max(top, static_cast<double>(row[v]));
    double z = 0;
    for (int64_t v = 0; v < vocab; ++v) z += std::exp(static_cast<double>(row[v]) - top);
    sum += static_cast<double>(row[targets[t]]) - top - std::log(z);
  }
  return sum;
}

// DPO's mean loss over `pairs` in double, and the summed margins.
double reference_loss(Model& m, const std::vector<Preference>& pairs, double beta,
                      double* margins = nullptr) {
  double loss = 0, sum = 0;
  for (const Preference& p : pairs) {
    const double z = beta * ((log_prob(m, p.chosen_ids, p.chosen_targets) - p.ref_chosen) -
                             (log_prob(m, p.rejected_ids, p.rejected_targets) - p.ref_rejected));
    loss += std::log1p(std::exp(-z));
    sum += z;
  }
  if (margins != nullptr) *margins = sum;
  return loss / static_cast<double>(pairs.size());
}

TEST_CASE("a DPO step's loss, margins and gradient match a float64 reference") {
  auto cpu = make_cpu_backend(1);
  for (const char* json : {kTinyGpt2, kTinyLlama, kTinyGemma3}) {
    CAPTURE(json);
    LoraConfig lora;
    lora.rank = 2;
    auto m = adapted(*cpu, json, lora);
    // Two pairs sharing a prompt of two tokens, replies of different lengths; the reference's
    // log-probabilities are given (any values: the loss is a function of the policy's).
    std::vector<Preference> pairs(2);
    pairs[0] = {{1, 5, 9, 2}, {-1, 9, 2, 3}, {1, 5, 4}, {-1, 4, 7}, -7.5, -4.25};
    pairs[1] = {{3, 3, 8}, {-1, 8, 1}, {3, 3, 0, 6, 2}, {-1, 0, 6, 2, 10}, -5.0, -9.0};
    const double beta = 0.5;
    double margins = 0;
    const double expected = reference_loss(*m, pairs, beta, &margins);

    // The update of AdamW's first step is -lr · g / (|g| + eps): with lr = eps = 1e4 and no
    // decay it is -g to a part in 1e4, which shows the engine's gradient.
    TrainConfig tc;
    tc.lr = 1e4f;
    tc.eps = 1e4f;
    tc.weight_decay = 0;
    auto single = make_single_rank();
    auto engine = make_host_engine(*m, tc, *single);
    engine->begin_step();
    engine->preference_batch(pairs, static_cast<float>(beta), 2, true);
    const StepEngine::Reduced r = engine->reduce(false);
    CHECK(r.loss == doctest::Approx(expected).epsilon(1e-5));
    CHECK(r.margins == doctest::Approx(margins).epsilon(1e-4));
    const std::vector<float> before = values_of(m->trainable());
    const std::vector<float> base = values_of(m->parameters());
    engine->update(tc.lr, 1.0f);
    const std::vector<float> after = values_of(m->trainable());
    CHECK(values_of(m->parameters()) == base);  // the base is frozen
    // Back to the weights the gradient was taken at, then finite differences of the reference.
    size_t at = 0;
    std::vector<Tensor> analytic;
    for (auto& p : m->trainable()) {
      Tensor& g = analytic.emplace_back(p.value.shape());
      for (int64_t i = 0; i < p.value.numel(); ++i, ++at) {
        p.value[i] = before[at];
        g[i] = before[at] - after[at];
      }
    }
    for (size_t k = 0; k < analytic.size(); ++k) {
      Parameter& p = m->trainable()[k];
      check_gradient(p.name.c_str(), p.value, analytic[k],
                     [&] { return reference_loss(*m, pairs, beta); }, 1e-3f);
    }
  }
}

TEST_CASE("a weighted forward keeps the gradient of its weight times the loss") {
  auto cpu = make_cpu_backend(1);
  LoraConfig lora;
  auto m = adapted(*cpu, kTinyLlama, lora);
  const std::vector<int32_t> ids = {1, 5, 9, 2}, targets = {5, 9, 2, 3};
  m->zero_grad();
  const float plain = m->forward(ids, 1, 4, targets, 1);
  m->backward();
  const std::vector<float> once = [&] {
    std::vector<float> g;
    for (const auto& p : m->trainable()) g.insert(g.end(), p.grad.values().begin(), p.grad.values().end());
    return g;
  }();
  m->zero_grad();
  CHECK(m->forward(ids, 1, 4, targets, 1, -2.5f) == plain);  // the loss is the loss
  m->backward();
  size_t at = 0;
  for (const auto& p : m->trainable()) {
    for (float g : p.grad.values()) CHECK(g == doctest::Approx(-2.5f * once[at++]));
  }
}

const char* kPreferences =
    R"({"input": {"messages": [{"role": "user", "content": "Where did the cat sit?"}]}, "preferred_output": [{"role": "assistant", "content": "On the mat."}], "non_preferred_output": [{"role": "assistant", "content": "The dog sat on the log."}]}
{"input": {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Who sat on the log?"}]}, "preferred_output": [{"role": "assistant", "content": "The dog."}], "non_preferred_output": [{"role": "assistant", "content": "A bird sat on the cat, and the cat sat on the mat."}]}
{"input": {"messages": [{"role": "user", "content": "What sat on the floor?"}]}, "preferred_output": [{"role": "assistant", "content": "The mat."}], "non_preferred_output": [{"role": "assistant", "content": "The cat sat."}]}
)";

Tokenizer preference_tokenizer() {
  BpeTrainerOptions options;
  options.vocab_size = 300;
  options.special_tokens = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"};
  const std::vector<std::string> texts = {kPreferences};
  auto t = train_bpe(texts, options);
  REQUIRE_MESSAGE(t.ok(), t.status().to_string());
  return std::move(t).value();
}

TEST_CASE("preference data: OpenAI's DPO lines read, each side the prompt then its reply") {
  const Tokenizer tok = preference_tokenizer();
  const ChatTemplate chat(tok);
  auto d = PreferenceData::from_jsonl_text(kPreferences, chat);
  REQUIRE_MESSAGE(d.ok(), d.status().to_string());
  REQUIRE(d->size() == 3);
  const auto& p = d->pair(0);
  CHECK(p.prompt == *chat.prompt(parse_json(R"([{"role": "user", "content": "Where did the cat sit?"}])").value(), Json()));
  CHECK(!p.chosen.empty());
  CHECK(p.chosen != p.rejected);
  std::vector<int32_t> ids, targets;
  d->side(0, true, 64, ids, targets);
  CHECK(ids.size() == p.prompt.size() + p.chosen.size() - 1);
  // Targets are the reply's tokens; the prompt's are not learnt.
  CHECK(targets[p.prompt.size() - 2] == -1);
  CHECK(targets[p.prompt.size() - 1] == p.chosen[0]);
  CHECK(targets.back() == p.chosen.back());
  // Cut to a short row, the reply stays whole and the prompt's start goes.
  ids.clear();
  targets.clear();
  const auto reply = static_cast<int64_t>(p.chosen.size());
  d->side(0, true, reply + 1, ids, targets);
  CHECK(static_cast<int64_t>(ids.size()) == reply + 1);
  CHECK(targets.front() == -1);
  CHECK(targets[1] == p.chosen[0]);

  auto refused = [&](const std::string& line) {
    auto bad = PreferenceData::from_jsonl_text(line, chat);
    REQUIRE_FALSE(bad.ok());
    return bad.status().message();
  };
  const std::string ok_outputs =
      R"("preferred_output": [{"role": "assistant", "content": "a"}], "non_preferred_output": [{"role": "assistant", "content": "b"}])";
  CHECK(refused(R"({"input": {"messages": []}, )" + ok_outputs + "}") ==
        "line 1: 'input.messages' must be a non-empty array");
  CHECK(refused(R"({"input": {"messages": [{"role": "user", "content": "q"}], "functions": []}, )" +
                ok_outputs + "}") ==
        "line 1: \"functions\" is not a field of \"input\" (messages, tools, parallel_tool_calls)");
  CHECK(refused(R"({"input": {"messages": [{"role": "user", "content": "q"}]}, "preferred_output": [{"role": "user", "content": "a"}], "non_preferred_output": []})")
            .find("\"preferred_output\"[0] must have role \"assistant\"") != std::string::npos);
  CHECK(refused(R"({"input": {"messages": [{"role": "user", "content": "q"}]}, "preferred_output": [{"role": "assistant", "content": "a"}]})")
            .find("\"non_preferred_output\" must be an array of one assistant message") !=
        std::string::npos);
  CHECK(refused(R"({"input": {"messages": [{"role": "user", "content": "q"}]}, "weight": 2, )" +
                ok_outputs + "}")
            .find("\"weight\" is not a field") != std::string::npos);
  CHECK(refused(R"({"messages": [{"role": "user", "content": "q"}]})")
            .find("is not a field of a preference example") != std::string::npos);
  CHECK(refused("\n").find("no preference pairs") != std::string::npos);
}

// A tiny llama with LoRA adapters on the preference tokenizer's vocabulary.
std::unique_ptr<Model> preference_model(Backend& cpu) {
  auto m = Model::create(
      config_of(R"({"model_type":"llama","vocab_size":300,"hidden_size":16,
        "intermediate_size":32,"num_hidden_layers":1,"num_attention_heads":2,
        "max_position_embeddings":64})"),
      cpu, 5);
  REQUIRE(m.ok());
  LoraConfig lora;
  lora.rank = 4;
  REQUIRE((*m)->add_lora(lora, 9).ok());
  return std::move(m).value();
}

TEST_CASE("DPO on LoRA ranks the preferred replies higher, the base unchanged, and resumes") {
  auto cpu = make_cpu_backend(1);
  const Tokenizer tok = preference_tokenizer();
  const ChatTemplate chat(tok);
  const PreferenceData pairs = PreferenceData::from_jsonl_text(kPreferences, chat).value();
  TrainConfig tc;
  tc.batch_size = 3;
  tc.seq_len = 48;
  tc.steps = 30;
  tc.warmup_steps = 0;
  tc.lr = 3e-2f;
  auto single = make_single_rank();
  auto m = preference_model(*cpu);
  const std::vector<float> base = values_of(m->parameters());
  Trainer trainer(*m, pairs, 0.5f, tc, *single, nullptr, &pairs);
  // Validation pairs (here the training pairs) start at log 2 as well.
  CHECK(trainer.preference_validation_loss(64) == doctest::Approx(std::log(2.0)).epsilon(1e-6));
  std::vector<float> losses;
  test::TempDir dir;
  for (int64_t s = 0; s < tc.steps; ++s) {
    const StepResult r = trainer.step();
    REQUIRE(r.reward_margin.has_value());
    if (s == 0) {
      // The policy starts as the reference: every margin is 0 and the loss is log 2.
      CHECK(r.loss == doctest::Approx(std::log(2.0)).epsilon(1e-5));
      CHECK(*r.reward_margin == doctest::Approx(0).epsilon(1e-5));
    }
    if (s + 1 == tc.steps) {
      CHECK(*r.reward_accuracy == 1.0f);
      CHECK(*r.reward_margin > 0.5f);
    }
    losses.push_back(r.loss);
    if (s == 9) REQUIRE(trainer.save_checkpoint(dir.path() / "ckpt").ok());
  }
  CHECK(losses.back() < 0.3f);
  CHECK(trainer.preference_validation_loss(64) < 0.3);
  CHECK(trainer.preference_validation_loss(1) != trainer.preference_validation_loss(64));
  CHECK(values_of(m->parameters()) == base);

  // A fresh run from the same base, resumed at step 10, continues exactly.
  auto resumed = preference_model(*cpu);
  Trainer again(*resumed, pairs, 0.5f, tc, *single);
  REQUIRE(again.load_checkpoint(dir.path() / "ckpt").ok());
  for (int64_t s = 10; s < tc.steps; ++s) CHECK(again.step().loss == losses[static_cast<size_t>(s)]);
  CHECK(values_of(resumed->trainable()) == values_of(m->trainable()));
}

}  // namespace
}  // namespace mh::engine
