// Generation: batched greedy decoding against the full forward pass, seeds, top-k/top-p, stop
// sequences with streaming, max tokens, cancellation, and bad parameters.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "platform/engine/generate.h"

namespace mh::engine {
namespace {

struct Fixture {
  Tokenizer tokenizer;
  std::unique_ptr<Backend> cpu = make_cpu_backend(2);
  std::unique_ptr<Model> model;

  Fixture() {
    BpeTrainerOptions options;
    options.vocab_size = 300;
    const std::vector<std::string> texts = {
        "the quick brown fox jumps over the lazy dog while the cat sleeps on the warm mat"};
    tokenizer = std::move(train_bpe(texts, options).value());
    auto config = parse_model_config(
        R"({"model_type":"gpt2","vocab_size":300,"n_embd":32,"n_layer":2,"n_head":4,
            "n_positions":64})");
    REQUIRE(config.ok());
    model = std::move(Model::create(*config, *cpu, 3).value());
    // Sharper than the initialisation, so that samples differ visibly between seeds.
    for (auto& p : model->parameters()) {
      for (auto& v : p.value.values()) v *= p.value.rank() == 2 ? 8.0f : 1.0f;
    }
  }

  // Greedy continuation computed the slow way: the whole sequence through forward() each time.
  std::vector<int32_t> slow_greedy(std::vector<int32_t> ids, int n) {
    std::vector<int32_t> out;
    for (int i = 0; i < n; ++i) {
      model->forward(ids, 1, static_cast<int64_t>(ids.size()), {});
      const Tensor logits = model->logits();
      const float* last = logits.data() + (static_cast<int64_t>(ids.size()) - 1) * 300;
      const auto next = static_cast<int32_t>(std::max_element(last, last + 300) - last);
      out.push_back(next);
      ids.push_back(next);
    }
    return out;
  }
};

TEST_CASE("batched greedy decoding of prompts of different lengths matches the full forward") {
  Fixture f;
  const std::vector<std::vector<int32_t>> prompts = {
      f.tokenizer.encode("the quick brown"), f.tokenizer.encode("a"),
      f.tokenizer.encode("while the cat sleeps on the")};
  SamplingParams greedy;
  greedy.temperature = 0;
  greedy.max_tokens = 6;
  greedy.ignore_eos = true;
  auto results = generate(*f.model, f.tokenizer, prompts, greedy);
  REQUIRE(results.ok());
  for (size_t i = 0; i < prompts.size(); ++i) {
    CAPTURE(i);
    CHECK((*results)[i].tokens == f.slow_greedy(prompts[i], 6));
    CHECK((*results)[i].finish_reason == "length");
    CHECK((*results)[i].prompt_tokens == static_cast<int64_t>(prompts[i].size()));
    CHECK((*results)[i].text == f.tokenizer.decode((*results)[i].tokens).value());
  }
}

TEST_CASE("a repetition penalty steers greedy decoding as transformers' processor does") {
  Fixture f;
  const std::vector<int32_t> prompt = f.tokenizer.encode("the quick brown");
  // The slow way: each step's logits of every token seen so far divided by the penalty (times
  // it when negative), then the arg max.
  const float penalty = 3.0f;
  std::vector<int32_t> ids = prompt, want;
  for (int i = 0; i < 8; ++i) {
    f.model->forward(ids, 1, static_cast<int64_t>(ids.size()), {});
    const Tensor logits = f.model->logits();
    std::vector<float> last(logits.data() + (static_cast<int64_t>(ids.size()) - 1) * 300,
                            logits.data() + static_cast<int64_t>(ids.size()) * 300);
    std::vector<int32_t> seen = ids;
    std::sort(seen.begin(), seen.end());
    seen.erase(std::unique(seen.begin(), seen.end()), seen.end());
    for (int32_t t : seen) last[t] = last[t] < 0 ? last[t] * penalty : last[t] / penalty;
    const auto next =
        static_cast<int32_t>(std::max_element(last.begin(), last.end()) - last.begin());
    want.push_back(next);
    ids.push_back(next);
  }
  SamplingParams p;
  p.temperature = 0;
  p.max_tokens = 8;
  p.ignore_eos = true;
  p.repetition_penalty = penalty;
  auto got = generate(*f.model, f.tokenizer, {prompt}, p);
  REQUIRE(got.ok());
  CHECK((*got)[0].tokens == want);
  p.repetition_penalty = 1.0f;
  auto plain = generate(*f.model, f.tokenizer, {prompt}, p);
  REQUIRE(plain.ok());
  CHECK((*plain)[0].tokens == f.slow_greedy(prompt, 8));
  CHECK((*plain)[0].tokens != want);  // the penalty changed something at this strength

  // Stop token ids end a sequence like the model's own end-of-sequence ids.
  p.stop_token_ids = {want[2]};
  p.repetition_penalty = penalty;
  p.ignore_eos = false;
  auto stopped = generate(*f.model, f.tokenizer, {prompt}, p);
  REQUIRE(stopped.ok());
  CHECK((*stopped)[0].finish_reason == "stop");
  CHECK((*stopped)[0].tokens.size() <= 2);
  p.repetition_penalty = 0;
  CHECK(generate(*f.model, f.tokenizer, {prompt}, p).status().message() ==
        "repetition_penalty must be in (0, 10]");
  p.repetition_penalty = 1;
  p.stop_token_ids = {300};
  CHECK(generate(*f.model, f.tokenizer, {prompt}, p).status().message() ==
        "stop token id 300 is outside the vocabulary");
}

// A runner whose every step gives the same logits: token 3 at 5.0, token 4 at 4.5, the rest
// low, so that what the penalties and biases do shows in the greedy choice.
class FixedRunner final : public SequenceRunner {
 public:
  FixedRunner()
      : config_(parse_model_config(R"({"model_type":"gpt2","vocab_size":300,"n_embd":8,
                                      "n_layer":1,"n_head":2,"n_positions":64})")
                    .value()) {}
  const ModelConfig& config() const override { return config_; }
  Result<int64_t> open(int64_t) override { return next_++; }
  void close(int64_t) override {}
  int64_t length(int64_t) const override { return 0; }
  Tensor step(const std::vector<Work>& work) override {
    Tensor out({static_cast<int64_t>(work.size()), 300}, -10.0f);
    for (size_t i = 0; i < work.size(); ++i) {
      out[static_cast<int64_t>(i) * 300 + 3] = 5.0f;
      out[static_cast<int64_t>(i) * 300 + 4] = 4.5f;
    }
    return out;
  }

 private:
  ModelConfig config_;
  int64_t next_ = 0;
};

std::vector<int32_t> fixed_greedy(const Tokenizer& tok, const SamplingParams& params) {
  FixedRunner runner;
  DecodeBatch batch(runner, tok);
  REQUIRE(batch.add({3, 4, 4, 4}, params).ok());  // the prompt's tokens are not penalized
  while (batch.step()) {
  }
  auto done = batch.take_finished();
  REQUIRE(done.size() == 1);
  return done[0].second.tokens;
}

TEST_CASE("presence and frequency penalties and logit_bias steer sampling as OpenAI defines them") {
  Fixture f;
  SamplingParams p;
  p.temperature = 0;
  p.max_tokens = 6;
  p.ignore_eos = true;
  CHECK(fixed_greedy(f.tokenizer, p) == std::vector<int32_t>{3, 3, 3, 3, 3, 3});
  // logit - count · frequency: 3 (5.0), then 4 (4.5 > 4.0), then 3 (4.0 > 3.5), ...
  p.frequency_penalty = 1.0f;
  CHECK(fixed_greedy(f.tokenizer, p) == std::vector<int32_t>{3, 4, 3, 4, 3, 4});
  // logit - presence once seen: 3, then 4 (4.5 > 4.4), then 3 for good (4.4 > 3.9).
  p.frequency_penalty = 0;
  p.presence_penalty = 0.6f;
  CHECK(fixed_greedy(f.tokenizer, p) == std::vector<int32_t>{3, 4, 3, 3, 3, 3});
  // A negative penalty favours what was said.
  p.presence_penalty = -2.0f;
  CHECK(fixed_greedy(f.tokenizer, p) == std::vector<int32_t>{3, 3, 3, 3, 3, 3});
  // The bias is added first: 7 from -10 to 90 wins, 3 at -100 never does.
  p.presence_penalty = 0;
  p.logit_bias = {{7, 100.0f}};
  CHECK(fixed_greedy(f.tokenizer, p) == std::vector<int32_t>{7, 7, 7, 7, 7, 7});
  p.logit_bias = {{3, -100.0f}};
  CHECK(fixed_greedy(f.tokenizer, p) == std::vector<int32_t>{4, 4, 4, 4, 4, 4});
  // Out of range, refused by name.
  FixedRunner runner;
  DecodeBatch batch(runner, f.tokenizer);
  p.logit_bias = {{300, 1.0f}};
  CHECK(batch.add({3}, p).status().param() == "logit_bias");
  p.logit_bias = {{3, 101.0f}};
  CHECK(batch.add({3}, p).status().param() == "logit_bias");
  p.logit_bias.clear();
  p.frequency_penalty = 2.5f;
  CHECK(batch.add({3}, p).status().param() == "frequency_penalty");
}

TEST_CASE("sampling: a seed fixes the output, top-k 1 and a tiny top-p are greedy") {
  Fixture f;
  const std::vector<std::vector<int32_t>> prompt = {f.tokenizer.encode("the")};
  SamplingParams p;
  p.max_tokens = 12;
  p.ignore_eos = true;
  p.temperature = 1.5f;
  p.seed = 1;
  const auto a = generate(*f.model, f.tokenizer, prompt, p).value()[0].tokens;
  const auto b = generate(*f.model, f.tokenizer, prompt, p).value()[0].tokens;
  CHECK(a == b);
  p.seed = 2;
  const auto c = generate(*f.model, f.tokenizer, prompt, p).value()[0].tokens;
  CHECK(a != c);
  const auto greedy = f.slow_greedy(prompt[0], 12);
  SamplingParams k1 = p;
  k1.top_k = 1;
  CHECK(generate(*f.model, f.tokenizer, prompt, k1).value()[0].tokens == greedy);
  SamplingParams tiny_p = p;
  tiny_p.top_p = 1e-6f;
  CHECK(generate(*f.model, f.tokenizer, prompt, tiny_p).value()[0].tokens == greedy);
}

TEST_CASE("stop sequences end the text before them, and streaming never shows them") {
  Fixture f;
  const std::vector<std::vector<int32_t>> prompt = {f.tokenizer.encode("the lazy")};
  SamplingParams p;
  p.temperature = 0;
  p.max_tokens = 24;
  p.ignore_eos = true;
  const std::string full = generate(*f.model, f.tokenizer, prompt, p).value()[0].text;
  REQUIRE(full.size() > 12);
  const std::string stop = full.substr(full.size() / 2, 3);
  const std::string expected = full.substr(0, full.find(stop));
  p.stop = {stop, "never appears in this text"};
  std::string streamed;
  auto result = generate(*f.model, f.tokenizer, prompt, p, [&](const TokenEvent& e) {
    streamed += e.text;
    return true;
  });
  REQUIRE(result.ok());
  CHECK((*result)[0].text == expected);
  CHECK((*result)[0].finish_reason == "stop");
  CHECK(streamed == expected);

  // The callback can stop a sequence.
  int calls = 0;
  auto cancelled =
      generate(*f.model, f.tokenizer, prompt, p, [&](const TokenEvent&) { return ++calls < 2; });
  CHECK((*cancelled)[0].finish_reason == "cancelled");
  CHECK((*cancelled)[0].tokens.size() == 2);
}

TEST_CASE("sequences join a running batch, and bad requests are refused") {
  Fixture f;
  DecodeBatch batch(*f.model, f.tokenizer);
  SamplingParams p;
  p.temperature = 0;
  p.max_tokens = 5;
  p.ignore_eos = true;
  const auto first = f.tokenizer.encode("the quick");
  // A max_tokens past any context is capped at the context, not added into an overflow.
  SamplingParams huge = p;
  huge.max_tokens = std::numeric_limits<int64_t>::max();
  DecodeBatch other(*f.model, f.tokenizer);
  REQUIRE(other.add(first, huge).ok());
  while (other.step()) {
  }
  const auto capped = other.take_finished();
  REQUIRE(capped.size() == 1);
  CHECK(capped[0].second.finish_reason == "length");
  // The context full (64 positions), and the token its last position predicts.
  CHECK(static_cast<int64_t>(first.size() + capped[0].second.tokens.size()) == 64 + 1);
  REQUIRE(batch.add(first, p).ok());
  batch.step();
  batch.step();
  const auto second = f.tokenizer.encode("over the lazy dog");
  REQUIRE(batch.add(second, p).ok());  // joins while the first is mid-way
  while (batch.step()) {
  }
  auto done = batch.take_finished();
  REQUIRE(done.size() == 2);
  CHECK(done[0].second.tokens == f.slow_greedy(first, 5));
  CHECK(done[1].second.tokens == f.slow_greedy(second, 5));

  SamplingParams bad = p;
  bad.top_p = 0;
  CHECK(batch.add(first, bad).status().param() == "top_p");
  bad = p;
  bad.max_tokens = 0;
  CHECK(batch.add(first, bad).status().param() == "max_tokens");
  CHECK(batch.add({}, p).status().param() == "prompt");
  CHECK(batch.add({300}, p).status().message().find("outside the vocabulary") != std::string::npos);
  CHECK(batch.add(std::vector<int32_t>(64, 1), p).status().message().find("no room") !=
        std::string::npos);
}

}  // namespace
}  // namespace mh::engine

namespace mh::engine {
namespace {

// Counts the prompt positions a runner computes, over a model runner.
class CountingRunner final : public SequenceRunner {
 public:
  explicit CountingRunner(Model& model, bool forks) : inner_(model_runner(model)), forks_(forks) {}
  const ModelConfig& config() const override { return inner_->config(); }
  Result<int64_t> open(int64_t room) override { return inner_->open(room); }
  void close(int64_t handle) override { inner_->close(handle); }
  int64_t length(int64_t handle) const override { return inner_->length(handle); }
  Result<int64_t> fork(int64_t handle) override {
    if (!forks_) return SequenceRunner::fork(handle);
    return inner_->fork(handle);
  }
  Tensor step(const std::vector<Work>& work) override {
    for (const Work& w : work) positions += static_cast<int64_t>(w.tokens->size());
    return inner_->step(work);
  }
  int64_t positions = 0;

 private:
  std::unique_ptr<SequenceRunner> inner_;
  bool forks_;
};

TEST_CASE("n choices run their prompt once and each samples as if it were alone") {
  Fixture f;
  const std::vector<int32_t> prompt = f.tokenizer.encode("the quick brown fox jumps over the");
  SamplingParams p;
  p.max_tokens = 6;
  p.temperature = 1.0f;
  p.seed = 40;
  p.ignore_eos = true;
  p.logprobs = true;
  p.top_logprobs = 3;
  // Each choice alone, with its seed.
  std::vector<GenerationResult> alone;
  for (uint64_t i = 0; i < 3; ++i) {
    SamplingParams own = p;
    own.seed = p.seed + i;
    alone.push_back(generate(*f.model, f.tokenizer, {prompt}, own).value()[0]);
  }
  for (bool forks : {true, false}) {
    CAPTURE(forks);
    CountingRunner runner(*f.model, forks);
    DecodeBatch batch(runner, f.tokenizer);
    auto ids = batch.add_choices(prompt, p, std::vector<TokenCallback>(3));
    REQUIRE(ids.ok());
    while (batch.step()) {
    }
    auto finished = batch.take_finished();
    REQUIRE(finished.size() == 3);
    for (auto& [id, r] : finished) {
      const auto i = static_cast<size_t>(id - (*ids)[0]);
      CHECK(r.tokens == alone[i].tokens);
      REQUIRE(r.logprobs.size() == r.tokens.size());
      for (size_t t = 0; t < r.tokens.size(); ++t) {
        CHECK(r.logprobs[t].logprob == doctest::Approx(alone[i].logprobs[t].logprob));
        CHECK(r.logprobs[t].top.size() == 3);
      }
    }
    // The prompt once (copied), or once per choice where the runner cannot copy a cache; then
    // one position per generated token but the last.
    const auto n = static_cast<int64_t>(prompt.size());
    CHECK(runner.positions == (forks ? n : 3 * n) + 3 * 5);
  }
}

TEST_CASE("logprobs are the log-softmax of the model's logits, before temperature or bias") {
  Fixture f;
  const std::vector<int32_t> prompt = f.tokenizer.encode("the lazy dog");
  SamplingParams p;
  p.max_tokens = 1;
  p.temperature = 0.3f;
  p.logit_bias = {{7, 5.0f}};
  p.logprobs = true;
  p.top_logprobs = 5;
  auto out = generate(*f.model, f.tokenizer, {prompt}, p);
  REQUIRE(out.ok());
  f.model->forward(prompt, 1, static_cast<int64_t>(prompt.size()), {});
  const Tensor logits = f.model->logits();
  const float* last = logits.data() + (static_cast<int64_t>(prompt.size()) - 1) * 300;
  double sum = 0;
  const double most = *std::max_element(last, last + 300);
  for (int t = 0; t < 300; ++t) sum += std::exp(last[t] - most);
  const TokenLogprob& lp = (*out)[0].logprobs.at(0);
  CHECK(lp.logprob == doctest::Approx(last[lp.token] - most - std::log(sum)).epsilon(1e-4));
  REQUIRE(lp.top.size() == 5);
  CHECK(lp.top[0].first == static_cast<int32_t>(std::max_element(last, last + 300) - last));
  for (size_t j = 1; j < lp.top.size(); ++j) CHECK(lp.top[j].second <= lp.top[j - 1].second);
}

}  // namespace
}  // namespace mh::engine

namespace mh::engine {
namespace {

TEST_CASE("a prompt that begins as an earlier one reuses its cached blocks, within its scope") {
  Fixture f;
  std::vector<int32_t> prompt;
  for (int i = 0; i < 40; ++i) prompt.push_back(3 + (i * 7) % 250);
  SamplingParams p;
  p.max_tokens = 5;
  p.temperature = 0;
  p.ignore_eos = true;
  p.prefix_scope = "acme";
  const auto plain = generate(*f.model, f.tokenizer, {prompt}, p).value()[0];
  auto runner = model_runner(*f.model, 1 << 20);
  DecodeBatch batch(*runner, f.tokenizer);
  const auto run = [&](const std::vector<int32_t>& tokens, const std::string& scope) {
    SamplingParams own = p;
    own.prefix_scope = scope;
    REQUIRE(batch.add(tokens, own).ok());
    while (batch.step()) {
    }
    return std::move(batch.take_finished().at(0).second);
  };
  const GenerationResult first = run(prompt, "acme");
  CHECK(first.cached_tokens == 0);
  CHECK(first.tokens == plain.tokens);
  // Again: the two whole blocks before the last token come from the cache; the answer is the same.
  const GenerationResult again = run(prompt, "acme");
  CHECK(again.cached_tokens == 32);
  CHECK(again.tokens == plain.tokens);
  // Another scope shares nothing; a prompt that parts after 20 tokens shares one block.
  CHECK(run(prompt, "globex").cached_tokens == 0);
  std::vector<int32_t> other(prompt.begin(), prompt.begin() + 20);
  other.insert(other.end(), {9, 9, 9, 9, 9, 9});
  const GenerationResult parted = run(other, "acme");
  CHECK(parted.cached_tokens == 16);
  SamplingParams alone = p;
  CHECK(parted.tokens == generate(*f.model, f.tokenizer, {other}, alone).value()[0].tokens);
}

TEST_CASE("the prefix cache keeps to its budget, the least recently used blocks going first") {
  Fixture f;
  KvCache cache = f.model->new_cache(64);
  std::vector<int32_t> prompt(48);
  for (int i = 0; i < 48; ++i) prompt[static_cast<size_t>(i)] = i + 3;
  std::vector<Model::Step> steps = {{&cache, prompt, nullptr}};
  f.model->forward_cached(steps);
  const int64_t block_bytes = static_cast<int64_t>(cache.rows(0, 16).size() * sizeof(float)) +
                              16 * static_cast<int64_t>(sizeof(int32_t)) + 1;
  PrefixCache prefix(2 * block_bytes);
  prefix.keep(cache, prompt, "s");
  CHECK(prefix.blocks() == 2);  // the third went over the budget: the oldest left
  CHECK(prefix.bytes() <= 2 * block_bytes);
  KvCache fresh = f.model->new_cache(64);
  CHECK(prefix.restore(fresh, prompt, "s") == 0);  // the first block is gone: nothing chains
}

}  // namespace
}  // namespace mh::engine
