#include "platform/engine/generate.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <numeric>

namespace mh::engine {

namespace {

uint64_t mix(uint64_t h, uint64_t x) {  // splitmix64's finalizer over h and x
  uint64_t z = h ^ (x + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2));
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

uint64_t block_key(uint64_t before, std::span<const int32_t> tokens) {
  uint64_t h = before;
  for (int32_t t : tokens) h = mix(h, static_cast<uint32_t>(t));
  return h;
}

}  // namespace

int64_t PrefixCache::restore(KvCache& cache, std::span<const int32_t> tokens,
                             std::string_view scope) {
  if (tokens.empty() || cache.length() != 0) return 0;
  // Whole blocks, leaving the last token to compute (its logits are the next token's).
  const auto blocks = static_cast<int64_t>(tokens.size() - 1) / kPrefixBlock;
  uint64_t key = std::hash<std::string_view>{}(scope);
  int64_t restored = 0;
  for (int64_t b = 0; b < blocks && (b + 1) * kPrefixBlock <= cache.capacity(); ++b) {
    const auto own = tokens.subspan(static_cast<size_t>(b * kPrefixBlock), kPrefixBlock);
    const uint64_t next = block_key(key, own);
    auto it = blocks_.find(next);
    if (it == blocks_.end() || it->second.before != key || it->second.scope != scope ||
        !std::equal(own.begin(), own.end(), it->second.tokens.begin(), it->second.tokens.end())) {
      break;
    }
    cache.set_rows(restored, kPrefixBlock, it->second.rows);
    it->second.used = ++clock_;
    restored += kPrefixBlock;
    key = next;
  }
  return restored;
}

void PrefixCache::keep(const KvCache& cache, std::span<const int32_t> tokens,
                       std::string_view scope) {
  const int64_t known = std::min<int64_t>(static_cast<int64_t>(tokens.size()), cache.length());
  uint64_t key = std::hash<std::string_view>{}(scope);
  for (int64_t b = 0; b < known / kPrefixBlock; ++b) {
    const auto own = tokens.subspan(static_cast<size_t>(b * kPrefixBlock), kPrefixBlock);
    const uint64_t next = block_key(key, own);
    auto it = blocks_.find(next);
    if (it == blocks_.end()) {
      Block block{key,
                  {own.begin(), own.end()},
                  std::string(scope),
                  cache.rows(b * kPrefixBlock, kPrefixBlock),
                  0};
      bytes_ += static_cast<int64_t>(block.rows.size() * sizeof(float) + block.scope.size() +
                                     block.tokens.size() * sizeof(int32_t));
      it = blocks_.emplace(next, std::move(block)).first;
    } else if (it->second.before != key || it->second.scope != scope ||
               !std::equal(own.begin(), own.end(), it->second.tokens.begin(),
                           it->second.tokens.end())) {
      return;  // another chain holds this key: keep nothing past it
    }
    it->second.used = ++clock_;
    key = next;
  }
  while (bytes_ > budget_ && !blocks_.empty()) {
    auto oldest = std::min_element(blocks_.begin(), blocks_.end(),
                                   [](auto& a, auto& b) { return a.second.used < b.second.used; });
    bytes_ -= static_cast<int64_t>(oldest->second.rows.size() * sizeof(float) +
                                   oldest->second.scope.size() +
                                   oldest->second.tokens.size() * sizeof(int32_t));
    blocks_.erase(oldest);
  }
}

namespace {

class ModelRunner final : public SequenceRunner {
 public:
  ModelRunner(Model& model, int64_t prefix_cache_bytes) : model_(model) {
    if (prefix_cache_bytes > 0) prefix_.emplace(prefix_cache_bytes);
  }
  int64_t restore_prefix(int64_t handle, std::span<const int32_t> tokens,
                         std::string_view scope) override {
    return prefix_ ? prefix_->restore(caches_.at(handle), tokens, scope) : 0;
  }
  void keep_prefix(int64_t handle, std::span<const int32_t> tokens,
                   std::string_view scope) override {
    if (prefix_) prefix_->keep(caches_.at(handle), tokens, scope);
  }
  const ModelConfig& config() const override { return model_.config(); }
  Result<int64_t> open(int64_t room) override {
    caches_.emplace(next_, model_.new_cache(room));
    return next_++;
  }
  void close(int64_t handle) override { caches_.erase(handle); }
  Result<int64_t> fork(int64_t handle) override {
    caches_.emplace(next_, caches_.at(handle));  // the KV tensors, copied
    return next_++;
  }
  bool serves_adapters() const override { return true; }
  int64_t length(int64_t handle) const override {
    auto it = caches_.find(handle);
    return it == caches_.end() ? -1 : it->second.length();
  }
  Tensor step(const std::vector<Work>& work) override {
    std::vector<Model::Step> steps;
    for (const Work& w : work) steps.push_back({&caches_.at(w.handle), *w.tokens, w.adapter});
    return model_.forward_cached(steps);
  }

 private:
  Model& model_;
  std::map<int64_t, KvCache> caches_;
  int64_t next_ = 0;
  std::optional<PrefixCache> prefix_;
};

}  // namespace

std::unique_ptr<SequenceRunner> model_runner(Model& model, int64_t prefix_cache_bytes) {
  return std::make_unique<ModelRunner>(model, prefix_cache_bytes);
}

struct DecodeBatch::Sequence {
  int64_t id = 0;
  SamplingParams params;
  TokenCallback on_token;
  std::shared_ptr<const LoraWeights> adapter;
  int64_t handle = -1;           // its cache in the runner; -1 once freed
  std::vector<int32_t> pending;  // tokens to run at the next step (the prompt, then one)
  Rng rng;
  GenerationResult result;
  size_t shown = 0;           // bytes of result.text already passed to on_token
  std::vector<int32_t> seen;  // the tokens so far, sorted, when a repetition penalty needs them
  std::map<int32_t, int32_t> generated;  // each generated token's count, when a penalty needs it
  int64_t room = 0;                      // positions its cache holds
  std::vector<int32_t> prompt;           // kept for the prefix cache until its first step
  bool prefilled = false;
  int64_t leader = -1;  // a copy waiting for this sequence's cache of their prompt
  std::optional<GrammarMatcher> matcher;  // where the output stands in params.grammar
  std::vector<uint64_t> allowed;          // the grammar's mask at this step, a bit per token
  bool done = false, reported = false;
};

Status SamplingParams::validate() const {
  if (max_tokens < 1) return invalid_argument("max_tokens must be at least 1", "max_tokens");
  if (!(temperature >= 0) || temperature > 100) {
    return invalid_argument("temperature must be in [0, 100]", "temperature");
  }
  if (top_k < 0) return invalid_argument("top_k must not be negative", "top_k");
  if (!(top_p > 0 && top_p <= 1)) return invalid_argument("top_p must be in (0, 1]", "top_p");
  if (!(repetition_penalty > 0 && repetition_penalty <= 10)) {
    return invalid_argument("repetition_penalty must be in (0, 10]", "repetition_penalty");
  }
  for (const auto& s : stop) {
    if (s.empty()) return invalid_argument("stop sequences may not be empty", "stop");
  }
  for (auto [name, value] : {std::pair{"presence_penalty", presence_penalty},
                             std::pair{"frequency_penalty", frequency_penalty}}) {
    if (!(value >= -2 && value <= 2)) {
      return invalid_argument(std::string(name) + " must be in [-2, 2]", name);
    }
  }
  if (top_logprobs < 0 || top_logprobs > 20) {
    return invalid_argument("top_logprobs must be from 0 to 20", "top_logprobs");
  }
  for (const auto& [token, bias] : logit_bias) {
    if (!(bias >= -100 && bias <= 100)) {
      return invalid_argument("logit_bias values must be in [-100, 100]", "logit_bias");
    }
  }
  return {};
}

DecodeBatch::DecodeBatch(Model& model, const Tokenizer& tokenizer)
    : owned_(model_runner(model)), runner_(*owned_), tokenizer_(tokenizer) {
  find_stop_tokens();
}

DecodeBatch::DecodeBatch(SequenceRunner& runner, const Tokenizer& tokenizer)
    : runner_(runner), tokenizer_(tokenizer) {
  find_stop_tokens();
}

void DecodeBatch::find_stop_tokens() {
  const Tokenizer& tokenizer = tokenizer_;
  const ModelConfig& model = runner_.config();
  // Generation ends at the end-of-text token, the config's EOS, and the end of a chat turn.
  for (const char* s : {"<|endoftext|>", "<|im_end|>"}) {
    if (auto id = tokenizer.special_token(s)) stop_tokens_.push_back(*id);
  }
  for (int64_t id : model.eos_token_ids) stop_tokens_.push_back(static_cast<int32_t>(id));
}

DecodeBatch::~DecodeBatch() {
  for (auto& s : sequences_) {
    if (s->handle >= 0) runner_.close(s->handle);
  }
}

Result<int64_t> DecodeBatch::add(std::vector<int32_t> prompt, SamplingParams params,
                                 TokenCallback on_token,
                                 std::shared_ptr<const LoraWeights> adapter) {
  MH_ASSIGN_OR_RETURN(
      auto s, make(std::move(prompt), std::move(params), std::move(on_token), std::move(adapter)));
  MH_TRY(open_cache(*s));
  sequences_.push_back(std::move(s));
  return sequences_.back()->id;
}

Status DecodeBatch::open_cache(Sequence& s) {
  MH_ASSIGN_OR_RETURN(s.handle, runner_.open(s.room));
  const int64_t restored = runner_.restore_prefix(s.handle, s.prompt, s.params.prefix_scope);
  s.result.cached_tokens = restored;
  s.pending.assign(s.prompt.begin() + restored, s.prompt.end());
  return {};
}

Result<std::vector<int64_t>> DecodeBatch::add_choices(std::vector<int32_t> prompt,
                                                      SamplingParams params,
                                                      std::vector<TokenCallback> callbacks,
                                                      std::shared_ptr<const LoraWeights> adapter) {
  if (callbacks.empty()) return invalid_argument("no choices to make", "n");
  std::vector<std::unique_ptr<Sequence>> made;
  for (size_t i = 0; i < callbacks.size(); ++i) {
    SamplingParams own = params;
    own.seed = params.seed + i;
    MH_ASSIGN_OR_RETURN(auto s, make(prompt, std::move(own), std::move(callbacks[i]), adapter));
    if (i > 0) s->leader = made.front()->id;
    made.push_back(std::move(s));
  }
  MH_TRY(open_cache(*made.front()));
  std::vector<int64_t> ids;
  for (auto& s : made) {
    ids.push_back(s->id);
    sequences_.push_back(std::move(s));
  }
  return ids;
}

Result<std::unique_ptr<DecodeBatch::Sequence>> DecodeBatch::make(
    std::vector<int32_t> prompt, SamplingParams params, TokenCallback on_token,
    std::shared_ptr<const LoraWeights> adapter) {
  MH_TRY(params.validate());
  if (adapter && !runner_.serves_adapters()) {
    return failed_precondition("this replica's decoder does not serve LoRA adapters");
  }
  const int64_t context = runner_.config().max_positions;
  if (prompt.empty()) return invalid_argument("the prompt has no tokens", "prompt");
  if (static_cast<int64_t>(prompt.size()) >= context) {
    return invalid_argument("the prompt's " + std::to_string(prompt.size()) +
                                " tokens leave no room in the model's context of " +
                                std::to_string(context),
                            "prompt");
  }
  for (int32_t t : prompt) {
    if (t < 0 || t >= runner_.config().vocab_size) {
      return invalid_argument("token id " + std::to_string(t) + " is outside the vocabulary",
                              "prompt");
    }
  }
  for (const auto& [t, bias] : params.logit_bias) {
    if (t < 0 || t >= runner_.config().vocab_size) {
      return invalid_argument(
          "logit_bias token id " + std::to_string(t) + " is outside the vocabulary", "logit_bias");
    }
  }
  if (params.grammar && params.grammar->vocabulary().size() != runner_.config().vocab_size) {
    return invalid_argument("the grammar was matched against another vocabulary", "grammar");
  }
  for (int32_t t : params.stop_token_ids) {
    if (t < 0 || t >= runner_.config().vocab_size) {
      return invalid_argument("stop token id " + std::to_string(t) + " is outside the vocabulary",
                              "stop_token_ids");
    }
  }
  // The prompt and what may follow it, capped at the context without overflowing.
  const auto prompt_len = static_cast<int64_t>(prompt.size());
  const int64_t room =
      prompt_len + std::min<int64_t>(std::max<int64_t>(params.max_tokens, 1), context - prompt_len);
  auto s = std::make_unique<Sequence>();
  s->room = room;
  s->id = next_id_++;
  s->rng = Rng(params.seed);
  s->params = std::move(params);
  s->on_token = std::move(on_token);
  s->adapter = std::move(adapter);
  if (s->params.grammar) s->matcher.emplace(s->params.grammar);
  s->result.prompt_tokens = static_cast<int64_t>(prompt.size());
  if (s->params.repetition_penalty != 1.0f) {
    s->seen = prompt;
    std::sort(s->seen.begin(), s->seen.end());
    s->seen.erase(std::unique(s->seen.begin(), s->seen.end()), s->seen.end());
  }
  s->prompt = std::move(prompt);
  return s;
}

int64_t DecodeBatch::active() const {
  return std::count_if(sequences_.begin(), sequences_.end(),
                       [](const auto& s) { return !s->done; });
}

void DecodeBatch::cancel(int64_t id) {
  for (auto& s : sequences_) {
    if (s->id == id && !s->done) finish(*s, "cancelled");
  }
}

int32_t DecodeBatch::sample(Sequence& s, const float* logits) {
  const int64_t v = runner_.config().vocab_size;
  // Before the greedy choice, temperature and cuts, in vLLM's order: the bias, then the
  // repetition penalty (as transformers' processor), then presence and frequency.
  const SamplingParams& sp = s.params;
  std::vector<float> penalized;
  const bool counted = sp.presence_penalty != 0.0f || sp.frequency_penalty != 0.0f;
  if (!sp.logit_bias.empty() || !s.seen.empty() || (counted && !s.generated.empty()) || s.matcher) {
    penalized.assign(logits, logits + v);
    for (const auto& [t, bias] : sp.logit_bias) penalized[static_cast<size_t>(t)] += bias;
    for (int32_t t : s.seen) {
      float& l = penalized[static_cast<size_t>(t)];
      l = l < 0 ? l * sp.repetition_penalty : l / sp.repetition_penalty;
    }
    for (const auto& [t, count] : s.generated) {
      penalized[static_cast<size_t>(t)] -=
          static_cast<float>(count) * sp.frequency_penalty + sp.presence_penalty;
    }
    if (s.matcher && !constrain(s, penalized)) return -1;
    logits = penalized.data();
  }
  const auto greedy = [&] {
    return static_cast<int32_t>(std::max_element(logits, logits + v) - logits);
  };
  if (s.params.temperature == 0.0f) return greedy();
  const int32_t chosen = draw(s, logits);
  // A token the grammar masks has no probability; rounding aside, it is never drawn.
  if (s.matcher && !std::isfinite(logits[chosen])) return greedy();
  return chosen;
}

bool DecodeBatch::constrain(Sequence& s, std::vector<float>& logits) {
  s.matcher->allowed(s.allowed);
  if (s.matcher->can_end() && !s.params.ignore_eos) {
    for (const auto* ids : {&stop_tokens_, &s.params.stop_token_ids}) {
      for (int32_t t : *ids) {
        if (t >= 0 && static_cast<size_t>(t) < logits.size()) {
          s.allowed[static_cast<size_t>(t) >> 6] |= uint64_t{1} << (t & 63);
        }
      }
    }
  }
  bool any = false;
  for (size_t t = 0; t < logits.size(); ++t) {
    if ((s.allowed[t >> 6] >> (t & 63)) & 1) {
      any = true;
    } else {
      logits[t] = -std::numeric_limits<float>::infinity();
    }
  }
  return any;
}

int32_t DecodeBatch::draw(Sequence& s, const float* logits) {
  const int64_t v = runner_.config().vocab_size;
  // Candidates by falling logit (ties: lower id first), cut by top-k, then by top-p. Without a
  // cut every token is a candidate in id order, and nothing needs sorting.
  std::vector<int32_t> order(static_cast<size_t>(v));
  std::iota(order.begin(), order.end(), 0);
  const int64_t k = s.params.top_k > 0 ? std::min(s.params.top_k, v) : v;
  if (k < v || s.params.top_p < 1.0f) {
    auto by_logit = [&](int32_t a, int32_t b) {
      return logits[a] != logits[b] ? logits[a] > logits[b] : a < b;
    };
    std::partial_sort(order.begin(), order.begin() + k, order.end(), by_logit);
    order.resize(static_cast<size_t>(k));
  }
  std::vector<double> p(order.size());
  const double top = *std::max_element(logits, logits + v);
  double sum = 0;
  for (size_t i = 0; i < order.size(); ++i) {
    p[i] = std::exp((logits[order[i]] - top) / s.params.temperature);
    sum += p[i];
  }
  size_t keep = order.size();
  if (s.params.top_p < 1.0f) {
    double cumulative = 0;
    for (size_t i = 0; i < order.size(); ++i) {
      cumulative += p[i] / sum;
      if (cumulative >= s.params.top_p) {
        keep = i + 1;
        break;
      }
    }
  }
  double mass = 0;
  for (size_t i = 0; i < keep; ++i) mass += p[i];
  double u = s.rng.uniform() * mass;
  for (size_t i = 0; i < keep; ++i) {
    u -= p[i];
    if (u < 0) return order[i];
  }
  return order[keep - 1];
}

namespace {

// Bytes at the end of `text` that start a UTF-8 character not yet complete.
size_t incomplete_utf8_tail(std::string_view text) {
  for (size_t back = 1; back <= std::min<size_t>(3, text.size()); ++back) {
    const auto c = static_cast<uint8_t>(text[text.size() - back]);
    if ((c & 0xc0) == 0x80) continue;  // a continuation byte: look further back
    const size_t need = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;
    return need > back ? back : 0;
  }
  return 0;
}

}  // namespace

void DecodeBatch::emit(Sequence& s, int32_t token) {
  s.result.tokens.push_back(token);
  std::string& text = s.result.text;
  text += tokenizer_.decode_next(s.result.tokens);
  // A stop sequence ends the text where it begins.
  size_t cut = std::string::npos;
  for (const auto& stop : s.params.stop) {
    const size_t from = s.shown > stop.size() ? s.shown - stop.size() : 0;
    const size_t at = text.find(stop, from);
    if (at != std::string::npos) cut = std::min(cut, at);
  }
  size_t showable = text.size();
  if (cut != std::string::npos) {
    text.resize(cut);
    showable = cut;
  } else {
    // Hold back what could still become a stop sequence, and half a character.
    for (const auto& stop : s.params.stop) {
      for (size_t n = std::min(stop.size() - 1, text.size()); n > 0; --n) {
        if (text.compare(text.size() - n, n, stop, 0, n) == 0) {
          showable = std::min(showable, text.size() - n);
          break;
        }
      }
    }
    showable -= incomplete_utf8_tail(std::string_view(text).substr(0, showable));
  }
  bool keep_going = true;
  if (s.on_token && showable >= s.shown) {
    keep_going = s.on_token({token, std::string_view(text).substr(s.shown, showable - s.shown),
                             s.params.logprobs ? &s.result.logprobs.back() : nullptr});
    s.shown = showable;
  }
  if (cut != std::string::npos) {
    finish(s, "stop");
  } else if (!keep_going) {
    finish(s, "cancelled");
  }
}

void DecodeBatch::finish(Sequence& s, std::string reason) {
  if (s.done) return;
  s.done = true;
  s.result.finish_reason = std::move(reason);
  // What was held back (a partial stop sequence that never completed) is shown now.
  if (s.on_token && s.shown < s.result.text.size() && s.result.finish_reason != "cancelled") {
    s.on_token({-1, std::string_view(s.result.text).substr(s.shown)});
    s.shown = s.result.text.size();
  }
  if (s.handle >= 0) runner_.close(s.handle);  // free the cache now
  s.handle = -1;
  start_followers(s, false, nullptr);  // copies still waiting run the prompt themselves
}

void DecodeBatch::start_followers(const Sequence& leader, bool forked, const float* logits) {
  for (auto& f : sequences_) {
    if (f->leader != leader.id || f->done) continue;
    f->leader = -1;
    if (forked) {
      if (auto copy = runner_.fork(leader.handle); copy.ok()) {
        f->handle = *copy;
        f->prefilled = true;
        f->prompt = {};
        f->result.cached_tokens = leader.result.cached_tokens;
        take(*f, logits);  // its first token, from the prompt's logits
        continue;
      }
    }
    if (!open_cache(*f).ok()) finish(*f, "cancelled");
  }
}

bool DecodeBatch::step() {
  std::vector<SequenceRunner::Work> work;
  std::vector<Sequence*> running;
  for (auto& s : sequences_) {
    if (s->done || s->leader >= 0) continue;
    work.push_back({s->handle, &s->pending, s->adapter.get()});
    running.push_back(s.get());
  }
  if (running.empty()) return active() > 0;
  const Tensor logits = runner_.step(work);
  const int64_t v = runner_.config().vocab_size;
  for (size_t i = 0; i < running.size(); ++i) {
    Sequence& s = *running[i];
    const float* row = logits.data() + static_cast<int64_t>(i) * v;
    if (!s.prefilled) {  // its prompt is in its cache now: kept for prompts that begin alike
      runner_.keep_prefix(s.handle, s.prompt, s.params.prefix_scope);
      s.prefilled = true;
      s.prompt = {};
    }
    // Copies of this prompt take its cache before its first token goes in.
    start_followers(s, true, row);
    take(s, row);
  }
  return active() > 0;
}

namespace {

// The log-softmax of `logits` at `token`, and the `top` likeliest tokens' (ties: lower id).
TokenLogprob logprob_of(const float* logits, int64_t v, int32_t token, int64_t top) {
  const float most = *std::max_element(logits, logits + v);
  double sum = 0;
  for (int64_t t = 0; t < v; ++t) sum += std::exp(static_cast<double>(logits[t] - most));
  const double log_sum = static_cast<double>(most) + std::log(sum);
  TokenLogprob out{token, static_cast<float>(logits[token] - log_sum), {}};
  if (top > 0) {
    std::vector<int32_t> order(static_cast<size_t>(v));
    std::iota(order.begin(), order.end(), 0);
    const auto k = static_cast<ptrdiff_t>(std::min(top, v));
    std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](int32_t a, int32_t b) {
      return logits[a] != logits[b] ? logits[a] > logits[b] : a < b;
    });
    for (ptrdiff_t j = 0; j < k; ++j) {
      out.top.emplace_back(order[static_cast<size_t>(j)],
                           static_cast<float>(logits[order[static_cast<size_t>(j)]] - log_sum));
    }
  }
  return out;
}

}  // namespace

void DecodeBatch::take(Sequence& s, const float* logits) {
  const int32_t token = sample(s, logits);
  if (token < 0) {  // the grammar allows nothing more: what there is stands
    finish(s, "stop");
    return;
  }
  const auto stops = [token](const std::vector<int32_t>& ids) {
    return std::find(ids.begin(), ids.end(), token) != ids.end();
  };
  const bool eos = !s.params.ignore_eos && (stops(stop_tokens_) || stops(s.params.stop_token_ids));
  if (eos) {
    finish(s, "stop");
    return;
  }
  if (s.params.logprobs) {
    s.result.logprobs.push_back(
        logprob_of(logits, runner_.config().vocab_size, token, s.params.top_logprobs));
  }
  if (s.matcher) s.matcher->accept(token);
  emit(s, token);
  if (s.matcher && !s.matcher->can_continue()) finish(s, "stop");
  if (s.params.presence_penalty != 0.0f || s.params.frequency_penalty != 0.0f) {
    ++s.generated[token];
  }
  if (!s.seen.empty()) {
    const auto at = std::lower_bound(s.seen.begin(), s.seen.end(), token);
    if (at == s.seen.end() || *at != token) s.seen.insert(at, token);
  }
  if (s.done) return;
  const int64_t generated = static_cast<int64_t>(s.result.tokens.size());
  if (generated >= s.params.max_tokens ||
      runner_.length(s.handle) >= runner_.config().max_positions) {
    finish(s, "length");
    return;
  }
  s.pending = {token};
}

std::vector<std::pair<int64_t, GenerationResult>> DecodeBatch::take_finished() {
  std::vector<std::pair<int64_t, GenerationResult>> out;
  for (auto& s : sequences_) {
    if (s->done && !s->reported) {
      s->reported = true;
      out.emplace_back(s->id, std::move(s->result));
    }
  }
  std::erase_if(sequences_, [](const auto& s) { return s->reported; });
  return out;
}

Result<std::vector<GenerationResult>> generate(Model& model, const Tokenizer& tokenizer,
                                               const std::vector<std::vector<int32_t>>& prompts,
                                               const SamplingParams& params,
                                               TokenCallback on_token) {
  DecodeBatch batch(model, tokenizer);
  for (size_t i = 0; i < prompts.size(); ++i) {
    SamplingParams own = params;
    own.seed = params.seed + i;
    MH_TRY(batch.add(prompts[i], own, on_token).status());
  }
  std::vector<GenerationResult> results(prompts.size());
  while (batch.step()) {
  }
  for (auto& [id, r] : batch.take_finished()) results[static_cast<size_t>(id)] = std::move(r);
  return results;
}

}  // namespace mh::engine
