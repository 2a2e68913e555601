#include "platform/worker/serve.h"

#include <fmt/format.h>
#include <openssl/crypto.h>

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/json.hpp>
#include <cctype>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <deque>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "platform/engine/chat_messages.h"
#include "platform/engine/data.h"
#include "platform/engine/generate.h"
#include "platform/engine/json_schema.h"
#include "platform/engine/tool_calls.h"
#include "platform/engine/unicode.h"
#include "platform/executor/worker_contract.h"
#include "platform/http/http_server.h"
#include "platform/http/router.h"
#include "platform/worker/events.h"

namespace mh::worker {

namespace json = boost::json;
namespace asio = boost::asio;
using engine::SamplingParams;
using http::Request;
using http::Response;
using http::ResponseStream;

namespace {

int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string random_suffix() {
  static std::atomic<uint64_t> counter{0};
  thread_local std::mt19937_64 rng(std::random_device{}());
  return fmt::format("{:012x}{:04x}", rng() & 0xffffffffffffULL, counter++ & 0xffff);
}

// A streamed choice's log-probabilities not yet sent, and its text's length in characters.
struct Choice {
  std::vector<engine::TokenLogprob> pending;
  int64_t offset = 0;
};

// One request as the decode loop sees it.
struct Call {
  bool chat = false;
  bool stream = false;
  bool include_usage = false;
  std::string id, model, tenant;
  int64_t created = 0;
  std::vector<int32_t> prompt;
  SamplingParams params;
  std::shared_ptr<const engine::LoraWeights> adapter;  // none: the base model
  std::shared_ptr<ResponseStream> out;
  // With tools the model may call: the syntax its answer is read in for calls (and, streamed,
  // the answer is held until it is known to be calls or text).
  engine::ToolSyntax tools = engine::ToolSyntax::kNone;
  int64_t n = 1;       // choices, each its own sequence
  std::string echoed;  // completions with echo: the prompt's text, before each choice's
  // Each choice's result once it has finished, and how many have not.
  std::vector<engine::GenerationResult> results;
  int64_t unfinished = 0;
  std::vector<Choice> choices;  // streamed
};

// A request's tools, checked: as the chat template takes them, and what tool_choice asks.
struct Tools {
  engine::Json for_template;  // null: none rendered
  std::vector<engine::ToolFunction> functions;
  std::string choice = "none";  // none, auto, required, or a function's name
  bool parallel = true;
};

// Reads an optional number field; invalid_argument naming it when it is not a number.
Result<std::optional<double>> number(const json::object& o, std::string_view key) {
  const json::value* v = o.if_contains(key);
  if (v == nullptr || v->is_null()) return std::optional<double>();
  if (v->is_double()) return std::optional<double>(v->as_double());
  if (v->is_int64()) return std::optional<double>(static_cast<double>(v->as_int64()));
  if (v->is_uint64()) return std::optional<double>(static_cast<double>(v->as_uint64()));
  return invalid_argument(fmt::format("'{}' must be a number", key), std::string(key));
}

Result<std::optional<int64_t>> integer(const json::object& o, std::string_view key) {
  const json::value* v = o.if_contains(key);
  if (v == nullptr || v->is_null()) return std::optional<int64_t>();
  if (v->is_int64()) return std::optional<int64_t>(v->as_int64());
  if (v->is_uint64() && v->as_uint64() <= INT64_MAX) {
    return std::optional<int64_t>(static_cast<int64_t>(v->as_uint64()));
  }
  return invalid_argument(fmt::format("'{}' must be an integer", key), std::string(key));
}

Result<bool> boolean(const json::object& o, std::string_view key) {
  const json::value* v = o.if_contains(key);
  if (v == nullptr || v->is_null()) return false;
  if (!v->is_bool()) {
    return invalid_argument(fmt::format("'{}' must be true or false", key), std::string(key));
  }
  return v->as_bool();
}

// A request's JSON as the engine reads it.
Result<engine::Json> engine_json(const json::value& v, std::string_view param) {
  auto parsed = engine::parse_json(json::serialize(v));
  if (!parsed.ok()) return invalid_argument(parsed.status().message(), std::string(param));
  return std::move(parsed).value();
}

}  // namespace

class Replica {
 public:
  // `model` computes the sequences unless `runner` (a device-resident decoder of it) does.
  // `tokenizer` must outlive the replica; `chat_template` is its model's.
  Replica(const ServeOptions& options, std::unique_ptr<engine::Model> model,
          const engine::Tokenizer& tokenizer, engine::ChatTemplate chat_template,
          engine::GenerationConfig generation, std::unique_ptr<engine::SequenceRunner> runner)
      : options_(options),
        model_(std::move(model)),
        runner_(runner ? std::move(runner)
                       : engine::model_runner(*model_, options.prefix_cache_bytes)),
        tokenizer_(tokenizer),
        template_(std::move(chat_template)),
        generation_(std::move(generation)),
        batch_(*runner_, tokenizer_) {}

  void start() {
    decoder_ = std::thread([this] { decode_loop(); });
  }
  void stop() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    if (decoder_.joinable()) decoder_.join();
  }

  // Parses and checks a request; on success the call is queued and its response will stream.
  Response handle(Request& request, bool chat) {
    auto parsed = http::parse_json_object(request);
    if (!parsed.ok()) return Response::error(parsed.status());
    auto call = parse(*parsed, chat);
    if (!call.ok()) return Response::error(call.status());
    auto c = std::make_shared<Call>(std::move(call).value());
    c->tenant = std::string(request.header("x-mh-tenant"));
    auto adapter = adapter_named(request.header("x-mh-adapter"));
    if (!adapter.ok()) return Response::error(adapter.status());
    c->adapter = std::move(adapter).value();
    // Cached prompts are shared within a tenant and adapter only.
    c->params.prefix_scope = c->tenant + '\n' + std::string(request.header("x-mh-adapter"));
    c->out = std::make_shared<ResponseStream>();
    if (c->stream) {
      c->out->begin(200, "text/event-stream", {{"Cache-Control", "no-cache"}});
      for (int64_t i = 0; c->chat && i < c->n; ++i) {
        json::object delta{{"role", "assistant"}, {"content", ""}};
        c->out->write(sse(chunk(*c, i, std::move(delta), nullptr)));
      }
    }
    {
      std::lock_guard lock(mutex_);
      incoming_.push_back(c);
    }
    wake_.notify_one();
    return Response::streamed(c->out);
  }

  json::object stats() const {
    std::lock_guard lock(mutex_);
    return {{"active", active_},
            {"waiting", static_cast<int64_t>(incoming_.size())},
            {"requests", requests_},
            {"cancelled", cancelled_},
            {"prompt_tokens", prompt_tokens_},
            {"generated_tokens", generated_tokens_.load()},
            {"model", options_.model_name},
            {"context_length", runner_->config().max_positions},
            {"adapters_loaded", adapters_loaded()},
            {"adapter_loads", adapter_loads_.load()}};
  }

 private:
  // The LoRA adapter a request names (its directory, under one of the adapter roots), read on
  // first use and kept while it is among the max_adapters most recently used and not idle for
  // adapter_idle_seconds. A sequence holds its adapter until it ends, so one evicted while in
  // use stays alive for it. "" names none.
  Result<std::shared_ptr<const engine::LoraWeights>> adapter_named(std::string_view named) {
    if (named.empty()) return std::shared_ptr<const engine::LoraWeights>();
    if (!runner_->serves_adapters()) {
      return failed_precondition("this replica's decoder does not serve LoRA adapters");
    }
    namespace fs = std::filesystem;
    const fs::path dir = fs::path(std::string(named)).lexically_normal();
    bool within = false;
    for (const std::string& root : options_.adapter_roots) {
      const fs::path rel = dir.lexically_relative(fs::path(root).lexically_normal());
      within = within || (!rel.empty() && rel != "." && *rel.begin() != "..");
    }
    if (!dir.is_absolute() || !within) {
      return permission_denied("this replica serves no adapter at " + dir.string());
    }
    const auto now = std::chrono::steady_clock::now();
    std::lock_guard lock(adapters_mutex_);
    std::erase_if(adapters_, [&](const auto& e) {
      return now - e.second.used > std::chrono::seconds(options_.adapter_idle_seconds);
    });
    if (auto it = adapters_.find(dir.string()); it != adapters_.end()) {
      it->second.used = now;
      return it->second.weights;
    }
    // read_lora reads the model's shape alone: the decode thread may be running it meanwhile.
    auto read = model_->read_lora(dir);
    if (!read.ok()) return read.status();
    while (!adapters_.empty() && static_cast<int64_t>(adapters_.size()) >= options_.max_adapters) {
      auto oldest = adapters_.begin();
      for (auto it = adapters_.begin(); it != adapters_.end(); ++it) {
        if (it->second.used < oldest->second.used) oldest = it;
      }
      adapters_.erase(oldest);
    }
    adapters_.emplace(dir.string(), Loaded{*read, now});
    ++adapter_loads_;
    return *read;
  }

  int64_t adapters_loaded() const {
    std::lock_guard lock(adapters_mutex_);
    return static_cast<int64_t>(adapters_.size());
  }

  Result<Call> parse(const json::object& body, bool chat) {
    // A field this replica does not honour is refused by its name, never ignored: a client
    // that asks for JSON output, tools or log-probabilities is told, not answered in prose.
    static constexpr std::string_view kShared[] = {"model",
                                                   "stream",
                                                   "stream_options",
                                                   "n",
                                                   "presence_penalty",
                                                   "frequency_penalty",
                                                   "logit_bias",
                                                   "logprobs",
                                                   "max_tokens",
                                                   "temperature",
                                                   "top_p",
                                                   "top_k",
                                                   "repetition_penalty",
                                                   "seed",
                                                   "ignore_eos",
                                                   "stop",
                                                   "user"};
    static constexpr std::string_view kChat[] = {
        "messages",    "max_completion_tokens", "response_format", "tools",
        "tool_choice", "parallel_tool_calls",   "top_logprobs"};
    static constexpr std::string_view kCompletion[] = {"prompt", "echo"};
    const auto among = [](const auto& list, std::string_view key) {
      return std::find(std::begin(list), std::end(list), key) != std::end(list);
    };
    for (const auto& [key, value] : body) {
      const bool known =
          among(kShared, key) || (chat ? among(kChat, key) : among(kCompletion, key));
      if (!known) {
        return invalid_argument(
            fmt::format("'{}' is not supported by this server (a field it does not honour is "
                        "refused, not ignored)",
                        std::string_view(key)),
            std::string(key));
      }
    }
    Call c;
    c.chat = chat;
    c.created = unix_now();
    c.id = (chat ? "chatcmpl-" : "cmpl-") + random_suffix();
    c.model = options_.model_name;
    if (const json::value* m = body.if_contains("model"); m && m->is_string()) {
      c.model = std::string(m->as_string());
    }
    MH_ASSIGN_OR_RETURN(c.stream, boolean(body, "stream"));
    if (const json::value* so = body.if_contains("stream_options"); so && !so->is_null()) {
      if (!so->is_object()) return invalid_argument("'stream_options' must be an object");
      for (const auto& [key, value] : so->as_object()) {
        if (key != "include_usage") {
          const std::string param = fmt::format("stream_options.{}", std::string_view(key));
          return invalid_argument(fmt::format("'{}' is not supported by this server", param),
                                  param);
        }
      }
      MH_ASSIGN_OR_RETURN(c.include_usage, boolean(so->as_object(), "include_usage"));
    }
    bool echo = false;
    MH_ASSIGN_OR_RETURN(auto n, integer(body, "n"));
    c.n = n.value_or(1);
    const int64_t most = std::min<int64_t>(128, options_.max_batch);
    if (c.n < 1 || c.n > most) {
      return invalid_argument(fmt::format("'n' must be from 1 to {}", most), "n");
    }
    // Chat: logprobs true and top_logprobs 0 to 20; completions: logprobs 0 to 5 (the top ones).
    if (chat) {
      MH_ASSIGN_OR_RETURN(c.params.logprobs, boolean(body, "logprobs"));
      MH_ASSIGN_OR_RETURN(auto top, integer(body, "top_logprobs"));
      if (top && !c.params.logprobs) {
        return invalid_argument("'top_logprobs' needs 'logprobs': true", "top_logprobs");
      }
      c.params.top_logprobs = top.value_or(0);
    } else {
      MH_ASSIGN_OR_RETURN(auto top, integer(body, "logprobs"));
      if (top && (*top < 0 || *top > 5)) {
        return invalid_argument("'logprobs' must be from 0 to 5", "logprobs");
      }
      c.params.logprobs = top.has_value();
      c.params.top_logprobs = top.value_or(0);
      MH_ASSIGN_OR_RETURN(echo, boolean(body, "echo"));
      if (echo && c.params.logprobs) {
        return invalid_argument(
            "'echo' with 'logprobs' is not supported (the prompt's log-probabilities are not "
            "computed)",
            "echo");
      }
    }

    if (chat) {
      const json::value* messages = body.if_contains("messages");
      if (messages == nullptr || !messages->is_array() || messages->as_array().empty()) {
        return invalid_argument("'messages' must be a non-empty array", "messages");
      }
      MH_ASSIGN_OR_RETURN(engine::Json given, engine_json(*messages, "messages"));
      MH_ASSIGN_OR_RETURN(engine::TemplateMessages conversation,
                          engine::template_messages(given, "messages"));
      MH_ASSIGN_OR_RETURN(Tools tools, request_tools(body));
      if (tools.choice != "none") {
        c.tools = engine::tool_syntax(template_.source());
        if (c.tools == engine::ToolSyntax::kNone) {
          return invalid_argument(
              "this model's chat template does not lay out tools (no tool-call syntax the "
              "platform reads: Hermes <tool_call>, Llama 3.1 JSON or Mistral [TOOL_CALLS])",
              "tools");
        }
      }
      // The model's own chat template; one that raises (roles out of order, say) is a 400.
      auto prompt = template_.prompt(conversation.messages, tools.for_template);
      if (!prompt.ok()) return invalid_argument(prompt.status().message(), "messages");
      c.prompt = std::move(prompt).value();
      if (tools.choice != "none" && tools.choice != "auto") {
        MH_ASSIGN_OR_RETURN(c.params.grammar, tool_grammar(tools, c.tools));
      }
    } else {
      const json::value* prompt = body.if_contains("prompt");
      if (prompt == nullptr) return invalid_argument("'prompt' is required", "prompt");
      if (prompt->is_string()) {
        c.echoed = prompt->as_string();
        c.prompt = tokenizer_.encode(c.echoed, false);
      } else if (prompt->is_array() && prompt->as_array().size() == 1 &&
                 prompt->as_array()[0].is_string()) {
        c.echoed = prompt->as_array()[0].as_string();
        c.prompt = tokenizer_.encode(c.echoed, false);
      } else if (prompt->is_array() && !prompt->as_array().empty() &&
                 prompt->as_array()[0].is_number()) {
        for (const auto& t : prompt->as_array()) {
          if (!t.is_int64() || t.as_int64() < 0 || t.as_int64() > INT32_MAX) {
            return invalid_argument("'prompt' token ids must be non-negative integers", "prompt");
          }
          c.prompt.push_back(static_cast<int32_t>(t.as_int64()));
        }
      } else {
        return invalid_argument(
            "'prompt' must be a string, an array of one string, or an array of token ids",
            "prompt");
      }
      if (!echo) {
        c.echoed.clear();
      } else if (c.echoed.empty()) {  // token ids: their text
        auto text = tokenizer_.decode(c.prompt, true);
        if (text.ok()) c.echoed = engine::unicode::valid_utf8(*text);
      }
      // A completion of nothing starts from the end-of-text token, as GPT-2 does.
      if (c.prompt.empty()) {
        if (auto eot = tokenizer_.special_token("<|endoftext|>")) c.prompt.push_back(*eot);
      }
    }

    const int64_t context = runner_->config().max_positions;
    const auto prompt_tokens = static_cast<int64_t>(c.prompt.size());
    if (prompt_tokens >= context) {
      return invalid_argument(
          fmt::format("the prompt has {} tokens; this model's context is {} tokens", prompt_tokens,
                      context),
          chat ? "messages" : "prompt");
    }
    MH_ASSIGN_OR_RETURN(auto max_tokens, integer(body, "max_tokens"));
    if (chat && !max_tokens) {
      MH_ASSIGN_OR_RETURN(max_tokens, integer(body, "max_completion_tokens"));
    }
    if (max_tokens && *max_tokens < 1) {
      return invalid_argument("'max_tokens' must be at least 1", "max_tokens");
    }
    // Compared without adding, which a huge max_tokens would overflow.
    if (max_tokens && *max_tokens > context - prompt_tokens) {
      return invalid_argument(
          fmt::format("this model's context is {} tokens, but {} were asked for ({} in the prompt, "
                      "{} to generate)",
                      context, prompt_tokens + *max_tokens, prompt_tokens, *max_tokens),
          "max_tokens");
    }
    // What a request leaves unsaid comes from the model's generation_config.json, then from the
    // API's defaults. Its max_length bounds prompt and completion together.
    const engine::GenerationConfig& g = generation_;
    const int64_t room = std::min(context, g.max_length.value_or(context)) - prompt_tokens;
    if (max_tokens) {
      c.params.max_tokens = *max_tokens;
    } else if (g.max_new_tokens) {
      c.params.max_tokens = std::max<int64_t>(1, std::min(*g.max_new_tokens, room));
    } else {
      c.params.max_tokens = std::max<int64_t>(1, chat ? room : std::min<int64_t>(16, room));
    }
    MH_ASSIGN_OR_RETURN(auto temperature, number(body, "temperature"));
    if (temperature && (*temperature < 0 || *temperature > 2)) {
      return invalid_argument("'temperature' must be between 0 and 2", "temperature");
    }
    c.params.temperature =
        static_cast<float>(temperature.value_or(g.greedy ? 0.0 : g.temperature.value_or(1.0f)));
    MH_ASSIGN_OR_RETURN(auto top_p, number(body, "top_p"));
    c.params.top_p = static_cast<float>(top_p.value_or(g.top_p.value_or(1.0f)));
    MH_ASSIGN_OR_RETURN(auto top_k, integer(body, "top_k"));
    c.params.top_k = top_k.value_or(g.top_k.value_or(0));
    MH_ASSIGN_OR_RETURN(auto repetition_penalty, number(body, "repetition_penalty"));
    c.params.repetition_penalty =
        static_cast<float>(repetition_penalty.value_or(g.repetition_penalty.value_or(1.0f)));
    for (int64_t id : g.eos_token_ids) c.params.stop_token_ids.push_back(static_cast<int32_t>(id));
    MH_ASSIGN_OR_RETURN(auto presence, number(body, "presence_penalty"));
    MH_ASSIGN_OR_RETURN(auto frequency, number(body, "frequency_penalty"));
    c.params.presence_penalty = static_cast<float>(presence.value_or(0));
    c.params.frequency_penalty = static_cast<float>(frequency.value_or(0));
    if (const json::value* bias = body.if_contains("logit_bias"); bias && !bias->is_null()) {
      // OpenAI's shape: token ids, as strings, to a bias each.
      if (!bias->is_object() || bias->as_object().size() > 300) {
        return invalid_argument("'logit_bias' must map up to 300 token ids to numbers",
                                "logit_bias");
      }
      for (const auto& [key, value] : bias->as_object()) {
        int32_t token = -1;
        const auto [end, ec] = std::from_chars(key.data(), key.data() + key.size(), token);
        if (ec != std::errc() || end != key.data() + key.size() || !value.is_number()) {
          return invalid_argument("'logit_bias' must map token ids (\"1234\") to numbers",
                                  "logit_bias");
        }
        c.params.logit_bias.emplace_back(token, static_cast<float>(value.to_number<double>()));
      }
    }
    MH_ASSIGN_OR_RETURN(auto seed, integer(body, "seed"));
    c.params.seed = seed ? static_cast<uint64_t>(*seed) : std::random_device{}();
    MH_ASSIGN_OR_RETURN(c.params.ignore_eos, boolean(body, "ignore_eos"));
    if (const json::value* stop = body.if_contains("stop"); stop && !stop->is_null()) {
      if (stop->is_string()) {
        c.params.stop.emplace_back(stop->as_string());
      } else if (stop->is_array() && stop->as_array().size() <= 4) {
        for (const auto& s : stop->as_array()) {
          if (!s.is_string()) return invalid_argument("'stop' entries must be strings", "stop");
          c.params.stop.emplace_back(s.as_string());
        }
      } else {
        return invalid_argument("'stop' must be a string or an array of up to 4 strings", "stop");
      }
    }
    if (chat) {
      MH_ASSIGN_OR_RETURN(auto format, response_format(body));
      if (format && c.tools != engine::ToolSyntax::kNone) {
        return invalid_argument(
            "'response_format' and tools the model may call cannot be combined (use "
            "tool_choice \"none\", or no response_format)",
            "response_format");
      }
      if (format) c.params.grammar = std::move(format);
    }
    MH_TRY(c.params.validate());
    return c;
  }

  // OpenAI's response_format: "text", "json_object", or "json_schema" with its schema, which
  // the output is constrained to (grammars cached by schema, their token masks with them).
  Result<std::shared_ptr<const engine::TokenGrammar>> response_format(const json::object& body) {
    const json::value* format = body.if_contains("response_format");
    using Grammar = std::shared_ptr<const engine::TokenGrammar>;
    if (format == nullptr || format->is_null()) return Grammar();
    const json::object* f = format->if_object();
    const json::value* type = f ? f->if_contains("type") : nullptr;
    if (type == nullptr || !type->is_string()) {
      return invalid_argument("'response_format' must be an object with a 'type'",
                              "response_format.type");
    }
    for (const auto& [key, value] : *f) {
      if (key != "type" && !(key == "json_schema" && type->as_string() == "json_schema")) {
        const std::string param = fmt::format("response_format.{}", std::string_view(key));
        return invalid_argument(fmt::format("'{}' is not supported", param), param);
      }
    }
    if (type->as_string() == "text") return Grammar();
    std::string key;  // what the grammar is cached by
    if (type->as_string() == "json_object") {
      key = "json_object";
    } else if (type->as_string() == "json_schema") {
      const json::value* js = f->if_contains("json_schema");
      const json::object* o = js ? js->if_object() : nullptr;
      const json::value* name = o ? o->if_contains("name") : nullptr;
      if (name == nullptr || !name->is_string() || name->as_string().empty()) {
        return invalid_argument("'response_format.json_schema' needs a 'name'",
                                "response_format.json_schema.name");
      }
      for (const auto& [k, v] : *o) {
        if (k == "strict" && !v.is_bool() && !v.is_null()) {
          return invalid_argument("'response_format.json_schema.strict' must be true or false",
                                  "response_format.json_schema.strict");
        }
        if (k != "name" && k != "description" && k != "schema" && k != "strict") {
          const std::string param =
              fmt::format("response_format.json_schema.{}", std::string_view(k));
          return invalid_argument(fmt::format("'{}' is not supported", param), param);
        }
      }
      const json::value* schema = o->if_contains("schema");
      // OpenAI's default: no schema, any JSON value.
      key = "schema:" + (schema ? json::serialize(*schema) : std::string("{}"));
    } else {
      return invalid_argument(
          fmt::format("response_format type '{}' is not one of text, json_object, json_schema",
                      std::string_view(type->as_string())),
          "response_format.type");
    }
    return cached_grammar(key, "response_format.json_schema.schema",
                          [&]() -> Result<engine::Grammar> {
                            if (key == "json_object") return engine::json_object_grammar();
                            auto schema = engine::parse_json(std::string_view(key).substr(7));
                            if (!schema.ok()) return invalid_argument(schema.status().message());
                            return engine::json_schema_grammar(*schema);
                          });
  }

  // The grammar cached by `key`, else made by `make` and bound to the vocabulary (made on first
  // use); its errors are 400s with `param`. The kGrammarsKept used last are kept.
  Result<std::shared_ptr<const engine::TokenGrammar>> cached_grammar(
      const std::string& key, std::string_view param,
      const std::function<Result<engine::Grammar>()>& make) {
    std::lock_guard lock(grammars_mutex_);
    if (auto it = grammars_.find(key); it != grammars_.end()) {
      it->second.used = ++grammar_uses_;
      return it->second.grammar;
    }
    auto grammar = make();
    if (!grammar.ok()) return invalid_argument(grammar.status().message(), std::string(param));
    auto bound = engine::TokenGrammar::make(std::move(grammar).value(), vocabulary());
    if (!bound.ok()) return invalid_argument(bound.status().message(), std::string(param));
    if (grammars_.size() >= kGrammarsKept) {
      auto oldest = std::min_element(grammars_.begin(), grammars_.end(), [](auto& a, auto& b) {
        return a.second.used < b.second.used;
      });
      grammars_.erase(oldest);
    }
    grammars_.emplace(key, Cached{*bound, ++grammar_uses_});
    return *bound;
  }

  // A call of the function tool_choice names, or of any ("required"), in the model's syntax.
  Result<std::shared_ptr<const engine::TokenGrammar>> tool_grammar(const Tools& tools,
                                                                   engine::ToolSyntax syntax) {
    std::vector<engine::ToolFunction> callable;
    for (const auto& f : tools.functions) {
      if (tools.choice == "required" || f.name == tools.choice) callable.push_back(f);
    }
    std::string key = fmt::format("tools:{}:{}", static_cast<int>(syntax), tools.parallel);
    for (const auto& f : callable) key += ":" + f.name + "=" + engine::to_json(f.parameters);
    return cached_grammar(
        key, "tools", [&] { return engine::tool_call_grammar(syntax, callable, tools.parallel); });
  }

  // OpenAI's tools (functions), tool_choice and parallel_tool_calls.
  static Result<Tools> request_tools(const json::object& body) {
    Tools t;
    const json::value* tools = body.if_contains("tools");
    const bool given = tools != nullptr && !tools->is_null();
    if (given) {
      MH_ASSIGN_OR_RETURN(engine::Json list, engine_json(*tools, "tools"));
      MH_ASSIGN_OR_RETURN(engine::TemplateTools laid, engine::template_tools(list, "tools"));
      t.functions = std::move(laid.functions);
      t.for_template = std::move(laid.tools);
      t.choice = "auto";
    }
    if (const json::value* choice = body.if_contains("tool_choice"); choice && !choice->is_null()) {
      const json::object* o = choice->if_object();
      const json::value* fn = o ? o->if_contains("function") : nullptr;
      const json::value* name =
          fn && fn->is_object() ? fn->as_object().if_contains("name") : nullptr;
      if (choice->is_string() &&
          (*choice == "none" || *choice == "auto" || *choice == "required")) {
        t.choice = std::string(choice->as_string());
      } else if (name && name->is_string() && o->size() == 2 && o->if_contains("type") &&
                 o->at("type") == "function" && fn->as_object().size() == 1) {
        t.choice = std::string(name->as_string());
        const bool known = std::any_of(t.functions.begin(), t.functions.end(),
                                       [&](const auto& f) { return f.name == t.choice; });
        if (!known) {
          return invalid_argument("'tool_choice' names no tool: '" + t.choice + "'", "tool_choice");
        }
      } else {
        return invalid_argument(
            "'tool_choice' must be \"none\", \"auto\", \"required\" or {\"type\": "
            "\"function\", \"function\": {\"name\"}}",
            "tool_choice");
      }
      if (!given && t.choice != "none") {
        return invalid_argument("'tool_choice' needs 'tools'", "tool_choice");
      }
    }
    if (const json::value* p = body.if_contains("parallel_tool_calls"); p && !p->is_null()) {
      if (!p->is_bool()) {
        return invalid_argument("'parallel_tool_calls' must be true or false",
                                "parallel_tool_calls");
      }
      t.parallel = p->as_bool();
    }
    if (t.choice == "none") t.for_template = engine::Json();
    return t;
  }

  static std::string sse(const json::value& v) { return "data: " + json::serialize(v) + "\n\n"; }

  // A streamed chunk of choice `index`: chat deltas or completion text, with the
  // log-probabilities of the tokens it carries.
  static json::object chunk(const Call& c, int64_t index, json::value payload,
                            json::value finish_reason, json::value logprobs = nullptr) {
    json::object choice{{"index", index},
                        {"finish_reason", std::move(finish_reason)},
                        {"logprobs", std::move(logprobs)}};
    choice[c.chat ? "delta" : "text"] = std::move(payload);
    return {{"id", c.id},
            {"object", c.chat ? "chat.completion.chunk" : "text_completion"},
            {"created", c.created},
            {"model", c.model},
            {"choices", json::array{std::move(choice)}}};
  }

  static json::object usage(int64_t prompt, int64_t completion, int64_t cached) {
    return {{"prompt_tokens", prompt},
            {"completion_tokens", completion},
            {"total_tokens", prompt + completion},
            {"prompt_tokens_details", {{"cached_tokens", cached}}}};
  }

  // Each token's bytes (made on first use; shared with the grammars).
  std::shared_ptr<const engine::TokenBytes> vocabulary() {
    std::call_once(vocabulary_once_, [this] {
      vocabulary_ =
          std::make_shared<const engine::TokenBytes>(tokenizer_, runner_->config().vocab_size);
    });
    return vocabulary_;
  }
  std::string piece(int32_t token) {
    const auto v = vocabulary();
    if (token < v->size() && !v->bytes(token).empty()) return v->bytes(token);
    return tokenizer_.token_text(token);  // a special token: its spelling
  }

  // Log-probabilities in OpenAI's shapes: chat's {"content": [{token, logprob, bytes,
  // top_logprobs}]}, or completions' {tokens, token_logprobs, top_logprobs, text_offset} (in
  // characters, from `offset`, which moves past them).
  json::value logprobs_json(const Call& c, const std::vector<engine::TokenLogprob>& lps,
                            int64_t& offset) {
    const auto entry = [&](int32_t token, float logprob) {
      const std::string bytes = piece(token);
      json::array raw;
      for (unsigned char b : bytes) raw.push_back(static_cast<int64_t>(b));
      return json::object{{"token", engine::unicode::valid_utf8(bytes)},
                          {"logprob", logprob},
                          {"bytes", std::move(raw)}};
    };
    if (c.chat) {
      json::array content;
      for (const engine::TokenLogprob& lp : lps) {
        json::object e = entry(lp.token, lp.logprob);
        json::array top;
        for (const auto& [t, l] : lp.top) top.push_back(entry(t, l));
        e["top_logprobs"] = std::move(top);
        content.push_back(std::move(e));
      }
      return json::object{{"content", std::move(content)}, {"refusal", nullptr}};
    }
    json::array tokens, logprobs, tops, offsets;
    for (const engine::TokenLogprob& lp : lps) {
      const std::string text = engine::unicode::valid_utf8(piece(lp.token));
      tokens.push_back(json::value(text));
      logprobs.push_back(lp.logprob);
      json::object top;
      for (const auto& [t, l] : lp.top) top[engine::unicode::valid_utf8(piece(t))] = l;
      tops.push_back(std::move(top));
      offsets.push_back(offset);
      for (size_t i = 0; i < text.size(); i += engine::unicode::decode(text, i).len) ++offset;
    }
    return json::object{{"tokens", std::move(tokens)},
                        {"token_logprobs", std::move(logprobs)},
                        {"top_logprobs", std::move(tops)},
                        {"text_offset", std::move(offsets)}};
  }

  // A finished choice as OpenAI gives it: its finish reason, its text, and the tool calls read
  // from it (a turn the model spent calling tools finishes with "tool_calls").
  struct Answer {
    std::string finish, content;
    json::array calls;
  };
  static Answer answer(const Call& c, const engine::GenerationResult& r) {
    Answer a{r.finish_reason, engine::unicode::valid_utf8(r.text), {}};
    if (c.tools != engine::ToolSyntax::kNone && a.finish == "stop") {
      engine::ToolCallOutput parsed = engine::parse_tool_calls(c.tools, r.text);
      for (const engine::ToolCall& call : parsed.calls) {
        a.calls.push_back({{"id", "call_" + random_suffix()},
                           {"type", "function"},
                           {"function", {{"name", call.name}, {"arguments", call.arguments}}}});
      }
      if (!a.calls.empty()) {
        a.finish = "tool_calls";
        a.content = engine::unicode::valid_utf8(parsed.content);
      }
    }
    return a;
  }

  // Streams the end of a finished choice: what was held back for tools, then its finish.
  void stream_end(Call& c, size_t index) {
    const auto i = static_cast<int64_t>(index);
    Choice& s = c.choices[index];
    const Answer a = answer(c, c.results[index]);
    const auto held = [&]() -> json::value {
      if (!c.params.logprobs || s.pending.empty()) return nullptr;
      json::value lp = logprobs_json(c, s.pending, s.offset);
      s.pending.clear();
      return lp;
    };
    if (c.tools != engine::ToolSyntax::kNone) {
      if (!a.content.empty()) {
        c.out->write(sse(chunk(c, i, json::object{{"content", a.content}}, nullptr, held())));
      }
      for (size_t k = 0; k < a.calls.size(); ++k) {
        json::object delta = a.calls[k].as_object();
        delta["index"] = static_cast<int64_t>(k);
        c.out->write(
            sse(chunk(c, i, json::object{{"tool_calls", json::array{std::move(delta)}}}, nullptr)));
      }
    }
    json::value empty = c.chat ? json::value(json::object{}) : json::value("");
    c.out->write(sse(chunk(c, i, std::move(empty), json::value(a.finish), held())));
  }

  void finished(Call& c, size_t index, engine::GenerationResult r) {
    c.results[index] = std::move(r);
    --c.unfinished;
    const bool listening = c.results[index].finish_reason != "cancelled" && !c.out->cancelled();
    if (c.stream && listening) stream_end(c, index);
    if (c.unfinished == 0) respond(c);
  }

  // Once every choice has finished: the usage (the prompt once, each choice's tokens), then the
  // response's end, or the whole response.
  void respond(Call& c) {
    int64_t completion_tokens = 0;
    bool cancelled = false;
    for (const auto& r : c.results) {
      completion_tokens += static_cast<int64_t>(r.tokens.size());
      cancelled = cancelled || r.finish_reason == "cancelled";
    }
    const int64_t prompt_tokens = static_cast<int64_t>(c.prompt.size());
    {
      std::lock_guard lock(mutex_);
      prompt_tokens_ += prompt_tokens;
      if (cancelled) ++cancelled_;
    }
    executor::WorkerEvent used;
    used.kind = executor::WorkerEvent::Kind::kUsage;
    used.tenant = c.tenant;
    used.prompt_tokens = prompt_tokens;
    used.completion_tokens = completion_tokens;
    emit(executor::encode_worker_event(used));
    if (cancelled || c.out->cancelled()) return;  // nobody is listening
    if (c.stream) {
      if (c.include_usage) {
        json::object u{
            {"id", c.id},
            {"object", c.chat ? "chat.completion.chunk" : "text_completion"},
            {"created", c.created},
            {"model", c.model},
            {"choices", json::array{}},
            {"usage", usage(prompt_tokens, completion_tokens, c.results.front().cached_tokens)}};
        c.out->write(sse(u));
      }
      c.out->write("data: [DONE]\n\n");
      c.out->end();
      return;
    }
    json::array choices;
    for (size_t i = 0; i < c.results.size(); ++i) {
      const engine::GenerationResult& r = c.results[i];
      Answer a = answer(c, r);
      int64_t offset = 0;
      json::value logprobs =
          c.params.logprobs ? logprobs_json(c, r.logprobs, offset) : json::value(nullptr);
      json::object choice{{"index", static_cast<int64_t>(i)},
                          {"finish_reason", a.finish},
                          {"logprobs", std::move(logprobs)}};
      if (c.chat) {
        json::object message{{"role", "assistant"}, {"content", a.content}, {"refusal", nullptr}};
        if (!a.calls.empty()) {
          if (a.content.empty()) message["content"] = nullptr;
          message["tool_calls"] = std::move(a.calls);
        }
        choice["message"] = std::move(message);
      } else {
        choice["text"] = c.echoed + a.content;
      }
      choices.push_back(std::move(choice));
    }
    json::object body{
        {"id", c.id},
        {"object", c.chat ? "chat.completion" : "text_completion"},
        {"created", c.created},
        {"model", c.model},
        {"choices", std::move(choices)},
        {"usage", usage(prompt_tokens, completion_tokens, c.results.front().cached_tokens)}};
    c.out->begin(200, "application/json");
    c.out->write(json::serialize(body));
    c.out->end();
  }

  // What a choice's sequence tells as it decodes: streamed, its text as it comes (held back,
  // with tools, until the end) and the log-probabilities of the tokens each chunk carries.
  engine::TokenCallback on_token(const std::shared_ptr<Call>& call, size_t index) {
    Call* c = call.get();  // the call outlives its sequences
    return [this, c, index](const engine::TokenEvent& e) {
      if (e.token >= 0) ++generated_tokens_;
      if (c->out->cancelled()) return false;
      if (!c->stream) return true;
      Choice& s = c->choices[index];
      if (e.logprob) s.pending.push_back(*e.logprob);
      if (c->tools != engine::ToolSyntax::kNone || e.text.empty()) return true;
      const std::string text = engine::unicode::valid_utf8(e.text);
      json::value piece =
          c->chat ? json::value(json::object{{"content", text}}) : json::value(text);
      json::value logprobs = nullptr;
      if (c->params.logprobs) {
        logprobs = logprobs_json(*c, s.pending, s.offset);
        s.pending.clear();
      }
      c->out->write(sse(
          chunk(*c, static_cast<int64_t>(index), std::move(piece), nullptr, std::move(logprobs))));
      return true;
    };
  }

  void decode_loop() {
    // Each live sequence's call and choice.
    std::map<int64_t, std::pair<std::shared_ptr<Call>, size_t>> live;
    auto last_stats = std::chrono::steady_clock::now();
    std::string last_stats_json;
    for (;;) {
      std::vector<std::shared_ptr<Call>> joining;
      {
        std::unique_lock lock(mutex_);
        wake_.wait_for(lock, std::chrono::seconds(1),
                       [&] { return stopping_ || !incoming_.empty() || !live.empty(); });
        if (stopping_) break;
        // As many calls as the batch has room for, each taking a sequence per choice.
        int64_t room = options_.max_batch - static_cast<int64_t>(live.size());
        while (!incoming_.empty() && incoming_.front()->n <= room) {
          room -= incoming_.front()->n;
          joining.push_back(std::move(incoming_.front()));
          incoming_.pop_front();
        }
      }
      for (auto& c : joining) {
        if (c->out->cancelled()) continue;
        const auto n = static_cast<size_t>(c->n);
        c->results.resize(n);
        c->choices.resize(n);
        c->unfinished = c->n;
        std::vector<engine::TokenCallback> callbacks;
        for (size_t i = 0; i < n; ++i) callbacks.push_back(on_token(c, i));
        auto added = batch_.add_choices(c->prompt, c->params, std::move(callbacks), c->adapter);
        if (!added.ok()) {
          if (c->stream) {  // the head is out: the error goes in the stream, as OpenAI does
            json::object error = {
                {"error",
                 {{"message", added.status().message()}, {"type", "invalid_request_error"}}}};
            c->out->write(sse(error));
            c->out->end();
          } else {
            c->out->fail(added.status());
          }
          continue;
        }
        if (c->stream && !c->echoed.empty()) {
          for (size_t i = 0; i < n; ++i) {
            c->out->write(sse(chunk(*c, static_cast<int64_t>(i), json::value(c->echoed), nullptr)));
          }
        }
        for (size_t i = 0; i < n; ++i) live.emplace((*added)[i], std::pair{c, i});
        std::lock_guard lock(mutex_);
        ++requests_;
      }
      {
        std::lock_guard lock(mutex_);
        active_ = static_cast<int64_t>(live.size());
      }
      if (!live.empty()) batch_.step();
      for (auto& [id, result] : batch_.take_finished()) {
        auto it = live.find(id);
        if (it == live.end()) continue;
        auto [call, index] = it->second;
        live.erase(it);
        finished(*call, index, std::move(result));
      }
      {
        std::lock_guard lock(mutex_);
        active_ = static_cast<int64_t>(live.size());
      }
      // Counters for the daemon, at most once a second and only when they moved.
      const auto now = std::chrono::steady_clock::now();
      if (now - last_stats >= std::chrono::seconds(1)) {
        executor::WorkerEvent counters;
        counters.kind = executor::WorkerEvent::Kind::kStats;
        counters.stats = stats();
        std::string text = executor::encode_worker_event(counters);
        if (text != last_stats_json) emit(text);
        last_stats_json = std::move(text);
        last_stats = now;
      }
    }
    for (auto& [id, c] : live) c.first->out->fail(unavailable("the replica is shutting down"));
    std::lock_guard lock(mutex_);
    for (auto& c : incoming_) c->out->fail(unavailable("the replica is shutting down"));
  }

  const ServeOptions& options_;
  std::unique_ptr<engine::Model> model_;
  std::unique_ptr<engine::SequenceRunner> runner_;
  const engine::Tokenizer& tokenizer_;
  engine::ChatTemplate template_;
  engine::GenerationConfig generation_;
  engine::DecodeBatch batch_;  // the decode thread's alone

  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::shared_ptr<Call>> incoming_;
  bool stopping_ = false;
  int64_t active_ = 0, requests_ = 0, cancelled_ = 0, prompt_tokens_ = 0;
  std::atomic<int64_t> generated_tokens_{0};
  std::thread decoder_;

  struct Loaded {
    std::shared_ptr<const engine::LoraWeights> weights;
    std::chrono::steady_clock::time_point used;
  };
  mutable std::mutex adapters_mutex_;
  std::map<std::string, Loaded> adapters_;  // by directory
  std::atomic<int64_t> adapter_loads_{0};

  // Structured outputs: the vocabulary's bytes (made on first use) and compiled grammars.
  static constexpr size_t kGrammarsKept = 64;
  struct Cached {
    std::shared_ptr<const engine::TokenGrammar> grammar;
    uint64_t used;
  };
  std::mutex grammars_mutex_;
  std::once_flag vocabulary_once_;
  std::shared_ptr<const engine::TokenBytes> vocabulary_;
  std::map<std::string, Cached> grammars_;  // by schema
  uint64_t grammar_uses_ = 0;
};

int serve(const ServeOptions& given) {
  ServeOptions options = given;
  if (options.model_name.empty()) {
    options.model_name = std::filesystem::path(options.model_dir).filename().string();
  }
  auto compute = make_compute(options.compute);
  if (!compute.ok()) {
    std::fprintf(stderr, "mh-worker: %s\n", compute.status().message().c_str());
    return compute.status().code() == Code::kInvalidArgument ? 2 : 1;
  }
  std::unique_ptr<engine::Backend> backend = std::move(compute->backend);
  std::fprintf(stderr, "mh-worker serve: computing on %s\n", backend->name());
  // On the CPU, bf16/f16 weights stay 16-bit (the model costs its files' size); the CUDA
  // decoder uploads fp32 weights and makes its own bf16 copies.
  auto model =
      engine::Model::load(options.model_dir, *backend,
                          compute->cuda ? engine::Weights::kFloat32 : engine::Weights::kAsStored);
  if (!model.ok()) {
    std::fprintf(stderr, "mh-worker: %s\n", model.status().message().c_str());
    return 2;
  }
  auto tokenizer = engine::Tokenizer::load(options.model_dir);
  if (!tokenizer.ok()) {
    std::fprintf(stderr, "mh-worker: %s\n", tokenizer.status().message().c_str());
    return 2;
  }
  // On a GPU the sequences run on the device-resident decoder (weights and KV caches there).
  auto decoder = make_decoder(*compute, **model, options.max_batch);
  if (!decoder.ok()) {
    std::fprintf(stderr, "mh-worker: %s\n", decoder.status().message().c_str());
    return 1;
  }
  if (*decoder) {
    // At most as many sequences decode at once as the device has cache slots for.
    options.max_batch = std::min(options.max_batch, (*decoder)->max_sequences());
    std::fprintf(stderr,
                 "mh-worker serve: decoding with the CUDA decoder, %lld sequences at once\n",
                 static_cast<long long>(options.max_batch));
  }
  const engine::Tokenizer tok = std::move(tokenizer).value();
  auto chat_template = engine::ChatTemplate::load(options.model_dir, tok);
  if (!chat_template.ok()) {
    std::fprintf(stderr, "mh-worker: %s\n", chat_template.status().message().c_str());
    return 2;
  }
  auto generation =
      engine::load_generation_config(options.model_dir, (*model)->config().vocab_size);
  if (!generation.ok()) {
    std::fprintf(stderr, "mh-worker: %s\n", generation.status().message().c_str());
    return 2;
  }
  Replica replica(options, std::move(model).value(), tok, std::move(chat_template).value(),
                  std::move(generation).value(), std::move(decoder).value());

  http::Router router;
  const std::string token = options.token;
  // Decided from memory alone, so every route below answers on the I/O thread: generation
  // is the replica's batcher's work, and a handler only queues a request and returns its stream.
  router.set_authenticator([token](const Request& r, http::Access access,
                                   bool) -> std::optional<Result<http::Principal>> {
    if (access.kind == http::Access::Kind::kPublic || token.empty()) return http::Principal{};
    const std::string_view given = r.header("authorization");
    const std::string expected = "Bearer " + token;
    if (given.size() != expected.size() ||
        CRYPTO_memcmp(given.data(), expected.data(), expected.size()) != 0) {
      return unauthenticated("this replica takes requests from its daemon only");
    }
    return http::Principal{http::Principal::Kind::kPlatformAdmin, "daemon", "", ""};
  });
  router.add(
      "POST", "/v1/completions", http::Access::kAdmin,
      [&](Request& r) { return replica.handle(r, false); }, http::Runs::kInline);
  router.add(
      "POST", "/v1/chat/completions", http::Access::kAdmin,
      [&](Request& r) { return replica.handle(r, true); }, http::Runs::kInline);
  router.add(
      "GET", "/stats", http::Access::kAdmin,
      [&](Request&) { return Response::json(200, replica.stats()); }, http::Runs::kInline);
  router.add(
      "GET", "/health", http::Access::kPublic,
      [](Request&) {
        return Response::json(200, json::object{{"status", "ok"}});
      },
      http::Runs::kInline);

  asio::io_context ioc;
  http::HttpMetrics metrics;
  http::ServerOptions server_options;
  server_options.host = options.host;
  server_options.port = options.port;
  server_options.server_name = "mh-worker";
  server_options.access_log = false;
  server_options.handler_threads = 1;                      // every route runs inline
  server_options.idle_timeout = std::chrono::minutes(10);  // the daemon keeps connections
  server_options.write_timeout = std::chrono::minutes(2);
  http::HttpServer server(ioc, server_options, router, metrics);
  if (Status s = server.start(); !s.ok()) {
    std::fprintf(stderr, "mh-worker: %s\n", s.message().c_str());
    return 1;
  }
  replica.start();
  std::printf("serving %s on http://%s:%u\n", options.model_name.c_str(), options.host.c_str(),
              server.port());
  std::fflush(stdout);
  executor::WorkerEvent ready;
  ready.kind = executor::WorkerEvent::Kind::kReady;
  ready.port = server.port();
  emit(executor::encode_worker_event(ready));

  asio::signal_set signals(ioc, SIGTERM, SIGINT);
  signals.async_wait([&](const boost::system::error_code&, int) {
    replica.stop();  // answers what is in flight with 503
    server.shutdown([&ioc] { ioc.stop(); });
  });
  const unsigned threads = 2;
  std::vector<std::thread> io;
  for (unsigned i = 1; i < threads; ++i) io.emplace_back([&ioc] { ioc.run(); });
  ioc.run();
  for (auto& t : io) t.join();
  replica.stop();
  return 0;
}

}  // namespace mh::worker
